//! The values a bundle's manifest carries, checked before anything is written: account
//! number, architecture, image type, block device mapping, kernel/ramdisk ids, product
//! codes and the image name.
//!
//! Block device mappings follow what EC2 accepts for instance-store AMIs (the "Invalid
//! block device mapping: Invalid device name" users hit at registration):
//! - virtual names: `ami`, `root`, `swap` and `ephemeral0`..`ephemeral23`;
//! - devices: an optional `/dev/`, then `sd`, `xvd` or `hd`, one or two letters and an
//!   optional partition number 1..=15 (`sda1`, `/dev/sda1`, `sdb`, `xvdba`).

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use super::Ec2Error;
use crate::error::{Error, ErrorKind, Result};

fn invalid(e: Ec2Error) -> Error {
    Error::new(ErrorKind::InvalidInput, e)
}

/// The machine architecture of the image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Arch {
    /// 32-bit x86.
    I386,
    /// 64-bit x86 (the default).
    #[default]
    X86_64,
}

impl Arch {
    /// The manifest's name for it.
    pub fn as_str(self) -> &'static str {
        match self {
            Arch::I386 => "i386",
            Arch::X86_64 => "x86_64",
        }
    }
}

impl FromStr for Arch {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "i386" => Ok(Arch::I386),
            "x86_64" => Ok(Arch::X86_64),
            _ => Err(invalid(Ec2Error::BadArch { arch: s.into() })),
        }
    }
}

impl fmt::Display for Arch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the bundled image is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ImageType {
    /// A root file system image (ami).
    #[default]
    Machine,
    /// A kernel (aki).
    Kernel,
    /// An initial ramdisk (ari).
    Ramdisk,
}

impl ImageType {
    /// The manifest's name for it.
    pub fn as_str(self) -> &'static str {
        match self {
            ImageType::Machine => "machine",
            ImageType::Kernel => "kernel",
            ImageType::Ramdisk => "ramdisk",
        }
    }
}

impl FromStr for ImageType {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "machine" => Ok(ImageType::Machine),
            "kernel" => Ok(ImageType::Kernel),
            "ramdisk" => Ok(ImageType::Ramdisk),
            _ => Err(invalid(Ec2Error::BadImageType { kind: s.into() })),
        }
    }
}

/// Checks a 12-digit AWS account number.
///
/// # Errors
/// Anything but 12 ASCII digits.
pub fn check_account(user: &str) -> Result<()> {
    if user.len() == 12 && user.bytes().all(|b| b.is_ascii_digit()) {
        return Ok(());
    }
    Err(invalid(Ec2Error::BadAccount { user: user.into() }))
}

/// Checks a virtual name of a block device mapping.
fn is_virtual_name(name: &str) -> bool {
    if matches!(name, "ami" | "root" | "swap") {
        return true;
    }
    name.strip_prefix("ephemeral")
        .and_then(|n| {
            n.parse::<u8>()
                .ok()
                .filter(|&i| i <= 23)
                .map(|i| i.to_string() == n)
        })
        .unwrap_or(false)
}

/// Checks a device name (see the module doc).
pub fn is_device_name(device: &str) -> bool {
    let bare = device.strip_prefix("/dev/").unwrap_or(device);
    let Some(rest) = ["xvd", "sd", "hd"]
        .iter()
        .find_map(|p| bare.strip_prefix(p))
    else {
        return false;
    };
    let letters = rest.bytes().take_while(u8::is_ascii_lowercase).count();
    let digits = &rest[letters..];
    let partition_ok = digits.is_empty()
        || (digits.bytes().all(|b| b.is_ascii_digit())
            && !digits.starts_with('0')
            && digits.parse::<u8>().is_ok_and(|n| (1..=15).contains(&n)));
    (1..=2).contains(&letters) && partition_ok
}

/// Parses `virtual=device[,virtual=device...]` into a map sorted by virtual name (the order
/// ec2-ami-tools writes).
///
/// # Errors
/// A malformed entry, an unknown virtual name, a bad device name or a repeated name.
pub fn parse_block_device_mapping(text: &str) -> Result<BTreeMap<String, String>> {
    let mut map = BTreeMap::new();
    for entry in text.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let Some((virt, device)) = entry.split_once('=') else {
            return Err(invalid(Ec2Error::BadMapping {
                entry: entry.into(),
                problem: "want virtual=device, e.g. root=/dev/sda1",
            }));
        };
        let (virt, device) = (virt.trim(), device.trim());
        check_mapping(virt, device)?;
        if map.insert(virt.to_string(), device.to_string()).is_some() {
            return Err(invalid(Ec2Error::BadMapping {
                entry: entry.into(),
                problem: "virtual name given twice",
            }));
        }
    }
    Ok(map)
}

/// Checks one mapping entry.
///
/// # Errors
/// Unknown virtual name or invalid device name.
pub fn check_mapping(virt: &str, device: &str) -> Result<()> {
    if !is_virtual_name(virt) {
        return Err(invalid(Ec2Error::BadMapping {
            entry: format!("{virt}={device}"),
            problem: "virtual name must be ami, root, swap or ephemeral0..ephemeral23",
        }));
    }
    if !is_device_name(device) {
        return Err(invalid(Ec2Error::BadDevice {
            virtual_name: virt.into(),
            device: device.into(),
        }));
    }
    Ok(())
}

/// Checks an EC2 id with `prefix` (`aki`, `ari`, `ami`): the prefix, a dash, and 8 or 17
/// lower-case hex digits.
///
/// # Errors
/// Any other shape.
pub fn check_id(prefix: &'static str, id: &str) -> Result<()> {
    let ok = id
        .strip_prefix(prefix)
        .and_then(|r| r.strip_prefix('-'))
        .is_some_and(|h| {
            matches!(h.len(), 8 | 17)
                && h.bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        });
    if ok {
        return Ok(());
    }
    Err(invalid(Ec2Error::BadId {
        prefix,
        id: id.into(),
    }))
}

/// Checks a product code: 1 to 64 ASCII letters and digits.
///
/// # Errors
/// Any other shape.
pub fn check_product_code(code: &str) -> Result<()> {
    if (1..=64).contains(&code.len()) && code.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Ok(());
    }
    Err(invalid(Ec2Error::BadProductCode { code: code.into() }))
}

/// Checks a name used as a file name (the image name, the kernel name): non-empty, at
/// most 200 bytes, printable ASCII or UTF-8 without `/`, NUL or control characters, and
/// not `.` or `..`. The parts and the manifest are named after it.
///
/// # Errors
/// A name that is not such a file name.
pub fn check_file_name(name: &str) -> Result<()> {
    let problem = if name.is_empty() {
        Some("is empty")
    } else if name.len() > 200 {
        Some("is longer than 200 bytes")
    } else if name == "." || name == ".." {
        Some("is . or ..")
    } else if name.contains('/') {
        Some("contains /")
    } else if name.chars().any(char::is_control) {
        Some("contains a control character or NUL")
    } else {
        None
    };
    match problem {
        None => Ok(()),
        Some(problem) => Err(invalid(Ec2Error::BadName {
            name: name.into(),
            problem,
        })),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn common_device_names_are_accepted() {
        for d in [
            "sda1",
            "/dev/sda1",
            "sdb",
            "/dev/xvda",
            "xvdba",
            "/dev/sdf15",
            "hda",
        ] {
            assert!(is_device_name(d), "{d}");
        }
    }

    #[test]
    fn bad_device_names_are_refused() {
        for d in [
            "",
            "/dev/nvme0n1",
            "sda0",
            "sda16",
            "/dev/",
            "sdabc",
            "vda",
            "sd1",
            "/dev/sda01",
        ] {
            assert!(!is_device_name(d), "{d}");
        }
    }

    #[test]
    fn mapping_is_sorted_by_virtual_name() {
        let m = parse_block_device_mapping("root=/dev/sda1,ami=sda1,ephemeral0=sdb").unwrap();
        let keys: Vec<&str> = m.keys().map(String::as_str).collect();
        assert_eq!(keys, ["ami", "ephemeral0", "root"]);
    }

    #[test]
    fn mapping_with_an_unknown_virtual_name_is_refused() {
        assert!(parse_block_device_mapping("data=sdc").is_err());
    }

    #[test]
    fn account_must_be_twelve_digits() {
        assert!(check_account("111122223333").is_ok());
        assert!(check_account("1111-2222-3333").is_err());
        assert!(check_account("11112222333").is_err());
    }

    #[test]
    fn kernel_ids_need_the_prefix_and_hex() {
        assert!(check_id("aki", "aki-1a2b3c4d").is_ok());
        assert!(check_id("aki", "aki-0123456789abcdef0").is_ok());
        assert!(check_id("aki", "ari-1a2b3c4d").is_err());
        assert!(check_id("aki", "aki-XYZ").is_err());
    }

    #[test]
    fn file_names_with_slashes_or_dots_are_refused() {
        assert!(check_file_name("disk.img").is_ok());
        assert!(check_file_name("../x").is_err());
        assert!(check_file_name("..").is_err());
        assert!(check_file_name("a\0b").is_err());
    }
}
