//! Human sizes as users type them: `8G`, `8GiB`, `512M`, `1.5T`, `4096`, `20 GB`.
//!
//! Like qemu-img, single-letter suffixes are binary (`8G` = 8 GiB). `KB`/`MB`/`GB`/`TB` are
//! decimal; `KiB`/`MiB`/... binary. A bare number is bytes.

use std::fmt;

/// Why a size string was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SizeError {
    /// The input was empty.
    #[error("empty size; expected a number with an optional unit such as 8G or 512MiB")]
    Empty,
    /// The number part did not parse.
    #[error("`{input}` is not a size; expected a number with an optional unit such as 8G or 512MiB")]
    NotANumber {
        /// What the user typed.
        input: String,
    },
    /// The size does not fit in 64 bits or is not a whole number of bytes.
    #[error("`{input}` is too large or not a whole number of bytes")]
    OutOfRange {
        /// What the user typed.
        input: String,
    },
    /// An unknown unit.
    #[error("`{unit}` in `{input}` is not a size unit; use B, K, M, G, T, P, KiB..PiB or KB..PB")]
    UnknownUnit {
        /// What the user typed.
        input: String,
        /// The unit part.
        unit: String,
    },
}

/// Parses a size in bytes.
///
/// # Errors
/// [`SizeError`] for empty input, bad numbers, unknown units, negative or overflowing values.
pub fn parse_size(input: &str) -> Result<u64, SizeError> {
    let s = input.trim();
    if s.is_empty() {
        return Err(SizeError::Empty);
    }
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let not_a_number = || SizeError::NotANumber { input: input.to_string() };
    if number.is_empty() {
        return Err(not_a_number());
    }
    let multiplier = unit_multiplier(unit.trim()).ok_or_else(|| SizeError::UnknownUnit {
        input: input.to_string(),
        unit: unit.trim().to_string(),
    })?;
    let out_of_range = || SizeError::OutOfRange { input: input.to_string() };
    if let Some((whole, frac)) = number.split_once('.') {
        return parse_fraction(whole, frac, multiplier).ok_or_else(|| {
            if frac.contains('.') { not_a_number() } else { out_of_range() }
        });
    }
    let value: u64 = number.parse().map_err(|_| out_of_range())?;
    value.checked_mul(multiplier).ok_or_else(out_of_range)
}

/// `whole.frac × multiplier`, only when the result is a whole number of bytes.
fn parse_fraction(whole: &str, frac: &str, multiplier: u64) -> Option<u64> {
    if frac.is_empty() || frac.len() > 12 || frac.contains('.') {
        return None;
    }
    let whole: u64 = if whole.is_empty() { 0 } else { whole.parse().ok()? };
    let frac_value: u128 = frac.parse().ok()?;
    let scale = 10u128.pow(u32::try_from(frac.len()).ok()?);
    let frac_bytes = frac_value.checked_mul(u128::from(multiplier))?;
    if frac_bytes % scale != 0 {
        return None;
    }
    let total = u128::from(whole).checked_mul(u128::from(multiplier))? + frac_bytes / scale;
    u64::try_from(total).ok()
}

fn unit_multiplier(unit: &str) -> Option<u64> {
    const K: u64 = 1024;
    let m = match unit {
        "" | "b" | "B" => 1,
        "k" | "K" | "KiB" => K,
        "M" | "MiB" => K.pow(2),
        "G" | "GiB" => K.pow(3),
        "T" | "TiB" => K.pow(4),
        "P" | "PiB" => K.pow(5),
        "E" | "EiB" => K.pow(6),
        "kB" | "KB" => 1000,
        "MB" => 1000u64.pow(2),
        "GB" => 1000u64.pow(3),
        "TB" => 1000u64.pow(4),
        "PB" => 1000u64.pow(5),
        _ => return None,
    };
    Some(m)
}

/// A byte count shown the way qemu-img shows it: `8 GiB`, `1.5 MiB`, `512 B`.
#[derive(Debug, Clone, Copy)]
pub struct HumanSize(pub u64);

impl fmt::Display for HumanSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
        if self.0 < 1024 {
            return write!(f, "{} B", self.0);
        }
        let mut value = self.0 as f64 / 1024.0;
        let mut unit = 0;
        while value >= 1024.0 && unit < UNITS.len() - 1 {
            value /= 1024.0;
            unit += 1;
        }
        let text = format!("{value:.3}");
        let text = text.trim_end_matches('0').trim_end_matches('.');
        write!(f, "{text} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_letter_suffix_is_binary() {
        assert_eq!(parse_size("8G"), Ok(8 << 30));
    }

    #[test]
    fn iec_suffix_is_binary() {
        assert_eq!(parse_size("512MiB"), Ok(512 << 20));
    }

    #[test]
    fn si_suffix_is_decimal() {
        assert_eq!(parse_size("20GB"), Ok(20_000_000_000));
    }

    #[test]
    fn bare_number_is_bytes() {
        assert_eq!(parse_size("4096"), Ok(4096));
    }

    #[test]
    fn fraction_of_a_unit_is_accepted_when_whole_bytes() {
        assert_eq!(parse_size("1.5G"), Ok(3 << 29));
    }

    #[test]
    fn fraction_that_is_not_whole_bytes_is_rejected() {
        assert!(matches!(parse_size("1.3B"), Err(SizeError::OutOfRange { .. })));
    }

    #[test]
    fn negative_size_is_rejected() {
        assert!(matches!(parse_size("-1G"), Err(SizeError::NotANumber { .. })));
    }

    #[test]
    fn unknown_unit_is_rejected() {
        assert!(matches!(parse_size("8 gallons"), Err(SizeError::UnknownUnit { .. })));
    }

    #[test]
    fn overflow_is_rejected() {
        assert!(matches!(parse_size("99999999E"), Err(SizeError::OutOfRange { .. })));
    }

    #[test]
    fn human_size_trims_zeros() {
        assert_eq!(HumanSize(8 << 30).to_string(), "8 GiB");
    }
}
