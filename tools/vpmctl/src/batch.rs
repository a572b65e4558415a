//! `vpmctl batch`: many commands over one connection, with runs of `add`
//! lines pipelined.

use std::collections::HashSet;
use std::path::Path;

use clap::{CommandFactory, FromArgMatches, ValueEnum};

use crate::aid::Aid;
use crate::cli::{Cli, Command, PeerCmd};
use crate::connection::Connection;
use crate::error::{Error, Result};
use crate::mapping;
use crate::proto::Proto;
use crate::{read_input, render_added, rendered, run_one};

/// Most `add` lines a batch sends in one write.
const PIPELINE: usize = 64;

/// One command of a batch file.
#[derive(Debug)]
struct Line {
    /// 1-based, for error messages.
    number: usize,
    cmd: Command,
    /// The line's `--json`, or the batch's.
    json: bool,
}

/// The (AID, port) pairs that exist.  A pipelined window cannot stop at
/// its first failure (the kernel runs every request of a write), so the
/// adds after it are undone; this tells an add that created its
/// allocation from one that found it there already and must not undo it.
type Live = HashSet<(Aid, u16)>;

/// Runs one batch file; see [`Command::Batch`].  `json` (the batch's
/// own `--json`) applies to every line.
pub fn run(file: &Path, json: bool) -> Result<()> {
    let lines = parse(&read_input(file)?, json)?;
    execute(&Connection::open()?, &lines)
}

/// Every command of a batch file.  All are parsed before any runs, so a
/// typo runs nothing.
fn parse(text: &str, json: bool) -> Result<Vec<Line>> {
    // One parser serves every line: building clap's command tree per line
    // cost more than the kernel's work for the request.
    let mut parser = Cli::command();
    let mut lines = Vec::new();
    for (i, text) in text.lines().enumerate() {
        let text = text.trim();
        if text.is_empty() || text.starts_with('#') {
            continue;
        }
        let number = i + 1;
        let cli = match plain_add(text) {
            Some(cli) => cli,
            None => parse_line(&mut parser, number, text)?,
        };
        lines.push(Line {
            number,
            cmd: cli.command,
            json: json || cli.json,
        });
    }
    Ok(lines)
}

/// An `add` line in the plain form generated batch files use: `add`
/// followed by `--aid A`, `--port P` and optionally `--proto X`,
/// `--anon-port N` and `--json`, each at most once, every value valid.
/// `None` for anything else (another command, `--opt=value`, a bad
/// value), which [`parse_line`] then parses and explains.
///
/// Why not clap for these too: under emulation, clap's parse of one line
/// costs more than the kernel's whole work for the allocation (about
/// 130 us a line in the benchmark's TCG guest, most of 10,000
/// allocations' time).  The unit tests hold this to clap's result for the
/// same line.
fn plain_add(text: &str) -> Option<Cli> {
    let mut words = text.split_whitespace();
    if words.next()? != "add" {
        return None;
    }
    let (mut aid, mut port, mut proto, mut anon, mut json) = (None, None, None, None, false);
    while let Some(flag) = words.next() {
        if flag == "--json" && !json {
            json = true;
            continue;
        }
        let value = words.next()?;
        if value.starts_with('-') {
            return None;
        }
        match flag {
            "--aid" if aid.is_none() => aid = Some(value.parse::<Aid>().ok()?),
            "--port" if port.is_none() => port = Some(nonzero_port(value)?),
            "--proto" if proto.is_none() => proto = Some(Proto::from_str(value, false).ok()?),
            "--anon-port" if anon.is_none() => anon = Some(nonzero_port(value)?),
            _ => return None,
        }
    }
    Some(Cli {
        json,
        command: Command::Add {
            aid: aid?,
            port: port?,
            proto: proto.unwrap_or_default(),
            anon_port: anon,
            wait: None,
            cgroup: None,
        },
    })
}

/// A port number as clap's `value_parser!(u16).range(1..)` accepts it.
fn nonzero_port(s: &str) -> Option<u16> {
    s.parse::<u16>().ok().filter(|&p| p != 0)
}

fn parse_line(parser: &mut clap::Command, number: usize, text: &str) -> Result<Cli> {
    let bad =
        |e: clap::Error| Error::Batch(format!("line {number}: {}", e.render().to_string().trim()));
    let args = std::iter::once("vpmctl").chain(text.split_whitespace());
    let matches = parser.try_get_matches_from_mut(args).map_err(bad)?;
    let cli = Cli::from_arg_matches(&matches).map_err(bad)?;
    if matches!(
        cli.command,
        Command::Batch { .. }
            | Command::Restore { .. }
            | Command::Monitor
            | Command::Exec { .. }
            | Command::Keep { .. }
            | Command::Metrics { .. }
            | Command::Agent { .. }
            | Command::Peer {
                cmd: PeerCmd::Show { .. }
            }
            | Command::Completions { .. }
            | Command::Man { .. }
    ) {
        return Err(Error::Batch(format!(
            "line {number}: batch, restore, monitor, exec, metrics, agent, peer show, completions and man do not run inside a batch"
        )));
    }
    Ok(cli)
}

/// Runs `lines` in order, stopping at the first failure.
fn execute(conn: &Connection, lines: &[Line]) -> Result<()> {
    // Only a window of two or more adds needs to know what exists.
    let mut live: Option<Live> = if lines.iter().filter(|l| pipelined(&l.cmd)).count() > 1 {
        Some(
            mapping::list(conn)?
                .into_iter()
                .map(|m| (m.aid, m.port))
                .collect(),
        )
    } else {
        None
    };
    let mut rest = lines;
    while let Some(line) = rest.first() {
        let window = rest
            .iter()
            .take(PIPELINE)
            .take_while(|l| pipelined(&l.cmd))
            .count();
        match live.as_mut() {
            Some(live) if window > 1 => {
                add_window(conn, &rest[..window], live)?;
                rest = &rest[window..];
            }
            _ => {
                track(live.as_mut(), &line.cmd);
                run_one(conn, line.cmd.clone(), line.json).map_err(|e| e.at_line(line.number))?;
                rest = &rest[1..];
            }
        }
    }
    Ok(())
}

/// Whether a batch line can go out with its neighbours: an `add` that does
/// not wait (a waiting one would hold up every request behind it).
fn pipelined(cmd: &Command) -> bool {
    matches!(cmd, Command::Add { wait: None, .. })
}

/// Keeps the batch's record of which (AID, port) pairs exist up to date.
fn track(live: Option<&mut Live>, cmd: &Command) {
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
fn add_window(conn: &Connection, window: &[Line], live: &mut Live) -> Result<()> {
    let mut reqs = Vec::new();
    for line in window {
        if let Command::Add {
            aid,
            port,
            proto,
            anon_port,
            cgroup,
            ..
        } = &line.cmd
        {
            let opts = mapping::AddOpts {
                proto: Some(*proto),
                anon: *anon_port,
                wait_ms: None,
                cgroup: cgroup.clone(),
            };
            reqs.push((aid, *port, opts));
        }
    }
    let refs: Vec<_> = reqs.iter().map(|(a, p, o)| (*a, *p, o)).collect();
    let outcomes = mapping::add_many(conn, &refs)?;
    let mut failed = None;
    // One write for the window: stdout is line-buffered, and a write(2)
    // per line cost more than the allocations themselves.
    let mut out = String::new();
    for (line, outcome) in window.iter().zip(outcomes) {
        let Command::Add { aid, port, .. } = &line.cmd else {
            continue;
        };
        let key = (aid.clone(), *port);
        match (&failed, outcome) {
            (None, Ok(m)) => {
                live.insert(key);
                out.push_str(&rendered(line.json, &m, render_added));
            }
            (None, Err(e)) => failed = Some(e.at_line(line.number)),
            // After the failure: undo what this line created.
            (Some(_), Ok(_)) if live.insert(key.clone()) => {
                let _ = mapping::del(conn, &key.0, key.1);
                live.remove(&key);
            }
            (Some(_), _) => {}
        }
    }
    print!("{out}");
    failed.map_or(Ok(()), Err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skips_blank_and_comment_lines_and_numbers_the_rest() {
        let lines = parse(
            "# setup\n\nadd --aid a --port 9000\n  del --aid a --port 9000  \n",
            false,
        )
        .unwrap();
        let numbers: Vec<_> = lines.iter().map(|l| l.number).collect();
        assert_eq!(numbers, [3, 4]);
        assert!(pipelined(&lines[0].cmd));
        assert!(!pipelined(&lines[1].cmd));
    }

    #[test]
    fn a_typo_anywhere_runs_nothing_and_names_its_line() {
        let e = parse("add --aid a --port 9000\nadd --aid a --prot 9000\n", false).unwrap_err();
        assert!(e.to_string().starts_with("batch: line 2: error:"), "{e}");
    }

    #[test]
    fn refuses_commands_that_cannot_run_inside() {
        for cmd in [
            "batch x",
            "restore x",
            "monitor",
            "exec --aid a --port 9000 -- true",
            "keep --aid a --cgroup-parent /x --pid 1",
            "metrics",
            "metrics --listen 127.0.0.1:9477",
            "completions bash",
            "man /tmp",
            "peer show",
            "agent --config /x",
        ] {
            let e = parse(cmd, false).unwrap_err();
            assert!(
                e.to_string().contains(
                    "line 1: batch, restore, monitor, exec, metrics, agent, peer show, completions and man do not run"
                ),
                "{e}"
            );
        }
        // The kernel's peer sets are ordinary commands.
        assert!(parse("peer add --aid a --port 9000 --address 192.0.2.1", false).is_ok());
        assert!(parse("peer del --aid a --port 9000 --address 2001:db8::1", false).is_ok());
    }

    #[test]
    fn json_of_the_batch_or_of_the_line() {
        let json = |text, batch| parse(text, batch).unwrap()[0].json;
        assert!(!json("show", false));
        assert!(json("show", true));
        assert!(json("show --json", false));
        assert!(json("--json show", false));
    }

    #[test]
    fn waiting_adds_are_not_pipelined() {
        let lines = parse("add --aid a --port 9000 --wait 5s", false).unwrap();
        assert!(!pipelined(&lines[0].cmd));
    }

    /// The fast path gives exactly what clap gives, or leaves the line
    /// to clap; and it does take the plain forms.
    #[test]
    fn plain_adds_parse_as_clap_parses_them() {
        let lines = [
            "add --aid a --port 9000",
            "add --port 9000 --aid big10000",
            "add --aid a --port 9000 --proto udp",
            "add --aid a --port 9000 --proto tcp --anon-port 20001 --json",
            "add --json --aid a.b_c-d --port 65535 --proto both",
            "add --aid a --port 0443",
            "add --aid a --port +443",
            "add --aid a --port 0",
            "add --aid a --port 65536",
            "add --aid a --port -1",
            "add --aid a --port x",
            "add --aid a",
            "add --port 9000",
            "add --aid a --aid b --port 9000",
            "add --aid a --port 9000 --port 9001",
            "add --aid a --port 9000 --proto UDP",
            "add --aid a --port 9000 --proto sctp",
            "add --aid a --port 9000 --anon-port 0",
            "add --aid --port 9000",
            "add --aid=a --port=9000",
            "add --aid a --port 9000 --wait 5s",
            "add --aid a --port 9000 --cgroup /x",
            "add --aid a --port 9000 --json --json",
            "add --aid a/b --port 9000",
            "add --aid 0123456789012345678901234567890123 --port 9000",
            "add --aid a --port 9000 extra",
            "add --aid a --port 9000 --",
            "add",
            "--json add --aid a --port 9000",
            "del --aid a --port 9000",
        ];
        let mut parser = Cli::command();
        let mut fast = 0;
        for line in lines {
            let clap =
                parse_line(&mut parser, 1, line).map(|c| format!("{:?}", (c.json, c.command)));
            if let Some(c) = plain_add(line) {
                fast += 1;
                assert_eq!(
                    Ok(format!("{:?}", (c.json, c.command))),
                    clap.map_err(|e| e.to_string()),
                    "{line}"
                );
            }
        }
        assert_eq!(fast, 7, "the plain forms take the fast path");
    }
}
