//! `kiln seed` (cloud-init NoCloud seeds) and `kiln convert -O iso DIR out.iso`.

use std::path::{Path, PathBuf};

use clap::Args;
use kiln::disk::KvOptions;
use kiln::disk::iso::{self, IsoWriter};
use kiln::seed::{self, SeedFormat, SeedSpec};
use kiln::{BuildContext, Error, Result};

#[derive(Debug, Args)]
pub(super) struct SeedArgs {
    /// user-data file (`#cloud-config` YAML, a `#!` script, MIME multipart, `#include`...).
    #[arg(long, value_name = "FILE")]
    user_data: Option<PathBuf>,
    /// meta-data file (YAML); generated with a stable instance-id when omitted.
    #[arg(long, value_name = "FILE")]
    meta_data: Option<PathBuf>,
    /// network-config file (YAML, version 1 or 2).
    #[arg(long, value_name = "FILE")]
    network_config: Option<PathBuf>,
    /// vendor-data file (same rules as user-data).
    #[arg(long, value_name = "FILE")]
    vendor_data: Option<PathBuf>,
    /// Host name written to meta-data as local-hostname.
    #[arg(long, value_name = "NAME")]
    hostname: Option<String>,
    /// File of SSH public keys (authorized_keys format) for meta-data's public-keys. Repeatable.
    #[arg(long, value_name = "FILE")]
    ssh_key: Vec<PathBuf>,
    /// Seed image type: iso (label cidata) or vfat (label CIDATA).
    #[arg(short = 'f', value_name = "FMT", default_value = "iso", value_parser = parse_seed_format)]
    format: SeedFormat,
    /// Output image.
    #[arg(short = 'o', value_name = "FILE")]
    output: PathBuf,
    /// Replace the output if it exists.
    #[arg(long)]
    force: bool,
}

fn parse_seed_format(s: &str) -> std::result::Result<SeedFormat, String> {
    s.parse().map_err(|e: Error| e.to_string())
}

fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| Error::io(e).with_path(path))
}

/// Reads an optional file and checks it with `check`, naming the file on error.
fn read_checked(
    path: Option<&PathBuf>,
    check: impl Fn(&[u8]) -> Result<()>,
) -> Result<Option<Vec<u8>>> {
    let Some(path) = path else { return Ok(None) };
    let bytes = read(path)?;
    check(&bytes).map_err(|e| e.with_path(path))?;
    Ok(Some(bytes))
}

pub(super) fn seed(args: &SeedArgs) -> Result<()> {
    let user_data = read_checked(args.user_data.as_ref(), |b| {
        seed::check_user_data("user-data", b)
    })?;
    let vendor_data = read_checked(args.vendor_data.as_ref(), |b| {
        seed::check_user_data("vendor-data", b)
    })?;
    let network_config = read_checked(args.network_config.as_ref(), seed::check_network_config)?;
    let meta_data = read_checked(args.meta_data.as_ref(), seed::check_meta_data)?;
    let mut ssh_keys = Vec::new();
    for path in &args.ssh_key {
        let text = String::from_utf8_lossy(&read(path)?).into_owned();
        ssh_keys.extend(seed::parse_ssh_keys(&text).map_err(|e| e.with_path(path))?);
    }
    let spec = SeedSpec {
        user_data: user_data.unwrap_or_default(),
        meta_data,
        network_config,
        vendor_data,
        hostname: args.hostname.clone(),
        ssh_keys,
    };
    // Ids depend on the contents only, so the same inputs give the same seed under any name.
    let ctx = BuildContext::from_env("kiln-seed");
    seed::write_seed(&spec, args.format, &ctx, &args.output, args.force)
}

/// `kiln convert -O iso DIR out.iso`: the directory tree becomes the image.
pub(super) fn iso_from_dir(
    dir: &Path,
    output: &Path,
    options: &KvOptions,
    force: bool,
) -> Result<()> {
    let ctx = context_for(output);
    let options = iso::options_from_kv(options, &ctx.creator)?;
    let mut writer = IsoWriter::new(options)?;
    writer.add_tree(dir)?;
    writer.write_file(&ctx, output, force)?;
    Ok(())
}

/// The output name seeds derived ids, so the same command gives the same bytes.
fn context_for(output: &Path) -> BuildContext {
    let name = output
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    BuildContext::from_env(&name)
}
