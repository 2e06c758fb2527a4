//! Short I/O: every reader reads through a source that returns at most N bytes per call (N
//! drawn from a seeded generator, as `pread` may), and the stream writer writes into a sink
//! that takes at most N bytes per call; the results must equal those of whole reads and
//! writes. qemu-img makes the images and their raw contents (the oracle).

use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex};

use kiln::disk::{self, CreateRequest, DiskFormat, DiskReader, Extent, KvOptions, OpenOptions};
use kiln::io::{FileSource, ReadAt, Source};

use crate::util::*;

/// A source that returns between 1 and `max` bytes per read.
struct ShortReads {
    inner: Source,
    max: usize,
    rng: Mutex<Rng>,
}

impl std::fmt::Debug for ShortReads {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ShortReads(at most {} bytes)", self.max)
    }
}

impl ReadAt for ShortReads {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<usize> {
        let n = {
            let mut rng = self.rng.lock().unwrap();
            1 + usize::try_from(rng.below(self.max as u64)).unwrap()
        };
        let take = buf.len().min(n);
        self.inner.read_at(&mut buf[..take], offset)
    }

    fn len(&self) -> u64 {
        self.inner.len()
    }

    fn next_data(&self, offset: u64) -> std::io::Result<Option<u64>> {
        self.inner.next_data(offset)
    }

    fn next_hole(&self, offset: u64) -> std::io::Result<u64> {
        self.inner.next_hole(offset)
    }
}

/// Every byte of `reader`'s disk.
fn contents(reader: &mut dyn DiskReader) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(extent) = reader.next_extent().unwrap() {
        match extent {
            Extent::Data(bytes) => out.extend_from_slice(bytes),
            Extent::Zero(n) | Extent::Unallocated(n) => {
                out.resize(out.len() + usize::try_from(n).unwrap(), 0);
            }
        }
    }
    out
}

fn short_source(path: &Path, max: usize, seed: u64) -> Source {
    let file = FileSource::shared(std::fs::File::open(path).unwrap()).unwrap();
    Arc::new(ShortReads {
        inner: file,
        max,
        rng: Mutex::new(Rng::new(seed)),
    })
}

/// qemu-img writes `src.raw` as `fmt` with `opts`; kiln reads it through short reads.
fn reads_like_qemu(fmt: &str, opts: &str, max: usize) {
    let d = Dir::new();
    let src = sparse_raw(&d.path("src.raw"), 6 << 20, 12, 5);
    let img = d.path("img");
    let mut args = vec!["convert", "-O", fmt];
    if !opts.is_empty() {
        args.extend(["-o", opts]);
    }
    args.extend([src.to_str().unwrap(), img.to_str().unwrap()]);
    run_ok("qemu-img", &args);
    // qemu-img's own reading is the oracle (a VHD's CHS geometry may round the size).
    let back = d.path("back.raw");
    let (img_s, back_s) = (img.to_str().unwrap(), back.to_str().unwrap());
    run_ok(
        "qemu-img",
        &["convert", "-f", fmt, "-O", "raw", img_s, back_s],
    );
    let expected = std::fs::read(&back).unwrap();
    for seed in 1..=3 {
        let mut reader =
            disk::open_source(short_source(&img, max, seed), &img, &OpenOptions::default())
                .unwrap();
        assert!(
            contents(reader.as_mut()) == expected,
            "{fmt} {opts} read with at most {max} bytes per call differs (seed {seed})"
        );
    }
}

#[test]
fn qcow2_reads_through_short_reads() {
    reads_like_qemu("qcow2", "", 7);
}

#[test]
fn qcow2_with_compressed_clusters_reads_through_short_reads() {
    let d = Dir::new();
    let src = random_raw(&d.path("src.raw"), 2 << 20, 9);
    let img = d.path("c.qcow2");
    run_ok(
        "qemu-img",
        &[
            "convert",
            "-c",
            "-O",
            "qcow2",
            src.to_str().unwrap(),
            img.to_str().unwrap(),
        ],
    );
    let mut reader =
        disk::open_source(short_source(&img, 100, 4), &img, &OpenOptions::default()).unwrap();
    assert!(contents(reader.as_mut()) == std::fs::read(&src).unwrap());
}

#[test]
fn stream_vmdk_reads_through_short_reads() {
    reads_like_qemu("vmdk", "subformat=streamOptimized", 11);
}

#[test]
fn sparse_vmdk_reads_through_short_reads() {
    reads_like_qemu("vmdk", "subformat=monolithicSparse", 64);
}

#[test]
fn dynamic_vhd_reads_through_short_reads() {
    reads_like_qemu("vpc", "subformat=dynamic", 3);
}

#[test]
fn fixed_vhd_reads_through_short_reads() {
    reads_like_qemu("vpc", "subformat=fixed", 1000);
}

#[test]
fn vhdx_reads_through_short_reads() {
    reads_like_qemu("vhdx", "", 17);
}

#[test]
fn vdi_reads_through_short_reads() {
    reads_like_qemu("vdi", "", 5);
}

#[test]
fn raw_reads_through_short_reads() {
    reads_like_qemu("raw", "", 4097);
}

#[test]
fn iso_reads_through_short_reads() {
    let d = Dir::new();
    std::fs::create_dir(d.path("tree")).unwrap();
    random_raw(&d.path("tree/a.bin"), 300_000, 3);
    d.kiln_ok(&["convert", "-O", "iso", "tree", "t.iso"]);
    let img = d.path("t.iso");
    let mut reader =
        disk::open_source(short_source(&img, 9, 2), &img, &OpenOptions::default()).unwrap();
    assert!(contents(reader.as_mut()) == std::fs::read(&img).unwrap());
}

/// A sink that takes between 1 and `max` bytes per write into a shared buffer.
struct ShortWrites {
    out: Vec<u8>,
    max: usize,
    rng: Rng,
}

impl Write for ShortWrites {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = buf
            .len()
            .min(1 + usize::try_from(self.rng.below(self.max as u64)).unwrap());
        self.out.extend_from_slice(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// `kiln convert -O FMT -o OPTS src.raw whole.EXT`, then the same disk written by
/// `disk::create_stream` through a sink taking 1..700 bytes per write: the same bytes.
fn stream_equals_file(fmt: DiskFormat, opts: &str, ext: &str) {
    let d = Dir::new();
    let src = sparse_raw(&d.path("src.raw"), 8 << 20, 10, 8);
    let name = format!("whole.{ext}");
    let mut args = vec!["convert", "-O", fmt.name()];
    if !opts.is_empty() {
        args.extend(["-o", opts]);
    }
    args.extend(["src.raw", name.as_str()]);
    d.kiln_ok(&args);
    // The same context the CLI derives from the output's name, at the epoch `Dir::kiln`
    // sets with SOURCE_DATE_EPOCH.
    let mut ctx = kiln::BuildContext::from_env(&name);
    ctx.epoch = 1_700_000_000;
    let options = KvOptions::parse(opts).unwrap();
    let mut reader = disk::open(&src, &OpenOptions::default()).unwrap();
    let req = CreateRequest {
        format: fmt,
        virtual_size: reader.virtual_size(),
        options: &options,
        compress: false,
        ctx: &ctx,
    };
    let sink = ShortWrites {
        out: Vec::new(),
        max: 700,
        rng: Rng::new(6),
    };
    let mut writer = disk::create_stream(&req, Box::new(sink), &name).unwrap();
    disk::convert(reader.as_mut(), &mut [writer.as_mut()], &mut |_| {}).unwrap();
    let report = writer.finish().unwrap();
    let sink = report.sink.unwrap().downcast::<ShortWrites>().unwrap();
    assert!(
        sink.out == std::fs::read(d.path(&name)).unwrap(),
        "{fmt} {opts}: the stream differs from the file"
    );
}

#[test]
fn a_stream_vmdk_through_short_writes_equals_the_file() {
    stream_equals_file(DiskFormat::Vmdk, "subformat=streamOptimized", "vmdk");
}

#[test]
fn a_stream_raw_through_short_writes_equals_the_file() {
    stream_equals_file(DiskFormat::Raw, "", "raw");
}

#[test]
fn a_stream_fixed_vhd_through_short_writes_equals_the_file() {
    stream_equals_file(DiskFormat::Vhd, "subformat=fixed", "vhd");
}

#[test]
fn a_stream_azure_vhd_through_short_writes_equals_the_file() {
    stream_equals_file(DiskFormat::Vhd, "subformat=fixed,azure=on", "vhd");
}

#[test]
fn formats_that_patch_tables_are_refused_as_streams() {
    let ctx = kiln::BuildContext::from_env("x");
    let options = KvOptions::default();
    let req = CreateRequest {
        format: DiskFormat::Qcow2,
        virtual_size: 1 << 20,
        options: &options,
        compress: false,
        ctx: &ctx,
    };
    let sink = ShortWrites {
        out: Vec::new(),
        max: 1,
        rng: Rng::new(1),
    };
    let err = disk::create_stream(&req, Box::new(sink), "x")
        .err()
        .unwrap();
    assert!(err.to_string().contains("needs a seekable file"), "{err}");
}
