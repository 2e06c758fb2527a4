//! Disk sizes against what each output format holds, checked before anything is built.
//!
//! A size the format cannot hold fails here with the output's spec location, instead of at
//! the end of a build (a 1 EiB raw disk used to be hashed for SHA256SUMS "forever" before
//! the write failed). The limits are the writers' own (each `create` refuses more;
//! `tests/defects.rs` holds the two together); qcow2's depends on the cluster size, so it is asked of the
//! qcow2 module. What the output's *filesystem* holds is checked where the output directory
//! is known (`kiln::plan`).

use super::{Checker, ValidDisk, ValidOutput};
use crate::disk::{DiskFormat, KvOptions, qcow2};
use crate::size::HumanSize;
use crate::spec::model::{ContainerFormat, Spanned, Spec};

/// VHD: 2040 GiB, qemu's limit, which kiln's writer keeps.
const VHD_MAX_BYTES: u64 = 2040 << 30;
/// VHDX: 64 TiB (VHDX spec, "Virtual Disk Size").
const VHDX_MAX_BYTES: u64 = 64 << 40;
/// VMDK: 64 TiB, the largest capacity kiln reads or writes.
const VMDK_MAX_BYTES: u64 = 64 << 40;
/// VDI: 0x3fffffff blocks of 1 MiB, the most kiln's writer maps.
const VDI_MAX_BYTES: u64 = 0x3fff_ffff << 20;
/// Raw: the largest file offset (`off_t`); the filesystem usually holds less.
const RAW_MAX_BYTES: u64 = i64::MAX as u64;

impl Checker<'_> {
    /// Every output's disks (each disk of a package) fit its format.
    pub(super) fn output_sizes(
        &mut self,
        spec: &Spec,
        outputs: &[ValidOutput],
        disks: &[ValidDisk],
    ) {
        for o in outputs {
            let held: Vec<&ValidDisk> = match o.container {
                ContainerFormat::Ova | ContainerFormat::Ovf => disks.iter().collect(),
                _ => disks.get(o.disk).into_iter().collect(),
            };
            for d in held {
                let Some(size) = d.final_size() else { continue };
                let Some(why) = too_large(o.engine_format, &o.options, size) else {
                    continue;
                };
                let at: &Spanned<_> = &spec.outputs[o.index];
                let message = format!(
                    "disk `{}` is {} ({size} bytes), more than a {} holds: {why}",
                    d.name,
                    HumanSize(size),
                    o.disk_format.name()
                );
                self.err(at, &format!("outputs[{}]", o.index), message);
            }
        }
    }
}

/// Why `format` cannot hold `size` bytes, or `None` when it can.
fn too_large(format: DiskFormat, options: &KvOptions, size: u64) -> Option<String> {
    let max = match format {
        DiskFormat::Qcow2 => {
            return qcow2::measure(options, size, None)
                .err()
                .map(|e| e.to_string());
        }
        DiskFormat::Raw => RAW_MAX_BYTES,
        DiskFormat::Vmdk => VMDK_MAX_BYTES,
        DiskFormat::Vhd => VHD_MAX_BYTES,
        DiskFormat::Vhdx => VHDX_MAX_BYTES,
        DiskFormat::Vdi => VDI_MAX_BYTES,
        DiskFormat::Iso => return None,
    };
    (size > max).then(|| format!("at most {} ({max} bytes)", HumanSize(max)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(format: DiskFormat, size: u64) -> bool {
        too_large(format, &KvOptions::default(), size).is_some()
    }

    #[test]
    fn vhd_holds_2040_gib_and_no_more() {
        assert!(!refused(DiskFormat::Vhd, VHD_MAX_BYTES));
        assert!(refused(DiskFormat::Vhd, VHD_MAX_BYTES + 1));
    }

    #[test]
    fn raw_holds_up_to_the_largest_file_offset() {
        assert!(!refused(DiskFormat::Raw, RAW_MAX_BYTES));
        assert!(refused(DiskFormat::Raw, RAW_MAX_BYTES + 1));
    }

    #[test]
    fn qcow2_limit_follows_the_cluster_size() {
        let mut big_clusters = KvOptions::default();
        big_clusters.set("cluster_size", "2M");
        let size = 1u64 << 55;
        assert!(too_large(DiskFormat::Qcow2, &KvOptions::default(), size).is_some());
        assert!(too_large(DiskFormat::Qcow2, &big_clusters, size).is_none());
    }
}
