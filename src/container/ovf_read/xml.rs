//! A bounded, namespace-aware XML reader for descriptors from strangers: quick-xml's pull
//! parser fills a small element tree.
//!
//! What an OVF descriptor needs and nothing more: UTF-8 (a UTF-8 BOM is skipped), elements,
//! attributes, text and CDATA, the five predefined entities and character references.
//! Refused, naming the line: a DOCTYPE (so no DTD, no entity definitions, no external
//! entities, no "billion laughs"), any other entity reference, unbound prefixes, more than
//! [`XML_MAX_DEPTH`] levels, [`XML_MAX_ELEMENTS`] elements, [`XML_MAX_ATTRIBUTES`]
//! attributes on one element or attribute values over [`XML_MAX_ATTRIBUTE_BYTES`], and
//! documents over [`XML_MAX_BYTES`]. Comments and processing instructions are skipped.
//! Memory is bounded by the input: the tree holds the document's names and text once.

use std::sync::Arc;

use quick_xml::XmlVersion;
use quick_xml::escape::EscapeError;
use quick_xml::events::{BytesRef, BytesStart, Event};
use quick_xml::name::ResolveResult;
use quick_xml::reader::NsReader;

/// Largest document read (the vCenter appliance's descriptor is 330 KiB).
pub const XML_MAX_BYTES: usize = 16 << 20;
/// Deepest element nesting (OVF needs about 8).
pub const XML_MAX_DEPTH: usize = 64;
/// Most elements in one document.
pub const XML_MAX_ELEMENTS: usize = 200_000;
/// Most attributes on one element (namespace declarations included).
pub const XML_MAX_ATTRIBUTES: usize = 64;
/// Longest attribute value (a property's `ovf:value` may carry cloud-init user data).
pub const XML_MAX_ATTRIBUTE_BYTES: usize = 1 << 20;
/// Most namespace bindings in scope at once.
const XML_MAX_NAMESPACE_BINDINGS: usize = 256;

/// Why a document is refused.
#[remain::sorted]
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum XmlError {
    /// An attribute value is longer than allowed.
    #[error(
        "line {line}: attribute `{name}` is {len} bytes; at most {XML_MAX_ATTRIBUTE_BYTES} are read"
    )]
    AttributeTooLong {
        /// Line of the element.
        line: u32,
        /// Attribute name.
        name: String,
        /// Its length.
        len: usize,
    },
    /// A DOCTYPE declaration: DTDs and entity definitions are not read.
    #[error(
        "line {line}: DOCTYPE declarations are not allowed (no DTDs or entity definitions in a descriptor)"
    )]
    DocType {
        /// Line of the declaration.
        line: u32,
    },
    /// The document has no root element.
    #[error("the document has no root element")]
    Empty,
    /// An encoding other than UTF-8.
    #[error("encoding `{encoding}` is not supported; descriptors are read as UTF-8")]
    Encoding {
        /// The declared or detected encoding.
        encoding: String,
    },
    /// An entity reference other than the five XML predefines.
    #[error("line {line}: entity `&{name};` is not defined (no DTD entities are read)")]
    Entity {
        /// Line of the reference.
        line: u32,
        /// Entity name.
        name: String,
    },
    /// Not well-formed XML.
    #[error("line {line}: not well-formed XML: {detail}")]
    Malformed {
        /// Line where the parser stopped.
        line: u32,
        /// quick-xml's description.
        detail: String,
    },
    /// The input is not UTF-8.
    #[error("byte {offset:#x} is not valid UTF-8")]
    NotUtf8 {
        /// First bad byte.
        offset: usize,
    },
    /// The document is nested deeper than allowed.
    #[error("line {line}: elements nested deeper than {XML_MAX_DEPTH} levels")]
    TooDeep {
        /// Line of the element.
        line: u32,
    },
    /// The document is larger than allowed.
    #[error("document is {len} bytes; at most {XML_MAX_BYTES} are read")]
    TooLarge {
        /// Its length.
        len: usize,
    },
    /// An element has more attributes than allowed.
    #[error("line {line}: element `{name}` has more than {XML_MAX_ATTRIBUTES} attributes")]
    TooManyAttributes {
        /// Line of the element.
        line: u32,
        /// Element name.
        name: String,
    },
    /// The document has more elements than allowed.
    #[error("line {line}: more than {XML_MAX_ELEMENTS} elements")]
    TooManyElements {
        /// Line of the first element past the cap.
        line: u32,
    },
    /// Content after the root element.
    #[error("line {line}: content after the root element")]
    TrailingContent {
        /// Line of the content.
        line: u32,
    },
    /// A prefix with no namespace declaration in scope.
    #[error("line {line}: prefix `{prefix}` is not bound to a namespace")]
    UnboundPrefix {
        /// Line of the element.
        line: u32,
        /// The prefix.
        prefix: String,
    },
}

/// A namespace URI, shared by every element and attribute in it.
pub type Namespace = Arc<str>;

/// One element: its resolved name, attributes, text and children.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Element {
    /// Namespace URI, `None` when the name is in no namespace.
    pub ns: Option<Namespace>,
    /// Local name.
    pub name: String,
    /// Attributes in document order (namespace declarations left out).
    pub attrs: Vec<Attribute>,
    /// Child elements in document order.
    pub children: Vec<Element>,
    /// The element's own character data (text and CDATA, references resolved), concatenated.
    pub text: String,
    /// Line of the start tag (1-based).
    pub line: u32,
}

/// One attribute with its resolved name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attribute {
    /// Namespace URI; unprefixed attributes are in no namespace.
    pub ns: Option<Namespace>,
    /// Local name.
    pub name: String,
    /// Value after entity resolution and attribute-value normalisation.
    pub value: String,
}

impl Element {
    /// True when the element is `name` in namespace `ns`.
    pub fn is(&self, ns: &str, name: &str) -> bool {
        self.name == name && self.ns.as_deref() == Some(ns)
    }

    /// The value of attribute `name` in namespace `ns` (`None`: no namespace).
    pub fn attr(&self, ns: Option<&str>, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|a| a.name == name && a.ns.as_deref() == ns)
            .map(|a| a.value.as_str())
    }

    /// Children whose namespace passes `ns` and whose local name is `name`.
    pub fn children_named<'a>(
        &'a self,
        ns: impl Fn(Option<&str>) -> bool + 'a,
        name: &'a str,
    ) -> impl Iterator<Item = &'a Element> + 'a {
        self.children
            .iter()
            .filter(move |c| c.name == name && ns(c.ns.as_deref()))
    }

    /// The text with surrounding whitespace removed.
    pub fn trimmed(&self) -> &str {
        self.text.trim()
    }
}

/// A parsed document: its root and every namespace declaration in document order.
#[derive(Debug, Clone)]
pub struct Document {
    /// The root element.
    pub root: Element,
    /// `(prefix, uri)` of each declaration (`""` for a default namespace).
    pub declarations: Vec<(String, String)>,
}

/// Parses `bytes` into a tree.
///
/// # Errors
/// [`XmlError`] for anything the module docs say is refused.
pub fn parse(bytes: &[u8]) -> Result<Document, XmlError> {
    if bytes.len() > XML_MAX_BYTES {
        return Err(XmlError::TooLarge { len: bytes.len() });
    }
    if bytes.starts_with(&[0xFE, 0xFF]) || bytes.starts_with(&[0xFF, 0xFE]) {
        let encoding = "UTF-16".to_string();
        return Err(XmlError::Encoding { encoding });
    }
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let text = std::str::from_utf8(bytes).map_err(|e| XmlError::NotUtf8 {
        offset: e.valid_up_to(),
    })?;
    Parser::new(text).run()
}

/// The tree being built, with the counters that bound it.
struct Parser<'a> {
    reader: NsReader<&'a [u8]>,
    text: &'a str,
    /// Open elements, the innermost last.
    stack: Vec<Element>,
    root: Option<Element>,
    elements: usize,
    namespaces: Vec<Namespace>,
    declarations: Vec<(String, String)>,
    /// Line counting: the line at `line_pos`.
    line: u32,
    line_pos: usize,
}

impl<'a> Parser<'a> {
    fn new(text: &'a str) -> Self {
        let mut reader = NsReader::from_reader(text.as_bytes());
        reader
            .resolver_mut()
            .set_max_namespace_bindings(XML_MAX_NAMESPACE_BINDINGS);
        let config = reader.config_mut();
        config.trim_text(false);
        config.check_end_names = true;
        config.check_comments = true;
        Self {
            reader,
            text,
            stack: Vec::new(),
            root: None,
            elements: 0,
            namespaces: Vec::new(),
            declarations: Vec::new(),
            line: 1,
            line_pos: 0,
        }
    }

    fn run(mut self) -> Result<Document, XmlError> {
        loop {
            let position = self.position();
            let (ns, event) = match self.reader.read_resolved_event() {
                Ok((ns, event)) => (resolved(ns), event),
                Err(e) => {
                    let line = self.line_at(self.reader.error_position());
                    let detail = e.to_string();
                    return Err(XmlError::Malformed { line, detail });
                }
            };
            let line = self.line_at(position);
            match event {
                Event::Start(e) => self.open(ns, &e, line)?,
                Event::Empty(e) => {
                    self.open(ns, &e, line)?;
                    self.close();
                }
                Event::End(_) => self.close(),
                Event::Text(t) => self.push_text(&t.xml10_content(), line)?,
                Event::CData(t) => self.push_text(&t.xml10_content(), line)?,
                Event::GeneralRef(r) => {
                    let c = resolve_reference(&r, line)?;
                    self.push_text(&c, line)?;
                }
                Event::DocType(_) => return Err(XmlError::DocType { line }),
                Event::Decl(d) => check_declaration(&d)?,
                Event::Comment(_) | Event::PI(_) => {}
                Event::Eof => break,
            }
        }
        let root = self.root.ok_or(XmlError::Empty)?;
        Ok(Document {
            root,
            declarations: self.declarations,
        })
    }

    fn position(&self) -> usize {
        usize::try_from(self.reader.buffer_position()).unwrap_or(usize::MAX)
    }

    /// The 1-based line of byte `pos`, counted incrementally (positions only grow).
    fn line_at(&mut self, pos: impl TryInto<usize>) -> u32 {
        let pos = pos.try_into().unwrap_or(usize::MAX).min(self.text.len());
        if pos > self.line_pos {
            let added = self.text.as_bytes()[self.line_pos..pos]
                .iter()
                .filter(|&&b| b == b'\n')
                .count();
            self.line = self
                .line
                .saturating_add(u32::try_from(added).unwrap_or(u32::MAX));
            self.line_pos = pos;
        }
        // The event starts after any leading whitespace the position still points at.
        let rest = &self.text.as_bytes()[pos..];
        let skipped = rest
            .iter()
            .take_while(|b| b.is_ascii_whitespace())
            .filter(|&&b| b == b'\n')
            .count();
        self.line
            .saturating_add(u32::try_from(skipped).unwrap_or(u32::MAX))
    }

    fn open(
        &mut self,
        ns: Result<Option<String>, String>,
        e: &BytesStart<'_>,
        line: u32,
    ) -> Result<(), XmlError> {
        if self.root.is_some() {
            return Err(XmlError::TrailingContent { line });
        }
        if self.stack.len() >= XML_MAX_DEPTH {
            return Err(XmlError::TooDeep { line });
        }
        self.elements += 1;
        if self.elements > XML_MAX_ELEMENTS {
            return Err(XmlError::TooManyElements { line });
        }
        let name = e.local_name().as_ref().to_string();
        let ns = ns.map_err(|prefix| XmlError::UnboundPrefix { line, prefix })?;
        let ns = ns.map(|uri| self.intern(&uri));
        let attrs = self.attributes(e, &name, line)?;
        self.stack.push(Element {
            ns,
            name,
            attrs,
            children: Vec::new(),
            text: String::new(),
            line,
        });
        Ok(())
    }

    fn attributes(
        &mut self,
        e: &BytesStart<'_>,
        element: &str,
        line: u32,
    ) -> Result<Vec<Attribute>, XmlError> {
        let mut attrs = Vec::new();
        for (i, attr) in e.attributes().enumerate() {
            if i >= XML_MAX_ATTRIBUTES {
                let name = element.to_string();
                return Err(XmlError::TooManyAttributes { line, name });
            }
            let attr = attr.map_err(|err| XmlError::Malformed {
                line,
                detail: err.to_string(),
            })?;
            let qname = attr.key.as_ref().to_string();
            if attr.value.len() > XML_MAX_ATTRIBUTE_BYTES {
                let len = attr.value.len();
                return Err(XmlError::AttributeTooLong {
                    line,
                    name: qname,
                    len,
                });
            }
            let value = attr
                .normalized_value(XmlVersion::Implicit1_0)
                .map_err(|err| entity_error(err, line))?
                .into_owned();
            if qname == "xmlns" || qname.starts_with("xmlns:") {
                let prefix = qname.strip_prefix("xmlns:").unwrap_or("").to_string();
                self.declarations.push((prefix, value));
                continue;
            }
            let (resolved_ns, local) = self.reader.resolver().resolve_attribute(attr.key);
            let ns =
                resolved(resolved_ns).map_err(|prefix| XmlError::UnboundPrefix { line, prefix })?;
            let ns = ns.map(|uri| self.intern(&uri));
            attrs.push(Attribute {
                ns,
                name: local.as_ref().to_string(),
                value,
            });
        }
        Ok(attrs)
    }

    fn close(&mut self) {
        let Some(done) = self.stack.pop() else {
            return;
        };
        match self.stack.last_mut() {
            Some(parent) => parent.children.push(done),
            None => self.root = Some(done),
        }
    }

    fn push_text(&mut self, text: &str, line: u32) -> Result<(), XmlError> {
        match self.stack.last_mut() {
            Some(top) => top.text.push_str(text),
            None if text.trim().is_empty() => {}
            None => return Err(XmlError::TrailingContent { line }),
        }
        Ok(())
    }

    /// One shared string per namespace URI (there are a handful per document).
    fn intern(&mut self, uri: &str) -> Namespace {
        if let Some(ns) = self.namespaces.iter().find(|n| &***n == uri) {
            return ns.clone();
        }
        let ns: Namespace = Arc::from(uri);
        self.namespaces.push(ns.clone());
        ns
    }
}

/// The namespace URI of a resolved name, or the unbound prefix.
fn resolved(ns: ResolveResult<'_>) -> Result<Option<String>, String> {
    match ns {
        ResolveResult::Bound(ns) => Ok(Some(ns.0.to_string())),
        ResolveResult::Unbound => Ok(None),
        ResolveResult::Unknown(prefix) => Err(prefix),
    }
}

/// A character reference or one of the five predefined entities.
fn resolve_reference(r: &BytesRef<'_>, line: u32) -> Result<String, XmlError> {
    if let Ok(Some(c)) = r.resolve_char_ref() {
        return Ok(c.to_string());
    }
    let name = r.xml10_content();
    match quick_xml::escape::resolve_predefined_entity(&name) {
        Some(text) => Ok(text.to_string()),
        None => Err(XmlError::Entity {
            line,
            name: name.into_owned(),
        }),
    }
}

/// quick-xml's error for an attribute value, as an entity error when it is one.
fn entity_error(err: quick_xml::Error, line: u32) -> XmlError {
    match err {
        quick_xml::Error::Escape(EscapeError::UnrecognizedEntity(_, name)) => {
            XmlError::Entity { line, name }
        }
        other => XmlError::Malformed {
            line,
            detail: other.to_string(),
        },
    }
}

/// Only UTF-8 (or its ASCII subset) is read.
fn check_declaration(d: &quick_xml::events::BytesDecl<'_>) -> Result<(), XmlError> {
    let Some(Ok(encoding)) = d.encoding() else {
        return Ok(());
    };
    let lower = encoding.to_ascii_lowercase();
    if matches!(lower.as_str(), "utf-8" | "utf8" | "us-ascii" | "ascii") {
        return Ok(());
    }
    Err(XmlError::Encoding {
        encoding: encoding.into_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const OVF: &str = "http://schemas.dmtf.org/ovf/envelope/1";

    #[test]
    fn prefixes_and_default_namespaces_resolve_to_the_same_uri() {
        let doc = parse(
            br#"<Envelope xmlns="http://schemas.dmtf.org/ovf/envelope/1"><o:References xmlns:o="http://schemas.dmtf.org/ovf/envelope/1"><File o:href="a"/></o:References></Envelope>"#,
        )
        .unwrap();
        let refs = &doc.root.children[0];
        assert!(refs.is(OVF, "References"));
        assert_eq!(refs.children[0].attr(Some(OVF), "href"), Some("a"));
    }

    #[test]
    fn unprefixed_attributes_are_in_no_namespace() {
        let doc = parse(br#"<a xmlns="urn:x" id="1"/>"#).unwrap();
        assert_eq!(doc.root.attr(None, "id"), Some("1"));
    }

    #[test]
    fn a_doctype_is_refused() {
        let err = parse(b"<?xml version=\"1.0\"?>\n<!DOCTYPE a [<!ENTITY x \"y\">]>\n<a>&x;</a>")
            .unwrap_err();
        assert_eq!(err, XmlError::DocType { line: 2 });
    }

    #[test]
    fn an_undefined_entity_is_refused() {
        let err = parse(b"<a>\n&lol;</a>").unwrap_err();
        assert!(
            matches!(err, XmlError::Entity { line: 2, ref name } if name == "lol"),
            "{err:?}"
        );
    }

    #[test]
    fn an_undefined_entity_in_an_attribute_is_refused() {
        let err = parse(b"<a b=\"&lol;\"/>").unwrap_err();
        assert!(matches!(err, XmlError::Entity { .. }), "{err:?}");
    }

    #[test]
    fn predefined_entities_and_character_references_resolve() {
        let doc = parse(b"<a t=\"&lt;&#10;\">x &amp; &#x79;<![CDATA[<z>]]></a>").unwrap();
        assert_eq!(doc.root.text, "x & y<z>");
        assert_eq!(doc.root.attr(None, "t"), Some("<\n"));
    }

    #[test]
    fn deep_nesting_is_refused() {
        let text = "<a>".repeat(XML_MAX_DEPTH + 1);
        assert!(matches!(
            parse(text.as_bytes()),
            Err(XmlError::TooDeep { .. })
        ));
    }

    #[test]
    fn too_many_attributes_are_refused() {
        let attrs: String = (0..=XML_MAX_ATTRIBUTES)
            .map(|i| format!(" a{i}=\"\""))
            .collect();
        let text = format!("<a{attrs}/>");
        assert!(matches!(
            parse(text.as_bytes()),
            Err(XmlError::TooManyAttributes { .. })
        ));
    }

    #[test]
    fn an_unbound_prefix_is_refused() {
        let err = parse(b"<a>\n<x:b/></a>").unwrap_err();
        assert!(
            matches!(
                err,
                XmlError::UnboundPrefix { line: 2, .. } | XmlError::Malformed { line: 2, .. }
            ),
            "{err:?}"
        );
    }

    #[test]
    fn mismatched_end_tags_name_the_line() {
        let err = parse(b"<a>\n<b></c></a>").unwrap_err();
        assert!(
            matches!(err, XmlError::Malformed { line: 2, .. }),
            "{err:?}"
        );
    }

    #[test]
    fn lines_are_counted() {
        let doc = parse(b"<?xml version=\"1.0\"?>\n<a>\n  <b/>\n\n  <c/>\n</a>").unwrap();
        assert_eq!(doc.root.line, 2);
        assert_eq!(
            (doc.root.children[0].line, doc.root.children[1].line),
            (3, 5)
        );
    }

    #[test]
    fn utf16_is_refused() {
        assert!(matches!(
            parse(b"\xff\xfe<\0a\0/\0>\0"),
            Err(XmlError::Encoding { .. })
        ));
    }

    #[test]
    fn a_second_root_is_refused() {
        assert!(matches!(
            parse(b"<a/><b/>"),
            Err(XmlError::TrailingContent { .. })
        ));
    }

    #[test]
    fn declarations_are_recorded() {
        let doc = parse(br#"<a xmlns="urn:d" xmlns:v="urn:v"/>"#).unwrap();
        assert_eq!(
            doc.declarations,
            [("".into(), "urn:d".into()), ("v".into(), "urn:v".into())]
        );
    }
}
