//! vhdx tests.
