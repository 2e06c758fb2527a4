//! `kiln extract X.ova -d DIR`: the disks (or every member, or named members) of an OVA
//! written into a directory, each checked against the package's manifest.

use std::path::PathBuf;

use clap::Args;
use kiln::Result;
use kiln::container::extract::{ExtractOptions, extract as extract_members};

#[derive(Debug, Args)]
#[command(
    after_help = "By default only the disk files the descriptor references are written; \
    --all writes every member (descriptor, manifest, certificate, disks, ISOs), --member \
    only the ones named. Members are written only directly in DIR: the archive is refused \
    if a name holds `/`, `..` or NUL, or is a link or device. Each file is written as \
    NAME.partial and renamed when complete; when the manifest lists the member, a digest \
    mismatch removes it and exits non-zero naming the member. Existing files are refused \
    unless --force (a symlink in DIR is replaced, never written through)."
)]
pub(super) struct ExtractArgs {
    /// The OVA to read.
    #[arg(value_name = "OVA")]
    ova: PathBuf,
    /// Directory to write into (created when missing).
    #[arg(short = 'd', long = "directory", value_name = "DIR")]
    dir: PathBuf,
    /// Every member, not only the disks.
    #[arg(long, conflicts_with = "members")]
    all: bool,
    /// Only this member (repeatable).
    #[arg(long = "member", value_name = "NAME")]
    members: Vec<String>,
    /// Replace files that already exist in DIR.
    #[arg(long)]
    force: bool,
    /// Print nothing on success.
    #[arg(short, long)]
    quiet: bool,
}

pub(super) fn extract(args: &ExtractArgs) -> Result<()> {
    let opts = ExtractOptions {
        all: args.all,
        members: args.members.clone(),
        force: args.force,
    };
    let done = extract_members(&args.ova, &args.dir, &opts)?;
    if !args.quiet {
        for m in done {
            let check = m.checked.map_or("not in the manifest".to_string(), |a| {
                format!("{a} matches the manifest")
            });
            println!("{} ({} bytes, {check})", m.path.display(), m.len);
        }
    }
    Ok(())
}
