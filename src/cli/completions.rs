//! `kiln completions SHELL`: a completion script generated from the clap definitions, so it
//! always matches the commands and flags of this binary.

use std::io::Write;

use clap::{Args, CommandFactory};
use clap_complete::Shell;
use kiln::Result;

use super::Cli;

#[derive(Debug, Args)]
pub(super) struct CompletionsArgs {
    /// Shell to complete for: bash (`source <(kiln completions bash)`), zsh, fish, elvish or
    /// powershell.
    #[arg(value_enum)]
    shell: Shell,
}

pub(super) fn completions(args: &CompletionsArgs) -> Result<()> {
    // clap_complete panics when its writer fails; render into memory, then write, so a
    // closed pipe is an ordinary error.
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut Cli::command(), "kiln", &mut script);
    let mut out = std::io::stdout().lock();
    out.write_all(&script)?;
    out.flush()?;
    Ok(())
}
