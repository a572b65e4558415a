//! vpm-loadgen: a TCP connection-setup-rate load generator.
//!
//! Built for vpm's packet benchmarks (`tests/bench/`), where a Python
//! client is too slow under emulation. It measures how many TCP
//! connections per second can be opened and closed through a port, not
//! throughput: each connection carries at most one byte.
//!
//! # Usage
//!
//! ```text
//! vpm-loadgen serve   --listen ADDR:PORT [--threads N] [--duration SECS]
//! vpm-loadgen connect --to ADDR:PORT --duration SECS [--threads N]
//!                     [--source ADDR] [--write] [--rst] [--connect-timeout MS]
//! ```
//!
//! IPv6 addresses are written in brackets: `[::1]:8080`.
//!
//! `serve` listens (backlog 4096, capped by `net.core.somaxconn`), then
//! prints `ready` alone on a line of stdout; scripts wait for that line.
//! The address it listens on (useful with port 0) goes to stderr as
//! `vpm-loadgen: listening on ADDR:PORT`. Each of its N threads accepts
//! connections and, for each, reads until one byte or end of file (at
//! most 2 s) and closes it. Without `--duration` it runs until killed;
//! with it, it exits after that many seconds and prints one line of JSON:
//! `{"accepted": n, "seconds": s, "threads": t}`.
//!
//! `connect` runs N threads for `--duration` seconds; each loops
//! socket → (bind to `--source`) → connect → (write one byte if
//! `--write`) → close. At the end it prints ONE line of JSON on stdout:
//!
//! ```text
//! {"connections":n,"seconds":s,"rate":r,"errors":{"refused":0,"timeout":0,
//!  "reset":0,"addr_unavailable":0,"other":0},"threads":t}
//! ```
//!
//! `connections` counts attempts whose whole sequence succeeded; `rate`
//! is `connections / seconds`; `seconds` is measured, not the one asked
//! for. Every failed attempt counts once in `errors`, by kind:
//! `refused` (ECONNREFUSED: nothing listens), `timeout` (no answer within
//! `--connect-timeout`, or ETIMEDOUT), `reset` (ECONNRESET, ECONNABORTED,
//! EPIPE), `addr_unavailable` (EADDRNOTAVAIL, EADDRINUSE: out of local
//! ports, see below) and `other`. The first error of each kind is also
//! described on stderr. An attempt still in progress when the duration
//! ends is abandoned and counted nowhere.
//!
//! # Why `--rst`
//!
//! By default a connection is closed normally (SO_LINGER off): the client
//! sends FIN first, so its side of each connection stays in TIME_WAIT for
//! 60 s and keeps its local port. With the default port range
//! (32768–60999, about 28,000 ports) that caps a sustained rate at about
//! 470 connections per second between one source address and one
//! destination address and port; past it, connect fails with
//! EADDRNOTAVAIL (`addr_unavailable`). (Linux reuses TIME_WAIT ports on
//! loopback, `net.ipv4.tcp_tw_reuse = 2`, but not across a veth.)
//! `--rst` sets SO_LINGER with a zero timeout before closing, so close
//! sends RST and no side keeps TIME_WAIT: use it to measure setup rate
//! above that cap. It changes what the peer sees (a reset instead of an
//! orderly close), which is why it is not the default.
//!
//! With `--source`, the socket is bound to that address with
//! IP_BIND_ADDRESS_NO_PORT, so the local port is still chosen at connect
//! time per destination rather than at bind time.
//!
//! # Exit codes
//!
//! | code | meaning |
//! |---|---|
//! | 0 | ran to the end (`connect`: at least one connection completed) |
//! | 1 | could not start: the address could not be listened on or bound, a thread could not be started, stdout could not be written |
//! | 2 | usage: a bad or missing argument (clap's own errors also exit 2) |
//! | 3 | `connect` ran and printed its JSON, but no connection completed |
//!
//! Connection errors during a run do not change the exit code by
//! themselves: they are in the JSON for the caller to judge.

pub mod cli;
pub mod connect;
pub mod serve;
pub mod sock;

use std::fmt;

/// Why the tool stopped without doing its job; each maps to an exit code.
#[derive(Debug)]
pub enum Error {
    /// A bad argument (exit 2).
    Usage(String),
    /// Could not start or report (exit 1).
    Setup(String),
}

impl Error {
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Setup(_) => 1,
            Error::Usage(_) => 2,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Usage(m) | Error::Setup(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for Error {}

/// Exit code for a `connect` run that completed no connection.
pub const EXIT_NO_CONNECTION: u8 = 3;

/// Writes one line to stdout and flushes it, as an `Error::Setup` on failure.
pub fn print_line(line: &str) -> Result<(), Error> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}")
        .and_then(|()| out.flush())
        .map_err(|e| Error::Setup(format!("cannot write to stdout: {e}")))
}

/// Runs a parsed command line; returns the exit code.
pub fn run(cli: cli::Cli) -> Result<u8, Error> {
    match cli.command {
        cli::Command::Serve(a) => serve::run(&a).map(|()| 0),
        cli::Command::Connect(a) => {
            let report = connect::run(&a)?;
            let json = serde_json::to_string(&report)
                .map_err(|e| Error::Setup(format!("cannot encode the report: {e}")))?;
            print_line(&json)?;
            report.describe_errors();
            Ok(if report.connections == 0 {
                EXIT_NO_CONNECTION
            } else {
                0
            })
        }
    }
}
