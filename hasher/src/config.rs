//! Hasher configuration, validated once at start-up.

use bus::ConsumerSpec;
use schemas::{stream, subject};

use crate::Error;

/// How the hasher runs.
#[derive(Debug, Clone)]
pub struct Config {
    /// Node whose events this hasher verifies; must match the collector's.
    pub node: String,
    /// Concurrent hashing workers in this process. Default: the number of
    /// cores.
    pub workers: usize,
    /// Number of evaluator partitions observations are spread over.
    /// Default: 1.
    pub partitions: u32,
}

impl Config {
    /// A configuration with the defaults for `node`.
    pub fn new(node: impl Into<String>) -> Self {
        let workers = std::thread::available_parallelism().map_or(1, usize::from);
        Self { node: node.into(), workers, partitions: 1 }
    }

    /// Checks every field, naming the first bad one.
    pub fn validate(&self) -> Result<(), Error> {
        if self.node.is_empty() {
            return Err(Error::Config { field: "node", reason: "must not be empty".into() });
        }
        if self.workers == 0 || self.workers > 1024 {
            let reason = format!("must be between 1 and 1024, got {}", self.workers);
            return Err(Error::Config { field: "workers", reason });
        }
        if self.partitions == 0 {
            return Err(Error::Config { field: "partitions", reason: "must be at least 1".into() });
        }
        Ok(())
    }

    /// The node's shared durable consumer.
    pub(crate) fn consumer_spec(&self) -> ConsumerSpec {
        let durable = format!("hasher-{}", subject::token(&self.node));
        ConsumerSpec::new(stream::EVENTS, durable, subject::events(&self.node))
    }
}
