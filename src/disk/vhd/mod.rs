//! VHD images (Microsoft "Virtual Hard Disk Image Format Specification" v1.0; qemu-img's
//! `vpc`).
//!
//! Supported: fixed (type 2) and dynamic (type 3) disks, read and written.
//! - Writer options: `subformat=dynamic|fixed` (default dynamic, as qemu-img),
//!   `force_size=on` (keep the exact size instead of rounding up to the CHS product),
//!   `azure=on` (fixed, size rounded up to a whole MiB, exact size: what Azure requires) and
//!   `block_size` (dynamic only; a power of two from 512 KiB to 256 MiB, default 2 MiB).
//! - Without `force_size` the size is rounded up exactly as qemu-img rounds it (the spec's CHS
//!   algorithm tried on growing sizes), so qemu, which derives the size from the geometry for
//!   most creator apps, sees the same size as every other reader; the creator app is `kiln`.
//!   With `force_size` or `azure` the footer carries the exact size, the spec's geometry for
//!   it, and the creator app `qem2`, the one qemu-img itself writes with `force_size` and
//!   one of the few whose `current_size` qemu honours.
//! - Dynamic layout: footer copy at 0, dynamic header at 512, BAT at 1536, blocks (a 0xFF
//!   sector bitmap, then the data) in disk order right after the BAT, footer at the end (the
//!   layout and file size qemu-img writes). Only blocks holding a non-zero byte are
//!   allocated; zero 4 KiB pieces of the file inside them, and every zero 4 KiB block of a
//!   fixed disk, are left as holes.
//! - Memory: the writer keeps the BAT (4 bytes per block) and one block; the reader keeps
//!   the BAT and one extent buffer of at most [`MAX_EXTENT_BYTES`](super::MAX_EXTENT_BYTES).
//!
//! The reader takes the virtual size from `current_size`, as the spec, libvhdi, 7-Zip and
//! format_inspector do (qemu uses the CHS product for some creator apps; `kiln info` shows
//! that size when it differs). Sector bitmaps are not consulted, as in qemu: an allocated
//! block reads as stored.
//!
//! Refused: differencing disks (type 4, they need a parent), other disk types, bad
//! checksums, a footer copy disagreeing with the footer, block sizes that are not a power of
//! two from 512 B to 256 MiB, BATs smaller than the disk or outside the file, blocks past the
//! end of the file, overlapping each other or the metadata, and sizes over 2040 GiB when
//! writing (qemu's limit).

mod dynamic;
mod fixed;
mod footer;

use footer::{DiskType, Geometry, VhdFooter, vhd_timestamp};

use super::{CreateRequest, DiskReader, DiskWriter, KvOptions};
use crate::error::{Error, ErrorKind, Result};
use crate::io::output::OutputSet;
use crate::io::{Source, read_exact_at};

/// The `-o` keys the vhd writer accepts.
pub(super) const OPTION_KEYS: &[&str] = &["subformat", "force_size", "azure", "block_size"];

/// Default dynamic block size (the spec's and qemu's).
const VHD_DEFAULT_BLOCK_SIZE: u32 = 2 << 20;
/// Largest disk kiln writes: qemu's limit, 2040 GiB.
const VHD_MAX_DISK_BYTES: u64 = 2040 << 30;
/// Creator app for a size that is the CHS product.
const VHD_CREATOR_KILN: [u8; 4] = *b"kiln";
/// Creator app for an exact size: qemu-img's own `force_size` marker, honoured by qemu.
const VHD_CREATOR_EXACT: [u8; 4] = *b"qem2";

/// Why a VHD image was rejected.
#[remain::sorted]
#[derive(Debug, thiserror::Error)]
pub(super) enum VhdError {
    #[error(
        "VHD block size {block_size} at {offset:#x} is not a power of two from 512 B to 256 MiB"
    )]
    BadBlockSize { offset: u64, block_size: u32 },
    #[error("VHD {what} checksum at {offset:#x} is {found:#010x}, computed {computed:#010x}")]
    BadChecksum {
        what: &'static str,
        offset: u64,
        found: u32,
        computed: u32,
    },
    #[error(
        "VHD disk type {disk_type} in the footer at {offset:#x} is not 2 (fixed) or 3 (dynamic)"
    )]
    BadDiskType { offset: u64, disk_type: u32 },
    #[error("no VHD dynamic header cookie `cxsparse` at {offset:#x}")]
    BadHeaderCookie { offset: u64 },
    #[error("VHD format version {version:#010x} at {offset:#x} is not 1.x")]
    BadVersion { offset: u64, version: u32 },
    #[error("VHD block {index} at {block_offset:#x} overlaps the image metadata")]
    BlockOverlapsMetadata { index: u64, block_offset: u64 },
    #[error(
        "VHD BAT entry {index} at {entry_offset:#x} points to a block at {block_offset:#x} that ends past {limit:#x}, the start of the footer"
    )]
    BlockPastEnd {
        index: u64,
        entry_offset: u64,
        block_offset: u64,
        limit: u64,
    },
    #[error("VHD blocks {first} and {second} overlap at {block_offset:#x}")]
    BlocksOverlap {
        first: u64,
        second: u64,
        block_offset: u64,
    },
    #[error("fixed VHD data of {current_size:#x} bytes runs past its footer at {footer_offset:#x}")]
    DataPastFooter {
        current_size: u64,
        footer_offset: u64,
    },
    #[error("VHD footer at {offset:#x} describes a differencing disk, which needs a parent image")]
    Differencing { offset: u64 },
    #[error("VHD footer copy at 0x0 disagrees with the footer at {offset:#x} ({field})")]
    FooterCopyMismatch { offset: u64, field: &'static str },
    #[error(
        "no VHD footer cookie `conectix` at {offset:#x}; the file is not a VHD or is truncated"
    )]
    NoFooter { offset: u64 },
    #[error("VHD {what} at {offset:#x} ({len} bytes) lies outside the file ({file_size:#x} bytes)")]
    OutsideFile {
        what: &'static str,
        offset: u64,
        len: u64,
        file_size: u64,
    },
    #[error("VHD BAT at {offset:#x} has {entries} entries; the disk size needs {needed}")]
    TableTooSmall {
        offset: u64,
        entries: u32,
        needed: u64,
    },
}

impl From<VhdError> for Error {
    fn from(e: VhdError) -> Self {
        let kind = match e {
            VhdError::Differencing { .. } => ErrorKind::Unsupported,
            _ => ErrorKind::InvalidImage,
        };
        Error::new(kind, e)
    }
}

pub(super) fn open(src: Source) -> Result<Box<dyn DiskReader>> {
    let file_size = src.len();
    if file_size < footer::VHD_FOOTER_SIZE {
        return Err(VhdError::NoFooter { offset: 0 }.into());
    }
    let footer_offset = file_size - footer::VHD_FOOTER_SIZE;
    let mut bytes = [0u8; 512];
    read_exact_at(&*src, &mut bytes, footer_offset, "VHD footer")?;
    let footer = VhdFooter::parse(&bytes, footer_offset)?;
    match footer.disk_type {
        DiskType::Fixed => fixed::open(src, footer, footer_offset),
        DiskType::Dynamic => dynamic::open(src, &footer, footer_offset),
    }
}

/// Validated writer options.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct VhdOptions {
    disk_type: DiskType,
    /// Keep the exact size (`force_size` or `azure`).
    exact_size: bool,
    /// Round the size up to a whole MiB (`azure`).
    whole_mib: bool,
    block_size: u32,
}

fn parse_options(kv: &KvOptions) -> Result<VhdOptions> {
    let azure = kv.get_bool("azure")?.unwrap_or(false);
    let force = kv.get_bool("force_size")?;
    let subformat = kv.get_choice("subformat", &["dynamic", "fixed"])?;
    if azure && subformat == Some("dynamic") {
        return Err(Error::invalid_input(
            "vhd option azure=on needs subformat=fixed: Azure only takes fixed VHDs",
        ));
    }
    if azure && force == Some(false) {
        return Err(Error::invalid_input(
            "vhd option azure=on keeps the exact size; drop force_size=off",
        ));
    }
    let disk_type = match subformat {
        Some("fixed") => DiskType::Fixed,
        _ if azure => DiskType::Fixed,
        _ => DiskType::Dynamic,
    };
    let block_size = parse_block_size(kv, disk_type)?;
    Ok(VhdOptions {
        disk_type,
        exact_size: azure || force == Some(true),
        whole_mib: azure,
        block_size,
    })
}

fn parse_block_size(kv: &KvOptions, disk_type: DiskType) -> Result<u32> {
    let Some(size) = kv.get_size("block_size")? else {
        return Ok(VHD_DEFAULT_BLOCK_SIZE);
    };
    if disk_type == DiskType::Fixed {
        return Err(Error::invalid_input(
            "vhd option block_size applies to subformat=dynamic only",
        ));
    }
    match u32::try_from(size) {
        Ok(bs) if bs.is_power_of_two() && ((512 << 10)..=(256 << 20)).contains(&bs) => Ok(bs),
        _ => Err(Error::invalid_input(format!(
            "vhd option block_size={size}: expected a power of two from 512K to 256M"
        ))),
    }
}

/// The size written to the footer and its geometry, from the requested size.
fn disk_size(requested: u64, o: &VhdOptions) -> Result<(u64, Geometry)> {
    let too_large = || {
        Error::invalid_input(format!(
            "VHD cannot hold {requested} bytes; the largest VHD is 2040 GiB ({VHD_MAX_DISK_BYTES} bytes)"
        ))
    };
    let unit: u64 = if o.whole_mib { 1 << 20 } else { 512 };
    let size = requested
        .checked_next_multiple_of(unit)
        .ok_or_else(too_large)?;
    if size > VHD_MAX_DISK_BYTES {
        return Err(too_large());
    }
    let sectors = size / 512;
    if o.exact_size {
        return Ok((size, Geometry::for_sectors(sectors)));
    }
    // qemu-img: round up to the CHS product unless even the largest geometry is too small,
    // in which case the exact size stands beside the maximum geometry.
    let geometry = Geometry::covering(sectors);
    if geometry.is_max() {
        return Ok((size, geometry));
    }
    Ok((geometry.total_sectors() * 512, geometry))
}

pub(super) fn create(req: &CreateRequest<'_>, out: &mut OutputSet) -> Result<Box<dyn DiskWriter>> {
    let (o, footer) = footer_for(req)?;
    let file = out.create_primary()?;
    match o.disk_type {
        DiskType::Fixed => Ok(Box::new(fixed::FixedWriter::new(file, footer))),
        DiskType::Dynamic => Ok(Box::new(dynamic::DynamicWriter::new(
            file,
            footer,
            o.block_size,
        )?)),
    }
}

/// The footer of a fixed VHD written front to back into a stream: its data area is the
/// disk's bytes (`current_size` of them) and the 512-byte footer follows.
///
/// # Errors
/// Invalid options, a size a VHD cannot hold, or `subformat=dynamic` (its BAT is written
/// after the blocks, so it needs a seekable file).
pub(super) fn stream_footer(req: &CreateRequest<'_>) -> Result<(u64, [u8; 512])> {
    let (o, footer) = footer_for(req)?;
    if o.disk_type != DiskType::Fixed {
        return Err(Error::unsupported(
            "a dynamic VHD needs a seekable file; a stream takes subformat=fixed",
        ));
    }
    Ok((footer.current_size, footer.to_bytes()))
}

/// The writer's options and the footer the request asks for.
fn footer_for(req: &CreateRequest<'_>) -> Result<(VhdOptions, VhdFooter)> {
    let o = parse_options(req.options)?;
    let (current_size, geometry) = disk_size(req.virtual_size, &o)?;
    let footer = VhdFooter {
        disk_type: o.disk_type,
        data_offset: match o.disk_type {
            DiskType::Fixed => footer::VHD_NO_DATA_OFFSET,
            DiskType::Dynamic => footer::VHD_FOOTER_SIZE,
        },
        timestamp: vhd_timestamp(req.ctx.epoch),
        creator_app: if o.exact_size {
            VHD_CREATOR_EXACT
        } else {
            VHD_CREATOR_KILN
        },
        creator_version: creator_version(),
        original_size: current_size,
        current_size,
        geometry,
        unique_id: *req.ctx.uuid("vhd/unique-id").as_bytes(),
    };
    Ok((o, footer))
}

/// kiln's version as the footer's creator version (major in the high 16 bits).
fn creator_version() -> u32 {
    let part = |s: &str| s.parse::<u16>().unwrap_or(0);
    let major = part(env!("CARGO_PKG_VERSION_MAJOR"));
    let minor = part(env!("CARGO_PKG_VERSION_MINOR"));
    (u32::from(major) << 16) | u32::from(minor)
}

/// Footer facts `kiln info` shows for both disk types.
fn footer_details(info: super::ImageInfo, footer: &VhdFooter) -> super::ImageInfo {
    let chs_bytes = footer.geometry.total_sectors() * 512;
    let mut info = info
        .detail("creator_app", footer.creator_app_text())
        .detail(
            "creator_version",
            format!(
                "{}.{}",
                footer.creator_version >> 16,
                footer.creator_version & 0xffff
            ),
        )
        .detail(
            "geometry",
            format!("{} (C/H/S, {chs_bytes} bytes)", footer.geometry),
        )
        .detail("current_size", footer.current_size)
        .detail("original_size", footer.original_size)
        .detail("timestamp_unix", u64::from(footer.timestamp) + 946_684_800);
    if !footer.qemu_uses_current_size() && chs_bytes != footer.current_size {
        info = info.detail("qemu_virtual_size", chs_bytes);
    }
    info
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(text: &str) -> Result<VhdOptions> {
        parse_options(&KvOptions::parse(text).unwrap())
    }

    #[test]
    fn default_is_dynamic_with_chs_rounding() {
        let o = opts("").unwrap();
        assert_eq!(
            (o.disk_type, o.exact_size, o.block_size),
            (DiskType::Dynamic, false, 2 << 20)
        );
    }

    #[test]
    fn size_is_rounded_up_to_the_chs_product_like_qemu() {
        let (size, _) = disk_size(64 << 20, &opts("").unwrap()).unwrap();
        assert_eq!(size, 67_125_248);
    }

    #[test]
    fn force_size_keeps_the_exact_size() {
        let (size, _) = disk_size(64 << 20, &opts("force_size=on").unwrap()).unwrap();
        assert_eq!(size, 64 << 20);
    }

    #[test]
    fn azure_rounds_up_to_a_whole_mib() {
        let o = opts("azure=on").unwrap();
        let (size, _) = disk_size((64 << 20) + 1, &o).unwrap();
        assert_eq!((o.disk_type, size), (DiskType::Fixed, 65 << 20));
    }

    #[test]
    fn azure_with_dynamic_is_rejected() {
        assert!(opts("azure=on,subformat=dynamic").is_err());
    }

    #[test]
    fn block_size_that_is_not_a_power_of_two_is_rejected() {
        assert!(opts("block_size=3M").is_err());
    }

    #[test]
    fn disks_over_2040_gib_are_rejected() {
        assert!(disk_size((2040 << 30) + 512, &opts("").unwrap()).is_err());
    }
}
