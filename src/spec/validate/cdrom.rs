//! CD-ROM drives in ova/ovf packages: the cloud-init seed (`cloud_init.deliver:
//! [seed-cdrom]`) and ISO files (`vm.cdroms`), each carried inside every package and
//! inserted in a drive on the IDE controller.
//!
//! Refused here, at the spec location: no ova/ovf output to carry them; a target list
//! mixing VirtualBox with a VMware profile (each finds the medium elsewhere); a `glance` or
//! `aws-vmimport` target (Glance turns the package's one disk into an image and AWS VM
//! Import its boot disk; neither attaches a CD-ROM, so the data would not reach the guest);
//! more drives than the IDE controller's two units (with the disks on `ide`); a file that
//! is not ISO 9660.

use std::io::Read;
use std::path::PathBuf;

use super::{Checker, ValidDisk, ValidOutput, packages};
use crate::container::ovf::Target;
use crate::container::profile::Profile;
use crate::seed::SeedSpec;
use crate::spec::model::{Controller, Spec};

/// Units on the one IDE controller kiln writes (primary master and slave).
const IDE_UNITS: usize = 2;
/// Where ISO 9660's first volume descriptor's identifier starts (sector 16, byte 1).
const ISO_MAGIC_AT: usize = 0x8001;

/// What a package's CD-ROM holds.
#[derive(Debug, Clone)]
pub enum CdromSource {
    /// The NoCloud seed ISO, built from these files.
    Seed(SeedSpec),
    /// An ISO 9660 file, copied unchanged.
    File(PathBuf),
}

/// One CD-ROM drive of every package, with its medium.
#[derive(Debug, Clone)]
pub struct ValidCdrom {
    /// The member's name after the package's stem: `seed` or `cdromN` (`<stem>-seed.iso`).
    pub suffix: String,
    /// The medium.
    pub source: CdromSource,
}

impl Checker<'_> {
    /// The packages' CD-ROM drives: the seed (when delivered so) first, then `vm.cdroms`.
    pub(super) fn cdroms(
        &mut self,
        spec: &Spec,
        outputs: &[ValidOutput],
        disks: &[ValidDisk],
        seed: Option<(SeedSpec, serde_saphyr::Location)>,
    ) -> Vec<ValidCdrom> {
        let mut cdroms = Vec::new();
        let mut asked_at = Vec::new();
        if let Some((contents, at)) = seed {
            asked_at.push((at, "cloud_init.deliver".to_string()));
            cdroms.push(ValidCdrom {
                suffix: "seed".into(),
                source: CdromSource::Seed(contents),
            });
        }
        let files = spec.vm.as_ref().map_or(&[][..], |v| &v.cdroms[..]);
        for (i, at) in files.iter().enumerate() {
            let key = format!("vm.cdroms[{i}]");
            asked_at.push((at.referenced, key.clone()));
            let Some(path) = self.existing_file(at, &key) else {
                continue;
            };
            if let Err(message) = check_iso(&path) {
                self.err(at, &key, format!("`{}` {message}", at.value));
                continue;
            }
            cdroms.push(ValidCdrom {
                suffix: format!("cdrom{}", i + 1),
                source: CdromSource::File(path),
            });
        }
        let Some((first, key)) = asked_at.first().cloned() else {
            return cdroms;
        };
        self.cdrom_fits(first, &key, asked_at.len(), outputs, disks);
        cdroms
    }

    /// Refuses CD-ROMs no package carries, targets that drop them, and too many drives.
    fn cdrom_fits(
        &mut self,
        at: serde_saphyr::Location,
        key: &str,
        drives: usize,
        outputs: &[ValidOutput],
        disks: &[ValidDisk],
    ) {
        let packages: Vec<&ValidOutput> = packages(outputs);
        if packages.is_empty() {
            let message = "a CD-ROM travels inside an ova/ovf package, but no output has `container_format: ova` or `ovf`; add one, or deliver the seed beside the disks (`seed-iso`)";
            self.err_loc(at, key, message.into());
        }
        for o in packages {
            let dropped = [Profile::Glance, Profile::AwsVmimport]
                .into_iter()
                .find(|p| o.target.has(*p));
            // VMware finds the medium through a File, VirtualBox through a Disk: a package
            // in VMware's dialect gives VirtualBox an empty drive.
            if o.target.has(Profile::Virtualbox7) && o.target.target == Target::Vmware {
                let message = format!(
                    "outputs[{}] targets VMware and VirtualBox, which find a CD-ROM's medium in different places (a File, a Disk), so one package cannot hand the ISO to both; build one package per importer",
                    o.index
                );
                self.err_loc(at, key, message);
            }
            if let Some(p) = dropped {
                let message = format!(
                    "outputs[{}] targets {}, whose import attaches no CD-ROM, so the ISO would not reach the guest; deliver the seed beside the disks (`seed-iso`) for that output",
                    o.index,
                    p.name()
                );
                self.err_loc(at, key, message);
            }
        }
        let ide_disks = (disks.iter())
            .filter(|d| d.controller == Some(Controller::Ide))
            .count();
        if ide_disks + drives > IDE_UNITS {
            let message = format!(
                "{drives} CD-ROM drive(s) and {ide_disks} disk(s) on `ide` need more than the IDE controller's {IDE_UNITS} units; move disks to another controller"
            );
            self.err_loc(at, key, message);
        }
    }
}

/// Whether the file at `path` is ISO 9660 (`CD001` in its first volume descriptor).
fn check_iso(path: &std::path::Path) -> Result<(), String> {
    let mut head = Vec::with_capacity(ISO_MAGIC_AT + 5);
    let file = std::fs::File::open(path).map_err(|e| format!("cannot be read: {e}"))?;
    (file.take((ISO_MAGIC_AT + 5) as u64))
        .read_to_end(&mut head)
        .map_err(|e| format!("cannot be read: {e}"))?;
    if head.get(ISO_MAGIC_AT..) == Some(b"CD001") {
        Ok(())
    } else {
        Err(format!(
            "is not an ISO 9660 image (no `CD001` at byte {ISO_MAGIC_AT:#x})"
        ))
    }
}
