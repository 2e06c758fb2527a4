//! Running a plan: fetch the sources, one pass per disk feeding every output made from it
//! (bare disks in their own pass, packages across all passes), then seeds, the report and
//! SHA256SUMS.

use std::path::{Path, PathBuf};

use super::digest;
use super::package::PackageRun;
use super::progress::{Observer, TaskId};
use super::triplet;
use super::{Artefact, BuildReport, Commit, Plan, is_package, locate};
use crate::container::manifest;
use crate::disk::{self, Blank, CreateRequest, DiskFormat, DiskReader, DiskWriter, Grown};
use crate::error::{Error, Result};
use crate::fetch;
use crate::io::output::OutputSet;
use crate::seed;
use crate::spec::{DiskPlanSource, ValidOutput, ValidSeed};
use crate::unpack::{self, UnpackOptions};

impl Plan {
    /// Fetches sources, writes every artefact, then the report and SHA256SUMS.
    ///
    /// # Errors
    /// The first failing step; artefacts finished before it stay in place.
    pub fn execute(&self, obs: &mut dyn Observer) -> Result<BuildReport> {
        let opts = fetch::Options { offline: false };
        let mut on = |e: fetch::Event<'_>| {
            if let fetch::Event::Log(line) = e {
                obs.line(line);
            }
        };
        let fetched = self.fetch_sources(false, opts, &mut on)?;
        self.execute_with(&fetched, obs)
    }

    /// Writes every artefact from sources already fetched and verified by
    /// [`Plan::fetch_sources`] (`fetched`, as it returned them), then the report and
    /// SHA256SUMS. `kiln build` fetches first (to fail early, and to show download bars),
    /// and each source is then read for its digest once, not again here.
    ///
    /// # Errors
    /// The first failing step; artefacts finished before it stay in place.
    pub fn execute_with(
        &self,
        fetched: &[Option<PathBuf>],
        obs: &mut dyn Observer,
    ) -> Result<BuildReport> {
        if fetched.len() != self.spec.disks.len() {
            return Err(Error::invalid_input(
                "execute_with: one fetched path per disk of the spec is needed",
            ));
        }
        std::fs::create_dir_all(&self.out_dir)
            .map_err(|e| Error::io(e).with_path(&self.out_dir))?;
        let mut inputs = self.unpack_inputs(fetched.to_vec(), obs)?;
        loop {
            match self.write_all(&inputs, obs)? {
                Run::Done(report) => return Ok(report),
                Run::FixedVhd(disk) => {
                    // The source's path: the cached copy is plain, so this happens once.
                    let Some(path) = &fetched[disk] else {
                        return Err(Error::unsupported("a blank disk ended in a VHD footer"));
                    };
                    obs.line(&format!(
                        "{} ends in a VHD footer: a fixed VHD, which streams only as raw; decompressing it into the cache and starting again",
                        path.display()
                    ));
                    let mut log = |line: &str| obs.line(line);
                    let opts = self.unpack_options(disk);
                    inputs[disk] = Some(unpack::prepare_again(path, &opts, &mut log)?);
                }
            }
        }
    }

    /// Writes every artefact from the prepared `inputs`, then the report and SHA256SUMS;
    /// stops early when a streamed source turns out to be a fixed VHD.
    fn write_all(&self, inputs: &[Option<PathBuf>], obs: &mut dyn Observer) -> Result<Run> {
        // An ami's partition is found before anything is written.
        let ranges = self.ami_ranges(inputs)?;
        let mut steps = Steps {
            done: 0,
            total: self.outputs.len() + self.seeds.len(),
        };
        let mut packages = self.start_packages(inputs, &mut steps, obs)?;
        let mut numbered: Vec<(usize, Artefact)> = Vec::new();
        // One pass over each disk feeds all of its outputs and every package.
        for (disk, input) in inputs.iter().enumerate() {
            let group: Vec<(usize, &ValidOutput)> = (self.outputs.iter().enumerate())
                .filter(|(_, o)| o.disk == disk && !is_package(o))
                .collect();
            if group.is_empty() && packages.is_empty() {
                continue;
            }
            for (_, o) in &group {
                obs.line(&steps.next(&format!(
                    "writing {} ({} in {})",
                    o.file,
                    o.disk_format.name(),
                    o.container.name()
                )));
            }
            let pass = Pass {
                disk,
                outputs: &group,
                input: input.as_ref(),
                ranges: &ranges,
            };
            let mut commits = match self.write_outputs(&pass, &mut packages, obs) {
                Err(e) if unpack::is_fixed_vhd(&e) && streamed(input.as_ref())? => {
                    return Ok(Run::FixedVhd(disk));
                }
                other => other?,
            };
            // Packages are complete after the last disk; they are hashed and renamed
            // alongside that disk's outputs.
            if disk + 1 == inputs.len() {
                for p in packages.drain(..) {
                    obs.finish(TaskId::Write(p.index));
                    commits.push((p.index, p.finish(self.spec.disks.len())?));
                }
            }
            numbered.extend(self.commit_all(commits)?);
        }
        numbered.sort_by_key(|(i, _)| *i);
        let mut artefacts: Vec<Artefact> = numbered.into_iter().map(|(_, a)| a).collect();
        for seed in &self.seeds {
            obs.line(&steps.next(&format!("writing {} (cloud-init NoCloud seed)", seed.file)));
            artefacts.push(self.write_seed(seed)?);
        }
        let report = BuildReport::new(&self.spec, artefacts);
        if self.report {
            report.write(&self.out_dir, &self.spec.name)?;
        }
        Ok(Run::Done(report))
    }

    /// Starts every ova/ovf output; they need every disk's size for their descriptor.
    fn start_packages(
        &self,
        inputs: &[Option<PathBuf>],
        steps: &mut Steps,
        obs: &mut dyn Observer,
    ) -> Result<Vec<PackageRun>> {
        if !self.outputs.iter().any(is_package) {
            return Ok(Vec::new());
        }
        let sizes = (inputs.iter().enumerate())
            .map(|(i, input)| Ok(self.reader(i, input.as_ref())?.virtual_size()))
            .collect::<Result<Vec<u64>>>()?;
        let mut packages = Vec::new();
        for (i, o) in (self.outputs.iter().enumerate()).filter(|(_, o)| is_package(o)) {
            obs.line(&steps.next(&format!(
                "writing {} ({} in {}, every disk)",
                o.file,
                o.disk_format.name(),
                o.container.name()
            )));
            obs.start(TaskId::Write(i), &o.file, sizes.iter().sum());
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

    /// The fetched sources as the engine reads them: compressed images that cannot be
    /// streamed are unpacked into the cache here (`None` stays `None`).
    fn unpack_inputs(
        &self,
        fetched: Vec<Option<PathBuf>>,
        obs: &mut dyn Observer,
    ) -> Result<Vec<Option<PathBuf>>> {
        let mut log = |line: &str| obs.line(line);
        (fetched.into_iter().enumerate())
            .map(|(i, path)| {
                path.map(|p| unpack::prepare(&p, &self.unpack_options(i), &mut log))
                    .transpose()
            })
            .collect()
    }

    /// Fetches and verifies the sources of the disks the selected outputs use (every disk's
    /// when `all`), in disk order; `None` for disks not needed and blank disks. With
    /// `opts.offline`, one error names every source missing from the cache.
    ///
    /// # Errors
    /// Verification and download failures (`kiln::fetch`).
    pub fn fetch_sources(
        &self,
        all: bool,
        opts: fetch::Options,
        on: &mut dyn FnMut(fetch::Event<'_>),
    ) -> Result<Vec<Option<PathBuf>>> {
        let mut ats = Vec::new();
        for (i, d) in self.spec.disks.iter().enumerate() {
            let at = locate(
                &self.spec.path,
                d.source_span,
                &format!("disks[{i}].source"),
                "",
            );
            ats.push(at.trim_end_matches(": ").to_string());
        }
        let used: Vec<usize> = (0..self.spec.disks.len())
            .filter(|i| all || self.outputs.iter().any(|o| o.disk == *i || is_package(o)))
            .collect();
        let wanted: Vec<fetch::Wanted<'_>> = (used.iter())
            .map(|&i| fetch::Wanted {
                source: &self.spec.disks[i].source,
                at: &ats[i],
            })
            .collect();
        let cache = fetch::Cache::new(fetch::cache_dir());
        let paths = fetch::resolve_all(&cache, &wanted, opts, on)?;
        let mut inputs = vec![None; self.spec.disks.len()];
        for (i, p) in used.into_iter().zip(paths) {
            inputs[i] = p;
        }
        Ok(inputs)
    }

    pub(super) fn reader(
        &self,
        disk_index: usize,
        input: Option<&PathBuf>,
    ) -> Result<Box<dyn DiskReader>> {
        let disk = &self.spec.disks[disk_index];
        let Some(path) = input else {
            return Ok(Box::new(Blank::new(disk.size.unwrap_or_default())));
        };
        let reader = unpack::open(path, &self.unpack_options(disk_index))?;
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

    /// How disk `disk_index`'s source is unpacked: its `member` and `max_size`, its
    /// digest (the cache key), and whether an ami output needs it as a file (to read its
    /// partition table) rather than as a stream.
    fn unpack_options(&self, disk_index: usize) -> UnpackOptions {
        let disk = &self.spec.disks[disk_index];
        // The compressed file's digest keys its unpacked copy; without one it is hashed.
        let sha256 = match &disk.source {
            DiskPlanSource::File { sha256, .. } | DiskPlanSource::Url { sha256, .. } => {
                sha256.clone()
            }
            DiskPlanSource::Blank => None,
        };
        let force_cache = (self.outputs.iter()).any(|o| o.disk == disk_index && o.ami.is_some());
        UnpackOptions {
            member: disk.member.clone(),
            max_size: disk.max_size,
            sha256,
            force_cache,
        }
    }

    /// Writes every output of one disk and its part of every package from a single read of
    /// it; returns the finished bare outputs, still to be hashed and renamed.
    fn write_outputs(
        &self,
        pass: &Pass<'_>,
        packages: &mut [PackageRun],
        obs: &mut dyn Observer,
    ) -> Result<Vec<(usize, Commit)>> {
        let Pass {
            disk: disk_index,
            outputs,
            input,
            ranges,
        } = *pass;
        let mut reader = self.reader(disk_index, input)?;
        let virtual_size = reader.virtual_size();
        for (i, o) in outputs {
            obs.start(TaskId::Write(*i), &o.file, virtual_size);
        }
        let mut sets = Vec::new();
        let mut writers = Vec::new();
        for (i, o) in outputs {
            let target = self.out_dir.join(&o.file);
            let mut set = OutputSet::new(&target, true);
            let writer = match ranges.get(*i).copied().flatten() {
                Some(range) => self.ami_lane(o, range, &mut set),
                None => self.start_output(o, virtual_size, &mut set),
            }
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
        let raw = outputs.iter().any(|(_, o)| streams_disk(o));
        // Every lane moves with the reader (their queues are short): one position for all.
        let packages_before: Vec<(usize, u64)> = (packages.iter())
            .map(|p| (p.index, p.bytes_before(disk_index)))
            .collect();
        let tasks: Vec<TaskId> = outputs.iter().map(|(i, _)| TaskId::Write(*i)).collect();
        let (converted, digest) = digest::convert_and_hash(
            |obs: &mut dyn Observer| {
                disk::convert(reader.as_mut(), &mut lanes, &mut |done| {
                    tasks.iter().for_each(|t| obs.advance(*t, done));
                    for (index, before) in &packages_before {
                        obs.advance(TaskId::Write(*index), before + done);
                    }
                })
            },
            raw.then_some(|ticks: &digest::Ticks<'_>| self.disk_digest(disk_index, input, ticks)),
            (disk_index, &self.spec.disks[disk_index].name),
            virtual_size,
            obs,
        );
        tasks.iter().for_each(|t| obs.finish(*t));
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
                .filter(|_| streams_disk(o))
                .map(|d| (d, report.virtual_size));
            let triplet = self.ami_extras(o, &lane.target)?;
            let commit = Commit {
                target: lane.target,
                virtual_size: report.virtual_size,
                streamed,
                extras: Vec::new(),
                triplet,
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
        let (sha256, size) = manifest::hash_file(&target)?;
        Ok(Artefact::seed(&self.spec, seed, size, sha256))
    }
}

/// Whether output `o`'s bytes are the whole disk's, hashed from a second reader (an ami is
/// a crop of the disk, hashed from its file).
fn streams_disk(o: &ValidOutput) -> bool {
    o.engine_format == DiskFormat::Raw && o.ami.is_none()
}

/// How a run of [`Plan::write_all`] ended.
enum Run {
    /// Every artefact is written.
    Done(BuildReport),
    /// The stream of disk N's compressed source ended in a VHD footer.
    FixedVhd(usize),
}

/// Whether `input` is read as a stream from its decoder (a compressed file).
fn streamed(input: Option<&PathBuf>) -> Result<bool> {
    input.map_or(Ok(false), |p| unpack::is_compressed(p))
}

/// Step lines numbered in the order the steps start.
struct Steps {
    done: usize,
    total: usize,
}

impl Steps {
    /// `[N/TOTAL] what` for the next step.
    fn next(&mut self, what: &str) -> String {
        self.done += 1;
        format!("[{}/{}] {what}", self.done, self.total)
    }
}

/// One disk's pass: the disk, its bare outputs (with their positions), where its bytes
/// are, and every ami's range.
#[derive(Clone, Copy)]
struct Pass<'a> {
    disk: usize,
    outputs: &'a [(usize, &'a ValidOutput)],
    input: Option<&'a PathBuf>,
    ranges: &'a [Option<triplet::Range>],
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
