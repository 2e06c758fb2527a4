//! The hostile corpus: images made by qemu-img (or genisoimage, or kiln's stream VMDK
//! writer), then broken with small byte edits at offsets read from the image itself, plus
//! a few written from scratch. Each case says what the uploader claims it is (Glance's
//! `disk_format`, for format_inspector's check), which kiln rule must refuse it, and
//! whether kiln still reads it on purpose (descriptor VMDKs, sizes over `--max-size`).

use std::path::{Path, PathBuf};

use crate::util::*;

/// One hostile image.
pub struct Case {
    pub name: String,
    pub path: PathBuf,
    /// The format the uploader declares (Glance's `disk_format`).
    pub declared: &'static str,
    /// A word the refusal must contain (its `check` name or its message).
    pub reason: &'static str,
    /// kiln reads it on purpose (`convert` works); only the verdict refuses it.
    pub readable: bool,
}

pub struct Corpus {
    pub dir: PathBuf,
    pub cases: Vec<Case>,
}

/// A byte edit of an image.
type Edit = Box<dyn FnOnce(&mut Vec<u8>)>;

fn be32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_be_bytes());
}
fn be64(b: &mut [u8], at: usize, v: u64) {
    b[at..at + 8].copy_from_slice(&v.to_be_bytes());
}
fn le32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_le_bytes());
}
fn le64(b: &mut [u8], at: usize, v: u64) {
    b[at..at + 8].copy_from_slice(&v.to_le_bytes());
}
fn get_be64(b: &[u8], at: usize) -> u64 {
    u64::from_be_bytes(b[at..at + 8].try_into().unwrap())
}
fn get_le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}
fn get_le64(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

/// The one's complement of the byte sum with `field..field + 4` taken as zero (VHD).
fn vhd_checksum(b: &mut [u8], field: usize) {
    b[field..field + 4].fill(0);
    let sum = b.iter().fold(0u32, |s, &x| s.wrapping_add(u32::from(x)));
    be32(b, field, !sum);
}

fn qemu_img(args: &[&str]) {
    run_ok("qemu-img", args);
}

impl Corpus {
    /// Builds every case in a fresh directory.
    pub fn build(dir: &Path) -> Self {
        require_tool("qemu-img");
        require_tool("genisoimage");
        let mut c = Corpus {
            dir: dir.to_path_buf(),
            cases: Vec::new(),
        };
        let src = sparse_raw(&dir.join("src.raw"), 1 << 20, 4, 15);
        c.qcow2_cases(&src);
        c.qcow2_refcount_cases(&src);
        c.vmdk_cases(&src);
        c.vmdk_descriptor_cases(&src);
        c.vhd_cases(&src);
        c.other_cases(&src);
        c.polyglot_cases(&src);
        c
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    fn add(&mut self, file: &str, declared: &'static str, reason: &'static str) {
        self.cases.push(Case {
            name: file.into(),
            path: self.path(file),
            declared,
            reason,
            readable: false,
        });
    }

    fn add_readable(&mut self, file: &str, declared: &'static str, reason: &'static str) {
        self.add(file, declared, reason);
        self.cases.last_mut().unwrap().readable = true;
    }

    /// Copies `base` to `name`, applies `edit` to its bytes, and adds the case.
    fn edited(
        &mut self,
        base: &str,
        name: &str,
        declared: &'static str,
        reason: &'static str,
        edit: impl FnOnce(&mut Vec<u8>),
    ) {
        let mut bytes = std::fs::read(self.path(base)).unwrap();
        edit(&mut bytes);
        std::fs::write(self.path(name), bytes).unwrap();
        self.add(name, declared, reason);
    }

    fn convert(&self, src: &Path, fmt: &str, opts: &[&str], out: &str) {
        let out = self.path(out);
        let mut args = vec!["convert", "-f", "raw", "-O", fmt];
        args.extend_from_slice(opts);
        args.extend([src.to_str().unwrap(), out.to_str().unwrap()]);
        qemu_img(&args);
    }

    fn qcow2_cases(&mut self, src: &Path) {
        self.convert(src, "qcow2", &[], "base.qcow2");
        let (base, b) = (self.path("base.qcow2"), self.path("top-backing.qcow2"));
        let (base, b) = (base.to_str().unwrap(), b.to_str().unwrap());
        qemu_img(&["create", "-q", "-f", "qcow2", "-b", base, "-F", "qcow2", b]);
        self.add("top-backing.qcow2", "qcow2", "backing file");
        let data = self.path("data-file.raw");
        let with_data = self.path("data-file.qcow2");
        let opt = format!("data_file={}", data.display());
        let out = with_data.to_str().unwrap();
        qemu_img(&["create", "-q", "-f", "qcow2", "-o", &opt, out, "1M"]);
        self.add("data-file.qcow2", "qcow2", "external data file");
        let header = [
            ("corrupt-bit.qcow2", 72usize, 1u64 << 1, "marked corrupt"),
            ("incompat-bit4.qcow2", 72, 1 << 4, "unknown incompatible"),
            ("incompat-bit5.qcow2", 72, 1 << 5, "unknown incompatible"),
            ("incompat-bit63.qcow2", 72, 1 << 63, "unknown incompatible"),
            ("l1-past-end.qcow2", 40, 1 << 40, "past the end"),
            ("l1-unaligned.qcow2", 40, 0x30008, "not aligned"),
            ("reftable-past-end.qcow2", 48, 1 << 40, "past the end"),
            ("backing-offset-set.qcow2", 8, 0x200, "backing file"),
        ];
        for (name, at, value, reason) in header {
            self.edited("base.qcow2", name, "qcow2", reason, |b| be64(b, at, value));
        }
        let fields = [
            ("cluster-bits-30.qcow2", 20usize, 30u32, "cluster_bits"),
            ("version-4.qcow2", 4, 4, "version"),
            ("l1-size-huge.qcow2", 36, 0x1000_0000, "l1_size"),
            ("encrypted.qcow2", 32, 1, "encrypted"),
            ("header-length-7.qcow2", 100, 7, "header_length"),
        ];
        for (name, at, value, reason) in fields {
            self.edited("base.qcow2", name, "qcow2", reason, |b| be32(b, at, value));
        }
        self.edited(
            "base.qcow2",
            "backing-size-set.qcow2",
            "qcow2",
            "backing file",
            |b| {
                be64(b, 8, 0x200);
                be32(b, 16, 11);
                b[0x200..0x20b].copy_from_slice(b"/etc/passwd");
            },
        );
        self.edited("base.qcow2", "zstd.qcow2", "qcow2", "zstd", |b| {
            be64(b, 72, 1 << 3);
            b[104] = 1;
        });
        self.edited(
            "base.qcow2",
            "truncated-header.qcow2",
            "qcow2",
            "header",
            |b| {
                b.truncate(50);
            },
        );
        self.edited(
            "base.qcow2",
            "extension-too-long.qcow2",
            "qcow2",
            "extension",
            |b| {
                let at = 112;
                be32(b, at, 0x1234_5678);
                be32(b, at + 4, 0x00ff_ffff);
            },
        );
        let big = self.path("virtual-32t.qcow2");
        qemu_img(&["create", "-q", "-f", "qcow2", big.to_str().unwrap(), "32T"]);
        self.add_readable("virtual-32t.qcow2", "qcow2", "max-size");
    }

    fn qcow2_refcount_cases(&mut self, _src: &Path) {
        let b = std::fs::read(self.path("base.qcow2")).unwrap();
        let (l1, rt) = (
            usize::try_from(get_be64(&b, 40)).unwrap(),
            usize::try_from(get_be64(&b, 48)).unwrap(),
        );
        let refblock = usize::try_from(get_be64(&b, rt)).unwrap();
        let l2 = usize::try_from(get_be64(&b, l1) & 0x00ff_ffff_ffff_fe00).unwrap();
        // The first mapped cluster, copied into the slot after it.
        let slot = (0..8192).find(|i| get_be64(&b, l2 + 8 * i) != 0).unwrap();
        let first = get_be64(&b, l2 + 8 * slot);
        let twin = l2 + 8 * (slot + 1);
        let edits: [(&str, Edit); 8] = [
            (
                "zero-refblock.qcow2",
                Box::new(move |b| b[refblock..refblock + 65536].fill(0)),
            ),
            (
                "l2-entry-twice.qcow2",
                Box::new(move |b| be64(b, twin, first)),
            ),
            (
                "data-aliases-l1.qcow2",
                Box::new(move |b| be64(b, l2 + 8, 1 << 63 | l1 as u64)),
            ),
            (
                "l2-aliases-reftable.qcow2",
                Box::new(move |b| be64(b, l1, 1 << 63 | rt as u64)),
            ),
            (
                "nb-snapshots-max.qcow2",
                Box::new(|b| be32(b, 60, u32::MAX)),
            ),
            (
                "snapshot-at-1tib.qcow2",
                Box::new(|b| {
                    be32(b, 60, 1);
                    be64(b, 64, 1 << 40);
                }),
            ),
            (
                "l2-past-end.qcow2",
                Box::new(move |b| be64(b, l1, 1 << 63 | 1 << 40)),
            ),
            (
                "data-past-end.qcow2",
                Box::new(move |b| be64(b, l2, 1 << 63 | 1 << 40)),
            ),
        ];
        for (name, edit) in edits {
            self.edited("base.qcow2", name, "qcow2", "qcow2-metadata", edit);
        }
        // The snapshot table errors are caught at open too.
        for case in self
            .cases
            .iter_mut()
            .filter(|c| c.name.starts_with("nb-snap"))
        {
            case.reason = "snapshot table too large";
        }
    }

    fn vmdk_cases(&mut self, src: &Path) {
        self.convert(src, "vmdk", &[], "base.vmdk");
        let b = std::fs::read(self.path("base.vmdk")).unwrap();
        let gd = usize::try_from(get_le64(&b, 56)).unwrap() * 512;
        let descriptor = String::from_utf8_lossy(&b[512..512 * 21]).into_owned();
        let embedded = |from: &'static str, to: &'static str| {
            let text = descriptor.replacen(from, to, 1);
            move |b: &mut Vec<u8>| {
                let mut area = text.into_bytes();
                area.resize(512 * 20, 0);
                b[512..512 * 21].copy_from_slice(&area);
            }
        };
        let flat = embedded("monolithicSparse", "monolithicFlat");
        self.edited(
            "base.vmdk",
            "embedded-flat.vmdk",
            "vmdk",
            "createType",
            flat,
        );
        let delta = embedded("parentCID=ffffffff", "parentCID=12345678");
        self.edited("base.vmdk", "delta.vmdk", "vmdk", "parent", delta);
        let garbage = embedded("# The Disk Data Base", "garbage line here\n#");
        self.edited(
            "base.vmdk",
            "descriptor-garbage.vmdk",
            "vmdk",
            "descriptor",
            garbage,
        );
        let outside = embedded("\"base.vmdk\"", "\"../../etc/passwd\"");
        self.edited(
            "base.vmdk",
            "embedded-extent-path.vmdk",
            "vmdk",
            "extent",
            outside,
        );
        self.edited(
            "base.vmdk",
            "gd-past-end.vmdk",
            "vmdk",
            "outside the file",
            |b| le64(b, 56, 1 << 40),
        );
        self.edited(
            "base.vmdk",
            "gt-past-end.vmdk",
            "vmdk",
            "outside the file",
            move |b| {
                le32(b, gd, 0x7fff_ffff);
            },
        );
        self.edited("base.vmdk", "capacity-huge.vmdk", "vmdk", "capacity", |b| {
            le64(b, 12, 1 << 50);
        });
        self.edited(
            "base.vmdk",
            "descriptor-offset-2.vmdk",
            "vmdk",
            "descriptorOffset",
            |b| {
                le64(b, 28, 2);
            },
        );
        self.edited("base.vmdk", "version-4.vmdk", "vmdk", "version", |b| {
            le32(b, 4, 4);
        });
        std::fs::write(
            self.path("cowd.vmdk"),
            [b"COWD".as_slice(), &[0; 2044]].concat(),
        )
        .unwrap();
        self.add("cowd.vmdk", "vmdk", "COWD");
        self.stream_cases(src);
    }

    /// kiln's stream layout ends in footer marker, footer and end-of-stream marker.
    fn stream_cases(&mut self, src: &Path) {
        let out = self.path("stream.vmdk");
        let dir = Dir::new();
        std::fs::copy(src, dir.path("src.raw")).unwrap();
        dir.kiln_ok(&[
            "convert",
            "-O",
            "vmdk",
            "-o",
            "subformat=streamOptimized",
            "src.raw",
            "s.vmdk",
        ]);
        std::fs::copy(dir.path("s.vmdk"), &out).unwrap();
        let len = usize::try_from(std::fs::metadata(&out).unwrap().len()).unwrap();
        let (marker, footer, eos) = (len - 1536, len - 1024, len - 512);
        self.edited(
            "stream.vmdk",
            "stream-footer-marker.vmdk",
            "vmdk",
            "footer",
            move |b| {
                le32(b, marker + 12, 7);
            },
        );
        self.edited(
            "stream.vmdk",
            "stream-eos.vmdk",
            "vmdk",
            "end-of-stream",
            move |b| {
                b[eos + 100] = 1;
            },
        );
        self.edited(
            "stream.vmdk",
            "stream-footer-gd-at-end.vmdk",
            "vmdk",
            "footer",
            move |b| {
                le64(b, footer + 56, u64::MAX);
            },
        );
        self.edited(
            "stream.vmdk",
            "stream-footer-version.vmdk",
            "vmdk",
            "footer",
            move |b| {
                le32(b, footer + 4, 1);
            },
        );
    }

    fn vmdk_descriptor_cases(&mut self, src: &Path) {
        for (name, sub) in [
            ("flat.vmdk", "monolithicFlat"),
            ("twogb-flat.vmdk", "twoGbMaxExtentFlat"),
            ("twogb-sparse.vmdk", "twoGbMaxExtentSparse"),
        ] {
            self.convert(src, "vmdk", &["-o", &format!("subformat={sub}")], name);
            self.add_readable(name, "vmdk", "descriptor-only");
        }
        let text = std::fs::read_to_string(self.path("flat.vmdk")).unwrap();
        let hostile = [
            ("extent-dotdot.vmdk", "../src.raw"),
            ("extent-absolute.vmdk", "/etc/passwd"),
            ("extent-symlink.vmdk", "link-flat.vmdk"),
        ];
        std::os::unix::fs::symlink(self.path("src.raw"), self.path("link-flat.vmdk")).unwrap();
        for (name, extent) in hostile {
            let edited = text.replace("\"flat-flat.vmdk\"", &format!("\"{extent}\""));
            std::fs::write(self.path(name), edited).unwrap();
            self.add(name, "vmdk", "extent");
        }
        let vmfs = text.replace("monolithicFlat", "vmfs");
        std::fs::write(self.path("createtype-vmfs.vmdk"), vmfs).unwrap();
        self.add("createtype-vmfs.vmdk", "vmdk", "createType");
    }

    fn vhd_cases(&mut self, _src: &Path) {
        // Four 2 MiB blocks, the first and the last allocated.
        let src = sparse_raw(&self.path("src8.raw"), 8 << 20, 0, 16);
        let f = std::fs::OpenOptions::new().write(true).open(&src).unwrap();
        std::os::unix::fs::FileExt::write_all_at(&f, b"head", 0).unwrap();
        self.convert(&src, "vpc", &[], "base.vhd");
        let b = std::fs::read(self.path("base.vhd")).unwrap();
        let bat = usize::try_from(get_be64(&b, 512 + 16)).unwrap();
        let header = |edit: fn(&mut [u8])| {
            move |b: &mut Vec<u8>| {
                edit(&mut b[512..1536]);
                vhd_checksum(&mut b[512..1536], 36);
            }
        };
        let huge = header(|h| be32(h, 28, 0x7fff_ffff));
        self.edited(
            "base.vhd",
            "max-table-entries.vhd",
            "vhd",
            "8589934588 bytes",
            huge,
        );
        let past = header(|h| be64(h, 16, 1 << 40));
        self.edited("base.vhd", "bat-past-end.vhd", "vhd", "BAT", past);
        let zero = header(|h| be32(h, 32, 0));
        self.edited("base.vhd", "block-size-0.vhd", "vhd", "block size", zero);
        self.edited("base.vhd", "block-past-end.vhd", "vhd", "past", move |b| {
            be32(b, bat, 0x7fff_0000);
        });
        self.edited(
            "base.vhd",
            "blocks-overlap.vhd",
            "vhd",
            "overlap",
            move |b| {
                let entry = |b: &[u8], i: usize| {
                    u32::from_be_bytes(b[bat + 4 * i..][..4].try_into().unwrap())
                };
                // Block 1 (not allocated) points at block 0's data.
                let first = entry(b, 0);
                be32(b, bat + 4, first);
            },
        );
        self.edited("base.vhd", "footer-checksum.vhd", "vhd", "checksum", |b| {
            b[70] ^= 1;
        });
        self.edited("base.vhd", "differencing.vhd", "vhd", "differencing", |b| {
            let end = b.len() - 512;
            for at in [0, end] {
                be32(b, at + 60, 4);
                vhd_checksum(&mut b[at..at + 512], 64);
            }
        });
    }

    fn other_cases(&mut self, src: &Path) {
        self.convert(src, "vhdx", &[], "base.vhdx");
        self.edited("base.vhdx", "regions-zeroed.vhdx", "vhdx", "region", |b| {
            b[192 << 10..320 << 10].fill(0);
        });
        self.edited("base.vhdx", "headers-zeroed.vhdx", "vhdx", "header", |b| {
            b[64 << 10..192 << 10].fill(0);
        });
        self.edited("base.vhdx", "truncated.vhdx", "vhdx", "shorter", |b| {
            b.truncate(300 << 10);
        });
        self.convert(src, "vdi", &[], "base.vdi");
        self.edited(
            "base.vdi",
            "blockmap-past-end.vdi",
            "vdi",
            "block map",
            |b| le32(b, 0x154, 0x7fff_0000),
        );
        self.edited("base.vdi", "disk-size-huge.vdi", "vdi", "size", |b| {
            le64(b, 0x170, 1 << 62);
        });
        self.edited("base.vdi", "block-past-end.vdi", "vdi", "past", |b| {
            let map = usize::try_from(get_le32(b, 0x154)).unwrap();
            le32(b, map, 0x00ff_0000);
        });
        let tree = self.path("iso-tree");
        std::fs::create_dir_all(&tree).unwrap();
        std::fs::write(tree.join("hello.txt"), "hello\n").unwrap();
        let iso = self.path("base.iso");
        run_ok(
            "genisoimage",
            &[
                "-quiet",
                "-R",
                "-J",
                "-o",
                iso.to_str().unwrap(),
                tree.to_str().unwrap(),
            ],
        );
        self.edited("base.iso", "volume-past-end.iso", "iso", "volume", |b| {
            le32(b, 0x8000 + 80, 0x00ff_ffff);
            be32(b, 0x8000 + 84, 0x00ff_ffff);
        });
        let sector = |magic: &[u8]| [magic, &vec![0u8; 4096 - magic.len()]].concat();
        std::fs::write(self.path("qed.img"), sector(b"QED\0")).unwrap();
        self.add("qed.img", "qed", "banned");
        std::fs::write(self.path("luks.img"), sector(b"LUKS\xba\xbe\0\x01")).unwrap();
        self.add("luks.img", "raw", "banned");
        let mbr = |entry: [u8; 16]| {
            let mut b = vec![0u8; 1 << 20];
            b[446..462].copy_from_slice(&entry);
            b[510..512].copy_from_slice(&[0x55, 0xaa]);
            b
        };
        let boot_flag = [0x12, 0, 2, 0, 0x83, 0, 0, 0, 1, 0, 0, 0, 0xff, 0, 0, 0];
        std::fs::write(self.path("mbr-boot-flag.raw"), mbr(boot_flag)).unwrap();
        self.add_readable("mbr-boot-flag.raw", "raw", "mbr");
        let mut extra = mbr([0, 0, 2, 0, 0xee, 0, 0, 0, 1, 0, 0, 0, 0xff, 0, 0, 0]);
        extra[462 + 4] = 0x83;
        std::fs::write(self.path("mbr-gpt-extra.raw"), extra).unwrap();
        self.add_readable("mbr-gpt-extra.raw", "raw", "mbr");
        let mut tar = vec![0u8; 2048];
        tar[..8].copy_from_slice(b"disk.raw");
        tar[257..262].copy_from_slice(b"ustar");
        std::fs::write(self.path("package.ova"), tar).unwrap();
        self.add("package.ova", "raw", "not-a-disk");
    }

    fn polyglot_cases(&mut self, _src: &Path) {
        self.edited("base.qcow2", "qcow2-iso.qcow2", "qcow2", "polyglot", |b| {
            b[0x8000] = 1;
            b[0x8001..0x8006].copy_from_slice(b"CD001");
        });
        self.edited("base.qcow2", "qcow2-mbr.qcow2", "qcow2", "polyglot", |b| {
            b[510..512].copy_from_slice(&[0x55, 0xaa]);
        });
        let footer = std::fs::read(self.path("base.vhd")).unwrap()[..512].to_vec();
        self.edited(
            "base.qcow2",
            "qcow2-vhd-footer.qcow2",
            "qcow2",
            "polyglot",
            move |b| {
                b.extend_from_slice(&footer);
            },
        );
        self.edited("base.iso", "vmdk-iso.vmdk", "vmdk", "polyglot", |b| {
            b[..4].copy_from_slice(b"KDMV");
        });
        self.edited("base.iso", "vdi-iso.vdi", "vdi", "polyglot", |b| {
            le32(b, 0x40, 0xbeda_107f);
        });
        self.edited("base.iso", "vhdx-iso.vhdx", "vhdx", "polyglot", |b| {
            b[..8].copy_from_slice(b"vhdxfile");
        });
        self.edited("base.iso", "hybrid.iso", "iso", "polyglot", |b| {
            b[446 + 4] = 0x17;
            b[510..512].copy_from_slice(&[0x55, 0xaa]);
        });
        self.cases.last_mut().unwrap().readable = true;
    }
}
