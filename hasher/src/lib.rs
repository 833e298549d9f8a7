//! The hasher stage: verifies what the collector reported by hashing the
//! file's content with BLAKE3 and reading its metadata, then publishes an
//! observation to the evaluator partition that owns the file's source.
//!
//! A node's events are consumed by that node's hashers only (one durable
//! consumer per node, shared by every worker and process on the node),
//! because only that node can open the files.

mod config;
mod error;
mod file;
mod metrics;
mod worker;

pub use config::Config;
pub use error::Error;
pub use file::{FileError, inspect};
pub use metrics::Metrics;

use bus::StageContext;
use tracing::info;

/// Runs `config.workers` workers until `ctx.shutdown` is cancelled.
pub async fn run(config: Config, metrics: Metrics, ctx: StageContext) -> Result<(), Error> {
    config.validate()?;
    let mut workers = tokio::task::JoinSet::new();
    for index in 0..config.workers {
        let consumer = ctx.bus.consumer(config.consumer_spec()).await?;
        let worker = worker::Worker::new(config.clone(), metrics.clone(), ctx.clone());
        workers.spawn(async move { worker.run(index, consumer).await });
    }
    ctx.ready.set(true);
    info!(node = %config.node, workers = config.workers, "hasher started");
    while workers.join_next().await.is_some() {}
    info!("hasher stopped");
    Ok(())
}
