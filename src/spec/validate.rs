//! Semantic checks on a parsed [`Spec`]: every problem is collected, none stops the others.
//!
//! Rules: names are file-name safe and unique; sizes parse (`kiln::size`), are positive,
//! never shrink a file source and fit every output format that holds the disk (`sizes`);
//! CPU counts are 1..=256; a source is exactly one of `blank`, `file`, `url`; URLs are
//! http(s) and need `sha256`, `sha512`, `checksum` or `signature` (`sources`); files exist (relative to the spec's directory; with
//! [`ValidateOptions::confine`], resolved after symlinks and inside the spec's directory or
//! an allowed one, before anything opens them); file sources open with the build's own
//! safety checks (backing files, polyglots, tables outside the file are refused here, not
//! mid-build); disk/container pairs follow Glance's rules; `options` are keys the disk
//! format's writer knows; cloud-init parts pass the seed module's checks (`cloud_init`),
//! and an error about a file the spec names never quotes the file.
//! Requests that are valid but not implemented in this build (OVF, OVA and Amazon
//! containers, cloud-init through OVF properties) are kept apart in
//! [`ValidSpec::unsupported`]: `kiln validate` reports them as notes, `kiln build` refuses.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::model::{
    Adapter, ByteSize, ContainerFormat, Controller, Firmware, ManifestDigest, OutputDiskFormat,
    Source, Spanned, Spec,
};
use super::{Issue, Span, SpecErrors, load};
use crate::container::ovf::{self, Bus};
use crate::disk::{self, DiskFormat, KvOptions, OpenOptions};
use crate::seed::SeedSpec;
use crate::size::parse_size;
use crate::unpack::{self, UnpackOptions};

/// Where a disk's bytes come from, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DiskPlanSource {
    /// A new empty disk.
    Blank,
    /// A local image (absolute or relative to the working directory, already resolved).
    File {
        /// The image.
        path: PathBuf,
        /// Expected digest, lower-case hex.
        sha256: Option<String>,
        /// SHA-512, checksum file, signature.
        check: SourceCheck,
    },
    /// A download.
    Url {
        /// http(s) URL.
        url: String,
        /// Expected digest, lower-case hex (else `check` has another way to verify it).
        sha256: Option<String>,
        /// SHA-512, checksum file, signature.
        check: SourceCheck,
    },
}

/// A checked disk.
#[derive(Debug, Clone)]
pub struct ValidDisk {
    /// Name.
    pub name: String,
    /// Source.
    pub source: DiskPlanSource,
    /// Requested virtual size.
    pub size: Option<u64>,
    /// Where the source is written in the spec, for errors found while building.
    pub source_span: Option<Span>,
    /// Where `size` is written.
    pub size_span: Option<Span>,
    /// Controller in OVF packages.
    pub controller: Option<Controller>,
    /// Virtual size of a file source, as opened at validation.
    pub source_size: Option<u64>,
    /// The archive member holding the disk (`source.member`).
    pub member: Option<String>,
    /// Bound on the decompressed size (`source.max_size`).
    pub max_size: Option<u64>,
}

impl ValidDisk {
    /// The disk's size when it is known before the build: the requested size (kiln grows,
    /// never shrinks), else the file source's; `None` for a download without a `size`.
    pub fn final_size(&self) -> Option<u64> {
        self.size.or(self.source_size)
    }
}

/// A checked output.
#[derive(Debug, Clone)]
pub struct ValidOutput {
    /// Position in the spec's `outputs`.
    pub index: usize,
    /// Output name (`--only`).
    pub name: String,
    /// File name in the output directory.
    pub file: String,
    /// Index into [`ValidSpec::disks`].
    pub disk: usize,
    /// Glance disk format.
    pub disk_format: OutputDiskFormat,
    /// The engine format that writes it.
    pub engine_format: DiskFormat,
    /// Glance container format.
    pub container: ContainerFormat,
    /// Writer options.
    pub options: KvOptions,
    /// OVF/OVA importer profiles and what they agree on.
    pub target: crate::container::profile::Resolved,
    /// OVF/OVA manifest digest.
    pub manifest: ManifestDigest,
    /// The Glance triplet's settings (ami outputs only).
    pub ami: Option<ValidAmi>,
    /// The key and certificate that sign an ova/ovf package.
    pub sign: Option<ValidSign>,
}

/// A package's signing key and certificate (files that exist).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidSign {
    /// The RSA private key.
    pub key: PathBuf,
    /// The certificate chain.
    pub cert: PathBuf,
    /// Where the spec says `sign` (`None`: from the command line).
    pub span: Option<Span>,
}

/// A spec that passed every check.
#[derive(Debug, Clone)]
pub struct ValidSpec {
    /// The spec file.
    pub path: PathBuf,
    /// Its text.
    pub text: String,
    /// Appliance name.
    pub name: String,
    /// Version string.
    pub version: Option<String>,
    /// One-line description.
    pub description: Option<String>,
    /// Virtual hardware, for OVF descriptors.
    pub machine: ValidMachine,
    /// Firmware, when the spec names it.
    pub firmware: Option<Firmware>,
    /// Disks in spec order.
    pub disks: Vec<ValidDisk>,
    /// Outputs in spec order.
    pub outputs: Vec<ValidOutput>,
    /// cloud-init seeds, in `deliver` order.
    pub seeds: Vec<ValidSeed>,
    /// cloud-init data for OVF environment properties (`deliver: [ovf-properties]`).
    pub ovf_properties: Option<SeedSpec>,
    /// CD-ROM drives every ova/ovf package carries, with their media.
    pub cdroms: Vec<ValidCdrom>,
    /// Properties, more ProductSections and deployment options of the packages.
    pub product: ValidProduct,
    /// USB, video memory and Secure Boot of the packages' machine.
    pub devices: ValidDevices,
    /// Valid requests this build cannot carry out (missing capabilities).
    pub unsupported: Vec<Issue>,
}

/// The ova/ovf outputs among `outputs`, in spec order.
fn packages(outputs: &[ValidOutput]) -> Vec<&ValidOutput> {
    (outputs.iter())
        .filter(|o| matches!(o.container, ContainerFormat::Ova | ContainerFormat::Ovf))
        .collect()
}

impl OutputDiskFormat {
    /// Glance's name.
    pub fn name(self) -> &'static str {
        match self {
            OutputDiskFormat::Raw => "raw",
            OutputDiskFormat::Qcow2 => "qcow2",
            OutputDiskFormat::Vmdk => "vmdk",
            OutputDiskFormat::Vhd => "vhd",
            OutputDiskFormat::Vhdx => "vhdx",
            OutputDiskFormat::Vdi => "vdi",
            OutputDiskFormat::Aki => "aki",
            OutputDiskFormat::Ari => "ari",
            OutputDiskFormat::Ami => "ami",
        }
    }

    /// The engine format: Amazon disks are raw.
    pub fn engine(self) -> DiskFormat {
        match self {
            OutputDiskFormat::Raw | OutputDiskFormat::Aki | OutputDiskFormat::Ari => {
                DiskFormat::Raw
            }
            OutputDiskFormat::Ami => DiskFormat::Raw,
            OutputDiskFormat::Qcow2 => DiskFormat::Qcow2,
            OutputDiskFormat::Vmdk => DiskFormat::Vmdk,
            OutputDiskFormat::Vhd => DiskFormat::Vhd,
            OutputDiskFormat::Vhdx => DiskFormat::Vhdx,
            OutputDiskFormat::Vdi => DiskFormat::Vdi,
        }
    }

    /// File extension of the artefact.
    pub fn extension(self) -> &'static str {
        match self {
            OutputDiskFormat::Raw => "raw",
            other => other.name(),
        }
    }
}

impl Controller {
    /// The descriptor's bus for this controller.
    pub fn bus(self) -> Bus {
        match self {
            Controller::Ide => Bus::Ide,
            Controller::Sata => Bus::Sata,
            Controller::Scsi | Controller::Lsilogic => Bus::Scsi,
            Controller::Nvme => Bus::Nvme,
            Controller::Lsilogicsas => Bus::LsiLogicSas,
            Controller::Pvscsi => Bus::Pvscsi,
            Controller::Buslogic => Bus::BusLogic,
        }
    }
}

impl Adapter {
    /// The descriptor's NIC model.
    pub fn nic(self) -> ovf::Nic {
        match self {
            Adapter::E1000 => ovf::Nic::E1000,
            Adapter::E1000e => ovf::Nic::E1000e,
            Adapter::Vmxnet3 => ovf::Nic::Vmxnet3,
            Adapter::Virtio => ovf::Nic::Virtio,
        }
    }
}

impl ContainerFormat {
    /// Glance's name.
    pub fn name(self) -> &'static str {
        match self {
            ContainerFormat::Bare => "bare",
            ContainerFormat::Ovf => "ovf",
            ContainerFormat::Ova => "ova",
            ContainerFormat::Aki => "aki",
            ContainerFormat::Ari => "ari",
            ContainerFormat::Ami => "ami",
        }
    }
}

/// How validation treats the files a spec names.
#[derive(Debug, Clone, Default)]
pub struct ValidateOptions {
    /// `--confine`: every input path must resolve, after symlinks, inside the spec's
    /// directory or one of these directories; `None` leaves paths unconfined (a local user
    /// may name any file they can read).
    pub confine: Option<Vec<PathBuf>>,
}

impl ValidateOptions {
    /// Confined to the spec's directory and `allow_dirs`.
    pub fn confined(allow_dirs: &[PathBuf]) -> Self {
        Self {
            confine: Some(allow_dirs.to_vec()),
        }
    }
}

/// Checks `spec` (parsed from `text` at `path`), paths unconfined.
///
/// # Errors
/// Every problem found, located.
pub fn validate(path: &Path, spec: Spec, text: String) -> Result<ValidSpec, SpecErrors> {
    validate_with(path, spec, text, &ValidateOptions::default())
}

/// Checks `spec` as [`validate`] does, with `opts`.
///
/// # Errors
/// Every problem found, located; an allowed directory that does not resolve.
pub fn validate_with(
    path: &Path,
    spec: Spec,
    text: String,
    opts: &ValidateOptions,
) -> Result<ValidSpec, SpecErrors> {
    let dir = path.parent().map_or_else(PathBuf::new, Path::to_path_buf);
    let roots = match &opts.confine {
        None => None,
        Some(allowed) => Some(confine_roots(path, &dir, allowed, &text)?),
    };
    let mut c = Checker {
        text: &text,
        dir,
        roots,
        issues: Vec::new(),
        unsupported: Vec::new(),
    };
    let name = c.name(&spec.name, "name");
    let machine = c.machine(&spec);
    let disks = c.disks(&spec);
    let outputs = c.outputs(&spec, &name, &disks);
    c.output_sizes(&spec, &outputs, &disks);
    let delivered = c.cloud_init(&spec, &name, &outputs);
    let product = c.product(
        &spec,
        &machine,
        &outputs,
        delivered.ovf_properties.is_some(),
    );
    let cdroms = c.cdroms(&spec, &outputs, &disks, delivered.cdrom);
    let devices = c.devices(&spec, &outputs);
    let Checker {
        mut issues,
        unsupported,
        ..
    } = c;
    if !issues.is_empty() {
        issues.sort_by_key(|i| i.span.map_or(u64::MAX, |s| s.offset));
        return Err(SpecErrors {
            path: path.to_path_buf(),
            text,
            issues,
        });
    }
    Ok(ValidSpec {
        path: path.to_path_buf(),
        text,
        name,
        version: spec.version,
        description: spec.description,
        machine,
        firmware: spec.vm.as_ref().and_then(|v| v.firmware),
        disks,
        outputs,
        seeds: delivered.seeds,
        ovf_properties: delivered.ovf_properties,
        cdroms,
        product,
        devices,
        unsupported,
    })
}

/// The directories a confined spec's inputs must resolve into: the spec's own and the
/// allowed ones, each resolved (after symlinks) once, here.
fn confine_roots(
    path: &Path,
    dir: &Path,
    allowed: &[PathBuf],
    text: &str,
) -> Result<Vec<PathBuf>, SpecErrors> {
    let spec_dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    std::iter::once(spec_dir)
        .chain(allowed.iter().map(PathBuf::as_path))
        .map(|d| {
            std::fs::canonicalize(d).map_err(|e| {
                let message = format!("cannot resolve the directory `{}`: {e}", d.display());
                SpecErrors::single(path, text.to_string(), message, None)
            })
        })
        .collect()
}

struct Checker<'a> {
    text: &'a str,
    dir: PathBuf,
    /// `Some` when confined: resolved directories every input must lie in.
    roots: Option<Vec<PathBuf>>,
    issues: Vec<Issue>,
    unsupported: Vec<Issue>,
}

impl Checker<'_> {
    fn err<T>(&mut self, at: &Spanned<T>, key: &str, message: String) {
        self.err_loc(at.referenced, key, message);
    }

    fn err_loc(&mut self, at: serde_saphyr::Location, key: &str, message: String) {
        self.issues.push(Issue::at(&at, self.text, key, message));
    }

    fn missing(&mut self, key: &str, message: String) {
        self.issues.push(Issue {
            key: key.to_string(),
            message,
            span: None,
        });
    }

    fn span<T>(&self, at: &Spanned<T>) -> Option<Span> {
        load::span_of(&at.referenced, self.text)
    }

    fn name(&mut self, name: &Spanned<String>, key: &str) -> String {
        let ok = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
        let value = &name.value;
        if value.is_empty() || value.starts_with('.') || !value.chars().all(ok) || value.len() > 100
        {
            self.err(
                name,
                key,
                format!("`{value}` is not a valid name; use 1 to 100 letters, digits, `-`, `_` or `.`, not starting with `.`"),
            );
        }
        value.clone()
    }

    fn size(&mut self, size: &Spanned<ByteSize>, key: &str) -> Option<u64> {
        let parsed = match &size.value {
            ByteSize::Number(n) if *n <= 0 => Err(format!("size {n} must be positive")),
            ByteSize::Number(n) => u64::try_from(*n).map_err(|e| e.to_string()),
            ByteSize::Text(t) if t.trim_start().starts_with('-') => {
                Err(format!("size `{t}` must be positive"))
            }
            ByteSize::Text(t) => match parse_size(t) {
                Ok(0) => Err(format!("size `{t}` must be positive")),
                other => other.map_err(|e| e.to_string()),
            },
        };
        parsed.map_err(|message| self.err(size, key, message)).ok()
    }

    fn disks(&mut self, spec: &Spec) -> Vec<ValidDisk> {
        if spec.disks.is_empty() {
            self.missing(
                "disks",
                "the spec has no disks; add at least one under `disks:`".into(),
            );
        }
        let mut seen: BTreeMap<String, usize> = BTreeMap::new();
        let mut disks = Vec::new();
        for (i, disk) in spec.disks.iter().enumerate() {
            let key = format!("disks[{i}]");
            let name = self.name(&disk.value.name, &format!("{key}.name"));
            if let Some(first) = seen.insert(name.clone(), i) {
                self.err(
                    &disk.value.name,
                    &format!("{key}.name"),
                    format!("duplicate disk name `{name}` (also disks[{first}])"),
                );
            }
            let size = disk
                .value
                .size
                .as_ref()
                .and_then(|s| self.size(s, &format!("{key}.size")));
            let source = self.source(&disk.value.source, &key, disk.value.size.is_some());
            let unpack = self.unpack_options(&disk.value.source.value, &key);
            let source_size = match (&source, &disk.value.source.value.file) {
                (Some(DiskPlanSource::File { path, .. }), Some(at)) => {
                    self.source_size(path, at, &key, &unpack)
                }
                _ => None,
            };
            if let (Some(current), Some(size), Some(at)) = (source_size, size, &disk.value.size) {
                self.no_shrink(current, size, at, &key);
            }
            let Some(source) = source else { continue };
            disks.push(ValidDisk {
                name,
                source,
                size,
                source_span: self.span(&disk.value.source),
                size_span: disk.value.size.as_ref().and_then(|s| self.span(s)),
                controller: disk.value.controller,
                source_size,
                member: unpack.member,
                max_size: unpack.max_size,
            });
        }
        disks
    }

    fn source(
        &mut self,
        at: &Spanned<Source>,
        key: &str,
        has_size: bool,
    ) -> Option<DiskPlanSource> {
        let s = &at.value;
        let key = format!("{key}.source");
        let count = usize::from(s.blank.is_some())
            + usize::from(s.file.is_some())
            + usize::from(s.url.is_some());
        if count != 1 {
            self.err(
                at,
                &key,
                "a source needs exactly one of `blank: true`, `file: PATH` or `url: URL`".into(),
            );
            return None;
        }
        let sha256 = s
            .sha256
            .as_ref()
            .and_then(|h| self.sha256(h, &format!("{key}.sha256")));
        if let Some(blank) = s.blank {
            return self.blank(at, &key, blank, has_size, Self::has_verification(s));
        }
        let check = self.source_check(s, &key);
        if let Some(file) = &s.file {
            let path = self.existing_file(file, &format!("{key}.file"))?;
            return Some(DiskPlanSource::File {
                path,
                sha256,
                check,
            });
        }
        let url = s.url.as_ref()?;
        let verified = Self::has_verification(s);
        self.url(url, &key, verified, sha256, check)
    }

    fn blank(
        &mut self,
        at: &Spanned<Source>,
        key: &str,
        blank: bool,
        has_size: bool,
        has_sha: bool,
    ) -> Option<DiskPlanSource> {
        if !blank {
            self.err(
                at,
                key,
                "`blank: false` is not a source; use `blank: true`, `file:` or `url:`".into(),
            );
        } else if !has_size {
            self.err(
                at,
                key,
                "a blank disk needs a `size` (e.g. `size: 8GiB`)".into(),
            );
        } else if has_sha {
            let message =
                "a blank disk has no `sha256`, `sha512`, `checksum` or `signature` to check";
            self.err(at, key, message.into());
        }
        (blank && has_size && !has_sha).then_some(DiskPlanSource::Blank)
    }

    fn url(
        &mut self,
        url: &Spanned<String>,
        key: &str,
        has_sha: bool,
        sha256: Option<String>,
        check: SourceCheck,
    ) -> Option<DiskPlanSource> {
        let value = &url.value;
        if !(value.starts_with("http://") || value.starts_with("https://")) {
            self.err(
                url,
                &format!("{key}.url"),
                format!("`{value}` is not an http:// or https:// URL"),
            );
            return None;
        }
        if !has_sha {
            self.err(
                url,
                &format!("{key}.url"),
                "a `url` source needs `sha256`, `sha512`, `checksum: {file: URL}` or `signature` so the download can be verified"
                    .into(),
            );
            return None;
        }
        Some(DiskPlanSource::Url {
            url: value.clone(),
            sha256,
            check,
        })
    }

    fn sha256(&mut self, at: &Spanned<String>, key: &str) -> Option<String> {
        let v = at.value.trim().to_ascii_lowercase();
        if v.len() == 64 && v.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Some(v);
        }
        let message = if v.contains("fill") || v.contains("todo") || v.contains('<') {
            format!(
                "`{}` is a placeholder; fill in the real SHA-256 of the image (64 hex digits)",
                at.value
            )
        } else {
            format!(
                "`{}` is not a SHA-256 digest; expected 64 hex digits",
                at.value
            )
        };
        self.err(at, key, message);
        None
    }

    /// The file `at` names, relative to the spec's directory; when confined, resolved
    /// (after symlinks, before anything opens it) and refused outside the allowed
    /// directories. Every input path of a spec goes through here.
    fn existing_file(&mut self, at: &Spanned<String>, key: &str) -> Option<PathBuf> {
        let mut path = self.dir.join(&at.value);
        if let Some(roots) = &self.roots {
            let message = match std::fs::canonicalize(&path) {
                Ok(real) if roots.iter().any(|r| real.starts_with(r)) => {
                    path = real;
                    None
                }
                Ok(real) => Some(format!(
                    "`{}` resolves to `{}`, outside the spec's directory and every --allow-dir; refused by --confine",
                    at.value,
                    real.display()
                )),
                Err(e) => Some(format!("cannot resolve `{}`: {e}", path.display())),
            };
            if let Some(message) = message {
                self.err(at, key, message);
                return None;
            }
        }
        match std::fs::metadata(&path) {
            Ok(m) if m.is_file() => Some(path),
            Ok(_) => {
                self.err(at, key, format!("`{}` is not a regular file", at.value));
                None
            }
            Err(e) => {
                let shown = path.display();
                self.err(at, key, format!("cannot read `{shown}`: {e}"));
                None
            }
        }
    }

    /// Opens a file source as the build will (the same probe and the same refusals:
    /// backing files, polyglots, tables outside the file, ...) and returns its virtual size.
    fn source_size(
        &mut self,
        path: &Path,
        at: &Spanned<String>,
        key: &str,
        unpack: &UnpackOptions,
    ) -> Option<u64> {
        // Compressed images and archives are opened as the build opens them; a size known
        // only after decompressing (a qcow2 inside, bzip2) is checked at build time.
        let size = match unpack::is_packed(path) {
            Ok(true) => unpack::peek_size(path, unpack),
            Ok(false) if unpack.member.is_some() => {
                let message = "`member` needs a tar archive source (.tar, .tar.xz, ...)";
                self.err(at, &format!("{key}.source.member"), message.into());
                return None;
            }
            _ => disk::open(path, &OpenOptions::default()).map(|r| Some(r.virtual_size())),
        };
        match size {
            Ok(size) => size,
            Err(e) => {
                let message = format!("cannot use the source image: {e}");
                self.err(at, &format!("{key}.source.file"), message);
                None
            }
        }
    }

    /// The `member` and `max_size` keys of a source.
    fn unpack_options(&mut self, source: &Source, key: &str) -> UnpackOptions {
        let max_size = (source.max_size.as_ref())
            .and_then(|s| self.size(s, &format!("{key}.source.max_size")));
        UnpackOptions {
            member: source.member.as_ref().map(|m| m.value.clone()),
            max_size,
            ..UnpackOptions::default()
        }
    }

    fn no_shrink(&mut self, current: u64, size: u64, at: &Spanned<ByteSize>, key: &str) {
        if size < current {
            self.err(at, &format!("{key}.size"), format!("size {size} is smaller than the source image ({current} bytes); kiln grows disks but never shrinks them"));
        }
    }
}

mod ami;
mod bundle;
mod cdrom;
mod cloud_init;
mod devices;
mod machine;
mod outputs;
mod product;
mod profiles;
mod sizes;
mod sources;

pub use ami::{AmiPart, AmiSource, PartitionChoice, ValidAmi};
pub use bundle::ValidBundle;

pub use cdrom::{CdromSource, ValidCdrom};
pub use cloud_init::ValidSeed;
pub use devices::ValidDevices;
pub use machine::ValidMachine;
pub use product::ValidProduct;
pub use sources::{Location, SignatureCheck, SourceCheck};
