//! The plan in words, for `kiln build --dry-run`.

use std::fmt::Write as _;

use super::Plan;
use super::container::{self, Kind};
use crate::container::package::{Form, file_names};
use crate::seed::{self, SeedFormat};
use crate::size::HumanSize;
use crate::spec::{DiskPlanSource, SourceCheck, ValidOutput};

impl Plan {
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
            let names = file_names(&target, self.spec.disks.len())
                .with_isos(self.spec.cdroms.iter().map(|c| c.suffix.as_str()));
            let files = match container::kind(o.container) {
                Kind::Package(Form::Ova) => {
                    format!(
                        " (holding {}, {})",
                        names.descriptor,
                        names.others().join(", ")
                    )
                }
                Kind::Package(Form::Files) => format!(" (+ {})", names.others().join(", ")),
                Kind::Triplet => triplet_text(o),
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
            sha256,
            check,
        } => match check_text(sha256.as_deref(), check, false) {
            Some(how) => format!("file {} ({how})", path.display()),
            None => format!("file {}", path.display()),
        },
        DiskPlanSource::Url { url, sha256, check } => {
            match check_text(sha256.as_deref(), check, true) {
                Some(how) => format!("url {url} ({how})"),
                None => format!("url {url}"),
            }
        }
    }
}

/// How a source is verified, e.g. `sha256 checked` or `sha256 <hex>, signature checked`.
fn check_text(sha256: Option<&str>, check: &SourceCheck, show_digest: bool) -> Option<String> {
    let mut parts = Vec::new();
    match sha256 {
        Some(hex) if show_digest => parts.push(format!("sha256 {hex}")),
        Some(_) => parts.push("sha256 checked".to_string()),
        None => {}
    }
    if check.sha512.is_some() {
        parts.push("sha512 checked".into());
    }
    if let Some(c) = &check.checksum {
        parts.push(format!("checksum file {}", c.display()));
    }
    if check.signature.is_some() {
        parts.push("signature checked".into());
    }
    (!parts.is_empty()).then(|| parts.join(", "))
}

fn options_text(o: &ValidOutput) -> String {
    let items: Vec<String> = o.options.iter().map(|(k, v)| format!("{k}={v}")).collect();
    if items.is_empty() {
        String::new()
    } else {
        format!(", options {}", items.join(","))
    }
}

/// `(+ app.aki, app.ari, app.glance.json)`: the files an ami output writes beside it.
fn triplet_text(o: &crate::spec::ValidOutput) -> String {
    let Some(ami) = &o.ami else {
        return String::new();
    };
    let file = std::path::Path::new(&o.file);
    let mut names = Vec::new();
    if ami.kernel.is_some() {
        names.push(file.with_extension("aki"));
    }
    if ami.ramdisk.is_some() {
        names.push(file.with_extension("ari"));
    }
    names.push(file.with_extension("glance.json"));
    let mut names: Vec<String> = names.iter().map(|n| n.display().to_string()).collect();
    if ami.bundle.is_some() {
        names.push("an EC2 bundle of each image".into());
    }
    format!(" (+ {})", names.join(", "))
}
