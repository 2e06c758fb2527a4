//! The VMDK text descriptor (VMware Virtual Disk Format 5.0, "The Descriptor File"):
//! parsed line by line, emitted in a fixed order.
//!
//! Accepted lines: comments, blank lines, `key=value` headers, `ddb.* = "value"` entries and
//! extent lines `ACCESS SECTORS TYPE ["FILE" [OFFSET]]`. Anything else is refused, as
//! OpenStack's format_inspector does. Extent files must be plain names in the descriptor's
//! directory: a name with `/` or `\`, `.`/`..`, or an empty name is refused. Delta disks
//! (`parentCID` other than `ffffffff`, `parentFileNameHint`) are refused.

use std::fmt::Write as _;
use std::str::FromStr;

use super::error::VmdkError;

/// Largest descriptor kiln parses (qemu's and format_inspector's limit is 1 MiB - 1).
pub(super) const VMDK_MAX_DESCRIPTOR_BYTES: u64 = (1 << 20) - 1;
/// Most extents a descriptor may list.
pub(super) const VMDK_MAX_EXTENTS: usize = 4096;

/// The disk layouts kiln reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum CreateType {
    MonolithicSparse,
    StreamOptimized,
    MonolithicFlat,
    TwoGbMaxExtentSparse,
    TwoGbMaxExtentFlat,
}

impl CreateType {
    /// The spelling in descriptors.
    pub fn name(self) -> &'static str {
        match self {
            CreateType::MonolithicSparse => "monolithicSparse",
            CreateType::StreamOptimized => "streamOptimized",
            CreateType::MonolithicFlat => "monolithicFlat",
            CreateType::TwoGbMaxExtentSparse => "twoGbMaxExtentSparse",
            CreateType::TwoGbMaxExtentFlat => "twoGbMaxExtentFlat",
        }
    }
}

impl FromStr for CreateType {
    type Err = VmdkError;

    fn from_str(s: &str) -> Result<Self, VmdkError> {
        let all = [
            CreateType::MonolithicSparse,
            CreateType::StreamOptimized,
            CreateType::MonolithicFlat,
            CreateType::TwoGbMaxExtentSparse,
            CreateType::TwoGbMaxExtentFlat,
        ];
        // Descriptors are case-insensitive (format_inspector lowercases them too).
        all.into_iter()
            .find(|t| t.name().eq_ignore_ascii_case(s))
            .ok_or_else(|| VmdkError::UnknownCreateType {
                create_type: s.chars().take(64).collect(),
            })
    }
}

/// How an extent stores its sectors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ExtentKind {
    Sparse,
    Flat,
    Zero,
}

/// One extent line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct ExtentLine {
    pub sectors: u64,
    pub kind: ExtentKind,
    /// Plain file name (checked), `None` for ZERO extents.
    pub file: Option<String>,
    /// Start of the extent's data in its file, in sectors (FLAT only).
    pub offset_sectors: u64,
    /// 1-based descriptor line, for errors.
    pub line: usize,
}

/// A parsed descriptor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Descriptor {
    pub cid: Option<u32>,
    pub create_type: CreateType,
    pub extents: Vec<ExtentLine>,
    /// `ddb.*` entries in file order, quotes removed.
    pub ddb: Vec<(String, String)>,
}

impl Descriptor {
    /// The value of `ddb.<key>`.
    pub fn ddb(&self, key: &str) -> Option<&str> {
        self.ddb
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v.as_str())
    }

    /// Parses descriptor text (already cut at the first NUL for embedded descriptors).
    pub fn parse(text: &str) -> Result<Self, VmdkError> {
        let mut cid = None;
        let mut create_type = None;
        let mut extents = Vec::new();
        let mut ddb = Vec::new();
        for (index, raw) in text.lines().enumerate() {
            let line_no = index + 1;
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            if is_extent_line(line) {
                if extents.len() == VMDK_MAX_EXTENTS {
                    return Err(VmdkError::TooManyExtents {
                        count: extents.len() + 1,
                        max: VMDK_MAX_EXTENTS,
                    });
                }
                extents.push(parse_extent(line, line_no)?);
                continue;
            }
            let Some((key, value)) = line.split_once('=') else {
                return Err(bad_line(
                    line_no,
                    "expected a comment, key=value or an extent line",
                ));
            };
            let (key, value) = (key.trim(), unquote(value.trim()));
            if key.contains(char::is_whitespace) || key.is_empty() {
                return Err(bad_line(line_no, "malformed key"));
            }
            match key.to_ascii_lowercase().as_str() {
                "cid" => cid = Some(parse_hex32(value, line_no)?),
                "parentcid" if !value.eq_ignore_ascii_case("ffffffff") => {
                    return Err(VmdkError::ParentDisk { line: line_no });
                }
                "parentfilenamehint" => return Err(VmdkError::ParentDisk { line: line_no }),
                "createtype" => create_type = Some(value.parse::<CreateType>()?),
                k if k.starts_with("ddb.") => ddb.push((key[4..].to_string(), value.to_string())),
                _ => {}
            }
        }
        let Some(create_type) = create_type else {
            return Err(VmdkError::BadDescriptorText {
                offset: 0,
                reason: "no createType line",
            });
        };
        if extents.is_empty() {
            return Err(VmdkError::NoExtents);
        }
        Ok(Self {
            cid,
            create_type,
            extents,
            ddb,
        })
    }
}

fn bad_line(line: usize, reason: &str) -> VmdkError {
    VmdkError::BadDescriptorLine {
        line,
        reason: reason.to_string(),
    }
}

fn is_extent_line(line: &str) -> bool {
    let first = line.split_whitespace().next().unwrap_or_default();
    ["RW", "RDONLY", "NOACCESS"]
        .iter()
        .any(|a| a.eq_ignore_ascii_case(first))
        && !line.contains('=')
}

fn unquote(value: &str) -> &str {
    value
        .strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .unwrap_or(value)
}

fn parse_hex32(value: &str, line: usize) -> Result<u32, VmdkError> {
    u32::from_str_radix(value, 16).map_err(|_| bad_line(line, "CID is not 8 hex digits"))
}

/// `ACCESS SECTORS TYPE ["FILE" [OFFSET]]`.
fn parse_extent(line: &str, line_no: usize) -> Result<ExtentLine, VmdkError> {
    let mut words = line.splitn(3, char::is_whitespace);
    let _access = words.next();
    let sectors = words
        .next()
        .and_then(|s| s.parse::<u64>().ok())
        .ok_or_else(|| bad_line(line_no, "extent size is not a sector count"))?;
    let rest = words.next().unwrap_or_default().trim_start();
    let (kind_word, rest) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
    let kind = match kind_word.to_ascii_uppercase().as_str() {
        "SPARSE" => ExtentKind::Sparse,
        "FLAT" => ExtentKind::Flat,
        "ZERO" => ExtentKind::Zero,
        _ => {
            return Err(VmdkError::UnsupportedExtentType {
                kind: kind_word.chars().take(32).collect(),
                line: line_no,
            });
        }
    };
    if kind == ExtentKind::Zero {
        return Ok(ExtentLine {
            sectors,
            kind,
            file: None,
            offset_sectors: 0,
            line: line_no,
        });
    }
    let rest = rest.trim();
    let Some(quoted) = rest.strip_prefix('"') else {
        return Err(bad_line(line_no, "extent file name must be quoted"));
    };
    let Some((name, tail)) = quoted.split_once('"') else {
        return Err(bad_line(line_no, "unterminated extent file name"));
    };
    check_plain_name(name, line_no)?;
    let tail = tail.trim();
    let offset_sectors = match tail.split_whitespace().next() {
        None => 0,
        Some(word) => word
            .parse::<u64>()
            .map_err(|_| bad_line(line_no, "extent offset is not a sector count"))?,
    };
    if kind == ExtentKind::Sparse && offset_sectors != 0 {
        return Err(bad_line(line_no, "SPARSE extents take no offset"));
    }
    Ok(ExtentLine {
        sectors,
        kind,
        file: Some(name.to_string()),
        offset_sectors,
        line: line_no,
    })
}

/// Glance's format_inspector refuses any `/` in extent lines; kiln also refuses `\`,
/// `.`/`..`, NUL and empty names, so an extent is always a file in the descriptor's directory.
fn check_plain_name(name: &str, line: usize) -> Result<(), VmdkError> {
    let bad = name.is_empty()
        || name == "."
        || name == ".."
        || name.contains(['/', '\\', '\0'])
        || name.chars().any(char::is_control);
    if bad {
        return Err(VmdkError::BadExtentName {
            name: name.chars().take(128).collect(),
            line,
        });
    }
    Ok(())
}

/// What the writers put in a descriptor.
#[derive(Debug, Clone)]
pub(super) struct DescriptorOut<'a> {
    pub cid: u32,
    pub create_type: CreateType,
    /// `(sectors, "SPARSE"|"FLAT", file name)`.
    pub extent: (u64, &'static str, &'a str),
    pub adapter_type: &'a str,
    pub hw_version: &'a str,
    pub tools_version: &'a str,
    pub uuid: uuid::Uuid,
}

impl DescriptorOut<'_> {
    /// The descriptor text, in qemu-img's line order plus `ddb.uuid`.
    pub fn render(&self) -> String {
        let (sectors, kind, file) = self.extent;
        let offset = if kind == "FLAT" { " 0" } else { "" };
        let (cylinders, heads) = geometry(sectors, self.adapter_type);
        let mut s = String::new();
        s.push_str("# Disk DescriptorFile\nversion=1\n");
        let _ = writeln!(s, "CID={:08x}\nparentCID=ffffffff", self.cid);
        let _ = writeln!(s, "createType=\"{}\"\n", self.create_type.name());
        let _ = writeln!(
            s,
            "# Extent description\nRW {sectors} {kind} \"{file}\"{offset}\n"
        );
        s.push_str("# The Disk Data Base\n#DDB\n\n");
        let _ = writeln!(s, "ddb.virtualHWVersion = \"{}\"", self.hw_version);
        let _ = writeln!(s, "ddb.geometry.cylinders = \"{cylinders}\"");
        let _ = writeln!(
            s,
            "ddb.geometry.heads = \"{heads}\"\nddb.geometry.sectors = \"63\""
        );
        let _ = writeln!(s, "ddb.adapterType = \"{}\"", self.adapter_type);
        let _ = writeln!(s, "ddb.toolsVersion = \"{}\"", self.tools_version);
        let _ = writeln!(s, "ddb.uuid = \"{}\"", vmware_uuid(&self.uuid));
        s
    }
}

/// Geometry VMware derives from the capacity: IDE uses 16 heads and at most 16383
/// cylinders, SCSI adapters 255 heads; 63 sectors per track.
fn geometry(sectors: u64, adapter: &str) -> (u64, u64) {
    let heads: u64 = if adapter == "ide" { 16 } else { 255 };
    let cylinders = sectors / (heads * 63);
    let cylinders = if adapter == "ide" {
        cylinders.min(16383)
    } else {
        cylinders
    };
    (cylinders.max(1), heads)
}

/// `ddb.uuid` in VMware's spelling: `60 00 c2 9b 69 2f c9 76-74 c4 07 9e 10 87 3b f9`.
fn vmware_uuid(uuid: &uuid::Uuid) -> String {
    let hex: Vec<String> = uuid.as_bytes().iter().map(|b| format!("{b:02x}")).collect();
    format!("{}-{}", hex[..8].join(" "), hex[8..].join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;

    const QEMU_SPARSE: &str = "# Disk DescriptorFile\nversion=1\nCID=1a2b3c4d\nparentCID=ffffffff\n\
        createType=\"monolithicSparse\"\n\n# Extent description\nRW 131072 SPARSE \"x.vmdk\"\n\n\
        # The Disk Data Base\n#DDB\n\nddb.virtualHWVersion = \"4\"\nddb.adapterType = \"ide\"\n";

    #[test]
    fn qemu_descriptor_parses() {
        let d = Descriptor::parse(QEMU_SPARSE).unwrap();
        assert_eq!(d.create_type, CreateType::MonolithicSparse);
        assert_eq!(d.cid, Some(0x1a2b_3c4d));
        assert_eq!(d.extents[0].file.as_deref(), Some("x.vmdk"));
        assert_eq!(d.ddb("adapterType"), Some("ide"));
    }

    #[test]
    fn extent_path_with_slash_is_refused() {
        let text = QEMU_SPARSE.replace("\"x.vmdk\"", "\"../etc/passwd\"");
        let e = Descriptor::parse(&text).unwrap_err();
        assert!(matches!(e, VmdkError::BadExtentName { line: 8, .. }), "{e}");
    }

    #[test]
    fn dot_dot_extent_is_refused() {
        let text = QEMU_SPARSE.replace("\"x.vmdk\"", "\"..\"");
        assert!(matches!(
            Descriptor::parse(&text),
            Err(VmdkError::BadExtentName { .. })
        ));
    }

    #[test]
    fn unknown_create_type_is_rejected() {
        let text = QEMU_SPARSE.replace("monolithicSparse", "vmfsRDM");
        assert!(matches!(
            Descriptor::parse(&text),
            Err(VmdkError::UnknownCreateType { .. })
        ));
    }

    #[test]
    fn parent_cid_is_refused() {
        let text = QEMU_SPARSE.replace("parentCID=ffffffff", "parentCID=12345678");
        assert!(matches!(
            Descriptor::parse(&text),
            Err(VmdkError::ParentDisk { line: 4 })
        ));
    }

    #[test]
    fn garbage_line_is_rejected() {
        let text = format!("{QEMU_SPARSE}what is this\n");
        assert!(matches!(
            Descriptor::parse(&text),
            Err(VmdkError::BadDescriptorLine { .. })
        ));
    }

    #[test]
    fn flat_extent_offset_is_read() {
        let text = QEMU_SPARSE.replace("SPARSE \"x.vmdk\"", "FLAT \"x-flat.vmdk\" 7");
        assert_eq!(
            Descriptor::parse(&text).unwrap().extents[0].offset_sectors,
            7
        );
    }

    #[test]
    fn rendered_descriptor_parses_back() {
        let out = DescriptorOut {
            cid: 0xdead_beef,
            create_type: CreateType::StreamOptimized,
            extent: (131_072, "SPARSE", "disk.vmdk"),
            adapter_type: "lsilogic",
            hw_version: "4",
            tools_version: "2147483647",
            uuid: uuid::Uuid::nil(),
        };
        let d = Descriptor::parse(&out.render()).unwrap();
        assert_eq!(d.create_type, CreateType::StreamOptimized);
        assert_eq!(d.ddb("geometry.heads"), Some("255"));
    }
}
