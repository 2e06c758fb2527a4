//! The `kiln` command: parse the arguments, run, render errors, map them to exit codes.
#![forbid(unsafe_code)]

mod cli;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let args = match cli::Cli::try_parse() {
        Ok(args) => args,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            // Help and version go to stdout; a closed pipe there is not an error.
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    cli::install_interrupt_handler();
    match cli::run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(report) if cli::is_broken_pipe(&report) => ExitCode::SUCCESS,
        Err(report) => {
            cli::render_error(&report);
            ExitCode::from(cli::exit_code(&report))
        }
    }
}
