//! VMDK images (VMware Virtual Disk Format 5.0).
//!
//! Writers (`-o subformat=...`, as qemu-img):
//! - `monolithicSparse` (default, like qemu-img): one hosted sparse extent, version 1, 64 KiB
//!   grains, descriptor embedded at sector 1, a redundant grain directory and all grain
//!   tables preallocated after it (qemu's layout). RAM: one grain table (2 KiB) and a write
//!   buffer of at most 4 MiB.
//! - `streamOptimized`: the layout of the spec's "Stream-Optimized Compressed Sparse
//!   Extents": version 3, `gdOffset = GD_AT_END`, zlib (RFC 1950) compressed grains with
//!   LBA+size grain markers, each grain table behind a GT marker right after its grains, the
//!   grain directory behind a GD marker, then footer marker, footer and end-of-stream marker,
//!   every structure sector aligned. 7-Zip, qemu, libvmdk and format_inspector accept it.
//!   Grains are compressed in batches of 128 (8 MiB) on the rayon pool
//!   and written in order by one writer, so the bytes do not depend on the thread count.
//!   Compression is libdeflate's whole-buffer zlib encoder: on the benchmark corpus its
//!   level 6 is ~1% smaller than qemu's zlib level 6 at ~1/3 of the CPU time, while
//!   flate2's zlib-rs backend at level 6 was ~2-3% larger than zlib (it follows zlib-ng's
//!   faster level 6) at ~1/2 of the CPU time. Reading inflates each grain whole with
//!   libdeflate (~40% less CPU than the flate2/zlib-rs streaming it replaced, on the
//!   corpus), up to 4 MiB of grains at a time in parallel, handed out in order.
//!   The previous batch is written while the next compresses (`rayon::join`). RAM: one
//!   batch in (8 MiB), two batches of compressed grains (each ≤ ~8 MiB), one grain table
//!   and the grain directory (4 bytes per 32 MiB of disk); ~30-40 MiB peak RSS measured.
//! - `monolithicFlat`: a descriptor plus `<stem>-flat.vmdk` holding the raw disk, written
//!   sparse (zero blocks stay holes).
//!
//! Other `-o` keys: `adapter_type` (ide, lsilogic, buslogic, legacyESX; default ide as in
//! qemu-img), `hwversion` (default 4 as in qemu-img; `compat6` makes it 6),
//! `toolsversion` (default 2147483647, qemu's "not installed"), `compression_level` (1..9,
//! default 6 = zlib's Z_DEFAULT_COMPRESSION, what qemu uses). ESXi and the OVA import path
//! take the controller from the OVF, so the descriptor's adapter only matters for
//! stand-alone use; ide is kept as the default for qemu-img compatibility. CID and
//! `ddb.uuid` derive from the build context. All-zero grains are never stored. `-c` is
//! accepted only with `subformat=streamOptimized`, as in qemu-img.
//!
//! Readers: hosted sparse extents (monolithicSparse, streamOptimized in the spec layout
//! with footer and in qemu's/open-vmdk's layout with the directory in front), text
//! descriptors of monolithicSparse/streamOptimized/monolithicFlat/twoGbMaxExtentSparse/
//! twoGbMaxExtentFlat with SPARSE, FLAT and ZERO extents.
//!
//! Refused: extent names that are not plain file names in the descriptor's directory
//! (as Glance's format_inspector refuses `/`), symlinked or non-regular extent files, delta
//! disks (`parentCID`), VMFS/ESX (`COWD`) extents, unknown createTypes, capacities above
//! 64 TiB, grain directories above 16 MiB, grain tables outside the file or overlapping each
//! other, the header or the directory, compressed grains whose marker names another LBA or
//! whose data does not inflate to exactly one grain (or, for the disk's last grain, to
//! exactly what is left of the disk, as qemu-img writes it).

mod descriptor;
mod error;
mod extent;
mod flat;
mod grains;
mod header;
mod reader;
mod sequential;
mod sparse;
mod stream;

use std::path::Path;

use descriptor::CreateType;
pub use error::VmdkError;
pub use reader::safety_reasons;
pub use sequential::{StreamInput, open_sequential, stream_capacity};

use super::{CreateRequest, DiskReader, DiskWriter};
use crate::error::{Error, Result};
use crate::io::Source;
use crate::io::output::OutputSet;

/// The `-o` keys the vmdk writer accepts.
pub(super) const OPTION_KEYS: &[&str] = &[
    "subformat",
    "adapter_type",
    "hwversion",
    "toolsversion",
    "compression_level",
    "compat6",
];

/// Grain size of every image kiln writes: 128 sectors (64 KiB), as qemu-img and VMware.
const VMDK_WRITE_GRAIN_SECTORS: u64 = 128;
/// Sectors reserved for the embedded descriptor, as qemu-img does.
const VMDK_DESCRIPTOR_SECTORS: u64 = 20;

pub(super) fn open(src: Source, dir: Option<&Path>) -> Result<Box<dyn DiskReader>> {
    Ok(Box::new(reader::VmdkReader::open(src, dir)?))
}

pub(super) fn create(req: &CreateRequest<'_>, out: &mut OutputSet) -> Result<Box<dyn DiskWriter>> {
    let opts = WriteOptions::from_request(req)?;
    match opts.subformat {
        CreateType::StreamOptimized => Ok(Box::new(stream::StreamWriter::new(req, &opts, out)?)),
        CreateType::MonolithicFlat => Ok(Box::new(flat::FlatWriter::new(req, &opts, out)?)),
        _ => Ok(Box::new(sparse::SparseWriter::new(req, &opts, out)?)),
    }
}

/// A streamOptimized writer that writes the image front to back into `out` (for example a
/// member of an OVA), its descriptor naming the extent `extent_name`. `req.options` may
/// leave `subformat` out; any other subformat is refused.
///
/// # Errors
/// Invalid options or a capacity VMDK cannot hold.
pub(super) fn create_stream_into(
    req: &CreateRequest<'_>,
    out: Box<dyn crate::io::Sink>,
    extent_name: &str,
) -> Result<Box<dyn DiskWriter>> {
    req.options.check_known("vmdk", OPTION_KEYS)?;
    let mut opts = WriteOptions::from_request(req)?;
    match req.options.get("subformat") {
        None => opts.subformat = CreateType::StreamOptimized,
        Some(_) if opts.subformat == CreateType::StreamOptimized => {}
        Some(other) => {
            return Err(VmdkError::BadOption {
                key: "subformat",
                value: other.to_string(),
                reason: "a packaged VMDK is always streamOptimized",
            }
            .into());
        }
    }
    Ok(Box::new(stream::StreamWriter::into_sink(
        req,
        &opts,
        out,
        extent_name,
    )?))
}

/// Validated writer options.
#[derive(Debug, Clone)]
struct WriteOptions {
    subformat: CreateType,
    adapter_type: &'static str,
    hw_version: String,
    tools_version: String,
    compression_level: u32,
    capacity: u64,
}

impl WriteOptions {
    fn from_request(req: &CreateRequest<'_>) -> Result<Self> {
        let o = req.options;
        let subformat = match o.get_choice(
            "subformat",
            &["monolithicSparse", "streamOptimized", "monolithicFlat"],
        )? {
            Some("streamOptimized") => CreateType::StreamOptimized,
            Some("monolithicFlat") => CreateType::MonolithicFlat,
            _ => CreateType::MonolithicSparse,
        };
        if req.compress && subformat != CreateType::StreamOptimized {
            return Err(Error::invalid_input(
                "-c needs -o subformat=streamOptimized for vmdk",
            ));
        }
        let adapter_type = o
            .get_choice(
                "adapter_type",
                &["ide", "lsilogic", "buslogic", "legacyESX"],
            )?
            .unwrap_or("ide");
        let compat6 = o.get_bool("compat6")?.unwrap_or(false);
        let hw_version = match (o.get("hwversion"), compat6) {
            (Some(_), true) => {
                return Err(Error::invalid_input(
                    "compat6 cannot be combined with hwversion",
                ));
            }
            (Some(v), false) => digits("hwversion", v)?,
            (None, true) => "6".to_string(),
            (None, false) => "4".to_string(),
        };
        let tools_version = digits(
            "toolsversion",
            o.get("toolsversion").unwrap_or("2147483647"),
        )?;
        let compression_level = o.get_u64_in("compression_level", 1..=9)?.unwrap_or(6);
        let compression_level = u32::try_from(compression_level).expect("at most 9");
        // qemu-img rounds a size that is not whole sectors up.
        let capacity = req.virtual_size.div_ceil(header::VMDK_SECTOR);
        if capacity > header::VMDK_MAX_CAPACITY_SECTORS {
            return Err(VmdkError::CapacityTooLarge {
                sectors: capacity,
                max: header::VMDK_MAX_CAPACITY_SECTORS,
            }
            .into());
        }
        Ok(Self {
            subformat,
            adapter_type,
            hw_version,
            tools_version,
            compression_level,
            capacity,
        })
    }

    /// The descriptor text for this image, naming `extent_file`.
    fn descriptor(&self, req: &CreateRequest<'_>, kind: &'static str, extent_file: &str) -> String {
        let cid_bytes = req.ctx.uuid("vmdk/cid").into_bytes();
        let cid = u32::from_le_bytes([cid_bytes[0], cid_bytes[1], cid_bytes[2], cid_bytes[3]]);
        descriptor::DescriptorOut {
            // 0xffffffff means "no CID" (a parent's CID slot); avoid it.
            cid: if cid == u32::MAX { 0xffff_fffe } else { cid },
            create_type: self.subformat,
            extent: (self.capacity, kind, extent_file),
            adapter_type: self.adapter_type,
            hw_version: &self.hw_version,
            tools_version: &self.tools_version,
            uuid: req.ctx.uuid("vmdk/uuid"),
        }
        .render()
    }
}

/// Accepts decimal digits only: the value goes into a quoted descriptor string.
fn digits(key: &'static str, value: &str) -> Result<String> {
    if value.is_empty() || value.len() > 10 || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(VmdkError::BadOption {
            key,
            value: value.to_string(),
            reason: "expected a decimal number",
        }
        .into());
    }
    Ok(value.to_string())
}

/// The file name of `out`'s primary target, as the descriptor names it.
fn primary_name(out: &OutputSet) -> String {
    out.primary_path()
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Checks that a sector number fits a 32-bit grain table or directory entry.
fn sector_u32(sector: u64) -> Result<u32> {
    u32::try_from(sector).map_err(|_| {
        VmdkError::WriterOffsetOverflow {
            max: u64::from(u32::MAX),
        }
        .into()
    })
}

#[cfg(test)]
mod tests;
