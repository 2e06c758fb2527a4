//! Reading a package's manifest (`.mf`, DSP0243 §5.1): one line per file,
//! `ALG(name)= hexdigest` with ALG one of SHA1, SHA256, SHA512, nothing else on the line,
//! LF line ends.
//!
//! A line that breaks the form is an error; if it is one of the near-misses tools write
//! (`openssl dgst`'s and `sha1sum --tag`'s `SHA1 (name) = hex`, upper-case hex) its digest
//! is still checked, so one syntax slip does not hide a wrong digest. vSphere refuses such
//! lines as an unknown algorithm: everything before `(` is what it reads as the name.

use crate::container::finding::Finding;
use crate::container::manifest::Algorithm;

/// Largest manifest read (a line per file; an OVA has a handful).
pub const MF_MAX_BYTES: u64 = 1 << 20;

/// One line's claim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Digest algorithm.
    pub alg: Algorithm,
    /// File name.
    pub name: String,
    /// Digest, lower-case hex.
    pub digest: String,
    /// 1-based line.
    pub line: usize,
}

/// A manifest's entries and what was wrong with its text.
#[derive(Debug, Clone, Default)]
pub struct Manifest {
    /// Entries in file order, one per name.
    pub entries: Vec<Entry>,
    /// Syntax findings.
    pub findings: Vec<Finding>,
}

impl Manifest {
    /// The algorithms used, without repeats, in first-use order.
    pub fn algorithms(&self) -> Vec<Algorithm> {
        let mut algs: Vec<Algorithm> = Vec::new();
        for e in &self.entries {
            if !algs.contains(&e.alg) {
                algs.push(e.alg);
            }
        }
        algs
    }
}

/// Parses manifest `bytes` named `name` (for places).
pub fn parse(bytes: &[u8], name: &str) -> Manifest {
    let mut mf = Manifest::default();
    let Ok(text) = std::str::from_utf8(bytes) else {
        mf.findings
            .push(Finding::error("mf.syntax", format!("{name} is not UTF-8 text")).at(name));
        return mf;
    };
    if text.contains('\r') {
        let f = Finding::error(
            "mf.syntax",
            "lines end with CR LF; a manifest's lines end with LF only",
        );
        mf.findings.push(f.at(name));
    }
    for (i, line) in text.lines().enumerate() {
        let line_no = i + 1;
        if line.trim().is_empty() {
            continue;
        }
        let place = format!("{name}:{line_no}");
        let entry = match strict(line) {
            Some(e) => Some(e),
            None => {
                mf.findings.push(syntax_finding(line).at(&place));
                lenient(line)
            }
        };
        let Some((alg, file, digest)) = entry else {
            continue;
        };
        add(&mut mf, alg, file, digest, line_no, &place);
    }
    mixed_and_sha512(&mut mf, name);
    mf
}

/// Records an entry after the per-entry checks.
fn add(mf: &mut Manifest, alg: Algorithm, file: &str, digest: &str, line: usize, place: &str) {
    if digest.len() != alg.hex_len() {
        let f = Finding::error(
            "mf.digest-length",
            format!(
                "{} digest of `{file}` has {} hex digits; {} has {}",
                alg.label(),
                digest.len(),
                alg.label(),
                alg.hex_len()
            ),
        );
        mf.findings.push(f.at(place));
        return;
    }
    if mf.entries.iter().any(|e| e.name == file) {
        let f = Finding::error("mf.duplicate", format!("`{file}` is listed more than once"));
        mf.findings.push(f.at(place));
        return;
    }
    mf.entries.push(Entry {
        alg,
        name: file.to_string(),
        digest: digest.to_ascii_lowercase(),
        line,
    });
}

fn mixed_and_sha512(mf: &mut Manifest, name: &str) {
    let algs = mf.algorithms();
    if algs.len() > 1 {
        let labels: Vec<&str> = algs.iter().map(|a| a.label()).collect();
        let f = Finding::warning(
            "mf.mixed-algorithms",
            format!("the manifest mixes {}", labels.join(" and ")),
        );
        mf.findings.push(f.at(name));
    }
    if algs.contains(&Algorithm::Sha512) {
        let f = Finding::warning(
            "mf.sha512",
            "virt-v2v 2.2 cannot parse SHA512 lines and skips the manifest check; SHA256 is read by every current importer",
        );
        mf.findings.push(f.at(name));
    }
}

/// `ALG(name)= hex`, exactly.
fn strict(line: &str) -> Option<(Algorithm, &str, &str)> {
    let (alg, rest) = line.split_once('(')?;
    let alg = algorithm(alg)?;
    let (file, rest) = rest.split_once(")= ")?;
    let digest_ok =
        !rest.is_empty() && rest.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    (!file.is_empty() && !file.contains(['/', '(', ')']) && digest_ok).then_some((alg, file, rest))
}

/// The near-misses: blanks around `(`, `)` and `=`, algorithm names in any case,
/// upper-case hex.
fn lenient(line: &str) -> Option<(Algorithm, &str, &str)> {
    let (alg, rest) = line.split_once('(')?;
    let alg = algorithm(&alg.trim().to_ascii_uppercase())?;
    let (file, rest) = rest.rsplit_once(')')?;
    let digest = rest.trim_start().strip_prefix('=')?.trim();
    let hex = !digest.is_empty() && digest.bytes().all(|b| b.is_ascii_hexdigit());
    (!file.is_empty() && hex).then_some((alg, file, digest))
}

fn algorithm(label: &str) -> Option<Algorithm> {
    match label {
        "SHA1" => Some(Algorithm::Sha1),
        "SHA256" => Some(Algorithm::Sha256),
        "SHA512" => Some(Algorithm::Sha512),
        _ => None,
    }
}

/// The finding for a line that is not `ALG(name)= hex`.
fn syntax_finding(line: &str) -> Finding {
    let shown: String = line.chars().take(120).collect();
    let message = format!(
        "line `{shown}` is not `ALG(name)= hexdigest` (ALG one of SHA1, SHA256, SHA512; no blank before `(` or `=`, one after `=`; lower-case hex)"
    );
    let f = Finding::error("mf.syntax", message);
    match line.split_once('(') {
        Some((alg, _)) if algorithm(alg).is_none() => {
            f.quoting("vSphere", format!("Invalid OVF checksum algorithm: {alg}"))
        }
        _ => f,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D256: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn codes(mf: &Manifest) -> Vec<&str> {
        mf.findings.iter().map(|f| f.code).collect()
    }

    #[test]
    fn the_dsp0243_form_parses_cleanly() {
        let mf = parse(format!("SHA256(a.ovf)= {D256}\n").as_bytes(), "a.mf");
        assert!(mf.findings.is_empty());
        assert_eq!(
            (mf.entries[0].name.as_str(), mf.entries[0].line),
            ("a.ovf", 1)
        );
    }

    #[test]
    fn the_openssl_form_is_an_error_in_vspheres_words_but_still_checked() {
        let mf = parse(format!("SHA256 (a.ovf) = {D256}\n").as_bytes(), "a.mf");
        assert_eq!(codes(&mf), ["mf.syntax"]);
        let quote = mf.findings[0].importer.as_ref().unwrap();
        assert_eq!(quote.says, "Invalid OVF checksum algorithm: SHA256 ");
        assert_eq!(mf.entries.len(), 1);
        assert_eq!(mf.findings[0].place.as_deref(), Some("a.mf:1"));
    }

    #[test]
    fn an_unknown_algorithm_is_quoted_and_not_checked() {
        let mf = parse(format!("SHA2-256(a.ovf)= {D256}\n").as_bytes(), "a.mf");
        let quote = mf.findings[0].importer.as_ref().unwrap();
        assert_eq!(quote.says, "Invalid OVF checksum algorithm: SHA2-256");
        assert!(mf.entries.is_empty());
    }

    #[test]
    fn a_short_digest_is_reported() {
        let mf = parse(b"SHA1(a.ovf)= abcd\n", "a.mf");
        assert_eq!(codes(&mf), ["mf.digest-length"]);
    }

    #[test]
    fn upper_case_hex_is_a_syntax_error() {
        let mf = parse(
            format!("SHA256(a.ovf)= {}\n", D256.to_uppercase()).as_bytes(),
            "a.mf",
        );
        assert_eq!(codes(&mf), ["mf.syntax"]);
        assert_eq!(mf.entries[0].digest, D256);
    }

    #[test]
    fn duplicates_and_crlf_are_reported() {
        let text = format!("SHA256(a.ovf)= {D256}\r\nSHA256(a.ovf)= {D256}\r\n");
        let mf = parse(text.as_bytes(), "a.mf");
        assert!(codes(&mf).contains(&"mf.duplicate"));
        assert!(codes(&mf).contains(&"mf.syntax"));
    }

    #[test]
    fn sha512_is_a_warning_for_virt_v2v() {
        let mf = parse(format!("SHA512(a.ovf)= {D256}{D256}\n").as_bytes(), "a.mf");
        assert_eq!(codes(&mf), ["mf.sha512"]);
    }

    #[test]
    fn a_name_with_a_slash_is_a_syntax_error() {
        let mf = parse(format!("SHA256(d/a.ovf)= {D256}\n").as_bytes(), "a.mf");
        assert_eq!(codes(&mf), ["mf.syntax"]);
    }
}
