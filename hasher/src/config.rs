//! Hasher configuration, validated once at start-up.

use bus::ConsumerSpec;
use schemas::{stream, subject};

use crate::{Error, Inspector};

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
    /// Bytes of a file hashed at most; a larger file gets a `partial` hash
    /// of its first bytes. Default: [`DEFAULT_MAX_HASH_BYTES`].
    pub max_hash_bytes: u64,
    /// Digests remembered by file identity, size, mtime and ctime, so an
    /// unchanged file is not read again. Default: [`DEFAULT_CACHE_ENTRIES`].
    pub cache_entries: usize,
    /// Globs of paths (as seen in the container, or on the host) whose
    /// content is captured for diffs. Default: [`crate::DEFAULT_CAPTURE_GLOBS`].
    pub capture_globs: Vec<String>,
    /// Bytes of content captured at most per side. Default:
    /// [`DEFAULT_CAPTURE_BYTES`].
    pub capture_bytes: usize,
}

/// Default hashing cap: 1 GiB, above any configuration or binary a
/// container should change at run time, and about 0.6 s of one core.
pub const DEFAULT_MAX_HASH_BYTES: u64 = 1 << 30;
/// Default digest cache: 64 Ki entries of about 150 bytes, 10 MB at most.
pub const DEFAULT_CACHE_ENTRIES: usize = 64 * 1024;
/// Default capture bound: 64 KiB, enough for configuration files and small
/// enough for a message and a readable diff.
pub const DEFAULT_CAPTURE_BYTES: usize = 64 * 1024;

impl Config {
    /// A configuration with the defaults for `node`.
    pub fn new(node: impl Into<String>) -> Self {
        let workers = std::thread::available_parallelism().map_or(1, usize::from);
        Self {
            node: node.into(),
            workers,
            partitions: 1,
            max_hash_bytes: DEFAULT_MAX_HASH_BYTES,
            cache_entries: DEFAULT_CACHE_ENTRIES,
            capture_globs: crate::DEFAULT_CAPTURE_GLOBS.iter().map(|g| g.to_string()).collect(),
            capture_bytes: DEFAULT_CAPTURE_BYTES,
        }
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
        if self.max_hash_bytes == 0 {
            let reason = "must be at least 1".into();
            return Err(Error::Config { field: "max_hash_bytes", reason });
        }
        if self.capture_bytes > 1 << 20 {
            let reason = format!("must be at most 1 MiB, got {}", self.capture_bytes);
            return Err(Error::Config { field: "capture_bytes", reason });
        }
        Ok(())
    }

    /// The inspector this configuration describes.
    pub(crate) fn inspector(&self) -> Inspector {
        let globs = self.capture_globs.clone();
        Inspector::new(self.max_hash_bytes, self.cache_entries, globs, self.capture_bytes)
    }

    /// The node's shared durable consumer.
    pub(crate) fn consumer_spec(&self) -> ConsumerSpec {
        let durable = format!("hasher-{}", subject::token(&self.node));
        ConsumerSpec::new(stream::EVENTS, durable, subject::events(&self.node))
    }
}
