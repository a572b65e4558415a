//! vpm-loadgen: see the library's documentation (`src/lib.rs`) for usage,
//! output and exit codes.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = vpm_loadgen::cli::Cli::parse();
    match vpm_loadgen::run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("vpm-loadgen: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}
