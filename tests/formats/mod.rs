//! Per-format tests: kiln writes, the oracles judge; kiln reads what qemu-img writes.

mod iso;
mod qcow2;
mod raw;
mod short_io;
mod vdi;
mod vhd;
mod vhdx;
mod vmdk;
