//! The notifier stage: delivers alerts to sinks.
//!
//! For the walking skeleton the only sink is stdout, one JSON object per
//! line. Each sink has its own durable consumer, so a slow sink never holds
//! back another, and an alert is acknowledged only after its sink took it.

mod config;
mod error;
mod metrics;
mod stdout;

pub use config::Config;
pub use error::Error;
pub use metrics::Metrics;

use bus::StageContext;
use tracing::info;

/// Runs the notifier until `ctx.shutdown` is cancelled.
pub async fn run(config: Config, metrics: Metrics, ctx: StageContext) -> Result<(), Error> {
    config.validate()?;
    let consumer = ctx.bus.consumer(config.consumer_spec("stdout")).await?;
    ctx.ready.set(true);
    info!(sink = "stdout", "notifier started");
    let sink = stdout::StdoutSink::new(metrics);
    bus::stage::consume(&ctx, "notifier", consumer, sink).await;
    info!("notifier stopped");
    Ok(())
}
