//! iso tests.
