//! The one factory for readers: [`open`] for a file and [`open_source`] for any source (a
//! tar member, a partition). The format is probed unless given, and each format's reader
//! opens from the source. Errors a reader finds later, while walking, are named here, once:
//! the returned reader attaches the name it was opened under to every error it yields.

use std::fs::File;
use std::path::{Path, PathBuf};

use super::{DiskFormat, DiskReader, Extent, ImageInfo, OwnedExtent};
use super::{iso, probe, qcow2, raw, vdi, vhd, vhdx, vmdk};
use crate::error::{Error, Result};
use crate::io::{FileSource, Source};

/// How to open an image.
#[derive(Debug, Clone, Default)]
pub struct OpenOptions {
    /// The format, or `None` to probe.
    pub format: Option<DiskFormat>,
    /// Opt in to images format_inspector refuses (qcow2 backing or data files, ...). The
    /// referenced files are still never opened; the reader treats the image alone.
    pub allow_unsafe: bool,
}

/// Opens `path` as a disk image, probing the format unless `opts.format` is set.
///
/// # Errors
/// The file cannot be opened, its metadata is invalid, or it is refused on safety grounds;
/// the error names `path`, and so does every error the reader yields later.
pub fn open(path: &Path, opts: &OpenOptions) -> Result<Box<dyn DiskReader>> {
    let src = open_file(path).map_err(|e| e.with_path(path))?;
    let dir = path.parent().unwrap_or(Path::new(""));
    open_named(src, path, Some(dir), opts)
}

/// Opens the image in `src`, naming it `name` in errors (`x.ova:x-disk1.vmdk`). A VMDK text
/// descriptor read this way cannot open extent files: there is no directory to take them from.
///
/// # Errors
/// As [`open`].
pub fn open_source(src: Source, name: &Path, opts: &OpenOptions) -> Result<Box<dyn DiskReader>> {
    open_named(src, name, None, opts)
}

fn open_file(path: &Path) -> Result<Source> {
    let file = File::open(path)?;
    if file.metadata()?.is_dir() {
        return Err(Error::invalid_input("is a directory, not a disk image"));
    }
    Ok(FileSource::shared(file)?)
}

fn open_named(
    src: Source,
    name: &Path,
    dir: Option<&Path>,
    opts: &OpenOptions,
) -> Result<Box<dyn DiskReader>> {
    let inner = open_format(src, dir, opts).map_err(|e| e.with_path(name))?;
    Ok(Box::new(Named {
        inner,
        name: name.to_path_buf(),
    }))
}

fn open_format(src: Source, dir: Option<&Path>, opts: &OpenOptions) -> Result<Box<dyn DiskReader>> {
    let format = match opts.format {
        Some(format) => format,
        None => probe::probe_for_open(&*src, opts.allow_unsafe)?,
    };
    match format {
        DiskFormat::Raw => raw::open(src),
        DiskFormat::Qcow2 => qcow2::open(src, opts),
        DiskFormat::Vmdk => vmdk::open(src, dir),
        DiskFormat::Vhd => vhd::open(src),
        DiskFormat::Vhdx => vhdx::open(src),
        DiskFormat::Vdi => vdi::open(src),
        DiskFormat::Iso => iso::open(src),
    }
}

/// A reader whose errors name the image it was opened from.
struct Named {
    inner: Box<dyn DiskReader>,
    name: PathBuf,
}

impl DiskReader for Named {
    fn virtual_size(&self) -> u64 {
        self.inner.virtual_size()
    }

    fn next_extent(&mut self) -> Result<Option<Extent<'_>>> {
        let name = &self.name;
        self.inner.next_extent().map_err(|e| e.with_path(name))
    }

    fn next_owned_extent(&mut self, spare: &mut Vec<u8>) -> Result<Option<OwnedExtent>> {
        let name = &self.name;
        self.inner
            .next_owned_extent(spare)
            .map_err(|e| e.with_path(name))
    }

    fn info(&self) -> ImageInfo {
        self.inner.info()
    }
}
