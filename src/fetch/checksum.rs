//! Checksum files as distributions publish them: GNU coreutils lines (`HEX  NAME`,
//! `HEX *NAME`, `\`-escaped names) and BSD/`--tag` lines (`SHA256 (NAME) = HEX`), possibly
//! inside a PGP cleartext-signed wrapper (Fedora's `CHECKSUM`), whose armor lines, `Hash:`
//! headers and signature block are skipped (the wrapper's signature is not checked here;
//! `signature:` checks a detached one).
//!
//! A GNU line's algorithm is known by its length (32 hex digits: MD5, 40: SHA-1, 64:
//! SHA-256, 128: SHA-512); only SHA-256 and SHA-512 are accepted.

use super::error::FetchError;

/// The most names a "no line for NAME" error lists.
const SEEN_SHOWN: usize = 6;

/// A digest algorithm a checksum file may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Algo {
    /// Refused: broken.
    Md5,
    /// Refused: broken.
    Sha1,
    /// Not computed by kiln.
    Sha224,
    /// Accepted.
    Sha256,
    /// Not computed by kiln.
    Sha384,
    /// Accepted.
    Sha512,
}

impl Algo {
    fn name(self) -> &'static str {
        match self {
            Algo::Md5 => "MD5",
            Algo::Sha1 => "SHA1",
            Algo::Sha224 => "SHA224",
            Algo::Sha256 => "SHA256",
            Algo::Sha384 => "SHA384",
            Algo::Sha512 => "SHA512",
        }
    }

    fn by_hex_len(len: usize) -> Option<Algo> {
        Some(match len {
            32 => Algo::Md5,
            40 => Algo::Sha1,
            56 => Algo::Sha224,
            64 => Algo::Sha256,
            96 => Algo::Sha384,
            128 => Algo::Sha512,
            _ => return None,
        })
    }

    fn by_tag(tag: &str) -> Option<Algo> {
        Some(match tag.to_ascii_uppercase().replace('-', "").as_str() {
            "MD5" => Algo::Md5,
            "SHA1" => Algo::Sha1,
            "SHA224" => Algo::Sha224,
            "SHA256" => Algo::Sha256,
            "SHA384" => Algo::Sha384,
            "SHA512" => Algo::Sha512,
            _ => return None,
        })
    }
}

/// One digest line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Algorithm.
    pub algo: Algo,
    /// Lower-case hex.
    pub hex: String,
    /// File name as listed.
    pub name: String,
    /// 1-based line number.
    pub line: usize,
}

/// The digests a checksum file gives one name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Picked {
    /// SHA-256, lower-case hex.
    pub sha256: Option<String>,
    /// SHA-512, lower-case hex.
    pub sha512: Option<String>,
}

/// Every digest line of `text`; other lines (comments, armor, blank) are skipped.
pub fn parse(text: &str) -> Vec<Entry> {
    let mut out = Vec::new();
    let mut in_header = false;
    let mut in_signature = false;
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim_end_matches('\r');
        if line.starts_with("-----BEGIN PGP SIGNED MESSAGE-----") {
            in_header = true;
            continue;
        }
        if in_header {
            // Armor headers (`Hash: SHA256`) end at the first empty line.
            in_header = !line.trim().is_empty();
            continue;
        }
        if line.starts_with("-----BEGIN PGP SIGNATURE-----") {
            in_signature = true;
            continue;
        }
        if in_signature {
            in_signature = !line.starts_with("-----END PGP SIGNATURE-----");
            continue;
        }
        // Dash-escaped lines of a cleartext signature (RFC 9580 section 7.2).
        let line = line.strip_prefix("- ").unwrap_or(line);
        if let Some(e) = parse_bsd(line).or_else(|| parse_gnu(line)) {
            out.push(Entry { line: i + 1, ..e });
        }
    }
    out
}

/// `ALGO (NAME) = HEX`.
fn parse_bsd(line: &str) -> Option<Entry> {
    let (tag, rest) = line.split_once(" (")?;
    let (name, hex) = rest.rsplit_once(") = ")?;
    let algo = Algo::by_tag(tag.trim())?;
    let hex = hex.trim();
    is_hex(hex).then(|| Entry {
        algo,
        hex: hex.to_ascii_lowercase(),
        name: name.to_string(),
        line: 0,
    })
}

/// `HEX  NAME` or `HEX *NAME`; `\HEX  NAME` has `\\` and `\n` escapes in the name.
fn parse_gnu(line: &str) -> Option<Entry> {
    let (escaped, line) = match line.strip_prefix('\\') {
        Some(rest) => (true, rest),
        None => (false, line),
    };
    let (hex, rest) = line.split_once(' ')?;
    let algo = Algo::by_hex_len(hex.len()).filter(|_| is_hex(hex))?;
    let name = rest
        .strip_prefix('*')
        .or_else(|| rest.strip_prefix(' '))
        .unwrap_or(rest);
    let name = if escaped {
        unescape(name)
    } else {
        name.to_string()
    };
    (!name.is_empty()).then(|| Entry {
        algo,
        hex: hex.to_ascii_lowercase(),
        name,
        line: 0,
    })
}

fn unescape(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut chars = name.chars();
    while let Some(c) = chars.next() {
        match (c, c == '\\') {
            (_, true) => match chars.next() {
                Some('n') => out.push('\n'),
                Some(other) => out.push(other),
                None => out.push('\\'),
            },
            (c, false) => out.push(c),
        }
    }
    out
}

fn is_hex(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_hexdigit())
}

fn same_name(listed: &str, name: &str) -> bool {
    listed == name || listed.strip_prefix("./") == Some(name)
}

/// The SHA-256 and/or SHA-512 `text` gives `name`.
///
/// # Errors
/// No line for `name` (listing the names seen), only weaker digests, or two lines of one
/// algorithm.
pub fn pick(text: &str, name: &str, file: &str, at: &str) -> Result<Picked, FetchError> {
    let entries = parse(text);
    let mine: Vec<&Entry> = entries
        .iter()
        .filter(|e| same_name(&e.name, name))
        .collect();
    if mine.is_empty() {
        return Err(FetchError::ChecksumMissing {
            at: at.into(),
            file: file.into(),
            name: name.into(),
            seen: seen(&entries),
        });
    }
    let mut picked = Picked::default();
    for algo in [Algo::Sha256, Algo::Sha512] {
        let lines: Vec<&&Entry> = mine.iter().filter(|e| e.algo == algo).collect();
        if lines.len() > 1 {
            let numbers: Vec<String> = lines.iter().map(|e| format!("line {}", e.line)).collect();
            return Err(FetchError::ChecksumAmbiguous {
                at: at.into(),
                file: file.into(),
                name: name.into(),
                algo: algo.name(),
                count: lines.len(),
                lines: numbers.join(", "),
            });
        }
        let hex = lines.first().map(|e| e.hex.clone());
        match algo {
            Algo::Sha256 => picked.sha256 = hex,
            _ => picked.sha512 = hex,
        }
    }
    if picked.sha256.is_none() && picked.sha512.is_none() {
        let mut algos: Vec<&str> = mine.iter().map(|e| e.algo.name()).collect();
        algos.sort_unstable();
        algos.dedup();
        return Err(FetchError::ChecksumWeak {
            at: at.into(),
            file: file.into(),
            name: name.into(),
            algos: algos.join(", "),
        });
    }
    Ok(picked)
}

fn seen(entries: &[Entry]) -> String {
    if entries.is_empty() {
        return "none; not a GNU or BSD checksum file".into();
    }
    let mut shown: Vec<String> = (entries.iter().take(SEEN_SHOWN))
        .map(|e| format!("`{}` ({}, line {})", e.name, e.algo.name(), e.line))
        .collect();
    if entries.len() > SEEN_SHOWN {
        shown.push(format!("and {} more", entries.len() - SEEN_SHOWN));
    }
    shown.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

    fn pick_ok(text: &str, name: &str) -> Picked {
        pick(text, name, "SUMS", "spec").unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn gnu_text_and_binary_lines() {
        let text = format!("{A}  disk.img\n{B} *other.img\n");
        assert_eq!(pick_ok(&text, "disk.img").sha256.as_deref(), Some(A));
        assert_eq!(pick_ok(&text, "other.img").sha256.as_deref(), Some(B));
    }

    #[test]
    fn bsd_lines_with_sha512() {
        let long = "C".repeat(128);
        let text = format!("SHA512 (disk.img) = {long}\nSHA256 (disk.img) = {A}\n");
        let p = pick_ok(&text, "disk.img");
        assert_eq!(p.sha512, Some("c".repeat(128)));
        assert_eq!(p.sha256.as_deref(), Some(A));
    }

    #[test]
    fn fedora_cleartext_signed_wrapper_is_skipped() {
        let text = format!(
            "-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA256\n\n# Fedora-Cloud.raw.xz: 1 bytes\nSHA256 (Fedora-Cloud.raw.xz) = {A}\n-----BEGIN PGP SIGNATURE-----\n\n{B}  fake\n-----END PGP SIGNATURE-----\n"
        );
        let entries = parse(&text);
        assert_eq!(entries.len(), 1, "{entries:?}");
        assert_eq!(
            pick_ok(&text, "Fedora-Cloud.raw.xz").sha256.as_deref(),
            Some(A)
        );
    }

    #[test]
    fn missing_name_lists_what_it_saw() {
        let text = format!("{A}  one.img\n");
        let e = pick(&text, "two.img", "SUMS", "spec")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("no line for `two.img`") && e.contains("`one.img`"),
            "{e}"
        );
    }

    #[test]
    fn two_lines_for_the_name_are_refused() {
        let text = format!("{A}  disk.img\n{B}  ./disk.img\n");
        let e = pick(&text, "disk.img", "SUMS", "spec")
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 1, line 2"), "{e}");
    }

    #[test]
    fn md5_and_sha1_only_are_refused() {
        let text = format!(
            "{}  disk.img\n{}  disk.img\n",
            "0".repeat(32),
            "1".repeat(40)
        );
        let e = pick(&text, "disk.img", "SUMS", "spec")
            .unwrap_err()
            .to_string();
        assert!(e.contains("only MD5, SHA1"), "{e}");
    }

    #[test]
    fn escaped_gnu_names() {
        let text = format!("\\{A}  a\\\\b\\nc\n");
        assert_eq!(parse(&text)[0].name, "a\\b\nc");
    }
}
