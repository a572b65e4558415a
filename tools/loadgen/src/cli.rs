//! The command line.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "vpm-loadgen",
    version,
    about = "TCP connection-setup-rate load generator (connect/accept/close loops)",
    after_help = "Exit codes: 0 done; 1 could not start; 2 usage; \
                  3 connect completed no connection (its JSON is still printed)."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Accept connections; read each until one byte or EOF, then close it.
    /// Prints "ready" on stdout once listening.
    Serve(ServeArgs),
    /// Open and close connections in a loop; print one line of JSON.
    Connect(ConnectArgs),
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on, ADDR:PORT (IPv6 as [::1]:PORT; port 0 picks one,
    /// shown on stderr).
    #[arg(long, value_name = "ADDR:PORT", value_parser = parse_listen)]
    pub listen: SocketAddr,
    /// Accepting threads.
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = parse_threads)]
    pub threads: usize,
    /// Exit after this many seconds and print {"accepted", "seconds",
    /// "threads"} as JSON; without it, run until killed.
    #[arg(long, value_name = "SECS", value_parser = parse_secs)]
    pub duration: Option<Duration>,
}

#[derive(Debug, Args)]
pub struct ConnectArgs {
    /// Address to connect to, ADDR:PORT (IPv6 as [::1]:PORT).
    #[arg(long, value_name = "ADDR:PORT", value_parser = parse_target)]
    pub to: SocketAddr,
    /// How long to run, in seconds (fractions allowed).
    #[arg(long, value_name = "SECS", value_parser = parse_secs)]
    pub duration: Duration,
    /// Connecting threads.
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = parse_threads)]
    pub threads: usize,
    /// Local address to connect from (same family as --to).
    #[arg(long, value_name = "ADDR")]
    pub source: Option<IpAddr>,
    /// Write one byte on each connection before closing it.
    #[arg(long)]
    pub write: bool,
    /// Close with SO_LINGER 0: send RST, so no TIME_WAIT holds local ports
    /// (a normal close caps the rate near 470/s per address pair off
    /// loopback; why: src/lib.rs).
    #[arg(long)]
    pub rst: bool,
    /// Give up on one connect after this many milliseconds (counted as
    /// a "timeout" error).
    #[arg(long, value_name = "MS", default_value = "1000", value_parser = parse_ms)]
    pub connect_timeout: Duration,
}

const MAX_THREADS: usize = 1024;

fn parse_addr(s: &str) -> Result<SocketAddr, String> {
    s.parse().map_err(|_| {
        format!("'{s}' is not ADDR:PORT; write e.g. 127.0.0.1:8080, or [::1]:8080 for IPv6")
    })
}

fn parse_listen(s: &str) -> Result<SocketAddr, String> {
    parse_addr(s)
}

fn parse_target(s: &str) -> Result<SocketAddr, String> {
    let a = parse_addr(s)?;
    if a.port() == 0 {
        return Err(format!(
            "'{s}' has port 0; give the port the server listens on"
        ));
    }
    if a.ip().is_unspecified() {
        return Err(format!(
            "'{s}' is the unspecified address; give the address the server listens on"
        ));
    }
    Ok(a)
}

fn parse_threads(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if (1..=MAX_THREADS).contains(&n) => Ok(n),
        _ => Err(format!(
            "'{s}' is not a thread count from 1 to {MAX_THREADS}"
        )),
    }
}

fn parse_secs(s: &str) -> Result<Duration, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 && v <= 86_400.0 => Ok(Duration::from_secs_f64(v)),
        _ => Err(format!(
            "'{s}' is not a duration; give seconds above 0 and at most 86400, e.g. 5 or 0.5"
        )),
    }
}

fn parse_ms(s: &str) -> Result<Duration, String> {
    match s.parse::<u64>() {
        Ok(v) if (1..=600_000).contains(&v) => Ok(Duration::from_millis(v)),
        _ => Err(format!(
            "'{s}' is not a timeout; give milliseconds from 1 to 600000"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::error::ErrorKind;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("vpm-loadgen").chain(args.iter().copied()))
    }

    fn connect(args: &[&str]) -> ConnectArgs {
        match parse(args).expect("parses").command {
            Command::Connect(a) => a,
            c => panic!("not connect: {c:?}"),
        }
    }

    #[test]
    fn cli_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn serve_defaults() {
        match parse(&["serve", "--listen", "127.0.0.1:0"])
            .unwrap()
            .command
        {
            Command::Serve(a) => {
                assert_eq!(a.listen, "127.0.0.1:0".parse().unwrap());
                assert_eq!(a.threads, 1);
                assert_eq!(a.duration, None);
            }
            c => panic!("not serve: {c:?}"),
        }
    }

    #[test]
    fn serve_ipv6_threads_duration() {
        match parse(&[
            "serve",
            "--listen",
            "[::1]:9000",
            "--threads",
            "4",
            "--duration",
            "2.5",
        ])
        .unwrap()
        .command
        {
            Command::Serve(a) => {
                assert_eq!(a.listen, "[::1]:9000".parse().unwrap());
                assert_eq!(a.threads, 4);
                assert_eq!(a.duration, Some(Duration::from_millis(2500)));
            }
            c => panic!("not serve: {c:?}"),
        }
    }

    #[test]
    fn connect_defaults() {
        let a = connect(&["connect", "--to", "127.0.0.1:80", "--duration", "1"]);
        assert_eq!(a.to, "127.0.0.1:80".parse().unwrap());
        assert_eq!(a.duration, Duration::from_secs(1));
        assert_eq!(a.threads, 1);
        assert_eq!(a.source, None);
        assert!(!a.write);
        assert!(!a.rst, "SO_LINGER 0 must be off by default");
        assert_eq!(a.connect_timeout, Duration::from_millis(1000));
    }

    #[test]
    fn connect_all_options() {
        let a = connect(&[
            "connect",
            "--to",
            "[::1]:443",
            "--duration",
            "0.25",
            "--threads",
            "8",
            "--source",
            "::1",
            "--write",
            "--rst",
            "--connect-timeout",
            "250",
        ]);
        assert_eq!(a.to, "[::1]:443".parse().unwrap());
        assert_eq!(a.duration, Duration::from_millis(250));
        assert_eq!(a.threads, 8);
        assert_eq!(a.source, Some("::1".parse().unwrap()));
        assert!(a.write && a.rst);
        assert_eq!(a.connect_timeout, Duration::from_millis(250));
    }

    #[test]
    fn connect_needs_to_and_duration() {
        let e = parse(&["connect", "--to", "127.0.0.1:80"]).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::MissingRequiredArgument);
        let e = parse(&["connect", "--duration", "1"]).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::MissingRequiredArgument);
        let e = parse(&[]).unwrap_err();
        assert_eq!(
            e.kind(),
            ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
        );
    }

    #[test]
    fn bad_values_are_rejected_with_a_hint() {
        for (args, hint) in [
            (
                &["connect", "--to", "::1:80", "--duration", "1"][..],
                "[::1]:8080",
            ),
            (
                &["connect", "--to", "localhost:80", "--duration", "1"],
                "ADDR:PORT",
            ),
            (
                &["connect", "--to", "127.0.0.1:0", "--duration", "1"],
                "port 0",
            ),
            (
                &["connect", "--to", "0.0.0.0:80", "--duration", "1"],
                "unspecified",
            ),
            (
                &["connect", "--to", "127.0.0.1:80", "--duration", "0"],
                "above 0",
            ),
            (
                &["connect", "--to", "127.0.0.1:80", "--duration=-1"],
                "above 0",
            ),
            (
                &["connect", "--to", "127.0.0.1:80", "--duration", "inf"],
                "above 0",
            ),
            (
                &["connect", "--to", "127.0.0.1:80", "--duration", "NaN"],
                "above 0",
            ),
            (
                &[
                    "connect",
                    "--to",
                    "127.0.0.1:80",
                    "--duration",
                    "1",
                    "--threads",
                    "0",
                ],
                "from 1 to",
            ),
            (
                &[
                    "connect",
                    "--to",
                    "127.0.0.1:80",
                    "--duration",
                    "1",
                    "--source",
                    "x",
                ],
                "source",
            ),
            (
                &[
                    "connect",
                    "--to",
                    "127.0.0.1:80",
                    "--duration",
                    "1",
                    "--connect-timeout",
                    "0",
                ],
                "milliseconds",
            ),
            (&["serve", "--listen", "127.0.0.1"], "ADDR:PORT"),
            (
                &["serve", "--listen", "127.0.0.1:1", "--threads", "5000"],
                "from 1 to",
            ),
        ] {
            let e = parse(args).expect_err(&format!("{args:?} must fail"));
            assert_eq!(e.kind(), ErrorKind::ValueValidation, "{args:?}");
            assert_eq!(e.exit_code(), 2, "{args:?}");
            let msg = e.to_string();
            assert!(msg.contains(hint), "{args:?}: {msg}");
        }
    }

    #[test]
    fn unknown_flag_is_rejected() {
        let e = parse(&[
            "connect",
            "--to",
            "127.0.0.1:80",
            "--duration",
            "1",
            "--linger",
        ])
        .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::UnknownArgument);
    }
}
