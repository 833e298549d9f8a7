//! What every stage gets from the process, and the loop that feeds a stage
//! from a durable consumer.
//!
//! The loop decodes each delivery, runs the stage's handler inside a span
//! continued from the message's trace context, and acknowledges only after
//! the handler succeeded. A payload that does not decode, or that the
//! handler rejects for good, goes to the stage's dead-letter subject and is
//! then acknowledged, so one bad message never stops a stage. A transient
//! failure is retried later. On shutdown the loop finishes the delivery in
//! hand and returns.

use std::time::Duration;

use std::time::Instant;

use schemas::Describe;
use serde::de::DeserializeOwned;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, error, warn};

pub use crate::metrics::{DeadLetterMetrics, StageMetrics};

use crate::error::BoxError;
use crate::{Bus, Consumer, Delivery, ReadyFlag};

/// Everything a stage needs besides its own configuration.
#[derive(Clone)]
pub struct StageContext {
    /// The transport.
    pub bus: Bus,
    /// Cancelled when the process should drain and stop.
    pub shutdown: CancellationToken,
    /// Raised by the stage once it does its job.
    pub ready: ReadyFlag,
    /// Counts messages sent to dead-letter subjects.
    pub dead_letters: DeadLetterMetrics,
    /// Counts and times what the consume loop does.
    pub metrics: StageMetrics,
}

impl StageContext {
    /// A context of its own: a fresh shutdown token, a readiness flag that
    /// belongs to no health endpoint and unregistered metrics. For tests and
    /// tools that run one stage.
    pub fn standalone(bus: Bus) -> Self {
        Self {
            bus,
            shutdown: CancellationToken::new(),
            ready: ReadyFlag::detached(),
            dead_letters: DeadLetterMetrics::default(),
            metrics: StageMetrics::default(),
        }
    }
}

/// Why a handler did not finish a message.
#[derive(Debug)]
pub enum Failure {
    /// Worth retrying later (a publish failed, a disk was busy).
    Transient(BoxError),
    /// Will never succeed; the message goes to the dead-letter subject.
    Permanent {
        /// A short fixed label for metrics and the dead-letter header.
        reason: &'static str,
        /// What went wrong.
        error: BoxError,
    },
}

// How long a transiently failed message waits before it is redelivered.
const RETRY_DELAY: Duration = Duration::from_secs(2);

/// A stage's work on one decoded message.
///
/// Contract: return `Ok` only once every effect of the message is durable
/// (published, stored), because the delivery is acknowledged right after.
/// Handlers must be idempotent: a crash between the effects and the
/// acknowledgement delivers the message again.
pub trait Handler<T>: Send {
    /// Processes one message; `delivery` gives its headers and position.
    fn handle(
        &mut self,
        message: T,
        delivery: &Delivery,
    ) -> impl Future<Output = Result<(), Failure>> + Send;
}

// How often the consumer's backlog is read into `fim_consumer_pending`.
const LAG_INTERVAL: Duration = Duration::from_secs(5);

/// Feeds `handler` every message of `consumer` until shutdown.
pub async fn consume<T, H>(
    ctx: &StageContext,
    stage: &'static str,
    mut consumer: Consumer,
    mut handler: H,
) where
    T: DeserializeOwned + Describe,
    H: Handler<T>,
{
    let mut lag = tokio::time::interval(LAG_INTERVAL);
    loop {
        let next = tokio::select! {
            biased;
            _ = ctx.shutdown.cancelled() => break,
            _ = lag.tick() => {
                record_lag(ctx, stage, &mut consumer).await;
                continue;
            }
            next = consumer.next() => next,
        };
        match next {
            Some(Ok(delivery)) => {
                let span = message_span(stage, &delivery);
                crate::trace::continue_from(&delivery.headers, &span);
                process(ctx, stage, &delivery, &mut handler).instrument(span).await;
            }
            Some(Err(error)) => {
                warn!(stage, error = %error_chain(&error), "receive failed, retrying");
                tokio::select! {
                    _ = ctx.shutdown.cancelled() => break,
                    _ = tokio::time::sleep(crate::nats::RECEIVE_RETRY) => {}
                }
            }
            None => {
                error!(stage, "consumer closed by the transport; stage stops");
                break;
            }
        }
    }
    debug!(stage, "consumer loop drained");
}

async fn record_lag(ctx: &StageContext, stage: &'static str, consumer: &mut Consumer) {
    match consumer.pending().await {
        Ok(pending) => ctx.metrics.pending(stage, pending),
        Err(error) => debug!(stage, error = %error_chain(&error), "consumer lag unavailable"),
    }
}

// One span per message; the path, container and rule are filled in once
// the payload is decoded, so every stage's span of one change carries them.
fn message_span(stage: &'static str, delivery: &Delivery) -> tracing::Span {
    tracing::info_span!(
        "consume",
        stage,
        subject = %delivery.subject,
        delivered = delivery.delivered,
        path = tracing::field::Empty,
        container = tracing::field::Empty,
        rule = tracing::field::Empty,
    )
}

async fn process<T, H>(
    ctx: &StageContext,
    stage: &'static str,
    delivery: &Delivery,
    handler: &mut H,
) where
    T: DeserializeOwned + Describe,
    H: Handler<T>,
{
    let started = Instant::now();
    let outcome = match schemas::decode::<T>(&delivery.payload) {
        Ok(message) => {
            crate::trace::describe(&tracing::Span::current(), &message);
            handler.handle(message, delivery).await
        }
        Err(error) => Err(Failure::Permanent { reason: error.reason(), error: error.into() }),
    };
    let (label, settled) = match outcome {
        // Acknowledge only now: the handler's output is published and its
        // state stored, so a crash before this line means a redelivery.
        Ok(()) => ("acked", delivery.ack().await),
        Err(Failure::Transient(error)) => {
            warn!(stage, error = %error_chain(&*error), delivered = delivery.delivered, "processing failed, will retry");
            ("retried", delivery.nak(RETRY_DELAY).await)
        }
        Err(Failure::Permanent { reason, error }) => {
            ("dead_lettered", dead_letter(ctx, stage, delivery, reason, &*error).await)
        }
    };
    ctx.metrics.message(stage, label, started.elapsed().as_secs_f64());
    if let Err(error) = settled {
        warn!(stage, error = %error_chain(&error), "acknowledgement failed; the message will be redelivered");
    }
}

// Parks a message on fim.dlq.<stage>, then acknowledges it. If parking
// fails the message is left unacknowledged, so it is retried, not lost.
async fn dead_letter(
    ctx: &StageContext,
    stage: &'static str,
    delivery: &Delivery,
    reason: &'static str,
    error: &(dyn std::error::Error + Send + Sync + 'static),
) -> Result<(), crate::BusError> {
    warn!(stage, reason, subject = %delivery.subject, error = %error_chain(error), "message refused, sent to dead letters");
    ctx.dead_letters.record(stage, reason);
    ctx.bus.publish(delivery.dead_letter(stage, reason, error_chain(error))).await?;
    delivery.ack().await
}

/// An error and its sources, joined with `: `, for one log field.
pub fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
