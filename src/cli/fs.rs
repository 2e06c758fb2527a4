//! Looking inside images: `kiln ls` and `kiln cat` read an ext2/3/4 file system in a disk
//! image of any format; `kiln info` lists partitions; `kiln convert --partition N` writes
//! one partition.
//!
//! `IMAGE[:N]` names partition N (numbered as sfdisk and parted do). Without `:N` a disk
//! with no partition table is read whole, and a partitioned disk by its one Linux root
//! partition (an error lists the partitions when there is not exactly one). A raw image is
//! read in place; any other format is streamed once into an unlinked sparse file in
//! `$TMPDIR` first, since a file system needs random access (see `fs::partition::image`).

use std::ffi::{OsStr, OsString};
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use clap::Args;
use kiln::disk::window::Window;
use kiln::disk::{DiskFormat, DiskReader, OpenOptions};
use kiln::fs::ext4::{Ext4, FileType, Inode};
use kiln::fs::partition::image::{DiskImage, head_of, spill, table_of_head};
use kiln::fs::partition::{BackupStatus, Partition, PartitionTable, Scheme};
use kiln::io::Source;
use kiln::io::output::OutputSet;
use kiln::size::HumanSize;
use kiln::{Error, Result};
use serde_json::{Value, json};

use super::parse_format;

#[derive(Debug, Args)]
pub(super) struct LsArgs {
    /// Input format (probed when omitted).
    #[arg(short = 'f', value_name = "FMT", value_parser = parse_format)]
    format: Option<DiskFormat>,
    /// Read this member of an OVA (default: the package's first disk).
    #[arg(long, value_name = "NAME")]
    member: Option<String>,
    /// Disk image, `IMAGE:N` for partition N (`disk.qcow2:2`). Without `:N`: the whole disk
    /// when it has no partition table, else its one Linux root partition.
    image: OsString,
    /// Directory or file inside the file system.
    #[arg(default_value = "/")]
    path: OsString,
}

#[derive(Debug, Args)]
pub(super) struct CatArgs {
    /// Input format (probed when omitted).
    #[arg(short = 'f', value_name = "FMT", value_parser = parse_format)]
    format: Option<DiskFormat>,
    /// Read this member of an OVA (default: the package's first disk).
    #[arg(long, value_name = "NAME")]
    member: Option<String>,
    /// Write to FILE (created complete or not at all) instead of standard output.
    #[arg(short = 'o', value_name = "FILE")]
    output: Option<PathBuf>,
    /// Replace FILE if it exists.
    #[arg(long)]
    force: bool,
    /// Disk image, `IMAGE:N` for partition N (as for `kiln ls`).
    image: OsString,
    /// File inside the file system (symbolic links are followed inside it).
    path: OsString,
}

/// `IMAGE:N` split into the image path and partition N; an existing file named with the
/// colon wins.
fn split_image(arg: &OsStr) -> (PathBuf, Option<u32>) {
    let whole = PathBuf::from(arg);
    if whole.exists() {
        return (whole, None);
    }
    let bytes = arg.as_bytes();
    let Some(colon) = bytes.iter().rposition(|&b| b == b':') else {
        return (whole, None);
    };
    let number = std::str::from_utf8(&bytes[colon + 1..])
        .ok()
        .and_then(|n| n.parse::<u32>().ok());
    match number {
        Some(n) => (PathBuf::from(OsStr::from_bytes(&bytes[..colon])), Some(n)),
        None => (whole, None),
    }
}

/// A disk opened for its partitions: an image file (raw ones read in place), or a disk in
/// an OVA, read through the archive by fresh readers.
enum Disk {
    Image(DiskImage),
    Package {
        path: PathBuf,
        member: Option<String>,
        opts: OpenOptions,
        name: PathBuf,
    },
}

impl Disk {
    fn open(path: &Path, member: Option<&str>, opts: &OpenOptions) -> Result<Self> {
        let input = super::input::open(path, member, opts)?;
        if input.member_len.is_none() {
            return Ok(Disk::Image(DiskImage::open(path, opts)?));
        }
        Ok(Disk::Package {
            path: path.to_path_buf(),
            member: member.map(str::to_string),
            opts: opts.clone(),
            name: input.name,
        })
    }

    fn name(&self) -> &Path {
        match self {
            Disk::Image(image) => image.name(),
            Disk::Package { name, .. } => name,
        }
    }

    /// A fresh reader of the whole disk.
    fn reader(&self) -> Result<Box<dyn DiskReader>> {
        match self {
            Disk::Image(image) => image.reader(),
            Disk::Package {
                path, member, opts, ..
            } => Ok(super::input::open(path, member.as_deref(), opts)?.reader),
        }
    }

    fn table(&self) -> Result<Option<PartitionTable>> {
        match self {
            Disk::Image(image) => image.table(),
            Disk::Package { name, .. } => {
                let (head, size) = head_of(self.reader()?.as_mut())?;
                table_of_head(&head, size).map_err(|e| e.with_path(name))
            }
        }
    }

    fn partition_name(&self, index: u32) -> PathBuf {
        let mut name = self.name().as_os_str().to_owned();
        name.push(format!(":{index}"));
        PathBuf::from(name)
    }

    fn partition_reader(&self, part: &Partition) -> Result<Box<dyn DiskReader>> {
        match self {
            Disk::Image(image) => image.partition_reader(part),
            Disk::Package { .. } => Ok(Box::new(
                Window::new(self.reader()?, part.start, part.size)
                    .map_err(|e| e.with_path(self.name()))?,
            )),
        }
    }

    /// Random access to `part` or the whole disk (see [`DiskImage::random_access`]).
    fn random_access(&self, part: Option<&Partition>) -> Result<Source> {
        match (self, part) {
            (Disk::Image(image), _) => image.random_access(part),
            (Disk::Package { .. }, Some(part)) => spill(self.partition_reader(part)?.as_mut()),
            (Disk::Package { .. }, None) => spill(self.reader()?.as_mut()),
        }
    }
}

/// The file system `arg` names, and the name its errors carry (`disk.img:2`).
fn open_fs(
    arg: &OsStr,
    member: Option<&str>,
    format: Option<DiskFormat>,
) -> Result<(Ext4, PathBuf)> {
    let (path, index) = split_image(arg);
    let opts = OpenOptions {
        format,
        allow_unsafe: false,
    };
    let disk = Disk::open(&path, member, &opts)?;
    let table = disk.table()?;
    let name = disk.name().to_path_buf();
    let part = match (index, &table) {
        (Some(n), Some(table)) => Some(table.get(n).map_err(|e| e.with_path(&name))?),
        (Some(_), None) => {
            return Err(Error::invalid_input(
                "the disk has no partition table; name it without `:N`",
            )
            .with_path(&name));
        }
        (None, Some(table)) => Some(table.linux_root().map_err(|e| e.with_path(&name))?),
        (None, None) => None,
    };
    let name = part.map_or(name, |p| disk.partition_name(p.index));
    let src = disk.random_access(part)?;
    let fs = Ext4::open(src).map_err(|e| e.with_path(&name))?;
    Ok((fs, name))
}

pub(super) fn ls(args: &LsArgs) -> Result<()> {
    let (fs, name) = open_fs(&args.image, args.member.as_deref(), args.format)?;
    let text = ls_text(&fs, args.path.as_bytes()).map_err(|e| e.with_path(&name))?;
    // A closed pipe (`kiln ls x | head`) ends quietly: `cli::is_broken_pipe`.
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())?;
    Ok(out.flush()?)
}

/// `ls -l` of `path`: a directory's entries sorted by name ("." and ".." left out), or
/// the one line of anything else. A trailing `/` follows a final symbolic link.
fn ls_text(fs: &Ext4, path: &[u8]) -> Result<String> {
    let inode = fs.lookup(path, path.ends_with(b"/"))?;
    if inode.file_type() != FileType::Directory {
        let name = path.rsplit(|&b| b == b'/').next().unwrap_or(path);
        return ls_line(fs, &inode, name);
    }
    let mut entries = fs.read_dir(&inode)?;
    entries.retain(|e| e.name != b"." && e.name != b"..");
    entries.sort_by(|a, b| a.name.cmp(&b.name));
    let mut text = String::new();
    for entry in &entries {
        let inode = fs.entry_inode(entry)?;
        text.push_str(&ls_line(fs, &inode, &entry.name)?);
    }
    Ok(text)
}

fn ls_line(fs: &Ext4, inode: &Inode, name: &[u8]) -> Result<String> {
    let kind = inode.file_type();
    let mut line = format!(
        "{}{} {:>3} {:>5} {:>5} {:>12} {} {}",
        kind.letter(),
        inode.permissions(),
        inode.links,
        inode.uid,
        inode.gid,
        inode.size,
        inode.mtime_utc(),
        String::from_utf8_lossy(name)
    );
    if kind == FileType::Symlink {
        let target = fs.read_link(inode)?;
        line.push_str(&format!(" -> {}", String::from_utf8_lossy(&target)));
    }
    line.push('\n');
    Ok(line)
}

pub(super) fn cat(args: &CatArgs) -> Result<()> {
    let (fs, name) = open_fs(&args.image, args.member.as_deref(), args.format)?;
    let mut reader = fs
        .open_path(args.path.as_bytes())
        .map_err(|e| e.with_path(&name))?;
    let Some(output) = &args.output else {
        // A closed pipe (`kiln cat x | head`) ends quietly: `cli::is_broken_pipe`.
        let mut out = std::io::stdout().lock();
        reader.copy_to(&mut out).map_err(|e| e.with_path(&name))?;
        return Ok(out.flush()?);
    };
    let mut set = OutputSet::new(output, args.force);
    let file = set.create_primary()?;
    let mut out = std::io::BufWriter::with_capacity(1 << 20, file);
    reader.copy_to(&mut out).map_err(|e| e.with_path(&name))?;
    out.flush().map_err(|e| Error::io(e).with_path(output))?;
    drop(out);
    set.commit()?;
    Ok(())
}

/// The partition table of the image at `path` (or its OVA member) for `kiln info`
/// (`None`: no table), or why it could not be read when the image's own reader failed on
/// the way: `info` still describes such an image, as qemu-img does. A damaged table, or
/// one in a raw image, is an error.
pub(super) fn partition_table(
    path: &Path,
    member: Option<&str>,
    opts: &OpenOptions,
) -> Result<std::result::Result<Option<PartitionTable>, Error>> {
    let disk = Disk::open(path, member, opts)?;
    if let Disk::Image(image) = &disk
        && image.is_raw()
    {
        return image.table().map(Ok);
    }
    let head = disk
        .reader()
        .and_then(|mut reader| head_of(reader.as_mut()));
    match head {
        Ok((head, size)) => (table_of_head(&head, size))
            .map(Ok)
            .map_err(|e| e.with_path(disk.name())),
        Err(e) => Ok(Err(e)),
    }
}

/// A reader of partition `index` of the image at `path` (or its OVA member), for
/// `kiln convert --partition`.
pub(super) fn partition_reader(
    path: &Path,
    member: Option<&str>,
    opts: &OpenOptions,
    index: u32,
) -> Result<Box<dyn DiskReader>> {
    let disk = Disk::open(path, member, opts)?;
    let Some(table) = disk.table()? else {
        return Err(Error::invalid_input("the disk has no partition table").with_path(disk.name()));
    };
    let part = table.get(index).map_err(|e| e.with_path(disk.name()))?;
    disk.partition_reader(part)
}

/// The `kiln info` lines for a partition table (empty without one).
pub(super) fn human_table(table: &std::result::Result<Option<PartitionTable>, Error>) -> String {
    let t = match table {
        Ok(Some(t)) => t,
        Ok(None) => return String::new(),
        Err(e) => return format!("partition table: not read ({e})\n"),
    };
    let mut s = format!("partition table: {}\n", t.scheme.name());
    s.push_str(&format!("sector size: {}\n", t.sector_size));
    if let Some(guid) = t.disk_guid {
        s.push_str(&format!("disk guid: {}\n", upper(guid)));
    }
    if let Some(backup) = &t.backup {
        s.push_str(&format!("backup gpt header: {backup}\n"));
    }
    s.push_str("partitions:\n");
    for p in &t.partitions {
        s.push_str(&human_partition(t, p));
    }
    s
}

fn human_partition(t: &PartitionTable, p: &Partition) -> String {
    let mut line = format!(
        "  {:>3}  start {:>12}  sectors {:>12}  {:>10}  {}",
        p.index,
        p.start / t.sector_size,
        p.size / t.sector_size,
        HumanSize(p.size).to_string(),
        p.kind
    );
    if p.kind.name().is_some() && t.scheme == Scheme::Gpt {
        line.push_str(&format!(" ({})", p.kind.id()));
    }
    if !p.label.is_empty() {
        line.push_str(&format!("  \"{}\"", p.label));
    }
    if p.bootable {
        line.push_str("  bootable");
    }
    line.push('\n');
    line
}

fn upper(guid: uuid::Uuid) -> String {
    guid.hyphenated().to_string().to_uppercase()
}

/// The `partition-table` member of `kiln info --output json` (null without a table).
pub(super) fn json_table(table: &std::result::Result<Option<PartitionTable>, Error>) -> Value {
    let t = match table {
        Ok(Some(t)) => t,
        Ok(None) => return Value::Null,
        Err(e) => return json!({ "error": e.to_string() }),
    };
    let partitions: Vec<Value> = (t.partitions.iter())
        .map(|p| {
            json!({
                "index": p.index,
                "start": p.start,
                "size": p.size,
                "start-sector": p.start / t.sector_size,
                "sectors": p.size / t.sector_size,
                "type": p.kind.id(),
                "type-name": p.kind.name(),
                "label": p.label,
                "guid": p.guid.map(upper),
                "bootable": p.bootable,
            })
        })
        .collect();
    json!({
        "scheme": t.scheme.name(),
        "sector-size": t.sector_size,
        "disk-guid": t.disk_guid.map(upper),
        "backup-header": t.backup.as_ref().map(backup_name),
        "partitions": partitions,
    })
}

fn backup_name(status: &BackupStatus) -> String {
    match status {
        BackupStatus::Ok => "ok".to_string(),
        BackupStatus::NotChecked => "not-checked".to_string(),
        BackupStatus::Damaged(why) => format!("damaged: {why}"),
    }
}
