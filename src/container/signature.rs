//! Package signatures (`NAME.cert`, DSP0243 §5.2), as ovftool and `VBoxManage signova`
//! write them: one line `ALG(NAME.mf)= <hex RSA PKCS#1 v1.5 signature of the manifest's
//! bytes>`, then the signer's X.509 certificate and any intermediates in PEM. The same
//! signature `openssl dgst -sha256 -sign key.pem NAME.mf` makes and `openssl dgst -sha256
//! -verify pub.pem -signature sig NAME.mf` checks.
//!
//! RSA keys only (what both tools sign with); SHA1, SHA256 and SHA512 signatures are checked,
//! kiln signs with SHA256. Private keys are PEM, PKCS#8 (`PRIVATE KEY`) or PKCS#1 (`RSA
//! PRIVATE KEY`), unencrypted, at least 2048 bits.
//!
//! The `rsa` crate's private-key operation is not constant-time (RUSTSEC-2023-0071, the
//! Marvin attack): an attacker who can time many decryptions or signatures with the key can
//! learn it. kiln signs with the user's own key on the user's own machine, once per package,
//! with nothing measuring; verification uses only the public key.

use std::path::Path;

use rsa::PublicKey;
use rsa::pkcs1v15::{Signature, SigningKey, VerifyingKey};
use rsa::pkcs8::DecodePublicKey;
use rsa::signature::{SignatureEncoding, Signer as _, Verifier};
use sha1::Sha1;
use sha2::{Sha256, Sha512};
use x509_cert::Certificate;
use x509_cert::der::Encode;

use super::ec2::crypto::{load_private_key, parse_hex};
use super::finding::Finding;
use super::manifest::{Algorithm, hex};
use crate::error::{Error, ErrorKind, Result};

/// Largest certificate file or key read.
pub const CERT_MAX_BYTES: u64 = 1 << 20;

/// What a `.cert` file says.
#[derive(Debug, Clone)]
pub struct CertFile {
    /// Digest of the signature.
    pub alg: Algorithm,
    /// The manifest it claims to sign.
    pub manifest: String,
    /// The signature bytes.
    pub signature: Vec<u8>,
    /// The certificates, signer first.
    pub chain: Vec<Certificate>,
}

/// What kiln found about a signature, for reports.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CertStatus {
    /// Signature digest (`SHA256`).
    pub algorithm: &'static str,
    /// The signer's subject (RFC 4514 string).
    pub subject: String,
    /// The signer's issuer.
    pub issuer: String,
    /// Valid from, seconds since the Unix epoch.
    pub not_before: u64,
    /// Valid until, seconds since the Unix epoch.
    pub not_after: u64,
    /// Subject equals issuer.
    pub self_signed: bool,
    /// Certificates in the file.
    pub chain_len: usize,
    /// The signature matches the manifest and the signer's public key.
    pub signature_valid: bool,
}

/// Parses a `.cert` file named `name`.
///
/// # Errors
/// A [`Finding`] (`cert.syntax`, `cert.no-certificate`) saying what is wrong.
pub fn parse_cert(bytes: &[u8], name: &str) -> std::result::Result<CertFile, Finding> {
    let bad = |code, message: String| Finding::error(code, message).at(name);
    let text = std::str::from_utf8(bytes)
        .map_err(|_| bad("cert.syntax", format!("{name} is not text")))?;
    let first = text
        .lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or_default();
    let parsed = first.split_once('(').and_then(|(alg, rest)| {
        let (mf, sig) = rest.split_once(")= ")?;
        Some((alg, mf, sig.trim()))
    });
    let Some((alg, manifest, sig)) = parsed else {
        return Err(bad(
            "cert.syntax",
            format!(
                "the first line is not `ALG(NAME.mf)= hexsignature`: `{}`",
                first.chars().take(80).collect::<String>()
            ),
        ));
    };
    let alg = match alg {
        "SHA1" => Algorithm::Sha1,
        "SHA256" => Algorithm::Sha256,
        "SHA512" => Algorithm::Sha512,
        other => {
            return Err(bad(
                "cert.syntax",
                format!("signature algorithm `{other}` is not SHA1, SHA256 or SHA512"),
            ));
        }
    };
    let signature = parse_hex(sig)
        .filter(|b| !b.is_empty())
        .ok_or_else(|| bad("cert.syntax", "the signature is not hex".into()))?;
    let pem_at = text.find("-----BEGIN").ok_or_else(|| {
        bad(
            "cert.no-certificate",
            format!("{name} holds no PEM certificate"),
        )
    })?;
    let chain = Certificate::load_pem_chain(&text.as_bytes()[pem_at..]).map_err(|e| {
        bad(
            "cert.no-certificate",
            format!("the PEM certificate cannot be read ({e})"),
        )
    })?;
    if chain.is_empty() {
        return Err(bad(
            "cert.no-certificate",
            format!("{name} holds no PEM certificate"),
        ));
    }
    Ok(CertFile {
        alg,
        manifest: manifest.to_string(),
        signature,
        chain,
    })
}

/// Checks `cert` against the manifest `mf` (named `mf_name`) at time `now` (Unix seconds).
pub fn check(
    cert: &CertFile,
    mf: &[u8],
    mf_name: &str,
    cert_name: &str,
    now: u64,
) -> (CertStatus, Vec<Finding>) {
    let mut findings = Vec::new();
    let signer = &cert.chain[0];
    let tbs = signer.tbs_certificate();
    let validity = tbs.validity();
    let not_before = validity.not_before.to_unix_duration().as_secs();
    let not_after = validity.not_after.to_unix_duration().as_secs();
    let status = |valid| CertStatus {
        algorithm: cert.alg.label(),
        subject: tbs.subject().to_string(),
        issuer: tbs.issuer().to_string(),
        not_before,
        not_after,
        self_signed: tbs.subject() == tbs.issuer(),
        chain_len: cert.chain.len(),
        signature_valid: valid,
    };
    if cert.manifest != mf_name {
        findings.push(
            Finding::error(
                "cert.name",
                format!(
                    "the signature line names `{}`, but the manifest is `{mf_name}`",
                    cert.manifest
                ),
            )
            .at(cert_name),
        );
    }
    let valid = match public_key(signer) {
        Ok(key) => verify_signature(cert.alg, &key, mf, &cert.signature),
        Err(reason) => {
            findings.push(Finding::error("cert.key", reason).at(cert_name));
            false
        }
    };
    if !valid {
        let f = Finding::error(
            "cert.signature-invalid",
            format!(
                "the {} signature of {mf_name} does not verify with the certificate's public key: the manifest or the signature was changed after signing",
                cert.alg.label()
            ),
        );
        findings.push(f.at(cert_name));
    }
    let st = status(valid);
    time_and_trust(&st, now, cert_name, &mut findings);
    (st, findings)
}

/// Expiry and self-signed warnings.
fn time_and_trust(st: &CertStatus, now: u64, cert_name: &str, findings: &mut Vec<Finding>) {
    if now > st.not_after {
        let f = Finding::warning(
            "cert.expired",
            format!(
                "the certificate of `{}` expired at Unix time {}; importers warn or refuse",
                st.subject, st.not_after
            ),
        );
        findings.push(f.at(cert_name));
    }
    if now < st.not_before {
        let f = Finding::warning(
            "cert.not-yet-valid",
            format!(
                "the certificate of `{}` is valid only from Unix time {}",
                st.subject, st.not_before
            ),
        );
        findings.push(f.at(cert_name));
    }
    if st.self_signed {
        let f = Finding::warning(
            "cert.self-signed",
            format!(
                "the certificate of `{}` is self-signed: the signature proves the package is unchanged, not who made it (importers show it as untrusted)",
                st.subject
            ),
        );
        findings.push(f.at(cert_name));
    }
}

/// The RSA public key of `cert`.
fn public_key(cert: &Certificate) -> std::result::Result<PublicKey, String> {
    let spki = cert
        .tbs_certificate()
        .subject_public_key_info()
        .to_der()
        .map_err(|e| format!("the certificate's public key cannot be read ({e})"))?;
    PublicKey::from_public_key_der(&spki)
        .map_err(|e| format!("the certificate's key is not an RSA key kiln reads ({e})"))
}

/// Whether `signature` is `key`'s PKCS#1 v1.5 signature of `message` with `alg`.
fn verify_signature(alg: Algorithm, key: &PublicKey, message: &[u8], signature: &[u8]) -> bool {
    let Ok(sig) = Signature::try_from(signature) else {
        return false;
    };
    let key = key.clone();
    match alg {
        Algorithm::Sha1 => VerifyingKey::<Sha1>::new(key).verify(message, &sig).is_ok(),
        Algorithm::Sha256 => VerifyingKey::<Sha256>::new(key)
            .verify(message, &sig)
            .is_ok(),
        Algorithm::Sha512 => VerifyingKey::<Sha512>::new(key)
            .verify(message, &sig)
            .is_ok(),
    }
}

/// Why signing cannot start.
#[remain::sorted]
#[derive(Debug, thiserror::Error)]
pub enum SignError {
    /// A key or certificate file is not what it should be.
    #[error("{what} `{path}`: {problem}")]
    BadKey {
        /// `private key` or `certificate`.
        what: &'static str,
        /// The file.
        path: String,
        /// What is wrong.
        problem: String,
    },
    /// The key does not belong to the certificate.
    #[error("the private key `{key}` is not the key of certificate `{cert}`")]
    KeyMismatch {
        /// Key file.
        key: String,
        /// Certificate file.
        cert: String,
    },
}

impl From<SignError> for Error {
    fn from(e: SignError) -> Self {
        Error::new(ErrorKind::InvalidInput, e)
    }
}

/// A signer: the private key and the certificate chain it signs for.
pub struct PackageSigner {
    key: SigningKey<Sha256>,
    /// The certificate chain's PEM text, signer first, ending with a newline.
    chain_pem: String,
}

impl PackageSigner {
    /// Loads `key` (PEM RSA private key) and `cert` (PEM certificate chain, signer first)
    /// and checks that they belong together.
    ///
    /// # Errors
    /// [`SignError`] for unreadable, encrypted, short or mismatched keys; I/O errors.
    pub fn load(key: &Path, cert: &Path) -> Result<Self> {
        // The EC2 bundler's loader: PKCS#8 or PKCS#1 PEM, unencrypted, at least 2048 bits.
        let private = load_private_key(key)?;
        let chain_pem = read_text(cert, "certificate")?;
        let bad = |problem: String| SignError::BadKey {
            what: "certificate",
            path: cert.display().to_string(),
            problem,
        };
        let chain = Certificate::load_pem_chain(chain_pem.as_bytes())
            .map_err(|e| bad(format!("not a PEM X.509 certificate ({e})")))?;
        let first = chain
            .first()
            .ok_or_else(|| bad("holds no certificate".into()))?;
        let public = public_key(first).map_err(bad)?;
        if &public != private.as_public_key() {
            return Err(SignError::KeyMismatch {
                key: key.display().to_string(),
                cert: cert.display().to_string(),
            }
            .into());
        }
        let mut chain_pem = chain_pem.trim_end().to_string();
        chain_pem.push('\n');
        Ok(Self {
            key: SigningKey::<Sha256>::new(private),
            chain_pem,
        })
    }

    /// The `.cert` text for manifest `mf` named `mf_name`: the signature line and the chain.
    ///
    /// # Errors
    /// The RSA operation fails.
    pub fn cert_text(&self, mf: &[u8], mf_name: &str) -> Result<String> {
        let sig = self
            .key
            .try_sign(mf)
            .map_err(|e| Error::new(ErrorKind::Io, format!("RSA signing failed: {e}")))?;
        Ok(format!(
            "SHA256({mf_name})= {}\n{}",
            hex(&sig.to_bytes()),
            self.chain_pem
        ))
    }
}

fn read_text(path: &Path, what: &'static str) -> Result<String> {
    let bad = |problem: &str| SignError::BadKey {
        what,
        path: path.display().to_string(),
        problem: problem.into(),
    };
    let meta = std::fs::metadata(path).map_err(|e| Error::io(e).with_path(path))?;
    if meta.len() > CERT_MAX_BYTES {
        return Err(bad("larger than 1 MiB").into());
    }
    let bytes = std::fs::read(path).map_err(|e| Error::io(e).with_path(path))?;
    Ok(String::from_utf8(bytes).map_err(|_| bad("not PEM text"))?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(bytes: &[u8]) -> &'static str {
        parse_cert(bytes, "a.cert").unwrap_err().code
    }

    #[test]
    fn a_first_line_without_the_signature_form_is_a_syntax_error() {
        assert_eq!(code(b"-----BEGIN CERTIFICATE-----\n"), "cert.syntax");
    }

    #[test]
    fn an_unknown_signature_digest_is_a_syntax_error() {
        assert_eq!(code(b"MD5(a.mf)= 00ff\n"), "cert.syntax");
    }

    #[test]
    fn a_signature_that_is_not_hex_is_a_syntax_error() {
        assert_eq!(code(b"SHA256(a.mf)= xyz\n"), "cert.syntax");
    }

    #[test]
    fn a_file_without_a_pem_certificate_is_refused() {
        assert_eq!(code(b"SHA256(a.mf)= 00ff\n"), "cert.no-certificate");
    }

    #[test]
    fn a_broken_pem_certificate_is_refused() {
        let text =
            b"SHA256(a.mf)= 00ff\n-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        assert_eq!(code(text), "cert.no-certificate");
    }
}
