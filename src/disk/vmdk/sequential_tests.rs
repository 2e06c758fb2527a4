//! The front-to-back reader against kiln's stream writer and the random-access reader.

use std::io::{Cursor, Read};

use super::*;
use crate::context::BuildContext;
use crate::disk::{self, CreateRequest, KvOptions, OpenOptions};
use crate::io::output::OutputSet;

/// A cursor that is done when its bytes are.
struct Bytes(Cursor<Vec<u8>>);

impl Read for Bytes {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read(buf)
    }
}

impl StreamInput for Bytes {
    fn finish(&mut self, read: u64) -> Result<()> {
        assert_eq!(read, self.0.position());
        Ok(())
    }
}

/// `disk` as a streamOptimized image by kiln's writer.
fn stream_image(disk: &[u8]) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.vmdk");
    let options = KvOptions::parse("subformat=streamOptimized").unwrap();
    let ctx = BuildContext::from_env("s");
    let req = CreateRequest {
        format: DiskFormat::Vmdk,
        virtual_size: disk.len() as u64,
        options: &options,
        compress: false,
        ctx: &ctx,
    };
    let mut out = OutputSet::new(&path, false);
    let mut writer = disk::create(&req, &mut out).unwrap();
    for chunk in disk.chunks(65536) {
        match chunk.iter().all(|&b| b == 0) {
            true => writer.write_extent(Extent::Unallocated(chunk.len() as u64)),
            false => writer.write_extent(Extent::Data(chunk)),
        }
        .unwrap();
    }
    writer.finish().unwrap();
    out.commit().unwrap();
    std::fs::read(&path).unwrap()
}

/// Reads every extent of `reader` into bytes.
fn collect(reader: &mut dyn DiskReader) -> Result<Vec<u8>> {
    let mut back = Vec::new();
    while let Some(e) = reader.next_extent()? {
        match e {
            Extent::Data(b) => back.extend_from_slice(b),
            Extent::Zero(n) | Extent::Unallocated(n) => {
                back.resize(back.len() + usize::try_from(n).unwrap(), 0);
            }
        }
    }
    Ok(back)
}

fn read_stream(image: Vec<u8>) -> Result<Vec<u8>> {
    let mut reader = open_sequential(Box::new(Bytes(Cursor::new(image))))?;
    collect(&mut *reader)
}

/// 40 MiB (two grain tables) with data in grains 0, 1, 600 and the last, short one.
fn disk() -> Vec<u8> {
    let mut d = vec![0u8; (40 << 20) + 1536];
    for (at, byte) in [(0, 1u8), (65536, 2), (600 * 65536, 3), (40 << 20, 4)] {
        d[at..at + 1000].fill(byte);
    }
    d
}

/// Byte offsets of the grain markers of a kiln stream image, in order.
fn grain_markers(image: &[u8]) -> Vec<usize> {
    let mut at = 128 * 512;
    let mut found = Vec::new();
    loop {
        let size = u32::from_le_bytes(image[at + 8..at + 12].try_into().unwrap()) as usize;
        if size == 0 {
            let kind = u32::from_le_bytes(image[at + 12..at + 16].try_into().unwrap());
            let val =
                usize::try_from(u64::from_le_bytes(image[at..at + 8].try_into().unwrap())).unwrap();
            if kind == 0 {
                return found;
            }
            at += 512 + val * 512;
            continue;
        }
        found.push(at);
        at += (12 + size).next_multiple_of(512);
    }
}

#[test]
fn stream_reads_as_the_random_access_reader_does() {
    let d = disk();
    let image = stream_image(&d);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.vmdk");
    std::fs::write(&path, &image).unwrap();
    let opts = OpenOptions {
        format: None,
        allow_unsafe: false,
    };
    let from_file = collect(&mut *disk::open(&path, &opts).unwrap()).unwrap();
    assert_eq!(from_file, d);
    assert_eq!(read_stream(image).unwrap(), d);
}

#[test]
fn stream_capacity_is_read_from_a_stream_header_only() {
    let image = stream_image(&disk());
    assert_eq!(stream_capacity(&image), Some((40 << 20) + 1536));
    assert_eq!(stream_capacity(&[0u8; 512]), None);
}

#[test]
fn grains_out_of_order_are_refused_with_a_retry_hint() {
    let mut image = stream_image(&disk());
    let markers = grain_markers(&image);
    // Grain 600's marker now names grain 0's LBA.
    image[markers[2]..markers[2] + 8].copy_from_slice(&0u64.to_le_bytes());
    let e = read_stream(image).unwrap_err().to_string();
    assert!(
        e.contains("has LBA 0x0, not after the previous grain's LBA 0x80"),
        "{e}"
    );
    assert!(e.contains("use the .vmdk itself"), "{e}");
}

#[test]
fn a_repeated_grain_is_refused_as_overlapping() {
    let mut image = stream_image(&disk());
    let markers = grain_markers(&image);
    image[markers[1]..markers[1] + 8].copy_from_slice(&0u64.to_le_bytes());
    let e = read_stream(image).unwrap_err().to_string();
    assert!(e.contains("out of order or overlapping"), "{e}");
}

#[test]
fn a_truncated_stream_names_where_it_ends() {
    let image = stream_image(&disk());
    let cut = grain_markers(&image)[2] + 100;
    let e = read_stream(image[..cut].to_vec()).unwrap_err().to_string();
    assert!(
        e.contains(&format!(
            "ends at uncompressed byte {cut:#x} inside its compressed grain"
        )),
        "{e}"
    );
}

#[test]
fn a_stream_without_its_end_marker_is_truncated() {
    let image = stream_image(&disk());
    let e = read_stream(image[..image.len() - 512].to_vec())
        .unwrap_err()
        .to_string();
    assert!(e.contains("inside its marker"), "{e}");
}

#[test]
fn a_grain_past_the_capacity_is_refused() {
    let mut image = stream_image(&disk());
    let last = *grain_markers(&image).last().unwrap();
    image[last..last + 8].copy_from_slice(&(1u64 << 20).to_le_bytes());
    let e = read_stream(image).unwrap_err().to_string();
    assert!(e.contains("grain marker at"), "{e}");
}

#[test]
fn a_grain_table_marker_of_the_wrong_size_is_refused() {
    let mut image = stream_image(&disk());
    // The first metadata marker after grain 1 is its grain table's (val 4 sectors).
    let markers = grain_markers(&image);
    let gt = markers[1] + 512;
    assert_eq!(image[gt + 12], 1, "a GT marker");
    image[gt..gt + 8].copy_from_slice(&1000u64.to_le_bytes());
    let e = read_stream(image).unwrap_err().to_string();
    assert!(e.contains("grain table marker at"), "{e}");
}

#[test]
fn a_plain_sparse_vmdk_is_not_a_stream() {
    let mut image = stream_image(&disk());
    image[10] = 0; // clears the compressed flag (bit 16)
    assert_eq!(stream_capacity(&image), None);
}

#[test]
fn an_overhead_past_the_metadata_bound_is_refused_before_reading_it() {
    let mut image = stream_image(&disk());
    // overHead (sectors before the first grain) at byte 64: 2^40 sectors.
    image[64..72].copy_from_slice(&(1u64 << 40).to_le_bytes());
    let e = read_stream(image).err().unwrap().to_string();
    assert!(e.contains("overHead is 0x10000000000"), "{e}");
}

#[test]
fn repeated_grain_tables_are_bounded_by_the_directory() {
    // Two grain tables' worth of disk: at most 2 + 2 metadata markers may come.
    let d = vec![0u8; 40 << 20];
    let mut image = stream_image(&d);
    let eos = image.len() - 512;
    let mut tail = image.split_off(eos);
    for _ in 0..5 {
        image.extend_from_slice(&Marker::metadata_sector(4, VMDK_MARKER_GT));
        image.extend_from_slice(&[0u8; 2048]);
    }
    image.append(&mut tail);
    let e = read_stream(image).err().unwrap().to_string();
    assert!(e.contains("grain table marker at"), "{e}");
}
