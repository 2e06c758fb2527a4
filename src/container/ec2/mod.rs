//! EC2 instance-store bundles: what `ec2-bundle-image` writes (manifest version
//! 2007-10-10), written, verified and unbundled by kiln.
//!
//! Bundling ([`bundle()`]) streams the image once: a GNU tar of the file ([`gnutar`],
//! sparse-aware, byte for byte as `tar -c -h -S --owner 0 --group 0`; its SHA-1 is the
//! image digest), gzip compressed on every core into one member ([`gzip`], pigz-style
//! chunks made non-final by [`deflate`]), AES-128-CBC encrypted ([`crypto`]), split into
//! 10 MiB parts `NAME.part.N` ([`parts`]), and described by `NAME.manifest.xml`
//! ([`manifest`]) signed with the user's key. Memory is bounded by the chunks in flight
//! (a few MiB per core) and the sparse map of the image, never by its size.
//!
//! Unbundling ([`unbundle()`]) and verification ([`verify()`]) read untrusted manifests
//! ([`parse`]): bounded XML, structure checks, the signature when a certificate is given,
//! every part digest, then the decryption, the image digest and the tar member
//! ([`untar`]), writing the image only when everything checked.
//!
//! Not implemented: bundling a volume (`ec2-bundle-vol`), uploading, and the region
//! certificates of EC2 (pass EC2's certificate with `--ec2-cert`).

pub mod bundle;
pub mod crypto;
pub mod deflate;
pub mod gnutar;
pub mod gzip;
pub mod manifest;
pub mod parse;
pub mod parts;
pub mod pipeline;
pub mod unbundle;
pub mod untar;
pub mod validate;

pub use bundle::{BundleOptions, BundleReport, bundle, preflight};
pub use unbundle::{Check, UnbundleOptions, VerifyOptions, unbundle, verify};

/// Errors of the layers below a reader (the image changing, decryption, gzip) travel
/// inside `io::Error`; this recovers them so they keep their own message.
pub(crate) fn passthrough(e: std::io::Error) -> Result<Ec2Error, std::io::Error> {
    if !e.get_ref().is_some_and(|inner| inner.is::<Ec2Error>()) {
        return Err(e);
    }
    let inner = e.into_inner().expect("get_ref returned an Ec2Error");
    Ok(*inner
        .downcast::<Ec2Error>()
        .expect("checked to be an Ec2Error"))
}

/// Why a bundle could not be written, verified or unbundled. Messages name the step (as
/// the reference decoder does) and the value at fault.
#[remain::sorted]
#[derive(Debug, thiserror::Error)]
pub enum Ec2Error {
    /// The account number is not 12 digits.
    #[error("account number {user:?} must be 12 digits (no dashes)")]
    BadAccount {
        /// What was given.
        user: String,
    },
    /// Unknown architecture.
    #[error("architecture {arch:?} must be i386 or x86_64")]
    BadArch {
        /// What was given.
        arch: String,
    },
    /// A block device mapping names a device EC2 refuses.
    #[error(
        "invalid block device mapping {virtual_name}={device}: device must be sd, xvd or hd, \
         one or two letters and an optional partition 1-15 (e.g. sda1, /dev/sdb, xvdf)"
    )]
    BadDevice {
        /// The virtual name.
        virtual_name: String,
        /// The device given.
        device: String,
    },
    /// An EC2 id has the wrong shape.
    #[error("{id:?} is not an {prefix} id ({prefix}- and 8 or 17 hex digits)")]
    BadId {
        /// Expected prefix.
        prefix: &'static str,
        /// What was given.
        id: String,
    },
    /// Unknown image type.
    #[error("image type {kind:?} must be machine, kernel or ramdisk")]
    BadImageType {
        /// What was given.
        kind: String,
    },
    /// A key or certificate file is unusable.
    #[error("{what}: {problem}")]
    BadKey {
        /// Which file (certificate, private key, EC2 certificate).
        what: &'static str,
        /// What is wrong with it.
        problem: String,
    },
    /// A block device mapping entry is malformed.
    #[error("invalid block device mapping {entry:?}: {problem}")]
    BadMapping {
        /// The entry.
        entry: String,
        /// What is wrong.
        problem: &'static str,
    },
    /// A name used as a file name is unsafe.
    #[error("name {name:?} {problem}")]
    BadName {
        /// The name.
        name: String,
        /// What is wrong.
        problem: &'static str,
    },
    /// A product code has the wrong shape.
    #[error("product code {code:?} must be 1-64 letters and digits")]
    BadProductCode {
        /// What was given.
        code: String,
    },
    /// The bundled size does not add up.
    #[error("parts: the parts hold {found} bytes, <bundled_size> says {expected}")]
    BundledSize {
        /// Sum of the part sizes.
        found: u64,
        /// The manifest's value.
        expected: u64,
    },
    /// libdeflate's output could not be joined (a bug, never input-dependent).
    #[error("internal error joining compressed chunks")]
    Compress(#[source] deflate::DeflateError),
    /// AES-CBC decryption failed.
    #[error(
        "decrypt: AES-128-CBC padding is wrong after {bytes} bytes (wrong key/IV or damaged parts)"
    )]
    Decrypt {
        /// Ciphertext bytes read.
        bytes: u64,
    },
    /// No encrypted key decrypts with the private key.
    #[error(
        "decrypt-key: neither user_encrypted_key nor ec2_encrypted_key decrypts to a 32-digit \
         hex key with this private key (wrong key?)"
    )]
    DecryptKey,
    /// The gzip stream is damaged.
    #[error("gunzip: {problem}")]
    Gunzip {
        /// What is wrong.
        problem: String,
    },
    /// The image changed size while it was read.
    #[error(
        "the image changed while it was read (at offset {offset:#x}); bundle a file nothing writes to"
    )]
    ImageChanged {
        /// Where the read came up short.
        offset: u64,
    },
    /// The image digest differs.
    #[error("digest: SHA1 of the tar stream is {found}, the manifest says {expected}")]
    ImageDigest {
        /// Computed digest.
        found: String,
        /// The manifest's digest.
        expected: String,
    },
    /// The image is over the instance-store limit.
    #[error("image is {size} bytes; instance-store images may be at most {limit} bytes (10 GiB)")]
    ImageTooLarge {
        /// Image size.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// The certificate does not belong to the private key.
    #[error("the certificate's public key does not match the private key")]
    KeyMismatch,
    /// The input is not a manifest.
    #[error("not an EC2 bundle manifest (expected XML whose root element is <manifest>)")]
    NotManifest,
    /// The image is not a regular file.
    #[error("not a regular file")]
    NotRegularFile,
    /// The destination already holds a bundle of this name.
    #[error("{path} already exists; pass --force to replace it")]
    OutputExists {
        /// The existing file.
        path: std::path::PathBuf,
    },
    /// A part's digest differs.
    #[error("parts: part {index} ({name}) has SHA1 {found}, the manifest says {expected}")]
    PartDigest {
        /// Part index.
        index: usize,
        /// File name.
        name: String,
        /// Computed digest.
        found: String,
        /// The manifest's digest.
        expected: String,
    },
    /// A part file is missing.
    #[error("parts: part {index} ({name}) is missing")]
    PartMissing {
        /// Part index.
        index: usize,
        /// File name.
        name: String,
    },
    /// The pass stopped before the last chunk without an error (a bug).
    #[error("internal error: the compression pass ended before the last chunk")]
    PassEndedEarly,
    /// The operating system gave no random bytes.
    #[error("no randomness from the operating system")]
    Random(#[source] getrandom::Error),
    /// An RSA operation failed.
    #[error("RSA {op} failed")]
    Rsa {
        /// encryption or signing.
        op: &'static str,
        /// The cause.
        #[source]
        source: rsa::Error,
    },
    /// The signature does not verify.
    #[error(
        "signature: the RSA-SHA1 signature over <machine_configuration><image> does not verify with the certificate"
    )]
    Signature,
    /// The manifest breaks a structure rule.
    #[error("structure: {problem} (manifest byte {offset})")]
    Structure {
        /// Byte offset in the manifest.
        offset: u64,
        /// The rule broken.
        problem: String,
    },
    /// The tar stream is not one regular file as expected.
    #[error("tar: {problem} (tar offset {offset:#x})")]
    Tar {
        /// Offset in the tar stream.
        offset: u64,
        /// What is wrong.
        problem: String,
    },
}
