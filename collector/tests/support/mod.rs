//! Helpers shared by the collector's integration tests.

pub mod docker;
