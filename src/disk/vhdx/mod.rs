//! VHDX images, after Microsoft's "[MS-VHDX]: Virtual Hard Disk v2 (VHDX) File Format"
//! v20160714 (version 1 headers).
//!
//! Layout kiln writes (all offsets 1 MiB aligned, as the spec requires):
//! `0` file type identifier (`vhdxfile`, creator `kiln <version>` in UTF-16LE), `64 KiB` and
//! `128 KiB` the two headers (sequence numbers 1 and 2, CRC-32C), `192 KiB` and `256 KiB`
//! the two region tables, `1 MiB` an empty log (LogGuid nil, so no reader replays it;
//! `-o log_size=`, default 1 MiB, left as a hole), then the metadata region (1 MiB), the
//! BAT, and the payload blocks.
//!
//! Subformats: `dynamic` (default) stores only blocks holding a non-zero byte, in disk
//! order, as PAYLOAD_BLOCK_FULLY_PRESENT; other blocks are NOT_PRESENT (ZERO with
//! `-o block_state_zero=on`). `fixed` sets LeaveBlocksAllocated and maps every block
//! contiguously. In both, zero 4 KiB runs inside a block are left as file holes, never
//! written. Options: `subformat`, `block_size` (1 MiB to 256 MiB, power of two, default
//! 32 MiB), `log_size`, `block_state_zero`. Logical sectors are 512 bytes, physical 4096.
//!
//! The writer does not gather whole blocks: a dynamic block is allocated when its first
//! non-zero 4 KiB piece arrives (so blocks are still laid out in disk order, and the output
//! is the same for the same input), and every piece is written straight at its final offset
//! through [`SparseOut`] in pieces of at most 1 MiB; SparseOut skips zero pieces (the
//! engine's `is_zero`) and writes long runs from the caller's buffer without copying them.
//! Writer memory: SparseOut's 1 MiB coalescing buffer for short runs and at most 1 MiB of
//! BAT entries (8 bytes per block) before they are written; the BAT is written in order as
//! blocks are passed.
//!
//! Reader: validates the identifier, both headers (the valid one with the higher sequence
//! number wins; one bad copy falls back to the other), both region tables (the first valid
//! one is used), the metadata (block size first) and every BAT entry (state, block inside
//! the file, no overlap with another block or the metadata) before yielding anything.
//! Memory: one 512 KiB BAT window, a bitmap of one bit per MiB of file, and one data buffer
//! of at most [`MAX_EXTENT_BYTES`].
//!
//! Refused: a non-empty log (LogGuid not nil: kiln does not replay logs, and guessing is
//! worse than refusing), differencing disks (HasParent, parent locator, PARTIALLY_PRESENT
//! blocks), unknown required regions or metadata items, virtual sizes above the spec's
//! 64 TiB. Blocks in the NOT_PRESENT, UNDEFINED, UNMAPPED and ZERO states read as zeros.
//!
//! Files: [`error`], [`crc`] (CRC-32C, a small table-driven function, no crate), [`reader`],
//! [`writer`], and one per on-disk structure (`header`, `region`, `metadata`, `bat`).

mod bat;
mod crc;
mod error;
mod header;
mod metadata;
mod reader;
mod region;
mod writer;

use self::crc::checksum_with_zero_field;
use self::error::VhdxError;
pub(super) use self::reader::open;
pub(super) use self::writer::create;

/// The `-o` keys the vhdx writer accepts.
pub(super) const OPTION_KEYS: &[&str] =
    &["subformat", "block_size", "log_size", "block_state_zero"];

/// One mebibyte: the unit of every VHDX region and block offset.
const MIB: u64 = 1 << 20;
/// Largest virtual size the spec allows (64 TiB).
const VHDX_MAX_VIRTUAL_SIZE: u64 = 64 << 40;
/// Default payload block size.
const VHDX_DEFAULT_BLOCK_SIZE: u64 = 32 * MIB;
/// Data is handed on in pieces cut at multiples of this, so no piece crosses a payload
/// block (block sizes are multiples of 1 MiB); `SparseOut` writes at most this much at once.
const VHDX_WRITE_PIECE: usize = 1 << 20;
/// Default (and smallest) log size.
const VHDX_DEFAULT_LOG_SIZE: u64 = MIB;
/// Largest log size kiln writes.
const VHDX_MAX_LOG_SIZE: u64 = 1 << 30;
/// Logical sector size kiln writes.
const VHDX_LOGICAL_SECTOR: u32 = 512;
/// Physical sector size kiln writes (what Hyper-V uses).
const VHDX_PHYSICAL_SECTOR: u32 = 4096;

#[cfg(test)]
mod tests {
    use std::os::unix::fs::FileExt;

    use super::*;
    use crate::disk::{CreateRequest, DiskFormat, Extent};
    use crate::io::output::OutputSet;

    #[test]
    fn dynamic_block_starting_with_zeros_is_allocated_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("z.vhdx");
        let options = crate::disk::KvOptions::parse("block_size=1M").unwrap();
        let ctx = crate::BuildContext::from_env("z");
        let req = CreateRequest {
            format: DiskFormat::Vhdx,
            virtual_size: 2 * MIB,
            options: &options,
            compress: false,
            ctx: &ctx,
        };
        let mut out = OutputSet::new(&path, false);
        let mut w = create(&req, &mut out).unwrap();
        let mut data = vec![0u8; 2 * 1024 * 1024];
        data[(1 << 20) + 5000] = 9;
        w.write_extent(Extent::Data(&data)).unwrap();
        w.finish().unwrap();
        out.commit().unwrap();
        let f = std::fs::File::open(&path).unwrap();
        // Header area, log, metadata, BAT, then the one block (the second of the disk).
        assert_eq!(f.metadata().unwrap().len(), 5 * MIB);
        let mut byte = [0u8; 1];
        f.read_exact_at(&mut byte, 4 * MIB + 5000).unwrap();
        assert_eq!(byte, [9]);
    }

    #[test]
    fn data_past_the_virtual_size_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let options = crate::disk::KvOptions::default();
        let ctx = crate::BuildContext::from_env("past");
        let req = CreateRequest {
            format: DiskFormat::Vhdx,
            virtual_size: MIB,
            options: &options,
            compress: false,
            ctx: &ctx,
        };
        let mut out = OutputSet::new(&dir.path().join("past.vhdx"), false);
        let mut w = create(&req, &mut out).unwrap();
        w.write_extent(Extent::Zero(MIB - 512)).unwrap();
        let err = w.write_extent(Extent::Data(&[1; 1024])).unwrap_err();
        assert!(err.to_string().contains("past the virtual size"), "{err}");
    }

    /// Writes `extents` as a VHDX with 1 MiB blocks, reads it back, returns the bytes.
    fn round_trip(extents: &[(u64, u8)], fixed: bool) -> Vec<u8> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.vhdx");
        let sub = if fixed { "fixed" } else { "dynamic" };
        let options =
            crate::disk::KvOptions::parse(&format!("subformat={sub},block_size=1M")).unwrap();
        let ctx = crate::BuildContext::from_env("p");
        let size: u64 = extents.iter().map(|(sectors, _)| sectors * 512).sum();
        let req = CreateRequest {
            format: DiskFormat::Vhdx,
            virtual_size: size,
            options: &options,
            compress: false,
            ctx: &ctx,
        };
        let mut out = OutputSet::new(&path, false);
        let mut w = create(&req, &mut out).unwrap();
        for &(sectors, kind) in extents {
            let len = sectors * 512;
            match kind {
                0 => w.write_extent(Extent::Unallocated(len)).unwrap(),
                1 => w.write_extent(Extent::Zero(len)).unwrap(),
                b => w
                    .write_extent(Extent::Data(&vec![b; usize::try_from(len).unwrap()]))
                    .unwrap(),
            }
        }
        w.finish().unwrap();
        out.commit().unwrap();
        let mut r = crate::disk::open(&path, &crate::disk::OpenOptions::default()).unwrap();
        let mut got = Vec::new();
        while let Some(e) = r.next_extent().unwrap() {
            match e {
                Extent::Data(bytes) => got.extend_from_slice(bytes),
                other => got.resize(got.len() + usize::try_from(other.len()).unwrap(), 0),
            }
        }
        got
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(24))]
        #[test]
        fn random_extent_maps_round_trip(
            extents in proptest::collection::vec((1u64..3000, 0u8..4), 1..8),
            fixed in proptest::bool::ANY,
        ) {
            let expected: Vec<u8> = extents
                .iter()
                .flat_map(|&(sectors, kind)| {
                    let b = if kind < 2 { 0 } else { kind };
                    std::iter::repeat_n(b, usize::try_from(sectors * 512).unwrap())
                })
                .collect();
            proptest::prop_assert!(round_trip(&extents, fixed) == expected);
        }
    }
}
