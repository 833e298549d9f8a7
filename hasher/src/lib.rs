//! The hasher stage: verifies what the collector reported by hashing the
//! file's content with BLAKE3 and reading its metadata, then publishes an
//! observation to the evaluator partition that owns the file's source.
//!
//! A node's events are consumed by that node's hashers only (one durable
//! consumer per node, shared by every worker and process on the node),
//! because only that node can open the files. For container paths on
//! overlay roots it also finds and hashes the image's version of the path,
//! and for configured paths it captures redacted content for a diff.
//! `scan` walks host trees into a manifest for periodic comparisons.

mod beneath;
mod capture;
mod config;
mod digest;
mod error;
mod inspect;
mod layers;
mod metrics;
pub mod scan;
mod worker;

pub use capture::{DEFAULT_GLOBS as DEFAULT_CAPTURE_GLOBS, REDACTED};
pub use config::{Config, DEFAULT_CACHE_ENTRIES, DEFAULT_CAPTURE_BYTES, DEFAULT_MAX_HASH_BYTES};
pub use error::Error;
pub use inspect::{FileError, Inspection, Inspector};
pub use metrics::Metrics;

use std::sync::Arc;

use bus::StageContext;
use tracing::info;

/// Runs `config.workers` workers until `ctx.shutdown` is cancelled.
pub async fn run(config: Config, metrics: Metrics, ctx: StageContext) -> Result<(), Error> {
    config.validate()?;
    let inspector = Arc::new(config.inspector());
    let mut workers = tokio::task::JoinSet::new();
    for index in 0..config.workers {
        let consumer = ctx.bus.consumer(config.consumer_spec()).await?;
        let inspector = inspector.clone();
        let worker = worker::Worker::new(config.clone(), inspector, metrics.clone(), ctx.clone());
        workers.spawn(async move { worker.run(index, consumer).await });
    }
    ctx.ready.set(true);
    info!(
        node = %config.node,
        workers = config.workers,
        max_hash_bytes = config.max_hash_bytes,
        "hasher started"
    );
    while workers.join_next().await.is_some() {}
    info!("hasher stopped");
    Ok(())
}
