//! Command-line interface: clap types close to the flags, one small function per subcommand.
//!
//! Only this module and `main.rs` know about clap and miette; everything below speaks
//! `kiln::Error`.

mod build;
mod bundle;
mod completions;
mod convert;
mod extract;
mod fetch;
mod fs;
mod info;
mod input;
mod man;
mod measure;
mod ova;
mod package;
mod progress;
mod safety;
mod seed;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use kiln::disk::{DiskFormat, KvOptions};
use kiln::{Error, ErrorKind};

/// `kiln --version`: the package version and the git commit it was built from (build.rs).
const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (",
    env!("KILN_GIT_COMMIT"),
    ")"
);

/// kiln: build virtual appliances and convert disk images (qemu-img compatible where it counts).
#[derive(Debug, Parser)]
#[command(name = "kiln", version = VERSION, about, long_about = None, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create a new empty disk image (`kiln create -f qcow2 -o preallocation=metadata x.qcow2 8G`).
    Create(CreateArgs),
    /// Convert an image from one format to another.
    Convert(ConvertArgs),
    /// Show an image's format, virtual size, allocation and format details.
    Info(InfoArgs),
    /// Check an image's structure; exits non-zero when it is corrupt or unsafe.
    Check(CheckArgs),
    /// List a directory of the ext2/3/4 file system in an image (`kiln ls disk.qcow2:1 /boot`).
    Ls(fs::LsArgs),
    /// Copy a file out of the ext2/3/4 file system in an image (`kiln cat disk.img:1 /etc/os-release`).
    Cat(fs::CatArgs),
    /// Make a cloud-init NoCloud seed (ISO `cidata` or FAT `CIDATA`), like cloud-localds.
    Seed(seed::SeedArgs),
    /// Compute the size a qcow2 image needs (`qemu-img measure`).
    Measure(measure::MeasureArgs),
    /// Build the artefacts an appliance spec describes: bare disks in any format and OVA
    /// packages (OVF descriptor, manifest, streamOptimized VMDK) for VMware and VirtualBox,
    /// with NAME.kiln.json and SHA256SUMS.
    #[command(after_long_help = build::TARGET_PROFILES_HELP)]
    Build(build::BuildArgs),
    /// Download and verify every source a spec names into the cache (for air-gapped
    /// builders: fetch on one machine, copy the cache, `kiln build --offline`).
    Fetch(fetch::FetchArgs),
    /// List or prune the download cache (`kiln cache ls`, `kiln cache prune --partials`).
    Cache(fetch::CacheArgs),
    /// Check an appliance spec and list every problem.
    Validate(build::ValidateArgs),
    /// Write a starter spec from a template.
    Init(build::InitArgs),
    /// Show what an OVF package holds: machines, hardware, disks, networks, properties,
    /// EULA, manifest and signature.
    Inspect(package::InspectArgs),
    /// Sign an OVF package's manifest with an RSA key and certificate (writes the .cert).
    Sign(package::SignArgs),
    /// Make an OVA (or OVF) from disk images you already have, without a spec
    /// (`kiln ova --disk root.qcow2 --cpus 2 --memory 4GiB -o app.ova`).
    Ova(ova::OvaArgs),
    /// Write an OVA's disks (or every member) into a directory, checking the manifest
    /// (`kiln extract app.ova -d out/`).
    Extract(extract::ExtractArgs),
    /// Print a shell completion script (`source <(kiln completions bash)`).
    Completions(completions::CompletionsArgs),
    /// Print a manual page in roff: kiln(1), or kiln-COMMAND(1) (`kiln man | man -l -`).
    Man(man::ManArgs),
    /// Bundle an image for an EC2 instance-store AMI (ec2-bundle-image's format).
    Bundle(Box<bundle::BundleArgs>),
    /// Verify an EC2 bundle and restore its image (needs the private key).
    Unbundle(bundle::UnbundleArgs),
    /// Check an OVF package (.ova, or .ovf with its files) as importers will, or an EC2
    /// bundle without its private key (NAME.manifest.xml); exits non-zero on errors.
    Verify(package::VerifyAnyArgs),
}

/// Output options shared by create and convert.
#[derive(Debug, Args)]
struct WriteArgs {
    /// Format options, `key=value[,key=value...]` (e.g. `preallocation=metadata`,
    /// `compat=0.10`, `cluster_size=2M`, `subformat=streamOptimized`). Repeatable.
    #[arg(short = 'o', value_name = "OPTIONS")]
    options: Vec<String>,
    /// Replace the output if it exists (otherwise an existing output is refused).
    #[arg(long)]
    force: bool,
    /// Output cache mode, as qemu-img's `-t`: `writeback` (default) fsyncs the output before
    /// renaming it into place; `unsafe` skips the fsync (faster; data may be lost if the
    /// machine crashes right after). `none`, `writethrough` and `directsync` behave as
    /// `writeback`.
    #[arg(short = 't', value_name = "CACHE", default_value = "writeback", value_parser = ["writeback", "unsafe", "none", "writethrough", "directsync"])]
    cache: String,
}

impl WriteArgs {
    fn kv(&self) -> kiln::Result<KvOptions> {
        let mut kv = KvOptions::default();
        for text in &self.options {
            kv.merge_str(text)?;
        }
        Ok(kv)
    }
}

#[derive(Debug, Args)]
struct CreateArgs {
    /// Output format: raw, qcow2, vmdk, vhd (vpc), vhdx, vdi.
    #[arg(short = 'f', value_name = "FMT", default_value = "raw", value_parser = parse_format)]
    format: DiskFormat,
    #[command(flatten)]
    write: WriteArgs,
    /// Quiet (accepted for qemu-img compatibility; create prints nothing anyway).
    #[arg(short = 'q')]
    quiet: bool,
    /// Image to create.
    file: PathBuf,
    /// Virtual size: bytes or with a unit (`8G`, `8GiB`, `512M`, `20GB`).
    #[arg(value_parser = parse_size_arg)]
    size: u64,
}

#[derive(Debug, Args)]
struct ConvertArgs {
    /// Input format (probed when omitted).
    #[arg(short = 'f', value_name = "FMT", value_parser = parse_format)]
    input_format: Option<DiskFormat>,
    /// Output format: raw, qcow2, vmdk, vhd (vpc), vhdx, vdi.
    #[arg(short = 'O', value_name = "FMT", default_value = "raw", value_parser = parse_format)]
    output_format: DiskFormat,
    #[command(flatten)]
    write: WriteArgs,
    /// Compress the output where the format can (qcow2 zlib clusters).
    #[arg(short = 'c')]
    compress: bool,
    /// Show a progress bar (only when stdout is a terminal).
    #[arg(short = 'p')]
    progress: bool,
    /// Quiet (accepted for qemu-img compatibility).
    #[arg(short = 'q')]
    quiet: bool,
    /// Read images that OpenStack's format_inspector refuses (qcow2 backing or external data
    /// files). The referenced files are never opened: the image is read on its own.
    #[arg(long)]
    allow_unsafe: bool,
    /// Read this member of an OVA (default: the package's first disk).
    #[arg(long, value_name = "NAME")]
    member: Option<String>,
    /// Convert only partition N of the input (numbered as sfdisk and parted show them).
    #[arg(long, value_name = "N")]
    partition: Option<u32>,
    /// Input image, or an OVA whose disk is read in place.
    input: PathBuf,
    /// Output image.
    output: PathBuf,
}

#[derive(Debug, Clone, Copy, Default, ValueEnum)]
enum OutputMode {
    #[default]
    Human,
    Json,
}

#[derive(Debug, Args)]
struct InfoArgs {
    /// Input format (probed when omitted).
    #[arg(short = 'f', value_name = "FMT", value_parser = parse_format)]
    format: Option<DiskFormat>,
    /// Output style.
    #[arg(long, value_enum, default_value_t)]
    output: OutputMode,
    /// Read this member of an OVA (default: the package's first disk).
    #[arg(long, value_name = "NAME")]
    member: Option<String>,
    /// Image to describe, or an OVA whose disk is described.
    file: PathBuf,
}

#[derive(Debug, Args)]
struct CheckArgs {
    /// Input format (probed when omitted).
    #[arg(short = 'f', value_name = "FMT", value_parser = parse_format)]
    format: Option<DiskFormat>,
    /// Output style.
    #[arg(long, value_enum, default_value_t)]
    output: OutputMode,
    /// Check the structure of images format_inspector would refuse instead of failing.
    #[arg(long)]
    allow_unsafe: bool,
    /// Read this member of an OVA (default: the package's first disk).
    #[arg(long, value_name = "NAME")]
    member: Option<String>,
    /// The verdict before converting an upload: the format, every format the bytes also
    /// match, and each reason to refuse the image (at least what OpenStack's
    /// format_inspector refuses); exits 1 when refused.
    #[arg(long)]
    safety: bool,
    /// With --safety: refuse images whose virtual size is above SIZE.
    #[arg(long, value_name = "SIZE", default_value = "16T", value_parser = parse_size_arg, requires = "safety")]
    max_size: u64,
    /// With --safety: accept a VMDK text descriptor whose extents lie beside it
    /// (monolithicFlat, twoGbMaxExtentFlat/Sparse), which format_inspector refuses.
    #[arg(long, requires = "safety")]
    allow_descriptor: bool,
    /// Image to check, or an OVA whose disk is checked in place.
    file: PathBuf,
}

fn parse_format(s: &str) -> Result<DiskFormat, String> {
    s.parse().map_err(|e: Error| e.to_string())
}

fn parse_size_arg(s: &str) -> Result<u64, String> {
    kiln::size::parse_size(s).map_err(|e| e.to_string())
}

/// Runs one parsed command.
pub fn run(cli: Cli) -> miette::Result<()> {
    let result = match cli.command {
        Command::Create(args) => convert::create(&args),
        Command::Convert(args) => convert::convert(&args),
        Command::Info(args) => info::info(&args),
        Command::Check(args) => info::check(&args),
        Command::Ls(args) => fs::ls(&args),
        Command::Cat(args) => fs::cat(&args),
        Command::Seed(args) => seed::seed(&args),
        Command::Measure(args) => measure::measure(&args),
        Command::Completions(args) => completions::completions(&args),
        Command::Man(args) => man::man(&args),
        Command::Build(args) => return build::build(&args),
        Command::Validate(args) => return build::validate(&args),
        Command::Fetch(args) => return fetch::fetch(&args),
        Command::Cache(args) => fetch::cache(&args),
        Command::Init(args) => return build::init(&args),
        Command::Inspect(args) => package::inspect(&args),
        Command::Sign(args) => package::sign(&args),
        Command::Ova(args) => ova::ova(&args),
        Command::Bundle(args) => bundle::bundle(&args),
        Command::Unbundle(args) => bundle::unbundle(&args),
        Command::Verify(args) => package::verify(&args),
        Command::Extract(args) => extract::extract(&args),
    };
    result.map_err(|e| miette::Report::new(KilnDiagnostic(e)))
}

/// A library error carried through miette so `exit_code` can read its kind.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
#[error(transparent)]
struct KilnDiagnostic(Error);

/// Prints the error on one line (spec errors with source labels get miette's report).
pub fn render_error(report: &miette::Report) {
    if report.labels().is_some() {
        eprintln!("{report:?}");
    } else {
        eprintln!("kiln: error: {report}");
    }
}

/// 1 for failures; usage errors (bad options) are 2, as in qemu-img and clap.
pub fn exit_code(report: &miette::Report) -> u8 {
    match report.downcast_ref::<KilnDiagnostic>().map(|d| d.0.kind()) {
        Some(ErrorKind::InvalidInput) => 2,
        _ => 1,
    }
}

/// True when the error is stdout closing under us (`kiln info x | head`).
pub fn is_broken_pipe(report: &miette::Report) -> bool {
    report
        .downcast_ref::<KilnDiagnostic>()
        .and_then(|d| d.0.cause().downcast_ref::<std::io::Error>())
        .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
}

/// On Ctrl-C or SIGTERM, remove every partial output before exiting with 130.
pub fn install_interrupt_handler() {
    let _ = ctrlc::set_handler(|| {
        kiln::io::output::remove_registered_partials();
        std::process::exit(130);
    });
}
