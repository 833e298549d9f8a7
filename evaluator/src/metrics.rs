//! Evaluator metrics, `fim_evaluator_*`.
//!
//! Every label has a small fixed set of values: decisions, outcomes, and
//! rule ids (bounded by the rule files an operator writes).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct DecisionLabels {
    /// baseline_set, unchanged, alert, stale, ignored, accepted, learned,
    /// duplicate, aggregated.
    pub decision: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct AlertLabels {
    pub severity: &'static str,
    pub rule: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct OutcomeLabels {
    pub outcome: &'static str,
}

/// Counters of the evaluator.
#[derive(Clone, Default)]
pub struct Metrics {
    pub(crate) decisions: Family<DecisionLabels, Counter>,
    pub(crate) alerts: Family<AlertLabels, Counter>,
    pub(crate) rule_reloads: Family<OutcomeLabels, Counter>,
    pub(crate) approvals: Family<OutcomeLabels, Counter>,
    pub(crate) findings: Counter,
    pub(crate) pruned: Counter,
    pub(crate) reports: Counter,
    pub(crate) baselines: Gauge,
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
        registry.register(
            "rule_reloads",
            "Rule directory reloads, applied or rejected",
            metrics.rule_reloads.clone(),
        );
        registry.register(
            "approvals",
            "Baseline approvals, applied, duplicate or failed",
            metrics.approvals.clone(),
        );
        registry.register(
            "findings",
            "Semantic findings in changed content",
            metrics.findings.clone(),
        );
        registry.register(
            "pruned",
            "Baseline entries pruned after retention",
            metrics.pruned.clone(),
        );
        registry.register("reports", "Comparison reports published", metrics.reports.clone());
        registry.register(
            "baselines",
            "Paths with a baseline, as counted by the last full comparison",
            metrics.baselines.clone(),
        );
        metrics
    }

    pub(crate) fn decision(&self, decision: &'static str) {
        self.decisions.get_or_create(&DecisionLabels { decision }).inc();
    }

    pub(crate) fn rule_reload(&self, outcome: &'static str) {
        self.rule_reloads.get_or_create(&OutcomeLabels { outcome }).inc();
    }

    pub(crate) fn approval(&self, outcome: &'static str) {
        self.approvals.get_or_create(&OutcomeLabels { outcome }).inc();
    }
}
