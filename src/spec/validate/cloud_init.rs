//! The `cloud_init:` block → the NoCloud seeds to build (cloud-init docs, "NoCloud"; the
//! image itself is `kiln::seed`'s).
//!
//! Each part (user-data, meta-data, network-config) is a file beside the spec, inline text
//! (a `|` block) or an inline mapping. Every part is checked here with the seed module's own
//! rules, so `kiln validate` reports bad YAML, unknown user-data types or a missing
//! network-config version at the part's spec location. Inline mappings are written out by
//! [`to_yaml`] (keys sorted, strings quoted unless plainly safe) so the same spec always
//! gives the same seed bytes; inline user-data gets the `#cloud-config` first line.
//!
//! `ovf-properties` delivery hands the same data to the OVF packages
//! (`crate::container::cloud_init`); it needs at least one ova/ovf output and none for
//! VirtualBox. Refused: a seed whose name or file clashes with an output.

use std::collections::BTreeMap;

use serde_json::Value;

use super::{Checker, ValidOutput, packages};
use crate::container::profile::Profile;
use crate::seed::{self, SeedFormat, SeedSpec};
use crate::spec::model::{CloudInit, CloudInitPart, Delivery, Spanned, Spec};
use crate::spec::{Issue, Span, load};

/// A NoCloud seed to build.
#[derive(Debug, Clone)]
pub struct ValidSeed {
    /// Name for `--only` and the report: `seed-iso` or `seed-vfat`.
    pub name: String,
    /// File name in the output directory.
    pub file: String,
    /// ISO 9660 or FAT.
    pub format: SeedFormat,
    /// The files, checked.
    pub contents: SeedSpec,
    /// Where `cloud_init` is written, for errors found while building.
    pub span: Option<Span>,
}

impl ValidSeed {
    /// Glance's disk format for the seed: `iso`, or `raw` for a FAT image.
    pub fn disk_format(&self) -> &'static str {
        match self.format {
            SeedFormat::Iso => "iso",
            SeedFormat::Vfat => "raw",
        }
    }
}

/// Where the cloud-init data goes.
#[derive(Default)]
pub(super) struct Delivered {
    /// Seeds beside the disks.
    pub seeds: Vec<ValidSeed>,
    /// Data for OVF environment properties.
    pub ovf_properties: Option<SeedSpec>,
    /// Data for the seed ISO inside the packages, and where `deliver` asks for it.
    pub cdrom: Option<(SeedSpec, serde_saphyr::Location)>,
}

/// One cloud-init part: its spec key, its seed file name and its check.
struct Part<'a> {
    at: &'a Option<Spanned<CloudInitPart>>,
    key: &'static str,
    file: &'static str,
    check: fn(&[u8]) -> crate::Result<()>,
}

impl Checker<'_> {
    pub(super) fn cloud_init(
        &mut self,
        spec: &Spec,
        spec_name: &str,
        outputs: &[ValidOutput],
    ) -> Delivered {
        let Some(ci) = &spec.cloud_init else {
            return Delivered::default();
        };
        let contents = self.seed_contents(ci);
        let deliver_at = ci
            .value
            .deliver
            .as_ref()
            .map_or(ci.referenced, |d| d.referenced);
        let deliver = ci
            .value
            .deliver
            .as_ref()
            .map_or(vec![Delivery::SeedIso], |d| d.value.clone());
        let mut seeds: Vec<ValidSeed> = Vec::new();
        let mut ovf_properties = None;
        let mut cdrom = None;
        for d in deliver {
            let (name, file, format) = match d {
                Delivery::SeedIso => ("seed-iso", format!("{spec_name}-seed.iso"), SeedFormat::Iso),
                Delivery::SeedVfat => (
                    "seed-vfat",
                    format!("{spec_name}-seed.img"),
                    SeedFormat::Vfat,
                ),
                Delivery::OvfProperties => {
                    self.ovf_delivery(deliver_at, outputs);
                    ovf_properties.clone_from(&contents);
                    continue;
                }
                Delivery::SeedCdrom => {
                    cdrom = contents.clone().map(|c| (c, deliver_at));
                    continue;
                }
            };
            if seeds.iter().any(|s| s.name == name) {
                continue;
            }
            if let Some(o) = outputs.iter().find(|o| o.name == name || o.file == file) {
                let message = format!(
                    "the cloud-init seed `{name}` ({file}) clashes with outputs[{}]; rename that output or set its `file:`",
                    o.index
                );
                self.err_loc(deliver_at, "cloud_init.deliver", message);
            }
            let Some(contents) = contents.clone() else {
                continue;
            };
            let span = self.span(ci);
            seeds.push(ValidSeed {
                name: name.into(),
                file,
                format,
                contents,
                span,
            });
        }
        Delivered {
            seeds,
            ovf_properties,
            cdrom,
        }
    }

    /// OVF environment properties reach the guest only from a VMware package.
    fn ovf_delivery(&mut self, at: serde_saphyr::Location, outputs: &[ValidOutput]) {
        let packages: Vec<&ValidOutput> = packages(outputs);
        if packages.is_empty() {
            let message = "`ovf-properties` needs an output with `container_format: ova` or `ovf`; add one or deliver a seed (`seed-iso`)";
            self.err_loc(at, "cloud_init.deliver", message.into());
        }
        for o in (packages.iter()).filter(|o| o.target.has(Profile::Virtualbox7)) {
            let message = format!(
                "`ovf-properties` cannot reach a VirtualBox guest (VirtualBox has no OVF environment transport), but outputs[{}] targets virtualbox; deliver `seed-iso` instead",
                o.index
            );
            self.err_loc(at, "cloud_init.deliver", message);
        }
    }

    /// The seed's files, each checked; `None` once a problem is reported.
    fn seed_contents(&mut self, ci: &Spanned<CloudInit>) -> Option<SeedSpec> {
        let c = &ci.value;
        let parts = [
            Part {
                at: &c.user_data,
                key: "user_data",
                file: "user-data",
                check: |b| seed::check_user_data("user-data", b),
            },
            Part {
                at: &c.meta_data,
                key: "meta_data",
                file: "meta-data",
                check: seed::check_meta_data,
            },
            Part {
                at: &c.network_config,
                key: "network_config",
                file: "network-config",
                check: seed::check_network_config,
            },
        ];
        // Every part is checked (and each problem reported) before any is given up on.
        let found: Vec<Result<Option<Vec<u8>>, ()>> = parts.iter().map(|p| self.part(p)).collect();
        let [Ok(user_data), Ok(meta_data), Ok(network_config)] = <[_; 3]>::try_from(found).ok()?
        else {
            return None;
        };
        let contents = SeedSpec {
            user_data: user_data.unwrap_or_default(),
            meta_data,
            network_config,
            ..SeedSpec::default()
        };
        // The whole seed (meta-data with the keys kiln adds) as the build will write it.
        if let Err(e) = seed::seed_files(&contents) {
            self.err(ci, "cloud_init", e.to_string());
            return None;
        }
        Some(contents)
    }

    /// The bytes of one part (`None` when absent); `Err` once its problem is reported.
    fn part(&mut self, part: &Part<'_>) -> Result<Option<Vec<u8>>, ()> {
        let Some(at) = part.at else { return Ok(None) };
        let key = format!("cloud_init.{}", part.key);
        let (bytes, origin) = match &at.value {
            CloudInitPart::Inline(map) => {
                let header = if part.file == "user-data" {
                    "#cloud-config\n"
                } else {
                    ""
                };
                (
                    format!("{header}{}", to_yaml(map)).into_bytes(),
                    String::new(),
                )
            }
            CloudInitPart::Text(text) if text.contains('\n') => {
                (text.clone().into_bytes(), String::new())
            }
            CloudInitPart::Text(path) => {
                let named = Spanned::new(path.clone(), at.referenced, at.defined);
                let file = self.existing_file(&named, &key).ok_or(())?;
                match std::fs::read(&file) {
                    Ok(bytes) => (bytes, format!(" (in `{path}`)")),
                    Err(e) => {
                        self.err(at, &key, format!("cannot read `{}`: {e}", file.display()));
                        return Err(());
                    }
                }
            }
        };
        if let Err(e) = (part.check)(&bytes) {
            let mut message = if origin.is_empty() {
                e.to_string()
            } else {
                format!("{}{origin}", without_content(&e.to_string()))
            };
            let inner = match &at.value {
                CloudInitPart::Text(text)
                    if origin.is_empty() && message.contains(" is not valid YAML ") =>
                {
                    message.push_str(" (line and column within the inline text)");
                    self.inline_error_span(at, text)
                }
                _ => None,
            };
            match inner {
                Some(span) => self.issues.push(Issue {
                    key,
                    message,
                    span: Some(span),
                }),
                None => self.err(at, &key, message),
            }
            return Err(());
        }
        Ok(Some(bytes))
    }

    /// Where a YAML error inside inline text (a `|` block) is in the spec: the block's lines
    /// are the spec's lines from the block's first, shifted by its indentation.
    fn inline_error_span(&self, at: &Spanned<CloudInitPart>, text: &str) -> Option<Span> {
        let block = self.span(at)?;
        let err = serde_saphyr::from_str::<serde::de::IgnoredAny>(text).err()?;
        let inner = err.location()?;
        let line = block.line.checked_add(inner.line().checked_sub(1)?)?;
        let col = block.col.checked_add(inner.column().checked_sub(1)?)?;
        let offset = load::line_col_offset(self.text, line, col)?;
        let spec_line = self.text.lines().nth(usize::try_from(line - 1).ok()?)?;
        let first_line = text.lines().nth(usize::try_from(inner.line() - 1).ok()?)?;
        // Only when the spec line really is that line of the block (a literal `|` block).
        spec_line.ends_with(first_line).then_some(Span {
            line,
            col,
            offset: u64::try_from(offset).ok()?,
            len: 1,
        })
    }
}

/// A check's message about a file's bytes, with the bytes left out: the spec named the file,
/// not its text, and a spec kiln did not write may name any file (issue 15: a validation
/// error quoted the first line of `/etc/shadow`). Text a message quotes from the file
/// (between backticks or double quotes) becomes `…`; single-quoted parser tokens of up to
/// three characters (`'-'`, `':'`) stay, longer ones (an anchor name) go too.
fn without_content(message: &str) -> String {
    let mut out = String::new();
    let mut rest = message;
    while let Some(open) = rest.find(['`', '"', '\'']) {
        let quote = rest[open..].chars().next().unwrap_or('`');
        let after = &rest[open + 1..];
        let Some(close) = after.find(quote) else {
            break;
        };
        out.push_str(&rest[..open]);
        let keep = quote == '\'' && after[..close].chars().count() <= 3;
        out.push(quote);
        out.push_str(if keep { &after[..close] } else { "…" });
        out.push(quote);
        rest = &after[close + 1..];
    }
    out.push_str(rest);
    out
}

/// Block-style YAML for an inline mapping: two-space indents, keys in sorted order, every
/// string quoted unless it is a plain word YAML 1.1 (cloud-init's PyYAML) also reads as a
/// string, so `yes`, `on`, `0755` and `1:20` stay strings as the spec's YAML 1.2 meant them.
pub(super) fn to_yaml(map: &BTreeMap<String, Value>) -> String {
    if map.is_empty() {
        return "{}\n".into();
    }
    let mut out = String::new();
    for (k, v) in map {
        map_entry(&mut out, 0, k, v);
    }
    out
}

fn map_entry(out: &mut String, indent: usize, key: &str, value: &Value) {
    out.push_str(&" ".repeat(indent));
    out.push_str(&scalar_text(key));
    out.push(':');
    value_after(out, indent, value);
}

/// The value of an entry or item whose key or dash is already written at `indent`.
fn value_after(out: &mut String, indent: usize, value: &Value) {
    match value {
        Value::Object(m) if !m.is_empty() => {
            out.push('\n');
            for (k, v) in m {
                map_entry(out, indent + 2, k, v);
            }
        }
        Value::Array(a) if !a.is_empty() => {
            out.push('\n');
            for v in a {
                seq_item(out, indent + 2, v);
            }
        }
        other => {
            out.push(' ');
            out.push_str(&flow(other));
            out.push('\n');
        }
    }
}

fn seq_item(out: &mut String, indent: usize, value: &Value) {
    out.push_str(&" ".repeat(indent));
    out.push('-');
    let Value::Object(m) = value else {
        return value_after(out, indent, value);
    };
    let mut entries = m.iter();
    let Some((k, v)) = entries.next() else {
        return value_after(out, indent, value);
    };
    // `- key: value`, the other keys aligned under the first.
    out.push(' ');
    out.push_str(&scalar_text(k));
    out.push(':');
    value_after(out, indent + 2, v);
    for (k, v) in entries {
        map_entry(out, indent + 2, k, v);
    }
}

/// A scalar or an empty collection on one line.
fn flow(value: &Value) -> String {
    match value {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => scalar_text(s),
        Value::Array(_) => "[]".into(),
        Value::Object(_) => "{}".into(),
    }
}

/// `s` plain when every YAML reader takes it as this string, else double-quoted.
fn scalar_text(s: &str) -> String {
    const SPECIAL: &[&str] = &["y", "n", "yes", "no", "on", "off", "true", "false", "null"];
    let plain = s.starts_with(|c: char| c.is_ascii_alphabetic() || c == '/')
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '/'))
        && !SPECIAL.contains(&s.to_ascii_lowercase().as_str());
    if plain {
        return s.to_string();
    }
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() || matches!(c, '\u{2028}' | '\u{2029}' | '\u{feff}') => {
                out.push_str(&format!("\\u{:04x}", u32::from(c)));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn yaml(json: &str) -> String {
        to_yaml(&serde_json::from_str(json).unwrap())
    }

    #[test]
    fn file_content_is_left_out_of_a_message() {
        assert_eq!(
            without_content("user-data starts with `root:$6$salt`; cloud-init ignores it"),
            "user-data starts with `…`; cloud-init ignores it"
        );
    }

    #[test]
    fn parser_tokens_stay_but_quoted_names_go() {
        assert_eq!(
            without_content("did not find expected '-' indicator; unknown anchor 'secret'"),
            "did not find expected '-' indicator; unknown anchor '…'"
        );
    }

    #[test]
    fn nested_mapping_and_list_are_block_style() {
        assert_eq!(
            yaml(r#"{"users": [{"name": "kiln", "groups": ["a", "b"]}], "hostname": "h"}"#),
            "hostname: h\nusers:\n  - groups:\n      - a\n      - b\n    name: kiln\n"
        );
    }

    #[test]
    fn yaml_1_1_booleans_and_numbers_in_strings_are_quoted() {
        assert_eq!(
            yaml(r#"{"a": "yes", "b": "0755", "c": true, "d": 7}"#),
            "a: \"yes\"\nb: \"0755\"\nc: true\nd: 7\n"
        );
    }

    #[test]
    fn strings_with_spaces_and_newlines_are_escaped() {
        assert_eq!(
            yaml(r#"{"k": "ssh-ed25519 AAAA x@y\n\"q\""}"#),
            "k: \"ssh-ed25519 AAAA x@y\\n\\\"q\\\"\"\n"
        );
    }

    #[test]
    fn empty_collections_are_flow_style() {
        assert_eq!(
            yaml(r#"{"a": {}, "b": [], "c": null}"#),
            "a: {}\nb: []\nc: null\n"
        );
    }

    #[test]
    fn emitted_yaml_reads_back_as_the_same_value() {
        let json = r#"{"a": [[1, 2], {"x": "on", "y": [{"z": "1:20"}]}], "b": "tab\there"}"#;
        let value: BTreeMap<String, Value> = serde_json::from_str(json).unwrap();
        let back: BTreeMap<String, Value> = serde_saphyr::from_str(&to_yaml(&value)).unwrap();
        assert_eq!(back, value);
    }
}
