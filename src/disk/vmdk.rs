//! vmdk images: not implemented yet. Probing recognises them; opening or creating one
//! returns [`ErrorKind::Unsupported`](crate::ErrorKind::Unsupported).

use std::fs::File;
use std::path::Path;

use super::{CreateRequest, DiskReader, DiskWriter, OpenOptions};
use crate::error::{Error, Result};
use crate::io::output::OutputSet;

/// The `-o` keys the vmdk writer accepts.
pub(super) const OPTION_KEYS: &[&str] = &[];

pub(super) fn open(_file: File, _path: &Path, _opts: &OpenOptions) -> Result<Box<dyn DiskReader>> {
    Err(Error::unsupported("reading vmdk images is not implemented yet"))
}

pub(super) fn create(_req: &CreateRequest<'_>, _out: &mut OutputSet) -> Result<Box<dyn DiskWriter>> {
    Err(Error::unsupported("writing vmdk images is not implemented yet"))
}
