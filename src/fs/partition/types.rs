//! Partition type ids and their names, as util-linux's fdisk and sfdisk name them (GUIDs
//! from the UEFI specification and the Discoverable Partitions Specification; MBR ids from
//! the traditional DOS list).

use std::fmt;

use uuid::{Uuid, uuid};

/// A GPT partition type GUID or an MBR partition type id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PartitionType {
    /// GPT type GUID.
    Gpt(Uuid),
    /// MBR type byte.
    Mbr(u8),
}

/// "EFI System": the ESP.
pub const GPT_EFI_SYSTEM: Uuid = uuid!("C12A7328-F81F-11D2-BA4B-00A0C93EC93B");
/// "Linux filesystem": generic Linux data.
pub const GPT_LINUX_FILESYSTEM: Uuid = uuid!("0FC63DAF-8483-4772-8E79-3D69D8477DE4");
/// "Linux root (x86-64)".
pub const GPT_LINUX_ROOT_X86_64: Uuid = uuid!("4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709");

/// Known GPT type GUIDs and names; the Linux root entries come first (see `is_linux_root`).
const GPT_NAMES: &[(Uuid, &str)] = &[
    (GPT_LINUX_ROOT_X86_64, "Linux root (x86-64)"),
    (
        uuid!("44479540-F297-41B2-9AF7-D131D5F0458A"),
        "Linux root (x86)",
    ),
    (
        uuid!("B921B045-1DF0-41C3-AF44-4C6F280D3FAE"),
        "Linux root (ARM-64)",
    ),
    (
        uuid!("69DAD710-2CE4-4E3C-B16C-21A1D49ABED3"),
        "Linux root (ARM)",
    ),
    (
        uuid!("72EC70A6-CF74-40E6-BD49-4BDA08E8F224"),
        "Linux root (RISC-V-64)",
    ),
    (
        uuid!("993D8D3D-F80E-4225-855A-9DAF8ED7EA97"),
        "Linux root (IA-64)",
    ),
    (
        uuid!("1DE3F1EF-FA98-47B5-8DCD-4A860A654D78"),
        "Linux root (PPC64)",
    ),
    (
        uuid!("C31C45E6-3F39-412E-80FB-4809C4980599"),
        "Linux root (PPC64LE)",
    ),
    (
        uuid!("5EEAD9A9-FE09-4A1E-A1D7-520D00531306"),
        "Linux root (S390X)",
    ),
    (GPT_LINUX_FILESYSTEM, "Linux filesystem"),
    (GPT_EFI_SYSTEM, "EFI System"),
    (uuid!("21686148-6449-6E6F-744E-656564454649"), "BIOS boot"),
    (uuid!("0657FD6D-A4AB-43C4-84E5-0933C84B4F4F"), "Linux swap"),
    (
        uuid!("BC13C2FF-59E6-4262-A352-B275FD6F7172"),
        "Linux extended boot",
    ),
    (
        uuid!("8484680C-9521-48C6-9C11-B0720656F69E"),
        "Linux /usr (x86-64)",
    ),
    (uuid!("933AC7E1-2EB4-4F13-B844-0E14E2AEF915"), "Linux home"),
    (
        uuid!("3B8F8425-20E0-4F3B-907F-1A25A76F98E8"),
        "Linux server data",
    ),
    (
        uuid!("4D21B016-B534-45C2-A9FB-5C16E091FD2D"),
        "Linux variable data",
    ),
    (
        uuid!("7EC6F557-3BC5-4ACA-B293-16EF5DF639D1"),
        "Linux temporary data",
    ),
    (uuid!("E6D6D379-F507-44C2-A23C-238F2A3DF928"), "Linux LVM"),
    (uuid!("A19D880F-05FC-4D3B-A006-743F0F84911E"), "Linux RAID"),
    (uuid!("CA7D7CCB-63ED-4C53-861C-1742536059CC"), "Linux LUKS"),
    (
        uuid!("EBD0A0A2-B9E5-4433-87C0-68B6B72699C7"),
        "Microsoft basic data",
    ),
    (
        uuid!("E3C9E316-0B5C-4DB8-817D-F92DF00215AE"),
        "Microsoft reserved",
    ),
    (
        uuid!("DE94BBA4-06D1-4D40-A16A-BFD50179D6AC"),
        "Windows recovery environment",
    ),
    (
        uuid!("516E7CB4-6ECF-11D6-8FF8-00022D09712B"),
        "FreeBSD data",
    ),
    (uuid!("516E7CB6-6ECF-11D6-8FF8-00022D09712B"), "FreeBSD UFS"),
    (
        uuid!("48465300-0000-11AA-AA11-00306543ECAC"),
        "Apple HFS/HFS+",
    ),
    (uuid!("7C3457EF-0000-11AA-AA11-00306543ECAC"), "Apple APFS"),
];

/// How many leading entries of `GPT_NAMES` are Linux root types.
const GPT_LINUX_ROOTS: usize = 9;

/// Known MBR type ids and names.
const MBR_NAMES: &[(u8, &str)] = &[
    (0x01, "FAT12"),
    (0x04, "FAT16 <32M"),
    (0x05, "Extended"),
    (0x06, "FAT16"),
    (0x07, "HPFS/NTFS/exFAT"),
    (0x0b, "W95 FAT32"),
    (0x0c, "W95 FAT32 (LBA)"),
    (0x0e, "W95 FAT16 (LBA)"),
    (0x0f, "W95 Ext'd (LBA)"),
    (0x82, "Linux swap / Solaris"),
    (0x83, "Linux"),
    (0x85, "Linux extended"),
    (0x8e, "Linux LVM"),
    (0xa5, "FreeBSD"),
    (0xee, "GPT"),
    (0xef, "EFI (FAT-12/16/32)"),
    (0xfd, "Linux raid autodetect"),
];

impl PartitionType {
    /// The common name, when known.
    pub fn name(self) -> Option<&'static str> {
        match self {
            PartitionType::Gpt(guid) => GPT_NAMES.iter().find(|(g, _)| *g == guid).map(|e| e.1),
            PartitionType::Mbr(id) => MBR_NAMES.iter().find(|(i, _)| *i == id).map(|e| e.1),
        }
    }

    /// The id as sfdisk prints it: upper-case GUID, or the MBR byte in lower-case hex.
    pub fn id(self) -> String {
        match self {
            PartitionType::Gpt(guid) => guid.hyphenated().to_string().to_uppercase(),
            PartitionType::Mbr(id) => format!("{id:x}"),
        }
    }

    /// A Linux root partition type of any architecture.
    pub fn is_linux_root(self) -> bool {
        match self {
            PartitionType::Gpt(guid) => {
                GPT_NAMES[..GPT_LINUX_ROOTS].iter().any(|(g, _)| *g == guid)
            }
            PartitionType::Mbr(_) => false,
        }
    }

    /// Generic Linux data: GPT "Linux filesystem" or MBR 0x83.
    pub fn is_linux_data(self) -> bool {
        matches!(
            self,
            PartitionType::Gpt(GPT_LINUX_FILESYSTEM) | PartitionType::Mbr(0x83)
        )
    }

    /// An MBR extended partition (the container of logical partitions).
    pub fn is_extended(self) -> bool {
        matches!(self, PartitionType::Mbr(0x05 | 0x0f | 0x85))
    }
}

impl fmt::Display for PartitionType {
    /// The name, else the id.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => f.write_str(name),
            None => f.write_str(&self.id()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linux_root_types_are_the_leading_entries() {
        let roots = GPT_NAMES[..GPT_LINUX_ROOTS].iter();
        assert!(roots.clone().all(|(_, n)| n.starts_with("Linux root")));
        assert!(!GPT_NAMES[GPT_LINUX_ROOTS].1.starts_with("Linux root"));
    }

    #[test]
    fn gpt_id_is_upper_case_as_sfdisk_prints_it() {
        assert_eq!(
            PartitionType::Gpt(GPT_EFI_SYSTEM).id(),
            "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"
        );
    }

    #[test]
    fn mbr_id_is_bare_hex_as_sfdisk_prints_it() {
        assert_eq!(PartitionType::Mbr(0x83).id(), "83");
    }

    #[test]
    fn unknown_type_displays_its_id() {
        assert_eq!(PartitionType::Mbr(0x42).to_string(), "42");
    }
}
