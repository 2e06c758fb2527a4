//! `-o key=value,...` options, as qemu-img takes them.

use crate::error::{Error, Result};
use crate::size::parse_size;
use crate::suggest::closest;

/// Ordered `key=value` options. Later values for the same key replace earlier ones.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KvOptions {
    entries: Vec<(String, String)>,
}

impl KvOptions {
    /// Parses `a=b,c=d`. A key without `=` means `on` (qemu-img's flag form). `,,` escapes a
    /// comma inside a value, as in qemu.
    ///
    /// # Errors
    /// An empty key.
    pub fn parse(text: &str) -> Result<Self> {
        let mut options = Self::default();
        options.merge_str(text)?;
        Ok(options)
    }

    /// Adds the options of `text` to these.
    ///
    /// # Errors
    /// An empty key.
    pub fn merge_str(&mut self, text: &str) -> Result<()> {
        for item in split_items(text) {
            let (key, value) = item.split_once('=').unwrap_or((item.as_str(), "on"));
            let key = key.trim();
            if key.is_empty() {
                return Err(Error::invalid_input(format!("option `{item}` has no key")));
            }
            self.set(key, value.trim());
        }
        Ok(())
    }

    /// Sets `key` to `value`.
    pub fn set(&mut self, key: &str, value: &str) {
        self.entries.retain(|(k, _)| k != key);
        self.entries.push((key.to_string(), value.to_string()));
    }

    /// The value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.entries.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    /// Every `(key, value)` in the order given.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.entries.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// `key` as a boolean (`on/off`, `true/false`, `yes/no`, `1/0`).
    ///
    /// # Errors
    /// Any other value.
    pub fn get_bool(&self, key: &str) -> Result<Option<bool>> {
        let Some(value) = self.get(key) else { return Ok(None) };
        match value.to_ascii_lowercase().as_str() {
            "on" | "true" | "yes" | "1" => Ok(Some(true)),
            "off" | "false" | "no" | "0" => Ok(Some(false)),
            _ => Err(Error::invalid_input(format!(
                "option {key}={value}: expected on or off"
            ))),
        }
    }

    /// `key` as a size (`64K`, `2M`, `65536`).
    ///
    /// # Errors
    /// A value that is not a size.
    pub fn get_size(&self, key: &str) -> Result<Option<u64>> {
        let Some(value) = self.get(key) else { return Ok(None) };
        parse_size(value)
            .map(Some)
            .map_err(|e| Error::invalid_input(format!("option {key}={value}: {e}")))
    }

    /// `key` as an integer within `range`.
    ///
    /// # Errors
    /// A value that is not an integer in the range.
    pub fn get_u64_in(
        &self,
        key: &str,
        range: std::ops::RangeInclusive<u64>,
    ) -> Result<Option<u64>> {
        let Some(value) = self.get(key) else { return Ok(None) };
        match value.parse::<u64>() {
            Ok(n) if range.contains(&n) => Ok(Some(n)),
            _ => Err(Error::invalid_input(format!(
                "option {key}={value}: expected an integer from {} to {}",
                range.start(),
                range.end()
            ))),
        }
    }

    /// `key` as one of `choices` (case-insensitive); returns the canonical spelling.
    ///
    /// # Errors
    /// A value not among `choices`.
    pub fn get_choice(&self, key: &str, choices: &[&'static str]) -> Result<Option<&'static str>> {
        let Some(value) = self.get(key) else { return Ok(None) };
        if let Some(c) = choices.iter().find(|c| c.eq_ignore_ascii_case(value)) {
            return Ok(Some(c));
        }
        Err(Error::invalid_input(format!(
            "option {key}={value}: expected one of {}",
            choices.join(", ")
        )))
    }

    /// Fails on the first key not in `known`, suggesting the closest known key.
    ///
    /// # Errors
    /// An unknown key.
    pub fn check_known(&self, format: &str, known: &[&str]) -> Result<()> {
        for (key, _) in &self.entries {
            if known.contains(&key.as_str()) {
                continue;
            }
            let hint = match closest(key, known) {
                Some(k) => format!("; did you mean `{k}`?"),
                None if known.is_empty() => format!("; {format} takes no options"),
                None => format!("; {format} accepts {}", known.join(", ")),
            };
            return Err(Error::invalid_input(format!(
                "unknown {format} option `{key}`{hint}"
            )));
        }
        Ok(())
    }
}

fn split_items(text: &str) -> Vec<String> {
    let mut items = Vec::new();
    let mut current = String::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c != ',' {
            current.push(c);
        } else if chars.peek() == Some(&',') {
            chars.next();
            current.push(',');
        } else {
            items.push(std::mem::take(&mut current));
        }
    }
    items.push(current);
    items.into_iter().filter(|s| !s.trim().is_empty()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn later_value_wins() {
        let o = KvOptions::parse("compat=0.10,compat=1.1").unwrap();
        assert_eq!(o.get("compat"), Some("1.1"));
    }

    #[test]
    fn double_comma_escapes() {
        let o = KvOptions::parse("a=x,,y,b=2").unwrap();
        assert_eq!(o.get("a"), Some("x,y"));
    }

    #[test]
    fn unknown_key_suggests_closest() {
        let o = KvOptions::parse("prealocation=metadata").unwrap();
        let e = o.check_known("qcow2", &["preallocation", "compat"]).unwrap_err();
        assert!(e.to_string().contains("did you mean `preallocation`"), "{e}");
    }

    #[test]
    fn bad_bool_is_rejected() {
        let o = KvOptions::parse("force_size=maybe").unwrap();
        assert!(o.get_bool("force_size").is_err());
    }
}
