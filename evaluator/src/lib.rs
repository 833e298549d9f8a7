//! The evaluator stage: compares each observation with the path's baseline
//! and raises an alert when they differ.
//!
//! Baselines live in sled behind the small [`BaselineStore`] trait. For the
//! walking skeleton there is one rule: on a watched host path, the state
//! first seen at inventory is the baseline, and any later difference
//! (created, modified, attributes, renamed, deleted) is an alert; the new
//! state then becomes the baseline, so the same change alerts once.

mod config;
mod decide;
mod error;
mod metrics;
mod store;
mod worker;

pub use config::Config;
pub use decide::{Decision, decide};
pub use error::Error;
pub use metrics::Metrics;
pub use store::{Baseline, BaselineStore, SledStore};

use bus::StageContext;
use tracing::info;

/// Runs the evaluator until `ctx.shutdown` is cancelled.
pub async fn run(config: Config, metrics: Metrics, ctx: StageContext) -> Result<(), Error> {
    config.validate()?;
    let store = SledStore::open(&config.data_dir)?;
    let consumer = ctx.bus.consumer(config.consumer_spec()).await?;
    ctx.ready.set(true);
    info!(data_dir = %config.data_dir.display(), "evaluator started");
    let worker = worker::Worker::new(metrics, ctx.clone(), store);
    bus::stage::consume(&ctx, "evaluator", consumer, worker).await;
    info!("evaluator stopped");
    Ok(())
}
