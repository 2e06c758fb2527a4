//! vdi tests.
