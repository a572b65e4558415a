//! vpmctl: control the vpm kernel module over generic netlink.
//!
//! Every command acts on the network namespace vpmctl runs in.

mod aid;
mod attrs;
mod batch;
mod cli;
mod config;
mod connection;
mod coop;
mod error;
mod exec;
mod hooks;
mod manpage;
mod mapping;
mod metrics;
mod monitor;
mod place;
mod proto;
mod rule;
mod state;
mod status;
mod uapi;

use std::io::Write;
use std::process::ExitCode;

use crate::cli::{Cli, Command, PeerCmd, RuleCmd};
use crate::connection::Connection;
use crate::error::Result;

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Batch { file } => {
            let r = batch::run(&file, cli.json);
            // Even a batch that stopped midway changed what ran before.
            let synced = Connection::open().and_then(|c| hooks::sync(&c));
            r.and(synced)
        }
        Command::Exec {
            aid,
            ports,
            proto,
            wait,
            release,
            cgroup_parent,
            cmd,
        } => {
            let opts = exec::ExecOpts {
                aid,
                ports,
                proto,
                wait_ms: wait,
                release,
                cgroup_parent,
                cmd,
            };
            // Returns only when the command could not be started.
            let code = exec::run(&opts)?;
            std::process::exit(code);
        }
        // Opens its own connection for every read of the kernel.
        Command::Metrics { listen } => metrics::run(listen),
        Command::Agent { config } => coop::agent::run(&config),
        Command::Peer {
            cmd: PeerCmd::Show { state_file },
        } => {
            print!("{}", coop::agent::show(state_file.as_deref(), cli.json)?);
            if cli.json {
                println!();
            }
            Ok(())
        }
        Command::Completions { shell } => manpage::completions(shell),
        Command::Man { dir } => {
            for page in manpage::write_pages(&dir)? {
                println!("{}", page.display());
            }
            Ok(())
        }
        Command::Keep {
            aid,
            cgroup_parent,
            release,
            ports,
            pid,
            detach,
        } => {
            if detach {
                exec::detach(exec::keep_args(
                    &aid,
                    &cgroup_parent,
                    release,
                    &ports,
                    pid,
                    false,
                ))
            } else {
                exec::keep(&aid, &cgroup_parent, release, &ports, pid)
            }
        }
        cmd => {
            let conn = Connection::open()?;
            // Commands that change allocations: the socket hooks of
            // `exec`'s AIDs follow them.
            let changes = matches!(
                cmd,
                Command::Add { .. }
                    | Command::Del { .. }
                    | Command::Flush
                    | Command::Restore { .. }
            );
            run_one(&conn, cmd, cli.json)?;
            if changes {
                hooks::sync(&conn)?;
            }
            Ok(())
        }
    }
}

/// The contents of FILE, or of standard input for "-".
fn read_input(file: &std::path::Path) -> Result<String> {
    if file.as_os_str() == "-" {
        std::io::read_to_string(std::io::stdin())
    } else {
        std::fs::read_to_string(file)
    }
    .map_err(|e| error::Error::Input(format!("cannot read {}: {e}", file.display())))
}

/// Runs one command; `json` is the global `--json`.
fn run_one(conn: &Connection, cmd: Command, json: bool) -> Result<()> {
    match cmd {
        Command::Batch { .. }
        | Command::Exec { .. }
        | Command::Keep { .. }
        | Command::Metrics { .. }
        | Command::Agent { .. }
        | Command::Peer {
            cmd: PeerCmd::Show { .. },
        }
        | Command::Completions { .. }
        | Command::Man { .. } => {
            unreachable!("handled by run")
        }
        Command::Peer {
            cmd: PeerCmd::Add(p),
        } => mapping::peer_add(conn, &p.aid, p.port, p.address)?,
        Command::Peer {
            cmd: PeerCmd::Del(p),
        } => mapping::peer_del(conn, &p.aid, p.port, p.address)?,
        Command::Add {
            aid,
            port,
            proto,
            anon_port,
            wait,
            cgroup,
        } => {
            let opts = mapping::AddOpts {
                proto: Some(proto),
                anon: anon_port,
                wait_ms: wait,
                cgroup,
            };
            let m = mapping::add(conn, &aid, port, &opts)?;
            emit(json, &m, render_added);
        }
        Command::Del { aid, port } => mapping::del(conn, &aid, port)?,
        Command::Rule { cmd } => match cmd {
            RuleCmd::Add { port, from, aid } => {
                rule::add(conn, port, &from.unwrap_or_default(), &aid)?
            }
            RuleCmd::Del { port, from } => rule::del(conn, port, &from.unwrap_or_default())?,
            RuleCmd::Show => emit(json, &rule::list(conn)?, |r| rule::render(r)),
        },
        Command::Show => {
            emit(json, &mapping::list(conn)?, |m| mapping::render(m));
            // The cooperative mappings of this namespace's agent, if one
            // runs here with its default state file.
            if !json {
                if let Ok(text) = coop::agent::show(None, false) {
                    print!("\ncooperative mappings (vpmctl peer show), {text}");
                }
            }
        }
        Command::Flush => mapping::flush(conn)?,
        Command::Monitor => monitor::run(conn, json)?,
        Command::Save => {
            let st = state::save(conn)?;
            println!(
                "{}",
                serde_json::to_string_pretty(&st).expect("state serialises")
            );
        }
        Command::Restore { file } => {
            let text = read_input(&file)?;
            let st: state::State = serde_json::from_str(&text).map_err(|e| {
                error::Error::State(format!("{} is not a saved state: {e}", file.display()))
            })?;
            state::restore(conn, &st)?;
        }
        Command::Config { range, max_entries } => {
            if range.is_some() || max_entries.is_some() {
                config::set(conn, range, max_entries)?;
            }
            emit(json, &config::get(conn)?, config::Config::render);
        }
        Command::Status => emit(json, &status::get(conn)?, status::Status::render),
    }
    Ok(())
}

/// What `add` prints.
fn render_added(m: &mapping::Mapping) -> String {
    format!("{} {} {} -> {}\n", m.aid, m.port, m.proto, m.anon_port)
}

/// Prints `value` as one line of JSON, or as `human` renders it.
fn emit<T: serde::Serialize + ?Sized>(json: bool, value: &T, human: impl FnOnce(&T) -> String) {
    if !json {
        print!("{}", human(value));
        return;
    }
    // Straight to stdout: `show --json` of 65,535 allocations is 10 MB,
    // which a string would hold twice over while it grows.
    let mut out = std::io::BufWriter::with_capacity(1 << 16, std::io::stdout().lock());
    let written = serde_json::to_writer(&mut out, value)
        .map_err(std::io::Error::from)
        .and_then(|()| writeln!(out))
        .and_then(|()| out.flush());
    // What print! does when stdout fails.
    if let Err(e) = written {
        panic!("failed printing to stdout: {e}");
    }
}

/// What [`emit`] prints.
fn rendered<T: serde::Serialize + ?Sized>(
    json: bool,
    value: &T,
    human: impl FnOnce(&T) -> String,
) -> String {
    if json {
        let mut line = serde_json::to_string(value).expect("vpmctl's own types serialise");
        line.push('\n');
        line
    } else {
        human(value)
    }
}

fn main() -> ExitCode {
    let cli = match cli::parse() {
        Ok(cli) => cli,
        Err(e) => {
            // --help and --version are not errors.
            let code = if e.use_stderr() {
                error::exit::USAGE
            } else {
                0
            };
            let _ = e.print();
            return ExitCode::from(code as u8);
        }
    };
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vpmctl: {e}");
            ExitCode::from(e.exit_code() as u8)
        }
    }
}
