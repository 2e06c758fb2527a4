//! File systems kiln writes itself (no mkfs at run time).

pub mod fat;
