//! ECMA-119 on-disk structures the writer emits: directory records (9.1), path table
//! records (9.4), volume descriptors (8.4, 8.5, 8.3) and the two date formats (8.4.26.1,
//! 9.1.5). Every multi-byte number is written "both-byte orders" where the standard says so.

/// Bytes per logical sector and block (the only block size kiln writes or reads).
pub const ISO_SECTOR: usize = 2048;
/// `CD001`: the standard identifier of every volume descriptor.
pub const ISO_STANDARD_ID: &[u8; 5] = b"CD001";
/// Directory record flag: the entry is a directory.
pub const ISO_FLAG_DIRECTORY: u8 = 0x02;
/// Directory record flag: more extents of this file follow (multi-extent).
pub const ISO_FLAG_MULTI_EXTENT: u8 = 0x80;
/// Volume descriptor type codes.
pub const ISO_VD_BOOT: u8 = 0;
/// Primary volume descriptor.
pub const ISO_VD_PRIMARY: u8 = 1;
/// Supplementary volume descriptor (Joliet).
pub const ISO_VD_SUPPLEMENTARY: u8 = 2;
/// Volume descriptor set terminator.
pub const ISO_VD_TERMINATOR: u8 = 255;
/// Joliet UCS-2 level 3 escape sequence (`%/E`).
pub const JOLIET_ESCAPE: &[u8; 3] = b"%/E";

/// Appends a 16-bit value in both byte orders (ECMA-119 7.2.3).
pub fn put_u16_both(out: &mut Vec<u8>, v: u16) {
    out.extend_from_slice(&v.to_le_bytes());
    out.extend_from_slice(&v.to_be_bytes());
}

/// Appends a 32-bit value in both byte orders (ECMA-119 7.3.3).
pub fn put_u32_both(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_le_bytes());
    out.extend_from_slice(&v.to_be_bytes());
}

/// Calendar date and time in UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DateTime {
    pub year: i64,
    pub month: u8,
    pub day: u8,
    pub hour: u8,
    pub minute: u8,
    pub second: u8,
}

impl DateTime {
    /// UTC calendar time of `epoch` seconds (Howard Hinnant's `civil_from_days`).
    pub fn from_epoch(epoch: u64) -> Self {
        let days = i64::try_from(epoch / 86_400).unwrap_or(i64::MAX / 2);
        let secs = epoch % 86_400;
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z.rem_euclid(146_097);
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = doy - (153 * mp + 2) / 5 + 1;
        let month = if mp < 10 { mp + 3 } else { mp - 9 };
        let year = yoe + era * 400 + i64::from(month <= 2);
        let small = |v: u64| u8::try_from(v).unwrap_or(0);
        Self {
            year,
            month: u8::try_from(month).unwrap_or(1),
            day: u8::try_from(day).unwrap_or(1),
            hour: small(secs / 3600),
            minute: small(secs / 60 % 60),
            second: small(secs % 60),
        }
    }

    /// The 7-byte recording date of a directory record (9.1.5); years since 1900, clamped
    /// to what one byte holds.
    pub fn record_bytes(&self) -> [u8; 7] {
        let years = u8::try_from((self.year - 1900).clamp(0, 255)).unwrap_or(0);
        [
            years,
            self.month,
            self.day,
            self.hour,
            self.minute,
            self.second,
            0,
        ]
    }

    /// The 17-byte volume descriptor date (8.4.26.1): 16 ASCII digits and a UTC offset.
    pub fn descriptor_bytes(&self) -> [u8; 17] {
        let text = format!(
            "{:04}{:02}{:02}{:02}{:02}{:02}00",
            self.year.clamp(0, 9999),
            self.month,
            self.day,
            self.hour,
            self.minute,
            self.second
        );
        let mut out = [0u8; 17];
        out[..16].copy_from_slice(&text.as_bytes()[..16]);
        out
    }
}

/// An unset volume descriptor date: 16 ASCII zeros and offset 0.
pub const DESCRIPTOR_DATE_UNSET: [u8; 17] = *b"0000000000000000\0";

/// The fields of one directory record.
#[derive(Debug, Clone, Copy)]
pub struct Record<'a> {
    pub extent: u32,
    pub data_len: u32,
    pub date: [u8; 7],
    pub flags: u8,
    pub ident: &'a [u8],
    pub system_use: &'a [u8],
}

/// Length of a directory record with `ident_len` identifier bytes and `su_len` system use
/// bytes, padded to even as 9.1.13 requires.
pub fn record_len(ident_len: usize, su_len: usize) -> usize {
    let base = 33 + ident_len + usize::from(ident_len.is_multiple_of(2));
    let len = base + su_len;
    len + len % 2
}

/// Serialises a directory record (ECMA-119 9.1).
pub fn encode_record(r: &Record<'_>) -> Vec<u8> {
    let len = record_len(r.ident.len(), r.system_use.len());
    let mut out = Vec::with_capacity(len);
    out.push(u8::try_from(len).unwrap_or(u8::MAX));
    out.push(0); // extended attribute record length
    put_u32_both(&mut out, r.extent);
    put_u32_both(&mut out, r.data_len);
    out.extend_from_slice(&r.date);
    out.push(r.flags);
    out.push(0); // file unit size
    out.push(0); // interleave gap
    put_u16_both(&mut out, 1); // volume sequence number
    out.push(u8::try_from(r.ident.len()).unwrap_or(u8::MAX));
    out.extend_from_slice(r.ident);
    if r.ident.len().is_multiple_of(2) {
        out.push(0);
    }
    out.extend_from_slice(r.system_use);
    out.resize(len, 0);
    out
}

/// Serialises one path table record (9.4) in little- or big-endian order.
pub fn encode_path_record(ident: &[u8], extent: u32, parent: u16, big_endian: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(9 + ident.len());
    out.push(u8::try_from(ident.len()).unwrap_or(u8::MAX));
    out.push(0);
    if big_endian {
        out.extend_from_slice(&extent.to_be_bytes());
        out.extend_from_slice(&parent.to_be_bytes());
    } else {
        out.extend_from_slice(&extent.to_le_bytes());
        out.extend_from_slice(&parent.to_le_bytes());
    }
    out.extend_from_slice(ident);
    if ident.len() % 2 == 1 {
        out.push(0);
    }
    out
}

/// Where the path tables of one namespace live.
#[derive(Debug, Clone, Copy)]
pub struct PathTables {
    pub size: u32,
    pub l_lba: u32,
    pub m_lba: u32,
}

/// Everything one primary or supplementary volume descriptor says.
#[derive(Debug, Clone)]
pub struct Descriptor<'a> {
    pub kind: u8,
    /// Identifier fields, already encoded (ASCII or UCS-2 big-endian), padded by `fill`.
    pub volume_id: &'a [u8],
    pub publisher: &'a [u8],
    pub application: &'a [u8],
    pub volume_blocks: u32,
    pub tables: PathTables,
    pub root: Vec<u8>,
    pub date: [u8; 17],
    /// Padding unit for identifier fields: `b" "` or UCS-2 `b"\0 "`.
    pub fill: &'a [u8],
}

fn put_field(out: &mut Vec<u8>, value: &[u8], len: usize, fill: &[u8]) {
    let start = out.len();
    out.extend_from_slice(&value[..value.len().min(len)]);
    while out.len() < start + len {
        let room = start + len - out.len();
        out.extend_from_slice(&fill[..fill.len().min(room)]);
    }
}

/// Serialises a primary (8.4) or Joliet supplementary (8.5) volume descriptor.
pub fn encode_descriptor(d: &Descriptor<'_>) -> Vec<u8> {
    let mut out = Vec::with_capacity(ISO_SECTOR);
    out.push(d.kind);
    out.extend_from_slice(ISO_STANDARD_ID);
    out.push(1); // version
    out.push(0); // flags (SVD) / unused
    put_field(&mut out, b"", 32, d.fill); // system identifier
    put_field(&mut out, d.volume_id, 32, d.fill);
    out.resize(80, 0);
    put_u32_both(&mut out, d.volume_blocks);
    if d.kind == ISO_VD_SUPPLEMENTARY {
        out.extend_from_slice(JOLIET_ESCAPE);
    }
    out.resize(120, 0);
    put_u16_both(&mut out, 1); // volume set size
    put_u16_both(&mut out, 1); // volume sequence number
    put_u16_both(&mut out, 2048); // logical block size
    put_u32_both(&mut out, d.tables.size);
    out.extend_from_slice(&d.tables.l_lba.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&d.tables.m_lba.to_be_bytes());
    out.extend_from_slice(&0u32.to_be_bytes());
    out.extend_from_slice(&d.root);
    put_field(&mut out, b"", 128, d.fill); // volume set identifier
    put_field(&mut out, d.publisher, 128, d.fill);
    put_field(&mut out, b"", 128, d.fill); // data preparer
    put_field(&mut out, d.application, 128, d.fill);
    for _ in 0..3 {
        put_field(&mut out, b"", 37, d.fill); // copyright, abstract, bibliographic files
    }
    out.extend_from_slice(&d.date); // creation
    out.extend_from_slice(&d.date); // modification
    out.extend_from_slice(&DESCRIPTOR_DATE_UNSET); // expiration
    out.extend_from_slice(&d.date); // effective
    out.push(1); // file structure version
    out.resize(ISO_SECTOR, 0);
    out
}

/// The volume descriptor set terminator (8.3).
pub fn encode_terminator() -> Vec<u8> {
    let mut out = vec![ISO_VD_TERMINATOR];
    out.extend_from_slice(ISO_STANDARD_ID);
    out.push(1);
    out.resize(ISO_SECTOR, 0);
    out
}

/// Encodes `text` as UCS-2 big-endian (UTF-16; Joliet readers accept surrogate pairs).
pub fn ucs2(text: &str) -> Vec<u8> {
    text.encode_utf16().flat_map(u16::to_be_bytes).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epoch_2023_11_14_is_converted() {
        let d = DateTime::from_epoch(1_700_000_000);
        assert_eq!(
            (d.year, d.month, d.day, d.hour, d.minute, d.second),
            (2023, 11, 14, 22, 13, 20)
        );
    }

    #[test]
    fn descriptor_date_is_sixteen_digits_and_utc() {
        let d = DateTime::from_epoch(946_684_800).descriptor_bytes();
        assert_eq!(&d, b"2000010100000000\0");
    }

    #[test]
    fn record_with_odd_identifier_has_no_pad() {
        assert_eq!(record_len(11, 0), 44);
    }

    #[test]
    fn record_length_is_even_with_odd_system_use() {
        assert_eq!(record_len(1, 7), 42);
    }

    #[test]
    fn descriptor_is_one_sector() {
        let d = Descriptor {
            kind: ISO_VD_PRIMARY,
            volume_id: b"X",
            publisher: b"",
            application: b"",
            volume_blocks: 20,
            tables: PathTables {
                size: 10,
                l_lba: 18,
                m_lba: 19,
            },
            root: vec![0; 34],
            date: DESCRIPTOR_DATE_UNSET,
            fill: b" ",
        };
        let bytes = encode_descriptor(&d);
        assert_eq!(bytes.len(), ISO_SECTOR);
        assert_eq!(bytes[881], 1);
        assert_eq!(&bytes[156..190], &[0; 34]);
    }
}
