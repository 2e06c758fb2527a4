//! Reading an untrusted `manifest.xml`: bounded XML parsing with quick-xml, then the
//! structure checks of the reference decoder (element order, required elements,
//! algorithms, part count and indices, safe file names).
//!
//! Refused outright: a DOCTYPE (so no entity definitions or external references), CDATA,
//! comments and processing instructions (none appear in a real manifest, and each could
//! hide a second `<image>` from the signed-region search), references other than the five
//! predefined entities and character references, more than [`MAX_MANIFEST_BYTES`], nesting
//! deeper than [`MAX_DEPTH`], more than [`MAX_ELEMENTS`] elements or [`MAX_PARTS`] parts.

use quick_xml::Reader;
use quick_xml::events::{BytesRef, BytesStart, Event};

use super::Ec2Error;
use super::manifest::{
    Bundler, CIPHER_ALGORITHM, DIGEST_ALGORITHM, EncryptedKeys, ImageInfo, MANIFEST_VERSION,
    MachineConfiguration, Manifest, PartEntry,
};
use super::validate::check_file_name;

/// The largest manifest kiln reads (a 10 GiB image has ~1,000 parts, ~150 KiB).
pub const MAX_MANIFEST_BYTES: u64 = 16 << 20;
/// Deepest element nesting (a real manifest has 5 levels).
const MAX_DEPTH: usize = 8;
/// Most elements in one manifest.
const MAX_ELEMENTS: usize = 600_000;
/// Most parts in one manifest.
pub const MAX_PARTS: usize = 100_000;

const MANIFEST_ORDER: &[&str] = &[
    "version",
    "bundler",
    "machine_configuration",
    "image",
    "signature",
];
const MACHINE_ORDER: &[&str] = &[
    "architecture",
    "block_device_mapping",
    "kernel_id",
    "ramdisk_id",
    "product_codes",
];
const IMAGE_ORDER: &[&str] = &[
    "name",
    "user",
    "type",
    "kernel_name",
    "ancestry",
    "digest",
    "size",
    "bundled_size",
    "ec2_encrypted_key",
    "user_encrypted_key",
    "ec2_encrypted_iv",
    "user_encrypted_iv",
    "parts",
];

/// One parsed element.
#[derive(Debug, Default)]
struct Node {
    name: String,
    attrs: Vec<(String, String)>,
    text: String,
    children: Vec<Node>,
    /// Byte offset of the start tag and just past the end tag.
    span: (usize, usize),
}

fn fail(offset: usize, problem: impl Into<String>) -> Ec2Error {
    Ec2Error::Structure {
        offset: offset as u64,
        problem: problem.into(),
    }
}

/// A parsed manifest and the exact bytes its signature covers.
#[derive(Debug)]
pub struct ParsedManifest {
    /// The manifest's values.
    pub manifest: Manifest,
    /// `<machine_configuration>…</machine_configuration><image>…</image>` as stored.
    pub signed: Vec<u8>,
}

/// Parses and checks a manifest.
///
/// # Errors
/// [`Ec2Error::Structure`] naming the byte offset and the rule broken.
pub fn parse_manifest(bytes: &[u8]) -> Result<ParsedManifest, Ec2Error> {
    if bytes.len() as u64 > MAX_MANIFEST_BYTES {
        return Err(fail(0, format!("larger than {MAX_MANIFEST_BYTES} bytes")));
    }
    let text = std::str::from_utf8(bytes).map_err(|e| fail(e.valid_up_to(), "not UTF-8"))?;
    let root = read_tree(text)?;
    let signed = signed_region(bytes, &root)?;
    let manifest = manifest_from(&root)?;
    Ok(ParsedManifest { manifest, signed })
}

/// What ec2-ami-tools signs, found the way it finds it (first occurrence of each tag),
/// and required to be the parsed elements themselves.
fn signed_region(bytes: &[u8], root: &Node) -> Result<Vec<u8>, Ec2Error> {
    let find = |pat: &[u8]| bytes.windows(pat.len()).position(|w| w == pat);
    let mut signed = Vec::new();
    for (tag, required) in [("machine_configuration", false), ("image", true)] {
        let node = root.children.iter().find(|c| c.name == tag);
        let open = find(format!("<{tag}>").as_bytes());
        let close = find(format!("</{tag}>").as_bytes()).map(|p| p + tag.len() + 3);
        match (node, open, close) {
            (Some(n), Some(s), Some(e)) if (s, e) == n.span => {
                signed.extend_from_slice(&bytes[s..e]);
            }
            (None, None, None) if !required => {}
            _ => {
                return Err(fail(
                    node.map_or(0, |n| n.span.0),
                    format!("cannot locate the signed <{tag}> element unambiguously"),
                ));
            }
        }
    }
    Ok(signed)
}

fn resolve_ref(r: &BytesRef<'_>, at: usize) -> Result<char, Ec2Error> {
    if let Ok(Some(c)) = r.resolve_char_ref() {
        return Ok(c);
    }
    match &**r {
        "lt" => Ok('<'),
        "gt" => Ok('>'),
        "amp" => Ok('&'),
        "apos" => Ok('\''),
        "quot" => Ok('"'),
        other => Err(fail(at, format!("reference to undefined entity &{other};"))),
    }
}

fn start_node(e: &BytesStart<'_>, at: usize) -> Result<Node, Ec2Error> {
    let mut node = Node {
        name: e.name().as_ref().to_string(),
        span: (at, at),
        ..Node::default()
    };
    for attr in e.attributes() {
        let attr = attr.map_err(|err| fail(at, format!("bad attribute: {err}")))?;
        let value = attr
            .normalized_value(quick_xml::XmlVersion::Implicit1_0)
            .map_err(|err| fail(at, format!("bad attribute value: {err}")))?;
        node.attrs
            .push((attr.key.as_ref().to_string(), value.into_owned()));
        if node.attrs.len() > 4 {
            return Err(fail(at, "too many attributes"));
        }
    }
    Ok(node)
}

/// Reads the document into a tree, enforcing the limits of the module doc.
fn read_tree(text: &str) -> Result<Node, Ec2Error> {
    let mut reader = Reader::from_str(text);
    let mut stack: Vec<Node> = Vec::new();
    let mut root: Option<Node> = None;
    let mut elements = 0usize;
    loop {
        let at = usize::try_from(reader.buffer_position()).unwrap_or(usize::MAX);
        let event = reader
            .read_event()
            .map_err(|e| fail(at, format!("not well-formed XML: {e}")))?;
        let end = usize::try_from(reader.buffer_position()).unwrap_or(usize::MAX);
        match event {
            Event::Decl(_) if at == 0 => {}
            Event::Start(_) | Event::Empty(_) if root.is_some() => {
                return Err(fail(at, "content after the root element"));
            }
            Event::Start(e) => {
                elements += 1;
                if stack.len() >= MAX_DEPTH || elements > MAX_ELEMENTS {
                    return Err(fail(at, "elements nested too deep or too many"));
                }
                stack.push(start_node(&e, at)?);
            }
            Event::Empty(e) => {
                elements += 1;
                let mut node = start_node(&e, at)?;
                node.span.1 = end;
                close(&mut stack, &mut root, node, at)?;
            }
            Event::End(_) => {
                let mut node = stack.pop().ok_or_else(|| fail(at, "unbalanced end tag"))?;
                node.span.1 = end;
                close(&mut stack, &mut root, node, at)?;
            }
            Event::Text(t) => push_text(&mut stack, &t.xml10_content(), at)?,
            Event::GeneralRef(r) => {
                let c = resolve_ref(&r, at)?;
                push_text(&mut stack, c.encode_utf8(&mut [0; 4]), at)?;
            }
            Event::Eof => break,
            Event::DocType(_) => return Err(fail(at, "DOCTYPE is not allowed in a manifest")),
            Event::CData(_) => return Err(fail(at, "CDATA is not allowed in a manifest")),
            Event::Comment(_) => return Err(fail(at, "comments are not allowed in a manifest")),
            Event::Decl(_) | Event::PI(_) => {
                return Err(fail(at, "processing instructions are not allowed here"));
            }
        }
    }
    if !stack.is_empty() {
        return Err(fail(text.len(), "document ends inside an element"));
    }
    root.ok_or_else(|| fail(0, "no root element"))
}

fn close(
    stack: &mut [Node],
    root: &mut Option<Node>,
    node: Node,
    at: usize,
) -> Result<(), Ec2Error> {
    match stack.last_mut() {
        Some(parent) => parent.children.push(node),
        None if root.is_none() => *root = Some(node),
        None => return Err(fail(at, "more than one root element")),
    }
    Ok(())
}

fn push_text(stack: &mut [Node], text: &str, at: usize) -> Result<(), Ec2Error> {
    match stack.last_mut() {
        Some(node) => {
            node.text.push_str(text);
            Ok(())
        }
        None if text.trim().is_empty() => Ok(()),
        None => Err(fail(at, "text outside the root element")),
    }
}

impl Node {
    fn child(&self, name: &str) -> Option<&Node> {
        self.children.iter().find(|c| c.name == name)
    }

    fn attr(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    fn value(&self) -> &str {
        self.text.trim()
    }

    /// Children must be known, unrepeated and in `order`.
    fn check_order(&self, order: &[&str]) -> Result<(), Ec2Error> {
        let mut last = None;
        for c in &self.children {
            let Some(i) = order.iter().position(|o| *o == c.name) else {
                return Err(fail(
                    c.span.0,
                    format!("unexpected <{}> in <{}>", c.name, self.name),
                ));
            };
            if last.is_some_and(|l| i <= l) {
                return Err(fail(
                    c.span.0,
                    format!("<{}> repeated or out of order in <{}>", c.name, self.name),
                ));
            }
            last = Some(i);
        }
        Ok(())
    }

    fn text_of(&self, name: &str) -> Result<String, Ec2Error> {
        self.child(name)
            .map(|c| c.value().to_string())
            .filter(|v| !v.is_empty())
            .ok_or_else(|| {
                fail(
                    self.span.0,
                    format!("missing or empty <{name}> in <{}>", self.name),
                )
            })
    }

    fn opt_text(&self, name: &str) -> Option<String> {
        self.child(name).map(|c| c.value().to_string())
    }

    fn list(&self, name: &str, item: &str) -> Result<Vec<String>, Ec2Error> {
        let Some(list) = self.child(name) else {
            return Ok(Vec::new());
        };
        list.check_order(&[item])?;
        Ok(list
            .children
            .iter()
            .map(|c| c.value().to_string())
            .collect())
    }
}

fn manifest_from(root: &Node) -> Result<Manifest, Ec2Error> {
    if root.name != "manifest" {
        return Err(fail(
            root.span.0,
            format!("root element is <{}>, not <manifest>", root.name),
        ));
    }
    root.check_order(MANIFEST_ORDER)?;
    let version = root.text_of("version")?;
    if version != MANIFEST_VERSION {
        return Err(fail(
            root.span.0,
            format!("manifest version {version:?}, kiln reads {MANIFEST_VERSION}"),
        ));
    }
    let bundler = root.child("bundler").map(|b| Bundler {
        name: b.opt_text("name").unwrap_or_default(),
        version: b.opt_text("version").unwrap_or_default(),
        release: b.opt_text("release").unwrap_or_default(),
    });
    let machine = root
        .child("machine_configuration")
        .map(machine_from)
        .transpose()?;
    let image = root
        .child("image")
        .ok_or_else(|| fail(root.span.0, "no <image> element"))?;
    Ok(Manifest {
        version,
        bundler,
        machine,
        image: image_from(image)?,
        signature: root.text_of("signature")?,
    })
}

fn machine_from(mc: &Node) -> Result<MachineConfiguration, Ec2Error> {
    mc.check_order(MACHINE_ORDER)?;
    let architecture = mc
        .text_of("architecture")?
        .parse()
        .map_err(|_| fail(mc.span.0, "architecture is not i386 or x86_64"))?;
    let mut block_device_mapping = Vec::new();
    if let Some(bdm) = mc.child("block_device_mapping") {
        for m in &bdm.children {
            let names: Vec<&str> = m.children.iter().map(|c| c.name.as_str()).collect();
            if m.name != "mapping" || names != ["virtual", "device"] {
                return Err(fail(
                    m.span.0,
                    "a mapping must be <mapping><virtual/><device/></mapping>",
                ));
            }
            block_device_mapping.push((m.children[0].value().into(), m.children[1].value().into()));
        }
    }
    Ok(MachineConfiguration {
        architecture,
        block_device_mapping,
        kernel_id: mc.opt_text("kernel_id"),
        ramdisk_id: mc.opt_text("ramdisk_id"),
        product_codes: mc.list("product_codes", "product_code")?,
    })
}

fn algorithm(node: &Node, tag: &str, want: &str) -> Result<(), Ec2Error> {
    let el = node
        .child(tag)
        .ok_or_else(|| fail(node.span.0, format!("missing <{tag}>")))?;
    match el.attr("algorithm") {
        Some(a) if a == want => Ok(()),
        other => Err(fail(
            el.span.0,
            format!("<{tag}> algorithm is {other:?}, want {want}"),
        )),
    }
}

fn number(node: &Node, tag: &str) -> Result<u64, Ec2Error> {
    let text = node.text_of(tag)?;
    text.parse()
        .map_err(|_| fail(node.span.0, format!("<{tag}> is not a number: {text:?}")))
}

fn is_sha1_hex(s: &str) -> bool {
    s.len() == 40 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

fn image_from(img: &Node) -> Result<ImageInfo, Ec2Error> {
    img.check_order(IMAGE_ORDER)?;
    let name = img.text_of("name")?;
    check_file_name(&name).map_err(|e| fail(img.span.0, format!("unsafe image name: {e}")))?;
    let kind = img
        .text_of("type")?
        .parse()
        .map_err(|_| fail(img.span.0, "image type is not machine, kernel or ramdisk"))?;
    let kernel_name = img.opt_text("kernel_name");
    if kind == super::validate::ImageType::Kernel
        && kernel_name.as_deref().is_none_or(str::is_empty)
    {
        return Err(fail(img.span.0, "kernel image without <kernel_name>"));
    }
    algorithm(img, "digest", DIGEST_ALGORITHM)?;
    algorithm(img, "ec2_encrypted_key", CIPHER_ALGORITHM)?;
    algorithm(img, "user_encrypted_key", CIPHER_ALGORITHM)?;
    let digest = img.text_of("digest")?.to_ascii_lowercase();
    if !is_sha1_hex(&digest) {
        return Err(fail(img.span.0, "image digest is not 40 hex digits"));
    }
    Ok(ImageInfo {
        user: img.text_of("user")?,
        kind,
        kernel_name,
        ancestors: img.list("ancestry", "ancestor_ami_id")?,
        digest,
        size: number(img, "size")?,
        bundled_size: number(img, "bundled_size")?,
        keys: EncryptedKeys {
            ec2_key: img.text_of("ec2_encrypted_key")?,
            user_key: img.text_of("user_encrypted_key")?,
            ec2_iv: img.text_of("ec2_encrypted_iv")?,
            user_iv: img.text_of("user_encrypted_iv")?,
        },
        parts: parts_from(img)?,
        name,
    })
}

fn parts_from(img: &Node) -> Result<Vec<PartEntry>, Ec2Error> {
    let parts = img
        .child("parts")
        .ok_or_else(|| fail(img.span.0, "no <parts>"))?;
    let count: usize = parts
        .attr("count")
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| fail(parts.span.0, "<parts> has no numeric count"))?;
    if count == 0 || count > MAX_PARTS || count != parts.children.len() {
        return Err(fail(
            parts.span.0,
            format!(
                "parts count='{count}' but {} <part> elements (1..={MAX_PARTS} allowed)",
                parts.children.len()
            ),
        ));
    }
    let mut slots: Vec<Option<PartEntry>> = vec![None; count];
    for p in &parts.children {
        let index = p.attr("index").and_then(|i| i.parse::<usize>().ok());
        let names: Vec<&str> = p.children.iter().map(|c| c.name.as_str()).collect();
        let (Some(i), true, ["filename", "digest"]) = (index, p.name == "part", names.as_slice())
        else {
            return Err(fail(
                p.span.0,
                "a part must be <part index='N'><filename/><digest/></part>",
            ));
        };
        let slot = slots
            .get_mut(i)
            .filter(|s| s.is_none())
            .ok_or_else(|| fail(p.span.0, format!("part index {i} out of range or repeated")))?;
        let filename = p.children[0].value().to_string();
        if filename.contains("..") || check_file_name(&filename).is_err() {
            return Err(fail(
                p.span.0,
                format!("unsafe part file name {filename:?}"),
            ));
        }
        algorithm(p, "digest", DIGEST_ALGORITHM)?;
        let digest = p.children[1].value().to_ascii_lowercase();
        if !is_sha1_hex(&digest) {
            return Err(fail(
                p.span.0,
                format!("part {i} digest is not 40 hex digits"),
            ));
        }
        *slot = Some(PartEntry { filename, digest });
    }
    Ok(slots.into_iter().flatten().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = "<?xml version='1.0'?><manifest><version>2007-10-10</version>\
        <machine_configuration><architecture>x86_64</architecture></machine_configuration>\
        <image><name>x.img</name><user>111122223333</user><type>machine</type>\
        <digest algorithm='SHA1'>0123456789012345678901234567890123456789</digest>\
        <size>1</size><bundled_size>32</bundled_size>\
        <ec2_encrypted_key algorithm='AES-128-CBC'>aa</ec2_encrypted_key>\
        <user_encrypted_key algorithm='AES-128-CBC'>bb</user_encrypted_key>\
        <ec2_encrypted_iv>cc</ec2_encrypted_iv><user_encrypted_iv>dd</user_encrypted_iv>\
        <parts count='1'><part index='0'><filename>x.img.part.0</filename>\
        <digest algorithm='SHA1'>0123456789012345678901234567890123456789</digest></part>\
        </parts></image><signature>00</signature></manifest>";

    #[test]
    fn minimal_manifest_parses() {
        let p = parse_manifest(MINIMAL.as_bytes()).unwrap();
        assert_eq!(p.manifest.image.parts[0].filename, "x.img.part.0");
        assert!(p.signed.starts_with(b"<machine_configuration>"));
        assert!(p.signed.ends_with(b"</image>"));
    }

    #[test]
    fn doctype_is_refused() {
        let evil = MINIMAL.replace(
            "<?xml version='1.0'?>",
            "<?xml version='1.0'?><!DOCTYPE m [<!ENTITY e 'x'>]>",
        );
        let err = parse_manifest(evil.as_bytes()).unwrap_err();
        assert!(err.to_string().contains("DOCTYPE"), "{err}");
    }

    #[test]
    fn undefined_entity_is_refused() {
        let evil = MINIMAL.replace("<name>x.img</name>", "<name>&e;</name>");
        assert!(parse_manifest(evil.as_bytes()).is_err());
    }

    #[test]
    fn traversing_part_name_is_refused() {
        let evil = MINIMAL.replace("x.img.part.0</filename>", "../x</filename>");
        let err = parse_manifest(evil.as_bytes()).unwrap_err();
        assert!(err.to_string().contains("unsafe part file name"), "{err}");
    }

    #[test]
    fn deep_nesting_is_refused() {
        let deep = format!("{}{}", "<a>".repeat(50), "</a>".repeat(50));
        assert!(parse_manifest(deep.as_bytes()).is_err());
    }

    #[test]
    fn out_of_order_elements_are_refused() {
        let evil = MINIMAL.replace(
            "<name>x.img</name><user>111122223333</user>",
            "<user>111122223333</user><name>x.img</name>",
        );
        assert!(parse_manifest(evil.as_bytes()).is_err());
    }
}
