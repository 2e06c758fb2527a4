//! The container kinds a build writes, chosen once per output with no wildcard: a new kind
//! (EC2 bundles) is a variant here and a module in `container`, and the
//! compiler points at every place that must learn it.
//!
//! Lifecycle of a packaged output: start (every disk's size known) → one lane per disk in
//! that disk's single pass → finish (descriptor, manifest) → commit (hash, sync, rename).
//! A bare output is one lane of its own disk's pass, then commit.

use crate::container::package::Form;
use crate::spec::model::ContainerFormat;

/// How the build writes one output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// The disk file alone, written in its disk's pass.
    Bare,
    /// An OVF package holding every disk: an OVA or files side by side.
    Package(Form),
    /// The Glance triplet: the ami (a crop of the disk, written in its pass) with the aki
    /// and ari read out of it afterwards.
    Triplet,
    /// A container this build does not write; `Plan::new` refuses it before anything is
    /// written (the spec records why).
    NotBuilt,
}

/// The kind of `container`.
pub(crate) fn kind(container: ContainerFormat) -> Kind {
    match container {
        ContainerFormat::Bare => Kind::Bare,
        ContainerFormat::Ova => Kind::Package(Form::Ova),
        ContainerFormat::Ovf => Kind::Package(Form::Files),
        ContainerFormat::Ami => Kind::Triplet,
        ContainerFormat::Aki | ContainerFormat::Ari => Kind::NotBuilt,
    }
}
