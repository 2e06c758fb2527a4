//! cloud-init NoCloud seeds (cloud-init docs, "NoCloud"): an ISO 9660 image labelled
//! `cidata` (Rock Ridge + Joliet, as `cloud-localds` makes it) or a FAT image labelled
//! `CIDATA` (boot sector and root-directory label), holding `user-data`, `meta-data` and
//! optionally `network-config` and `vendor-data`.
//!
//! Before anything is written the files are checked the way cloud-init 22.4 reads them:
//! user-data and vendor-data must start with a type cloud-init knows (`#cloud-config`,
//! `#!`, `#include`, `#cloud-boothook`, `## template: jinja`, MIME, gzip, ...) or be empty;
//! a `#cloud-config` part must be a YAML mapping; meta-data a YAML mapping, given an
//! `instance-id` (a stable hash of the content) when it has none; network-config a
//! mapping with `version: 1` or `2` (optionally under `network:`). YAML errors give
//! line:column.
//!
//! Refused: user-data cloud-init would silently ignore, meta-data in flow style that needs
//! an added key, a hostname that conflicts with meta-data's `local-hostname`.

use std::fmt;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::str::FromStr;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use sha2::{Digest, Sha256};

use crate::context::BuildContext;
use crate::disk::iso::{IsoEntry, IsoOptions, IsoSource, IsoWriter};
use crate::error::{Error, ErrorKind, Result};
use crate::fs::fat::{FatFile, write_fat_image};
use crate::io::output::OutputSet;

/// ISO volume label cloud-init looks for (as `cloud-localds` writes it).
pub const SEED_ISO_LABEL: &str = "cidata";
/// FAT volume label cloud-init looks for.
pub const SEED_FAT_LABEL: &str = "CIDATA";
/// First-line markers of user-data parts cloud-init 22.4 handles (`user_data.py`,
/// `INCLUSION_TYPES_MAP`).
const USER_DATA_PREFIXES: &[&str] = &[
    "#cloud-config",
    "#!",
    "#include",
    "#include-once",
    "#cloud-boothook",
    "#upstart-job",
    "#part-handler",
    "#cloud-config-archive",
    "#cloud-config-jsonp",
    "## template: jinja",
    "Content-Type:",
    "MIME-Version:",
];

/// The contents of one seed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SeedSpec {
    /// `user-data` (may be empty).
    pub user_data: Vec<u8>,
    /// `meta-data`; `None` generates one with an `instance-id`.
    pub meta_data: Option<Vec<u8>>,
    /// `network-config` (v1 or v2), if any.
    pub network_config: Option<Vec<u8>>,
    /// `vendor-data`, if any.
    pub vendor_data: Option<Vec<u8>>,
    /// `local-hostname` to put in meta-data.
    pub hostname: Option<String>,
    /// SSH public keys to put in meta-data's `public-keys`.
    pub ssh_keys: Vec<String>,
}

/// The image type of a seed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SeedFormat {
    /// ISO 9660 labelled `cidata`.
    #[default]
    Iso,
    /// FAT12/16 labelled `CIDATA`.
    Vfat,
}

impl FromStr for SeedFormat {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "iso" | "iso9660" => Ok(SeedFormat::Iso),
            "vfat" | "fat" => Ok(SeedFormat::Vfat),
            _ => Err(Error::invalid_input(format!(
                "unknown seed format `{s}`; expected iso or vfat"
            ))),
        }
    }
}

/// Why seed contents are refused.
#[remain::sorted]
#[derive(Debug, thiserror::Error)]
pub enum SeedError {
    /// The hostname is not a valid DNS name.
    #[error("hostname `{hostname}` is not a valid host name (letters, digits, - and . only)")]
    BadHostname {
        /// The name.
        hostname: String,
    },
    /// An SSH key line does not look like a public key.
    #[error("SSH key line {line} does not start with a key type (ssh-..., ecdsa-..., sk-...)")]
    BadSshKey {
        /// 1-based line in the key text.
        line: usize,
    },
    /// A YAML document does not parse.
    #[error("{file} is not valid YAML at line {line}, column {column}: {message}")]
    BadYaml {
        /// Which seed file.
        file: &'static str,
        /// 1-based line.
        line: u64,
        /// 1-based column.
        column: u64,
        /// Parser message.
        message: String,
    },
    /// A key cannot be added to meta-data written in flow style.
    #[error("cannot add `{key}` to meta-data in this form; add it to the file yourself")]
    CannotAddKey {
        /// The key.
        key: &'static str,
    },
    /// meta-data already has a different value.
    #[error("meta-data sets {key} to `{existing}`, which conflicts with `{given}`")]
    Conflict {
        /// The key.
        key: &'static str,
        /// Value in meta-data.
        existing: String,
        /// Value given.
        given: String,
    },
    /// network-config has no usable version.
    #[error("network-config needs `version: 1` or `version: 2`{found}")]
    NetworkVersion {
        /// What was found, for the message.
        found: String,
    },
    /// A document is not a mapping.
    #[error("{file} must be a YAML mapping (key: value lines), not {found}")]
    NotAMapping {
        /// Which seed file.
        file: &'static str,
        /// What it is instead.
        found: &'static str,
    },
    /// user-data has no type cloud-init knows, so it would be ignored.
    #[error(
        "{file} starts with `{first_line}`; cloud-init ignores data that does not start with #cloud-config, #!, #include, #cloud-boothook, ## template: jinja or a MIME header"
    )]
    UnknownUserDataType {
        /// Which seed file.
        file: &'static str,
        /// Its first line (shortened).
        first_line: String,
    },
}

impl From<SeedError> for Error {
    fn from(e: SeedError) -> Self {
        Error::new(ErrorKind::InvalidInput, e)
    }
}

/// A YAML value shape: enough to check mappings and read scalar keys, whatever the keys.
#[derive(Debug, Clone, PartialEq)]
enum Yaml {
    Null,
    Scalar(String),
    Seq,
    Map(Vec<(Yaml, Yaml)>),
}

impl Yaml {
    fn kind(&self) -> &'static str {
        match self {
            Yaml::Null => "empty",
            Yaml::Scalar(_) => "a scalar",
            Yaml::Seq => "a list",
            Yaml::Map(_) => "a mapping",
        }
    }

    fn get(&self, key: &str) -> Option<&Yaml> {
        let Yaml::Map(entries) = self else {
            return None;
        };
        entries
            .iter()
            .find(|(k, _)| matches!(k, Yaml::Scalar(s) if s == key))
            .map(|(_, v)| v)
    }

    fn scalar(&self) -> Option<&str> {
        match self {
            Yaml::Scalar(s) => Some(s),
            _ => None,
        }
    }
}

struct YamlVisitor;

impl<'de> Visitor<'de> for YamlVisitor {
    type Value = Yaml;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any YAML value")
    }
    fn visit_unit<E: de::Error>(self) -> Result<Yaml, E> {
        Ok(Yaml::Null)
    }
    fn visit_none<E: de::Error>(self) -> Result<Yaml, E> {
        Ok(Yaml::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Yaml, D::Error> {
        Yaml::deserialize(d)
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Yaml, E> {
        Ok(Yaml::Scalar(v.to_string()))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Yaml, E> {
        Ok(Yaml::Scalar(v.to_string()))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Yaml, E> {
        Ok(Yaml::Scalar(v.to_string()))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Yaml, E> {
        Ok(Yaml::Scalar(v.to_string()))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Yaml, E> {
        Ok(Yaml::Scalar(v.to_string()))
    }
    fn visit_bytes<E: de::Error>(self, _v: &[u8]) -> Result<Yaml, E> {
        Ok(Yaml::Scalar(String::new()))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Yaml, A::Error> {
        while seq.next_element::<Yaml>()?.is_some() {}
        Ok(Yaml::Seq)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Yaml, A::Error> {
        let mut entries = Vec::new();
        while let Some((k, v)) = map.next_entry::<Yaml, Yaml>()? {
            entries.push((k, v));
        }
        Ok(Yaml::Map(entries))
    }
}

impl<'de> Deserialize<'de> for Yaml {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(YamlVisitor)
    }
}

fn parse_yaml(file: &'static str, bytes: &[u8]) -> Result<Yaml> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(Yaml::Null);
    }
    serde_saphyr::from_slice::<Yaml>(bytes).map_err(|e| {
        let (line, column) = e.location().map_or((0, 0), |l| (l.line(), l.column()));
        let message = e.without_snippet().to_string();
        let message = message.lines().next().unwrap_or_default();
        // The parser repeats the position; it is already in our message.
        let message = message
            .split(" at line ")
            .next()
            .unwrap_or(message)
            .to_string();
        SeedError::BadYaml {
            file,
            line,
            column,
            message,
        }
        .into()
    })
}

fn parse_mapping(file: &'static str, bytes: &[u8]) -> Result<Yaml> {
    match parse_yaml(file, bytes)? {
        Yaml::Null => Ok(Yaml::Map(Vec::new())),
        map @ Yaml::Map(_) => Ok(map),
        other => Err(SeedError::NotAMapping {
            file,
            found: other.kind(),
        }
        .into()),
    }
}

/// Checks user-data (or vendor-data, named by `file`) the way cloud-init classifies it.
///
/// # Errors
/// An unknown first line, or a `#cloud-config` part that is not a YAML mapping.
pub fn check_user_data(file: &'static str, bytes: &[u8]) -> Result<()> {
    if bytes.iter().all(u8::is_ascii_whitespace) || bytes.starts_with(&[0x1f, 0x8b]) {
        return Ok(());
    }
    let text = String::from_utf8_lossy(bytes);
    let first_line = text.lines().next().unwrap_or_default().trim_end();
    let Some(prefix) = USER_DATA_PREFIXES
        .iter()
        .find(|p| first_line.starts_with(**p))
    else {
        let first_line: String = first_line.chars().take(40).collect();
        return Err(SeedError::UnknownUserDataType { file, first_line }.into());
    };
    let is_cloud_config = *prefix == "#cloud-config" && first_line.trim_end() == "#cloud-config";
    if is_cloud_config {
        match parse_yaml(file, bytes)? {
            Yaml::Null | Yaml::Map(_) => {}
            other => {
                return Err(SeedError::NotAMapping {
                    file,
                    found: other.kind(),
                }
                .into());
            }
        }
    }
    Ok(())
}

/// Checks meta-data: a YAML mapping (or empty).
///
/// # Errors
/// Invalid YAML (with line:column) or not a mapping.
pub fn check_meta_data(bytes: &[u8]) -> Result<()> {
    parse_mapping("meta-data", bytes).map(|_| ())
}

/// Checks network-config: a mapping with `version` 1 or 2, optionally under `network:`.
///
/// # Errors
/// Invalid YAML (with line:column), not a mapping, or a missing or unknown version.
pub fn check_network_config(bytes: &[u8]) -> Result<()> {
    let doc = parse_mapping("network-config", bytes)?;
    let doc = match doc.get("network") {
        Some(inner @ Yaml::Map(_)) => inner,
        _ => &doc,
    };
    if doc.get("config").and_then(Yaml::scalar) == Some("disabled") {
        return Ok(());
    }
    match doc.get("version").and_then(Yaml::scalar) {
        Some("1" | "2") => Ok(()),
        Some(v) => Err(SeedError::NetworkVersion {
            found: format!(", found `{v}`"),
        }
        .into()),
        None => Err(SeedError::NetworkVersion {
            found: String::new(),
        }
        .into()),
    }
}

fn check_hostname(hostname: &str) -> Result<()> {
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    };
    if hostname.len() > 253 || !hostname.split('.').all(label_ok) {
        return Err(SeedError::BadHostname {
            hostname: hostname.to_string(),
        }
        .into());
    }
    Ok(())
}

/// The public keys in an `authorized_keys`-style text, one per line.
///
/// # Errors
/// A line that does not start with a key type.
pub fn parse_ssh_keys(text: &str) -> Result<Vec<String>> {
    let mut keys = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if !["ssh-", "ecdsa-", "sk-"]
            .iter()
            .any(|p| line.starts_with(p))
        {
            return Err(SeedError::BadSshKey { line: i + 1 }.into());
        }
        keys.push(line.to_string());
    }
    Ok(keys)
}

/// A YAML double-quoted scalar.
fn quoted(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A stable instance id: SHA-256 over every input, length-prefixed.
fn instance_id(spec: &SeedSpec) -> String {
    let mut h = Sha256::new();
    let mut part = |bytes: &[u8]| {
        h.update((bytes.len() as u64).to_le_bytes());
        h.update(bytes);
    };
    part(&spec.user_data);
    part(spec.meta_data.as_deref().unwrap_or_default());
    part(spec.network_config.as_deref().unwrap_or_default());
    part(spec.vendor_data.as_deref().unwrap_or_default());
    part(spec.hostname.as_deref().unwrap_or_default().as_bytes());
    for key in &spec.ssh_keys {
        part(key.as_bytes());
    }
    let digest = h.finalize();
    let hex: String = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
    format!("iid-{hex}")
}

/// meta-data as written: the given document plus the keys kiln adds (`instance-id`,
/// `local-hostname`, `public-keys`).
///
/// # Errors
/// meta-data that is not a mapping, conflicting keys, a bad hostname.
pub fn render_meta_data(spec: &SeedSpec) -> Result<Vec<u8>> {
    let given = spec.meta_data.clone().unwrap_or_default();
    let doc = parse_mapping("meta-data", &given)?;
    let mut extra = String::new();
    let mut added = Vec::new();
    let has_id = doc
        .get("instance-id")
        .and_then(Yaml::scalar)
        .is_some_and(|s| !s.trim().is_empty());
    if !has_id {
        extra.push_str(&format!("instance-id: {}\n", instance_id(spec)));
        added.push("instance-id");
    }
    if let Some(host) = &spec.hostname {
        check_hostname(host)?;
        match doc.get("local-hostname").and_then(Yaml::scalar) {
            Some(existing) if existing != host => {
                let (existing, given) = (existing.to_string(), host.clone());
                return Err(SeedError::Conflict {
                    key: "local-hostname",
                    existing,
                    given,
                }
                .into());
            }
            Some(_) => {}
            None => {
                extra.push_str(&format!("local-hostname: {}\n", quoted(host)));
                added.push("local-hostname");
            }
        }
    }
    if !spec.ssh_keys.is_empty() {
        if doc.get("public-keys").is_some() {
            let existing = "a list".to_string();
            return Err(SeedError::Conflict {
                key: "public-keys",
                existing,
                given: "--ssh-key".into(),
            }
            .into());
        }
        extra.push_str("public-keys:\n");
        for key in &spec.ssh_keys {
            extra.push_str(&format!("  - {}\n", quoted(key)));
        }
        added.push("public-keys");
    }
    let mut out = given;
    if !out.is_empty() && !out.ends_with(b"\n") {
        out.push(b'\n');
    }
    out.extend_from_slice(extra.as_bytes());
    // Appending keeps the user's text; check the result is still the mapping we meant.
    let check = parse_mapping("meta-data", &out);
    let ok = check
        .as_ref()
        .is_ok_and(|d| added.iter().all(|k| d.get(k).is_some()));
    if !ok {
        return Err(SeedError::CannotAddKey {
            key: added.first().copied().unwrap_or("instance-id"),
        }
        .into());
    }
    Ok(out)
}

/// Validates `spec` and returns the seed's files (name, contents), sorted by name.
///
/// # Errors
/// Any of the checks in the module documentation.
pub fn seed_files(spec: &SeedSpec) -> Result<Vec<(&'static str, Vec<u8>)>> {
    check_user_data("user-data", &spec.user_data)?;
    let mut files = vec![("meta-data", render_meta_data(spec)?)];
    if let Some(net) = &spec.network_config {
        check_network_config(net)?;
        files.push(("network-config", net.clone()));
    }
    files.push(("user-data", spec.user_data.clone()));
    if let Some(vendor) = &spec.vendor_data {
        check_user_data("vendor-data", vendor)?;
        files.push(("vendor-data", vendor.clone()));
    }
    Ok(files)
}

/// The seed ISO for `spec` in memory (a few KiB: the parts' size), byte for byte what
/// [`write_seed`] writes with the same context: a package carries it as a CD-ROM.
///
/// # Errors
/// Invalid contents.
pub fn seed_iso_bytes(spec: &SeedSpec, ctx: &BuildContext) -> Result<Vec<u8>> {
    let mut bytes = Vec::new();
    seed_iso_writer(seed_files(spec)?, ctx)?.write_to(ctx, &mut bytes)?;
    Ok(bytes)
}

/// The ISO writer of a seed holding `files`, labelled `cidata`.
fn seed_iso_writer(files: Vec<(&'static str, Vec<u8>)>, ctx: &BuildContext) -> Result<IsoWriter> {
    let options = IsoOptions {
        volume_label: SEED_ISO_LABEL.to_string(),
        publisher: String::new(),
        application_id: ctx.creator.clone(),
        ..IsoOptions::default()
    };
    let mut writer = IsoWriter::new(options)?;
    for (name, data) in files {
        writer.add(IsoEntry::new(name, IsoSource::Bytes(data), 0o644))?;
    }
    Ok(writer)
}

/// Writes the seed for `spec` to `out_path` (through a partial file renamed when complete).
///
/// # Errors
/// Invalid contents (nothing is written then), an existing output without `force`, I/O.
pub fn write_seed(
    spec: &SeedSpec,
    format: SeedFormat,
    ctx: &BuildContext,
    out_path: &Path,
    force: bool,
) -> Result<()> {
    let files = seed_files(spec)?;
    match format {
        SeedFormat::Iso => {
            seed_iso_writer(files, ctx)?.write_file(ctx, out_path, force)?;
            Ok(())
        }
        SeedFormat::Vfat => {
            let files: Vec<FatFile> = files
                .into_iter()
                .map(|(name, data)| FatFile {
                    name: name.to_string(),
                    data,
                })
                .collect();
            let mut outputs = OutputSet::new(out_path, force);
            (|| {
                let mut out = BufWriter::with_capacity(1 << 20, outputs.create_primary()?);
                write_fat_image(SEED_FAT_LABEL, &files, ctx, &mut out)?;
                out.flush()?;
                Ok::<_, Error>(())
            })()
            .map_err(|e| e.with_path(out_path))?;
            outputs.commit()?;
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cloud_config_yaml_error_has_line_and_column() {
        let err = check_user_data(
            "user-data",
            b"#cloud-config\nusers:\n  - name: a\n   bad: [\n",
        )
        .unwrap_err();
        let text = err.to_string();
        assert!(text.contains("line "), "{text}");
        assert!(text.contains("column "), "{text}");
    }

    #[test]
    fn shell_script_user_data_is_accepted() {
        check_user_data("user-data", b"#!/bin/sh\necho hi\n").unwrap();
    }

    #[test]
    fn plain_text_user_data_is_refused() {
        assert!(check_user_data("user-data", b"hello\n").is_err());
    }

    #[test]
    fn cloud_config_list_is_refused() {
        assert!(check_user_data("user-data", b"#cloud-config\n- a\n").is_err());
    }

    #[test]
    fn network_config_version_3_is_refused() {
        assert!(check_network_config(b"version: 3\n").is_err());
    }

    #[test]
    fn network_config_under_network_key_is_accepted() {
        check_network_config(b"network:\n  version: 2\n  ethernets: {}\n").unwrap();
    }

    #[test]
    fn generated_meta_data_has_stable_instance_id() {
        let spec = SeedSpec {
            user_data: b"#cloud-config\n{}\n".to_vec(),
            ..SeedSpec::default()
        };
        let a = render_meta_data(&spec).unwrap();
        assert_eq!(a, render_meta_data(&spec).unwrap());
        assert!(a.starts_with(b"instance-id: iid-"));
    }

    #[test]
    fn conflicting_hostname_is_refused() {
        let spec = SeedSpec {
            meta_data: Some(b"instance-id: x\nlocal-hostname: a\n".to_vec()),
            hostname: Some("b".into()),
            ..SeedSpec::default()
        };
        assert!(render_meta_data(&spec).is_err());
    }

    #[test]
    fn flow_style_meta_data_without_id_is_refused() {
        let spec = SeedSpec {
            meta_data: Some(b"{a: b}".to_vec()),
            ..SeedSpec::default()
        };
        assert!(render_meta_data(&spec).is_err());
    }
}
