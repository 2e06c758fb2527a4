//! `kiln info` and `kiln check`.

use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use kiln::disk::{ImageInfo, OpenOptions};
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
    let opts = OpenOptions {
        format: args.format,
        allow_unsafe: args.allow_unsafe,
    };
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
    let text = match args.output {
        OutputMode::Human => format!("No errors were found on the image ({}).\n", info.format),
        OutputMode::Json => format!(
            "{}\n",
            json!({"filename": name.display().to_string(), "format": info.format, "check-errors": 0})
        ),
    };
    print(&text)
}

fn print(text: &str) -> Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())?;
    out.flush()?;
    Ok(())
}
