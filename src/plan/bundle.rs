//! `bundle: ec2` on an ami output: after the triplet is written, each of its images (aki,
//! ari, then the ami) is bundled into the output directory as `kiln bundle` does it
//! (`NAME.EXT.manifest.xml` and `NAME.EXT.part.NN`); the bundle's files join the image's
//! artefact, so the report and SHA256SUMS list them.
//!
//! The keys and values are checked before the first pass ([`Plan::preflight_bundles`]) and
//! the image size against EC2's limit once the partition is known, so a bad key or a too
//! large root file system writes nothing.
//!
//! The AES key and IV are random. `KILN_EC2_TEST_KEY_IV=KEYHEX:IVHEX` fixes them, for
//! byte-identical test builds only: anyone who knows them can decrypt the bundle.

use std::path::Path;

use super::{Artefact, FileDigest, Plan, locate};
use crate::container::ec2::crypto::SessionKey;
use crate::container::ec2::validate::ImageType;
use crate::container::ec2::{self, BundleOptions, bundle::IMAGE_SIZE_LIMIT};
use crate::container::manifest;
use crate::error::{Error, ErrorKind, Result};
use crate::io::output::partial_path;
use crate::spec::{ValidBundle, ValidOutput};

/// The environment variable that fixes the session key and IV (tests only).
pub const TEST_KEY_IV_VAR: &str = "KILN_EC2_TEST_KEY_IV";

impl Plan {
    /// Checks every selected bundle's values and keys.
    ///
    /// # Errors
    /// The bundler's refusal, located at the output's `bundle` key.
    pub(super) fn preflight_bundles(&self) -> Result<()> {
        for (o, b) in self.bundles() {
            let opts = self.bundle_options(b, Path::new(&o.file), &o.file, ImageType::Machine)?;
            ec2::preflight(&opts).map_err(|e| self.bundle_error(o, b, &e))?;
        }
        Ok(())
    }

    /// Refuses an ami bundle whose image is larger than EC2 takes, before it is written.
    pub(super) fn check_bundle_size(&self, o: &ValidOutput, size: u64) -> Result<()> {
        let Some(b) = o.ami.as_ref().and_then(|a| a.bundle.as_ref()) else {
            return Ok(());
        };
        if size <= IMAGE_SIZE_LIMIT {
            return Ok(());
        }
        let e = Error::invalid_input(format!(
            "the ami is {size} bytes, over the {IMAGE_SIZE_LIMIT}-byte (10 GiB) limit of instance-store images; choose a smaller partition or drop `bundle`"
        ));
        Err(self.bundle_error(o, b, &e))
    }

    /// Bundles each image of a finished triplet into the output directory and lists the
    /// bundle's files on the image's artefact. `ami` is the ami's path (still partial);
    /// the kernel and ramdisk are already in place.
    ///
    /// # Errors
    /// The bundler's failures (its own partial files are removed).
    pub(super) fn write_bundles(
        &self,
        o: &ValidOutput,
        ami: &Path,
        artefacts: &mut [Artefact],
    ) -> Result<()> {
        let Some(b) = o.ami.as_ref().and_then(|a| a.bundle.as_ref()) else {
            return Ok(());
        };
        for artefact in artefacts {
            let (image, kind) = match artefact.container_format.as_str() {
                "aki" => (self.out_dir.join(&artefact.path), ImageType::Kernel),
                "ari" => (self.out_dir.join(&artefact.path), ImageType::Ramdisk),
                _ => (partial_path(ami), ImageType::Machine),
            };
            let opts = self.bundle_options(b, &image, &artefact.path, kind)?;
            let ctx = self.ctx.derive(&format!("{}.bundle", artefact.path));
            let report = ec2::bundle(&opts, &ctx).map_err(|e| self.bundle_error(o, b, &e))?;
            for file in std::iter::once(report.manifest).chain(report.parts) {
                let (sha256, size) = manifest::hash_file(&file)?;
                artefact.files.push(FileDigest::new(&file, size, sha256));
            }
        }
        Ok(())
    }

    fn bundles(&self) -> impl Iterator<Item = (&ValidOutput, &ValidBundle)> {
        (self.outputs.iter()).filter_map(|o| Some((o, o.ami.as_ref()?.bundle.as_ref()?)))
    }

    fn bundle_options(
        &self,
        b: &ValidBundle,
        image: &Path,
        name: &str,
        kind: ImageType,
    ) -> Result<BundleOptions> {
        let keys = [
            b.cert.as_path(),
            b.private_key.as_path(),
            b.ec2_cert.as_path(),
        ];
        let mut opts = BundleOptions::new(image, &self.out_dir, &b.user, keys);
        opts.name = Some(name.to_string());
        opts.kind = kind;
        opts.arch = b.arch;
        if kind == ImageType::Machine {
            opts.block_device_mapping = b.block_device_mapping.clone();
            opts.product_codes = b.product_codes.clone();
        }
        opts.session = test_session()?;
        // A build replaces its outputs; so it replaces their bundles.
        opts.force = true;
        Ok(opts)
    }

    fn bundle_error(&self, o: &ValidOutput, b: &ValidBundle, e: &Error) -> Error {
        let key = format!("outputs[{}].bundle", o.index);
        Error::new(
            e.kind(),
            locate(&self.spec.path, b.span, &key, &e.to_string()),
        )
    }
}

/// The fixed session key of [`TEST_KEY_IV_VAR`], if set.
fn test_session() -> Result<Option<SessionKey>> {
    let Some(value) = std::env::var_os(TEST_KEY_IV_VAR) else {
        return Ok(None);
    };
    let value = value.to_string_lossy();
    let Some((key, iv)) = value.split_once(':') else {
        return Err(Error::new(
            ErrorKind::InvalidInput,
            format!("{TEST_KEY_IV_VAR} is `KEYHEX:IVHEX` (32 hex digits each)"),
        ));
    };
    SessionKey::from_hex(key, iv).map(Some)
}
