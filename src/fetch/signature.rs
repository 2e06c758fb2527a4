//! Detached OpenPGP signatures (Ubuntu's `SHA256SUMS.gpg`, Debian's `SHA512SUMS.sign`),
//! verified with rPGP against the keyring the spec names, the only trust anchor.
//!
//! A signature is accepted when one of its signature packets names (by issuer key id or
//! fingerprint) a primary key or subkey of the keyring, verifies with it, and that key is
//! neither revoked nor expired now. Everything else is one error naming the signature file,
//! the key and the keyring.

use std::io::Read;

use pgp::composed::{Deserializable, DetachedSignature, SignedPublicKey};
use pgp::packet::{Signature, SignatureType};
use pgp::types::{KeyDetails, VerifyingKey};

use super::error::FetchError;

/// Labels for messages.
pub struct Names<'a> {
    /// Spec location.
    pub at: &'a str,
    /// Signature file or URL.
    pub sig: &'a str,
    /// Keyring path.
    pub keyring: &'a str,
    /// The signed file or URL.
    pub what: &'a str,
}

/// A key of the keyring that may have made a signature, with what kiln needs to judge it.
struct Candidate<'a> {
    key: &'a dyn Verifier,
    fingerprint: String,
    revoked: bool,
    /// Seconds since the epoch.
    expires: Option<u64>,
}

/// A primary key or subkey that can check a signature over a reader.
trait Verifier {
    fn check(&self, sig: &Signature, data: &mut dyn Read) -> pgp::errors::Result<()>;
}

impl<K: VerifyingKey> Verifier for K {
    fn check(&self, sig: &Signature, data: &mut dyn Read) -> pgp::errors::Result<()> {
        sig.verify(self, data)
    }
}

/// Parses the keyring (binary or armored, one or more keys).
fn keyring(bytes: &[u8], n: &Names<'_>) -> Result<Vec<SignedPublicKey>, FetchError> {
    let fail = |reason: String| FetchError::Keyring {
        at: n.at.into(),
        keyring: n.keyring.into(),
        reason,
    };
    let (keys, _) = SignedPublicKey::from_reader_many(bytes).map_err(|e| fail(e.to_string()))?;
    let keys: Vec<SignedPublicKey> = keys
        .collect::<Result<_, _>>()
        .map_err(|e| fail(e.to_string()))?;
    if keys.is_empty() {
        return Err(fail("no keys in the file".into()));
    }
    Ok(keys)
}

fn expiry(created: u32, sigs: &[&Signature]) -> Option<u64> {
    // The newest self-signature carrying a key expiration time decides.
    let newest = sigs
        .iter()
        .filter(|s| s.key_expiration_time().is_some())
        .max_by_key(|s| s.created().map(|t| t.as_secs()))?;
    let secs = newest.key_expiration_time()?.as_secs();
    (secs != 0).then(|| u64::from(created) + u64::from(secs))
}

fn candidates(keys: &[SignedPublicKey]) -> Vec<Candidate<'_>> {
    let mut out = Vec::new();
    for k in keys {
        let primary_revoked = !k.details.revocation_signatures.is_empty();
        let self_sigs: Vec<&Signature> = (k.details.users.iter())
            .flat_map(|u| u.signatures.iter())
            .chain(k.details.direct_signatures.iter())
            .collect();
        let primary_expires = expiry(k.primary_key.created_at().as_secs(), &self_sigs);
        out.push(Candidate {
            key: &k.primary_key,
            fingerprint: format!("{:X}", k.primary_key.fingerprint()),
            revoked: primary_revoked,
            expires: primary_expires,
        });
        for sub in &k.public_subkeys {
            let revoked =
                (sub.signatures.iter()).any(|s| s.typ() == Some(SignatureType::SubkeyRevocation));
            let sigs: Vec<&Signature> = sub.signatures.iter().collect();
            let own = expiry(sub.key.created_at().as_secs(), &sigs);
            out.push(Candidate {
                key: &sub.key,
                fingerprint: format!("{:X}", sub.key.fingerprint()),
                revoked: revoked || primary_revoked,
                expires: match (own, primary_expires) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                },
            });
        }
    }
    out
}

fn issued_by(sig: &Signature, keys: &[SignedPublicKey]) -> Vec<usize> {
    let mut found = Vec::new();
    let mut i = 0;
    for k in keys {
        let parts = std::iter::once((k.primary_key.legacy_key_id(), k.primary_key.fingerprint()))
            .chain((k.public_subkeys.iter()).map(|s| (s.key.legacy_key_id(), s.key.fingerprint())));
        for (id, fp) in parts {
            let by_id = sig.issuer_key_id().iter().any(|x| **x == id);
            let by_fp = sig.issuer_fingerprint().iter().any(|x| **x == fp);
            if by_id || by_fp {
                found.push(i);
            }
            i += 1;
        }
    }
    found
}

fn issuer_text(sig: &Signature) -> String {
    if let Some(fp) = sig.issuer_fingerprint().first() {
        return format!("{fp:X}");
    }
    match sig.issuer_key_id().first() {
        Some(id) => format!("{id}").to_ascii_uppercase(),
        None => "(no issuer recorded)".into(),
    }
}

/// Verifies `signature` (binary or armored detached) over the bytes `data` yields.
///
/// # Errors
/// Unreadable signature or keyring, a signer not in the keyring, a bad signature, a revoked
/// or expired key; a read error of `data` counts as a bad signature.
pub fn verify(
    signature: &[u8],
    keyring_bytes: &[u8],
    data: &mut dyn FnMut() -> std::io::Result<Box<dyn Read>>,
    now: u64,
    n: &Names<'_>,
) -> Result<(), FetchError> {
    let unreadable = |reason: String| FetchError::SignatureUnreadable {
        at: n.at.into(),
        sig: n.sig.into(),
        reason,
    };
    let (sigs, _) =
        DetachedSignature::from_reader_many(signature).map_err(|e| unreadable(e.to_string()))?;
    let sigs: Vec<DetachedSignature> = sigs
        .collect::<Result<_, _>>()
        .map_err(|e| unreadable(e.to_string()))?;
    if sigs.is_empty() {
        return Err(unreadable("no signature packet".into()));
    }
    let keys = keyring(keyring_bytes, n)?;
    let cands = candidates(&keys);
    // The first problem is reported when no signature is good.
    let mut first: Option<FetchError> = None;
    for s in &sigs {
        let sig = &s.signature;
        let matching = issued_by(sig, &keys);
        if matching.is_empty() {
            first.get_or_insert(FetchError::UnknownKey {
                at: n.at.into(),
                sig: n.sig.into(),
                issuer: issuer_text(sig),
                keyring: n.keyring.into(),
            });
            continue;
        }
        for i in matching {
            let Some(c) = cands.get(i) else { continue };
            match judge(c, sig, data, now, n) {
                Ok(()) => return Ok(()),
                Err(e) => {
                    first.get_or_insert(e);
                }
            }
        }
    }
    Err(first.unwrap_or_else(|| unreadable("no signature packet".into())))
}

fn judge(
    c: &Candidate<'_>,
    sig: &Signature,
    data: &mut dyn FnMut() -> std::io::Result<Box<dyn Read>>,
    now: u64,
    n: &Names<'_>,
) -> Result<(), FetchError> {
    let bad = || FetchError::SignatureBad {
        at: n.at.into(),
        sig: n.sig.into(),
        what: n.what.into(),
        key: c.fingerprint.clone(),
        keyring: n.keyring.into(),
    };
    let mut reader = data().map_err(|_| bad())?;
    c.key.check(sig, &mut reader).map_err(|_| bad())?;
    if c.revoked {
        return Err(FetchError::KeyRevoked {
            at: n.at.into(),
            sig: n.sig.into(),
            key: c.fingerprint.clone(),
            keyring: n.keyring.into(),
        });
    }
    if let Some(expired) = c.expires.filter(|e| *e <= now) {
        return Err(FetchError::KeyExpired {
            at: n.at.into(),
            sig: n.sig.into(),
            key: c.fingerprint.clone(),
            keyring: n.keyring.into(),
            expired,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names() -> Names<'static> {
        Names {
            at: "spec",
            sig: "SUMS.gpg",
            keyring: "keys.gpg",
            what: "SUMS",
        }
    }

    #[test]
    fn garbage_signature_is_unreadable() {
        let mut data = || Ok(Box::new(std::io::empty()) as Box<dyn Read>);
        let e = verify(b"\x00\x01garbage", b"", &mut data, 0, &names()).unwrap_err();
        assert!(matches!(e, FetchError::SignatureUnreadable { .. }), "{e}");
    }
}
