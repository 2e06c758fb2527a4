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
//! Files by responsibility: selection here ([`Plan::new`]), `describe` (the dry-run text),
//! `execute` (fetch, the passes, seeds, report), `commit` (hash, sync, rename),
//! `container` (the container kind of each output), [`package`] (ova/ovf outputs),
//! [`fetch`] (sources) and [`report`]. Digests are `container::manifest`'s.
//!
//! Layering: `plan` is the one place that reads the checked spec and drives `container`,
//! `disk` and `io`; only `cli` sits above it (`tests/layering.rs`).

mod bundle;
mod commit;
mod container;
mod describe;
mod digest;
mod execute;
pub mod fits;
pub mod package;
pub mod progress;
pub mod report;
mod triplet;

use std::path::{Path, PathBuf};

pub use progress::{Observer, TaskId};
pub use report::{Artefact, BuildReport, FileDigest};

use self::commit::Commit;
use self::container::Kind;
use crate::context::BuildContext;
use crate::error::{Error, ErrorKind, Result};
use crate::spec::{Span, ValidOutput, ValidSeed, ValidSign, ValidSpec};

/// Why a build step failed.
#[remain::sorted]
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    /// `--only` named no output.
    #[error("no output named `{only}`; the spec has {known}")]
    NoSuchOutput {
        /// The requested name.
        only: String,
        /// The names there are.
        known: String,
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
    /// `(key, certificate)` that sign every ova/ovf output, replacing the spec's `sign:`.
    pub sign: Option<(PathBuf, PathBuf)>,
    /// Write `NAME.kiln.json` and `SHA256SUMS` (and hash every artefact for them). `kiln
    /// ova` writes only the package it was asked for.
    pub report: bool,
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
    /// Whether the report and SHA256SUMS are written ([`BuildOptions::report`]).
    pub report: bool,
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
            .map(|o| with_signer(o, opts.sign.as_ref()))
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
        let plan = Self {
            ctx: BuildContext::from_env(&spec.name),
            spec,
            outputs,
            seeds,
            out_dir: opts.out_dir.clone(),
            report: opts.report,
        };
        plan.preflight_bundles()?;
        plan.preflight_signers()?;
        Ok(plan)
    }
}

/// `o` signed with the command line's key and certificate, when it is a package.
fn with_signer(mut o: ValidOutput, sign: Option<&(PathBuf, PathBuf)>) -> ValidOutput {
    if let Some((key, cert)) = sign
        && is_package(&o)
    {
        o.sign = Some(ValidSign {
            key: key.clone(),
            cert: cert.clone(),
            span: None,
        });
    }
    o
}

/// Whether `o` is an ova/ovf package (which holds every disk).
fn is_package(o: &ValidOutput) -> bool {
    matches!(container::kind(o.container), Kind::Package(_))
}

/// `spec.yaml:7:9: key: message`.
fn locate(path: &Path, span: Option<Span>, key: &str, message: &str) -> String {
    let at = span
        .map(|s| format!(":{}:{}", s.line, s.col))
        .unwrap_or_default();
    format!("{}{at}: {key}: {message}", path.display())
}
