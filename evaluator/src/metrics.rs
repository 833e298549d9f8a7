//! Evaluator metrics, `fim_evaluator_*`.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct DecisionLabels {
    /// baseline_set, unchanged, alert, stale, ignored.
    pub decision: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct AlertLabels {
    pub severity: &'static str,
    pub rule: &'static str,
}

/// Counters of the evaluator.
#[derive(Clone, Default)]
pub struct Metrics {
    pub(crate) decisions: Family<DecisionLabels, Counter>,
    pub(crate) alerts: Family<AlertLabels, Counter>,
}

impl Metrics {
    /// Registers the evaluator's metrics.
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self::default();
        let registry = registry.sub_registry_with_prefix("fim_evaluator");
        registry.register(
            "observations",
            "Observations evaluated, by decision",
            metrics.decisions.clone(),
        );
        registry.register("alerts", "Alerts raised, by severity and rule", metrics.alerts.clone());
        metrics
    }
}
