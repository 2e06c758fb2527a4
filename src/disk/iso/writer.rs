//! The ISO writer: file data first, in the tree's walk order, then the directories and path
//! tables planned from the whole tree, then the volume descriptors. Into a file from a
//! directory ([`IsoWriter::write_file`] after [`IsoWriter::add_tree`]) the tree is read on
//! a second thread while the data is copied, so the disk is busy from the first files on,
//! and the descriptors at block 16 are filled in last. Into a stream, or with a boot info
//! table to patch, the tree is read first and the image is written in one sequential pass.
//! Both give the same bytes. File contents stream through [`Sink`].

use std::io::Write;
use std::path::{Path, PathBuf};

use super::IsoError;
use super::boot::{self, BootImage};
use super::layout::{self, DataPlan, ISO_FIRST_DESCRIPTOR, Layout, Namespace, PlannedRecord};
use super::prefetch::Prefetcher;
use super::records::{
    self, DateTime, Descriptor, ISO_SECTOR, ISO_VD_PRIMARY, ISO_VD_SUPPLEMENTARY, PathTables,
    Record,
};
use super::scan::{self, StreamError};
use super::sink::Sink;
use super::susp;
use super::tree::{Data, IsoEntry, NodeKind, Tree};
use crate::context::BuildContext;
use crate::error::Result;
use crate::io::output::OutputSet;

/// Longest ISO 9660 volume identifier.
const ISO_MAX_LABEL: usize = 32;
/// Longest publisher / application identifier.
const ISO_MAX_ID: usize = 128;
/// Largest BIOS boot image read into memory to patch its boot info table.
const BIOS_BOOT_MAX_BYTES: u64 = 64 << 20;
/// Joliet's volume identifier holds 16 UCS-2 characters.
const JOLIET_MAX_LABEL_UNITS: usize = 16;

/// Settings of one ISO image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IsoOptions {
    /// Volume identifier (at most 32 printable ASCII characters; case is kept, so a
    /// cloud-init seed can be `cidata`).
    pub volume_label: String,
    /// Publisher identifier (at most 128 printable ASCII characters).
    pub publisher: String,
    /// Application identifier (at most 128 printable ASCII characters).
    pub application_id: String,
    /// Write a Joliet tree (Unicode names for Windows and 7-Zip).
    pub joliet: bool,
    /// Write Rock Ridge entries (POSIX names, modes, symlinks, times).
    pub rock_ridge: bool,
    /// Path in the image of a BIOS no-emulation boot image (El Torito default entry, like
    /// `mkisofs -b`).
    pub bios_boot: Option<PathBuf>,
    /// Path in the image of a FAT image for UEFI (El Torito platform 0xEF, like `-e`).
    pub efi_boot: Option<PathBuf>,
    /// Patch the boot info table into the BIOS image (`-boot-info-table`; isolinux and
    /// GRUB's `eltorito.img` need it).
    pub boot_info_table: bool,
}

impl Default for IsoOptions {
    fn default() -> Self {
        Self {
            volume_label: "CDROM".to_string(),
            publisher: String::new(),
            application_id: String::new(),
            joliet: true,
            rock_ridge: true,
            bios_boot: None,
            efi_boot: None,
            boot_info_table: false,
        }
    }
}

impl IsoOptions {
    fn validate(&self) -> Result<()> {
        let fields = [
            ("volume_label", &self.volume_label, ISO_MAX_LABEL),
            ("publisher", &self.publisher, ISO_MAX_ID),
            ("application_id", &self.application_id, ISO_MAX_ID),
        ];
        for (field, value, max) in fields {
            let printable = value.bytes().all(|b| (0x20..0x7f).contains(&b));
            if value.len() > max || !printable {
                return Err(IsoError::BadIdentifier {
                    field,
                    value: value.clone(),
                    max,
                }
                .into());
            }
        }
        Ok(())
    }
}

/// Builds an ISO 9660 image (with Joliet and Rock Ridge) from files, bytes, directories and
/// symlinks. RAM holds the tree and the directory records, never file contents.
#[derive(Debug, Clone)]
pub struct IsoWriter {
    options: IsoOptions,
    tree: Tree,
    /// The directory given to [`IsoWriter::add_tree`], not read yet.
    pending: Option<PathBuf>,
}

/// The bytes of one image sector, as `u64` for offsets.
const SECTOR_BYTES: u64 = ISO_SECTOR as u64;

impl IsoWriter {
    /// A writer for an empty image.
    ///
    /// # Errors
    /// A label or identifier that is too long or not printable ASCII.
    pub fn new(options: IsoOptions) -> Result<Self> {
        options.validate()?;
        Ok(Self {
            options,
            tree: Tree::new(),
            pending: None,
        })
    }

    /// Adds one entry. Files are opened once now, so unreadable sources are reported before
    /// anything is written.
    ///
    /// # Errors
    /// Bad or duplicate paths, unreadable files, files over 4 GiB - 1 (multi-extent files are
    /// not written).
    pub fn add(&mut self, entry: IsoEntry) -> Result<()> {
        self.read_pending()?;
        self.tree.add(entry)
    }

    /// Adds everything under `dir` as the image root. Only `dir` itself is read now: the
    /// tree is read when the image is written (while [`IsoWriter::write_file`] copies file
    /// data), or when another entry is added. Files are only `lstat`ed; one that cannot be
    /// opened fails the write (which then leaves no output).
    ///
    /// # Errors
    /// As [`IsoWriter::add`], plus unreadable directories and special files (devices, FIFOs,
    /// sockets), which ISO 9660 cannot hold.
    pub fn add_tree(&mut self, dir: &Path) -> Result<()> {
        self.read_pending()?;
        if self.tree.nodes.len() > 1 {
            return scan::scan_dir(&mut self.tree, dir);
        }
        scan::add_root(&mut self.tree, dir)?;
        self.pending = Some(dir.to_path_buf());
        Ok(())
    }

    /// Reads the tree [`IsoWriter::add_tree`] left for later.
    fn read_pending(&mut self) -> Result<()> {
        match self.pending.take() {
            Some(dir) => scan::scan_children(&mut self.tree, &dir),
            None => Ok(()),
        }
    }

    /// Writes the image to `out`, returning its size in bytes.
    ///
    /// # Errors
    /// Name collisions after Joliet mapping, an image too large for 32-bit block numbers,
    /// I/O errors, and source files that changed size since they were added.
    pub fn write_to(mut self, ctx: &BuildContext, out: &mut dyn Write) -> Result<u64> {
        self.read_pending()?;
        let mut sink = Sink::stream(out);
        self.write_planned(ctx, &mut sink)?;
        sink.finish()?;
        Ok(sink.pos)
    }

    /// Writes the image to `path` through an [`OutputSet`]: the file appears only when
    /// complete.
    ///
    /// # Errors
    /// As [`IsoWriter::write_to`]; the output exists and `force` is false.
    pub fn write_file(mut self, ctx: &BuildContext, path: &Path, force: bool) -> Result<u64> {
        if self.options.boot_info_table {
            // The boot image is patched with its own block, so the plan comes first.
            self.read_pending()?;
        }
        let pending = self.pending.take();
        let mut outputs = OutputSet::new(path, force);
        let written = (|| {
            let file = outputs.create_primary().map_err(StreamError::Take)?;
            let mut sink = Sink::file(&file);
            match &pending {
                Some(dir) => self.write_streamed(ctx, dir, &mut sink)?,
                None => self
                    .write_planned(ctx, &mut sink)
                    .map_err(StreamError::Take)?,
            }
            sink.finish().map_err(StreamError::Take)?;
            Ok(sink.pos)
        })();
        // Errors reading the tree name their source; the others concern the output.
        let size = written.map_err(|e| match e {
            StreamError::Scan(e) => e,
            StreamError::Take(e) => e.with_path(path),
        })?;
        outputs.commit()?;
        Ok(size)
    }

    /// Plans the whole image from the tree, then writes it front to back.
    fn write_planned(&mut self, ctx: &BuildContext, sink: &mut Sink<'_>) -> Result<()> {
        let mut data = DataPlan::new(self.options.joliet, self.booting());
        for node in self.tree.data_order() {
            data.place(node, self.tree.nodes[node].data_size())?;
        }
        let date = DateTime::from_epoch(ctx.epoch);
        let (layout, catalog, bios) = self.plan(data, &date)?;
        let prefetcher = Prefetcher::start();
        for &(node, _) in &layout.files {
            if let NodeKind::File {
                data: Data::Path(path),
                size,
            } = &self.tree.nodes[node].kind
            {
                prefetcher.queue().want(path, *size);
            }
        }
        sink.pad_to(u64::from(ISO_FIRST_DESCRIPTOR) * SECTOR_BYTES)?;
        sink.write(&self.descriptors(&layout, &date))?;
        let patch = if self.options.boot_info_table {
            bios
        } else {
            None
        };
        self.write_files(&layout, patch, &prefetcher, sink)?;
        drop(prefetcher);
        self.write_metadata(&layout, &date, &catalog, sink)?;
        sink.pad_to(u64::from(layout.total_blocks) * SECTOR_BYTES)
    }

    /// Reads `dir` on a second thread while copying the data of each file as it is found,
    /// then writes the metadata and fills in the descriptors.
    fn write_streamed(
        &mut self,
        ctx: &BuildContext,
        dir: &Path,
        sink: &mut Sink<'_>,
    ) -> std::result::Result<(), StreamError> {
        let mut data = DataPlan::new(self.options.joliet, self.booting());
        // Zeros for the system area and the descriptors, which are written last.
        (sink.pad_to(u64::from(data.start) * SECTOR_BYTES)).map_err(StreamError::Take)?;
        let tree = &mut self.tree;
        let prefetcher = Prefetcher::start();
        scan::stream(dir, tree.nodes.len(), &prefetcher.queue(), &mut |item| {
            let node = item.insert(tree)?;
            if let NodeKind::File { data: source, size } = &tree.nodes[node].kind
                && *size > 0
            {
                let lba = data.place(node, *size)?;
                sink.pad_to(u64::from(lba) * SECTOR_BYTES)?;
                copy(source, *size, sink)?;
                prefetcher.copied(*size);
            }
            Ok(())
        })?;
        drop(prefetcher);
        (|| {
            let date = DateTime::from_epoch(ctx.epoch);
            let (layout, catalog, _) = self.plan(data, &date)?;
            self.write_metadata(&layout, &date, &catalog, sink)?;
            sink.pad_to(u64::from(layout.total_blocks) * SECTOR_BYTES)?;
            let descriptors = self.descriptors(&layout, &date);
            sink.write_at(u64::from(ISO_FIRST_DESCRIPTOR) * SECTOR_BYTES, &descriptors)
        })()
        .map_err(StreamError::Take)
    }

    fn booting(&self) -> bool {
        self.options.bios_boot.is_some() || self.options.efi_boot.is_some()
    }

    /// Names the tree and plans its metadata after `data`; returns the layout, the boot
    /// catalog and the BIOS boot image's node.
    fn plan(
        &mut self,
        data: DataPlan,
        date: &DateTime,
    ) -> Result<(Layout, Vec<u8>, Option<usize>)> {
        self.tree.assign_names(self.options.joliet)?;
        let bios = self.boot_node("bios_boot", self.options.bios_boot.as_deref())?;
        let efi = self.boot_node("efi_boot", self.options.efi_boot.as_deref())?;
        let o = &self.options;
        let layout = layout::plan(
            &self.tree,
            data,
            o.rock_ridge,
            o.joliet,
            self.booting(),
            date.record_bytes(),
        )?;
        let image = |node: Option<usize>| {
            node.map(|n| BootImage {
                lba: layout.file_lba[n],
                size: self.tree.nodes[n].data_size(),
            })
        };
        let catalog = boot::catalog(image(bios), image(efi));
        Ok((layout, catalog, bios))
    }

    /// The node of a boot image given by path; it must be a non-empty file.
    fn boot_node(&self, option: &'static str, path: Option<&Path>) -> Result<Option<usize>> {
        let Some(path) = path else { return Ok(None) };
        match self.tree.find(path) {
            Some(n) if self.tree.nodes[n].data_size() > 0 => Ok(Some(n)),
            _ => Err(IsoError::BootImageMissing {
                option,
                path: path.to_path_buf(),
            }
            .into()),
        }
    }

    /// The volume descriptors from block 16: primary, boot record, Joliet, terminator.
    fn descriptors(&self, layout: &Layout, date: &DateTime) -> Vec<u8> {
        let mut bytes = self.descriptor(layout, &layout.primary, date, false);
        if let Some(lba) = layout.catalog_lba {
            bytes.extend_from_slice(&boot::boot_record(lba));
        }
        if let Some(joliet) = &layout.joliet {
            bytes.extend_from_slice(&self.descriptor(layout, joliet, date, true));
        }
        bytes.extend_from_slice(&records::encode_terminator());
        bytes
    }

    /// Path tables, directories, continuation areas and the boot catalog, after the data.
    fn write_metadata(
        &self,
        layout: &Layout,
        date: &DateTime,
        catalog: &[u8],
        sink: &mut Sink<'_>,
    ) -> Result<()> {
        // The last file ends anywhere in its last block.
        sink.pad_to(u64::from(layout.primary.table_l_lba) * SECTOR_BYTES)?;
        for ns in std::iter::once(&layout.primary).chain(layout.joliet.as_ref()) {
            sink.write_padded(&ns.table_l, ns.table_l_lba)?;
            sink.write_padded(&ns.table_m, ns.table_m_lba)?;
        }
        let date_bytes = date.record_bytes();
        for ns in std::iter::once(&layout.primary).chain(layout.joliet.as_ref()) {
            for dir in &ns.dirs {
                let bytes = self.encode_dir(layout, ns, &dir.records, date_bytes);
                sink.write_padded(&bytes, ns.dir_lba[dir.node])?;
            }
        }
        self.write_areas(layout, sink)?;
        if let Some(lba) = layout.catalog_lba {
            sink.write_padded(catalog, lba)?;
        }
        Ok(())
    }

    fn write_areas(&self, layout: &Layout, sink: &mut Sink<'_>) -> Result<()> {
        let mut bytes = vec![0u8; layout.ce_blocks as usize * ISO_SECTOR];
        for (area, &(lba, offset)) in layout.ce_areas.iter().zip(&layout.ce_pos) {
            let start = (lba - layout.ce_start) as usize * ISO_SECTOR + offset as usize;
            bytes[start..start + area.len()].copy_from_slice(area);
        }
        sink.write_padded(&bytes, layout.ce_start)
    }

    fn descriptor(
        &self,
        layout: &Layout,
        ns: &Namespace,
        date: &DateTime,
        joliet: bool,
    ) -> Vec<u8> {
        let root = PlannedRecord {
            target: 0,
            ident: vec![0],
            flags: records::ISO_FLAG_DIRECTORY,
            su: Vec::new(),
            ce: None,
        };
        let root = self.encode_record(layout, ns, &root, date.record_bytes());
        let tables = PathTables {
            size: u32::try_from(ns.table_l.len()).unwrap_or(u32::MAX),
            l_lba: ns.table_l_lba,
            m_lba: ns.table_m_lba,
        };
        let o = &self.options;
        let (label, publisher, application, fill): (Vec<u8>, Vec<u8>, Vec<u8>, &[u8]) = if joliet {
            let label: String = o
                .volume_label
                .chars()
                .take(JOLIET_MAX_LABEL_UNITS)
                .collect();
            (
                records::ucs2(&label),
                records::ucs2(&o.publisher),
                records::ucs2(&o.application_id),
                b"\0 ",
            )
        } else {
            (
                o.volume_label.clone().into(),
                o.publisher.clone().into(),
                o.application_id.clone().into(),
                b" ",
            )
        };
        records::encode_descriptor(&Descriptor {
            kind: if joliet {
                ISO_VD_SUPPLEMENTARY
            } else {
                ISO_VD_PRIMARY
            },
            volume_id: &label,
            publisher: &publisher,
            application: &application,
            volume_blocks: layout.total_blocks,
            tables,
            root,
            date: date.descriptor_bytes(),
            fill,
        })
    }

    fn encode_dir(
        &self,
        layout: &Layout,
        ns: &Namespace,
        recs: &[PlannedRecord],
        date: [u8; 7],
    ) -> Vec<u8> {
        let encoded: Vec<Vec<u8>> = recs
            .iter()
            .map(|r| self.encode_record(layout, ns, r, date))
            .collect();
        let (offsets, size) = layout::pack(encoded.iter().map(Vec::len));
        let mut bytes = vec![0u8; size];
        for (record, offset) in encoded.iter().zip(offsets) {
            bytes[offset..offset + record.len()].copy_from_slice(record);
        }
        bytes
    }

    fn encode_record(
        &self,
        layout: &Layout,
        ns: &Namespace,
        r: &PlannedRecord,
        date: [u8; 7],
    ) -> Vec<u8> {
        let node = &self.tree.nodes[r.target];
        let (extent, data_len) = if node.is_dir() {
            (ns.dir_lba[r.target], ns.dir_size[r.target])
        } else {
            // Sizes were checked against ISO_MAX_FILE_BYTES when the entry was added.
            let size = u32::try_from(node.data_size()).unwrap_or(u32::MAX);
            (layout.file_lba[r.target], size)
        };
        let mut su = r.su.clone();
        if let Some(ce) = r.ce {
            let (block, offset) = layout.ce_pos[ce];
            let len = u32::try_from(layout.ce_areas[ce].len()).unwrap_or(0);
            susp::ce(&mut su, block, offset, len);
        }
        records::encode_record(&Record {
            extent,
            data_len,
            date,
            flags: r.flags,
            ident: &r.ident,
            system_use: &su,
        })
    }

    fn write_files(
        &self,
        layout: &Layout,
        patch: Option<usize>,
        prefetcher: &Prefetcher,
        sink: &mut Sink<'_>,
    ) -> Result<()> {
        for &(node, lba) in &layout.files {
            sink.pad_to(u64::from(lba) * SECTOR_BYTES)?;
            let NodeKind::File { data, size } = &self.tree.nodes[node].kind else {
                continue;
            };
            if patch == Some(node) {
                let mut image = read_all(data, *size)?;
                boot::patch_boot_info_table(&mut image, lba);
                sink.write(&image)?;
                prefetcher.copied(*size);
                continue;
            }
            copy(data, *size, sink)?;
            prefetcher.copied(*size);
        }
        Ok(())
    }
}

/// Writes a file's contents at the sink's position.
fn copy(data: &Data, size: u64, sink: &mut Sink<'_>) -> Result<()> {
    match data {
        Data::Bytes(bytes) => sink.write(bytes),
        Data::Path(path) => sink.copy_file(path, size),
    }
}

/// A (small) boot image in memory, to patch its boot info table.
fn read_all(data: &Data, size: u64) -> Result<Vec<u8>> {
    match data {
        Data::Bytes(bytes) => Ok(bytes.clone()),
        Data::Path(path) if size <= BIOS_BOOT_MAX_BYTES => {
            let mut out = Vec::new();
            Sink::stream(&mut out).copy_file(path, size)?;
            Ok(out)
        }
        Data::Path(path) => Err(IsoError::FileTooLarge {
            path: path.clone(),
            size,
        }
        .into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(root: &Path) {
        std::fs::create_dir_all(root.join("b/c")).unwrap();
        std::fs::write(root.join("b/c/big"), vec![3u8; 100_000]).unwrap();
        std::fs::write(root.join("a"), b"a").unwrap();
        std::fs::write(root.join("empty"), b"").unwrap();
    }

    #[test]
    fn file_read_while_writing_equals_stream_written_after_reading() {
        let dir = tempfile::tempdir().unwrap();
        tree(&dir.path().join("src"));
        let ctx = BuildContext::from_env("t");
        let out = dir.path().join("out.iso");
        let mut writer = IsoWriter::new(IsoOptions::default()).unwrap();
        writer.add_tree(&dir.path().join("src")).unwrap();
        writer.clone().write_file(&ctx, &out, false).unwrap();
        let mut streamed = Vec::new();
        writer.write_to(&ctx, &mut streamed).unwrap();
        assert_eq!(std::fs::read(&out).unwrap(), streamed);
    }

    #[test]
    fn file_data_starts_right_after_the_descriptors() {
        let mut writer = IsoWriter::new(IsoOptions::default()).unwrap();
        let entry = IsoEntry::new("f", super::super::IsoSource::Bytes(b"DATA".to_vec()), 0o644);
        writer.add(entry).unwrap();
        let mut image = Vec::new();
        writer
            .write_to(&BuildContext::from_env("t"), &mut image)
            .unwrap();
        // Blocks 16-19: primary, Joliet, terminator; the data follows.
        assert_eq!(&image[19 * ISO_SECTOR..19 * ISO_SECTOR + 4], b"DATA");
    }
}
