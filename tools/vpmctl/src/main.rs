//! vpmctl: control the vpm kernel module over generic netlink.
//!
//! Every command acts on the network namespace vpmctl runs in.

mod connection;
mod error;
mod status;
mod uapi;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::connection::Connection;
use crate::error::Result;

#[derive(Parser, Debug)]
#[command(version, about = "Control vpm, the virtual port multiplexing kernel module")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Show the module version, hooks and counters of this network namespace.
    Status {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Status { json } => {
            let st = status::get(&Connection::open()?)?;
            if json {
                println!("{}", serde_json::to_string(&st).expect("status serialises"));
            } else {
                print!("{}", st.render());
            }
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // --help and --version are not errors.
            let code = if e.use_stderr() { error::exit::USAGE } else { 0 };
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
    use clap::CommandFactory;

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
    fn unknown_command_is_a_usage_error() {
        let err = Cli::try_parse_from(["vpmctl", "frobnicate"]).unwrap_err();
        assert_eq!(err.exit_code(), crate::error::exit::USAGE);
    }
}
