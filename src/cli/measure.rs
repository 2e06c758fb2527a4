//! `kiln measure`: the size a qcow2 image needs, as `qemu-img measure -O qcow2` prints it.

use std::path::PathBuf;

use clap::Args;
use kiln::disk::{self, DiskFormat, KvOptions, OpenOptions};
use kiln::{Error, Result};

use super::{OutputMode, parse_format, parse_size_arg};

#[derive(Debug, Args)]
pub(super) struct MeasureArgs {
    /// Input format (probed when omitted).
    #[arg(short = 'f', value_name = "FMT", value_parser = parse_format)]
    input_format: Option<DiskFormat>,
    /// Output format to measure for (qcow2).
    #[arg(short = 'O', value_name = "FMT", value_parser = parse_format)]
    output_format: DiskFormat,
    /// Output format options, as for convert (`compat`, `cluster_size`, `preallocation`).
    #[arg(short = 'o', value_name = "OPTIONS")]
    options: Vec<String>,
    /// Measure a new blank image of this virtual size instead of an input image.
    #[arg(long, value_parser = parse_size_arg, conflicts_with = "input")]
    size: Option<u64>,
    /// Output style.
    #[arg(long, value_enum, default_value_t)]
    output: OutputMode,
    /// Input image whose allocated clusters are counted.
    #[arg(required_unless_present = "size")]
    input: Option<PathBuf>,
}

pub(super) fn measure(args: &MeasureArgs) -> Result<()> {
    if args.output_format != DiskFormat::Qcow2 {
        return Err(Error::invalid_input(format!(
            "kiln measure supports -O qcow2 only, not {}",
            args.output_format
        )));
    }
    let mut options = KvOptions::default();
    for text in &args.options {
        options.merge_str(text)?;
    }
    let (result, bitmaps) = match &args.input {
        Some(path) => {
            let opts = OpenOptions {
                format: args.input_format,
                allow_unsafe: false,
            };
            let mut reader = disk::open(path, &opts)?;
            // qemu reports a bitmaps size when both sides can hold persistent bitmaps.
            let bitmaps = reader.info().format == DiskFormat::Qcow2
                && options
                    .get("compat")
                    .is_none_or(|c| c != "0.10" && c != "v2");
            let m = disk::qcow2::measure(&options, 0, Some(reader.as_mut()))
                .map_err(|e| e.with_path(path))?;
            (m, bitmaps)
        }
        None => (
            disk::qcow2::measure(&options, args.size.unwrap_or(0), None)?,
            false,
        ),
    };
    let text = match args.output {
        OutputMode::Human => {
            let mut s = format!(
                "required size: {}\nfully allocated size: {}\n",
                result.required, result.fully_allocated
            );
            if bitmaps {
                s.push_str("bitmaps size: 0\n");
            }
            s
        }
        OutputMode::Json => json(result, bitmaps),
    };
    print!("{text}");
    Ok(())
}

/// qemu-img's layout: four-space indent, `bitmaps` first when present.
fn json(m: disk::qcow2::Measure, bitmaps: bool) -> String {
    let mut fields = Vec::new();
    if bitmaps {
        fields.push("    \"bitmaps\": 0".to_string());
    }
    fields.push(format!("    \"required\": {}", m.required));
    fields.push(format!("    \"fully-allocated\": {}", m.fully_allocated));
    format!("{{\n{}\n}}\n", fields.join(",\n"))
}
