//! vpmctl: control the vpm kernel module over generic netlink.
//!
//! Every command acts on the network namespace vpmctl runs in.

mod attrs;
mod config;
mod connection;
mod error;
mod mapping;
mod monitor;
mod rule;
mod state;
mod status;
mod uapi;

use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

use crate::connection::Connection;
use crate::error::Result;

#[derive(Parser, Debug)]
#[command(
    version,
    about = "Control vpm, the virtual port multiplexing kernel module"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug, Clone)]
enum Command {
    /// Allocate the anonymous port of an AID's fixed port (or show the one it has).
    Add {
        /// Application id: 1-31 characters of A-Z a-z 0-9 . _ -
        #[arg(long, value_parser = mapping::check_aid)]
        aid: String,
        /// The fixed port the application uses.
        #[arg(long, value_parser = clap::value_parser!(u16).range(1..))]
        port: u16,
        /// Protocols to multiplex.
        #[arg(long, value_enum, default_value_t = mapping::Proto::Both)]
        proto: mapping::Proto,
        /// Ask for exactly this anonymous port (restoring a saved state).
        #[arg(long, value_parser = clap::value_parser!(u16).range(1..))]
        anon_port: Option<u16>,
        /// When no port is free, wait this long (e.g. 5s, 500ms; at most
        /// 60s) for one to be released instead of failing at once.
        #[arg(long, value_parser = mapping::parse_wait)]
        wait: Option<u32>,
        /// Local clients in this cgroup v2 (or below it) reach this AID's
        /// instance when no source rule claims them (/sys/fs/cgroup/... or
        /// a path relative to the cgroup2 root).
        #[arg(long, value_parser = mapping::cgroup_path)]
        cgroup: Option<String>,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Source rules: steer a fixed port's packets to an AID by client
    /// address and port.
    Rule {
        #[command(subcommand)]
        cmd: RuleCmd,
    },
    /// Release the allocation of an AID's fixed port.
    Del {
        #[arg(long, value_parser = mapping::check_aid)]
        aid: String,
        #[arg(long, value_parser = clap::value_parser!(u16).range(1..))]
        port: u16,
    },
    /// List the allocations of this network namespace, with their counters.
    Show {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Release every allocation and rule of this network namespace.
    Flush,
    /// Print allocation and configuration changes as they happen (until
    /// interrupted).
    Monitor {
        /// One JSON object per line instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Print the namespace's settings and allocations as JSON.
    Save,
    /// Recreate a saved state (same anonymous ports); all or nothing.
    Restore {
        /// A file written by `vpmctl save` ("-" for standard input).
        file: std::path::PathBuf,
    },
    /// Run the commands in FILE ("-" for standard input), one per line,
    /// over one connection.  Every line is parsed before any runs; running
    /// stops at the first failure, naming its line.
    Batch {
        /// Commands as on the command line without "vpmctl"; blank lines
        /// and lines starting with # are skipped.
        file: std::path::PathBuf,
    },
    /// Show or change the anonymous port range and the entry limit.
    Config {
        /// New anonymous port range, LO-HI.
        #[arg(long, value_parser = config::parse_range)]
        range: Option<(u16, u16)>,
        /// New limit on allocations.
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
        max_entries: Option<u32>,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Show the module version, hooks and counters of this network namespace.
    Status {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand, Debug, Clone)]
enum RuleCmd {
    /// Packets for PORT from FROM belong to AID; without --from, AID is
    /// the port's default.  The longest prefix wins, then a rule with a
    /// source port; a rule with the same FROM is refused.
    Add {
        #[arg(long, value_parser = clap::value_parser!(u16).range(1..))]
        port: u16,
        /// ADDR[/LEN][:PORT], [V6ADDR[/LEN]]:PORT or :PORT.
        #[arg(long, value_parser = rule::Source::parse)]
        from: Option<rule::Source>,
        #[arg(long, value_parser = mapping::check_aid)]
        aid: String,
    },
    /// Remove the rule for PORT and FROM (without --from: the default).
    Del {
        #[arg(long, value_parser = clap::value_parser!(u16).range(1..))]
        port: u16,
        #[arg(long, value_parser = rule::Source::parse)]
        from: Option<rule::Source>,
    },
    /// List the rules of this network namespace.
    Show {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Batch { file } => batch(&file),
        cmd => run_one(&Connection::open()?, cmd),
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

/// Runs one batch file; see [`Command::Batch`].
fn batch(file: &std::path::Path) -> Result<()> {
    let text = read_input(file)?;
    // Parse every line before running any, so a typo runs nothing.  One
    // parser serves every line: building clap's command tree per line
    // cost more than the kernel's work for the request.
    let mut parser = Cli::command();
    let mut cmds = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let args = std::iter::once("vpmctl").chain(line.split_whitespace());
        let bad = |e: clap::Error| {
            error::Error::Batch(format!("line {}: {}", n + 1, e.render().to_string().trim()))
        };
        let matches = parser.try_get_matches_from_mut(args).map_err(bad)?;
        let cmd = Cli::from_arg_matches(&matches).map_err(bad)?.command;
        if matches!(
            cmd,
            Command::Batch { .. } | Command::Restore { .. } | Command::Monitor { .. }
        ) {
            return Err(error::Error::Batch(format!(
                "line {}: batch, restore and monitor do not run inside a batch",
                n + 1
            )));
        }
        cmds.push((n + 1, cmd));
    }
    let conn = Connection::open()?;
    let mut live = if cmds.iter().filter(|(_, c)| pipelined(c)).count() > 1 {
        Some(
            mapping::list(&conn)?
                .into_iter()
                .map(|m| (m.aid, m.port))
                .collect(),
        )
    } else {
        None
    };
    let mut rest = &cmds[..];
    while let Some((line, cmd)) = rest.first() {
        let run = rest
            .iter()
            .take(PIPELINE)
            .take_while(|(_, c)| pipelined(c))
            .count();
        match live.as_mut() {
            Some(live) if run > 1 => {
                add_window(&conn, &rest[..run], live)?;
                rest = &rest[run..];
            }
            _ => {
                track(live.as_mut(), cmd);
                run_one(&conn, cmd.clone()).map_err(|e| e.at_line(*line))?;
                rest = &rest[1..];
            }
        }
    }
    Ok(())
}

/// Most `add` lines a batch sends in one write.
const PIPELINE: usize = 64;

/// Whether a batch line can go out with its neighbours: an `add` that does
/// not wait (a waiting one would hold up every request behind it).
fn pipelined(cmd: &Command) -> bool {
    matches!(cmd, Command::Add { wait: None, .. })
}

/// Keeps the batch's record of which (AID, port) pairs exist up to date.
fn track(live: Option<&mut std::collections::HashSet<(String, u16)>>, cmd: &Command) {
    let Some(live) = live else { return };
    match cmd {
        Command::Add { aid, port, .. } => {
            live.insert((aid.clone(), *port));
        }
        Command::Del { aid, port } => {
            live.remove(&(aid.clone(), *port));
        }
        Command::Flush => live.clear(),
        _ => {}
    }
}

/// Runs consecutive `add` lines in one write.  Like running them one by
/// one, the batch stops at the first failure and nothing after it stays
/// done: allocations that later lines of the window created are released
/// again (the kernel runs every request of a write).
fn add_window(
    conn: &Connection,
    window: &[(usize, Command)],
    live: &mut std::collections::HashSet<(String, u16)>,
) -> Result<()> {
    let mut reqs = Vec::new();
    for (_, cmd) in window {
        if let Command::Add {
            aid,
            port,
            proto,
            anon_port,
            cgroup,
            ..
        } = cmd
        {
            let opts = mapping::AddOpts {
                proto: Some(*proto),
                anon: *anon_port,
                wait_ms: None,
                cgroup: cgroup.clone(),
            };
            reqs.push((aid.as_str(), *port, opts));
        }
    }
    let refs: Vec<_> = reqs.iter().map(|(a, p, o)| (*a, *p, o)).collect();
    let outcomes = mapping::add_many(conn, &refs)?;
    let mut failed = None;
    for ((line, cmd), outcome) in window.iter().zip(outcomes) {
        let Command::Add {
            aid, port, json, ..
        } = cmd
        else {
            continue;
        };
        let key = (aid.clone(), *port);
        match (&failed, outcome) {
            (None, Ok(m)) => {
                live.insert(key);
                emit(*json, &m, render_added);
            }
            (None, Err(e)) => failed = Some(e.at_line(*line)),
            // After the failure: undo what this line created.
            (Some(_), Ok(_)) if live.insert(key.clone()) => {
                let _ = mapping::del(conn, &key.0, key.1);
                live.remove(&key);
            }
            (Some(_), _) => {}
        }
    }
    failed.map_or(Ok(()), Err)
}

fn run_one(conn: &Connection, cmd: Command) -> Result<()> {
    match cmd {
        Command::Batch { .. } => unreachable!("handled by run"),
        Command::Add {
            aid,
            port,
            proto,
            anon_port,
            wait,
            cgroup,
            json,
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
            RuleCmd::Show { json } => emit(json, &rule::list(conn)?, |r| rule::render(r)),
        },
        Command::Show { json } => emit(json, &mapping::list(conn)?, |m| mapping::render(m)),
        Command::Flush => mapping::flush(conn)?,
        Command::Monitor { json } => monitor::run(conn, json)?,
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
        Command::Config {
            range,
            max_entries,
            json,
        } => {
            if range.is_some() || max_entries.is_some() {
                config::set(conn, range, max_entries)?;
            }
            emit(json, &config::get(conn)?, config::Config::render);
        }
        Command::Status { json } => emit(json, &status::get(conn)?, status::Status::render),
    }
    Ok(())
}

/// What `add` prints.
fn render_added(m: &mapping::Mapping) -> String {
    format!(
        "{} {} {} -> {}\n",
        m.aid,
        m.port,
        m.proto.join(","),
        m.anon_port
    )
}

/// Prints `value` as one line of JSON, or as `human` renders it.
fn emit<T: serde::Serialize + ?Sized>(json: bool, value: &T, human: impl FnOnce(&T) -> String) {
    if json {
        println!(
            "{}",
            serde_json::to_string(value).expect("vpmctl's own types serialise")
        );
    } else {
        print!("{}", human(value));
    }
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn status_takes_json() {
        let cli = Cli::try_parse_from(["vpmctl", "status", "--json"]).unwrap();
        assert!(matches!(cli.command, Command::Status { json: true }));
    }

    #[test]
    fn add_rejects_port_zero_and_bad_aids() {
        assert!(Cli::try_parse_from(["vpmctl", "add", "--aid", "a", "--port", "0"]).is_err());
        assert!(Cli::try_parse_from(["vpmctl", "add", "--aid", "a b", "--port", "1"]).is_err());
        let cli = Cli::try_parse_from(["vpmctl", "add", "--aid", "a", "--port", "9000"]).unwrap();
        assert!(matches!(
            cli.command,
            Command::Add {
                proto: mapping::Proto::Both,
                anon_port: None,
                ..
            }
        ));
    }

    #[test]
    fn rule_commands() {
        let cli = Cli::try_parse_from([
            "vpmctl",
            "rule",
            "add",
            "--port",
            "9000",
            "--from",
            "10.0.0.0/8",
            "--aid",
            "a",
        ])
        .unwrap();
        assert!(matches!(
            cli.command,
            Command::Rule {
                cmd: RuleCmd::Add {
                    port: 9000,
                    from: Some(_),
                    ..
                }
            }
        ));
        let cli =
            Cli::try_parse_from(["vpmctl", "rule", "add", "--port", "9000", "--aid", "a"]).unwrap();
        assert!(matches!(
            cli.command,
            Command::Rule {
                cmd: RuleCmd::Add { from: None, .. }
            }
        ));
        assert!(Cli::try_parse_from([
            "vpmctl", "rule", "add", "--port", "9000", "--from", "x", "--aid", "a"
        ])
        .is_err());
    }

    #[test]
    fn unknown_command_is_a_usage_error() {
        let err = Cli::try_parse_from(["vpmctl", "frobnicate"]).unwrap_err();
        assert_eq!(err.exit_code(), crate::error::exit::USAGE);
    }
}
