//! Notifier metrics, `fim_notifier_*`.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct DeliveryLabels {
    pub sink: &'static str,
    /// delivered, failed.
    pub outcome: &'static str,
}

/// Counters of the notifier.
#[derive(Clone, Default)]
pub struct Metrics {
    deliveries: Family<DeliveryLabels, Counter>,
}

impl Metrics {
    /// Registers the notifier's metrics.
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self::default();
        let registry = registry.sub_registry_with_prefix("fim_notifier");
        registry.register(
            "deliveries",
            "Alert deliveries, by sink and outcome",
            metrics.deliveries.clone(),
        );
        metrics
    }

    pub(crate) fn delivery(&self, sink: &'static str, outcome: &'static str) {
        self.deliveries.get_or_create(&DeliveryLabels { sink, outcome }).inc();
    }
}
