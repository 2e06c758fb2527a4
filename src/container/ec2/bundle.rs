//! `kiln bundle`: an image file into an EC2 bundle (parts and a signed manifest).
//!
//! Everything that can be checked is checked before the first byte is written: the names,
//! the account number, ids and mappings, the keys (readable, RSA ≥ 2048 bits, the user's
//! certificate matching the private key), the image (a regular file within the 10 GiB
//! instance-store limit) and the destination (no bundle of that name, unless forced).

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use rsa::{PrivateKey, PublicKey};

use super::Ec2Error;
use super::crypto::{
    CbcEncryptor, SessionKey, encrypt_for, key_matches, load_certificate_key, load_private_key,
    sign_sha1,
};
use super::gnutar::{TarStream, scan_layout};
use super::manifest::{
    Bundler, EncryptedKeys, ImageInfo, MANIFEST_VERSION, MachineConfiguration, Manifest, PartEntry,
    part_names,
};
use super::parts::{PartWriter, StagedParts};
use super::pipeline::compress_stream;
use super::validate::{
    Arch, ImageType, check_account, check_file_name, check_id, check_mapping, check_product_code,
};
use crate::context::BuildContext;
use crate::error::{Error, ErrorKind, Result};
use crate::io::output::OutputSet;

/// ec2-bundle-image's limit on the image size (10 GiB).
pub const IMAGE_SIZE_LIMIT: u64 = 10 << 30;
/// gzip level: libdeflate 6 is already smaller than `gzip -9` on disk images (0.4% on the
/// benchmark corpus, with 2 MiB chunks) at about 8× its speed per core; 5 is 0.1% larger.
pub const GZIP_LEVEL: i32 = 6;

/// What to bundle and how.
#[derive(Debug, Clone)]
pub struct BundleOptions {
    /// The raw image file.
    pub image: PathBuf,
    /// Directory for the parts and the manifest (created when missing).
    pub destination: PathBuf,
    /// Bundle name (tar member, part and manifest names); default: the image's file name.
    pub name: Option<String>,
    /// 12-digit AWS account number.
    pub user: String,
    /// The user's X.509 certificate (PEM).
    pub cert: PathBuf,
    /// The user's RSA private key (PEM); signs the manifest.
    pub private_key: PathBuf,
    /// EC2's X.509 certificate (PEM).
    pub ec2_cert: PathBuf,
    /// Architecture.
    pub arch: Arch,
    /// machine, kernel or ramdisk.
    pub kind: ImageType,
    /// Kernel to boot with (`aki-…`).
    pub kernel_id: Option<String>,
    /// Ramdisk to boot with (`ari-…`).
    pub ramdisk_id: Option<String>,
    /// Kernel file name (kernel images; default: the bundle name).
    pub kernel_name: Option<String>,
    /// Block device mapping, virtual name to device.
    pub block_device_mapping: BTreeMap<String, String>,
    /// Product codes.
    pub product_codes: Vec<String>,
    /// Ancestor AMI ids.
    pub ancestors: Vec<String>,
    /// Fixed AES key and IV (tests only); random when `None`.
    pub session: Option<SessionKey>,
    /// The `<bundler>` element.
    pub bundler: Bundler,
    /// Replace an existing bundle of the same name.
    pub force: bool,
    /// fsync the outputs before renaming them into place.
    pub sync: bool,
    /// Compression threads (0: one per core).
    pub threads: usize,
}

impl BundleOptions {
    /// Options with the defaults: x86_64 machine image, no mapping, random key, synced.
    pub fn new(image: &Path, destination: &Path, user: &str, keys: [&Path; 3]) -> Self {
        let [cert, private_key, ec2_cert] = keys;
        Self {
            image: image.to_path_buf(),
            destination: destination.to_path_buf(),
            name: None,
            user: user.to_string(),
            cert: cert.to_path_buf(),
            private_key: private_key.to_path_buf(),
            ec2_cert: ec2_cert.to_path_buf(),
            arch: Arch::default(),
            kind: ImageType::default(),
            kernel_id: None,
            ramdisk_id: None,
            kernel_name: None,
            block_device_mapping: BTreeMap::new(),
            product_codes: Vec::new(),
            ancestors: Vec::new(),
            session: None,
            bundler: Bundler::default(),
            force: false,
            sync: true,
            threads: 0,
        }
    }
}

/// What a bundle run wrote.
#[derive(Debug, Clone)]
pub struct BundleReport {
    /// `NAME.manifest.xml`.
    pub manifest: PathBuf,
    /// The part files in order.
    pub parts: Vec<PathBuf>,
    /// SHA-1 of the tar stream (the manifest's image digest).
    pub digest: String,
    /// Image size.
    pub size: u64,
    /// Sum of the part sizes.
    pub bundled_size: u64,
}

/// The keys a bundle needs.
struct Keys {
    user: PublicKey,
    ec2: PublicKey,
    private: PrivateKey,
}

/// Writes the bundle `opts` describes.
///
/// # Errors
/// Invalid options, keys or image (nothing is written then), or I/O failures (partial
/// files are removed).
pub fn bundle(opts: &BundleOptions, ctx: &BuildContext) -> Result<BundleReport> {
    let name = bundle_name(opts)?;
    check_options(opts)?;
    let keys = load_keys(opts)?;
    let (file, size) = open_image(&opts.image)?;
    let manifest_path = prepare_destination(opts, &name)?;
    let session = match &opts.session {
        Some(s) => s.clone(),
        None => SessionKey::random()?,
    };
    let (digest, staged) = write_parts(&file, &name, ctx.epoch, &session, opts)?;
    let sizes = staged.sizes_and_digests();
    let names = part_names(&name, sizes.len());
    let bundled_size = sizes.iter().map(|(s, _)| s).sum();
    let image = ImageInfo {
        name: name.clone(),
        user: opts.user.clone(),
        kind: opts.kind,
        kernel_name: (opts.kind == ImageType::Kernel)
            .then(|| opts.kernel_name.clone().unwrap_or_else(|| name.clone())),
        ancestors: opts.ancestors.clone(),
        digest: digest.clone(),
        size,
        bundled_size,
        keys: encrypt_keys(&keys, &session)?,
        parts: (names.iter().zip(&sizes))
            .map(|(n, (_, d))| PartEntry {
                filename: n.clone(),
                digest: d.clone(),
            })
            .collect(),
    };
    let manifest = sign(opts, image, &keys.private)?;
    let mut set = OutputSet::new(&manifest_path, opts.force);
    set.set_sync(opts.sync);
    let mut out = set.create_primary()?;
    std::io::Write::write_all(&mut out, manifest.to_xml().as_bytes())
        .map_err(|e| Error::io(e).with_path(&manifest_path))?;
    drop(out);
    let parts = staged.commit(&names, opts.force)?;
    set.commit()?;
    if opts.force {
        remove_stale_parts(&opts.destination, &name, &names);
    }
    Ok(BundleReport {
        manifest: manifest_path,
        parts,
        digest,
        size,
        bundled_size,
    })
}

/// Checks what [`bundle`] checks before reading the image: the options, and that the keys
/// load and the certificate matches the private key. A build runs it before its first
/// pass, so a bad key writes nothing.
///
/// # Errors
/// As [`bundle`]'s checks.
pub fn preflight(opts: &BundleOptions) -> Result<()> {
    bundle_name(opts)?;
    check_options(opts)?;
    load_keys(opts).map(drop)
}

fn bundle_name(opts: &BundleOptions) -> Result<String> {
    let name = match &opts.name {
        Some(n) => n.clone(),
        None => opts
            .image
            .file_name()
            .and_then(|n| n.to_str())
            .map(str::to_string)
            .ok_or_else(|| {
                Error::invalid_input("the image path has no UTF-8 file name; pass --prefix")
            })?,
    };
    check_file_name(&name)?;
    Ok(name)
}

fn check_options(opts: &BundleOptions) -> Result<()> {
    check_account(&opts.user)?;
    if let Some(k) = &opts.kernel_id {
        check_id("aki", k)?;
    }
    if let Some(r) = &opts.ramdisk_id {
        check_id("ari", r)?;
    }
    for a in &opts.ancestors {
        check_id("ami", a)?;
    }
    for (virt, device) in &opts.block_device_mapping {
        check_mapping(virt, device)?;
    }
    opts.product_codes
        .iter()
        .try_for_each(|c| check_product_code(c))?;
    if let Some(k) = &opts.kernel_name {
        check_file_name(k)?;
    }
    Ok(())
}

fn load_keys(opts: &BundleOptions) -> Result<Keys> {
    let user = load_certificate_key(&opts.cert, "certificate")?;
    let ec2 = load_certificate_key(&opts.ec2_cert, "EC2 certificate")?;
    let private = load_private_key(&opts.private_key)?;
    if !key_matches(&private, &user) {
        return Err(
            Error::new(ErrorKind::InvalidInput, Ec2Error::KeyMismatch).with_path(&opts.cert)
        );
    }
    Ok(Keys { user, ec2, private })
}

fn open_image(path: &Path) -> Result<(File, u64)> {
    let file = File::open(path).map_err(|e| Error::io(e).with_path(path))?;
    let meta = file.metadata().map_err(|e| Error::io(e).with_path(path))?;
    if !meta.is_file() {
        return Err(Error::new(ErrorKind::InvalidInput, Ec2Error::NotRegularFile).with_path(path));
    }
    if meta.len() > IMAGE_SIZE_LIMIT {
        let e = Ec2Error::ImageTooLarge {
            size: meta.len(),
            limit: IMAGE_SIZE_LIMIT,
        };
        return Err(Error::new(ErrorKind::InvalidInput, e).with_path(path));
    }
    Ok((file, meta.len()))
}

/// Whether `file` is a part of bundle `name` (`NAME.part.` and digits).
fn is_part_of(file: &str, name: &str) -> bool {
    file.strip_prefix(name)
        .and_then(|r| r.strip_prefix(".part."))
        .is_some_and(|i| !i.is_empty() && i.bytes().all(|b| b.is_ascii_digit()))
}

/// After `--force`, parts of an earlier, longer bundle of the same name would linger
/// beside the new manifest; they are removed (best effort: the new bundle is complete).
fn remove_stale_parts(dir: &Path, name: &str, keep: &[String]) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.filter_map(std::result::Result::ok) {
        let file = entry.file_name().to_string_lossy().into_owned();
        if is_part_of(&file, name) && !keep.contains(&file) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// Creates the destination and refuses an existing bundle of `name` (without `force`);
/// returns the manifest's path.
fn prepare_destination(opts: &BundleOptions, name: &str) -> Result<PathBuf> {
    let dir = &opts.destination;
    std::fs::create_dir_all(dir).map_err(|e| Error::io(e).with_path(dir))?;
    let manifest = dir.join(format!("{name}.manifest.xml"));
    if opts.force {
        return Ok(manifest);
    }
    let entries = std::fs::read_dir(dir).map_err(|e| Error::io(e).with_path(dir))?;
    let clash = (entries.filter_map(std::result::Result::ok))
        .find(|e| is_part_of(&e.file_name().to_string_lossy(), name));
    let existing = clash
        .map(|e| e.path())
        .or_else(|| manifest.exists().then(|| manifest.clone()));
    match existing {
        Some(path) => Err(Error::new(
            ErrorKind::InvalidInput,
            Ec2Error::OutputExists { path },
        )),
        None => Ok(manifest),
    }
}

/// The one pass: tar → gzip → AES → parts. Returns the tar digest and the staged parts.
fn write_parts(
    file: &File,
    name: &str,
    mtime: u64,
    session: &SessionKey,
    opts: &BundleOptions,
) -> Result<(String, StagedParts)> {
    let image = &opts.image;
    let size = file
        .metadata()
        .map_err(|e| Error::io(e).with_path(image))?
        .len();
    let layout = scan_layout(file).map_err(|e| Error::io(e).with_path(image))?;
    let mut tar = TarStream::new(file, name.as_bytes(), size, mtime, &layout);
    let total = tar.total_len();
    let mut cipher = CbcEncryptor::new(session);
    let mut parts = PartWriter::new(&opts.destination, name, opts.sync);
    let mut scratch = Vec::with_capacity(super::pipeline::CHUNK_BYTES);
    let threads = match opts.threads {
        0 => std::thread::available_parallelism().map_or(1, std::num::NonZero::get),
        n => n,
    };
    let summary = compress_stream(&mut tar, total, GZIP_LEVEL, threads, &mut |bytes| {
        scratch.clear();
        cipher.update(bytes, &mut scratch);
        parts.write(&scratch)
    })
    .map_err(|e| e.with_path(image))?;
    scratch.clear();
    cipher.finish(&mut scratch);
    parts.write(&scratch)?;
    Ok((summary.tar_sha1, parts.finish()?))
}

fn encrypt_keys(keys: &Keys, session: &SessionKey) -> Result<EncryptedKeys> {
    let (k, iv) = (session.key_hex(), session.iv_hex());
    Ok(EncryptedKeys {
        ec2_key: encrypt_for(&keys.ec2, session, "ec2", "key", &k)?,
        user_key: encrypt_for(&keys.user, session, "user", "key", &k)?,
        ec2_iv: encrypt_for(&keys.ec2, session, "ec2", "iv", &iv)?,
        user_iv: encrypt_for(&keys.user, session, "user", "iv", &iv)?,
    })
}

fn sign(opts: &BundleOptions, image: ImageInfo, key: &PrivateKey) -> Result<Manifest> {
    let mut manifest = Manifest {
        version: MANIFEST_VERSION.into(),
        bundler: Some(opts.bundler.clone()),
        machine: Some(MachineConfiguration {
            architecture: opts.arch,
            block_device_mapping: opts
                .block_device_mapping
                .iter()
                .map(|(v, d)| (v.clone(), d.clone()))
                .collect(),
            kernel_id: opts.kernel_id.clone(),
            ramdisk_id: opts.ramdisk_id.clone(),
            product_codes: opts.product_codes.clone(),
        }),
        image,
        signature: String::new(),
    };
    manifest.signature = sign_sha1(key, manifest.signed_bytes().as_bytes())?;
    Ok(manifest)
}
