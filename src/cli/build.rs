//! `kiln build`, `kiln validate` and `kiln init`: the spec-driven commands.
//!
//! Spec errors become miette diagnostics: the first problem carries the labelled snippet,
//! the others follow as related diagnostics, each with its own `file:line:col`.

use std::path::{Path, PathBuf};

use clap::Args;
use kiln::plan::{BuildOptions, Plan};
use kiln::spec::{self, Issue, SpecErrors, ValidSpec};
use miette::{Diagnostic, LabeledSpan, NamedSource, SourceSpan};

use super::KilnDiagnostic;
use super::progress::BuildProgress;

/// Starter specs `kiln init --template NAME` writes (name, text).
const TEMPLATES: &[(&str, &str)] = &[
    ("minimal", include_str!("../../templates/minimal.yaml")),
    (
        "ubuntu-cloud",
        include_str!("../../templates/ubuntu-cloud.yaml"),
    ),
    (
        "debian-cloud",
        include_str!("../../templates/debian-cloud.yaml"),
    ),
    (
        "openstack-qcow2",
        include_str!("../../templates/openstack-qcow2.yaml"),
    ),
    (
        "vmware-ova",
        include_str!("../../templates/vmware-ova.yaml"),
    ),
    (
        "virtualbox-ova",
        include_str!("../../templates/virtualbox-ova.yaml"),
    ),
    ("aws-ami", include_str!("../../templates/aws-ami.yaml")),
    (
        "fedora-cloud",
        include_str!("../../templates/fedora-cloud.yaml"),
    ),
];

/// Files a template names beside itself, written next to its `kiln.yaml` by `kiln init`
/// (template, file name, text): the trust anchors a template cannot ask users to hunt for.
const TEMPLATE_FILES: &[(&str, &str, &str)] = &[(
    "ubuntu-cloud",
    "ubuntu-cloudimage-keyring.asc",
    include_str!("../../templates/ubuntu-cloudimage-keyring.asc"),
)];

/// Where a spec's input files may come from.
#[derive(Debug, Args)]
pub(super) struct ConfineArgs {
    /// Refuse every input the spec names (`file:`, cloud-init files, `eula:`) unless it
    /// resolves, after symlinks, inside the spec's directory or an --allow-dir; checked
    /// before anything is opened. For specs kiln's user did not write (a build service).
    #[arg(long)]
    confine: bool,
    /// With --confine: another directory inputs may come from (repeatable).
    #[arg(long = "allow-dir", value_name = "DIR", requires = "confine")]
    allow_dir: Vec<PathBuf>,
}

impl ConfineArgs {
    pub(super) fn options(&self) -> spec::ValidateOptions {
        if self.confine {
            spec::ValidateOptions::confined(&self.allow_dir)
        } else {
            spec::ValidateOptions::default()
        }
    }
}

/// The target profiles an OVA/OVF output's `target:` names, for `kiln build --help`
/// (a unit test keeps it equal to `container::profile`).
pub(super) const TARGET_PROFILES_HELP: &str = "\
OVA/OVF target profiles (spec `outputs[].target:`, one name or a list; a list writes what
every target accepts, or the spec is refused at validation):
  name             descriptor      hardware ceiling  notes
  vmware           vmx-13          -                 the default; also imports in VirtualBox
  esxi-6.7         vmx-14          vmx-14            refuses ovf:compression
  esxi-7           vmx-17          vmx-19 (7.0 U2)   refuses ovf:compression
  esxi-8           vmx-20          vmx-21 (8.0 U2)   refuses ovf:compression
  workstation-17   vmx-20          vmx-21 (17.5)
  virtualbox-7     virtualbox-2.2  -                 alias virtualbox; e1000/virtio NICs, no EFI
  aws-vmimport     vmx-13          -                 stream VMDK, 64-bit Linux os, BIOS or UEFI
  glance           vmx-13          -                 exactly one disk
  generic          vmx-13          -                 only the DMTF rules";

#[derive(Debug, Args)]
pub(super) struct BuildArgs {
    /// The appliance spec (YAML).
    spec: PathBuf,
    #[command(flatten)]
    confine: ConfineArgs,
    /// Print the plan (inputs, outputs, sizes, formats) and stop.
    #[arg(long)]
    dry_run: bool,
    /// Output directory (created when missing).
    #[arg(
        short = 'o',
        long = "output-dir",
        value_name = "DIR",
        default_value = "build"
    )]
    out_dir: PathBuf,
    /// Build only these outputs (repeat or separate with commas). The cloud-init seeds are
    /// outputs named `seed-iso` and `seed-vfat`: without --only they are built with
    /// everything else; with --only only when named.
    #[arg(long, value_name = "NAME", value_delimiter = ',')]
    only: Vec<String>,
    /// Sign every ova/ovf output's manifest with this RSA private key (PEM), writing
    /// NAME.cert as `kiln sign` does; replaces the spec's `sign:`. Needs --sign-cert.
    #[arg(long, value_name = "PEM", requires = "sign_cert")]
    sign_key: Option<PathBuf>,
    /// The certificate chain (PEM, signer first) for --sign-key.
    #[arg(long, value_name = "PEM", requires = "sign_key")]
    sign_cert: Option<PathBuf>,
    /// No progress on stderr.
    #[arg(short, long)]
    quiet: bool,
    /// `text` (default): the artefacts' paths on stdout, one per line. `json`: the build
    /// report (NAME.kiln.json) on stdout.
    #[arg(long, value_name = "FORMAT", default_value = "text", value_parser = ["text", "json"])]
    output: String,
    /// More detail on stderr.
    #[arg(short, long)]
    verbose: bool,
    /// Download nothing: every source, checksum and signature file must be in the cache
    /// (`kiln fetch SPEC` fills it); otherwise fail at once, naming every one missing.
    #[arg(long)]
    offline: bool,
}

#[derive(Debug, Args)]
pub(super) struct ValidateArgs {
    /// The appliance spec (YAML).
    spec: PathBuf,
    #[command(flatten)]
    confine: ConfineArgs,
    /// The directory `kiln build` would write to: artefacts as large as their disk (raw,
    /// fixed, preallocated) must fit on its filesystem.
    #[arg(
        short = 'o',
        long = "output-dir",
        value_name = "DIR",
        default_value = "build"
    )]
    out_dir: PathBuf,
}

#[derive(Debug, Args)]
pub(super) struct InitArgs {
    /// Template: minimal, ubuntu-cloud, debian-cloud, fedora-cloud, openstack-qcow2,
    /// vmware-ova, virtualbox-ova, aws-ami.
    #[arg(short, long, value_name = "NAME", default_value = "minimal")]
    template: String,
    /// Replace an existing kiln.yaml (and the files a template writes beside it, such as
    /// `ubuntu-cloud`'s signing key).
    #[arg(long)]
    force: bool,
    /// Directory to write `kiln.yaml` into (default: the current directory).
    dir: Option<PathBuf>,
}

pub(super) fn build(args: &BuildArgs) -> miette::Result<()> {
    let spec = load(&args.spec, &args.confine.options())?;
    let opts = BuildOptions {
        out_dir: args.out_dir.clone(),
        only: args.only.clone(),
        sign: args.sign_key.clone().zip(args.sign_cert.clone()),
        report: true,
    };
    let plan = Plan::new(spec, &opts).map_err(wrap)?;
    if args.dry_run {
        print!("{}", plan.describe());
        return Ok(());
    }
    let mut obs = BuildProgress::observer(args.quiet);
    let obs = obs.as_mut();
    if args.verbose {
        obs.line(&plan.describe());
    }
    let fetched = super::fetch::for_build(&plan, args.offline, obs)?;
    let report = plan.execute_with(&fetched, obs).map_err(wrap)?;
    if args.output == "json" {
        let json = serde_json::to_string_pretty(&report)
            .map_err(|e| wrap(kiln::Error::new(kiln::ErrorKind::Io, e)))?;
        println!("{json}");
    } else {
        for a in &report.artefacts {
            println!("{}", plan.out_dir.join(&a.path).display());
        }
    }
    let name = &plan.spec.name;
    obs.line(&format!(
        "report: {}",
        plan.out_dir.join(format!("{name}.kiln.json")).display()
    ));
    Ok(())
}

pub(super) fn validate(args: &ValidateArgs) -> miette::Result<()> {
    let spec = load(&args.spec, &args.confine.options())?;
    kiln::plan::fits::check(&spec, &spec.outputs, &args.out_dir).map_err(wrap)?;
    for note in &spec.unsupported {
        eprintln!(
            "kiln: note: {}: cannot be built by this kiln: {}",
            where_(&spec, note),
            note.message
        );
    }
    let seeds = if spec.seeds.is_empty() {
        String::new()
    } else {
        let names: Vec<&str> = spec.seeds.iter().map(|s| s.name.as_str()).collect();
        format!(", cloud-init {}", names.join(", "))
    };
    println!(
        "{}: valid ({} disks, {} outputs{seeds})",
        spec.path.display(),
        spec.disks.len(),
        spec.outputs.len()
    );
    Ok(())
}

pub(super) fn init(args: &InitArgs) -> miette::Result<()> {
    let Some((_, text)) = TEMPLATES.iter().find(|(n, _)| *n == args.template) else {
        let names: Vec<&str> = TEMPLATES.iter().map(|(n, _)| *n).collect();
        let hint = kiln::suggest::closest(&args.template, &names)
            .map(|n| format!("did you mean `{n}`? "))
            .unwrap_or_default();
        let message = format!(
            "no template `{}`; {hint}templates: {}",
            args.template,
            names.join(", ")
        );
        return Err(wrap(kiln::Error::invalid_input(message)));
    };
    let dir = args.dir.clone().unwrap_or_else(|| PathBuf::from("."));
    std::fs::create_dir_all(&dir).map_err(|e| wrap(kiln::Error::io(e).with_path(&dir)))?;
    let companions = TEMPLATE_FILES
        .iter()
        .filter(|(t, _, _)| *t == args.template);
    let files: Vec<(PathBuf, &str)> = std::iter::once((dir.join("kiln.yaml"), *text))
        .chain(companions.map(|(_, name, text)| (dir.join(name), *text)))
        .collect();
    // Refuse before writing anything, so an init never leaves half a project behind.
    let existing = files.iter().find(|(p, _)| p.exists());
    if let (Some((path, _)), false) = (existing, args.force) {
        let e = kiln::Error::invalid_input("already exists; pass --force to replace it")
            .with_path(path);
        return Err(wrap(e));
    }
    for (path, text) in &files {
        std::fs::write(path, text).map_err(|e| wrap(kiln::Error::io(e).with_path(path)))?;
        println!("{}", path.display());
    }
    Ok(())
}

fn wrap(e: kiln::Error) -> miette::Report {
    miette::Report::new(KilnDiagnostic(e))
}

pub(super) fn load(path: &Path, opts: &spec::ValidateOptions) -> miette::Result<ValidSpec> {
    let (parsed, text) = spec::load(path).map_err(|e| report(&e))?;
    spec::validate_with(path, parsed, text, opts).map_err(|e| report(&e))
}

fn where_(spec: &ValidSpec, issue: &Issue) -> String {
    let at = issue
        .span
        .map(|s| format!(":{}:{}", s.line, s.col))
        .unwrap_or_default();
    format!("{}{at}: {}", spec.path.display(), issue.key)
}

/// Every issue as one diagnostic: the first on top, the rest related.
fn report(errors: &SpecErrors) -> miette::Report {
    let source = NamedSource::new(errors.path.display().to_string(), errors.text.clone());
    let mut diags: Vec<IssueDiagnostic> = errors
        .issues
        .iter()
        .map(|i| IssueDiagnostic::new(errors, i, source.clone()))
        .collect();
    if diags.is_empty() {
        return miette::miette!("{errors}");
    }
    let mut first = diags.remove(0);
    first.related = diags;
    miette::Report::new(first)
}

#[derive(Debug, thiserror::Error)]
#[error("{message}")]
struct IssueDiagnostic {
    message: String,
    code: NamedSource<String>,
    label: Option<LabeledSpan>,
    related: Vec<IssueDiagnostic>,
}

impl IssueDiagnostic {
    fn new(errors: &SpecErrors, issue: &Issue, source: NamedSource<String>) -> Self {
        let key = if issue.key.is_empty() {
            String::new()
        } else {
            format!("{}: ", issue.key)
        };
        let at = issue
            .span
            .map(|s| format!(":{}:{}", s.line, s.col))
            .unwrap_or_default();
        let message = format!("{}{at}: {key}{}", errors.path.display(), issue.message);
        let text_len = errors.text.len();
        // A label needs a span inside the text and at least one line to show.
        let label = issue.span.filter(|_| text_len > 0).map(|s| {
            let offset = usize::try_from(s.offset)
                .unwrap_or(text_len)
                .min(text_len.saturating_sub(1));
            let len = usize::try_from(s.len)
                .unwrap_or(1)
                .min(text_len - offset)
                .max(1);
            LabeledSpan::new_with_span(Some("here".into()), SourceSpan::from((offset, len)))
        });
        Self {
            message,
            code: source,
            label,
            related: Vec::new(),
        }
    }
}

impl Diagnostic for IssueDiagnostic {
    fn source_code(&self) -> Option<&dyn miette::SourceCode> {
        self.label
            .as_ref()
            .map(|_| &self.code as &dyn miette::SourceCode)
    }

    fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
        // Always Some, so the CLI renders the report (and its related issues) in full.
        Some(Box::new(self.label.clone().into_iter()))
    }

    fn related<'a>(&'a self) -> Option<Box<dyn Iterator<Item = &'a dyn Diagnostic> + 'a>> {
        if self.related.is_empty() {
            return None;
        }
        Some(Box::new(self.related.iter().map(|d| d as &dyn Diagnostic)))
    }
}

#[cfg(test)]
mod tests {
    use super::TARGET_PROFILES_HELP;

    #[test]
    fn the_help_lists_every_target_profile() {
        for name in kiln::container::profile::Profile::names() {
            let listed = TARGET_PROFILES_HELP.lines().any(|l| {
                l.split_whitespace().next() == Some(name) || l.contains(&format!("alias {name};"))
            });
            assert!(listed, "{name} missing from kiln build --help");
        }
    }
}
