//! The streamOptimized writer, in the layout of VMware's Virtual Disk Format 5.0,
//! "Stream-Optimized Compressed Sparse Extents":
//!
//! ```text
//! header (gdOffset = GD_AT_END) | descriptor | pad to one grain
//! { grain marker (LBA, size) + zlib data, padded to a sector }*   (per grain table:)
//! GT marker (val 4, type 1) | grain table (4 sectors)             after its grains
//! GD marker (val = GD sectors, type 2) | grain directory
//! footer marker (val 1, type 3) | footer (header copy with the real gdOffset) | EOS marker
//! ```
//!
//! The output is written front to back (no seeks). Grains are compressed in batches on the
//! rayon pool (`par_iter` over one batch) while the previous batch is written in order, so
//! the bytes are the same whatever the number of threads. RAM: the batch being filled and
//! compressed (8 MiB), the previous batch's compressed grains (≤ ~8 MiB), one grain table
//! and the grain directory.

use std::io::{BufWriter, Write};

use libdeflater::{CompressionLvl, Compressor};
use rayon::prelude::*;

use super::header::{
    Marker, SparseHeader, VMDK_COMPRESS_DEFLATE, VMDK_FLAG_COMPRESSED, VMDK_FLAG_MARKERS,
    VMDK_FLAG_NL_DETECT, VMDK_GD_AT_END, VMDK_GTES_PER_GT, VMDK_MARKER_FOOTER, VMDK_MARKER_GD,
    VMDK_MARKER_GT, VMDK_SECTOR,
};
use super::{
    VMDK_DESCRIPTOR_SECTORS, VMDK_WRITE_GRAIN_SECTORS, WriteOptions, primary_name, sector_u32,
};
use crate::disk::block::{Block, Blocker};
use crate::disk::{CreateRequest, DiskWriter, Extent, WriteReport};
use crate::error::{Error, ErrorKind, Result};
use crate::io::Sink;
use crate::io::output::OutputSet;

/// Grains compressed together: 128 grains = 8 MiB of input per batch.
pub(super) const VMDK_BATCH_GRAINS: usize = 128;
/// Grain table size in sectors (512 four-byte entries).
const VMDK_GT_SECTORS: u64 = 4;
/// Bytes of a grain marker before the compressed data: LBA (8) and size (4).
const VMDK_GRAIN_MARKER_BYTES: usize = 12;

/// A compressed batch waiting to be written: one stored grain (or error) per index.
type Compressed = (Vec<Result<Vec<u8>>>, Vec<u64>);

/// Writes a streamOptimized VMDK front to back.
pub(super) struct StreamWriter {
    sink: StreamSink,
    blocker: Blocker,
    grain_bytes: usize,
    level: CompressionLvl,
    /// Up to [`VMDK_BATCH_GRAINS`] grains waiting for compression, and their indexes.
    batch: Vec<u8>,
    batch_index: Vec<u64>,
    /// The previous batch, compressed; written while the next one compresses.
    ready: Option<Compressed>,
}

/// The ordered output: position, the open grain table and the grain directory.
struct StreamSink {
    out: BufWriter<Box<dyn Sink>>,
    /// Sectors written so far.
    pos: u64,
    header: SparseHeader,
    gt: Vec<u32>,
    gt_index: u64,
    gt_dirty: bool,
    gd: Vec<u32>,
}

impl StreamWriter {
    pub fn new(req: &CreateRequest<'_>, opts: &WriteOptions, out: &mut OutputSet) -> Result<Self> {
        let file = out.create_primary()?;
        Self::into_sink(req, opts, Box::new(file), &primary_name(out))
    }

    /// A writer that writes the image front to back into `out` (a file, or a member of an
    /// OVA), its descriptor naming the extent `extent_name`.
    pub fn into_sink(
        req: &CreateRequest<'_>,
        opts: &WriteOptions,
        out: Box<dyn Sink>,
        extent_name: &str,
    ) -> Result<Self> {
        let grain = VMDK_WRITE_GRAIN_SECTORS;
        let header = SparseHeader {
            version: 3,
            flags: VMDK_FLAG_NL_DETECT | VMDK_FLAG_COMPRESSED | VMDK_FLAG_MARKERS,
            capacity: opts.capacity,
            grain_sectors: grain,
            descriptor_offset: 1,
            descriptor_sectors: VMDK_DESCRIPTOR_SECTORS,
            rgd_offset: 0,
            gd_offset: VMDK_GD_AT_END,
            // Header and descriptor padded to one grain, as VMware's exports do.
            overhead: grain,
            compress_algorithm: VMDK_COMPRESS_DEFLATE,
        };
        let gd_len = usize::try_from(header.gd_entries())
            .map_err(|_| Error::unsupported("grain directory too large"))?;
        let descriptor = opts.descriptor(req, "SPARSE", extent_name);
        let grain_bytes = usize::try_from(grain * VMDK_SECTOR).expect("64 KiB");
        let mut sink = StreamSink {
            out: BufWriter::with_capacity(1 << 20, out),
            pos: 0,
            header,
            gt: vec![0; VMDK_GTES_PER_GT as usize],
            gt_index: 0,
            gt_dirty: false,
            gd: vec![0; gd_len],
        };
        sink.write_head(&descriptor)?;
        Ok(Self {
            sink,
            blocker: Blocker::new(grain_bytes),
            grain_bytes,
            level: compression_level(opts.compression_level)?,
            batch: Vec::with_capacity(VMDK_BATCH_GRAINS * grain_bytes),
            batch_index: Vec::with_capacity(VMDK_BATCH_GRAINS),
            ready: None,
        })
    }

    fn take_block(&mut self, block: Block<'_>) -> Result<()> {
        let Block::Data { index, bytes } = block else {
            return Ok(());
        };
        self.batch.extend_from_slice(bytes);
        self.batch_index.push(index);
        if self.batch_index.len() == VMDK_BATCH_GRAINS {
            self.flush_batch()?;
        }
        Ok(())
    }

    /// Compresses the batch on all cores while the previous batch is written in order.
    /// `rayon::join` never blocks a worker, so this is safe inside any pool, and with one
    /// thread it simply runs both sides in turn.
    fn flush_batch(&mut self) -> Result<()> {
        let ready = self.ready.take();
        let (batch, index, sink) = (&self.batch, &self.batch_index, &mut self.sink);
        let (level, grain_bytes, grain_sectors) =
            (self.level, self.grain_bytes, sink.header.grain_sectors);
        let (compressed, written) = rayon::join(
            || compress_batch(batch, index, grain_bytes, grain_sectors, level),
            || ready.map_or(Ok(()), |r| sink.write_batch(r)),
        );
        written?;
        let index = std::mem::replace(&mut self.batch_index, Vec::with_capacity(VMDK_BATCH_GRAINS));
        self.ready = Some((compressed, index));
        self.batch.clear();
        Ok(())
    }
}

/// Compresses every grain of `batch` in parallel; results keep the batch order.
fn compress_batch(
    batch: &[u8],
    index: &[u64],
    grain_bytes: usize,
    grain_sectors: u64,
    level: CompressionLvl,
) -> Vec<Result<Vec<u8>>> {
    batch
        .par_chunks(grain_bytes)
        .zip(index.par_iter())
        .map_init(
            || Compressor::new(level),
            |c, (grain, &index)| compress_grain(c, index * grain_sectors, grain),
        )
        .collect()
}

impl StreamSink {
    fn write_head(&mut self, descriptor: &str) -> Result<()> {
        let mut head =
            vec![0u8; usize::try_from(self.header.overhead * VMDK_SECTOR).expect("64 KiB")];
        head[..512].copy_from_slice(&self.header.to_bytes());
        let desc_end = 512 + descriptor.len();
        if descriptor.len()
            > usize::try_from(VMDK_DESCRIPTOR_SECTORS * VMDK_SECTOR).expect("10 KiB")
        {
            return Err(Error::invalid_input(
                "VMDK descriptor does not fit in 20 sectors",
            ));
        }
        head[512..desc_end].copy_from_slice(descriptor.as_bytes());
        self.write_sectors(&head)
    }

    /// Writes whole sectors and advances `pos`.
    fn write_sectors(&mut self, bytes: &[u8]) -> Result<()> {
        debug_assert_eq!(bytes.len() % 512, 0);
        self.out.write_all(bytes)?;
        self.pos += bytes.len() as u64 / VMDK_SECTOR;
        Ok(())
    }

    fn write_batch(&mut self, (grains, index): Compressed) -> Result<()> {
        for (grain, index) in grains.into_iter().zip(index) {
            self.place_grain(index, &grain?)?;
        }
        Ok(())
    }

    fn place_grain(&mut self, index: u64, bytes: &[u8]) -> Result<()> {
        let per_gt = u64::from(VMDK_GTES_PER_GT);
        if index / per_gt != self.gt_index {
            self.flush_gt()?;
            self.gt_index = index / per_gt;
        }
        let slot = usize::try_from(index % per_gt).expect("below 512");
        self.gt[slot] = sector_u32(self.pos)?;
        self.gt_dirty = true;
        self.write_sectors(bytes)
    }

    /// Writes the GT marker and the current grain table, recording it in the directory.
    fn flush_gt(&mut self) -> Result<()> {
        if !self.gt_dirty {
            return Ok(());
        }
        self.write_sectors(&Marker::metadata_sector(VMDK_GT_SECTORS, VMDK_MARKER_GT))?;
        let slot = usize::try_from(self.gt_index).expect("GD index fits: the GD is in memory");
        self.gd[slot] = sector_u32(self.pos)?;
        let bytes: Vec<u8> = self.gt.iter().flat_map(|e| e.to_le_bytes()).collect();
        self.write_sectors(&bytes)?;
        self.gt.fill(0);
        self.gt_dirty = false;
        Ok(())
    }

    /// GD marker + directory, footer marker + footer, end-of-stream marker.
    fn write_tail(&mut self) -> Result<()> {
        let mut gd: Vec<u8> = self.gd.iter().flat_map(|e| e.to_le_bytes()).collect();
        gd.resize(gd.len().next_multiple_of(512).max(512), 0);
        let gd_sectors = gd.len() as u64 / VMDK_SECTOR;
        self.write_sectors(&Marker::metadata_sector(gd_sectors, VMDK_MARKER_GD))?;
        let mut footer = self.header;
        footer.gd_offset = self.pos;
        self.write_sectors(&gd)?;
        self.write_sectors(&Marker::metadata_sector(1, VMDK_MARKER_FOOTER))?;
        self.write_sectors(&footer.to_bytes())?;
        self.write_sectors(&[0u8; 512])
    }
}

/// libdeflate's level for `level` (1..=9, checked by the options).
fn compression_level(level: u32) -> Result<CompressionLvl> {
    i32::try_from(level)
        .ok()
        .and_then(|l| CompressionLvl::new(l).ok())
        .ok_or_else(|| Error::invalid_input(format!("compression level {level} is out of range")))
}

/// One grain as stored: marker (LBA, compressed size), zlib stream (RFC 1950), zero
/// padding to a sector.
fn compress_grain(c: &mut Compressor, lba: u64, grain: &[u8]) -> Result<Vec<u8>> {
    let bound = c.zlib_compress_bound(grain.len());
    let mut out = vec![0u8; VMDK_GRAIN_MARKER_BYTES + bound];
    out[..8].copy_from_slice(&lba.to_le_bytes());
    let size = c
        .zlib_compress(grain, &mut out[VMDK_GRAIN_MARKER_BYTES..])
        .map_err(|e| Error::new(ErrorKind::Io, format!("deflate failed: {e:?}")))?;
    out[8..12].copy_from_slice(
        &u32::try_from(size)
            .expect("below the grain bound")
            .to_le_bytes(),
    );
    out.truncate((VMDK_GRAIN_MARKER_BYTES + size).next_multiple_of(512));
    out.resize((VMDK_GRAIN_MARKER_BYTES + size).next_multiple_of(512), 0);
    Ok(out)
}

impl DiskWriter for StreamWriter {
    fn write_extent(&mut self, extent: Extent<'_>) -> Result<()> {
        Blocker::push_via(self, |w| &mut w.blocker, extent, Self::take_block)
    }

    fn finish(mut self: Box<Self>) -> Result<WriteReport> {
        Blocker::finish_via(&mut *self, |w| &mut w.blocker, Self::take_block)?;
        if !self.batch_index.is_empty() {
            self.flush_batch()?;
        }
        if let Some(ready) = self.ready.take() {
            self.sink.write_batch(ready)?;
        }
        self.sink.flush_gt()?;
        self.sink.write_tail()?;
        let virtual_size = self.sink.header.capacity * VMDK_SECTOR;
        let out = self.sink.out.into_inner().map_err(|e| e.into_error())?;
        Ok(WriteReport {
            virtual_size,
            sink: Some(out.into_any()),
        })
    }
}

#[cfg(test)]
#[allow(clippy::cast_possible_truncation)] // offsets in a test image of a few MiB
mod tests {
    use std::io::Read;

    use super::*;
    use crate::context::BuildContext;
    use crate::disk::{DiskFormat, KvOptions};

    const GRAIN: usize = 65536;

    /// Writes `extents` as a streamOptimized image of `size` bytes and returns its bytes.
    fn write_stream(size: u64, extents: &[Extent<'_>]) -> Vec<u8> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.vmdk");
        let options = KvOptions::parse("subformat=streamOptimized").unwrap();
        let ctx = BuildContext::from_env("t");
        let req = CreateRequest {
            format: DiskFormat::Vmdk,
            virtual_size: size,
            options: &options,
            compress: false,
            ctx: &ctx,
        };
        let mut out = OutputSet::new(&path, false);
        let mut writer = crate::disk::create(&req, &mut out).unwrap();
        for e in extents {
            writer.write_extent(*e).unwrap();
        }
        writer.finish().unwrap();
        out.commit().unwrap();
        std::fs::read(&path).unwrap()
    }

    fn u32_at(b: &[u8], at: usize) -> u32 {
        u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
    }

    fn u64_at(b: &[u8], at: usize) -> u64 {
        u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
    }

    /// 40 MiB (two grain tables) with data in grains 0, 1 and 600.
    fn two_table_image() -> Vec<u8> {
        let (a, b, c) = (
            vec![0x11u8; GRAIN],
            vec![0x22u8; GRAIN],
            vec![0x33u8; GRAIN],
        );
        let size = 40u64 << 20;
        let gap = 598 * GRAIN as u64;
        let rest = size - 601 * GRAIN as u64;
        let extents = [
            Extent::Data(&a),
            Extent::Data(&b),
            Extent::Unallocated(gap),
            Extent::Data(&c),
            Extent::Zero(rest),
        ];
        write_stream(size, &extents)
    }

    /// Walks the markers from the first grain to the end: (kind, sector) per structure.
    fn marker_walk(img: &[u8]) -> Vec<(&'static str, u64)> {
        let mut seq = Vec::new();
        let mut sector = 128u64;
        while (sector as usize) * 512 < img.len() {
            let at = sector as usize * 512;
            let (val, size, kind) = (u64_at(img, at), u32_at(img, at + 8), u32_at(img, at + 12));
            let (name, len) = match (size, kind) {
                (0, 0) => ("eos", 1),
                (0, 1) => ("gt", 1 + val),
                (0, 2) => ("gd", 1 + val),
                (0, 3) => ("footer", 2),
                _ => ("grain", (12 + u64::from(size)).div_ceil(512)),
            };
            seq.push((name, sector));
            sector += len;
        }
        assert_eq!(
            sector as usize * 512,
            img.len(),
            "markers do not tile the file"
        );
        seq
    }

    #[test]
    fn stream_header_follows_the_spec() {
        let img = two_table_image();
        assert_eq!(&img[0..4], b"KDMV");
        assert_eq!(u32_at(&img, 4), 3, "version");
        assert_eq!(
            u32_at(&img, 8),
            0x3_0001,
            "flags: newline test, compressed, markers"
        );
        assert_eq!(u64_at(&img, 12), (40 << 20) / 512, "capacity");
        assert_eq!(u64_at(&img, 20), 128, "grainSize");
        assert_eq!((u64_at(&img, 28), u64_at(&img, 36)), (1, 20), "descriptor");
        assert_eq!(u32_at(&img, 44), 512, "numGTEsPerGT");
        assert_eq!(u64_at(&img, 56), u64::MAX, "gdOffset is GD_AT_END");
        assert_eq!(u64_at(&img, 64), 128, "overHead");
        assert_eq!(&img[73..77], b"\n \r\n");
        assert_eq!(u16::from_le_bytes([img[77], img[78]]), 1, "deflate");
    }

    #[test]
    fn stream_descriptor_has_the_keys_vmware_needs() {
        let img = two_table_image();
        let text = String::from_utf8_lossy(&img[512..512 * 21]);
        let text = text.trim_end_matches('\0');
        for key in [
            "createType=\"streamOptimized\"",
            "RW 81920 SPARSE \"t.vmdk\"",
            "ddb.adapterType = \"ide\"",
            "ddb.virtualHWVersion = \"4\"",
            "ddb.toolsVersion = \"2147483647\"",
            "ddb.geometry.cylinders = \"81\"",
            "ddb.geometry.heads = \"16\"",
            "ddb.geometry.sectors = \"63\"",
            "ddb.uuid = ",
        ] {
            assert!(text.contains(key), "`{key}` missing from:\n{text}");
        }
    }

    #[test]
    fn stream_markers_come_in_spec_order() {
        let img = two_table_image();
        let kinds: Vec<&str> = marker_walk(&img).iter().map(|(k, _)| *k).collect();
        assert_eq!(
            kinds,
            ["grain", "grain", "gt", "grain", "gt", "gd", "footer", "eos"]
        );
    }

    #[test]
    fn footer_locates_the_directory_and_tables() {
        let img = two_table_image();
        let end = img.len();
        assert_eq!(
            (
                u64_at(&img, end - 1536),
                u32_at(&img, end - 1528),
                u32_at(&img, end - 1524)
            ),
            (1, 0, 3)
        );
        assert_eq!(&img[end - 1024..end - 1020], b"KDMV", "footer header");
        assert!(img[end - 512..].iter().all(|&b| b == 0), "EOS marker");
        let gd = u64_at(&img, end - 1024 + 56) as usize;
        assert_eq!(
            (
                u64_at(&img, (gd - 1) * 512),
                u32_at(&img, (gd - 1) * 512 + 12)
            ),
            (1, 2),
            "GD marker"
        );
        let gts = [
            u32_at(&img, gd * 512) as usize,
            u32_at(&img, gd * 512 + 4) as usize,
        ];
        for gt in gts {
            assert_eq!(
                (
                    u64_at(&img, (gt - 1) * 512),
                    u32_at(&img, (gt - 1) * 512 + 12)
                ),
                (4, 1),
                "GT marker"
            );
        }
        let lba =
            |gt: usize, slot: usize| u64_at(&img, u32_at(&img, gt * 512 + 4 * slot) as usize * 512);
        assert_eq!(
            (lba(gts[0], 0), lba(gts[0], 1), lba(gts[1], 600 - 512)),
            (0, 128, 600 * 128)
        );
        assert_eq!(u32_at(&img, gts[0] * 512 + 8), 0, "grain 2 is not stored");
    }

    #[test]
    fn grains_are_zlib_streams_of_one_grain() {
        let img = two_table_image();
        let size = u32_at(&img, 128 * 512 + 8) as usize;
        let data = &img[128 * 512 + 12..128 * 512 + 12 + size];
        assert_eq!(data[0] & 0x0f, 8, "RFC 1950 CMF: deflate");
        let mut out = Vec::new();
        flate2::read::ZlibDecoder::new(data)
            .read_to_end(&mut out)
            .unwrap();
        assert_eq!(out, vec![0x11u8; GRAIN]);
    }

    #[test]
    fn output_does_not_depend_on_the_thread_count() {
        let mut data = vec![0u8; 300 * GRAIN];
        let mut x: u32 = 1;
        for (i, b) in data.iter_mut().enumerate() {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
            *b = if i % 3 == 0 {
                (x >> 24) as u8
            } else {
                (i / 4096) as u8
            };
        }
        let write = || write_stream(data.len() as u64, &[Extent::Data(&data)]);
        let one = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .unwrap()
            .install(write);
        let four = rayon::ThreadPoolBuilder::new()
            .num_threads(4)
            .build()
            .unwrap()
            .install(write);
        assert!(one == four, "output differs between 1 and 4 threads");
    }
}
