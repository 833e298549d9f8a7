//! Metrics every stage shares through its consume loop: messages by outcome,
//! handling time, consumer lag, and dead letters. Labels are the stage name
//! and a small fixed set of outcomes or reasons.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DeadLetterLabels {
    stage: &'static str,
    reason: &'static str,
}

/// The `fim_dead_letters_total{stage, reason}` counter.
#[derive(Clone, Default)]
pub struct DeadLetterMetrics {
    total: Family<DeadLetterLabels, Counter>,
}

impl DeadLetterMetrics {
    /// Registers the counter.
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self::default();
        registry.register(
            "fim_dead_letters",
            "Messages a stage could not process, sent to fim.dlq.<stage>",
            metrics.total.clone(),
        );
        metrics
    }

    /// Counts one message parked on a dead-letter subject.
    pub fn record(&self, stage: &'static str, reason: &'static str) {
        self.total.get_or_create(&DeadLetterLabels { stage, reason }).inc();
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    stage: &'static str,
    /// acked, retried, dead_lettered.
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StageLabels {
    stage: &'static str,
}

fn latency_histogram() -> Histogram {
    Histogram::new([0.0005, 0.002, 0.01, 0.05, 0.25, 1.0, 5.0, 30.0])
}

/// `fim_messages_total`, `fim_message_seconds` and `fim_consumer_pending`.
#[derive(Clone)]
pub struct StageMetrics {
    messages: Family<OutcomeLabels, Counter>,
    seconds: Family<StageLabels, Histogram, fn() -> Histogram>,
    pending: Family<StageLabels, Gauge>,
}

impl Default for StageMetrics {
    fn default() -> Self {
        Self {
            messages: Family::default(),
            seconds: Family::new_with_constructor(latency_histogram),
            pending: Family::default(),
        }
    }
}

impl StageMetrics {
    /// Registers the shared stage metrics.
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self::default();
        registry.register(
            "fim_messages",
            "Messages consumed by a stage, by outcome",
            metrics.messages.clone(),
        );
        registry.register(
            "fim_message_seconds",
            "Time a stage spent on one message, acknowledgement included",
            metrics.seconds.clone(),
        );
        registry.register(
            "fim_consumer_pending",
            "Messages waiting in the stage's durable consumer (consumer lag)",
            metrics.pending.clone(),
        );
        metrics
    }

    pub(crate) fn message(&self, stage: &'static str, outcome: &'static str, seconds: f64) {
        self.messages.get_or_create(&OutcomeLabels { stage, outcome }).inc();
        self.seconds.get_or_create(&StageLabels { stage }).observe(seconds);
    }

    pub(crate) fn pending(&self, stage: &'static str, pending: u64) {
        let value = i64::try_from(pending).unwrap_or(i64::MAX);
        self.pending.get_or_create(&StageLabels { stage }).set(value);
    }
}
