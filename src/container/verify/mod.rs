//! Checking an OVF package (an `.ova`, or an `.ovf` with its files) the way importers will:
//! the tar layout, the manifest's form and every digest, the References files and their
//! sizes, each disk read through as an image with the capacity the descriptor says, the
//! certificate's signature, and the descriptor's cross references. Every problem is a
//! [`Finding`]; where ovftool, VirtualBox or vSphere refuse the same defect, the finding
//! quotes them.
//!
//! One read of the package: the descriptor, manifest and certificate are read into memory
//! (bounded), and every other file once, front to back, hashing it while a disk is decoded
//! ([`content`]). With `--target`, each importer profile's rules too ([`targets`]).
//!
//! Layering: builds on `ovf_read`, `signature`, `disk` and `io`; never imports `plan` or `spec`.

pub mod checks;
pub mod content;
pub mod mf;
pub mod package;
pub mod tar_walk;
pub mod targets;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use content::{DiskCheck, FileCheck};
pub use package::{Kind, Package};
use serde::Serialize;

use crate::container::finding::{Finding, Severity};
use crate::container::manifest::Algorithm;
use crate::container::signature::{self, CertStatus};
use crate::error::Result;

/// What checking needs from the caller.
#[derive(Debug, Clone, Default)]
pub struct VerifyOptions {
    /// The current time, Unix seconds (certificate validity).
    pub now: u64,
    /// Importer profiles whose rules apply too (`--target`); none for the generic checks.
    pub targets: Vec<crate::container::profile::Profile>,
}

/// The outcome of checking a package.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The path checked.
    pub package: PathBuf,
    /// OVA or OVF.
    pub kind: Kind,
    /// No errors.
    pub ok: bool,
    /// Error findings.
    pub errors: usize,
    /// Warning findings.
    pub warnings: usize,
    /// Every finding, in the order the checks ran.
    pub findings: Vec<Finding>,
    /// What was read of each file.
    pub files: Vec<FileReport>,
    /// The signature, when the package has one that could be read.
    pub certificate: Option<CertStatus>,
}

/// One file as read.
#[derive(Debug, Clone, Serialize)]
pub struct FileReport {
    /// Name.
    pub name: String,
    /// Length in bytes.
    pub size: u64,
    /// Digests computed (algorithm label → hex).
    pub digests: BTreeMap<&'static str, String>,
    /// The image, when the file is a disk.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disk: Option<DiskCheck>,
}

/// Checks the package at `path`.
///
/// # Errors
/// The path is not an OVA or OVF package, or reading it fails; every defect of the package
/// itself is a finding in the report.
pub fn verify_package(path: &Path, opts: &VerifyOptions) -> Result<Report> {
    let pkg = package::open(path)?;
    let mut findings = pkg.findings.clone();
    if let Some(d) = &pkg.descriptor {
        findings.extend(d.findings.iter().cloned());
    }
    if let Some((_, _, mf)) = &pkg.manifest {
        findings.extend(mf.findings.iter().cloned());
    }
    checks::layout(&pkg, &mut findings);
    checks::references(&pkg, &mut findings);
    checks::references_in_hardware(&pkg, &mut findings);
    let certificate = certificate(&pkg, opts, &mut findings);
    let mut computed = read_files(&pkg)?;
    if let Some(name) = &pkg.descriptor_name {
        let digests = algorithms_for(&pkg, name)
            .into_iter()
            .map(|a| {
                (
                    a,
                    crate::container::manifest::digest_hex(a, &pkg.descriptor_bytes),
                )
            })
            .collect();
        computed.insert(
            name.clone(),
            FileCheck {
                digests,
                disk: None,
            },
        );
    }
    checks::manifest(&pkg, &computed, &mut findings);
    checks::disks(&pkg, &computed, &mut findings);
    if let (Some(env), Some(name)) = (pkg.envelope(), &pkg.descriptor_name) {
        targets::check(env, name, &opts.targets, &mut findings);
    }
    let files = pkg
        .files
        .iter()
        .map(|f| FileReport {
            name: f.name.clone(),
            size: f.len(),
            digests: computed
                .get(&f.name)
                .map(|c| {
                    c.digests
                        .iter()
                        .map(|(a, d)| (a.label(), d.clone()))
                        .collect()
                })
                .unwrap_or_default(),
            disk: computed.get(&f.name).and_then(|c| c.disk.clone()),
        })
        .collect();
    let errors = findings
        .iter()
        .filter(|f| f.severity == Severity::Error)
        .count();
    Ok(Report {
        package: path.to_path_buf(),
        kind: pkg.kind,
        ok: errors == 0,
        errors,
        warnings: findings.len() - errors,
        findings,
        files,
        certificate,
    })
}

/// Checks the certificate, if any, against the manifest.
fn certificate(
    pkg: &Package,
    opts: &VerifyOptions,
    findings: &mut Vec<Finding>,
) -> Option<CertStatus> {
    let (cert_name, cert_bytes) = pkg.cert.as_ref()?;
    let cert = match signature::parse_cert(cert_bytes, cert_name) {
        Ok(c) => c,
        Err(f) => {
            findings.push(f);
            return None;
        }
    };
    let (mf_name, mf_bytes, _) = pkg.manifest.as_ref()?;
    let (status, found) = signature::check(&cert, mf_bytes, mf_name, cert_name, opts.now);
    findings.extend(found);
    Some(status)
}

/// Reads every file other than the descriptor, manifest and certificate once, in package
/// order: digests the manifest asks for, and disks read through.
fn read_files(pkg: &Package) -> Result<BTreeMap<String, FileCheck>> {
    let skip: Vec<&str> = [
        pkg.descriptor_name.as_deref(),
        pkg.manifest.as_ref().map(|(n, ..)| n.as_str()),
        pkg.cert.as_ref().map(|(n, ..)| n.as_str()),
    ]
    .into_iter()
    .flatten()
    .collect();
    let disk_files = disk_hrefs(pkg);
    let mut out = BTreeMap::new();
    for file in pkg
        .files
        .iter()
        .filter(|f| !skip.contains(&f.name.as_str()))
    {
        let algs = algorithms_for(pkg, &file.name);
        let as_disk = disk_files.contains(&file.name.as_str());
        let label = PathBuf::from(match pkg.kind {
            Kind::Ova => format!("{}:{}", pkg.path.display(), file.name),
            Kind::Ovf => file.name.clone(),
        });
        let check = content::check_file(file, &algs, as_disk, &label)
            .map_err(|e| e.with_path(&pkg.path))?;
        out.insert(file.name.clone(), check);
    }
    Ok(out)
}

/// The algorithms the manifest uses for `name`.
fn algorithms_for(pkg: &Package, name: &str) -> Vec<Algorithm> {
    pkg.manifest
        .as_ref()
        .map(|(_, _, mf)| {
            mf.entries
                .iter()
                .filter(|e| e.name == name)
                .map(|e| e.alg)
                .collect()
        })
        .unwrap_or_default()
}

/// The hrefs of files that Disks point at and kiln can read as images (not compressed,
/// not chunked).
fn disk_hrefs(pkg: &Package) -> Vec<&str> {
    let Some(env) = pkg.envelope() else {
        return Vec::new();
    };
    env.disks
        .iter()
        .filter_map(|d| env.file(d.file_ref.as_deref()?))
        .filter(|f| f.chunk_size.is_none())
        .filter(|f| f.compression.as_deref().is_none_or(|c| c == "identity"))
        .map(|f| f.href.as_str())
        .collect()
}

impl Report {
    /// The report for people: one line per finding, then a verdict.
    pub fn render(&self) -> String {
        let name = self.package.display();
        let mut out = String::new();
        for f in &self.findings {
            out.push_str(&format!("{name}: {}\n", f.render()));
        }
        let verdict = if self.ok { "OK" } else { "FAILED" };
        out.push_str(&format!(
            "{name}: {verdict} ({} errors, {} warnings)\n",
            self.errors, self.warnings
        ));
        out
    }
}
