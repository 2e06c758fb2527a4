//! The appliance spec: YAML in ([`load`]), checked into a [`ValidSpec`] ([`validate`]).
//!
//! Errors carry the spec path, the key path (`disks[1].size`) and a [`Span`] (line, column,
//! byte offset, length) so the CLI can draw a labelled snippet. Every unknown key is
//! reported (`keys` walks the document against the generated schema); a YAML syntax error or
//! a wrong value type is reported once, beside them, because serde stops there; semantic
//! validation reports every problem.
//! See `model` for what the spec language deliberately leaves out.

mod keys;
pub mod load;
pub mod model;
pub mod validate;

use std::fmt;
use std::path::{Path, PathBuf};

pub use load::{MAX_SPEC_BYTES, load, parse_bytes};
pub use validate::{
    AmiPart, AmiSource, CdromSource, DiskPlanSource, Location, PartitionChoice, SignatureCheck,
    SourceCheck, ValidAmi, ValidBundle, ValidCdrom, ValidDisk, ValidOutput, ValidSeed, ValidSign,
    ValidSpec, ValidateOptions, validate, validate_with,
};

use crate::error::{Error, ErrorKind};

/// A place in the spec text. Lines and columns count from 1; `offset` and `len` are bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    /// Line, from 1.
    pub line: u64,
    /// Column in characters, from 1.
    pub col: u64,
    /// Byte offset of the start.
    pub offset: u64,
    /// Length in bytes (at least 1).
    pub len: u64,
}

impl Span {
    /// The span of `len` bytes at byte `offset` of `text`.
    pub fn at_offset(text: &str, offset: usize, len: u64) -> Self {
        let before = text.get(..offset).unwrap_or(text);
        let line = before.matches('\n').count() as u64 + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let col = before.get(line_start..).map_or(0, |s| s.chars().count()) as u64 + 1;
        Self {
            line,
            col,
            offset: offset as u64,
            len,
        }
    }
}

/// One problem found in a spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issue {
    /// Key path, e.g. `disks[0].size`; empty for whole-file problems.
    pub key: String,
    /// One sentence: what was found and what is allowed.
    pub message: String,
    /// Where, when known.
    pub span: Option<Span>,
}

/// Every problem found in one spec file, with the text they point into.
#[derive(Debug, Clone)]
pub struct SpecErrors {
    /// The spec file.
    pub path: PathBuf,
    /// The spec text (lossy for non-UTF-8 files), for snippets.
    pub text: String,
    /// The problems, in document order.
    pub issues: Vec<Issue>,
}

impl SpecErrors {
    /// One unlocated or located problem.
    pub fn single(path: &Path, text: String, message: String, span: Option<Span>) -> Self {
        let issue = Issue {
            key: String::new(),
            message,
            span,
        };
        Self {
            path: path.to_path_buf(),
            text,
            issues: vec![issue],
        }
    }

    /// Plain text, one issue per block: `file:line:col: key: message`, the line, a caret.
    pub fn render_plain(&self) -> String {
        let mut out = String::new();
        for issue in &self.issues {
            out.push_str(&self.render_issue(issue));
        }
        out
    }

    fn render_issue(&self, issue: &Issue) -> String {
        let key = if issue.key.is_empty() {
            String::new()
        } else {
            format!("{}: ", issue.key)
        };
        let Some(span) = issue.span else {
            return format!("{}: {key}{}\n", self.path.display(), issue.message);
        };
        let mut out = format!(
            "{}:{}:{}: {key}{}\n",
            self.path.display(),
            span.line,
            span.col,
            issue.message
        );
        let line_index = usize::try_from(span.line.saturating_sub(1)).unwrap_or(usize::MAX);
        if let Some(line) = self.text.lines().nth(line_index) {
            let pad = " ".repeat(usize::try_from(span.col.saturating_sub(1)).unwrap_or(0));
            let shown: String = line.chars().take(160).collect();
            out.push_str(&format!("  | {shown}\n  | {pad}^\n"));
        }
        out
    }
}

impl fmt::Display for SpecErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Some(first) = self.issues.first() else {
            return write!(f, "{}: invalid spec", self.path.display());
        };
        let at = first
            .span
            .map(|s| format!(":{}:{}", s.line, s.col))
            .unwrap_or_default();
        let key = if first.key.is_empty() {
            String::new()
        } else {
            format!("{}: ", first.key)
        };
        write!(f, "{}{at}: {key}{}", self.path.display(), first.message)?;
        if self.issues.len() > 1 {
            write!(f, " (and {} more problems)", self.issues.len() - 1)?;
        }
        Ok(())
    }
}

impl std::error::Error for SpecErrors {}

impl From<SpecErrors> for Error {
    fn from(e: SpecErrors) -> Self {
        Error::new(ErrorKind::InvalidInput, e)
    }
}

/// The JSON Schema of the spec, generated from [`model::Spec`], as checked in at
/// `schemas/kiln-spec.schema.json`.
pub fn schema_json() -> String {
    let schema = schemars::schema_for!(model::Spec);
    let mut text = serde_json::to_string_pretty(&schema).unwrap_or_default();
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    // The schema's profile names and container::profile's are kept equal here, in the
    // layer that may see both.
    #[test]
    fn the_schema_offers_every_profile_name() {
        let schema = schemars::schema_for!(model::ProfileName);
        let text = serde_json::to_string(&schema).unwrap();
        let mut offered: Vec<&str> = crate::container::profile::Profile::names()
            .into_iter()
            .filter(|n| text.contains(&format!("\"{n}\"")))
            .collect();
        offered.sort_unstable();
        let mut all = crate::container::profile::Profile::names();
        all.sort_unstable();
        assert_eq!(offered, all);
        // No name beyond the profiles': one string constant per profile name.
        assert_eq!(text.matches("\"const\"").count(), all.len(), "{text}");
    }

    #[test]
    fn span_at_offset_counts_lines_and_columns_from_one() {
        let span = Span::at_offset("ab\ncd", 4, 1);
        assert_eq!((span.line, span.col), (2, 2));
    }

    #[test]
    fn display_names_the_first_issue_and_counts_the_rest() {
        let mut e = SpecErrors::single(Path::new("s.yaml"), String::new(), "bad".into(), None);
        e.issues.push(e.issues[0].clone());
        assert_eq!(e.to_string(), "s.yaml: bad (and 1 more problems)");
    }
}
