//! vmdk tests.
