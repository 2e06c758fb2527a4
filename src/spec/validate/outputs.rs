//! Output checks: names, files, disk/container pairs (Glance's rules), writer options, and
//! the containers this build does not have.

use std::collections::BTreeMap;

use super::{Checker, ValidDisk, ValidOutput, ValidSign};
use std::path::Path;

use crate::container::ovf::{Bus, max_disks};
use crate::container::package::{MAX_MEMBER_NAME, file_names};
use crate::container::profile::{ALL_BUSES, Resolved, bus_name};
use crate::disk::KvOptions;
use crate::spec::Issue;
use crate::spec::model::{
    ContainerFormat, Controller, ManifestDigest, Output, OutputDiskFormat, Spanned, Spec,
};
use crate::suggest::closest;

impl Checker<'_> {
    pub(super) fn outputs(
        &mut self,
        spec: &Spec,
        spec_name: &str,
        disks: &[ValidDisk],
    ) -> Vec<ValidOutput> {
        if spec.outputs.is_empty() {
            self.missing(
                "outputs",
                "the spec has no outputs; add at least one under `outputs:`".into(),
            );
        }
        let mut names: BTreeMap<String, usize> = BTreeMap::new();
        let mut files: BTreeMap<String, usize> = BTreeMap::new();
        let mut outputs = Vec::new();
        for (i, at) in spec.outputs.iter().enumerate() {
            let key = format!("outputs[{i}]");
            let o = &at.value;
            let name = match &o.name {
                Some(n) => self.name(n, &format!("{key}.name")),
                None => default_name(o).to_string(),
            };
            if let Some(first) = names.insert(name.clone(), i) {
                let hint = if o.name.is_none() {
                    "; give one of them a `name:`"
                } else {
                    ""
                };
                let loc = o.name.as_ref().map_or(at.referenced, |n| n.referenced);
                self.err_loc(
                    loc,
                    &format!("{key}.name"),
                    format!("duplicate output name `{name}` (also outputs[{first}]){hint}"),
                );
            }
            let file = self.output_file(o, spec_name, &name, &key);
            self.member_names(at, &file, &key, spec.disks.len());
            if let Some(first) = files.insert(file.clone(), i) {
                let loc = o.file.as_ref().map_or(at.referenced, |n| n.referenced);
                self.err_loc(
                    loc,
                    &format!("{key}.file"),
                    format!("duplicate output file `{file}` (also outputs[{first}]); set `file:`"),
                );
            }
            self.pair(at, &key);
            let target = self.packaging(at, &key, spec);
            let disk = self.output_disk(o, &key, spec, disks);
            let options = self.output_options(o, &key);
            let ami = self.ami(at, &key);
            let sign = self.sign(at, &key);
            let (Some(disk), Some(options), Some(sign)) = (disk, options, sign) else {
                continue;
            };
            if o.container_format == ContainerFormat::Ami && ami.is_none() {
                continue;
            }
            outputs.push(ValidOutput {
                index: i,
                name,
                file,
                disk,
                disk_format: o.disk_format,
                engine_format: o.disk_format.engine(),
                container: o.container_format,
                options,
                target,
                manifest: (o.manifest.as_ref()).map_or(ManifestDigest::Sha256, |m| m.value),
                ami,
                sign,
            });
        }
        outputs
    }

    fn output_file(&mut self, o: &Output, spec_name: &str, name: &str, key: &str) -> String {
        let Some(file) = &o.file else {
            let ext = match o.container_format {
                ContainerFormat::Ova | ContainerFormat::Ovf => o.container_format.name(),
                _ => o.disk_format.extension(),
            };
            return if name == default_name(o) {
                format!("{spec_name}.{ext}")
            } else {
                format!("{spec_name}-{name}.{ext}")
            };
        };
        self.name(file, &format!("{key}.file"))
    }

    /// Glance: aki/ari/ami disks and containers only pair with each other; OVF/OVA hold VMDK.
    fn pair(&mut self, at: &Spanned<Output>, key: &str) {
        use ContainerFormat as C;
        use OutputDiskFormat as D;
        let (d, c) = (at.value.disk_format, at.value.container_format);
        let amazon = |d| matches!(d, D::Aki | D::Ari | D::Ami);
        let ok = match c {
            C::Bare => !amazon(d),
            C::Ovf | C::Ova => d == D::Vmdk,
            C::Aki => d == D::Aki,
            C::Ari => d == D::Ari,
            C::Ami => d == D::Ami,
        };
        let (dn, cn) = (d.name(), c.name());
        if !ok {
            let rule = match c {
                C::Bare => {
                    format!("Glance requires container_format `{dn}` for disk_format `{dn}`")
                }
                C::Ovf | C::Ova => format!("{cn} containers hold vmdk disks"),
                _ => format!("container_format `{cn}` needs disk_format `{cn}`"),
            };
            self.err(
                at,
                key,
                format!("disk_format `{dn}` cannot go in container_format `{cn}`: {rule}"),
            );
            return;
        }
        // The triplet and its bundle are built; a lone kernel or ramdisk is not.
        let missing = match c {
            C::Bare | C::Ova | C::Ovf => return,
            C::Ami => return,
            C::Aki => {
                "a kernel is written beside its ami: set `kernel:` on an ami output (a path inside the image or `{ file: PATH }`)"
            }
            C::Ari => {
                "a ramdisk is written beside its ami: set `ramdisk:` on an ami output (a path inside the image or `{ file: PATH }`)"
            }
        };
        let message = format!("container_format `{cn}` cannot be built alone: {missing}");
        self.unsupported
            .push(Issue::at(&at.referenced, self.text, key, message));
    }

    /// An OVA's members are named after its file; ustar holds names of up to 100 bytes.
    fn member_names(&mut self, at: &Spanned<Output>, file: &str, key: &str, disks: usize) {
        let o = &at.value;
        if o.container_format != ContainerFormat::Ova {
            return;
        }
        let Some(disk) = file_names(Path::new(file), disks).disks.pop() else {
            return;
        };
        if disk.len() > MAX_MEMBER_NAME {
            let loc = o.file.as_ref().map_or(at.referenced, |f| f.referenced);
            self.err_loc(loc, &format!("{key}.file"), format!("the OVA's disk member `{disk}` would be longer than {MAX_MEMBER_NAME} bytes (a ustar limit); choose a shorter `file:` name"));
        }
    }

    /// `sign:` of output `at`: `Some(None)` without one, `None` after reporting errors.
    fn sign(&mut self, at: &Spanned<Output>, key: &str) -> Option<Option<ValidSign>> {
        let Some(sign) = &at.value.sign else {
            return Some(None);
        };
        let key = format!("{key}.sign");
        if !matches!(
            at.value.container_format,
            ContainerFormat::Ova | ContainerFormat::Ovf
        ) {
            self.err(
                sign,
                &key,
                "`sign` applies only to ovf and ova containers".into(),
            );
            return None;
        }
        let file = |value: &String| Spanned {
            value: value.clone(),
            referenced: sign.referenced,
            defined: sign.defined,
        };
        let private = self.existing_file(&file(&sign.value.key), &format!("{key}.key"));
        let cert = self.existing_file(&file(&sign.value.cert), &format!("{key}.cert"));
        Some(Some(ValidSign {
            key: private?,
            cert: cert?,
            span: self.span(sign),
        }))
    }

    /// Package rules: every disk (no `disk:`), a streamOptimized VMDK, hardware the target
    /// can express; `target` and `manifest` only on ovf/ova outputs. Returns the target
    /// profiles' common denominator.
    fn packaging(&mut self, at: &Spanned<Output>, key: &str, spec: &Spec) -> Resolved {
        let o = &at.value;
        if !matches!(
            o.container_format,
            ContainerFormat::Ova | ContainerFormat::Ovf
        ) {
            if let Some(t) = &o.target {
                self.err(
                    t,
                    &format!("{key}.target"),
                    "`target` applies only to ovf and ova containers".into(),
                );
            }
            if let Some(m) = &o.manifest {
                self.err(
                    m,
                    &format!("{key}.manifest"),
                    "`manifest` applies only to ovf and ova containers".into(),
                );
            }
            return Resolved::default();
        }
        if let Some(sub) = (o.options.as_ref()).and_then(|opts| opts.value.get("subformat"))
            && sub.to_string() != "streamOptimized"
        {
            let opts = o.options.as_ref().map_or(at.referenced, |x| x.referenced);
            self.err_loc(opts, &format!("{key}.options"), format!("an OVA holds a streamOptimized VMDK, not subformat `{sub}`; leave `subformat` out"));
        }
        if let Some(d) = &o.disk {
            let message = format!(
                "an {} package holds every disk of the appliance; remove `disk:`",
                o.container_format.name()
            );
            self.err(d, &format!("{key}.disk"), message);
        }
        let target = self.target_profiles(at, key);
        self.target_rules(at, key, spec, &target);
        self.controller_counts(at, key, spec, target.target.default_bus());
        target
    }

    /// Disks per controller within what the importers allow (one controller per bus).
    fn controller_counts(&mut self, at: &Spanned<Output>, key: &str, spec: &Spec, default: Bus) {
        for bus in ALL_BUSES.iter().copied() {
            let n = (spec.disks.iter())
                .filter(|d| d.value.controller.map_or(default, Controller::bus) == bus)
                .count();
            if n > max_disks(bus) {
                let name = bus_name(bus);
                let message = format!(
                    "{n} disks on one {name} controller; a package holds at most {} (set `controller:` on some disks)",
                    max_disks(bus)
                );
                self.err_loc(at.referenced, key, message);
            }
        }
    }

    fn output_disk(
        &mut self,
        o: &Output,
        key: &str,
        spec: &Spec,
        disks: &[ValidDisk],
    ) -> Option<usize> {
        let Some(wanted) = &o.disk else {
            return (!disks.is_empty()).then_some(0);
        };
        if let Some(i) = disks.iter().position(|d| d.name == wanted.value) {
            return Some(i);
        }
        let known: Vec<&str> = spec
            .disks
            .iter()
            .map(|d| d.value.name.value.as_str())
            .collect();
        let hint = closest(&wanted.value, &known)
            .map(|k| format!("; did you mean `{k}`?"))
            .unwrap_or_default();
        self.err(
            wanted,
            &format!("{key}.disk"),
            format!("no disk named `{}`{hint}", wanted.value),
        );
        None
    }

    fn output_options(&mut self, o: &Output, key: &str) -> Option<KvOptions> {
        let mut kv = KvOptions::default();
        let Some(options) = &o.options else {
            return Some(kv);
        };
        for (k, v) in &options.value {
            kv.set(k, &v.to_string());
        }
        let format = o.disk_format.engine();
        match kv.check_known(o.disk_format.name(), format.option_keys()) {
            Ok(()) => Some(kv),
            Err(e) => {
                self.err(options, &format!("{key}.options"), e.to_string());
                None
            }
        }
    }
}

/// An output's name when it has none: the container for packages (`ova`), else the disk
/// format (`qcow2`).
fn default_name(o: &Output) -> &'static str {
    match o.container_format {
        ContainerFormat::Ova | ContainerFormat::Ovf => o.container_format.name(),
        _ => o.disk_format.name(),
    }
}
