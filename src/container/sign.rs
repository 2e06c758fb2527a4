//! Signing a package (`kiln sign`): the manifest is signed with the user's RSA key
//! ([`PackageSigner`]) and the `.cert` is placed where DSP0243 puts it.
//!
//! An OVA is rewritten as descriptor, manifest, the new certificate, then every other member
//! in its original order (an old certificate is dropped). Members are copied byte for byte,
//! headers included, so signing changes nothing but the certificate; its header takes the
//! manifest's mtime, so signing the same package with the same key gives the same bytes.
//! For an OVF the certificate is written beside the descriptor. Either way the output is
//! written as `NAME.partial` and renamed into place when complete.
//!
//! The package must read cleanly with the bounded tar reader and have a manifest named like
//! its descriptor: signing a package that `kiln verify` would fail only signs the defect.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;

use super::signature::PackageSigner;
use super::tar::reader::{self, Member};
use super::tar::{self, TAR_BLOCK, TAR_END, padded};
use crate::error::{Error, ErrorKind, Result};
use crate::io::output::OutputSet;
use crate::io::{FileSource, read_exact_at};

/// What was signed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signed {
    /// The manifest signed.
    pub manifest: String,
    /// The certificate written.
    pub cert: String,
}

/// Signs the OVA or OVF at `input` with `signer`, writing through `out` (whose primary
/// target is the signed OVA, or the `.cert` for an OVF).
///
/// # Errors
/// The package is not an OVA/OVF, its members cannot be listed, the descriptor is not
/// first, there is no manifest; I/O.
pub fn sign_package(input: &Path, signer: &PackageSigner, out: &mut OutputSet) -> Result<Signed> {
    let file = File::open(input).map_err(|e| Error::io(e).with_path(input))?;
    let src = FileSource::shared(file.try_clone()?).map_err(|e| Error::io(e).with_path(input))?;
    if !reader::is_tar(&*src).map_err(|e| e.with_path(input))? {
        return sign_ovf(input, signer, out);
    }
    let members = reader::list(&*src).map_err(|e| e.with_path(input))?;
    let refuse = |m: String| Error::new(ErrorKind::InvalidImage, m).with_path(input);
    let descriptor = members
        .first()
        .filter(|m| m.name.to_ascii_lowercase().ends_with(".ovf"))
        .ok_or_else(|| refuse("the first member is not the .ovf descriptor; fix the package first (kiln verify says how)".into()))?;
    let stem = descriptor.name[..descriptor.name.len() - 4].to_string();
    let (mf_name, cert_name) = (format!("{stem}.mf"), format!("{stem}.cert"));
    let mf = members
        .iter()
        .find(|m| m.name == mf_name)
        .ok_or_else(|| refuse(format!("the package has no manifest `{mf_name}` to sign")))?;
    let mut mf_bytes = vec![0u8; usize::try_from(mf.len).unwrap_or(0)];
    read_exact_at(&*src, &mut mf_bytes, mf.offset, "manifest")?;
    let cert_text = signer.cert_text(&mf_bytes, &mf_name)?;
    let mut header = [0u8; 512];
    read_exact_at(&*src, &mut header, mf.header_offset, "manifest header")?;
    let mtime = ::tar::Header::from_byte_slice(&header).mtime().unwrap_or(0);
    let cert_member = tar::member(&cert_name, cert_text.as_bytes(), mtime)?;
    let mut dst = out.create_primary()?;
    copy_member(&file, descriptor, &mut dst)?;
    copy_member(&file, mf, &mut dst)?;
    dst.write_all(&cert_member)?;
    for m in members
        .iter()
        .skip(1)
        .filter(|m| m.name != mf_name && !m.name.to_ascii_lowercase().ends_with(".cert"))
    {
        copy_member(&file, m, &mut dst)?;
    }
    dst.write_all(&TAR_END)?;
    dst.flush()?;
    Ok(Signed {
        manifest: mf_name,
        cert: cert_name,
    })
}

/// Copies `m`'s header block, data and padding from `archive` to `dst` (in-kernel where
/// the OS can).
fn copy_member(archive: &File, m: &Member, dst: &mut File) -> Result<()> {
    let mut from = archive;
    from.seek(SeekFrom::Start(m.header_offset))?;
    let len = TAR_BLOCK + padded(m.len);
    let copied = std::io::copy(&mut Read::take(from, len), dst)?;
    if copied != len {
        return Err(Error::new(
            ErrorKind::InvalidImage,
            format!("member `{}` ends early", m.name),
        ));
    }
    Ok(())
}

/// Writes `NAME.cert` beside the descriptor `input` (`out`'s primary target).
fn sign_ovf(input: &Path, signer: &PackageSigner, out: &mut OutputSet) -> Result<Signed> {
    let name = input
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let Some(stem) = name.strip_suffix(".ovf") else {
        return Err(Error::invalid_input(
            "not an OVA/OVF package (an .ova tar archive or an .ovf descriptor)",
        )
        .with_path(input));
    };
    let mf_name = format!("{stem}.mf");
    let mf_path = input.with_file_name(&mf_name);
    let mf = std::fs::read(&mf_path).map_err(|e| Error::io(e).with_path(&mf_path))?;
    let cert = signer.cert_text(&mf, &mf_name)?;
    let mut dst = out.create_primary()?;
    dst.write_all(cert.as_bytes())?;
    Ok(Signed {
        manifest: mf_name,
        cert: format!("{stem}.cert"),
    })
}
