//! Opening a VMDK: a hosted sparse file with its embedded descriptor, or a text descriptor
//! whose extents are opened from the descriptor's directory only.

use std::fs::File;
use std::path::Path;

use rustix::fs::{Mode, OFlags};

use super::descriptor::{
    CreateType, Descriptor, ExtentKind, ExtentLine, VMDK_MAX_DESCRIPTOR_BYTES,
};
use super::error::VmdkError;
use super::extent::{GdSource, SparseExtent};
use super::flat::FlatExtent;
use super::header::{
    SparseHeader, VMDK_GD_AT_END, VMDK_MARKER_FOOTER, VMDK_MAX_CAPACITY_SECTORS, VMDK_SECTOR,
};
use crate::disk::{DiskFormat, DiskReader, Extent, ImageInfo};
use crate::error::{Error, ErrorKind, Result};
use crate::io::{FileSource, ReadAt, Source, is_zero, read_exact_at};

/// One extent of the virtual disk.
enum Part {
    Sparse(Box<SparseExtent>),
    Flat(FlatExtent),
    Zero { len: u64, pos: u64 },
}

impl Part {
    fn remaining(&self) -> u64 {
        match self {
            Part::Sparse(s) => s.remaining(),
            Part::Flat(f) => f.remaining(),
            Part::Zero { len, pos } => len - pos,
        }
    }

    fn next_extent(&mut self) -> Result<Extent<'_>> {
        match self {
            Part::Sparse(s) => match s.path.clone() {
                Some(path) => s.next_extent().map_err(|e| e.with_path(&path)),
                None => s.next_extent(),
            },
            Part::Flat(f) => {
                let path = f.path.clone();
                f.next_extent().map_err(|e| e.with_path(&path))
            }
            Part::Zero { len, pos } => {
                let n = *len - *pos;
                *pos = *len;
                Ok(Extent::Zero(n))
            }
        }
    }
}

/// Reads any supported VMDK as one extent stream.
pub(super) struct VmdkReader {
    parts: Vec<Part>,
    current: usize,
    virtual_size: u64,
    info: ImageInfo,
}

impl VmdkReader {
    /// Opens the VMDK in `src`. `dir` is the directory a text descriptor's extent files
    /// are opened from; `None` (a VMDK inside a package) refuses descriptors with files.
    pub fn open(src: Source, dir: Option<&Path>) -> Result<Self> {
        let mut head = [0u8; 512];
        let n = read_prefix(&*src, &mut head)?;
        if n >= 4 && &head[..4] == b"KDMV" {
            return Self::open_monolithic(src);
        }
        if n >= 4 && &head[..4] == b"COWD" {
            return Err(Error::unsupported(
                "ESX sparse (COWD) VMDK extents are not supported",
            ));
        }
        Self::open_descriptor_file(&*src, dir)
    }

    /// A sparse file holding header, embedded descriptor and grains.
    fn open_monolithic(src: Source) -> Result<Self> {
        let header = read_header(&*src)?;
        let descriptor = read_embedded_descriptor(&*src, &header)?;
        let create_type = match &descriptor {
            Some(d) => d.create_type,
            None if header.compressed() => CreateType::StreamOptimized,
            None => CreateType::MonolithicSparse,
        };
        if !matches!(
            create_type,
            CreateType::MonolithicSparse | CreateType::StreamOptimized
        ) {
            // format_inspector's rule: an embedded descriptor may only describe itself.
            return Err(VmdkError::EmbeddedCreateType {
                create_type: create_type.name(),
            }
            .into());
        }
        let len = header.capacity * VMDK_SECTOR;
        let mut head = [0u8; 512];
        read_exact_at(&*src, &mut head, 0, "sparse header")?;
        let footer = footer_reasons(&*src, &head)?;
        let extent = SparseExtent::open(None, src, header, len)?;
        // format_inspector's footer rules hold for every read, not only for its verdict;
        // checked after the extent's own checks, whose errors say more.
        if let Some(problem) = footer.into_iter().next() {
            return Err(Error::new(ErrorKind::Refused, problem));
        }
        let mut info = base_info(create_type, len, descriptor.as_ref());
        info = sparse_details(info, &extent);
        if let Some(d) = &descriptor {
            info = info.detail("extents", extent_list(d));
        }
        Ok(Self {
            parts: vec![Part::Sparse(Box::new(extent))],
            current: 0,
            virtual_size: len,
            info,
        })
    }

    /// A text descriptor naming extent files beside it.
    fn open_descriptor_file(file: &dyn ReadAt, dir: Option<&Path>) -> Result<Self> {
        let len = file.len();
        if len > VMDK_MAX_DESCRIPTOR_BYTES {
            return Err(VmdkError::BadDescriptorText {
                offset: 0,
                reason: "file is larger than 1 MiB and has no sparse header",
            }
            .into());
        }
        let mut bytes = vec![0u8; usize::try_from(len).expect("at most 1 MiB")];
        read_exact_at(file, &mut bytes, 0, "descriptor")?;
        // qemu pads descriptor files with NULs to a whole sector.
        let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
        let text = descriptor_text(&bytes[..end], 0)?;
        let descriptor = Descriptor::parse(text)?;
        let mut parts = Vec::new();
        let mut sectors: u64 = 0;
        for line in &descriptor.extents {
            sectors = sectors
                .checked_add(line.sectors)
                .filter(|s| *s <= VMDK_MAX_CAPACITY_SECTORS)
                .ok_or(VmdkError::CapacityTooLarge {
                    sectors: sectors.saturating_add(line.sectors),
                    max: VMDK_MAX_CAPACITY_SECTORS,
                })?;
            let part = open_part(dir, line).map_err(|e| {
                let name = line.file.clone().unwrap_or_default();
                Error::new(
                    e.kind(),
                    VmdkError::Extent {
                        name,
                        line: line.line,
                        source: Box::new(e),
                    },
                )
            })?;
            parts.push(part);
        }
        let virtual_size = sectors * VMDK_SECTOR;
        let mut info = base_info(descriptor.create_type, virtual_size, Some(&descriptor));
        if let Some(Part::Sparse(s)) = parts.first() {
            info = sparse_details(info, s);
        }
        info = info.detail("extents", extent_list(&descriptor));
        Ok(Self {
            parts,
            current: 0,
            virtual_size,
            info,
        })
    }
}

impl DiskReader for VmdkReader {
    fn virtual_size(&self) -> u64 {
        self.virtual_size
    }

    fn next_extent(&mut self) -> Result<Option<Extent<'_>>> {
        while self.current < self.parts.len() && self.parts[self.current].remaining() == 0 {
            self.current += 1;
        }
        match self.parts.get_mut(self.current) {
            None => Ok(None),
            Some(part) => part.next_extent().map(Some),
        }
    }

    fn info(&self) -> ImageInfo {
        self.info.clone()
    }
}

/// Opens one extent of a descriptor from `dir`, never following a symlink.
fn open_part(dir: Option<&Path>, line: &ExtentLine) -> Result<Part> {
    let len = line
        .sectors
        .checked_mul(VMDK_SECTOR)
        .expect("capped at 64 TiB by the caller");
    let Some(name) = &line.file else {
        return Ok(Part::Zero { len, pos: 0 });
    };
    let Some(dir) = dir else {
        return Err(Error::unsupported(
            "a VMDK descriptor read from inside a package or partition cannot open extent files",
        ));
    };
    let path = dir.join(name);
    let file = open_in_dir(&path)?;
    let file_len = file.len();
    match line.kind {
        ExtentKind::Flat => {
            let base = line.offset_sectors.checked_mul(VMDK_SECTOR);
            let end = base
                .and_then(|b| b.checked_add(len))
                .filter(|e| *e <= file_len);
            match (base, end) {
                (Some(base), Some(_)) => {
                    Ok(Part::Flat(FlatExtent::new(path.clone(), file, base, len)))
                }
                _ => Err(VmdkError::PastEnd {
                    what: "flat extent",
                    offset: line.offset_sectors.saturating_mul(512),
                    len,
                    file_len,
                }
                .into()),
            }
        }
        ExtentKind::Sparse | ExtentKind::Zero => open_sparse_part(&path, file, len),
    }
}

fn open_sparse_part(path: &Path, file: Source, len: u64) -> Result<Part> {
    let header = read_header(&*file)?;
    if header.capacity * VMDK_SECTOR < len {
        let e = VmdkError::BadHeaderField {
            offset: 0,
            field: "capacity",
            value: header.capacity,
            allowed: "must cover the descriptor's extent size",
        };
        return Err(e.into());
    }
    Ok(Part::Sparse(Box::new(SparseExtent::open(
        Some(path.to_path_buf()),
        file,
        header,
        len,
    )?)))
}

/// Opens a regular file without following symlinks or blocking on FIFOs.
fn open_in_dir(path: &Path) -> Result<Source> {
    let flags = OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOFOLLOW | OFlags::NONBLOCK;
    let fd = rustix::fs::open(path, flags, Mode::empty()).map_err(|e| match e {
        rustix::io::Errno::LOOP => Error::new(
            ErrorKind::Refused,
            "extent file is a symbolic link; kiln does not follow links",
        ),
        e => Error::io(e.into()),
    })?;
    let file = File::from(fd);
    if !file.metadata()?.is_file() {
        return Err(Error::new(
            ErrorKind::Refused,
            "extent is not a regular file",
        ));
    }
    Ok(FileSource::shared(file)?)
}

/// What OpenStack's format_inspector refuses in a VMDK kiln reads, beyond what opening it
/// refuses anyway (descriptor grammar, extent names, embedded createTypes): a text
/// descriptor whose data lives in other files (unless `allow_descriptor`), and for a
/// stream whose header puts the grain directory at the end, a footer that disagrees with
/// the header or end markers that are not exactly as the spec lays them out
/// (format_inspector's `check_footer`).
///
/// # Errors
/// I/O failures, and a text descriptor that does not parse.
pub fn safety_reasons(src: &dyn ReadAt, allow_descriptor: bool) -> Result<Vec<String>> {
    let mut head = [0u8; 512];
    let n = read_prefix(src, &mut head)?;
    if n >= 4 && &head[..4] == b"KDMV" {
        return footer_reasons(src, &head);
    }
    if n >= 4 && &head[..4] == b"COWD" {
        return Ok(Vec::new());
    }
    let len = src.len().min(VMDK_MAX_DESCRIPTOR_BYTES);
    let mut bytes = vec![0u8; usize::try_from(len).expect("at most 1 MiB")];
    read_exact_at(src, &mut bytes, 0, "descriptor")?;
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    let descriptor = Descriptor::parse(descriptor_text(&bytes[..end], 0)?)?;
    if allow_descriptor {
        return Ok(Vec::new());
    }
    Ok(vec![format!(
        "descriptor-only VMDK (createType {}): its data lives in other files, which format_inspector refuses (Unsupported subformat); pass --allow-descriptor to accept one whose extents lie beside it",
        descriptor.create_type.name()
    )])
}

/// format_inspector's footer rules for a header whose gdOffset is GD_AT_END.
fn footer_reasons(src: &dyn ReadAt, head: &[u8; 512]) -> Result<Vec<String>> {
    let le32 = |b: &[u8], at: usize| u32::from_le_bytes(b[at..at + 4].try_into().expect("4"));
    let le64 = |b: &[u8], at: usize| u64::from_le_bytes(b[at..at + 8].try_into().expect("8"));
    if le64(head, 56) != VMDK_GD_AT_END {
        return Ok(Vec::new());
    }
    let len = src.len();
    let Some(start) = len.checked_sub(1536) else {
        return Ok(vec!["stream VMDK too short for its footer".into()]);
    };
    let mut tail = vec![0u8; 1536];
    read_exact_at(src, &mut tail, start, "footer")?;
    let (marker, footer, eos) = (&tail[..512], &tail[512..1024], &tail[1024..]);
    let problem = if footer[..4] != head[..4] {
        "header and footer signature do not match"
    } else if le32(footer, 4) != le32(head, 4) {
        "header and footer versions do not match"
    } else if footer[28..44] != head[28..44] {
        "footer specifies a different descriptor than header"
    } else if le64(footer, 56) == VMDK_GD_AT_END {
        "footer indicates another footer"
    } else if le32(marker, 8) != 0
        || le32(marker, 12) != VMDK_MARKER_FOOTER
        || !is_zero(&marker[16..])
    {
        "footer marker is invalid"
    } else if !is_zero(eos) {
        "end-of-stream marker is invalid"
    } else {
        return Ok(Vec::new());
    };
    Ok(vec![format!(
        "stream VMDK footer at {:#x}: {problem}",
        start + 512
    )])
}

fn read_prefix(file: &dyn ReadAt, buf: &mut [u8]) -> Result<usize> {
    let len = file.len();
    let n = usize::try_from(len.min(buf.len() as u64)).expect("at most 512");
    read_exact_at(file, &mut buf[..n], 0, "header")?;
    Ok(n)
}

fn read_header(file: &dyn ReadAt) -> Result<SparseHeader> {
    let mut head = [0u8; 512];
    read_exact_at(file, &mut head, 0, "sparse header")?;
    Ok(SparseHeader::parse(&head, 0)?)
}

pub(super) fn read_embedded_descriptor(
    file: &dyn ReadAt,
    header: &SparseHeader,
) -> Result<Option<Descriptor>> {
    if header.descriptor_offset == 0 || header.descriptor_sectors == 0 {
        return Ok(None);
    }
    let bad = |field, value, allowed| VmdkError::BadHeaderField {
        offset: 0,
        field,
        value,
        allowed,
    };
    if header.descriptor_offset != 1 {
        // qemu and format_inspector only look for the descriptor at sector 1.
        return Err(bad("descriptorOffset", header.descriptor_offset, "expected 1").into());
    }
    let len = header
        .descriptor_sectors
        .saturating_mul(VMDK_SECTOR)
        .min(VMDK_MAX_DESCRIPTOR_BYTES);
    let mut bytes = vec![0u8; usize::try_from(len).expect("at most 1 MiB")];
    read_exact_at(file, &mut bytes, VMDK_SECTOR, "embedded descriptor")?;
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    let text = descriptor_text(&bytes[..end], VMDK_SECTOR)?;
    Ok(Some(Descriptor::parse(text)?))
}

fn descriptor_text(bytes: &[u8], offset: u64) -> Result<&str, VmdkError> {
    if !bytes.is_ascii() {
        return Err(VmdkError::BadDescriptorText {
            offset,
            reason: "descriptor text is not ASCII",
        });
    }
    let text = std::str::from_utf8(bytes).expect("ASCII is UTF-8");
    if !text.trim_start().starts_with('#') && !text.to_ascii_lowercase().contains("createtype") {
        return Err(VmdkError::BadDescriptorText {
            offset,
            reason: "no descriptor signature or createType",
        });
    }
    Ok(text)
}

fn base_info(create_type: CreateType, virtual_size: u64, d: Option<&Descriptor>) -> ImageInfo {
    let mut info =
        ImageInfo::new(DiskFormat::Vmdk, virtual_size).detail("createType", create_type.name());
    info.subformat = Some(create_type.name().to_string());
    let Some(d) = d else { return info };
    if let Some(cid) = d.cid {
        info = info.detail("CID", format!("{cid:08x}"));
    }
    for (label, key) in [
        ("adapter", "adapterType"),
        ("hw version", "virtualHWVersion"),
        ("tools version", "toolsVersion"),
    ] {
        if let Some(v) = d.ddb(key) {
            info = info.detail(label, v);
        }
    }
    info
}

fn sparse_details(info: ImageInfo, s: &SparseExtent) -> ImageInfo {
    let gd = match s.gd_source {
        GdSource::Footer => "footer (GD_AT_END)".to_string(),
        GdSource::Header => format!("sector {}", s.header.gd_offset),
    };
    info.detail("grain size", s.header.grain_sectors * VMDK_SECTOR)
        .detail("version", s.header.version)
        .detail(
            "compressed",
            if s.header.compressed() { "zlib" } else { "no" },
        )
        .detail("grain directory", gd)
}

fn extent_list(d: &Descriptor) -> String {
    let items: Vec<String> = d
        .extents
        .iter()
        .map(|e| {
            let kind = match e.kind {
                ExtentKind::Sparse => "SPARSE",
                ExtentKind::Flat => "FLAT",
                ExtentKind::Zero => "ZERO",
            };
            format!(
                "{kind} {} sectors {}",
                e.sectors,
                e.file.as_deref().unwrap_or("-")
            )
        })
        .collect();
    items.join("; ")
}
