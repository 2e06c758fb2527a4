//! `kiln man [COMMAND]`: manual pages in roff, generated from the clap definitions so they
//! always match this binary. `kiln man` is kiln(1); `kiln man convert` is kiln-convert(1),
//! the page kiln(1) refers to for that command.

use std::io::Write;

use clap::{Args, CommandFactory};
use kiln::{Error, Result};

use super::Cli;

#[derive(Debug, Args)]
pub(super) struct ManArgs {
    /// Print the page of this command (e.g. `convert`) instead of kiln(1).
    #[arg(value_name = "COMMAND")]
    command: Option<String>,
}

pub(super) fn man(args: &ManArgs) -> Result<()> {
    let mut root = Cli::command();
    // Propagates the version and the `kiln convert` bin names to the subcommands.
    root.build();
    let cmd = match &args.command {
        None => root,
        Some(name) => {
            let Some(sub) = root.find_subcommand(name) else {
                return Err(Error::invalid_input(format!(
                    "kiln has no command `{name}`; `kiln --help` lists them"
                )));
            };
            // build() named it `kiln-NAME` (display name) and `kiln NAME` (bin name).
            sub.clone()
        }
    };
    let mut page = Vec::new();
    clap_mangen::Man::new(cmd).render(&mut page)?;
    let mut out = std::io::stdout().lock();
    out.write_all(&page)?;
    out.flush()?;
    Ok(())
}
