//! Why a source could not be fetched or verified: one line each, naming the file or URL and
//! the spec location.

/// Why a source could not be fetched or verified.
#[remain::sorted]
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// The CA bundle named by `SSL_CERT_FILE` cannot be used.
    #[error("SSL_CERT_FILE {path}: {reason}")]
    CaFile {
        /// The file named.
        path: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Two or more lines of one algorithm for the image's name.
    #[error("{at}: {file} has {count} {algo} lines for `{name}`: {lines}; refusing to guess")]
    ChecksumAmbiguous {
        /// Spec location.
        at: String,
        /// Checksum file.
        file: String,
        /// Image file name.
        name: String,
        /// Algorithm.
        algo: &'static str,
        /// How many lines.
        count: usize,
        /// The lines (line numbers).
        lines: String,
    },
    /// No line for the image's name.
    #[error("{at}: {file} has no line for `{name}` (lines seen: {seen})")]
    ChecksumMissing {
        /// Spec location.
        at: String,
        /// Checksum file.
        file: String,
        /// Image file name.
        name: String,
        /// Names it does list (bounded).
        seen: String,
    },
    /// Only MD5/SHA-1 (or unknown) digests for the name.
    #[error(
        "{at}: {file} lists only {algos} for `{name}`; kiln needs SHA-256 or SHA-512 (weaker digests are refused)"
    )]
    ChecksumWeak {
        /// Spec location.
        at: String,
        /// Checksum file.
        file: String,
        /// Image file name.
        name: String,
        /// The algorithms found.
        algos: String,
    },
    /// A digest differs from the expected one.
    #[error("{at}: {algo} of {what} is {found}, but {source_of} says {expected}")]
    DigestMismatch {
        /// Spec location, `spec.yaml:7:9 disks[0].source`.
        at: String,
        /// `sha256` or `sha512`.
        algo: &'static str,
        /// File or URL.
        what: String,
        /// Computed (boxed: keeps the enum small).
        found: Box<str>,
        /// Expected.
        expected: Box<str>,
        /// Where the expected digest came from: `the spec` or the checksum file.
        source_of: String,
    },
    /// The HTTP request failed.
    #[error("cannot download {url}{via}")]
    Download {
        /// The URL.
        url: String,
        /// ` through proxy http://…` or empty.
        via: String,
        /// The client error.
        #[source]
        source: Box<ureq::Error>,
    },
    /// The server answered with an error status.
    #[error("cannot download {url}{via}: HTTP status {status}")]
    DownloadStatus {
        /// The URL.
        url: String,
        /// ` through proxy http://…` or empty.
        via: String,
        /// HTTP status.
        status: u16,
    },
    /// A checksum, signature or keyring file is larger than kiln reads.
    #[error("{at}: {what} is larger than {limit} bytes; not a checksum, signature or keyring file")]
    FileTooLarge {
        /// Spec location.
        at: String,
        /// File or URL.
        what: String,
        /// Bound.
        limit: u64,
    },
    /// The signing key has expired.
    #[error(
        "{at}: signature {sig} was made by key {key} in {keyring}, which expired at {expired} (unix time)"
    )]
    KeyExpired {
        /// Spec location.
        at: String,
        /// Signature file.
        sig: String,
        /// Key fingerprint.
        key: String,
        /// Keyring file.
        keyring: String,
        /// Expiry, seconds since the epoch.
        expired: u64,
    },
    /// The signing key is revoked.
    #[error("{at}: signature {sig} was made by key {key} in {keyring}, which is revoked")]
    KeyRevoked {
        /// Spec location.
        at: String,
        /// Signature file.
        sig: String,
        /// Key fingerprint.
        key: String,
        /// Keyring file.
        keyring: String,
    },
    /// The keyring holds no usable public key.
    #[error("{at}: {keyring} holds no OpenPGP public key: {reason}")]
    Keyring {
        /// Spec location.
        at: String,
        /// Keyring file.
        keyring: String,
        /// Parser message.
        reason: String,
    },
    /// `--offline` and some sources are not in the cache.
    #[error(
        "--offline: not in the cache {dir}: {missing}; run `kiln fetch SPEC` where the network is reachable"
    )]
    NotCached {
        /// The cache directory.
        dir: String,
        /// Every missing source (`spec:line:col disks[i].source: URL`), `; `-separated.
        missing: String,
    },
    /// The signature does not verify with the key that made it.
    #[error("{at}: BAD signature {sig} over {what} (key {key} in {keyring})")]
    SignatureBad {
        /// Spec location.
        at: String,
        /// Signature file.
        sig: String,
        /// The signed file.
        what: String,
        /// Key fingerprint.
        key: String,
        /// Keyring file.
        keyring: String,
    },
    /// The signature file could not be read as OpenPGP.
    #[error("{at}: {sig} is not an OpenPGP detached signature: {reason}")]
    SignatureUnreadable {
        /// Spec location.
        at: String,
        /// Signature file.
        sig: String,
        /// Parser message.
        reason: String,
    },
    /// No key in the keyring made the signature.
    #[error("{at}: signature {sig} was made by key {issuer}, which is not in {keyring}")]
    UnknownKey {
        /// Spec location.
        at: String,
        /// Signature file.
        sig: String,
        /// Issuer key id or fingerprint.
        issuer: String,
        /// Keyring file.
        keyring: String,
    },
}
