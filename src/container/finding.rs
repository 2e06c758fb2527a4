//! Findings: what checking a package reports. Each has a severity, a stable code (tests and
//! scripts match on it, as on check-ova's), the place (`app.mf:2`, `app.ovf:14`, a member
//! and its header offset), a one-sentence message, and, where a real importer refuses the
//! same defect with words of its own, those words, so a user can match kiln's report with
//! the error they got.

use serde::Serialize;

/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Importers refuse the package, or it is not what it says it is.
    Error,
    /// Some importers refuse or misread it, or it is unusual enough to look at.
    Warning,
}

/// What a named importer prints for the same defect.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Quote {
    /// The importer (`ovftool`, `VirtualBox`, `vSphere`).
    pub tool: &'static str,
    /// Its message, with this package's names filled in.
    pub says: String,
}

/// One problem found in a package.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// Severity.
    pub severity: Severity,
    /// Stable code, `area.rule` (`mf.digest-mismatch`).
    pub code: &'static str,
    /// Where: `file:line`, or a member and its header offset.
    #[serde(rename = "where", skip_serializing_if = "Option::is_none")]
    pub place: Option<String>,
    /// One sentence: what was found, what is expected.
    pub message: String,
    /// The importer's own words for it, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub importer: Option<Quote>,
}

impl Finding {
    /// An error.
    pub fn error(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(Severity::Error, code, message)
    }

    /// A warning.
    pub fn warning(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(Severity::Warning, code, message)
    }

    fn new(severity: Severity, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            severity,
            code,
            place: None,
            message: message.into(),
            importer: None,
        }
    }

    /// Sets the place.
    #[must_use]
    pub fn at(mut self, place: impl Into<String>) -> Self {
        self.place = Some(place.into());
        self
    }

    /// Adds what `tool` prints for this defect.
    #[must_use]
    pub fn quoting(mut self, tool: &'static str, says: impl Into<String>) -> Self {
        self.importer = Some(Quote {
            tool,
            says: says.into(),
        });
        self
    }

    /// One line for people: `error [code] (where): message` and the importer's words.
    pub fn render(&self) -> String {
        let severity = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        let place = self
            .place
            .as_deref()
            .map(|p| format!(" ({p})"))
            .unwrap_or_default();
        let mut line = format!("{severity} [{}]{place}: {}", self.code, self.message);
        if let Some(q) = &self.importer {
            line.push_str(&format!("\n    {} says: \"{}\"", q.tool, q.says));
        }
        line
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_finding_renders_its_place_and_the_importer_words() {
        let f = Finding::error("mf.digest-mismatch", "digest differs")
            .at("a.mf:2")
            .quoting("ovftool", "The manifest does not validate");
        assert_eq!(
            f.render(),
            "error [mf.digest-mismatch] (a.mf:2): digest differs\n    ovftool says: \"The manifest does not validate\""
        );
    }
}
