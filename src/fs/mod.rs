//! File systems: the ones kiln writes itself (no mkfs at run time), and read-only access
//! to partition tables and ext2/3/4 file systems inside images.

pub mod ext4;
pub mod fat;
pub mod partition;
