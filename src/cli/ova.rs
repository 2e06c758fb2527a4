//! `kiln ova --disk IMAGE... -o NAME.ova`: a package from disks the user already has, with
//! no spec to write. The options become a spec (shown by `--dry-run`), which the build
//! checks and writes exactly as `kiln build` would; only the package is written (no report,
//! no SHA256SUMS beside it).
//!
//! `kiln ova --from-ovf dir/x.ovf -o y.ova` repacks an OVF another tool wrote: its disks
//! become streamOptimized VMDKs, the descriptor keeps everything but the file and disk
//! attributes ([`kiln::container::from_ovf`]).

use std::path::{Path, PathBuf};

use clap::Args;
use kiln::container::from_ovf::{self, FromOvfOptions};
use kiln::container::manifest::Algorithm;
use kiln::container::package::{Form, file_names};
use kiln::container::signature::PackageSigner;
use kiln::context::BuildContext;
use kiln::io::output::OutputSet;
use kiln::plan::{BuildOptions, Plan};
use kiln::{Error, Result};

use super::progress::BuildProgress;

#[derive(Debug, Args)]
#[command(
    after_help = "Each disk (any format kiln reads) becomes a streamOptimized VMDK in \
    the package, in the order given; the first is the boot disk. NAME.ova is one tar \
    archive; NAME.ovf writes the descriptor, NAME.mf and NAME-diskN.vmdk side by side. The \
    package is what `kiln build` writes for the same settings (see --dry-run for the spec \
    they make): it passes `kiln verify` and imports in VMware and VirtualBox.

With --from-ovf DIR/X.ovf the package is an existing OVF repacked: every file its \
References name is read beside it; each disk (any format kiln reads) becomes a \
streamOptimized VMDK (renamed NAME.vmdk when it was not one), grown to the Disk's \
declared capacity; other files (ISO, NVRAM) are copied unchanged. The descriptor is kept \
byte for byte except File ovf:href/ovf:size and Disk ovf:capacity (in bytes, with \
ovf:capacityAllocationUnits=\"byte\"), ovf:format and ovf:populatedSize; the manifest is \
made anew, after every digest of the source's own manifest (DIR/X.mf, when present) is \
checked. A file in chunks (ovf:chunkSize, X.000000000, ...) is read from its chunks and \
packed whole. Refused, writing nothing: missing files or chunks, hrefs with a path, `..` or a \
URL, compressed files, a disk larger than its declared capacity, a digest the source \
manifest disagrees with."
)]
pub(super) struct OvaArgs {
    /// A disk image (repeat for more disks; the first boots).
    #[arg(
        long = "disk",
        value_name = "IMAGE",
        required_unless_present = "from_ovf"
    )]
    disks: Vec<PathBuf>,
    /// An ISO 9660 image the package carries in a CD-ROM drive on the IDE controller
    /// (repeat for two; NAME-cdrom1.iso, ...).
    #[arg(long = "cdrom", value_name = "ISO")]
    cdroms: Vec<PathBuf>,
    /// Repack this OVF descriptor and the files beside it instead (no --disk or hardware
    /// options: the descriptor says those).
    #[arg(long, value_name = "OVF", conflicts_with_all = [
        "disks", "cdroms", "name", "cpus", "memory", "os", "firmware", "target", "dry_run",
    ])]
    from_ovf: Option<PathBuf>,
    /// The package to write: NAME.ova, or NAME.ovf for loose files.
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    output: PathBuf,
    /// Appliance name in the descriptor (default: the output's file name without extension).
    #[arg(long, value_name = "NAME")]
    name: Option<String>,
    /// Virtual CPUs.
    #[arg(long, value_name = "N", default_value_t = 1)]
    cpus: u16,
    /// Memory, e.g. 4GiB.
    #[arg(long, value_name = "SIZE", default_value = "1GiB")]
    memory: String,
    /// Guest OS: ubuntu-64, ubuntu, debian-64, debian, linux-64, linux, other-64, other.
    #[arg(long, value_name = "OS", default_value = "linux-64")]
    os: String,
    /// Firmware: bios or efi.
    #[arg(long, value_name = "FIRMWARE", default_value = "bios", value_parser = ["bios", "efi"])]
    firmware: String,
    /// Importer profile the descriptor is written for (README: target profiles): vmware
    /// (the default, also imports in VirtualBox), esxi-6.7, esxi-7, esxi-8, workstation-17,
    /// virtualbox-7 (alias virtualbox), aws-vmimport, glance or generic.
    #[arg(long, value_name = "TARGET", default_value = "vmware",
          value_parser = clap::builder::PossibleValuesParser::new(kiln::container::profile::Profile::names()))]
    target: String,
    /// Manifest digest: sha256, sha1 (old VMware and VirtualBox) or sha512.
    #[arg(long, value_name = "ALG", default_value = "sha256",
          value_parser = ["sha256", "sha1", "sha512"])]
    manifest: String,
    /// Sign the manifest with this RSA private key (PEM); needs --sign-cert.
    #[arg(long, value_name = "PEM", requires = "sign_cert")]
    sign_key: Option<PathBuf>,
    /// The certificate chain (PEM, signer first) for --sign-key.
    #[arg(long, value_name = "PEM", requires = "sign_key")]
    sign_cert: Option<PathBuf>,
    /// Replace the package (and, for an .ovf, its manifest and disks) when they exist.
    #[arg(long)]
    force: bool,
    /// Print the spec the options make and stop.
    #[arg(long)]
    dry_run: bool,
    /// No progress on stderr.
    #[arg(short, long)]
    quiet: bool,
}

pub(super) fn ova(args: &OvaArgs) -> Result<()> {
    if let Some(descriptor) = &args.from_ovf {
        return from_ovf(args, descriptor);
    }
    let (dir, file, container) = output_parts(&args.output)?;
    let text = spec_text(args, &file, container)?;
    if args.dry_run {
        print!("{text}");
        return Ok(());
    }
    for disk in &args.disks {
        let meta = std::fs::metadata(disk).map_err(|e| Error::io(e).with_path(disk))?;
        if !meta.is_file() {
            return Err(Error::invalid_input("not a regular file").with_path(disk));
        }
    }
    refuse_existing(args, &dir, &file, container)?;
    // The spec's name is only where its errors point; the options it came from are above.
    let spec_path = dir.join(format!("{file} (kiln ova)"));
    let (spec, text) = kiln::spec::parse_bytes(&spec_path, text.as_bytes())?;
    let spec = kiln::spec::validate(&spec_path, spec, text)?;
    let opts = BuildOptions {
        out_dir: dir,
        only: Vec::new(),
        sign: args.sign_key.clone().zip(args.sign_cert.clone()),
        report: false,
    };
    let plan = Plan::new(spec, &opts)?;
    let mut obs = BuildProgress::observer(args.quiet);
    let obs = obs.as_mut();
    plan.execute(obs)?;
    println!("{}", args.output.display());
    Ok(())
}

/// `(directory, file name, container)` of the output, from its extension.
fn output_parts(output: &Path) -> Result<(PathBuf, String, &'static str)> {
    let container = match output.extension().and_then(|e| e.to_str()) {
        Some("ova") => "ova",
        Some("ovf") => "ovf",
        _ => {
            return Err(
                Error::invalid_input("the output must end in .ova or .ovf").with_path(output)
            );
        }
    };
    let file = (output.file_name().and_then(|n| n.to_str()))
        .ok_or_else(|| Error::invalid_input("not a UTF-8 file name").with_path(output))?;
    let dir = match output.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    Ok((dir, file.to_string(), container))
}

/// The spec the options describe. Strings are written as JSON strings, which YAML reads
/// as the same strings whatever they hold.
fn spec_text(args: &OvaArgs, file: &str, container: &str) -> Result<String> {
    let q = |s: &str| serde_json::to_string(s).unwrap_or_default();
    let stem = Path::new(file)
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or(file);
    let name = args.name.as_deref().unwrap_or(stem);
    let absolute = |p: &Path| -> Result<String> {
        let path = std::path::absolute(p).map_err(|e| Error::io(e).with_path(p))?;
        let path = path
            .to_str()
            .ok_or_else(|| Error::invalid_input("not a UTF-8 path").with_path(p))?;
        Ok(q(path))
    };
    let cdroms = match args.cdroms.as_slice() {
        [] => String::new(),
        isos => {
            let paths = isos
                .iter()
                .map(|p| absolute(p))
                .collect::<Result<Vec<_>>>()?;
            format!(", cdroms: [{}]", paths.join(", "))
        }
    };
    let mut text = format!(
        "name: {}\nvm: {{ cpus: {}, memory: {}, os: {}, firmware: {}{cdroms} }}\ndisks:\n",
        q(name),
        args.cpus,
        q(&args.memory),
        q(&args.os),
        args.firmware
    );
    for (i, disk) in args.disks.iter().enumerate() {
        text.push_str(&format!(
            "  - {{ name: disk{}, source: {{ file: {} }} }}\n",
            i + 1,
            absolute(disk)?
        ));
    }
    text.push_str(&format!(
        "outputs:\n  - {{ disk_format: vmdk, container_format: {container}, file: {}, target: {}, manifest: {} }}\n",
        q(file),
        args.target,
        args.manifest
    ));
    Ok(text)
}

/// Without --force an existing package (or loose file of one) is not replaced.
fn refuse_existing(args: &OvaArgs, dir: &Path, file: &str, container: &str) -> Result<()> {
    if args.force {
        return Ok(());
    }
    let target = dir.join(file);
    let isos: Vec<String> = (1..=args.cdroms.len())
        .map(|i| format!("cdrom{i}"))
        .collect();
    let names = kiln::container::package::file_names(&target, args.disks.len())
        .with_isos(isos.iter().map(String::as_str));
    let mut paths = vec![target.clone()];
    if container == "ovf" {
        paths.extend(names.others().iter().map(|n| dir.join(n)));
        paths.push(dir.join(&names.cert));
    }
    refuse_any_existing(&paths)
}

/// `--from-ovf`: checks and opens everything, then writes the package (partial files,
/// renamed when complete).
fn from_ovf(args: &OvaArgs, descriptor: &Path) -> Result<()> {
    let (dir, file, container) = output_parts(&args.output)?;
    let target = dir.join(&file);
    let planned = from_ovf::plan(descriptor, &target)?;
    let signer = match (&args.sign_key, &args.sign_cert) {
        (Some(key), Some(cert)) => Some(PackageSigner::load(key, cert)?),
        _ => None,
    };
    let form = if container == "ova" {
        Form::Ova
    } else {
        Form::Files
    };
    if !args.force {
        let names = file_names(&target, 0);
        let mut paths = vec![target.clone()];
        if form == Form::Files {
            let members = planned.members().into_iter().map(|(name, _)| name);
            let others = [names.manifest, names.cert].into_iter().chain(members);
            paths.extend(others.map(|n| dir.join(n)));
        }
        refuse_any_existing(&paths)?;
    }
    let digest = match args.manifest.as_str() {
        "sha1" => Algorithm::Sha1,
        "sha512" => Algorithm::Sha512,
        _ => Algorithm::Sha256,
    };
    let opts = FromOvfOptions {
        form,
        digest,
        signer,
        ctx: BuildContext::from_env(&file),
    };
    let mut out = OutputSet::new(&target, true);
    from_ovf::write(planned, opts, &mut out)?;
    out.commit()?;
    println!("{}", args.output.display());
    Ok(())
}

fn refuse_any_existing(paths: &[PathBuf]) -> Result<()> {
    match paths.iter().find(|p| p.exists()) {
        Some(p) => {
            Err(Error::invalid_input("already exists; pass --force to replace it").with_path(p))
        }
        None => Ok(()),
    }
}
