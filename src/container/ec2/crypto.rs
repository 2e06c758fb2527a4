//! The cryptography of a bundle: AES-128-CBC of the gzip stream with PKCS#7 padding (as
//! `openssl enc -aes-128-cbc`), RSA PKCS#1 v1.5 encryption of the hex key and IV for the
//! user's and EC2's certificates, and the RSA-SHA1 manifest signature.
//!
//! Keys are read from PEM: certificates (`CERTIFICATE`), private keys in PKCS#8
//! (`PRIVATE KEY`, what `openssl req -newkey` writes) or PKCS#1 (`RSA PRIVATE KEY`).
//! Encrypted private keys are refused. RSA keys shorter than 2048 bits are refused.
//!
//! The `rsa` crate's private-key operations are not constant-time (RUSTSEC-2023-0071, the
//! Marvin attack). kiln uses the private key only locally (signing a manifest, decrypting
//! a bundle's key on the user's own machine) where no attacker measures the timing.

use std::path::Path;

use aes::Aes128;
use aes::cipher::common::array::Array;
use aes::cipher::{BlockModeDecrypt, BlockModeEncrypt, KeyIvInit};
use rsa::pkcs1::DecodeRsaPrivateKey;
use rsa::pkcs8::{DecodePrivateKey, DecodePublicKey};
use rsa::traits::PublicKeyParts;
use rsa::{PrivateKey, PublicKey};
use sha1::Sha1;
use sha2::{Digest, Sha256};
use x509_cert::Certificate;
use x509_cert::der::{DecodePem, Encode};

use super::Ec2Error;
use crate::container::manifest::hex;
use crate::error::{Error, ErrorKind, Result};

/// The shortest RSA key kiln accepts.
pub const MIN_RSA_BITS: u32 = 2048;
/// AES block size.
const AES_BLOCK: usize = 16;

/// The AES-128 key and IV of one bundle.
#[derive(Clone, PartialEq, Eq)]
pub struct SessionKey {
    /// AES-128 key.
    pub key: [u8; 16],
    /// CBC initialisation vector.
    pub iv: [u8; 16],
    /// Whether the caller fixed the values (tests): the RSA padding is then derived too.
    pub fixed: bool,
}

impl std::fmt::Debug for SessionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionKey(..)")
    }
}

impl SessionKey {
    /// A fresh random key and IV from the operating system.
    ///
    /// # Errors
    /// The OS random source fails.
    pub fn random() -> Result<Self> {
        let mut both = [0u8; 32];
        getrandom::fill(&mut both).map_err(|e| Error::new(ErrorKind::Io, Ec2Error::Random(e)))?;
        let mut s = Self {
            key: [0; 16],
            iv: [0; 16],
            fixed: false,
        };
        s.key.copy_from_slice(&both[..16]);
        s.iv.copy_from_slice(&both[16..]);
        Ok(s)
    }

    /// Fixed values from 32-character hex strings (for reproducible tests).
    ///
    /// # Errors
    /// Either string is not 32 hex characters.
    pub fn from_hex(key: &str, iv: &str) -> Result<Self> {
        Ok(Self {
            key: parse_hex16("--key", key)?,
            iv: parse_hex16("--iv", iv)?,
            fixed: true,
        })
    }

    /// The key as the 32 lower-case hex characters that are RSA-encrypted.
    pub fn key_hex(&self) -> String {
        hex(&self.key)
    }

    /// The IV as 32 lower-case hex characters.
    pub fn iv_hex(&self) -> String {
        hex(&self.iv)
    }
}

/// 16 bytes from 32 hex characters.
pub fn parse_hex16(what: &str, text: &str) -> Result<[u8; 16]> {
    let bytes = parse_hex(text).filter(|b| b.len() == 16).ok_or_else(|| {
        Error::invalid_input(format!("{what} must be 32 hex characters, got {text:?}"))
    })?;
    let mut out = [0u8; 16];
    out.copy_from_slice(&bytes);
    Ok(out)
}

/// Bytes from an even number of hex digits (either case).
pub fn parse_hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

fn read_pem(path: &Path, what: &'static str) -> Result<String> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(e).with_path(path))?;
    if bytes.len() > 1 << 20 {
        return Err(key_error(path, what, "larger than 1 MiB"));
    }
    String::from_utf8(bytes).map_err(|_| key_error(path, what, "not PEM text"))
}

fn key_error(path: &Path, what: &'static str, problem: impl Into<String>) -> Error {
    Error::new(
        ErrorKind::InvalidInput,
        Ec2Error::BadKey {
            what,
            problem: problem.into(),
        },
    )
    .with_path(path)
}

fn check_bits(path: &Path, what: &'static str, key: &PublicKey) -> Result<()> {
    let bits = key.n().bit_width();
    if bits < MIN_RSA_BITS {
        return Err(key_error(
            path,
            what,
            format!("RSA key has {bits} bits; at least {MIN_RSA_BITS} are required"),
        ));
    }
    Ok(())
}

/// The RSA public key of the X.509 certificate in the PEM file at `path`.
///
/// # Errors
/// The file is not a PEM certificate, its key is not RSA or is under 2048 bits.
pub fn load_certificate_key(path: &Path, what: &'static str) -> Result<PublicKey> {
    let text = read_pem(path, what)?;
    let cert = Certificate::from_pem(text.as_bytes())
        .map_err(|e| key_error(path, what, format!("not a PEM X.509 certificate ({e})")))?;
    let spki = cert
        .tbs_certificate()
        .subject_public_key_info()
        .to_der()
        .map_err(|e| key_error(path, what, format!("bad public key ({e})")))?;
    let key = PublicKey::from_public_key_der(&spki)
        .map_err(|e| key_error(path, what, format!("public key is not RSA ({e})")))?;
    check_bits(path, what, &key)?;
    Ok(key)
}

/// The RSA private key in the PEM file at `path` (PKCS#8 or PKCS#1, unencrypted).
///
/// # Errors
/// The file is not such a key, or the key is under 2048 bits.
pub fn load_private_key(path: &Path) -> Result<PrivateKey> {
    const WHAT: &str = "private key";
    let text = read_pem(path, WHAT)?;
    let label = x509_cert::der::pem::decode_label(text.as_bytes())
        .map_err(|e| key_error(path, WHAT, format!("not PEM ({e})")))?;
    let key = match label {
        "PRIVATE KEY" => PrivateKey::from_pkcs8_pem(&text).map_err(|e| e.to_string()),
        "RSA PRIVATE KEY" => PrivateKey::from_pkcs1_pem(&text).map_err(|e| e.to_string()),
        "ENCRYPTED PRIVATE KEY" => {
            Err("the key is encrypted; decrypt it first (openssl pkey -in KEY -out PLAIN)".into())
        }
        other => Err(format!("PEM block is {other:?}, not an RSA private key")),
    }
    .map_err(|e| key_error(path, WHAT, e))?;
    check_bits(path, WHAT, key.as_public_key())?;
    Ok(key)
}

/// Whether `cert_key` is the public half of `private`.
pub fn key_matches(private: &PrivateKey, cert_key: &PublicKey) -> bool {
    private.as_public_key() == cert_key
}

/// A deterministic random source for RSA padding when the session key is fixed: SHA-256
/// in counter mode over a label, the key, the IV and the recipient. Tests get identical
/// manifests; real bundles (random session key) use the OS generator.
struct DerivedRng {
    seed: [u8; 32],
    counter: u64,
}

impl DerivedRng {
    fn new(session: &SessionKey, recipient: &str, what: &str) -> Self {
        let mut h = Sha256::new();
        h.update(b"kiln ec2 bundle: fixed-key RSA padding\0");
        h.update(session.key);
        h.update(session.iv);
        h.update(recipient.as_bytes());
        h.update(what.as_bytes());
        Self {
            seed: h.finalize().into(),
            counter: 0,
        }
    }
}

impl rsa::rand_core::TryRng for DerivedRng {
    type Error = std::convert::Infallible;

    fn try_next_u32(&mut self) -> std::result::Result<u32, Self::Error> {
        let mut b = [0u8; 4];
        self.try_fill_bytes(&mut b)?;
        Ok(u32::from_le_bytes(b))
    }

    fn try_next_u64(&mut self) -> std::result::Result<u64, Self::Error> {
        let mut b = [0u8; 8];
        self.try_fill_bytes(&mut b)?;
        Ok(u64::from_le_bytes(b))
    }

    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> std::result::Result<(), Self::Error> {
        for piece in dst.chunks_mut(32) {
            let mut h = Sha256::new();
            h.update(self.seed);
            h.update(self.counter.to_le_bytes());
            self.counter += 1;
            piece.copy_from_slice(&h.finalize()[..piece.len()]);
        }
        Ok(())
    }
}

impl rsa::rand_core::TryCryptoRng for DerivedRng {}

/// RSA PKCS#1 v1.5 encryption of `text` (the hex key or IV) for `recipient`'s key, as hex.
///
/// # Errors
/// The RSA operation fails (it cannot for 32 bytes and a ≥ 2048-bit key).
pub fn encrypt_for(
    key: &PublicKey,
    session: &SessionKey,
    recipient: &str,
    what: &str,
    text: &str,
) -> Result<String> {
    let out = if session.fixed {
        let mut rng = DerivedRng::new(session, recipient, what);
        key.pkcs1v15_encrypt_with_rng(&mut rng, text.as_bytes())
    } else {
        key.pkcs1v15_encrypt(text.as_bytes())
    }
    .map_err(|source| {
        Error::new(
            ErrorKind::Io,
            Ec2Error::Rsa {
                op: "encryption",
                source,
            },
        )
    })?;
    Ok(hex(&out))
}

/// RSA-SHA1 PKCS#1 v1.5 signature of `data`, as hex.
///
/// # Errors
/// The RSA operation fails.
pub fn sign_sha1(key: &PrivateKey, data: &[u8]) -> Result<String> {
    let sig = key.pkcs1v15_sign::<Sha1>(data).map_err(|source| {
        Error::new(
            ErrorKind::Io,
            Ec2Error::Rsa {
                op: "signing",
                source,
            },
        )
    })?;
    Ok(hex(&sig))
}

/// Whether `sig` is a valid RSA-SHA1 signature of `data` by `key`.
pub fn verify_sha1(key: &PublicKey, data: &[u8], sig: &[u8]) -> bool {
    key.pkcs1v15_verify::<Sha1>(data, sig).is_ok()
}

/// Decrypts an RSA PKCS#1 v1.5 hex ciphertext that must hold 32 hex characters (a key or
/// IV). `None` when it does not: the wrong private key yields a random-looking message
/// (implicit rejection), never an error, so the shape is the test.
pub fn decrypt_hex16(key: &PrivateKey, hex_text: &str) -> Option<[u8; 16]> {
    let ct = parse_hex(hex_text)?;
    let plain = key.pkcs1v15_decrypt(&ct).ok()?;
    let text = std::str::from_utf8(&plain).ok()?;
    parse_hex16("key", text).ok()
}

/// AES-128-CBC encryption of a stream with PKCS#7 padding, as `openssl enc -aes-128-cbc
/// -K KEY -iv IV`. Holds at most 15 bytes between calls.
pub struct CbcEncryptor {
    cipher: cbc::Encryptor<Aes128>,
    pending: [u8; AES_BLOCK],
    pending_len: usize,
}

impl CbcEncryptor {
    /// An encryptor for `session`.
    pub fn new(session: &SessionKey) -> Self {
        Self {
            cipher: cbc::Encryptor::<Aes128>::new(&session.key.into(), &session.iv.into()),
            pending: [0; AES_BLOCK],
            pending_len: 0,
        }
    }

    /// Appends the ciphertext of `input`'s whole blocks (with earlier leftovers) to `out`.
    pub fn update(&mut self, input: &[u8], out: &mut Vec<u8>) {
        let start = out.len();
        out.extend_from_slice(&self.pending[..self.pending_len]);
        out.extend_from_slice(input);
        let whole = (out.len() - start) / AES_BLOCK * AES_BLOCK;
        let tail = out.len() - start - whole;
        self.pending[..tail].copy_from_slice(&out[start + whole..]);
        self.pending_len = tail;
        out.truncate(start + whole);
        let (blocks, _) = Array::slice_as_chunks_mut(&mut out[start..]);
        self.cipher.encrypt_blocks(blocks);
    }

    /// Appends the final, padded block.
    pub fn finish(mut self, out: &mut Vec<u8>) {
        let pad = AES_BLOCK - self.pending_len;
        // pad is 1..=16 and fits a byte.
        self.pending[self.pending_len..].fill(u8::try_from(pad).unwrap_or(16));
        let mut block = Array::from(self.pending);
        self.cipher.encrypt_block(&mut block);
        out.extend_from_slice(&block);
    }
}

/// AES-128-CBC decryption of a stream; the last block is held back until [`finish`]
/// checks and strips its PKCS#7 padding.
///
/// [`finish`]: CbcDecryptor::finish
pub struct CbcDecryptor {
    cipher: cbc::Decryptor<Aes128>,
    held: Vec<u8>,
}

impl CbcDecryptor {
    /// A decryptor for `key` and `iv`.
    pub fn new(key: [u8; 16], iv: [u8; 16]) -> Self {
        Self {
            cipher: cbc::Decryptor::<Aes128>::new(&key.into(), &iv.into()),
            held: Vec::with_capacity(2 * AES_BLOCK),
        }
    }

    /// Appends the plaintext of `input` to `out`, except the last full block seen so far.
    pub fn update(&mut self, input: &[u8], out: &mut Vec<u8>) {
        let start = out.len();
        out.extend_from_slice(&self.held);
        out.extend_from_slice(input);
        let total = out.len() - start;
        // Keep the last whole block (it may be the padded one) and any partial block.
        let keep = match total % AES_BLOCK {
            0 => AES_BLOCK.min(total),
            partial => partial,
        };
        let ready = total - keep;
        self.held.clear();
        self.held.extend_from_slice(&out[start + ready..]);
        out.truncate(start + ready);
        let (blocks, _) = Array::slice_as_chunks_mut(&mut out[start..]);
        self.cipher.decrypt_blocks(blocks);
    }

    /// Decrypts the held block and appends it without its padding; `None` when the
    /// ciphertext is not a whole number of blocks or the padding is wrong.
    pub fn finish(mut self, out: &mut Vec<u8>) -> Option<()> {
        let mut block: [u8; AES_BLOCK] = self.held.as_slice().try_into().ok()?;
        let mut arr = Array::from(block);
        self.cipher.decrypt_block(&mut arr);
        block.copy_from_slice(&arr);
        let pad = usize::from(block[AES_BLOCK - 1]);
        if pad == 0
            || pad > AES_BLOCK
            || block[AES_BLOCK - pad..]
                .iter()
                .any(|&b| b != block[AES_BLOCK - 1])
        {
            return None;
        }
        out.extend_from_slice(&block[..AES_BLOCK - pad]);
        Some(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session() -> SessionKey {
        SessionKey::from_hex(
            "000102030405060708090a0b0c0d0e0f",
            "f0e0d0c0b0a090807060504030201000",
        )
        .unwrap()
    }

    #[test]
    fn cbc_round_trips_across_uneven_pieces() {
        let data: Vec<u8> = (0..1000u32).map(|i| (i * 7).to_le_bytes()[0]).collect();
        let mut enc = CbcEncryptor::new(&session());
        let mut ct = Vec::new();
        for piece in data.chunks(77) {
            enc.update(piece, &mut ct);
        }
        enc.finish(&mut ct);
        assert_eq!(ct.len(), 1008);
        let s = session();
        let mut dec = CbcDecryptor::new(s.key, s.iv);
        let mut pt = Vec::new();
        for piece in ct.chunks(100) {
            dec.update(piece, &mut pt);
        }
        dec.finish(&mut pt).unwrap();
        assert_eq!(pt, data);
    }

    #[test]
    fn cbc_matches_the_nist_sp800_38a_vector() {
        // SP 800-38A F.2.1, CBC-AES128.Encrypt, first block.
        let s = SessionKey::from_hex(
            "2b7e151628aed2a6abf7158809cf4f3c",
            "000102030405060708090a0b0c0d0e0f",
        )
        .unwrap();
        let mut ct = Vec::new();
        let mut enc = CbcEncryptor::new(&s);
        enc.update(
            &parse_hex("6bc1bee22e409f96e93d7e117393172a").unwrap(),
            &mut ct,
        );
        assert_eq!(hex(&ct), "7649abac8119b246cee98e9b12e9197d");
    }

    #[test]
    fn aligned_input_gets_a_whole_padding_block() {
        let mut enc = CbcEncryptor::new(&session());
        let mut ct = Vec::new();
        enc.update(&[0u8; 32], &mut ct);
        enc.finish(&mut ct);
        assert_eq!(ct.len(), 48);
    }

    #[test]
    fn hex_parsing_refuses_odd_and_non_hex() {
        assert_eq!(parse_hex("0aFF"), Some(vec![0x0a, 0xff]));
        assert_eq!(parse_hex("abc"), None);
        assert_eq!(parse_hex("zz"), None);
    }
}
