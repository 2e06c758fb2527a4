//! `kiln check --safety IMG`: the verdict an operator wants before converting an upload.
//!
//! It names the format kiln reads, every format the bytes also carry a signature of, and
//! each reason to refuse the image, collected rather than stopping at the first: a
//! polyglot, a banned format (QED, LUKS), what the format's own rules refuse (qcow2 backing
//! or data files, unknown incompatible features; descriptor-only VMDKs, VMDK footers
//! format_inspector rejects; MBRs format_inspector rejects), whatever opening the image
//! refuses (tables or blocks outside the file or overlapping, bad checksums, ...), qcow2
//! refcount or snapshot inconsistencies, and a virtual size above `--max-size`. The rules
//! are at least OpenStack's format_inspector's (the hostile-corpus tests compare the two
//! case by case). Only metadata is read; a file an image references is never opened.

use std::path::Path;

use kiln::disk::{self, DiskFormat, OpenOptions, Signature};
use kiln::io::{FileSource, ReadAt};
use kiln::size::HumanSize;
use kiln::{Error, ErrorKind, Result};
use serde::Serialize;

use super::{CheckArgs, OutputMode};

/// One reason to refuse the image.
#[derive(Debug, Serialize)]
struct Reason {
    /// Which rule (`polyglot`, `backing-file`, `structure`, ...).
    check: &'static str,
    /// One sentence.
    message: String,
}

/// The verdict.
#[derive(Debug, Serialize)]
struct Verdict {
    filename: String,
    /// The format kiln reads the bytes as, when it can tell.
    format: Option<DiskFormat>,
    /// Every format signature in the bytes (format_inspector's names).
    signatures: Vec<&'static str>,
    #[serde(rename = "virtual-size")]
    virtual_size: Option<u64>,
    safe: bool,
    refusals: Vec<Reason>,
}

pub(super) fn safety(args: &CheckArgs) -> Result<()> {
    if args.member.is_some() {
        return Err(Error::invalid_input(
            "--safety checks an image file; extract the package's disk first",
        ));
    }
    let path = &args.file;
    let verdict = verdict(path, args).map_err(|e| e.with_path(path))?;
    let text = match args.output {
        OutputMode::Human => human(&verdict),
        OutputMode::Json => {
            let json =
                serde_json::to_string_pretty(&verdict).map_err(|e| Error::new(ErrorKind::Io, e))?;
            format!("{json}\n")
        }
    };
    super::info::print(&text)?;
    if verdict.safe {
        return Ok(());
    }
    let more = match verdict.refusals.len() {
        1 => String::new(),
        n => format!(" (and {} more reasons above)", n - 1),
    };
    let message = format!("refused: {}{more}", verdict.refusals[0].message);
    Err(Error::new(ErrorKind::Refused, message).with_path(path))
}

fn verdict(path: &Path, args: &CheckArgs) -> Result<Verdict> {
    let file = std::fs::File::open(path)?;
    let src = FileSource::new(file)?;
    let found = disk::signatures(&src)?;
    let mut reasons = Vec::new();
    let mut push = |check, message: String| reasons.push(Reason { check, message });
    if disk::inspector_polyglot(&found) || disk::is_polyglot(&found) {
        push("polyglot", disk::polyglot_message(&found));
    }
    for banned in found
        .iter()
        .filter(|s| matches!(s, Signature::Qed | Signature::Luks))
    {
        let message = format!(
            "{} images are not allowed (format_inspector bans QED; kiln reads neither)",
            banned.name()
        );
        push("banned-format", message);
    }
    // format_inspector checks the MBR when it is the only signature it sees.
    if found
        .iter()
        .all(|s| matches!(s, Signature::Gpt | Signature::VhdFooter))
        && found.contains(&Signature::Gpt)
    {
        mbr_reasons(&src, &mut push)?;
    }
    let format = match args.format.map_or_else(|| disk::probe(&src), Ok) {
        Ok(format) => Some(format),
        Err(e) => {
            push("not-a-disk", e.to_string());
            None
        }
    };
    let mut virtual_size = None;
    if let Some(format) = format {
        format_reasons(&src, format, args, &mut push)?;
        virtual_size = open_reasons(path, format, &mut push);
    }
    if let Some(size) = virtual_size.filter(|&s| s > args.max_size) {
        let message = format!(
            "virtual size {} ({size} bytes) is above --max-size {}",
            HumanSize(size),
            HumanSize(args.max_size)
        );
        push("max-size", message);
    }
    Ok(Verdict {
        filename: path.display().to_string(),
        format,
        signatures: found.iter().map(|s| s.name()).collect(),
        virtual_size,
        safe: reasons.is_empty(),
        refusals: reasons,
    })
}

/// format_inspector's MBR rules, for a disk whose only signature is an MBR.
fn mbr_reasons(src: &dyn ReadAt, push: &mut impl FnMut(&'static str, String)) -> Result<()> {
    let mut head = vec![0u8; 512];
    kiln::io::read_exact_at(src, &mut head, 0, "MBR")?;
    if let Some(problem) = disk::mbr_problem(&head) {
        push("mbr", problem.to_string());
    }
    Ok(())
}

/// The format's own refusals, all of them, read from its header.
fn format_reasons(
    src: &dyn ReadAt,
    format: DiskFormat,
    args: &CheckArgs,
    push: &mut impl FnMut(&'static str, String),
) -> Result<()> {
    match format {
        DiskFormat::Qcow2 => {
            for reason in disk::qcow2::safety_reasons(src).unwrap_or_default() {
                push("qcow2-header", reason);
            }
            // The open below reports a header that does not parse.
            if let Ok(report) = disk::qcow2::check(src)
                && report.errors() > 0
            {
                let first = report.messages.first().cloned().unwrap_or_default();
                let message = format!(
                    "{} metadata errors (refcounts, tables overlapping or outside the file; `kiln check` lists them), the first: {first}",
                    report.errors()
                );
                push("qcow2-metadata", message);
            }
        }
        DiskFormat::Vmdk => match disk::vmdk::safety_reasons(src, args.allow_descriptor) {
            Ok(reasons) => reasons.into_iter().for_each(|r| push("vmdk", r)),
            Err(e) => push("vmdk", e.to_string()),
        },
        _ => {}
    }
    Ok(())
}

/// Opens the image as a conversion would, with the refusals above already counted
/// (`allow_unsafe`: a backing file is one reason, not a reason to stop looking), and
/// returns its virtual size; a failure is one more reason.
fn open_reasons(
    path: &Path,
    format: DiskFormat,
    push: &mut impl FnMut(&'static str, String),
) -> Option<u64> {
    let opts = OpenOptions {
        format: Some(format),
        allow_unsafe: true,
    };
    match disk::open(path, &opts) {
        Ok(reader) => Some(reader.virtual_size()),
        Err(e) => {
            let text = e.to_string();
            let prefix = format!("{}: ", path.display());
            push(
                "structure",
                text.strip_prefix(&prefix).unwrap_or(&text).into(),
            );
            None
        }
    }
}

fn human(v: &Verdict) -> String {
    let format = v.format.map_or("unknown", DiskFormat::name);
    let mut s = format!("image: {}\nformat: {format}\n", v.filename);
    if !v.signatures.is_empty() {
        s.push_str(&format!("signatures: {}\n", v.signatures.join(", ")));
    }
    if let Some(size) = v.virtual_size {
        s.push_str(&format!(
            "virtual size: {} ({size} bytes)\n",
            HumanSize(size)
        ));
    }
    if v.safe {
        s.push_str("verdict: safe\n");
        return s;
    }
    s.push_str("verdict: refused\n");
    for r in &v.refusals {
        s.push_str(&format!("refused ({}): {}\n", r.check, r.message));
    }
    s
}
