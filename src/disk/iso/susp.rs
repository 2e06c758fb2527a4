//! System Use Sharing Protocol 1.10 and Rock Ridge Interchange Protocol 1.10 entries
//! (`RRIP_1991A`, as genisoimage and libisofs write it): SP, CE, ER, RR, PX, TF, NM, SL.
//! Each entry is `[sig0, sig1, len, version=1, payload...]`.

use super::records::put_u32_both;

/// SUSP "SP" entry: marks the root `.` record as using SUSP, with 0 bytes skipped.
pub const SUSP_SP: [u8; 7] = [b'S', b'P', 7, 1, 0xBE, 0xEF, 0];
/// Length of a "CE" continuation entry.
pub const SUSP_CE_LEN: usize = 28;
/// Largest SUSP entry (its length is one byte).
const SUSP_MAX_ENTRY: usize = 255;
/// RRIP 1.09 "RR" flags: PX, SL, NM and TF may appear.
const RR_FLAGS_PX_SL_NM_TF: u8 = 0x01 | 0x04 | 0x08 | 0x80;
/// TF flags: modify, access and attributes times, 7-byte form.
const TF_MODIFY_ACCESS_ATTRIBUTES: u8 = 0x02 | 0x04 | 0x08;
/// "ER" identifier, description and source for RRIP 1.10 (RRIP 1.10, 4.3).
const ER_ID: &[u8] = b"RRIP_1991A";
const ER_DESCRIPTOR: &[u8] =
    b"THE ROCK RIDGE INTERCHANGE PROTOCOL PROVIDES SUPPORT FOR POSIX FILE SYSTEM SEMANTICS";
const ER_SOURCE: &[u8] = b"PLEASE CONTACT DISC PUBLISHER FOR SPECIFICATION SOURCE.  SEE PUBLISHER IDENTIFIER IN PRIMARY VOLUME DESCRIPTOR FOR CONTACT INFORMATION.";

/// POSIX file type bits for PX.
pub const S_IFDIR: u32 = 0o040_000;
/// Regular file.
pub const S_IFREG: u32 = 0o100_000;
/// Symbolic link.
pub const S_IFLNK: u32 = 0o120_000;

fn entry(out: &mut Vec<u8>, sig: &[u8; 2], payload: &[u8]) {
    out.extend_from_slice(sig);
    out.push(u8::try_from(4 + payload.len()).unwrap_or(u8::MAX));
    out.push(1);
    out.extend_from_slice(payload);
}

/// "RR" (RRIP 1.09 compatibility flags).
pub fn rr(out: &mut Vec<u8>) {
    entry(out, b"RR", &[RR_FLAGS_PX_SL_NM_TF]);
}

/// "PX": mode, links, uid, gid (RRIP 1.10 form, 36 bytes).
pub fn px(out: &mut Vec<u8>, mode: u32, links: u32, uid: u32, gid: u32) {
    let mut payload = Vec::with_capacity(32);
    for v in [mode, links, uid, gid] {
        put_u32_both(&mut payload, v);
    }
    entry(out, b"PX", &payload);
}

/// "TF": modification, access and attribute-change times, all `date`.
pub fn tf(out: &mut Vec<u8>, date: [u8; 7]) {
    let mut payload = vec![TF_MODIFY_ACCESS_ATTRIBUTES];
    for _ in 0..3 {
        payload.extend_from_slice(&date);
    }
    entry(out, b"TF", &payload);
}

/// "NM" entries for `name`, split with the CONTINUE flag when longer than one entry.
pub fn nm(out: &mut Vec<u8>, name: &[u8]) {
    let max = SUSP_MAX_ENTRY - 5;
    let mut chunks = name.chunks(max).peekable();
    while let Some(chunk) = chunks.next() {
        let mut payload = vec![u8::from(chunks.peek().is_some())];
        payload.extend_from_slice(chunk);
        entry(out, b"NM", &payload);
    }
}

/// "SL" entries for a symlink `target` (RRIP 1.10, 4.1.3): components split on `/`,
/// components and entries longer than 255 bytes split with the CONTINUE flags.
pub fn sl(out: &mut Vec<u8>, target: &[u8]) {
    let pieces = sl_components(target);
    let max_payload = SUSP_MAX_ENTRY - 5;
    let mut current: Vec<u8> = Vec::new();
    let mut entries: Vec<Vec<u8>> = Vec::new();
    for piece in pieces {
        if current.len() + piece.len() > max_payload {
            entries.push(std::mem::take(&mut current));
        }
        current.extend_from_slice(&piece);
    }
    entries.push(current);
    let count = entries.len();
    for (i, components) in entries.into_iter().enumerate() {
        let mut payload = vec![u8::from(i + 1 < count)];
        payload.extend_from_slice(&components);
        entry(out, b"SL", &payload);
    }
}

/// Component records `[flags, len, bytes]`, each at most 250 bytes long.
fn sl_components(target: &[u8]) -> Vec<Vec<u8>> {
    const ROOT: u8 = 0x08;
    const PARENT: u8 = 0x04;
    const CURRENT: u8 = 0x02;
    const CONTINUE: u8 = 0x01;
    let max_content = SUSP_MAX_ENTRY - 5 - 2;
    let mut pieces = Vec::new();
    if target.first() == Some(&b'/') {
        pieces.push(vec![ROOT, 0]);
    }
    for part in target.split(|&b| b == b'/').filter(|p| !p.is_empty()) {
        match part {
            b"." => pieces.push(vec![CURRENT, 0]),
            b".." => pieces.push(vec![PARENT, 0]),
            _ => {
                let mut chunks = part.chunks(max_content).peekable();
                while let Some(chunk) = chunks.next() {
                    let flags = if chunks.peek().is_some() { CONTINUE } else { 0 };
                    let mut piece = vec![flags, u8::try_from(chunk.len()).unwrap_or(u8::MAX)];
                    piece.extend_from_slice(chunk);
                    pieces.push(piece);
                }
            }
        }
    }
    pieces
}

/// "ER": declares the RRIP 1.10 extension (goes in the root's continuation area).
pub fn er(out: &mut Vec<u8>) {
    let mut payload = Vec::new();
    for part in [ER_ID, ER_DESCRIPTOR, ER_SOURCE] {
        payload.push(u8::try_from(part.len()).unwrap_or(u8::MAX));
    }
    payload.push(1); // extension version
    for part in [ER_ID, ER_DESCRIPTOR, ER_SOURCE] {
        payload.extend_from_slice(part);
    }
    entry(out, b"ER", &payload);
}

/// "CE": the rest of this record's system use is `len` bytes at `block`:`offset`.
pub fn ce(out: &mut Vec<u8>, block: u32, offset: u32, len: u32) {
    let mut payload = Vec::with_capacity(24);
    for v in [block, offset, len] {
        put_u32_both(&mut payload, v);
    }
    entry(out, b"CE", &payload);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn px_is_36_bytes() {
        let mut out = Vec::new();
        px(&mut out, S_IFREG | 0o644, 1, 0, 0);
        assert_eq!(out.len(), 36);
        assert_eq!(out[2], 36);
    }

    #[test]
    fn ce_is_28_bytes() {
        let mut out = Vec::new();
        ce(&mut out, 1, 2, 3);
        assert_eq!(out.len(), SUSP_CE_LEN);
    }

    #[test]
    fn absolute_symlink_starts_with_a_root_component() {
        let mut out = Vec::new();
        sl(&mut out, b"/etc/x");
        assert_eq!(out, b"SL\x0f\x01\x00\x08\x00\x00\x03etc\x00\x01x");
    }

    #[test]
    fn long_name_is_split_into_continued_nm_entries() {
        let mut out = Vec::new();
        nm(&mut out, &[b'a'; 300]);
        assert_eq!(out[4], 1);
        assert_eq!(out[2], 255);
        assert_eq!(out[255 + 4], 0);
    }

    #[test]
    fn er_names_rrip_1991a() {
        let mut out = Vec::new();
        er(&mut out);
        assert_eq!(&out[8..18], ER_ID);
        assert_eq!(usize::from(out[2]), out.len());
    }
}
