//! Rewriting a descriptor another tool wrote (`kiln ova --from-ovf`): only the attributes a
//! repacked package changes are touched, everything else is copied byte for byte.
//!
//! quick-xml's namespace-aware pull parser finds the `References/File` and
//! `DiskSection/Disk` (or `SharedDiskSection/Disk`) elements named by the edits; each such
//! start tag is written anew from its attributes, and the text between those tags is copied
//! from the source unchanged (whitespace, comments, prefixes, quoting, vendor sections).
//! In a rewritten tag every attribute not edited keeps its name and raw value; OVF
//! attributes keep the prefix the source gave them (an added one takes the prefix of its
//! neighbour), since exporters bind OVF to `ovf:`, `ovf1:` or the default namespace.
//!
//! Per File: `ovf:href` (the member's new name), `ovf:size` (its length; added when
//! missing), `ovf:compression` and `ovf:chunkSize` dropped (the member is stored whole and
//! uncompressed). Per Disk: `ovf:capacity` in bytes with `ovf:capacityAllocationUnits="byte"`
//! always written (govmomi reads a capacity without units as kilobytes), `ovf:format` the
//! streamOptimized VMDK URI, `ovf:populatedSize` updated when the source has one.
//!
//! In an OVA the sizes are padded with spaces after the attribute to [`SIZE_WIDTH`]
//! characters, so the descriptor's length does not depend on them (see [`Describe`]).
//!
//! The source was read by [`super::ovf_read`] first (bounds, DOCTYPE refused); this pass
//! refuses a DOCTYPE too and fails when an edit finds no element, so no edit is lost.

use std::borrow::Cow;

use quick_xml::escape::{escape, unescape};
use quick_xml::events::{BytesStart, Event};
use quick_xml::name::ResolveResult;
use quick_xml::reader::NsReader;

use super::ovf::{SIZE_WIDTH, VMDK_STREAM_FORMAT};
use super::ovf_read::is_ovf;
use super::package::{Describe, Form, Written};
use crate::error::{Error, ErrorKind, Result};

/// Why a descriptor cannot be rewritten.
#[remain::sorted]
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RewriteError {
    /// An edited element has an attribute quick-xml cannot read.
    #[error("byte {offset:#x}: unreadable attribute: {detail}")]
    Attribute {
        /// Where the element starts.
        offset: usize,
        /// quick-xml's description.
        detail: String,
    },
    /// A DOCTYPE declaration (the reader refuses it first).
    #[error("DOCTYPE declarations are not allowed in a descriptor")]
    DocType,
    /// The XML cannot be read (the reader accepted it, so this is a bug).
    #[error("byte {offset:#x}: not well-formed XML: {detail}")]
    Malformed {
        /// Where the parser stopped.
        offset: usize,
        /// quick-xml's description.
        detail: String,
    },
    /// An edit names an element the descriptor does not have where OVF puts it.
    #[error("{element} `{id}` was not found directly inside {section}")]
    NotFound {
        /// `File` or `Disk`.
        element: &'static str,
        /// Its id.
        id: String,
        /// Where it was looked for.
        section: &'static str,
    },
}

impl From<RewriteError> for Error {
    fn from(e: RewriteError) -> Self {
        Error::new(ErrorKind::InvalidImage, e)
    }
}

/// The new attributes of one `References/File`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileEdit {
    /// `ovf:id` of the File.
    pub id: String,
    /// Index of its member in the package (its name and what was written).
    pub member: usize,
}

/// The new attributes of one `Disk`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskEdit {
    /// `ovf:diskId` of the Disk.
    pub id: String,
    /// Index of its member (the VMDK) in the package.
    pub member: usize,
    /// The VMDK's capacity in bytes.
    pub capacity: u64,
    /// Whether the source has an `ovf:populatedSize` to update.
    pub populated: bool,
}

/// A descriptor and the edits that repack it.
#[derive(Debug, Clone)]
pub struct Rewrite {
    /// The source text.
    pub source: String,
    /// File edits.
    pub files: Vec<FileEdit>,
    /// Disk edits.
    pub disks: Vec<DiskEdit>,
}

impl Describe for Rewrite {
    fn describe(&self, names: &[String], written: &[Written], form: Form) -> Result<String> {
        let width = match form {
            Form::Ova => SIZE_WIDTH,
            Form::Files => 0,
        };
        let cx = Cx {
            rewrite: self,
            names,
            written,
            width,
        };
        Ok(cx.run()?)
    }
}

/// One rewrite in progress.
struct Cx<'a> {
    rewrite: &'a Rewrite,
    names: &'a [String],
    written: &'a [Written],
    width: usize,
}

/// Which edited element a start tag is.
enum Target<'e> {
    File(&'e FileEdit),
    Disk(&'e DiskEdit),
}

impl Cx<'_> {
    fn run(&self) -> Result<String, RewriteError> {
        let text = self.rewrite.source.as_str();
        let mut reader = NsReader::from_reader(text.as_bytes());
        reader.config_mut().trim_text(false);
        let mut out = String::with_capacity(text.len() + 256);
        // Local names of the open OVF elements (`None` for others), the innermost last.
        let mut stack: Vec<Option<String>> = Vec::new();
        let mut copied = 0;
        let mut seen = (Vec::new(), Vec::new());
        loop {
            let start = pos(&reader);
            let (ns, event) = match reader.read_resolved_event() {
                Ok(read) => read,
                Err(e) => {
                    return Err(RewriteError::Malformed {
                        offset: start,
                        detail: e.to_string(),
                    });
                }
            };
            let ovf = matches!(&ns, ResolveResult::Bound(n) if is_ovf(Some(n.into_inner())));
            let (tag, empty) = match &event {
                Event::Start(e) => (e, false),
                Event::Empty(e) => (e, true),
                Event::End(_) => {
                    stack.pop();
                    continue;
                }
                Event::DocType(_) => return Err(RewriteError::DocType),
                Event::Eof => break,
                _ => continue,
            };
            let local = tag.local_name().into_inner().to_string();
            let parent = stack.last().cloned().flatten();
            let target = if ovf {
                self.target(&reader, tag, &local, parent.as_deref(), start)?
            } else {
                None
            };
            if !empty {
                stack.push(ovf.then_some(local));
            }
            let Some(target) = target else { continue };
            out.push_str(&text[copied..start]);
            copied = pos(&reader);
            let new_tag = match target {
                Target::File(edit) => {
                    seen.0.push(edit.id.clone());
                    self.file_tag(&reader, tag, edit, start)?
                }
                Target::Disk(edit) => {
                    seen.1.push(edit.id.clone());
                    self.disk_tag(&reader, tag, edit, start)?
                }
            };
            out.push_str(&close(&new_tag, empty));
        }
        out.push_str(&text[copied..]);
        self.all_seen(&seen.0, &seen.1)?;
        Ok(out)
    }

    /// The edit for an OVF element `local` inside `parent`, when there is one.
    fn target(
        &self,
        reader: &NsReader<&[u8]>,
        tag: &BytesStart<'_>,
        local: &str,
        parent: Option<&str>,
        offset: usize,
    ) -> Result<Option<Target<'_>>, RewriteError> {
        let target = match (local, parent) {
            ("File", Some("References")) => {
                let id = ovf_value(reader, tag, "id", offset)?;
                (self.rewrite.files.iter())
                    .find(|f| Some(f.id.as_str()) == id.as_deref())
                    .map(Target::File)
            }
            ("Disk", Some("DiskSection" | "SharedDiskSection")) => {
                let id = ovf_value(reader, tag, "diskId", offset)?;
                (self.rewrite.disks.iter())
                    .find(|d| Some(d.id.as_str()) == id.as_deref())
                    .map(Target::Disk)
            }
            _ => None,
        };
        Ok(target)
    }

    /// Every edit must have found its element.
    fn all_seen(&self, files: &[String], disks: &[String]) -> Result<(), RewriteError> {
        if let Some(f) = (self.rewrite.files.iter()).find(|f| !files.contains(&f.id)) {
            return Err(RewriteError::NotFound {
                element: "File",
                id: f.id.clone(),
                section: "References",
            });
        }
        if let Some(d) = (self.rewrite.disks.iter()).find(|d| !disks.contains(&d.id)) {
            return Err(RewriteError::NotFound {
                element: "Disk",
                id: d.id.clone(),
                section: "DiskSection",
            });
        }
        Ok(())
    }

    fn written(&self, member: usize) -> Written {
        self.written.get(member).copied().unwrap_or_default()
    }

    /// `<File ...` with the new href and size.
    fn file_tag(
        &self,
        reader: &NsReader<&[u8]>,
        tag: &BytesStart<'_>,
        edit: &FileEdit,
        offset: usize,
    ) -> Result<String, RewriteError> {
        let name = self.names.get(edit.member).map_or("", String::as_str);
        let size = self.written(edit.member).len;
        let mut t = Tag::new(tag);
        let mut prefix = None;
        let mut has_size = false;
        for (key, local, raw) in attributes(reader, tag, offset)? {
            match local.as_deref() {
                Some("href") => {
                    prefix = Some(prefix_of(&key));
                    t.attr(&key, &escape(name), 0);
                }
                Some("size") => {
                    has_size = true;
                    t.attr(&key, &size.to_string(), self.width);
                }
                Some("compression" | "chunkSize") => {}
                _ => t.raw(&key, &raw),
            }
        }
        if !has_size {
            let key = format!("{}size", prefix.unwrap_or_default());
            t.attr(&key, &size.to_string(), self.width);
        }
        Ok(t.0)
    }

    /// `<Disk ...` with the new capacity, units, format and populated size.
    fn disk_tag(
        &self,
        reader: &NsReader<&[u8]>,
        tag: &BytesStart<'_>,
        edit: &DiskEdit,
        offset: usize,
    ) -> Result<String, RewriteError> {
        let populated = self.written(edit.member).populated.unwrap_or(0);
        let mut t = Tag::new(tag);
        let mut prefix = String::new();
        let mut has_format = false;
        for (key, local, raw) in attributes(reader, tag, offset)? {
            match local.as_deref() {
                Some("capacity") => {
                    prefix = prefix_of(&key);
                    t.attr(&key, &edit.capacity.to_string(), 0);
                    t.attr(&format!("{prefix}capacityAllocationUnits"), "byte", 0);
                }
                Some("capacityAllocationUnits") => {}
                Some("format") => {
                    has_format = true;
                    t.attr(&key, VMDK_STREAM_FORMAT, 0);
                }
                Some("populatedSize") if edit.populated => {
                    t.attr(&key, &populated.to_string(), self.width);
                }
                _ => t.raw(&key, &raw),
            }
        }
        if !has_format {
            t.attr(&format!("{prefix}format"), VMDK_STREAM_FORMAT, 0);
        }
        Ok(t.0)
    }
}

/// A start tag being written: `<name` and attributes, closed by [`close`].
struct Tag(String);

impl Tag {
    fn new(tag: &BytesStart<'_>) -> Self {
        Self(format!("<{}", tag.name().into_inner()))
    }

    /// ` key="value"` (value already escaped), padded with spaces to `width` characters
    /// of value.
    fn attr(&mut self, key: &str, value: &str, width: usize) {
        let pad = " ".repeat(width.saturating_sub(value.len()));
        self.0.push_str(&format!(" {key}=\"{value}\"{pad}"));
    }

    /// An attribute as the source wrote its value (quoted with `'` when it holds `"`).
    fn raw(&mut self, key: &str, raw: &str) {
        let q = if raw.contains('"') { '\'' } else { '"' };
        self.0.push_str(&format!(" {key}={q}{raw}{q}"));
    }
}

fn close(tag: &str, empty: bool) -> String {
    if empty {
        format!("{tag}/>")
    } else {
        format!("{tag}>")
    }
}

/// The reader's position as an index into the text.
fn pos(reader: &NsReader<&[u8]>) -> usize {
    usize::try_from(reader.buffer_position()).unwrap_or(usize::MAX)
}

/// `ovf:` from `ovf:href`; empty for an unprefixed name.
fn prefix_of(key: &str) -> String {
    key.rfind(':')
        .map_or(String::new(), |i| key[..=i].to_string())
}

/// `(qualified name, local name when in OVF or unprefixed, raw value)` of each attribute.
/// Unprefixed attributes count as OVF's, as the reader accepts them (with a warning).
fn attributes(
    reader: &NsReader<&[u8]>,
    tag: &BytesStart<'_>,
    offset: usize,
) -> Result<Vec<(String, Option<String>, String)>, RewriteError> {
    let mut out = Vec::new();
    for attr in tag.attributes() {
        let attr = attr.map_err(|e| RewriteError::Attribute {
            offset,
            detail: e.to_string(),
        })?;
        let key = attr.key.into_inner().to_string();
        let (ns, local) = reader.resolver().resolve_attribute(attr.key);
        let ovf = match ns {
            ResolveResult::Bound(n) => is_ovf(Some(n.into_inner())),
            ResolveResult::Unbound => !key.starts_with("xmlns"),
            ResolveResult::Unknown(_) => false,
        };
        let local = ovf.then(|| local.into_inner().to_string());
        out.push((key, local, attr.value.into_owned()));
    }
    Ok(out)
}

/// The value of OVF attribute `name` of `tag`, trimmed.
fn ovf_value(
    reader: &NsReader<&[u8]>,
    tag: &BytesStart<'_>,
    name: &str,
    offset: usize,
) -> Result<Option<String>, RewriteError> {
    let found = attributes(reader, tag, offset)?
        .into_iter()
        .find(|(_, local, _)| local.as_deref() == Some(name));
    Ok(found.map(|(_, _, raw)| {
        let text = unescape(&raw).map_or_else(|_| raw.clone(), Cow::into_owned);
        text.trim().to_string()
    }))
}

#[cfg(test)]
mod tests;
