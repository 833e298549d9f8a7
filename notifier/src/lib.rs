//! The notifier stage: delivers alerts to sinks (stdout, Slack, syslog,
//! generic webhooks, Splunk HEC) in the encodings SIEMs read (JSON, OCSF,
//! ECS, CEF).
//!
//! Each sink has its own durable consumer (`notifier-<sink>`) and its own
//! worker, so a failing sink never delays another. An alert is
//! acknowledged only after its sink took it or it was parked on the sink's
//! dead-letter subject; see [`delivery`] for retries and ordering.

mod config;
mod delivery;
pub mod encoding;
mod error;
mod metrics;
pub mod secret;
pub mod sinks;

pub use config::{Config, DeliveryConfig, DeliveryPolicy, SinkConfig, SinkKind, durable_name};
pub use error::Error;
pub use metrics::Metrics;

use bus::StageContext;
use tokio::task::JoinSet;
use tracing::{error, info};

use crate::delivery::Worker;
use crate::sinks::AnySink;

/// Runs the notifier until `ctx.shutdown` is cancelled. Fails before doing
/// any work when a sink's settings, secrets or certificates are invalid.
pub async fn run(config: Config, metrics: Metrics, ctx: StageContext) -> Result<(), Error> {
    config.validate()?;
    install_crypto_provider();
    let mut workers = Vec::new();
    for (index, sink_config) in config.sinks.iter().enumerate() {
        let field = sink_config.field(index);
        let policy = sink_config.policy(&field)?;
        let sink = AnySink::build(sink_config.kind(&field)?, &field, policy.timeout)?;
        workers.push((sink_config, policy, sink));
    }

    // The workers stop with the process, or all together when one of them
    // fails, so that the stage fails and the process restarts.
    let mut workers_ctx = ctx.clone();
    workers_ctx.shutdown = ctx.shutdown.child_token();
    let mut running = JoinSet::new();
    for (sink_config, policy, sink) in workers {
        let consumer = ctx.bus.consumer(config.consumer_spec(sink_config, &policy)).await?;
        let name = sink_config.name.clone();
        let worker_ctx = workers_ctx.clone();
        let worker = Worker::new(&name, sink, consumer, worker_ctx, policy, metrics.clone());
        info!(sink = %name, durable = %durable_name(&name), "sink started");
        running.spawn(worker.run());
    }
    ctx.ready.set(true);
    info!(sinks = config.sinks.len(), "notifier started");

    let mut result = Ok(());
    while let Some(joined) = running.join_next().await {
        match joined {
            Ok(Ok(())) => {}
            Ok(Err(failure)) => {
                workers_ctx.shutdown.cancel();
                result = Err(failure);
            }
            Err(panic) => {
                error!(error = %panic, "a sink worker panicked; the notifier stops");
                workers_ctx.shutdown.cancel();
                result = Err(Error::Panicked { reason: panic.to_string() });
            }
        }
    }
    info!("notifier stopped");
    result
}

impl Config {
    /// Validates the configuration and builds every sink once, reading its
    /// secrets, certificates and URLs, so that a missing secret stops the
    /// process before it connects to anything. [`run`] does the same again.
    pub fn preflight(&self) -> Result<(), Error> {
        self.validate()?;
        install_crypto_provider();
        for (index, sink) in self.sinks.iter().enumerate() {
            let field = sink.field(index);
            let policy = sink.policy(&field)?;
            AnySink::build(sink.kind(&field)?, &field, policy.timeout)?;
        }
        Ok(())
    }
}

/// Installs ring as the process-wide rustls crypto provider, unless one is
/// installed already. reqwest (the HTTP sinks and the OTLP trace exporter)
/// and async-nats need one; the binary calls this before anything connects.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
