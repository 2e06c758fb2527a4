//! vhd tests.
