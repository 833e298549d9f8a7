//! Applies decisions: publishes alerts, then records baselines.
//!
//! Order matters for at-least-once delivery. The alert is published first
//! (its id derives from the observation id, so a republish after a crash is
//! deduplicated by the bus), then the baseline is written and flushed, and
//! only then is the observation acknowledged by the consume loop.

use bus::stage::{Failure, Handler};
use bus::{Delivery, Outgoing, StageContext};
use schemas::{Alert, Observation, SCHEMA_VERSION, Severity, Source, subject};
use tracing::trace;

use crate::metrics::{AlertLabels, DecisionLabels};
use crate::store::{self, Baseline, BaselineStore};
use crate::{Decision, Metrics, decide};

/// Rule of the walking skeleton: any change of a watched host path.
const HOST_RULE: &str = "host-path-changed";
/// Compliance controls every integrity alert is evidence for.
const CONTROLS: [&str; 2] = ["PCI-DSS-4.0:11.5.2", "NIST-800-53:SI-7"];

pub(crate) struct Worker<S> {
    metrics: Metrics,
    ctx: StageContext,
    store: S,
}

impl<S: BaselineStore> Worker<S> {
    pub(crate) fn new(metrics: Metrics, ctx: StageContext, store: S) -> Self {
        Self { metrics, ctx, store }
    }

    async fn evaluate(&self, observation: Observation) -> Result<(), Failure> {
        let event = &observation.event;
        let key = store::key(&event.source, &event.node, &event.path);
        let previous_key =
            event.previous_path.as_ref().map(|p| store::key(&event.source, &event.node, p));
        let baseline = self.store.get(&key).map_err(transient)?;
        let previous = match &previous_key {
            Some(previous_key) => self.store.get(previous_key).map_err(transient)?,
            None => None,
        };

        let decision = decide(baseline.as_ref(), previous.as_ref(), &observation);
        trace!(path = %event.path, ?decision, "observation evaluated");
        self.count(&decision);
        let entry = Baseline {
            state: observation.state.clone(),
            event_time_ns: event.time.unix_timestamp_nanos(),
        };
        let mut writes = vec![(key, entry)];
        match decision {
            Decision::Unchanged | Decision::Stale => return Ok(()),
            Decision::SetBaseline => {}
            Decision::Alert { change, before } => {
                let alert = alert(&observation, change, before);
                self.publish(&alert).await?;
                if let Some(previous_key) = previous_key {
                    let tombstone =
                        Baseline { state: None, event_time_ns: writes[0].1.event_time_ns };
                    writes.push((previous_key, tombstone));
                }
            }
        }
        self.store.put_all(writes).await.map_err(transient)
    }

    fn count(&self, decision: &Decision) {
        let decision = match decision {
            Decision::SetBaseline => "baseline_set",
            Decision::Unchanged => "unchanged",
            Decision::Stale => "stale",
            Decision::Alert { .. } => "alert",
        };
        self.metrics.decisions.get_or_create(&DecisionLabels { decision }).inc();
    }

    async fn publish(&self, alert: &Alert) -> Result<(), Failure> {
        let payload = schemas::encode(alert)
            .map_err(|e| Failure::Permanent { reason: "encode", error: e.into() })?;
        let namespace = match &alert.container {
            None => subject::HOST_NAMESPACE,
            Some(container) => container.namespace.as_deref().unwrap_or(subject::NO_NAMESPACE),
        };
        let subject = subject::alerts(alert.severity, namespace);
        self.ctx
            .bus
            .publish(Outgoing::new(subject, &alert.id, payload))
            .await
            .map_err(transient)?;
        let labels = AlertLabels { severity: alert.severity.as_str(), rule: HOST_RULE };
        self.metrics.alerts.get_or_create(&labels).inc();
        Ok(())
    }
}

impl<S: BaselineStore> Handler<Observation> for Worker<S> {
    async fn handle(&mut self, observation: Observation, _: &Delivery) -> Result<(), Failure> {
        self.evaluate(observation).await
    }
}

fn alert(
    observation: &Observation,
    change: schemas::ChangeKind,
    before: Option<schemas::FileState>,
) -> Alert {
    let event = &observation.event;
    let container = match &event.source {
        Source::Container(container) => Some(container.clone()),
        Source::Host { .. } => None,
    };
    Alert {
        schema_version: SCHEMA_VERSION,
        id: format!("alert:{}", observation.id),
        time: event.time,
        severity: Severity::High,
        rule: HOST_RULE.into(),
        change,
        path: event.path.clone(),
        previous_path: event.previous_path.clone(),
        node: event.node.clone(),
        container,
        before,
        after: observation.state.clone(),
        process: event.process.clone(),
        controls: CONTROLS.iter().map(|c| (*c).to_owned()).collect(),
        diff: None,
    }
}

fn transient(error: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Failure {
    Failure::Transient(error.into())
}
