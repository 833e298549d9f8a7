//! Evaluator configuration, validated once at start-up.

use std::path::PathBuf;

use bus::ConsumerSpec;
use schemas::{stream, subject};

use crate::Error;

/// How the evaluator runs.
#[derive(Debug, Clone)]
pub struct Config {
    /// Directory for the baseline database (`baselines.sled` inside it).
    pub data_dir: PathBuf,
}

impl Config {
    /// Checks every field, naming the first bad one.
    pub fn validate(&self) -> Result<(), Error> {
        if self.data_dir.as_os_str().is_empty() {
            return Err(Error::Config { field: "data_dir", reason: "must not be empty".into() });
        }
        Ok(())
    }

    // Limitation: every evaluator reads all partitions through one durable
    // consumer, so replicas share work but not state ownership; partitioned
    // replicas with their own databases come with the rules engine.
    pub(crate) fn consumer_spec(&self) -> ConsumerSpec {
        ConsumerSpec::new(stream::OBSERVATIONS, "evaluator", format!("{}.>", subject::OBSERVATIONS))
    }
}
