//! The XML writer of kiln's descriptors: quick-xml's [`Writer`], indenting two spaces per
//! level, with a line per element and text elements on one line.
//!
//! Text and attribute values are escaped here ([`esc`], [`esc_attr`]) and handed to
//! quick-xml as escaped content, so a descriptor's bytes stay what kiln has always written
//! (`'` and `"` as references in text too; line breaks and tabs as character references in
//! attributes, which attribute-value normalisation would otherwise turn into spaces).
//! Attributes are written in the order given.

use quick_xml::Writer;
use quick_xml::events::{BytesDecl, BytesEnd, BytesStart, BytesText, Event};

/// A descriptor being written.
pub(super) struct Xml(Writer<Vec<u8>>);

impl Default for Xml {
    fn default() -> Self {
        Self(Writer::new_with_indent(Vec::new(), b' ', 2))
    }
}

impl Xml {
    /// `<?xml version="1.0" encoding="UTF-8"?>`.
    pub(super) fn declaration(&mut self) {
        self.event(Event::Decl(BytesDecl::new("1.0", Some("UTF-8"), None)));
    }

    /// `<tag attrs...>`; children follow, then [`Xml::close`].
    pub(super) fn open(&mut self, tag: &str, attrs: &[(&str, &str)]) {
        self.event(Event::Start(start(tag, attrs, 0)));
    }

    /// `</tag>`.
    pub(super) fn close(&mut self, tag: &str) {
        self.event(Event::End(BytesEnd::new(tag)));
    }

    /// `<tag attrs.../>`, with `pad` spaces before `/>` (an OVA's File keeps its length
    /// whatever its size).
    pub(super) fn empty(&mut self, tag: &str, attrs: &[(&str, &str)], pad: usize) {
        self.event(Event::Empty(start(tag, attrs, pad)));
    }

    /// `<tag>text</tag>` on one line.
    pub(super) fn leaf(&mut self, tag: &str, text: &str) {
        self.event(Event::Start(BytesStart::new(tag)));
        self.event(Event::Text(BytesText::from_escaped(esc(text))));
        self.event(Event::End(BytesEnd::new(tag)));
    }

    /// A VirtualHardwareSection Item of `rasd:` properties, given in schema order.
    pub(super) fn item(&mut self, properties: &[(&str, &str)]) {
        self.item_with(&[], properties);
    }

    /// [`Xml::item`] with attributes `attrs` on the Item.
    pub(super) fn item_with(&mut self, attrs: &[(&str, &str)], properties: &[(&str, &str)]) {
        self.open("Item", attrs);
        for (name, value) in properties {
            self.leaf(&format!("rasd:{name}"), value);
        }
        self.close("Item");
    }

    /// The text, ending with a line break.
    pub(super) fn finish(self) -> String {
        let mut bytes = self.0.into_inner();
        bytes.push(b'\n');
        // Every piece written was a `str`.
        String::from_utf8_lossy(&bytes).into_owned()
    }

    fn event(&mut self, event: Event<'_>) {
        // Writing into a Vec cannot fail.
        let _ = self.0.write_event(event);
    }
}

/// A start tag's content: the name, the escaped attributes, `pad` spaces.
fn start<'a>(tag: &str, attrs: &[(&str, &str)], pad: usize) -> BytesStart<'a> {
    let mut content = tag.to_string();
    for (name, value) in attrs {
        content.push_str(&format!(r#" {name}="{}""#, esc_attr(value)));
    }
    content.push_str(&" ".repeat(pad));
    BytesStart::from_content(content, tag.len())
}

/// `text` for an attribute value: escaped, and with line breaks and tabs as character
/// references (attribute-value normalisation would turn them into spaces).
pub(super) fn esc_attr(text: &str) -> String {
    esc(text)
        .replace('\n', "&#10;")
        .replace('\r', "&#13;")
        .replace('\t', "&#9;")
}

/// `text` with XML's special characters escaped (for content and attribute values).
pub(super) fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}
