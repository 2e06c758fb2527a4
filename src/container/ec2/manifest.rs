//! The bundle manifest (`NAME.manifest.xml`, version 2007-10-10) and how it is written.
//!
//! ec2-ami-tools builds it with Ruby REXML: an XML declaration with single quotes, no
//! whitespace or newlines anywhere, attributes in single quotes, no trailing newline, and
//! optional elements left out when they have no value. Element order (ManifestV20071010):
//!
//! ```text
//! manifest{ version, bundler{name, version, release},
//!   machine_configuration{ architecture, block_device_mapping{mapping{virtual, device}...},
//!     kernel_id, ramdisk_id, product_codes{product_code...} },
//!   image{ name, user, type, kernel_name, ancestry{ancestor_ami_id...}, digest, size,
//!     bundled_size, ec2_encrypted_key, user_encrypted_key, ec2_encrypted_iv,
//!     user_encrypted_iv, parts{part{filename, digest}...} },
//!   signature }
//! ```
//!
//! The signature is RSA-SHA1 over the bytes of `<machine_configuration>…</machine_
//! configuration>` followed directly by `<image>…</image>` ([`Manifest::signed_bytes`]).

use super::validate::{Arch, ImageType};

/// The manifest format version.
pub const MANIFEST_VERSION: &str = "2007-10-10";
/// What REXML writes first.
pub const XML_DECLARATION: &str = "<?xml version='1.0'?>";
/// The digest algorithm name of the image and part digests.
pub const DIGEST_ALGORITHM: &str = "SHA1";
/// The cipher name on the encrypted key elements.
pub const CIPHER_ALGORITHM: &str = "AES-128-CBC";

/// Who wrote the bundle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bundler {
    /// Tool name.
    pub name: String,
    /// Tool version.
    pub version: String,
    /// Tool release.
    pub release: String,
}

impl Default for Bundler {
    fn default() -> Self {
        Self {
            name: "kiln".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            release: "0".into(),
        }
    }
}

/// `<machine_configuration>`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MachineConfiguration {
    /// `i386` or `x86_64`.
    pub architecture: Arch,
    /// `(virtual, device)` pairs, sorted by virtual name.
    pub block_device_mapping: Vec<(String, String)>,
    /// `aki-…` to boot with.
    pub kernel_id: Option<String>,
    /// `ari-…` to boot with.
    pub ramdisk_id: Option<String>,
    /// Product codes.
    pub product_codes: Vec<String>,
}

/// One `<part>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartEntry {
    /// File name beside the manifest.
    pub filename: String,
    /// SHA-1 of the part, lower-case hex.
    pub digest: String,
}

/// The RSA-encrypted AES key and IV, hex, for both recipients.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct EncryptedKeys {
    /// Key for EC2's certificate.
    pub ec2_key: String,
    /// Key for the user's certificate.
    pub user_key: String,
    /// IV for EC2's certificate.
    pub ec2_iv: String,
    /// IV for the user's certificate.
    pub user_iv: String,
}

/// `<image>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageInfo {
    /// Image (and tar member) name.
    pub name: String,
    /// 12-digit account number.
    pub user: String,
    /// machine, kernel or ramdisk.
    pub kind: ImageType,
    /// Kernel file name (kernel images only).
    pub kernel_name: Option<String>,
    /// Ancestor AMI ids.
    pub ancestors: Vec<String>,
    /// SHA-1 of the tar stream, lower-case hex.
    pub digest: String,
    /// Size of the image file in bytes.
    pub size: u64,
    /// Sum of the part sizes.
    pub bundled_size: u64,
    /// Encrypted key and IV.
    pub keys: EncryptedKeys,
    /// The parts in order.
    pub parts: Vec<PartEntry>,
}

/// A whole manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    /// Manifest version (always [`MANIFEST_VERSION`] for manifests kiln accepts).
    pub version: String,
    /// Bundler, when the manifest names one.
    pub bundler: Option<Bundler>,
    /// Machine configuration, when present.
    pub machine: Option<MachineConfiguration>,
    /// The image.
    pub image: ImageInfo,
    /// Hex RSA-SHA1 signature.
    pub signature: String,
}

/// Escapes text the way the reference writer does (`&`, `<`, `>`).
fn esc(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn element(out: &mut String, tag: &str, text: &str) {
    out.push_str(&format!("<{tag}>{}</{tag}>", esc(text)));
}

impl MachineConfiguration {
    /// `<machine_configuration>…</machine_configuration>` exactly as signed.
    pub fn to_xml(&self) -> String {
        let mut x = String::from("<machine_configuration>");
        element(&mut x, "architecture", self.architecture.as_str());
        if !self.block_device_mapping.is_empty() {
            x.push_str("<block_device_mapping>");
            for (virt, device) in &self.block_device_mapping {
                x.push_str("<mapping>");
                element(&mut x, "virtual", virt);
                element(&mut x, "device", device);
                x.push_str("</mapping>");
            }
            x.push_str("</block_device_mapping>");
        }
        if let Some(k) = &self.kernel_id {
            element(&mut x, "kernel_id", k);
        }
        if let Some(r) = &self.ramdisk_id {
            element(&mut x, "ramdisk_id", r);
        }
        if !self.product_codes.is_empty() {
            x.push_str("<product_codes>");
            for c in &self.product_codes {
                element(&mut x, "product_code", c);
            }
            x.push_str("</product_codes>");
        }
        x.push_str("</machine_configuration>");
        x
    }
}

impl ImageInfo {
    /// `<image>…</image>` exactly as signed.
    pub fn to_xml(&self) -> String {
        let mut x = String::from("<image>");
        element(&mut x, "name", &self.name);
        element(&mut x, "user", &self.user);
        element(&mut x, "type", self.kind.as_str());
        if let Some(k) = &self.kernel_name {
            element(&mut x, "kernel_name", k);
        }
        if !self.ancestors.is_empty() {
            x.push_str("<ancestry>");
            for a in &self.ancestors {
                element(&mut x, "ancestor_ami_id", a);
            }
            x.push_str("</ancestry>");
        }
        let k = &self.keys;
        x.push_str(&format!(
            "<digest algorithm='{DIGEST_ALGORITHM}'>{}</digest><size>{}</size>\
             <bundled_size>{}</bundled_size>\
             <ec2_encrypted_key algorithm='{CIPHER_ALGORITHM}'>{}</ec2_encrypted_key>\
             <user_encrypted_key algorithm='{CIPHER_ALGORITHM}'>{}</user_encrypted_key>\
             <ec2_encrypted_iv>{}</ec2_encrypted_iv><user_encrypted_iv>{}</user_encrypted_iv>",
            esc(&self.digest),
            self.size,
            self.bundled_size,
            esc(&k.ec2_key),
            esc(&k.user_key),
            esc(&k.ec2_iv),
            esc(&k.user_iv),
        ));
        x.push_str(&format!("<parts count='{}'>", self.parts.len()));
        for (i, p) in self.parts.iter().enumerate() {
            x.push_str(&format!(
                "<part index='{i}'><filename>{}</filename>\
                 <digest algorithm='{DIGEST_ALGORITHM}'>{}</digest></part>",
                esc(&p.filename),
                esc(&p.digest)
            ));
        }
        x.push_str("</parts></image>");
        x
    }
}

impl Manifest {
    /// The bytes the signature covers: the machine configuration (when present) followed
    /// directly by the image element.
    pub fn signed_bytes(&self) -> String {
        let mut s = self
            .machine
            .as_ref()
            .map(MachineConfiguration::to_xml)
            .unwrap_or_default();
        s.push_str(&self.image.to_xml());
        s
    }

    /// The whole manifest text, REXML style (see the module doc).
    pub fn to_xml(&self) -> String {
        let mut x = String::from(XML_DECLARATION);
        x.push_str("<manifest>");
        element(&mut x, "version", &self.version);
        if let Some(b) = &self.bundler {
            x.push_str("<bundler>");
            element(&mut x, "name", &b.name);
            element(&mut x, "version", &b.version);
            element(&mut x, "release", &b.release);
            x.push_str("</bundler>");
        }
        x.push_str(&self.signed_bytes());
        element(&mut x, "signature", &self.signature);
        x.push_str("</manifest>");
        x
    }
}

/// The part file names ec2-ami-tools gives `count` parts of `name`: the index zero-padded
/// to the number of digits in `count` (`.part.0` for under ten parts, `.part.00`… for ten
/// to 99).
pub fn part_names(name: &str, count: usize) -> Vec<String> {
    let width = count.to_string().len();
    (0..count)
        .map(|i| format!("{name}.part.{i:0width$}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small() -> Manifest {
        Manifest {
            version: MANIFEST_VERSION.into(),
            bundler: Some(Bundler {
                name: "kiln".into(),
                version: "0.1.0".into(),
                release: "0".into(),
            }),
            machine: Some(MachineConfiguration {
                architecture: Arch::X86_64,
                block_device_mapping: vec![("ami".into(), "sda1".into())],
                kernel_id: Some("aki-1a2b3c4d".into()),
                ramdisk_id: None,
                product_codes: vec![],
            }),
            image: ImageInfo {
                name: "a&b.img".into(),
                user: "111122223333".into(),
                kind: ImageType::Machine,
                kernel_name: None,
                ancestors: vec![],
                digest: "d1".into(),
                size: 10,
                bundled_size: 32,
                keys: EncryptedKeys {
                    ec2_key: "ek".into(),
                    user_key: "uk".into(),
                    ec2_iv: "ei".into(),
                    user_iv: "ui".into(),
                },
                parts: vec![PartEntry {
                    filename: "a&b.img.part.0".into(),
                    digest: "p0".into(),
                }],
            },
            signature: "5160".into(),
        }
    }

    #[test]
    fn small_manifest_is_written_exactly_as_rexml_would() {
        let expected = "<?xml version='1.0'?><manifest><version>2007-10-10</version>\
            <bundler><name>kiln</name><version>0.1.0</version><release>0</release></bundler>\
            <machine_configuration><architecture>x86_64</architecture>\
            <block_device_mapping><mapping><virtual>ami</virtual><device>sda1</device>\
            </mapping></block_device_mapping><kernel_id>aki-1a2b3c4d</kernel_id>\
            </machine_configuration><image><name>a&amp;b.img</name><user>111122223333</user>\
            <type>machine</type><digest algorithm='SHA1'>d1</digest><size>10</size>\
            <bundled_size>32</bundled_size>\
            <ec2_encrypted_key algorithm='AES-128-CBC'>ek</ec2_encrypted_key>\
            <user_encrypted_key algorithm='AES-128-CBC'>uk</user_encrypted_key>\
            <ec2_encrypted_iv>ei</ec2_encrypted_iv><user_encrypted_iv>ui</user_encrypted_iv>\
            <parts count='1'><part index='0'><filename>a&amp;b.img.part.0</filename>\
            <digest algorithm='SHA1'>p0</digest></part></parts></image>\
            <signature>5160</signature></manifest>";
        assert_eq!(small().to_xml(), expected);
    }

    #[test]
    fn signed_bytes_are_machine_configuration_then_image() {
        let m = small();
        let xml = m.to_xml();
        let signed = m.signed_bytes();
        let start = xml.find("<machine_configuration>").unwrap();
        let end = xml.find("</image>").unwrap() + "</image>".len();
        assert_eq!(&xml[start..end], signed);
    }

    #[test]
    fn part_names_pad_to_the_digits_of_the_count() {
        assert_eq!(part_names("x", 3), ["x.part.0", "x.part.1", "x.part.2"]);
        assert_eq!(part_names("x", 10)[0], "x.part.00");
        assert_eq!(part_names("x", 100)[99], "x.part.099");
    }
}
