//! The EC2 bundle keys of an `ami` output (`bundle: ec2` and what signs and encrypts it).
//! Values are checked with the bundler's own rules, so a build refuses before writing
//! anything what `kiln bundle` would refuse; the keys themselves (readable, matching) are
//! checked by the plan.

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::Checker;
use crate::container::ec2::validate::{Arch, check_account, check_mapping, check_product_code};
use crate::spec::Span;
use crate::spec::model::{ContainerFormat, Output, Spanned};

/// A checked `bundle: ec2`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidBundle {
    /// AWS account number.
    pub user: String,
    /// The user's certificate.
    pub cert: PathBuf,
    /// The user's private key.
    pub private_key: PathBuf,
    /// EC2's certificate.
    pub ec2_cert: PathBuf,
    /// Architecture.
    pub arch: Arch,
    /// Virtual name to device.
    pub block_device_mapping: BTreeMap<String, String>,
    /// Product codes.
    pub product_codes: Vec<String>,
    /// Where the spec says `bundle`.
    pub span: Option<Span>,
}

impl Checker<'_> {
    /// The bundle of output `at`: `Some(None)` without one, `None` after reporting errors.
    pub(super) fn ec2_bundle(
        &mut self,
        at: &Spanned<Output>,
        key: &str,
    ) -> Option<Option<ValidBundle>> {
        let o = &at.value;
        let Some(bundle) = o
            .bundle
            .as_ref()
            .filter(|_| o.container_format == ContainerFormat::Ami)
        else {
            self.stray_bundle_keys(o, key);
            return Some(None);
        };
        if bundle.value != "ec2" {
            let message = format!(
                "bundle `{}` is not known; the one kind is `ec2`",
                bundle.value
            );
            self.err(bundle, &format!("{key}.bundle"), message);
            return None;
        }
        let user = self.account(at, o.user.as_ref(), key);
        let cert = self.key_file(at, o.cert.as_ref(), key, "cert");
        let private_key = self.key_file(at, o.privatekey.as_ref(), key, "privatekey");
        let ec2_cert = self.key_file(at, o.ec2_cert.as_ref(), key, "ec2_cert");
        let arch = match &o.arch {
            None => Some(Arch::default()),
            Some(a) => a
                .value
                .parse::<Arch>()
                .map_err(|e| self.err(a, &format!("{key}.arch"), e.to_string()))
                .ok(),
        };
        let mapping = o.block_device_mapping.as_ref();
        let mapping_ok = mapping.is_none_or(|m| {
            let bad = m.value.iter().find_map(|(v, d)| check_mapping(v, d).err());
            bad.map(|e| self.err(m, &format!("{key}.block_device_mapping"), e.to_string()))
                .is_none()
        });
        let codes = o.product_codes.as_ref();
        let codes_ok = codes.is_none_or(|c| {
            let bad = c.value.iter().find_map(|p| check_product_code(p).err());
            bad.map(|e| self.err(c, &format!("{key}.product_codes"), e.to_string()))
                .is_none()
        });
        if !(mapping_ok && codes_ok) {
            return None;
        }
        Some(Some(ValidBundle {
            user: user?,
            cert: cert?,
            private_key: private_key?,
            ec2_cert: ec2_cert?,
            arch: arch?,
            block_device_mapping: mapping.map(|m| m.value.clone()).unwrap_or_default(),
            product_codes: codes.map(|c| c.value.clone()).unwrap_or_default(),
            span: self.span(bundle),
        }))
    }

    fn account(
        &mut self,
        at: &Spanned<Output>,
        user: Option<&Spanned<String>>,
        key: &str,
    ) -> Option<String> {
        let Some(user) = user else {
            self.err(
                at,
                key,
                "`bundle: ec2` needs `user:`, the AWS account number (12 digits)".into(),
            );
            return None;
        };
        match check_account(&user.value) {
            Ok(()) => Some(user.value.clone()),
            Err(e) => {
                self.err(user, &format!("{key}.user"), e.to_string());
                None
            }
        }
    }

    fn key_file(
        &mut self,
        at: &Spanned<Output>,
        file: Option<&Spanned<String>>,
        key: &str,
        name: &str,
    ) -> Option<PathBuf> {
        let Some(file) = file else {
            let what = match name {
                "cert" => "your X.509 certificate (PEM)",
                "privatekey" => "your RSA private key (PEM), which signs the manifest",
                _ => "EC2's X.509 certificate (PEM) for the region",
            };
            self.err(at, key, format!("`bundle: ec2` needs `{name}:`, {what}"));
            return None;
        };
        self.existing_file(file, &format!("{key}.{name}"))
    }

    /// Bundle keys on an output that writes no bundle are mistakes, not defaults.
    fn stray_bundle_keys(&mut self, o: &Output, key: &str) {
        let keys = [
            ("bundle", o.bundle.as_ref().map(|v| v.referenced)),
            ("user", o.user.as_ref().map(|v| v.referenced)),
            ("cert", o.cert.as_ref().map(|v| v.referenced)),
            ("privatekey", o.privatekey.as_ref().map(|v| v.referenced)),
            ("ec2_cert", o.ec2_cert.as_ref().map(|v| v.referenced)),
            ("arch", o.arch.as_ref().map(|v| v.referenced)),
            (
                "block_device_mapping",
                o.block_device_mapping.as_ref().map(|v| v.referenced),
            ),
            (
                "product_codes",
                o.product_codes.as_ref().map(|v| v.referenced),
            ),
        ];
        for (name, loc) in keys {
            if let Some(loc) = loc {
                let message = match name {
                    "bundle" => "`bundle` applies only to ami outputs".to_string(),
                    _ => format!("`{name}` applies only to ami outputs with `bundle: ec2`"),
                };
                self.err_loc(loc, &format!("{key}.{name}"), message);
            }
        }
    }
}
