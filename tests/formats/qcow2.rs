//! qcow2 tests.
