//! `kiln info` and `kiln check`.

use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use kiln::disk::{DiskFormat, ImageInfo, OpenOptions};
use kiln::size::HumanSize;
use kiln::{Error, Result};
use serde_json::{Map, Value, json};

use super::{CheckArgs, InfoArgs, OutputMode};

pub(super) fn info(args: &InfoArgs) -> Result<()> {
    // info describes unsafe images too (that is how users find the backing file); it never
    // opens the files they reference.
    let opts = OpenOptions {
        format: args.format,
        allow_unsafe: true,
    };
    let input = super::input::open(&args.file, args.member.as_deref(), &opts)?;
    let info = input.reader.info();
    let allocated = match input.member_len {
        Some(len) => len,
        None => allocated_bytes(&args.file)?,
    };
    let table = super::fs::partition_table(&args.file, args.member.as_deref(), &opts)?;
    let text = match args.output {
        OutputMode::Human => human(&input.name, &info, allocated) + &super::fs::human_table(&table),
        OutputMode::Json => {
            json_text(&input.name, &info, allocated, super::fs::json_table(&table))?
        }
    };
    print(&text)
}

fn allocated_bytes(path: &Path) -> Result<u64> {
    let meta = std::fs::metadata(path).map_err(|e| Error::io(e).with_path(path))?;
    Ok(meta.blocks() * 512)
}

fn human(path: &Path, info: &ImageInfo, allocated: u64) -> String {
    let mut s = format!(
        "image: {}\nfile format: {}\nvirtual size: {} ({} bytes)\ndisk size: {}\n",
        path.display(),
        info.format,
        HumanSize(info.virtual_size),
        info.virtual_size,
        HumanSize(allocated)
    );
    if let Some(sub) = &info.subformat {
        s.push_str(&format!("subformat: {sub}\n"));
    }
    for (key, value) in &info.details {
        s.push_str(&format!("{key}: {value}\n"));
    }
    s
}

fn json_text(path: &Path, info: &ImageInfo, allocated: u64, table: Value) -> Result<String> {
    let details: Map<String, Value> = info
        .details
        .iter()
        .map(|(k, v)| (k.clone(), Value::String(v.clone())))
        .collect();
    let mut value = json!({
        "filename": path.display().to_string(),
        "format": info.format,
        "subformat": info.subformat,
        "virtual-size": info.virtual_size,
        "actual-size": allocated,
        "details": details,
    });
    if !table.is_null() {
        value["partition-table"] = table;
    }
    let mut text =
        serde_json::to_string_pretty(&value).map_err(|e| Error::new(kiln::ErrorKind::Io, e))?;
    text.push('\n');
    Ok(text)
}

pub(super) fn check(args: &CheckArgs) -> Result<()> {
    if args.safety {
        return super::safety::safety(args);
    }
    // qcow2 metadata is checked as qemu-img checks it before the image is walked: a walk
    // reads only what the active tables map, and misses refcounts and snapshots.
    let findings = qcow2_findings(args)?;
    let opts = OpenOptions {
        format: args.format,
        allow_unsafe: args.allow_unsafe,
    };
    if let Some(report) = &findings
        && report.errors() > 0
    {
        print(&findings_text(&args.file, report, args.output)?)?;
        // The reader's own refusal, when it has one, names the offset more precisely.
        let unsafe_opts = OpenOptions {
            allow_unsafe: true,
            ..opts
        };
        super::input::open(&args.file, None, &unsafe_opts)?;
        let message = format!("{} errors were found on the image", report.errors());
        return Err(Error::new(kiln::ErrorKind::InvalidImage, message).with_path(&args.file));
    }
    let super::input::Input {
        mut reader, name, ..
    } = super::input::open(&args.file, args.member.as_deref(), &opts)?;
    // Walking every extent reads every table and decompresses every cluster, so any
    // inconsistency a reader can see surfaces here with its offset (the reader names it).
    let mut walked: u64 = 0;
    while let Some(extent) = reader.next_extent()? {
        walked += extent.len();
    }
    if walked != reader.virtual_size() {
        return Err(Error::new(
            kiln::ErrorKind::InvalidImage,
            format!(
                "image ends at {walked:#x}, before its virtual size {:#x}",
                reader.virtual_size()
            ),
        )
        .with_path(&name));
    }
    let info = reader.info();
    let leaks = findings.as_ref().map_or(0, |r| r.leaks);
    let text = match args.output {
        OutputMode::Human => {
            let mut text = findings
                .as_ref()
                .filter(|r| r.leaks > 0)
                .map(|r| findings_text(&name, r, OutputMode::Human))
                .transpose()?
                .unwrap_or_default();
            text.push_str(&format!(
                "No errors were found on the image ({}).\n",
                info.format
            ));
            text
        }
        OutputMode::Json => format!(
            "{}\n",
            json!({"filename": name.display().to_string(), "format": info.format, "check-errors": 0, "corruptions": 0, "leaks": leaks})
        ),
    };
    print(&text)
}

/// The qcow2 metadata check of a qcow2 file (not a package member); `None` for other
/// formats and for files the probe refuses (the open that follows reports why).
fn qcow2_findings(args: &CheckArgs) -> Result<Option<kiln::disk::qcow2::CheckReport>> {
    if args.member.is_some() {
        return Ok(None);
    }
    let path = &args.file;
    let file = std::fs::File::open(path).map_err(|e| Error::io(e).with_path(path))?;
    let src = kiln::io::FileSource::new(file).map_err(|e| Error::io(e).with_path(path))?;
    let format = match args.format {
        Some(format) => format,
        None => match kiln::disk::probe(&src) {
            Ok(format) => format,
            Err(_) => return Ok(None),
        },
    };
    if format != DiskFormat::Qcow2 || kiln::disk::is_polyglot(&kiln::disk::signatures(&src)?) {
        return Ok(None);
    }
    let report = kiln::disk::qcow2::check(&src).map_err(|e| e.with_path(path))?;
    Ok(Some(report))
}

/// The findings as qemu-img prints them: each one, then the counts.
fn findings_text(
    path: &Path,
    report: &kiln::disk::qcow2::CheckReport,
    mode: OutputMode,
) -> Result<String> {
    if let OutputMode::Json = mode {
        let value = json!({
            "filename": path.display().to_string(),
            "format": "qcow2",
            "check-errors": report.errors(),
            "corruptions": report.corruptions,
            "leaks": report.leaks,
            "messages": report.messages,
        });
        return Ok(format!("{value}\n"));
    }
    let mut text = String::new();
    for m in &report.messages {
        text.push_str(m);
        text.push('\n');
    }
    let total = report.corruptions + report.leaks + report.check_errors;
    let shown = report.messages.len() as u64;
    if total > shown {
        text.push_str(&format!(
            "... and {} more (the first {shown} are shown)\n",
            total - shown
        ));
    }
    if report.corruptions > 0 {
        text.push_str(&format!("\n{} errors were found on the image.\nData may be corrupted, or further writes to the image may corrupt it.\n", report.corruptions));
    }
    if report.leaks > 0 {
        text.push_str(&format!("\n{} leaked clusters were found on the image.\nThis means waste of disk space, but no harm to data.\n", report.leaks));
    }
    if report.check_errors > 0 {
        text.push_str(&format!(
            "\n{} internal errors occurred during the check.\n",
            report.check_errors
        ));
    }
    Ok(text)
}

pub(super) fn print(text: &str) -> Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())?;
    out.flush()?;
    Ok(())
}
