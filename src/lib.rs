//! kiln builds virtual appliances: it creates disk images in the formats clouds and
//! hypervisors import (raw, qcow2, vmdk, vhd, vhdx, vdi, iso) with its own streaming disk
//! engine, and wraps them in bare, OVF/OVA or Amazon containers.
//!
//! The engine streams: a disk is a virtual size plus an ordered run of [`disk::Extent`]s,
//! read by a [`disk::DiskReader`] and consumed by a [`disk::DiskWriter`]. Memory use is
//! bounded by format metadata, never by the size of the disk.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod container;
pub mod context;
pub mod disk;
pub mod error;
pub mod fetch;
pub mod fs;
pub mod io;
pub mod plan;
pub mod seed;
pub mod size;
pub mod spec;
pub mod suggest;
pub mod unpack;

pub use context::BuildContext;
pub use error::{Error, ErrorKind, Place, Result};
