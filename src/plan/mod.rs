//! Spec → Plan → artefacts: `kiln build`'s pipeline.
//!
//! validate (in `spec`) → [`Plan::new`] (pick outputs, refuse missing capabilities) →
//! fetch sources ([`fetch`]) → one `disk::convert` per disk, which reads the disk once and
//! feeds every output made from it (bare disks, or ova/ovf packages described by
//! [`package`]), each through its own [`OutputSet`] (each artefact appears only when
//! complete; a failure leaves artefacts of earlier disks in place) → the cloud-init NoCloud
//! seeds (`kiln::seed::write_seed`) → `NAME.kiln.json` and `SHA256SUMS` ([`report`]).
//!
//! A raw artefact's bytes are the disk's bytes: a second reader of the disk hashes them on
//! its own thread during the pass (as a lane it would wait for the slowest writer and hash
//! the disk's zero runs alone at the end). The others are
//! hashed by reading each finished file once (in parallel, holes not read) before it is
//! renamed into place: their writers patch tables, headers or (in an OVA) the head with
//! positioned writes, so a tee could not see the final bytes in order. A seed (a few KiB)
//! is hashed once `write_seed` has renamed it. Every derived id comes from a
//! [`BuildContext`] seeded with the spec and output names; timestamps from
//! `SOURCE_DATE_EPOCH` or the fixed default.
//!
//! Layering: `plan` is the one place that reads the checked spec and drives `container`,
//! `disk` and `io`; only `cli` sits above it (`tests/layering.rs`).

mod container;
mod digest;
pub mod fetch;
pub mod fits;
pub mod package;
pub mod report;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

pub use report::{Artefact, BuildReport, FileDigest};

use self::container::Kind;
use self::package::PackageRun;
use crate::container::package::{Form, file_names};
use crate::context::BuildContext;

use crate::disk::{
    self, Blank, CreateRequest, DiskFormat, DiskReader, DiskWriter, Grown, OpenOptions,
};
use crate::error::{Error, ErrorKind, Result};
use crate::io::output::{OutputSet, partial_path};
use crate::seed::{self, SeedFormat};
use crate::size::HumanSize;
use crate::spec::{DiskPlanSource, Span, ValidOutput, ValidSeed, ValidSpec};

/// Why a build step failed.
#[remain::sorted]
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    /// The HTTP request failed.
    #[error("cannot download {url}")]
    Download {
        /// The URL.
        url: String,
        /// The client error.
        #[source]
        source: Box<ureq::Error>,
    },
    /// The server answered with an error status.
    #[error("cannot download {url}: HTTP status {status}")]
    DownloadStatus {
        /// The URL.
        url: String,
        /// HTTP status.
        status: u16,
    },
    /// `--only` named no output.
    #[error("no output named `{only}`; the spec has {known}")]
    NoSuchOutput {
        /// The requested name.
        only: String,
        /// The names there are.
        known: String,
    },
    /// A source's digest differs from the spec's `sha256`.
    #[error("{at}: sha256 of {what} is {found}, but the spec says {expected}")]
    Sha256Mismatch {
        /// File or URL.
        what: String,
        /// From the spec.
        expected: String,
        /// Computed.
        found: String,
        /// Spec location, `spec.yaml:7:9 disks[0].source`.
        at: String,
    },
    /// The spec asks for capabilities this build does not have.
    #[error("{issues}")]
    Unsupported {
        /// One line per missing capability, with spec locations.
        issues: String,
    },
}

/// How to run a build.
#[derive(Debug, Clone, Default)]
pub struct BuildOptions {
    /// Output directory.
    pub out_dir: PathBuf,
    /// Build only the outputs and seeds with these names (all when empty). A seed is built
    /// only when named (`seed-iso`, `seed-vfat`) or when the list is empty.
    pub only: Vec<String>,
}

/// What a build will do: the checked spec and the outputs selected.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The spec.
    pub spec: ValidSpec,
    /// Selected outputs.
    pub outputs: Vec<ValidOutput>,
    /// Selected cloud-init seeds.
    pub seeds: Vec<ValidSeed>,
    /// Output directory.
    pub out_dir: PathBuf,
    /// The build's one context (time, creator, id seed from the spec's name); each
    /// artefact's context is derived from it.
    pub ctx: BuildContext,
}

impl Plan {
    /// Selects outputs and refuses specs that need capabilities this build lacks.
    ///
    /// # Errors
    /// An `--only` name that matches nothing; missing capabilities (all listed).
    pub fn new(spec: ValidSpec, opts: &BuildOptions) -> Result<Self> {
        let wanted = |name: &str| opts.only.is_empty() || opts.only.iter().any(|n| n == name);
        let outputs: Vec<ValidOutput> = spec
            .outputs
            .iter()
            .filter(|o| wanted(&o.name))
            .cloned()
            .collect();
        let seeds: Vec<ValidSeed> = spec
            .seeds
            .iter()
            .filter(|s| wanted(&s.name))
            .cloned()
            .collect();
        let known: Vec<&str> = spec
            .outputs
            .iter()
            .map(|o| o.name.as_str())
            .chain(spec.seeds.iter().map(|s| s.name.as_str()))
            .collect();
        if let Some(only) = opts.only.iter().find(|n| !known.contains(&n.as_str())) {
            let known: Vec<String> = known.iter().map(|n| format!("`{n}`")).collect();
            let e = PlanError::NoSuchOutput {
                only: only.clone(),
                known: known.join(", "),
            };
            return Err(Error::new(ErrorKind::InvalidInput, e));
        }
        // Missing capabilities of outputs `--only` left out do not stop the build.
        let skipped: Vec<String> = spec
            .outputs
            .iter()
            .filter(|o| !outputs.iter().any(|s| s.index == o.index))
            .map(|o| format!("outputs[{}]", o.index))
            .collect();
        let blocking: Vec<&crate::spec::Issue> = spec
            .unsupported
            .iter()
            .filter(|i| !skipped.contains(&i.key))
            .collect();
        if !blocking.is_empty() {
            let lines: Vec<String> = blocking
                .iter()
                .map(|i| locate(&spec.path, i.span, &i.key, &i.message))
                .collect();
            let e = PlanError::Unsupported {
                issues: lines.join("; "),
            };
            return Err(Error::new(ErrorKind::Unsupported, e));
        }
        fits::check(&spec, &outputs, &opts.out_dir)?;
        Ok(Self {
            ctx: BuildContext::from_env(&spec.name),
            spec,
            outputs,
            seeds,
            out_dir: opts.out_dir.clone(),
        })
    }

    /// The plan in words, for `--dry-run`.
    pub fn describe(&self) -> String {
        let mut s = format!(
            "plan for `{}` ({})\ninputs:\n",
            self.spec.name,
            self.spec.path.display()
        );
        for d in &self.spec.disks {
            let size = d
                .size
                .map(|b| format!(", size {}", HumanSize(b)))
                .unwrap_or_default();
            let _ = writeln!(s, "  disk {}: {}{size}", d.name, source_text(&d.source));
        }
        let _ = writeln!(s, "outputs (in {}):", self.out_dir.display());
        for o in &self.outputs {
            let disk = &self.spec.disks[o.disk].name;
            let target = self.out_dir.join(&o.file);
            let names = file_names(&target, self.spec.disks.len());
            let files = match container::kind(o.container) {
                Kind::Package(Form::Ova) => {
                    format!(
                        " (holding {}, {})",
                        names.descriptor,
                        names.others().join(", ")
                    )
                }
                Kind::Package(Form::Files) => format!(" (+ {})", names.others().join(", ")),
                Kind::Bare | Kind::NotBuilt => String::new(),
            };
            let _ = writeln!(
                s,
                "  {}: {}{files} ← disk {disk}, disk_format {}, container_format {}{}",
                o.name,
                target.display(),
                o.disk_format.name(),
                o.container.name(),
                options_text(o),
            );
        }
        for seed in &self.seeds {
            let _ = writeln!(
                s,
                "  {}: {} ← cloud_init, NoCloud seed ({}, label {})",
                seed.name,
                self.out_dir.join(&seed.file).display(),
                seed.disk_format(),
                seed_label(seed.format),
            );
        }
        s
    }

    /// Fetches sources, writes every artefact, then the report and SHA256SUMS.
    ///
    /// # Errors
    /// The first failing step; artefacts finished before it stay in place.
    pub fn execute(&self, log: &mut dyn FnMut(&str)) -> Result<BuildReport> {
        std::fs::create_dir_all(&self.out_dir)
            .map_err(|e| Error::io(e).with_path(&self.out_dir))?;
        let inputs = self.fetch_inputs(log)?;
        let total = self.outputs.len() + self.seeds.len();
        let mut packages = self.start_packages(&inputs, log)?;
        let mut numbered: Vec<(usize, Artefact)> = Vec::new();
        // One pass over each disk feeds all of its outputs and every package.
        for (disk, input) in inputs.iter().enumerate() {
            let group: Vec<(usize, &ValidOutput)> = (self.outputs.iter().enumerate())
                .filter(|(_, o)| o.disk == disk && !is_package(o))
                .collect();
            if group.is_empty() && packages.is_empty() {
                continue;
            }
            for (i, o) in &group {
                log(&format!(
                    "[{}/{total}] writing {} ({} in {})",
                    i + 1,
                    o.file,
                    o.disk_format.name(),
                    o.container.name()
                ));
            }
            let mut commits =
                self.write_outputs(disk, &group, input.as_ref(), &mut packages, log)?;
            // Packages are complete after the last disk; they are hashed and renamed
            // alongside that disk's outputs.
            if disk + 1 == inputs.len() {
                for p in packages.drain(..) {
                    commits.push((p.index, p.finish(self.spec.disks.len())?));
                }
            }
            numbered.extend(self.commit_all(commits)?);
        }
        numbered.sort_by_key(|(i, _)| *i);
        let mut artefacts: Vec<Artefact> = numbered.into_iter().map(|(_, a)| a).collect();
        for (i, seed) in self.seeds.iter().enumerate() {
            let n = self.outputs.len() + i + 1;
            log(&format!(
                "[{n}/{total}] writing {} (cloud-init NoCloud seed)",
                seed.file
            ));
            artefacts.push(self.write_seed(seed)?);
        }
        let report = BuildReport::new(&self.spec, artefacts);
        report.write(&self.out_dir, &self.spec.name)?;
        Ok(report)
    }

    /// Starts every ova/ovf output; they need every disk's size for their descriptor.
    fn start_packages(
        &self,
        inputs: &[Option<PathBuf>],
        log: &mut dyn FnMut(&str),
    ) -> Result<Vec<PackageRun>> {
        if !self.outputs.iter().any(is_package) {
            return Ok(Vec::new());
        }
        let sizes = (inputs.iter().enumerate())
            .map(|(i, input)| Ok(self.reader(i, input.as_ref())?.virtual_size()))
            .collect::<Result<Vec<u64>>>()?;
        let total = self.outputs.len() + self.seeds.len();
        let mut packages = Vec::new();
        for (i, o) in (self.outputs.iter().enumerate()).filter(|(_, o)| is_package(o)) {
            log(&format!(
                "[{}/{total}] writing {} ({} in {}, every disk)",
                i + 1,
                o.file,
                o.disk_format.name(),
                o.container.name()
            ));
            packages.push(PackageRun::start(
                &self.spec,
                &self.ctx,
                o,
                i,
                &self.out_dir,
                &sizes,
            )?);
        }
        Ok(packages)
    }

    /// Local paths of the disks the selected outputs use (`None` for blank disks).
    fn fetch_inputs(&self, log: &mut dyn FnMut(&str)) -> Result<Vec<Option<PathBuf>>> {
        let mut inputs = Vec::new();
        for (i, d) in self.spec.disks.iter().enumerate() {
            if !self.outputs.iter().any(|o| o.disk == i || is_package(o)) {
                inputs.push(None);
                continue;
            }
            let at = locate(
                &self.spec.path,
                d.source_span,
                &format!("disks[{i}].source"),
                "",
            );
            let at = at.trim_end_matches(": ");
            let path = match &d.source {
                DiskPlanSource::Blank => None,
                DiskPlanSource::File { path, sha256 } => {
                    fetch::verify_file(path, sha256.as_deref(), at)?;
                    Some(path.clone())
                }
                DiskPlanSource::Url { url, sha256 } => {
                    Some(fetch::fetch_url(url, sha256, at, log)?)
                }
            };
            inputs.push(path);
        }
        Ok(inputs)
    }

    fn reader(&self, disk_index: usize, input: Option<&PathBuf>) -> Result<Box<dyn DiskReader>> {
        let disk = &self.spec.disks[disk_index];
        let Some(path) = input else {
            return Ok(Box::new(Blank::new(disk.size.unwrap_or_default())));
        };
        let reader = disk::open(path, &OpenOptions::default())?;
        match disk.size {
            Some(size) if size != reader.virtual_size() => {
                let at = locate(
                    &self.spec.path,
                    disk.size_span,
                    &format!("disks[{disk_index}].size"),
                    "",
                );
                Ok(Box::new(Grown::new(reader, size).map_err(|e| {
                    e.with_path(Path::new(at.trim_end_matches(": ")))
                })?))
            }
            _ => Ok(reader),
        }
    }

    /// Writes every output of one disk and its part of every package from a single read of
    /// it; returns the finished bare outputs, still to be hashed and renamed.
    fn write_outputs(
        &self,
        disk_index: usize,
        outputs: &[(usize, &ValidOutput)],
        input: Option<&PathBuf>,
        packages: &mut [PackageRun],
        log: &mut dyn FnMut(&str),
    ) -> Result<Vec<(usize, Commit)>> {
        let mut reader = self.reader(disk_index, input)?;
        let virtual_size = reader.virtual_size();
        let mut sets = Vec::new();
        let mut writers = Vec::new();
        for (_, o) in outputs {
            let target = self.out_dir.join(&o.file);
            let mut set = OutputSet::new(&target, true);
            let writer = self
                .start_output(o, virtual_size, &mut set)
                .map_err(|e| e.with_path(&target))?;
            writers.push(Lane { writer, target });
            sets.push(set);
        }
        let mut package_lanes = Vec::new();
        for p in packages.iter_mut() {
            let o = &self.outputs[p.index];
            let writer = p.disk_lane(&self.spec, &self.ctx, o, disk_index, virtual_size)?;
            let target = p.target.clone();
            package_lanes.push(Lane { writer, target });
        }
        let mut lanes: Vec<&mut dyn DiskWriter> = (writers.iter_mut())
            .chain(package_lanes.iter_mut())
            .map(|w| w as &mut dyn DiskWriter)
            .collect();
        // A raw image's bytes are the disk's bytes. They are hashed from a second reader of
        // the disk on a thread of its own, rather than as a lane of the pass: a lane would
        // be paced by the slowest writer (a compressing one) and hash the disk's zero runs
        // alone at the end; rather than by re-reading the finished image either.
        let raw = outputs
            .iter()
            .any(|(_, o)| o.engine_format == DiskFormat::Raw);
        let (converted, digest) = digest::convert_and_hash(
            || disk::convert(reader.as_mut(), &mut lanes, &mut |_| {}),
            raw.then_some(|ticks: &digest::Ticks<'_>| self.disk_digest(disk_index, input, ticks)),
            &self.spec.disks[disk_index].name,
            virtual_size,
            log,
        );
        converted.map_err(|e| match input {
            Some(path) => e.with_path(path),
            None => e,
        })?;
        let digest = digest.transpose()?;
        for (lane, p) in package_lanes.into_iter().zip(packages.iter_mut()) {
            let report = Box::new(lane).finish()?;
            p.disk_done(report)?;
        }
        let mut commits = Vec::new();
        for ((lane, (i, o)), set) in writers.into_iter().zip(outputs).zip(sets) {
            let report = (lane.writer.finish()).map_err(|e| e.with_path(&lane.target))?;
            let streamed = (digest.clone())
                .filter(|_| o.engine_format == DiskFormat::Raw)
                .map(|d| (d, report.virtual_size));
            let commit = Commit {
                target: lane.target,
                virtual_size: report.virtual_size,
                streamed,
                extras: Vec::new(),
                set,
            };
            commits.push((*i, commit));
        }
        Ok(commits)
    }

    /// SHA-256 of disk `disk_index`'s bytes, read by a reader of its own.
    fn disk_digest(
        &self,
        disk_index: usize,
        input: Option<&PathBuf>,
        ticks: &digest::Ticks<'_>,
    ) -> Result<String> {
        let mut reader = self.reader(disk_index, input)?;
        digest::digest(reader.as_mut(), ticks).map_err(|e| match input {
            Some(path) => e.with_path(path),
            None => e,
        })
    }

    /// Hashes (raw outputs already are), syncs and renames each finished output on its own
    /// thread, so one file's hashing overlaps another's sync; describes them. A failure
    /// leaves the other outputs of the group committed.
    fn commit_all(&self, commits: Vec<(usize, Commit)>) -> Result<Vec<(usize, Artefact)>> {
        let done: Vec<Result<(usize, Artefact)>> = std::thread::scope(|scope| {
            let handles: Vec<_> = (commits.into_iter())
                .map(|(i, c)| scope.spawn(move || self.commit(i, c)))
                .collect();
            (handles.into_iter())
                .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
                .collect()
        });
        done.into_iter().collect()
    }

    /// Hashes, syncs and renames output `i`.
    fn commit(&self, i: usize, c: Commit) -> Result<(usize, Artefact)> {
        let (sha256, size) = match c.streamed {
            Some(digest) => digest,
            None => fetch::hash_file(&partial_path(&c.target))?,
        };
        let mut files = Vec::new();
        for extra in &c.extras {
            let (sha256, size) = fetch::hash_file(&partial_path(extra))?;
            files.push(FileDigest::new(extra, size, sha256));
        }
        c.set.commit().map_err(|e| e.with_path(&c.target))?;
        let o = &self.outputs[i];
        let mut artefact = Artefact::new(&self.spec, o, &c.target, size, sha256, c.virtual_size);
        artefact.files = files;
        Ok((i, artefact))
    }

    /// The writer of bare output `o` (a disk of `virtual_size` bytes), creating its file in
    /// `set`.
    fn start_output(
        &self,
        o: &ValidOutput,
        virtual_size: u64,
        set: &mut OutputSet,
    ) -> Result<Box<dyn DiskWriter>> {
        let ctx = self.ctx.derive(&o.name);
        let req = CreateRequest {
            format: o.engine_format,
            virtual_size,
            options: &o.options,
            compress: false,
            ctx: &ctx,
        };
        disk::create(&req, set)
    }

    /// Writes one seed (atomically, through `write_seed`'s partial file) and describes it.
    fn write_seed(&self, seed: &ValidSeed) -> Result<Artefact> {
        let ctx = self.ctx.derive(&seed.name);
        let target = self.out_dir.join(&seed.file);
        seed::write_seed(&seed.contents, seed.format, &ctx, &target, true).map_err(|e| {
            let at = locate(&self.spec.path, seed.span, "cloud_init", "");
            e.with_path(Path::new(at.trim_end_matches(": ")))
        })?;
        let (sha256, size) = fetch::hash_file(&target)?;
        Ok(Artefact::seed(&self.spec, seed, size, sha256))
    }
}

/// Whether `o` is an ova/ovf package (which holds every disk).
fn is_package(o: &ValidOutput) -> bool {
    matches!(container::kind(o.container), Kind::Package(_))
}

/// A finished output waiting to be hashed, synced and renamed.
pub(crate) struct Commit {
    target: PathBuf,
    virtual_size: u64,
    /// The digest and size already computed while writing (raw outputs).
    streamed: Option<(String, u64)>,
    /// Other files of the output (an `ovf` package's manifest and disks).
    extras: Vec<PathBuf>,
    set: OutputSet,
}

fn seed_label(format: SeedFormat) -> &'static str {
    match format {
        SeedFormat::Iso => seed::SEED_ISO_LABEL,
        SeedFormat::Vfat => seed::SEED_FAT_LABEL,
    }
}

fn source_text(source: &DiskPlanSource) -> String {
    match source {
        DiskPlanSource::Blank => "blank".into(),
        DiskPlanSource::File {
            path,
            sha256: Some(_),
        } => format!("file {} (sha256 checked)", path.display()),
        DiskPlanSource::File { path, sha256: None } => format!("file {}", path.display()),
        DiskPlanSource::Url { url, sha256 } => format!("url {url} (sha256 {sha256})"),
    }
}

fn options_text(o: &ValidOutput) -> String {
    let items: Vec<String> = o.options.iter().map(|(k, v)| format!("{k}={v}")).collect();
    if items.is_empty() {
        String::new()
    } else {
        format!(", options {}", items.join(","))
    }
}

/// One output of a pass: a writer whose errors name its file (several write at once).
struct Lane {
    writer: Box<dyn DiskWriter>,
    target: PathBuf,
}

impl DiskWriter for Lane {
    fn write_extent(&mut self, extent: disk::Extent<'_>) -> Result<()> {
        (self.writer.write_extent(extent)).map_err(|e| e.with_path(&self.target))
    }

    fn finish(self: Box<Self>) -> Result<disk::WriteReport> {
        let Lane { writer, target } = *self;
        writer.finish().map_err(|e| e.with_path(&target))
    }
}

/// `spec.yaml:7:9: key: message`.
fn locate(path: &Path, span: Option<Span>, key: &str, message: &str) -> String {
    let at = span
        .map(|s| format!(":{}:{}", s.line, s.col))
        .unwrap_or_default();
    format!("{}{at}: {key}: {message}", path.display())
}
