//! Unpacking into the cache: images that need random access are decompressed once into
//! `<cache>/kiln/unpacked/<key>`, where the key is the SHA-256 of the compressed file (and,
//! for a named archive member, a digest of its name), so every build of the same content
//! reuses one entry.
//!
//! The entry is written as `<key>.<pid>.partial` (zero blocks left as holes) and renamed
//! only once the stream has ended where it should and passed every check; on any error the
//! partial file is removed. Decompression stops at the source's bound.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::codec::{self, Codec};
use super::stream::{self, Started};
use super::{UnpackError, UnpackOptions, read_full};
use crate::container::manifest::{hash_file, hex};
use crate::error::{Error, Result};
use crate::io::is_zero;

/// Bytes decompressed per read.
const CHUNK_BYTES: usize = 1 << 20;
/// Zero blocks of this size are left as holes.
const HOLE_BYTES: usize = 64 << 10;

/// The directory of unpacked images, next to the downloads.
pub fn unpacked_dir() -> PathBuf {
    crate::context::cache_root().join("unpacked")
}

/// The cache entry name for `path` read with `opts`.
fn key(path: &Path, opts: &UnpackOptions) -> Result<String> {
    let digest = match &opts.sha256 {
        Some(digest) => digest.clone(),
        None => hash_file(path)?.0,
    };
    Ok(match &opts.member {
        Some(member) => {
            let name = hex(&Sha256::digest(member.as_bytes()));
            format!("{digest}-{}", &name[..16])
        }
        None => digest,
    })
}

/// Where the mark of `path` as a fixed VHD lives: a name derived from the file as it is
/// now (its absolute path, length and modification time, and the member read), so a
/// changed file is not taken for the one marked.
fn fixed_vhd_mark(path: &Path, opts: &UnpackOptions) -> Option<PathBuf> {
    let real = std::fs::canonicalize(path).ok()?;
    let meta = std::fs::metadata(&real).ok()?;
    let modified = meta
        .modified()
        .ok()?
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?;
    let id = format!(
        "{}\0{}\0{}\0{}",
        real.display(),
        meta.len(),
        modified.as_nanos(),
        opts.member.as_deref().unwrap_or_default()
    );
    Some(
        unpacked_dir()
            .join("fixed-vhd")
            .join(hex(&Sha256::digest(id.as_bytes()))),
    )
}

/// Records that `path`'s stream ends in a VHD footer: later builds send it through the
/// cache without streaming it first. A mark that cannot be written only costs that.
pub fn mark_fixed_vhd(path: &Path, opts: &UnpackOptions) {
    if let Some(mark) = fixed_vhd_mark(path, opts)
        && let Some(dir) = mark.parent()
    {
        let _ = std::fs::create_dir_all(dir).and_then(|()| std::fs::write(&mark, b""));
    }
}

/// Whether `path`, as it is now, was marked by [`mark_fixed_vhd`].
pub fn is_marked_fixed_vhd(path: &Path, opts: &UnpackOptions) -> bool {
    fixed_vhd_mark(path, opts).is_some_and(|m| m.is_file())
}

/// Returns the cached image `path` (compressed with `codec`) unpacks to, unpacking it
/// first when it is not cached yet.
///
/// # Errors
/// As [`stream::start`]; corrupt or truncated data; the bound exceeded; I/O failures in
/// the cache.
pub fn unpack(
    path: &Path,
    codec: Codec,
    opts: &UnpackOptions,
    log: &mut dyn FnMut(&str),
) -> Result<PathBuf> {
    let dir = unpacked_dir();
    let key = key(path, opts)?;
    let done = dir.join(&key);
    if done.is_file() {
        log(&format!(
            "using unpacked {} ({})",
            path.display(),
            done.display()
        ));
        return Ok(done);
    }
    std::fs::create_dir_all(&dir).map_err(|e| Error::io(e).with_path(&dir))?;
    log(&format!(
        "unpacking {} ({codec}) into {}",
        path.display(),
        done.display()
    ));
    let started = stream::start(path, codec, opts)?;
    let partial = dir.join(format!("{key}.{}.partial", std::process::id()));
    let written = write_partial(started, &partial, opts.limit()).and_then(|size| {
        std::fs::rename(&partial, &done)
            .map_err(Error::io)
            .map(|()| size)
    });
    let size = match written {
        Ok(size) => size,
        Err(e) => {
            let _ = std::fs::remove_file(&partial);
            return Err(e);
        }
    };
    // What `kiln cache ls` shows: the image's size and the source it came from. The
    // entry is complete without it (a lost sidecar only loses that line's origin).
    let source = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let from = match &opts.member {
        Some(member) => format!("{} (member {member})", source.display()),
        None => source.display().to_string(),
    };
    write_sidecar(&done, size, &from)?;
    Ok(done)
}

/// Removes an unpacked image and its sidecar (an image its format refuses).
pub fn discard(image: &Path) {
    let mut side = image.as_os_str().to_owned();
    side.push(".json");
    let _ = std::fs::remove_file(image);
    let _ = std::fs::remove_file(PathBuf::from(side));
}

/// Writes `<image>.json` beside an unpacked image: its size and where it came from, in the
/// form `kiln cache ls` reads (`fetch::cache::Sidecar`: `size`, `urls`). Written here rather
/// than through `fetch`, which sits above `unpack` (tests/layering.rs).
fn write_sidecar(image: &Path, size: u64, from: &str) -> Result<()> {
    let mut side = image.as_os_str().to_owned();
    side.push(".json");
    let side = PathBuf::from(side);
    let tmp = side.with_extension("partial");
    let text = serde_json::to_vec_pretty(&serde_json::json!({ "size": size, "urls": [from] }))
        .map_err(|e| Error::new(crate::ErrorKind::Io, e))?;
    std::fs::write(&tmp, text).map_err(|e| Error::io(e).with_path(&tmp))?;
    std::fs::rename(&tmp, &side).map_err(|e| Error::io(e).with_path(&side))
}

/// Decompresses the started image into `partial`, with holes for zero blocks; returns its
/// size.
fn write_partial(mut started: Started, partial: &Path, limit: u64) -> Result<u64> {
    let file = File::create(partial).map_err(|e| Error::io(e).with_path(partial))?;
    let mut buf = vec![0u8; CHUNK_BYTES];
    let mut total = 0u64;
    loop {
        let n = read_full(&mut started.input, &mut buf)
            .map_err(|e| codec::corrupt(started.codec, &started.consumed, total, e))?;
        if n == 0 {
            break;
        }
        if total + n as u64 > limit {
            let what = format!("{} bytes so far", total + n as u64);
            return Err(UnpackError::TooLarge { limit, what }.into());
        }
        write_sparse(&file, &buf[..n], total).map_err(|e| Error::io(e).with_path(partial))?;
        total += n as u64;
    }
    if let Some(declared) = started.size.filter(|&s| s != total) {
        return Err(UnpackError::Truncated {
            codec: started.codec,
            uncompressed: total,
            compressed: started.consumed.get(),
            declared,
            from: started.from,
        }
        .into());
    }
    started.input.finish(total)?;
    file.set_len(total)
        .and_then(|()| file.sync_all())
        .map_err(|e| Error::io(e).with_path(partial))?;
    Ok(total)
}

/// Writes the non-zero blocks of `data` at `offset`.
fn write_sparse(file: &File, data: &[u8], offset: u64) -> std::io::Result<()> {
    let mut at = offset;
    for block in data.chunks(HOLE_BYTES) {
        if !is_zero(block) {
            file.write_all_at(block, at)?;
        }
        at += block.len() as u64;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_blocks_are_left_as_holes() {
        let tmp = tempfile::tempfile().unwrap();
        let mut data = vec![0u8; 3 * HOLE_BYTES];
        data[2 * HOLE_BYTES] = 7;
        write_sparse(&tmp, &data, 0).unwrap();
        // Only the last block was written, so the file ends where it ends.
        assert_eq!(tmp.metadata().unwrap().len(), 3 * HOLE_BYTES as u64);
        let mut byte = [0u8; 1];
        tmp.read_exact_at(&mut byte, 2 * HOLE_BYTES as u64).unwrap();
        assert_eq!(byte, [7]);
    }

    #[test]
    fn a_member_gets_a_key_of_its_own() {
        let opts = UnpackOptions {
            member: Some("disk.raw".into()),
            sha256: Some("ab".into()),
            ..UnpackOptions::default()
        };
        assert!(key(Path::new("x"), &opts).unwrap().starts_with("ab-"));
    }
}
