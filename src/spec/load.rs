//! Reading a spec file: size cap, UTF-8, YAML with bounded anchors/aliases, serde errors
//! turned into located issues with "did you mean" hints.
//!
//! Refused: files over [`MAX_SPEC_BYTES`], empty files, non-UTF-8 bytes, more than one YAML
//! document, duplicate keys, merge keys, and alias use past the budget below (a "billion
//! laughs" document fails in microseconds instead of expanding).

use std::io::Read;
use std::path::Path;

use serde_saphyr::budget::BudgetBreach;
use serde_saphyr::{Budget, DuplicateKeyPolicy, Location, MergeKeyPolicy, Options};

use super::model::Spec;
use super::{Issue, Span, SpecErrors};
use crate::suggest::closest;

/// Largest spec file kiln reads (10 MB): real specs are a few KiB.
pub const MAX_SPEC_BYTES: u64 = 10_000_000;

/// Alias limits: a spec has no reason to expand more than this many events through aliases.
const MAX_ALIAS_REPLAY_EVENTS: usize = 10_000;

/// Most aliases (`*name`) a spec may use.
const MAX_ALIASES: usize = 1_000;
/// Most anchors (`&name`) a spec may define.
const MAX_ANCHORS: usize = 1_000;
/// Deepest nesting of mappings and lists: a spec needs a handful of levels, and a bound
/// keeps a hostile spec from exhausting the stack of every recursive walk over it.
const MAX_DEPTH: usize = 64;
/// Most values (scalars, mappings, lists) in a spec.
const MAX_NODES: usize = 1_000_000;

/// Reads and parses `path`.
///
/// # Errors
/// [`SpecErrors`] naming the file, with the location of each problem.
pub fn load(path: &Path) -> Result<(Spec, String), SpecErrors> {
    let bytes = read_capped(path)?;
    parse_bytes(path, &bytes)
}

fn read_capped(path: &Path) -> Result<Vec<u8>, SpecErrors> {
    let fail = |message: String| SpecErrors::single(path, String::new(), message, None);
    let file = std::fs::File::open(path).map_err(|e| fail(format!("cannot open the spec: {e}")))?;
    let mut bytes = Vec::new();
    file.take(MAX_SPEC_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| fail(format!("cannot read the spec: {e}")))?;
    if bytes.len() as u64 > MAX_SPEC_BYTES {
        return Err(fail(format!(
            "spec is larger than {MAX_SPEC_BYTES} bytes; a spec is a few KiB of YAML"
        )));
    }
    Ok(bytes)
}

/// Parses spec bytes read from `path` (used for messages and nothing else).
///
/// # Errors
/// As [`load`].
pub fn parse_bytes(path: &Path, bytes: &[u8]) -> Result<(Spec, String), SpecErrors> {
    if bytes.len() as u64 > MAX_SPEC_BYTES {
        let message =
            format!("spec is larger than {MAX_SPEC_BYTES} bytes; a spec is a few KiB of YAML");
        return Err(SpecErrors::single(path, String::new(), message, None));
    }
    let text = match std::str::from_utf8(bytes) {
        Ok(text) => text.to_string(),
        Err(e) => return Err(not_utf8(path, bytes, e.valid_up_to())),
    };
    if text.trim().is_empty() {
        let message = "spec is empty; it needs at least `name`, `disks` and `outputs`".to_string();
        return Err(SpecErrors::single(path, text, message, None));
    }
    match serde_saphyr::from_str_with_options::<Spec>(&text, options()) {
        Ok(spec) => Ok((spec, text)),
        Err(e) => {
            let (message, span) = describe(&e, &text);
            let mut issues = super::keys::unknown_keys(&text, options());
            let typed_is_a_key = matches!(inner(&e), serde_saphyr::Error::SerdeUnknownField { .. });
            if issues.is_empty() || !typed_is_a_key {
                issues.push(Issue {
                    key: String::new(),
                    message,
                    span,
                });
            }
            issues.sort_by_key(|i| i.span.map_or(u64::MAX, |s| s.offset));
            Err(SpecErrors {
                path: path.to_path_buf(),
                text,
                issues,
            })
        }
    }
}

fn not_utf8(path: &Path, bytes: &[u8], valid_up_to: usize) -> SpecErrors {
    let text = String::from_utf8_lossy(bytes).into_owned();
    let prefix = String::from_utf8_lossy(&bytes[..valid_up_to]);
    let span = Span::at_offset(&prefix, prefix.len(), 1);
    let message = format!("spec is not UTF-8: invalid byte at offset {valid_up_to:#x}");
    SpecErrors::single(path, text, message, Some(span))
}

fn options() -> Options {
    let mut budget = Budget::default();
    budget.max_aliases = MAX_ALIASES;
    budget.max_anchors = MAX_ANCHORS;
    budget.max_depth = MAX_DEPTH;
    budget.max_nodes = MAX_NODES;
    let mut options = Options::default();
    options.budget = Some(budget);
    options.alias_limits.max_total_replayed_events = MAX_ALIAS_REPLAY_EVENTS;
    options.alias_limits.max_alias_expansions_per_anchor = 100;
    options.duplicate_keys = DuplicateKeyPolicy::Error;
    options.merge_keys = MergeKeyPolicy::Error;
    options.with_snippet = false;
    options
}

/// One-sentence message and location for a parse error.
fn describe(error: &serde_saphyr::Error, text: &str) -> (String, Option<Span>) {
    let span = error.location().and_then(|l| span_of(&l, text));
    let message = match inner(error) {
        serde_saphyr::Error::SerdeUnknownField {
            field, expected, ..
        } => unknown(field, expected, "key"),
        serde_saphyr::Error::SerdeUnknownVariant {
            variant, expected, ..
        } => unknown(variant, expected, "value"),
        serde_saphyr::Error::Budget { breach, .. } => budget_message(breach),
        _ if first_line(error) == "recursion limit exceeded" => nesting_message(),
        serde_saphyr::Error::AliasReplayLimitExceeded { .. }
        | serde_saphyr::Error::AliasExpansionLimitExceeded { .. }
        | serde_saphyr::Error::AliasReplayStackDepthExceeded { .. } => format!(
            "anchors and aliases expand past kiln's limit ({MAX_ALIAS_REPLAY_EVENTS} replayed events, {MAX_ALIASES} aliases): {}",
            first_line(error)
        ),
        serde_saphyr::Error::InvalidScalar { ty, .. } => {
            let found = span.and_then(|s| snippet(text, s)).unwrap_or_default();
            format!("`{found}` is not {}", friendly_type(ty))
        }
        _ => untagged_hint(first_line(error)),
    };
    (message, span)
}

/// A budget breach in words (the parser's `Debug` text names Rust types, not the spec).
fn budget_message(breach: &BudgetBreach) -> String {
    match breach {
        BudgetBreach::Depth { .. } => nesting_message(),
        BudgetBreach::Aliases { .. } | BudgetBreach::AliasAnchorRatio { .. } => {
            format!("the spec uses more than {MAX_ALIASES} aliases (`*name`)")
        }
        BudgetBreach::Anchors { .. } => {
            format!("the spec defines more than {MAX_ANCHORS} anchors (`&name`)")
        }
        BudgetBreach::Nodes { .. } => {
            format!("the spec has more than {MAX_NODES} values; a spec is a few hundred")
        }
        _ => "the spec exceeds kiln's YAML limits (documents, events or scalar bytes)".into(),
    }
}

fn nesting_message() -> String {
    format!("the spec nests mappings and lists deeper than {MAX_DEPTH} levels, kiln's limit")
}

fn inner(mut error: &serde_saphyr::Error) -> &serde_saphyr::Error {
    while let serde_saphyr::Error::WithSnippet { error: e, .. }
    | serde_saphyr::Error::AliasError { error: e, .. } = error
    {
        error = e;
    }
    error
}

fn unknown(word: &str, expected: &[&str], what: &str) -> String {
    match closest(word, expected) {
        Some(hint) => format!("unknown {what} `{word}`; did you mean `{hint}`?"),
        None if expected.is_empty() => format!("unknown {what} `{word}`"),
        None => format!(
            "unknown {what} `{word}`; expected one of {}",
            expected.join(", ")
        ),
    }
}

/// The error text without the location suffix serde-saphyr appends.
fn first_line(error: &serde_saphyr::Error) -> String {
    let text = error.to_string();
    let line = text.lines().next().unwrap_or_default();
    match line.find(" at line ") {
        Some(i) => line[..i].to_string(),
        None => line.to_string(),
    }
}

fn friendly_type(ty: &str) -> &'static str {
    match ty {
        "bool" => "a boolean (true or false)",
        "f32" | "f64" => "a number",
        "char" | "string" => "a string",
        _ => "an integer",
    }
}

fn snippet(text: &str, span: Span) -> Option<String> {
    let start = usize::try_from(span.offset).ok()?;
    let end = start.checked_add(usize::try_from(span.len).ok()?)?;
    Some(text.get(start..end)?.to_string())
}

fn untagged_hint(message: String) -> String {
    if message.contains("untagged enum OptionValue") {
        return "an option value must be a string, number or boolean".into();
    }
    if message.contains("untagged enum CloudInitPart") {
        return "a cloud-init part must be a file path or an inline mapping".into();
    }
    message
}

/// A [`Span`] for a serde-saphyr location (lines and columns are 1-based there and here).
pub(crate) fn span_of(location: &Location, text: &str) -> Option<Span> {
    let line = location.line();
    let col = location.column();
    if line == 0 {
        return None;
    }
    let offset = line_col_offset(text, line, col)?;
    let len = location.span().byte_len().unwrap_or(1).max(1);
    Some(Span {
        line,
        col,
        offset: offset as u64,
        len,
    })
}

pub(crate) fn line_col_offset(text: &str, line: u64, col: u64) -> Option<usize> {
    let line_index = usize::try_from(line.checked_sub(1)?).ok()?;
    let start: usize = text
        .split_inclusive('\n')
        .take(line_index)
        .map(str::len)
        .sum();
    let rest = text.get(start..)?;
    let chars = usize::try_from(col.saturating_sub(1)).ok()?;
    let within = rest
        .char_indices()
        .nth(chars)
        .map_or(rest.len(), |(i, _)| i);
    Some(start + within)
}

impl Issue {
    /// An issue at `location` (or unlocated when the location is unknown).
    pub(crate) fn at(location: &Location, text: &str, key: &str, message: String) -> Self {
        Self {
            key: key.to_string(),
            message,
            span: span_of(location, text),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_word_close_to_a_known_one_gets_a_suggestion() {
        assert_eq!(
            unknown("sise", &["size", "name"], "key"),
            "unknown key `sise`; did you mean `size`?"
        );
    }

    #[test]
    fn unknown_word_far_from_all_lists_the_choices() {
        assert_eq!(
            unknown("zzzz", &["size", "name"], "key"),
            "unknown key `zzzz`; expected one of size, name"
        );
    }

    #[test]
    fn line_and_column_map_to_the_byte_offset() {
        assert_eq!(line_col_offset("ab\ncé\nx", 3, 1), Some(7));
    }

    #[test]
    fn deep_nesting_without_anchors_is_named_as_nesting_at_its_place() {
        // issue 15, defect 8: this blamed anchors and printed `Depth { depth: 65 }`.
        let text = format!(
            "name: x\ndisks: []\noutputs: []\ncloud_init:\n  user_data: {}1{}\n",
            "{a: ".repeat(10_000),
            "}".repeat(10_000)
        );
        let err = parse_bytes(Path::new("s.yaml"), text.as_bytes()).unwrap_err();
        let issue = &err.issues[0];
        assert_eq!(
            issue.message,
            "the spec nests mappings and lists deeper than 64 levels, kiln's limit"
        );
        assert_eq!(issue.span.map(|s| s.line), Some(5));
    }

    #[test]
    fn deep_flow_nesting_in_a_struct_is_named_as_nesting() {
        let text = format!(
            "name: x\nvm: {}{}\n",
            "{".repeat(10_000),
            "}".repeat(10_000)
        );
        let err = parse_bytes(Path::new("s.yaml"), text.as_bytes()).unwrap_err();
        assert!(
            err.issues
                .iter()
                .any(|i| i.message.contains("deeper than 64 levels")),
            "{:?}",
            err.issues
        );
    }

    #[test]
    fn spec_text_that_is_not_utf8_is_refused_with_its_offset() {
        let err = parse_bytes(Path::new("s.yaml"), b"name: \xff").unwrap_err();
        assert_eq!(
            err.issues[0].message,
            "spec is not UTF-8: invalid byte at offset 0x6"
        );
    }
}
