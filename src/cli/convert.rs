//! `kiln create` and `kiln convert`: both are one `disk::convert` from a reader to a writer.

use kiln::disk::{self, Blank, CreateRequest, DiskReader, OpenOptions};
use kiln::io::output::OutputSet;
use kiln::{BuildContext, Result};

use super::progress::Progress;
use super::{ConvertArgs, CreateArgs, WriteArgs};

pub(super) fn create(args: &CreateArgs) -> Result<()> {
    let mut reader = Blank::new(args.size);
    write_image(
        &mut reader,
        args.format,
        &args.write,
        false,
        &args.file,
        None,
    )
}

pub(super) fn convert(args: &ConvertArgs) -> Result<()> {
    if args.output_format == disk::DiskFormat::Iso && args.input.is_dir() {
        let options = args.write.kv()?;
        return super::seed::iso_from_dir(&args.input, &args.output, &options, args.write.force);
    }
    let opts = OpenOptions {
        format: args.input_format,
        allow_unsafe: args.allow_unsafe,
    };
    match convert_from(args, &opts, false) {
        Err(e) if kiln::unpack::is_fixed_vhd(&e) => {
            if !args.quiet {
                eprintln!(
                    "kiln: {} ends in a VHD footer: a fixed VHD, which streams only as raw; decompressing it into the cache and converting again",
                    args.input.display()
                );
            }
            convert_from(args, &opts, true)
        }
        other => other,
    }
}

/// One conversion of `args`' input, a compressed one unpacked into the cache first when
/// `force_cache`.
fn convert_from(args: &ConvertArgs, opts: &OpenOptions, force_cache: bool) -> Result<()> {
    let member = args.member.as_deref();
    let mut input = super::input::open_with(&args.input, member, opts, force_cache)?;
    if let Some(index) = args.partition {
        input.reader = super::fs::partition_reader(&args.input, member, opts, index)?;
    }
    let progress =
        (args.progress && !args.quiet).then(|| Progress::new(input.reader.virtual_size()));
    write_image(
        input.reader.as_mut(),
        args.output_format,
        &args.write,
        args.compress,
        &args.output,
        progress,
    )
}

/// Streams `reader` into a new image at `path`; the file appears only when complete.
fn write_image(
    reader: &mut dyn DiskReader,
    format: disk::DiskFormat,
    write: &WriteArgs,
    compress: bool,
    path: &std::path::Path,
    progress: Option<Progress>,
) -> Result<()> {
    let options = write.kv()?;
    // The output name seeds derived ids, so the same command gives the same bytes.
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let ctx = BuildContext::from_env(&name);
    let req = CreateRequest {
        format,
        virtual_size: reader.virtual_size(),
        options: &options,
        compress,
        ctx: &ctx,
    };
    let mut out = OutputSet::new(path, write.force);
    out.set_sync(write.cache != "unsafe");
    let result = (|| {
        let mut writer = disk::create(&req, &mut out)?;
        let mut tick = |done: u64| {
            if let Some(p) = &progress {
                p.set(done);
            }
        };
        disk::convert(reader, &mut [writer.as_mut()], &mut tick)?;
        writer.finish()
    })();
    if let Some(p) = progress {
        p.finish();
    }
    result.map_err(|e| e.with_path(path))?;
    out.commit()?;
    Ok(())
}
