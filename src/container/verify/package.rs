//! Opening a package for checking: an OVA (one tar archive, listed by the diagnostic
//! [`super::tar_walk`]) or an OVF descriptor with its files beside it. Either way the
//! package becomes a list of named files, each a [`Source`] (a tar member is a view of the
//! archive, read in place), plus the descriptor, manifest and certificate read into memory
//! (they are small and bounded).
//!
//! Files of an OVF package are only looked for next to the descriptor: an `ovf:href` that is
//! absolute, contains `..` or is a URL is reported and never opened.

use std::fs::File;
use std::path::{Path, PathBuf};

use super::mf::{self, MF_MAX_BYTES, Manifest};
use super::tar_walk;
use crate::container::finding::Finding;
use crate::container::ovf_read::xml::XML_MAX_BYTES;
use crate::container::ovf_read::{self, Descriptor, Envelope};
use crate::container::signature::CERT_MAX_BYTES;
use crate::error::{Error, ErrorKind, Result};
use crate::io::{FileSource, ReadAt, Source, read_exact_at};

/// How the package is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// One tar archive.
    Ova,
    /// A descriptor with its files beside it.
    Ovf,
}

/// One file of the package.
#[derive(Debug, Clone)]
pub struct PackageFile {
    /// Member or file name.
    pub name: String,
    /// Its bytes.
    pub src: Source,
    /// Header offset in an OVA.
    pub header_offset: Option<u64>,
}

impl PackageFile {
    /// Length in bytes.
    pub fn len(&self) -> u64 {
        self.src.len()
    }

    /// True when the file is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Where findings about it point: the member and its header offset, or the file.
    pub fn place(&self) -> String {
        match self.header_offset {
            Some(h) => format!("member `{}`, header at {h:#x}", self.name),
            None => self.name.clone(),
        }
    }
}

/// An opened package: its files, the parsed descriptor, manifest and certificate text.
pub struct Package {
    /// The path the user gave.
    pub path: PathBuf,
    /// OVA or OVF.
    pub kind: Kind,
    /// Files in archive order (OVA) or descriptor, manifest, certificate and the files the
    /// References name that exist (OVF).
    pub files: Vec<PackageFile>,
    /// The descriptor's name.
    pub descriptor_name: Option<String>,
    /// The descriptor's bytes.
    pub descriptor_bytes: Vec<u8>,
    /// The descriptor read into the model, when it could be.
    pub descriptor: Option<Descriptor>,
    /// The manifest's name and bytes, and what it says.
    pub manifest: Option<(String, Vec<u8>, Manifest)>,
    /// The certificate's name and bytes.
    pub cert: Option<(String, Vec<u8>)>,
    /// Findings from opening and reading.
    pub findings: Vec<Finding>,
}

impl Package {
    /// The file named `name`.
    pub fn file(&self, name: &str) -> Option<&PackageFile> {
        self.files.iter().find(|f| f.name == name)
    }

    /// The descriptor's model.
    pub fn envelope(&self) -> Option<&Envelope> {
        self.descriptor.as_ref().map(|d| &d.envelope)
    }
}

/// Opens the OVA or OVF at `path` and reads its descriptor, manifest and certificate.
///
/// # Errors
/// The path cannot be read, is neither an OVA nor an OVF (`not an OVA/OVF package`), or the
/// OVA has no descriptor; I/O errors. Everything else about the package is a finding.
pub fn open(path: &Path) -> Result<Package> {
    let file = File::open(path).map_err(|e| Error::io(e).with_path(path))?;
    let src = FileSource::shared(file).map_err(|e| Error::io(e).with_path(path))?;
    let mut pkg = Package {
        path: path.to_path_buf(),
        kind: Kind::Ova,
        files: Vec::new(),
        descriptor_name: None,
        descriptor_bytes: Vec::new(),
        descriptor: None,
        manifest: None,
        cert: None,
        findings: Vec::new(),
    };
    if crate::container::tar::reader::is_tar(&*src).map_err(|e| e.with_path(path))? {
        list_ova(&mut pkg, &src)?;
    } else if looks_like_xml(&*src)? {
        pkg.kind = Kind::Ovf;
        list_ovf(&mut pkg, src)?;
    } else {
        let what = compressed(&*src)?.map_or("not an OVA/OVF package (neither a tar archive nor an XML descriptor)".to_string(), |c| {
            format!("not an OVA/OVF package: it is {c}-compressed; an OVA is a plain tar archive (decompress it first)")
        });
        return Err(Error::invalid_input(what).with_path(path));
    }
    read_parts(&mut pkg).map_err(|e| e.with_path(path))?;
    Ok(pkg)
}

fn list_ova(pkg: &mut Package, src: &Source) -> Result<()> {
    let walk = tar_walk::walk(&**src).map_err(|e| e.with_path(&pkg.path))?;
    pkg.findings.extend(walk.findings);
    pkg.files = walk
        .members
        .iter()
        .map(|m| PackageFile {
            name: m.name.clone(),
            src: m.view(src),
            header_offset: Some(m.header_offset),
        })
        .collect();
    let descriptor = pkg
        .files
        .iter()
        .find(|f| f.name.to_ascii_lowercase().ends_with(".ovf"));
    let Some(descriptor) = descriptor else {
        let message = "the OVA holds no .ovf descriptor (ovftool: \"Did not find an .ovf file at the beginning of the OVA package.\")";
        return Err(Error::new(ErrorKind::InvalidImage, message).with_path(&pkg.path));
    };
    pkg.descriptor_name = Some(descriptor.name.clone());
    Ok(())
}

fn list_ovf(pkg: &mut Package, src: Source) -> Result<()> {
    let name = pkg
        .path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let stem = name
        .rsplit_once('.')
        .map_or(name.as_str(), |(s, _)| s)
        .to_string();
    pkg.files.push(PackageFile {
        name: name.clone(),
        src,
        header_offset: None,
    });
    pkg.descriptor_name = Some(name);
    for sibling in [format!("{stem}.mf"), format!("{stem}.cert")] {
        if let Some(f) = sibling_file(pkg, &sibling)? {
            pkg.files.push(f);
        }
    }
    Ok(())
}

/// The file `name` next to the descriptor, when it exists. A file that resolves (through
/// symbolic links) outside the descriptor's directory is reported and not opened.
fn sibling_file(pkg: &mut Package, name: &str) -> Result<Option<PackageFile>> {
    let dir = pkg.path.parent().unwrap_or(Path::new(""));
    let path = dir.join(name);
    let (Ok(real), Ok(real_dir)) = (path.canonicalize(), dir.join(".").canonicalize()) else {
        return Ok(None);
    };
    if !real.starts_with(&real_dir) {
        let f = Finding::error(
            "ref.outside",
            format!(
                "`{name}` resolves to {}, outside the descriptor's directory; kiln does not open it",
                real.display()
            ),
        );
        pkg.findings.push(f.at(name));
        return Ok(None);
    }
    let file = match File::open(&real) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io(e).with_path(&path)),
    };
    let meta = file.metadata().map_err(|e| Error::io(e).with_path(&path))?;
    if !meta.is_file() {
        return Ok(None);
    }
    let src = FileSource::shared(file).map_err(|e| Error::io(e).with_path(&path))?;
    Ok(Some(PackageFile {
        name: name.to_string(),
        src,
        header_offset: None,
    }))
}

/// Reads the descriptor, manifest and certificate, and (OVF) finds the referenced files.
fn read_parts(pkg: &mut Package) -> Result<()> {
    let Some(name) = pkg.descriptor_name.clone() else {
        return Ok(());
    };
    let descriptor = pkg.file(&name).cloned();
    if let Some(file) = descriptor {
        match read_small(&file, XML_MAX_BYTES as u64)? {
            Ok(bytes) => pkg.descriptor_bytes = bytes,
            Err(f) => pkg.findings.push(f),
        }
        match ovf_read::read_descriptor(&pkg.descriptor_bytes, &name) {
            Ok(d) => pkg.descriptor = Some(d),
            Err(e) => pkg.findings.push(descriptor_finding(&e).at(&name)),
        }
    }
    let stem = name
        .rsplit_once('.')
        .map_or(name.as_str(), |(s, _)| s)
        .to_string();
    if let Some(file) = find_suffix(pkg, ".mf", &stem)
        && let Some(bytes) = read_or_note(pkg, &file, MF_MAX_BYTES)?
    {
        let parsed = mf::parse(&bytes, &file.name);
        pkg.manifest = Some((file.name.clone(), bytes, parsed));
    }
    if let Some(file) = find_suffix(pkg, ".cert", &stem)
        && let Some(bytes) = read_or_note(pkg, &file, CERT_MAX_BYTES)?
    {
        pkg.cert = Some((file.name.clone(), bytes));
    }
    if pkg.kind == Kind::Ovf {
        add_referenced(pkg)?;
    }
    Ok(())
}

/// The finding for a descriptor that cannot be read, with the code tests match on.
fn descriptor_finding(e: &ovf_read::DescriptorError) -> Finding {
    use crate::container::ovf_read::xml::XmlError;
    let code = match e {
        ovf_read::DescriptorError::Xml {
            source: XmlError::DocType { .. } | XmlError::Entity { .. },
            ..
        } => "xml.dtd",
        ovf_read::DescriptorError::Xml { .. } => "xml.malformed",
        _ => "ovf.root",
    };
    Finding::error(code, e.to_string())
}

/// The manifest or certificate: the one with the descriptor's base name, else any.
fn find_suffix(pkg: &mut Package, suffix: &str, stem: &str) -> Option<PackageFile> {
    let wanted = format!("{stem}{suffix}");
    if let Some(f) = pkg.file(&wanted) {
        return Some(f.clone());
    }
    let other = pkg
        .files
        .iter()
        .find(|f| f.name.to_ascii_lowercase().ends_with(suffix))?
        .clone();
    let code = if suffix == ".mf" {
        "ova.mf-name"
    } else {
        "ova.cert-name"
    };
    let f = Finding::error(
        code,
        format!(
            "`{}` does not share the descriptor's base name (expected `{wanted}`); importers look for `{wanted}`",
            other.name
        ),
    );
    pkg.findings.push(f.at(other.place()));
    Some(other)
}

/// Adds each References file that exists next to an OVF descriptor, in References order.
fn add_referenced(pkg: &mut Package) -> Result<()> {
    let hrefs: Vec<(String, u32)> = pkg
        .envelope()
        .map(|e| e.files.iter().map(|f| (f.href.clone(), f.line)).collect())
        .unwrap_or_default();
    for (href, line) in hrefs {
        if pkg.file(&href).is_some() {
            continue;
        }
        if !is_local(&href) {
            let name = pkg.descriptor_name.clone().unwrap_or_default();
            let f = Finding::warning(
                "ref.external",
                format!(
                    "ovf:href `{href}` is not a file next to the descriptor (a URL, an absolute path or `..`); kiln does not open it"
                ),
            );
            pkg.findings.push(f.at(format!("{name}:{line}")));
            continue;
        }
        if let Some(f) = sibling_file(pkg, &href)? {
            pkg.files.push(f);
        }
    }
    Ok(())
}

/// A relative path below the descriptor's directory.
pub fn is_local(href: &str) -> bool {
    !href.is_empty()
        && !href.contains("://")
        && !href.starts_with('/')
        && !href.contains('\\')
        && !href.split('/').any(|c| c == ".." || c.is_empty())
}

/// The whole file when it is at most `max` bytes; else a finding is noted and `None`.
fn read_or_note(pkg: &mut Package, file: &PackageFile, max: u64) -> Result<Option<Vec<u8>>> {
    Ok(read_small(file, max)?
        .map_err(|f| pkg.findings.push(f))
        .ok())
}

/// The whole file when it is at most `max` bytes, else a finding.
fn read_small(file: &PackageFile, max: u64) -> Result<std::result::Result<Vec<u8>, Finding>> {
    if file.len() > max {
        let f = Finding::error(
            "ova.too-large",
            format!(
                "`{}` is {} bytes; kiln reads at most {max}",
                file.name,
                file.len()
            ),
        );
        return Ok(Err(f.at(file.place())));
    }
    let mut bytes = vec![0u8; usize::try_from(file.len()).unwrap_or(0)];
    read_exact_at(&*file.src, &mut bytes, 0, "package file")?;
    Ok(Ok(bytes))
}

/// True when the first non-blank bytes are `<` (an XML descriptor).
fn looks_like_xml(src: &dyn ReadAt) -> Result<bool> {
    let mut head = [0u8; 64];
    let n = usize::try_from(src.len().min(64)).unwrap_or(0);
    read_exact_at(src, &mut head[..n], 0, "file head")?;
    let head = head[..n]
        .strip_prefix(b"\xEF\xBB\xBF")
        .unwrap_or(&head[..n]);
    Ok(head.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'<'))
}

/// The compression an archive was wrapped in, from its magic.
fn compressed(src: &dyn ReadAt) -> Result<Option<&'static str>> {
    let mut head = [0u8; 6];
    if src.len() < 6 {
        return Ok(None);
    }
    read_exact_at(src, &mut head, 0, "file head")?;
    Ok(match head {
        [0x1f, 0x8b, ..] => Some("gzip"),
        [b'B', b'Z', b'h', ..] => Some("bzip2"),
        [0xfd, b'7', b'z', b'X', b'Z', 0] => Some("xz"),
        [0x28, 0xb5, 0x2f, 0xfd, ..] => Some("zstd"),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hrefs_below_the_descriptor_are_local() {
        assert!(is_local("disk1.vmdk"));
        assert!(is_local("disks/disk1.vmdk"));
    }

    #[test]
    fn urls_absolute_paths_and_dot_dot_are_not_local() {
        for href in [
            "http://example.com/d.vmdk",
            "/etc/passwd",
            "../d.vmdk",
            "a/../../d",
            "a//b",
            "a\\b",
        ] {
            assert!(!is_local(href), "{href}");
        }
    }
}
