//! Byte units as descriptors write them: DSP0004's programmatic units (`byte * 2^30`,
//! `byte*2^20`, `kilobyte`, `byte * 1024`) and the spellings VirtualBox and older
//! exporters use (`MegaBytes`, `GigaBytes`, `MB`, `GB`, `KB`). DSP0243 reads a capacity
//! without units as bytes.

/// How a unit string was read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteUnit {
    /// Bytes per unit.
    pub bytes: u64,
    /// The spelling is DSP0004's grammar (what vSphere and govmomi read); `false` for
    /// vendor words like `MegaBytes` and for blanks around `^`.
    pub standard: bool,
}

/// The multiplier of unit text `text` (`None`: missing, which means bytes), or `None` when
/// it is not a byte unit or overflows 64 bits.
pub fn parse_byte_unit(text: Option<&str>) -> Option<ByteUnit> {
    let Some(text) = text.map(str::trim).filter(|t| !t.is_empty()) else {
        return Some(ByteUnit {
            bytes: 1,
            standard: true,
        });
    };
    if let Some(bytes) = vendor_word(text) {
        return Some(ByteUnit {
            bytes,
            standard: false,
        });
    }
    // DSP0004 allows no blanks around `^`; ovftool and VirtualBox accept them.
    let squeezed: String = text.split('^').map(str::trim).collect::<Vec<_>>().join("^");
    let bytes = programmatic(&squeezed)?;
    Some(ByteUnit {
        bytes,
        standard: squeezed == text,
    })
}

/// VirtualBox's and older exporters' unit words (binary multiples, as VirtualBox reads them).
fn vendor_word(text: &str) -> Option<u64> {
    match text.to_ascii_lowercase().as_str() {
        "kb" | "kilobytes" => Some(1 << 10),
        "mb" | "megabytes" => Some(1 << 20),
        "gb" | "gigabytes" => Some(1 << 30),
        "tb" | "terabytes" => Some(1 << 40),
        _ => None,
    }
}

/// DSP0004 programmatic units over `byte`: one byte word with an optional decimal or
/// binary prefix, times integers and `base^exponent` factors.
fn programmatic(text: &str) -> Option<u64> {
    let mut bytes: u64 = 1;
    let mut unit = false;
    for token in text.split('*').map(str::trim) {
        let factor = if let Some(prefix) = byte_word(token) {
            if unit {
                return None;
            }
            unit = true;
            prefix
        } else if let Some((base, exp)) = token.split_once('^') {
            let base: u64 = positive(base)?;
            let exp: u32 = positive(exp)?;
            base.checked_pow(exp)?
        } else {
            positive(token)?
        };
        bytes = bytes.checked_mul(factor)?;
    }
    unit.then_some(bytes)
}

/// The multiplier of `byte`, `bytes`, `kilobyte`, `kibibyte`, ... (any case).
fn byte_word(token: &str) -> Option<u64> {
    let lower = token.to_ascii_lowercase();
    let stem = lower
        .strip_suffix('s')
        .unwrap_or(&lower)
        .strip_suffix("byte")?;
    Some(match stem {
        "" => 1,
        "kilo" => 1_000,
        "kibi" => 1 << 10,
        "mega" => 1_000_000,
        "mebi" => 1 << 20,
        "giga" => 1_000_000_000,
        "gibi" => 1 << 30,
        "tera" => 1_000_000_000_000,
        "tebi" => 1 << 40,
        _ => return None,
    })
}

/// A decimal number without sign or leading zero, above zero.
fn positive<T: std::str::FromStr + PartialOrd + Default>(text: &str) -> Option<T> {
    let text = text.trim();
    if text.is_empty() || text.starts_with('0') || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok().filter(|v| *v > T::default())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes(text: Option<&str>) -> Option<u64> {
        parse_byte_unit(text).map(|u| u.bytes)
    }

    #[test]
    fn missing_units_are_bytes() {
        assert_eq!(bytes(None), Some(1));
        assert_eq!(bytes(Some(" ")), Some(1));
    }

    #[test]
    fn dsp0004_spellings_are_read() {
        assert_eq!(bytes(Some("byte")), Some(1));
        assert_eq!(bytes(Some("byte * 2^20")), Some(1 << 20));
        assert_eq!(bytes(Some("byte*2^30")), Some(1 << 30));
        assert_eq!(bytes(Some("kilobyte")), Some(1000));
        assert_eq!(bytes(Some("byte * 1024")), Some(1024));
        assert_eq!(bytes(Some("byte * 10^3 * 2")), Some(2000));
    }

    #[test]
    fn vendor_words_are_binary_and_not_standard() {
        let unit = parse_byte_unit(Some("MegaBytes")).unwrap();
        assert_eq!((unit.bytes, unit.standard), (1 << 20, false));
        assert_eq!(bytes(Some("GigaBytes")), Some(1 << 30));
        assert_eq!(bytes(Some("GB")), Some(1 << 30));
    }

    #[test]
    fn blanks_around_the_caret_are_read_but_flagged() {
        let unit = parse_byte_unit(Some("byte * 2 ^ 30")).unwrap();
        assert_eq!((unit.bytes, unit.standard), (1 << 30, false));
    }

    #[test]
    fn non_byte_units_are_refused() {
        assert_eq!(bytes(Some("hertz * 10^6")), None);
        assert_eq!(bytes(Some("2^20")), None);
        assert_eq!(bytes(Some("byte * byte")), None);
    }

    #[test]
    fn overflow_is_refused() {
        assert_eq!(bytes(Some("byte * 2^64")), None);
        assert_eq!(bytes(Some("byte * 10^19 * 10")), None);
    }
}
