//! `kiln bundle`, `kiln unbundle` and `kiln verify`: EC2 instance-store bundles.

use std::path::{Path, PathBuf};

use clap::Args;
use kiln::container::ec2::crypto::SessionKey;
use kiln::container::ec2::manifest::Bundler;
use kiln::container::ec2::unbundle::looks_like_manifest;
use kiln::container::ec2::validate::{Arch, ImageType, parse_block_device_mapping};
use kiln::container::ec2::{self, BundleOptions, Check, Ec2Error, UnbundleOptions, VerifyOptions};
use kiln::{BuildContext, Error, ErrorKind, Result};

/// Bundle an image for an instance-store AMI, as ec2-bundle-image does.
#[derive(Debug, Args)]
#[command(
    after_help = "The image is stored as a GNU tar (sparse files stay sparse), gzip'd on \
    every core, encrypted with AES-128-CBC under a random key and IV, and cut into 10 MiB \
    parts NAME.part.N. NAME.manifest.xml (version 2007-10-10) lists the parts and their \
    SHA1s, carries the key and IV encrypted for your certificate and EC2's, and is signed \
    with your private key. Upload the directory with your usual tool and register \
    NAME.manifest.xml."
)]
pub(super) struct BundleArgs {
    /// The raw image file (root file system for a machine image, or a kernel or ramdisk).
    image: PathBuf,
    /// AWS account number (12 digits).
    #[arg(short = 'u', long, value_name = "ACCOUNT")]
    user: String,
    /// Your X.509 certificate (PEM); the AES key is also encrypted for it.
    #[arg(short = 'c', long, value_name = "PEM")]
    cert: PathBuf,
    /// Your RSA private key (PEM, PKCS#8 or PKCS#1, unencrypted); signs the manifest.
    #[arg(short = 'k', long = "privatekey", value_name = "PEM")]
    private_key: PathBuf,
    /// EC2's X.509 certificate (PEM) for your region; EC2 decrypts the bundle with it.
    #[arg(long = "ec2-cert", alias = "ec2cert", value_name = "PEM")]
    ec2_cert: PathBuf,
    /// Directory for the parts and the manifest (created when missing).
    #[arg(short = 'd', long = "destination", value_name = "DIR")]
    destination: PathBuf,
    /// Bundle name (default: the image's file name).
    #[arg(short = 'p', long, value_name = "NAME")]
    prefix: Option<String>,
    /// Architecture: i386 or x86_64.
    #[arg(short = 'r', long, value_name = "ARCH", default_value = "x86_64", value_parser = parse_arch)]
    arch: Arch,
    /// What the image is: machine, kernel (aki) or ramdisk (ari).
    #[arg(long = "type", value_name = "TYPE", default_value = "machine", value_parser = parse_type)]
    kind: ImageType,
    /// Kernel to boot a machine image with (aki-xxxxxxxx).
    #[arg(long, value_name = "AKI")]
    kernel: Option<String>,
    /// Ramdisk to boot a machine image with (ari-xxxxxxxx).
    #[arg(long, value_name = "ARI")]
    ramdisk: Option<String>,
    /// Kernel file name recorded for --type kernel (default: the bundle name).
    #[arg(long, value_name = "NAME")]
    kernel_name: Option<String>,
    /// Block device mapping, virtual=device pairs: ami, root, swap, ephemeral0..23 to sd*,
    /// xvd* or hd* devices (e.g. ami=sda1,root=/dev/sda1,ephemeral0=sdb). Default: none.
    #[arg(short = 'B', long, value_name = "MAP")]
    block_device_mapping: Option<String>,
    /// Product codes, comma-separated.
    #[arg(long, value_name = "CODES", value_delimiter = ',')]
    product_codes: Vec<String>,
    /// Ancestor AMI ids, comma-separated.
    #[arg(long, value_name = "IDS", value_delimiter = ',')]
    ancestor_ami_ids: Vec<String>,
    /// TESTING ONLY: fixed AES key (32 hex digits) instead of a random one. Anyone who
    /// knows it can decrypt the bundle. Needs --iv.
    #[arg(long, value_name = "HEX", requires = "iv")]
    key: Option<String>,
    /// TESTING ONLY: fixed AES IV (32 hex digits). Needs --key.
    #[arg(long, value_name = "HEX", requires = "key")]
    iv: Option<String>,
    /// Replace an existing bundle of the same name in DIR.
    #[arg(long)]
    force: bool,
    /// `writeback` (default) fsyncs the parts and manifest before renaming them into place;
    /// `unsafe` skips that.
    #[arg(short = 't', value_name = "CACHE", default_value = "writeback", value_parser = ["writeback", "unsafe"])]
    cache: String,
    /// Compression threads (default: one per core).
    #[arg(long, value_name = "N", default_value_t = 0)]
    threads: usize,
}

fn parse_arch(s: &str) -> std::result::Result<Arch, String> {
    s.parse().map_err(|e: Error| e.to_string())
}

fn parse_type(s: &str) -> std::result::Result<ImageType, String> {
    s.parse().map_err(|e: Error| e.to_string())
}

/// Verify a bundle and restore its image.
#[derive(Debug, Args)]
#[command(
    after_help = "Checks, in order: the manifest's structure, its signature (only with \
    --cert: the manifest does not carry your certificate), every part's presence and SHA1, \
    the key and IV (your private key, or EC2's), AES-CBC and gzip, the SHA1 of the tar \
    stream, and that the tar holds exactly the one image. The image is written to \
    DIR/NAME only when all of that passed. Part names with / or .. are refused."
)]
pub(super) struct UnbundleArgs {
    /// The bundle's NAME.manifest.xml.
    #[arg(short = 'm', long, value_name = "FILE")]
    manifest: PathBuf,
    /// Your (or EC2's) RSA private key (PEM).
    #[arg(short = 'k', long = "privatekey", value_name = "PEM")]
    private_key: PathBuf,
    /// Your X.509 certificate (PEM): check the manifest's signature with it.
    #[arg(short = 'c', long, value_name = "PEM")]
    cert: Option<PathBuf>,
    /// Directory to write the image to (created when missing).
    #[arg(short = 'd', long = "destination", value_name = "DIR")]
    destination: PathBuf,
    /// Directory holding the parts (default: the manifest's).
    #[arg(short = 's', long, value_name = "DIR")]
    source: Option<PathBuf>,
    /// Replace an existing image in DIR.
    #[arg(long)]
    force: bool,
    /// `writeback` (default) fsyncs the image before renaming it into place; `unsafe` skips it.
    #[arg(short = 't', value_name = "CACHE", default_value = "writeback", value_parser = ["writeback", "unsafe"])]
    cache: String,
}

/// Check a bundle without its private key.
#[derive(Debug, Args)]
#[command(
    after_help = "For an OVF package (.ova, or .ovf with its files): the tar layout, every \
    manifest line and digest, file sizes, each disk read through with the capacity the \
    descriptor says, and the .cert signature; importers' own words where they have them. \
    For an EC2 bundle manifest (NAME.manifest.xml): checks its structure, \
    its signature (with --cert), and that every part is present with the SHA1 the manifest \
    lists. The image digest inside the encrypted parts needs the private key: use kiln \
    unbundle. Other inputs are refused."
)]
pub(super) struct VerifyArgs {
    /// The file to check: an EC2 bundle manifest (NAME.manifest.xml), or an OVF package
    /// (.ova, or .ovf with its files).
    pub(super) file: PathBuf,
    /// The user's X.509 certificate (PEM): check the signature with it (EC2 bundles).
    #[arg(short = 'c', long, value_name = "PEM")]
    pub(super) cert: Option<PathBuf>,
    /// Directory holding the parts (default: the manifest's; EC2 bundles).
    #[arg(short = 's', long, value_name = "DIR")]
    pub(super) source: Option<PathBuf>,
}

pub(super) fn bundle(args: &BundleArgs) -> Result<()> {
    let mut opts = BundleOptions::new(
        &args.image,
        &args.destination,
        &args.user,
        [&args.cert, &args.private_key, &args.ec2_cert],
    );
    opts.name.clone_from(&args.prefix);
    opts.arch = args.arch;
    opts.kind = args.kind;
    opts.kernel_id.clone_from(&args.kernel);
    opts.ramdisk_id.clone_from(&args.ramdisk);
    opts.kernel_name.clone_from(&args.kernel_name);
    if let Some(map) = &args.block_device_mapping {
        opts.block_device_mapping = parse_block_device_mapping(map)?;
    }
    opts.product_codes = non_empty(&args.product_codes);
    opts.ancestors = non_empty(&args.ancestor_ami_ids);
    if let (Some(key), Some(iv)) = (&args.key, &args.iv) {
        opts.session = Some(SessionKey::from_hex(key, iv)?);
    }
    opts.bundler = Bundler::default();
    opts.force = args.force;
    opts.sync = args.cache != "unsafe";
    opts.threads = args.threads;
    let ctx = BuildContext::from_env("kiln-bundle");
    let report = ec2::bundle(&opts, &ctx)?;
    println!("{}", report.manifest.display());
    for part in &report.parts {
        println!("{}", part.display());
    }
    Ok(())
}

fn non_empty(items: &[String]) -> Vec<String> {
    items
        .iter()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

fn print_checks(checks: &[Check]) {
    for c in checks {
        let status = if c.checked { "PASS" } else { "SKIP" };
        println!("{status} {:<11} {}", c.step, c.message);
    }
}

pub(super) fn unbundle(args: &UnbundleArgs) -> Result<()> {
    let opts = UnbundleOptions {
        verify: VerifyOptions {
            manifest: args.manifest.clone(),
            cert: args.cert.clone(),
            source: args.source.clone(),
        },
        private_key: args.private_key.clone(),
        destination: args.destination.clone(),
        force: args.force,
        sync: args.cache != "unsafe",
    };
    let (_, checks) = ec2::unbundle(&opts)?;
    print_checks(&checks);
    Ok(())
}

pub(super) fn verify(args: &VerifyArgs) -> Result<()> {
    if !is_manifest(&args.file)? {
        return Err(
            Error::new(ErrorKind::InvalidInput, Ec2Error::NotManifest).with_path(&args.file)
        );
    }
    let opts = VerifyOptions {
        manifest: args.file.clone(),
        cert: args.cert.clone(),
        source: args.source.clone(),
    };
    let checks = ec2::verify(&opts)?;
    print_checks(&checks);
    Ok(())
}

/// Dispatch for `kiln verify`: a `.manifest.xml` name or XML whose root is `<manifest>`.
pub(super) fn is_manifest(path: &Path) -> Result<bool> {
    let mut head = [0u8; 4096];
    let mut file = std::fs::File::open(path).map_err(|e| Error::io(e).with_path(path))?;
    let n = std::io::Read::read(&mut file, &mut head).map_err(|e| Error::io(e).with_path(path))?;
    let named = path.to_string_lossy().ends_with(".manifest.xml");
    Ok(looks_like_manifest(&head[..n]) || (named && head[..n].starts_with(b"<?xml")))
}
