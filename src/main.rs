//! The `authgate` binary: parse arguments, set up logging, run a command, exit.

#![forbid(unsafe_code)]

mod cli;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let args = cli::Args::parse();
    cli::init_tracing(args.log_format);
    match cli::run(args) {
        Ok(code) => code,
        Err(error) => {
            // The whole chain, one cause per line; config errors are already `FILE:LINE:COL: ...` lines.
            eprintln!("error: {error}");
            for cause in error.chain().skip(1) {
                eprintln!("  caused by: {cause}");
            }
            ExitCode::FAILURE
        }
    }
}
