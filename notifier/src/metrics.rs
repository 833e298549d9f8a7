//! Notifier metrics, `fim_notifier_*`, labelled by sink name (from the
//! sinks file, so a small fixed set) and a fixed outcome or reason.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DeliveryLabels {
    sink: String,
    /// delivered, failed.
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    sink: String,
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SinkLabels {
    sink: String,
}

/// Counters of the notifier.
#[derive(Clone, Default)]
pub struct Metrics {
    deliveries: Family<DeliveryLabels, Counter>,
    retries: Family<ReasonLabels, Counter>,
    dead_letters: Family<ReasonLabels, Counter>,
    duplicates: Family<SinkLabels, Counter>,
    requests: Family<SinkLabels, Counter>,
}

impl Metrics {
    /// Registers the notifier's metrics.
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self::default();
        let registry = registry.sub_registry_with_prefix("fim_notifier");
        registry.register(
            "deliveries",
            "Alerts by sink and outcome (delivered, or failed for good)",
            metrics.deliveries.clone(),
        );
        registry.register(
            "retries",
            "Delivery attempts that failed and will be retried, by sink and reason",
            metrics.retries.clone(),
        );
        registry.register(
            "dead_letters",
            "Alerts sent to fim.dlq.notifier-<sink>, by sink and reason",
            metrics.dead_letters.clone(),
        );
        registry.register(
            "duplicates",
            "Redeliveries of alerts this process had already settled, skipped",
            metrics.duplicates.clone(),
        );
        registry.register(
            "requests",
            "Delivery attempts (requests, datagrams or writes), by sink",
            metrics.requests.clone(),
        );
        metrics
    }

    pub(crate) fn delivered(&self, sink: &str, alerts: usize) {
        self.delivery(sink, "delivered").inc_by(alerts as u64);
    }

    pub(crate) fn failed(&self, sink: &str, alerts: usize) {
        self.delivery(sink, "failed").inc_by(alerts as u64);
    }

    fn delivery(&self, sink: &str, outcome: &'static str) -> Counter {
        self.deliveries.get_or_create(&DeliveryLabels { sink: sink.to_owned(), outcome }).clone()
    }

    pub(crate) fn retry(&self, sink: &str, reason: &'static str) {
        self.retries.get_or_create(&ReasonLabels { sink: sink.to_owned(), reason }).inc();
    }

    pub(crate) fn dead_letter(&self, sink: &str, reason: &'static str) {
        self.dead_letters.get_or_create(&ReasonLabels { sink: sink.to_owned(), reason }).inc();
    }

    pub(crate) fn duplicate(&self, sink: &str) {
        self.duplicates.get_or_create(&SinkLabels { sink: sink.to_owned() }).inc();
    }

    pub(crate) fn request(&self, sink: &str) {
        self.requests.get_or_create(&SinkLabels { sink: sink.to_owned() }).inc();
    }
}
