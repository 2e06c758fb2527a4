//! The Glance triplet's keys on an `ami` output: `partition`, `kernel` and `ramdisk` (and
//! its EC2 bundle, [`super::bundle`]). The
//! partition and the paths inside the image can only be checked against the disk while
//! building; here their shape is checked and `{ file: }` sources must exist.

use std::path::PathBuf;

use super::Checker;
use super::bundle::ValidBundle;
use crate::spec::Span;
use crate::spec::model::{AmiFile, AmiPartition, ContainerFormat, Output, Spanned};

/// Which bytes of the disk an ami holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PartitionChoice {
    /// The whole disk when it has no partition table, else its one Linux root partition.
    Auto,
    /// The whole disk.
    Whole,
    /// Partition N (from 1).
    Number(u32),
}

/// Where an ami's kernel or ramdisk comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AmiSource {
    /// An absolute path inside the ami's file system.
    Inside(String),
    /// A file (resolved against the spec's directory).
    File(PathBuf),
}

/// A kernel or ramdisk with the place the spec names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AmiPart {
    /// Where it comes from.
    pub source: AmiSource,
    /// The spec location of the key's value.
    pub span: Option<Span>,
}

/// A checked `ami` output's triplet settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidAmi {
    /// The partition.
    pub partition: PartitionChoice,
    /// The spec location of `partition` (or of the output when it is left out).
    pub partition_span: Option<Span>,
    /// `NAME.aki`'s source.
    pub kernel: Option<AmiPart>,
    /// `NAME.ari`'s source.
    pub ramdisk: Option<AmiPart>,
    /// The EC2 bundle written of each image (`bundle: ec2`).
    pub bundle: Option<ValidBundle>,
}

impl Checker<'_> {
    /// The triplet settings of output `at` (`None` for other containers, whose use of the
    /// keys is an error).
    pub(super) fn ami(&mut self, at: &Spanned<Output>, key: &str) -> Option<ValidAmi> {
        let o = &at.value;
        let bundle = self.ec2_bundle(at, key);
        if o.container_format != ContainerFormat::Ami {
            let keys = [
                ("partition", o.partition.as_ref().map(|p| p.referenced)),
                ("kernel", o.kernel.as_ref().map(|p| p.referenced)),
                ("ramdisk", o.ramdisk.as_ref().map(|p| p.referenced)),
            ];
            for (name, loc) in keys {
                if let Some(loc) = loc {
                    let message = format!("`{name}` applies only to ami outputs");
                    self.err_loc(loc, &format!("{key}.{name}"), message);
                }
            }
            return None;
        }
        let partition = match &o.partition {
            None => PartitionChoice::Auto,
            Some(p) => self.partition_choice(p, &format!("{key}.partition"))?,
        };
        let partition_span = match &o.partition {
            Some(p) => self.span(p),
            None => self.span(at),
        };
        let kernel = o.kernel.as_ref().map(|k| self.ami_part(k, key, "kernel"));
        let ramdisk = o.ramdisk.as_ref().map(|r| self.ami_part(r, key, "ramdisk"));
        // A part that failed its check was reported; the output is dropped.
        Some(ValidAmi {
            partition,
            partition_span,
            kernel: kernel.map_or(Some(None), |k| k.map(Some))?,
            ramdisk: ramdisk.map_or(Some(None), |r| r.map(Some))?,
            bundle: bundle?,
        })
    }

    fn partition_choice(
        &mut self,
        p: &Spanned<AmiPartition>,
        key: &str,
    ) -> Option<PartitionChoice> {
        match &p.value {
            AmiPartition::Text(t) if t == "auto" => Some(PartitionChoice::Auto),
            AmiPartition::Text(t) if t == "none" => Some(PartitionChoice::Whole),
            AmiPartition::Number(n) if (1..=i64::from(u32::MAX)).contains(n) => {
                Some(PartitionChoice::Number(u32::try_from(*n).ok()?))
            }
            other => {
                let shown = match other {
                    AmiPartition::Number(n) => n.to_string(),
                    AmiPartition::Text(t) => format!("`{t}`"),
                };
                let message =
                    format!("partition {shown} is not `auto`, `none` or a partition number from 1");
                self.err(p, key, message);
                None
            }
        }
    }

    /// One kernel/ramdisk source; `None` after reporting an error.
    fn ami_part(&mut self, at: &Spanned<AmiFile>, key: &str, name: &str) -> Option<AmiPart> {
        let key = format!("{key}.{name}");
        let source = match &at.value {
            AmiFile::Inside(path) => {
                if !path.starts_with('/') || path.len() > 4096 || path.contains('\0') {
                    let message = format!(
                        "`{path}` is not an absolute path inside the image (such as `/boot/vmlinuz`); a file beside the spec is `{{ file: PATH }}`"
                    );
                    self.err(at, &key, message);
                    return None;
                }
                AmiSource::Inside(path.clone())
            }
            AmiFile::File { file } => {
                let spanned = Spanned {
                    value: file.clone(),
                    referenced: at.referenced,
                    defined: at.defined,
                };
                AmiSource::File(self.existing_file(&spanned, &format!("{key}.file"))?)
            }
        };
        Some(AmiPart {
            source,
            span: self.span(at),
        })
    }
}
