//! `kiln inspect`, `kiln verify` and `kiln sign` for OVF packages (`.ova`, or an `.ovf`
//! with its files).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use clap::Args;
use kiln::container::inspect;
use kiln::container::profile::Profile;
use kiln::container::sign::sign_package;
use kiln::container::signature::PackageSigner;
use kiln::container::verify::{self, VerifyOptions, package};
use kiln::io::output::OutputSet;
use kiln::{Error, ErrorKind, Result};

use super::OutputMode;

#[derive(Debug, Args)]
pub(super) struct InspectArgs {
    /// Output style.
    #[arg(long, value_enum, default_value_t)]
    output: OutputMode,
    /// The package: an .ova, or an .ovf with its files beside it.
    file: PathBuf,
}

/// `kiln verify`: an OVF package, or an EC2 bundle (whose options are the bundle's).
#[derive(Debug, Args)]
pub(super) struct VerifyAnyArgs {
    /// Output style (OVF packages).
    #[arg(long, value_enum, default_value_t)]
    output: OutputMode,
    /// OVF packages: also check the rules of these importers (comma separated): vmware,
    /// esxi-6.7 (<= vmx-14), esxi-7 (<= vmx-19), esxi-8 (<= vmx-21), workstation-17
    /// (<= vmx-21), virtualbox-7 (alias virtualbox), aws-vmimport, glance (one disk),
    /// generic. Quotes the importer's own error where it has one
    #[arg(long = "target", value_name = "T[,T...]", value_delimiter = ',')]
    targets: Vec<String>,
    #[command(flatten)]
    target: super::bundle::VerifyArgs,
}

#[derive(Debug, Args)]
pub(super) struct SignArgs {
    /// RSA private key, PEM (PKCS#8 or PKCS#1, unencrypted, at least 2048 bits).
    #[arg(long, value_name = "PEM")]
    key: PathBuf,
    /// The key's X.509 certificate, PEM, followed by any intermediates.
    #[arg(long, value_name = "PEM")]
    cert: PathBuf,
    /// Write the signed OVA here instead of replacing the input.
    #[arg(short = 'o', value_name = "OUT")]
    output: Option<PathBuf>,
    /// Replace OUT if it exists.
    #[arg(long)]
    force: bool,
    /// The package: an .ova, or an .ovf (its .cert is written beside it).
    file: PathBuf,
}

/// True when `path` names an OVF package: an `.ovf`, or a tar archive (an OVA).
pub(super) fn is_package(path: &Path) -> bool {
    if path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("ovf"))
    {
        return true;
    }
    let Ok(file) = std::fs::File::open(path) else {
        return false;
    };
    kiln::io::FileSource::new(file)
        .ok()
        .and_then(|src| kiln::container::tar::reader::is_tar(&src).ok())
        .unwrap_or(false)
}

fn not_a_package(path: &Path) -> Error {
    Error::invalid_input("not an OVA/OVF package (give an .ova archive or an .ovf descriptor)")
        .with_path(path)
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

pub(super) fn inspect(args: &InspectArgs) -> Result<()> {
    if !is_package(&args.file) {
        return Err(not_a_package(&args.file));
    }
    let pkg = package::open(&args.file)?;
    let Some(summary) = inspect::summarize(&pkg, now()) else {
        let why = pkg
            .findings
            .first()
            .map_or("the descriptor cannot be read".to_string(), |f| {
                f.message.clone()
            });
        return Err(Error::new(ErrorKind::InvalidImage, why).with_path(&args.file));
    };
    let name = args.file.file_name().map_or_else(
        || args.file.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    let text = match args.output {
        OutputMode::Human => summary.render(&name),
        OutputMode::Json => {
            let mut value =
                serde_json::to_value(&summary).map_err(|e| Error::new(ErrorKind::Io, e))?;
            if let Some(map) = value.as_object_mut() {
                map.insert("package".into(), name.into());
            }
            json(&value)?
        }
    };
    print(&text)
}

pub(super) fn verify(args: &VerifyAnyArgs) -> Result<()> {
    let file = &args.target.file;
    if !is_package(file) {
        if super::bundle::is_manifest(file)? {
            return super::bundle::verify(&args.target);
        }
        return Err(Error::invalid_input(
            "not an OVA/OVF package, and not an EC2 bundle manifest (expected an .ova tar archive, an .ovf descriptor, or XML whose root element is <manifest>)",
        )
        .with_path(file));
    }
    if args.target.cert.is_some() || args.target.source.is_some() {
        return Err(Error::invalid_input(
            "--cert and --source are for EC2 bundles; an OVF package carries its own certificate",
        )
        .with_path(file));
    }
    let targets = profiles(&args.targets)?;
    let report = verify::verify_package(
        file,
        &VerifyOptions {
            now: now(),
            targets,
        },
    )?;
    let text = match args.output {
        OutputMode::Human => report.render(),
        OutputMode::Json => json(&report)?,
    };
    print(&text)?;
    if report.ok {
        return Ok(());
    }
    let message = format!("the package failed verification ({} errors)", report.errors);
    Err(Error::new(ErrorKind::InvalidImage, message).with_path(file))
}

/// The profiles `--target` names; an unknown one is an error with the closest name.
fn profiles(names: &[String]) -> Result<Vec<Profile>> {
    let known = Profile::names();
    (names.iter().map(|n| n.trim()))
        .map(|n| {
            Profile::from_name(n).ok_or_else(|| {
                let hint = kiln::suggest::closest(n, &known).map_or_else(
                    || format!("; known: {}", known.join(", ")),
                    |k| format!("; did you mean `{k}`?"),
                );
                Error::invalid_input(format!("--target: unknown target `{n}`{hint}"))
            })
        })
        .collect()
}

pub(super) fn sign(args: &SignArgs) -> Result<()> {
    if !is_package(&args.file) {
        return Err(not_a_package(&args.file));
    }
    let signer = PackageSigner::load(&args.key, &args.cert)?;
    let is_ovf = args
        .file
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("ovf"));
    let mut out = match (&args.output, is_ovf) {
        (Some(_), true) => {
            return Err(Error::invalid_input(
                "-o is for OVAs; an .ovf's certificate goes beside it",
            )
            .with_path(&args.file));
        }
        (Some(path), false) => OutputSet::new(path, args.force),
        (None, true) => OutputSet::new(&args.file.with_extension("cert"), true),
        (None, false) => OutputSet::new(&args.file, true),
    };
    let signed = sign_package(&args.file, &signer, &mut out)?;
    let written = out.commit()?;
    let target = written
        .first()
        .map_or(String::new(), |p| p.display().to_string());
    print(&format!(
        "signed {} with {}: {target}\n",
        signed.manifest, signed.cert
    ))
}

fn json(value: &impl serde::Serialize) -> Result<String> {
    let mut text = serde_json::to_string_pretty(value).map_err(|e| Error::new(ErrorKind::Io, e))?;
    text.push('\n');
    Ok(text)
}

fn print(text: &str) -> Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())?;
    out.flush()?;
    Ok(())
}
