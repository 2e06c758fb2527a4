//! Reading ISO 9660 images: the volume descriptors, the directory tree (Rock Ridge names
//! and modes when present, else Joliet, else ISO 9660 names) and file contents; and the
//! image as a raw disk of its bytes for `kiln convert` and `kiln info`.
//!
//! Every directory extent is checked to lie inside the image and is read at most once
//! (a loop of directories is refused); the tree is capped at [`ISO_MAX_ENTRIES`] entries.

use std::collections::BTreeSet;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use super::IsoError;
use super::records::{
    ISO_FLAG_DIRECTORY, ISO_FLAG_MULTI_EXTENT, ISO_SECTOR, ISO_STANDARD_ID, ISO_VD_BOOT,
    ISO_VD_PRIMARY, ISO_VD_SUPPLEMENTARY, ISO_VD_TERMINATOR,
};
use crate::disk::{DiskFormat, DiskReader, Extent, ImageInfo, MAX_EXTENT_BYTES};
use crate::error::Result;
use crate::io::{FileSource, Source, read_exact_at};

/// Most volume descriptors read before a terminator must appear.
const ISO_MAX_DESCRIPTORS: u64 = 64;
/// Most directory entries the reader walks.
pub const ISO_MAX_ENTRIES: usize = 1_000_000;
/// Longest path the reader builds (bounds memory on absurdly deep trees).
const ISO_MAX_PATH_BYTES: usize = 16 << 10;
/// Largest directory extent the reader loads.
const ISO_MAX_DIR_BYTES: u32 = 16 << 20;
/// Most continuation areas followed for one record.
const SUSP_MAX_CONTINUATIONS: usize = 16;

/// What kind of object an entry is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IsoFileKind {
    /// A regular file.
    File,
    /// A directory.
    Directory,
    /// A symbolic link (Rock Ridge) with its target.
    Symlink(String),
}

/// One entry of an image's tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IsoFile {
    /// Path from the root, `/`-separated, without a leading slash.
    pub path: String,
    /// File, directory or symlink.
    pub kind: IsoFileKind,
    /// Data length in bytes.
    pub size: u64,
    /// POSIX mode from Rock Ridge, when present.
    pub mode: Option<u32>,
    extent: u32,
    multi_extent: bool,
}

/// An opened ISO image: its descriptors and tree.
#[derive(Debug)]
pub struct IsoImage {
    src: Source,
    /// Volume identifier of the primary descriptor (trailing spaces removed).
    pub volume_label: String,
    /// A Joliet supplementary descriptor is present.
    pub joliet: bool,
    /// The root directory carries the SUSP "SP" entry (Rock Ridge).
    pub rock_ridge: bool,
    /// An El Torito boot record is present.
    pub el_torito: bool,
    /// Bytes the volume descriptor says the image spans.
    pub volume_bytes: u64,
    /// Publisher identifier.
    pub publisher: String,
    /// Application identifier.
    pub application_id: String,
    /// Every entry, parents before children.
    pub entries: Vec<IsoFile>,
}

struct RootRef {
    extent: u32,
    size: u32,
}

impl IsoImage {
    /// Opens and walks the image at `path`.
    ///
    /// # Errors
    /// Missing or malformed descriptors, directory records outside the image, loops, too
    /// many entries; errors name the byte offset.
    pub fn open(path: &Path) -> Result<Self> {
        let file = File::open(path).map_err(|e| crate::Error::io(e).with_path(path))?;
        let src = FileSource::shared(file).map_err(|e| crate::Error::io(e).with_path(path))?;
        Self::from_source(src).map_err(|e| e.with_path(path))
    }

    /// Opens and walks the image in `src`.
    ///
    /// # Errors
    /// As [`IsoImage::open`].
    pub(super) fn from_source(src: Source) -> Result<Self> {
        let len = src.len();
        let mut image = Self {
            src,
            volume_label: String::new(),
            joliet: false,
            rock_ridge: false,
            el_torito: false,
            volume_bytes: 0,
            publisher: String::new(),
            application_id: String::new(),
            entries: Vec::new(),
        };
        let (primary, joliet) = image.read_descriptors(len)?;
        let root = primary.ok_or(IsoError::NoPrimaryDescriptor)?;
        image.rock_ridge = image.has_sp(&root, len)?;
        let tree_root = match (image.rock_ridge, joliet) {
            (false, Some(j)) => (j, true),
            _ => (root, false),
        };
        image.entries = image.walk(&tree_root.0, tree_root.1, len)?;
        Ok(image)
    }

    fn read_descriptors(&mut self, len: u64) -> Result<(Option<RootRef>, Option<RootRef>)> {
        let (mut primary, mut joliet) = (None, None);
        for index in 16..16 + ISO_MAX_DESCRIPTORS {
            let offset = index * ISO_SECTOR as u64;
            let mut vd = vec![0u8; ISO_SECTOR];
            read_exact_at(&*self.src, &mut vd, offset, "ISO volume descriptor")?;
            if &vd[1..6] != ISO_STANDARD_ID || vd[6] != 1 {
                return Err(IsoError::BadDescriptor { offset }.into());
            }
            match vd[0] {
                ISO_VD_TERMINATOR => return Ok((primary, joliet)),
                ISO_VD_BOOT if vd[7..30].starts_with(b"EL TORITO SPECIFICATION") => {
                    self.el_torito = true;
                }
                ISO_VD_PRIMARY if primary.is_none() => {
                    primary = Some(self.primary(&vd, offset, len)?);
                }
                ISO_VD_SUPPLEMENTARY if is_joliet(&vd) => {
                    self.joliet = true;
                    joliet = Some(root_ref(&vd, offset, len)?);
                }
                _ => {}
            }
        }
        Err(IsoError::NoTerminator {
            offset: 16 * ISO_SECTOR as u64,
        }
        .into())
    }

    fn primary(&mut self, vd: &[u8], offset: u64, len: u64) -> Result<RootRef> {
        let block_size = le_u16(vd, 128);
        if usize::from(block_size) != ISO_SECTOR {
            return Err(IsoError::BadBlockSize {
                offset: offset + 128,
                block_size,
            }
            .into());
        }
        self.volume_bytes = u64::from(le_u32(vd, 80)) * ISO_SECTOR as u64;
        if self.volume_bytes > len {
            return Err(IsoError::VolumePastEnd {
                offset: offset + 80,
                volume_bytes: self.volume_bytes,
                len,
            }
            .into());
        }
        self.volume_label = ascii_field(&vd[40..72]);
        self.publisher = ascii_field(&vd[318..446]);
        self.application_id = ascii_field(&vd[574..702]);
        root_ref(vd, offset, len)
    }

    /// True when the root's `.` record starts with the SUSP "SP" entry.
    fn has_sp(&self, root: &RootRef, len: u64) -> Result<bool> {
        let dir = self.read_dir(root, len)?;
        let Some(record) = records_of(&dir, dir_offset(root)).next().transpose()? else {
            return Ok(false);
        };
        Ok(record.system_use.starts_with(b"SP\x07\x01\xbe\xef"))
    }

    fn read_dir(&self, dir: &RootRef, len: u64) -> Result<Vec<u8>> {
        let offset = dir_offset(dir);
        if dir.size > ISO_MAX_DIR_BYTES || offset + u64::from(dir.size) > len {
            return Err(IsoError::DirectoryOutside {
                offset,
                size: dir.size,
            }
            .into());
        }
        let mut buf = vec![0u8; dir.size as usize];
        read_exact_at(&*self.src, &mut buf, offset, "ISO directory")?;
        Ok(buf)
    }

    fn walk(&self, root: &RootRef, joliet: bool, len: u64) -> Result<Vec<IsoFile>> {
        let mut entries = Vec::new();
        let mut seen = BTreeSet::from([root.extent]);
        let mut stack = vec![(
            String::new(),
            RootRef {
                extent: root.extent,
                size: root.size,
            },
        )];
        while let Some((prefix, dir)) = stack.pop() {
            let bytes = self.read_dir(&dir, len)?;
            for record in records_of(&bytes, dir_offset(&dir)).skip(2) {
                let record = record?;
                let file = self.entry(&record, &prefix, joliet, len)?;
                if file.kind == IsoFileKind::Directory {
                    if !seen.insert(file.extent) {
                        return Err(IsoError::DirectoryLoop {
                            offset: record.offset,
                        }
                        .into());
                    }
                    let size = u32::try_from(file.size).unwrap_or(u32::MAX);
                    stack.push((
                        file.path.clone(),
                        RootRef {
                            extent: file.extent,
                            size,
                        },
                    ));
                }
                entries.push(file);
                if entries.len() > ISO_MAX_ENTRIES {
                    return Err(IsoError::TooManyEntries {
                        max: ISO_MAX_ENTRIES,
                    }
                    .into());
                }
            }
        }
        entries.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(entries)
    }

    fn entry(&self, r: &RawRecord<'_>, prefix: &str, joliet: bool, len: u64) -> Result<IsoFile> {
        let rr = if self.rock_ridge {
            self.rock_ridge_fields(r, len)?
        } else {
            RrFields::default()
        };
        let name = match rr.name {
            Some(name) => name,
            None if joliet => String::from_utf16_lossy(&utf16_units(r.ident)),
            None => iso_display_name(r.ident),
        };
        if name.is_empty() || name == "." || name == ".." || name.contains('/') {
            return Err(IsoError::BadName { offset: r.offset }.into());
        }
        let kind = match (r.flags & ISO_FLAG_DIRECTORY != 0, rr.symlink) {
            (true, _) => IsoFileKind::Directory,
            (false, Some(target)) => IsoFileKind::Symlink(target),
            (false, None) => IsoFileKind::File,
        };
        let path = if prefix.is_empty() {
            name
        } else {
            format!("{prefix}/{name}")
        };
        if path.len() > ISO_MAX_PATH_BYTES {
            return Err(IsoError::PathTooLong {
                offset: r.offset,
                max: ISO_MAX_PATH_BYTES,
            }
            .into());
        }
        Ok(IsoFile {
            path,
            kind,
            size: u64::from(r.data_len),
            mode: rr.mode,
            extent: r.extent,
            multi_extent: r.flags & ISO_FLAG_MULTI_EXTENT != 0,
        })
    }

    fn rock_ridge_fields(&self, r: &RawRecord<'_>, len: u64) -> Result<RrFields> {
        let mut fields = RrFields::default();
        let mut area = r.system_use.to_vec();
        let mut names = Vec::new();
        let mut link = SlState::default();
        for _ in 0..SUSP_MAX_CONTINUATIONS {
            let next = parse_susp(&area, &mut names, &mut link, &mut fields);
            let Some((block, offset, size)) = next else {
                break;
            };
            let start = u64::from(block) * ISO_SECTOR as u64 + u64::from(offset);
            if u64::from(size) > ISO_SECTOR as u64 || start + u64::from(size) > len {
                return Err(IsoError::ContinuationOutside {
                    offset: r.offset,
                    area: start,
                }
                .into());
            }
            area = vec![0u8; size as usize];
            read_exact_at(&*self.src, &mut area, start, "SUSP continuation area")?;
        }
        if !names.is_empty() {
            fields.name = Some(String::from_utf8_lossy(&names).into_owned());
        }
        if fields.symlink.is_some() {
            fields.symlink = Some(String::from_utf8_lossy(&link.link).into_owned());
        }
        Ok(fields)
    }

    /// Streams the contents of `entry` into `out`.
    ///
    /// # Errors
    /// Directories, symlinks and multi-extent files (not supported); extents past the end
    /// of the image; write errors.
    pub fn read_file(&self, entry: &IsoFile, out: &mut dyn Write) -> Result<u64> {
        if entry.kind != IsoFileKind::File || entry.multi_extent {
            return Err(IsoError::NotARegularFile {
                path: PathBuf::from(&entry.path),
            }
            .into());
        }
        let start = u64::from(entry.extent) * ISO_SECTOR as u64;
        let len = self.src.len();
        if start + entry.size > len {
            return Err(IsoError::FileOutside {
                offset: start,
                size: entry.size,
            }
            .into());
        }
        let mut buf = vec![
            0u8;
            MAX_EXTENT_BYTES
                .min(usize::try_from(entry.size).unwrap_or(MAX_EXTENT_BYTES))
        ];
        let mut done = 0u64;
        while done < entry.size {
            let n = usize::try_from((entry.size - done).min(buf.len() as u64)).unwrap_or(buf.len());
            read_exact_at(&*self.src, &mut buf[..n], start + done, "ISO file data")?;
            out.write_all(&buf[..n])?;
            done += n as u64;
        }
        Ok(done)
    }

    /// Extracts the whole tree under `dest` (created if missing): directories, files and
    /// symlinks. Entry names never contain `/`, `.` or `..`, so nothing lands outside `dest`.
    ///
    /// # Errors
    /// As [`IsoImage::read_file`], plus failures creating the files.
    pub fn extract_all(&self, dest: &Path) -> Result<()> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |e: std::io::Error| crate::Error::io(e).with_path(&path)
        };
        std::fs::create_dir_all(dest).map_err(io(dest))?;
        for entry in &self.entries {
            let target = dest.join(&entry.path);
            match &entry.kind {
                IsoFileKind::Directory => std::fs::create_dir_all(&target).map_err(io(&target))?,
                IsoFileKind::Symlink(link) => {
                    std::os::unix::fs::symlink(link, &target).map_err(io(&target))?;
                }
                IsoFileKind::File => {
                    let file = File::create(&target).map_err(io(&target))?;
                    let mut out = std::io::BufWriter::new(file);
                    self.read_file(entry, &mut out)?;
                    out.flush().map_err(io(&target))?;
                }
            }
        }
        Ok(())
    }

    /// Looks an entry up by its path (`dir/name`).
    pub fn find(&self, path: &str) -> Option<&IsoFile> {
        self.entries.iter().find(|e| e.path == path)
    }

    fn info(&self, virtual_size: u64) -> ImageInfo {
        let count = |kind: &IsoFileKind| self.entries.iter().filter(|e| e.kind == *kind).count();
        let yes_no = |b: bool| if b { "yes" } else { "no" };
        let files = self.entries.len() - count(&IsoFileKind::Directory);
        ImageInfo::new(DiskFormat::Iso, virtual_size)
            .detail("volume_label", &self.volume_label)
            .detail("joliet", yes_no(self.joliet))
            .detail("rock_ridge", yes_no(self.rock_ridge))
            .detail("el_torito", yes_no(self.el_torito))
            .detail("files", files)
            .detail("directories", count(&IsoFileKind::Directory))
            .detail("publisher", &self.publisher)
            .detail("application_id", &self.application_id)
    }
}

#[derive(Debug, Default)]
struct RrFields {
    name: Option<String>,
    symlink: Option<String>,
    mode: Option<u32>,
}

/// Reads NM, SL and PX from one system use area; returns the CE target, if any.
fn parse_susp(
    area: &[u8],
    names: &mut Vec<u8>,
    link: &mut SlState,
    f: &mut RrFields,
) -> Option<(u32, u32, u32)> {
    let mut pos = 0;
    let mut next = None;
    while pos + 4 <= area.len() {
        let len = usize::from(area[pos + 2]);
        if len < 4 || pos + len > area.len() {
            break;
        }
        let e = &area[pos..pos + len];
        match &e[..2] {
            b"NM" if len >= 5 => names.extend_from_slice(&e[5..]),
            b"PX" if len >= 12 => f.mode = Some(le_u32(e, 4)),
            b"SL" if len >= 5 => {
                f.symlink = Some(String::new());
                parse_sl(&e[5..], link);
            }
            b"CE" if len >= 28 => next = Some((le_u32(e, 4), le_u32(e, 12), le_u32(e, 20))),
            b"ST" => break,
            _ => {}
        }
        pos += len;
    }
    next
}

/// A symlink target being assembled from SL component records.
#[derive(Debug, Default)]
struct SlState {
    link: Vec<u8>,
    /// The last component continues in the next component record.
    continued: bool,
}

fn parse_sl(mut components: &[u8], sl: &mut SlState) {
    while components.len() >= 2 {
        let (flags, len) = (components[0], usize::from(components[1]));
        let Some(content) = components.get(2..2 + len) else {
            return;
        };
        if !sl.link.is_empty() && !sl.continued && sl.link != b"/" {
            sl.link.push(b'/');
        }
        match flags & 0x0e {
            0x08 => sl.link.push(b'/'),
            0x04 => sl.link.extend_from_slice(b".."),
            0x02 => sl.link.push(b'.'),
            _ => sl.link.extend_from_slice(content),
        }
        sl.continued = flags & 0x01 != 0;
        components = &components[2 + len..];
    }
}

/// A directory record as found on disk.
struct RawRecord<'a> {
    offset: u64,
    extent: u32,
    data_len: u32,
    flags: u8,
    ident: &'a [u8],
    system_use: &'a [u8],
}

/// Iterates the records of a directory extent whose first byte is at `base`.
fn records_of(dir: &[u8], base: u64) -> impl Iterator<Item = Result<RawRecord<'_>>> {
    let mut pos = 0usize;
    std::iter::from_fn(move || {
        while pos < dir.len() {
            let len = usize::from(dir[pos]);
            if len == 0 {
                pos = (pos / ISO_SECTOR + 1) * ISO_SECTOR;
                continue;
            }
            let offset = base + pos as u64;
            let sector_end = (pos / ISO_SECTOR + 1) * ISO_SECTOR;
            let ident_len = dir
                .get(pos + 32)
                .map(|&b| usize::from(b))
                .unwrap_or(usize::MAX);
            if len < 34 || pos + len > sector_end.min(dir.len()) || 33 + ident_len > len {
                pos = dir.len();
                return Some(Err(IsoError::BadRecord { offset, len }.into()));
            }
            let r = &dir[pos..pos + len];
            let su_start = 33 + ident_len + usize::from(ident_len.is_multiple_of(2));
            pos += len;
            return Some(Ok(RawRecord {
                offset,
                extent: le_u32(r, 2),
                data_len: le_u32(r, 10),
                flags: r[25],
                ident: &r[33..33 + ident_len],
                system_use: r.get(su_start..).unwrap_or(&[]),
            }));
        }
        None
    })
}

fn dir_offset(dir: &RootRef) -> u64 {
    u64::from(dir.extent) * ISO_SECTOR as u64
}

fn root_ref(vd: &[u8], offset: u64, len: u64) -> Result<RootRef> {
    let root = &vd[156..190];
    let root = RootRef {
        extent: le_u32(root, 2),
        size: le_u32(root, 10),
    };
    if root.size == 0 || dir_offset(&root) + u64::from(root.size) > len {
        return Err(IsoError::DirectoryOutside {
            offset: offset + 156,
            size: root.size,
        }
        .into());
    }
    Ok(root)
}

fn is_joliet(vd: &[u8]) -> bool {
    matches!(&vd[88..91], b"%/@" | b"%/C" | b"%/E")
}

fn le_u16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn le_u32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn ascii_field(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes)
        .trim_end_matches([' ', '\0'])
        .to_string()
}

fn utf16_units(ident: &[u8]) -> Vec<u16> {
    let units: Vec<u16> = ident
        .chunks_exact(2)
        .map(|c| u16::from_be_bytes([c[0], c[1]]))
        .collect();
    let end = units.len().saturating_sub(2);
    if units.get(end..) == Some(&[u16::from(b';'), u16::from(b'1')][..]) {
        units[..end].to_vec()
    } else {
        units
    }
}

/// `NAME.EXT;1` → `NAME.EXT`, `NAME.;1` → `NAME`.
fn iso_display_name(ident: &[u8]) -> String {
    let text = String::from_utf8_lossy(ident);
    let text = text.split(';').next().unwrap_or_default();
    text.strip_suffix('.').unwrap_or(text).to_string()
}

/// An ISO image read as a raw disk of its bytes.
pub(super) struct IsoReader {
    image: IsoImage,
    virtual_size: u64,
    pos: u64,
    buf: Vec<u8>,
}

impl IsoReader {
    pub(super) fn new(image: IsoImage) -> Result<Self> {
        let virtual_size = image.src.len();
        Ok(Self {
            image,
            virtual_size,
            pos: 0,
            buf: Vec::new(),
        })
    }
}

impl DiskReader for IsoReader {
    fn virtual_size(&self) -> u64 {
        self.virtual_size
    }

    fn next_extent(&mut self) -> Result<Option<Extent<'_>>> {
        if self.pos >= self.virtual_size {
            return Ok(None);
        }
        let len = (self.virtual_size - self.pos).min(MAX_EXTENT_BYTES as u64);
        self.buf
            .resize(usize::try_from(len).unwrap_or(MAX_EXTENT_BYTES), 0);
        read_exact_at(&*self.image.src, &mut self.buf, self.pos, "ISO data")?;
        self.pos += len;
        Ok(Some(Extent::Data(&self.buf)))
    }

    fn info(&self) -> ImageInfo {
        self.image.info(self.virtual_size)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_symlink_components_are_joined() {
        let mut sl = SlState::default();
        parse_sl(b"\x04\x00\x00\x03etc", &mut sl);
        assert_eq!(sl.link, b"../etc");
    }

    #[test]
    fn absolute_symlink_keeps_its_leading_slash() {
        let mut sl = SlState::default();
        parse_sl(b"\x08\x00\x00\x03etc\x00\x01x", &mut sl);
        assert_eq!(sl.link, b"/etc/x");
    }

    #[test]
    fn record_longer_than_its_sector_is_rejected() {
        let mut dir = vec![0u8; 2048];
        dir[0] = 200;
        dir[32] = 250;
        let first = records_of(&dir, 0x8000).next().unwrap();
        assert!(first.is_err());
    }

    /// Flips bytes in the metadata of a small image: every result is an error or a tree,
    /// never a panic.
    #[test]
    fn corrupted_metadata_never_panics() {
        use crate::disk::iso::{IsoEntry, IsoOptions, IsoSource, IsoWriter};
        let mut writer = IsoWriter::new(IsoOptions::default()).unwrap();
        for (path, source) in [
            ("a/b/c.txt", IsoSource::Bytes(b"abc".to_vec())),
            ("a/link", IsoSource::Symlink("b/c.txt".into())),
            (
                "long-name-".repeat(20).as_str(),
                IsoSource::Bytes(vec![1; 5000]),
            ),
        ] {
            writer.add(IsoEntry::new(path, source, 0o644)).unwrap();
        }
        let mut image = Vec::new();
        let ctx = crate::BuildContext::from_env("t");
        writer.write_to(&ctx, &mut image).unwrap();
        // Descriptors, file data (4 blocks) and the metadata after it, up to the end.
        let metadata_end = image.len();
        let mut rng = 0x1234_5678_9abc_def0u64;
        for _ in 0..300 {
            let mut bad = image.clone();
            for _ in 0..4 {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                let span = (metadata_end - 16 * ISO_SECTOR) as u64;
                let at = 16 * ISO_SECTOR + usize::try_from(rng % span).unwrap();
                bad[at] ^= rng.to_le_bytes()[4] | 1;
            }
            if let Ok(img) = IsoImage::from_source(std::sync::Arc::new(bad)) {
                for e in img.entries.iter().filter(|e| e.kind == IsoFileKind::File) {
                    let _ = img.read_file(e, &mut std::io::sink());
                }
            }
        }
    }

    #[test]
    fn version_suffix_is_dropped_from_iso_names() {
        assert_eq!(iso_display_name(b"USER_DAT.;1"), "USER_DAT");
    }
}
