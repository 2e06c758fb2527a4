//! Before a build writes anything: every artefact whose file is as large as its disk (raw
//! and Amazon disks, fixed VHD/VHDX, static VDI, flat VMDK, preallocated qcow2) must fit on
//! the output directory's filesystem.
//!
//! `kiln create -f raw x 1E` fails with EFBIG when it sets the file's length at the end. A
//! build hashes a raw artefact while it writes it, so the same failure used to come only
//! after hashing an exabyte of zeros. Asking the filesystem first (an anonymous file
//! extended to the size, see [`file_size_fits`]) costs one system call per artefact.

use std::path::Path;

use crate::disk::DiskFormat;
use crate::error::{Error, ErrorKind, Result};
use crate::io::output::file_size_fits;
use crate::size::HumanSize;
use crate::spec::{ValidOutput, ValidSpec};

/// Refuses the first of `outputs` whose file cannot be as large as its disk in `out_dir`.
///
/// # Errors
/// [`ErrorKind::InvalidInput`] naming the output, its size and the directory.
pub fn check(spec: &ValidSpec, outputs: &[ValidOutput], out_dir: &Path) -> Result<()> {
    for o in outputs.iter().filter(|o| full_size_file(o)) {
        let Some(size) = spec.disks.get(o.disk).and_then(|d| d.final_size()) else {
            continue;
        };
        if file_size_fits(out_dir, size) == Some(false) {
            let message = format!(
                "outputs[{}] ({}): a {} disk of {} ({size} bytes) does not fit in one file on the filesystem of {}; choose a smaller size, a sparse format such as qcow2, or an output directory on a filesystem that holds files this large",
                o.index,
                o.file,
                o.disk_format.name(),
                HumanSize(size),
                out_dir.display()
            );
            return Err(Error::new(ErrorKind::InvalidInput, message).with_path(&spec.path));
        }
    }
    Ok(())
}

/// Whether `o`'s file is (at least) as large as its virtual disk.
fn full_size_file(o: &ValidOutput) -> bool {
    let option = |key: &str| o.options.get(key).map(str::to_ascii_lowercase);
    let on = |key: &str| o.options.get_bool(key).ok().flatten() == Some(true);
    match o.engine_format {
        DiskFormat::Raw => true,
        DiskFormat::Vhd => option("subformat").as_deref() == Some("fixed") || on("azure"),
        DiskFormat::Vhdx => option("subformat").as_deref() == Some("fixed"),
        DiskFormat::Vdi => {
            matches!(option("subformat").as_deref(), Some("fixed" | "static")) || on("static")
        }
        DiskFormat::Vmdk => {
            option("subformat").is_some_and(|s| s.eq_ignore_ascii_case("monolithicFlat"))
        }
        DiskFormat::Qcow2 => option("preallocation").is_some_and(|p| p != "off"),
        DiskFormat::Iso => false,
    }
}
