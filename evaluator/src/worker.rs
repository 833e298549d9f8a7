//! Applies decisions: asks the rules, publishes alerts, records baselines.
//!
//! Order matters for at-least-once delivery. The alert is published first
//! (its id derives from the observation id, so a republish after a crash is
//! deduplicated by the bus), then the baseline is written and flushed, and
//! only then is the observation acknowledged by the consume loop. Alerts
//! folded into a storm aggregate are written in the same batch as the
//! baseline and published when the window closes (see [`crate::storm`]).

use std::sync::Arc;
use std::time::Instant;

use bus::stage::{Failure, Handler};
use bus::{Delivery, Outgoing, StageContext};
use schemas::{Alert, ChangeKind, FileState, Observation, SCHEMA_VERSION, Source, subject};
use tokio::sync::Mutex;
use tracing::{debug, trace};

use crate::content;
use crate::metrics::AlertLabels;
use crate::rules::{Action, SharedRules, Target, Verdict};
use crate::store::{
    self, Authorized, Baseline, BaselineStore, ContainerRecord, Origin, Table, Write,
};
use crate::storm::{Aggregate, StormGuard, StormLimits};
use crate::{Decision, Metrics, decide};

// A container record is rewritten at most this often when nothing about it
// changed, so quiet observations do not each cost a flush.
const RECORD_REFRESH_NS: i128 = 60 * 1_000_000_000;

/// The evaluator's state shared by the consume loop and its timers.
#[derive(Clone)]
pub(crate) struct Shared<S> {
    pub metrics: Metrics,
    pub ctx: StageContext,
    pub store: S,
    pub rules: SharedRules,
    pub limits: StormLimits,
    /// Serialises read-modify-write of storm aggregates between the worker
    /// and the timer that publishes them.
    pub storm_lock: Arc<Mutex<()>>,
}

pub(crate) struct Worker<S> {
    shared: Shared<S>,
    storms: StormGuard,
}

/// What one observation does to the store, and what it publishes.
struct Outcome {
    writes: Vec<Write>,
    alert: Option<Alert>,
}

impl<S: BaselineStore> Worker<S> {
    pub(crate) fn new(shared: Shared<S>) -> Self {
        Self { shared, storms: StormGuard::default() }
    }

    async fn evaluate(&mut self, observation: Observation) -> Result<(), Failure> {
        let event = &observation.event;
        let store = &self.shared.store;
        let key = store::key(&event.source, &event.node, &event.path);
        let baseline: Option<Baseline> = store.get(Table::Baselines, &key).map_err(transient)?;
        let previous_key =
            event.previous_path.as_ref().map(|p| store::key(&event.source, &event.node, p));
        let previous = match &previous_key {
            Some(previous_key) => store.get(Table::Baselines, previous_key).map_err(transient)?,
            None => None,
        };
        let reference = self.reference(&observation, baseline.as_ref()).map_err(transient)?;

        let decision =
            decide(baseline.as_ref(), previous.as_ref(), &observation, reference.as_ref());
        trace!(path = %event.path, ?decision, "observation evaluated");
        let mut outcome = self.apply(&key, &observation, decision, baseline, reference);
        if let Some(previous_key) = previous_key.filter(|_| outcome.alert.is_some()) {
            let tombstone = Baseline::absent(event.time.unix_timestamp_nanos());
            outcome
                .writes
                .push(Write::put(Table::Baselines, previous_key, &tombstone).map_err(transient)?);
        }
        if let Some(write) = self.container_record(&observation).map_err(transient)? {
            outcome.writes.push(write);
        }
        self.settle(&key, outcome).await
    }

    // The authorized state to compare with. Containers: the stored one, an
    // image-wide approval, or the image's version. Host paths keep the
    // walking skeleton's behaviour (compare with the last seen state)
    // unless an operator approved a state.
    fn reference(
        &self,
        observation: &Observation,
        baseline: Option<&Baseline>,
    ) -> Result<Option<Authorized>, crate::Error> {
        let stored = baseline.and_then(|b| b.authorized.clone());
        let Source::Container(container) = &observation.event.source else {
            return Ok(stored.filter(|a| a.origin == Origin::Approved));
        };
        if stored.is_some() {
            return Ok(stored);
        }
        for image in [&container.image_id, &container.image].into_iter().flatten() {
            let key = store::image_key(image, &observation.event.path);
            let approved: Option<Option<FileState>> =
                self.shared.store.get(Table::ImageApprovals, &key)?;
            if let Some(state) = approved {
                return Ok(Some(Authorized { state, origin: Origin::Approved }));
            }
        }
        Ok(observation
            .image
            .as_ref()
            .map(|image| Authorized { state: image.state.clone(), origin: Origin::Image }))
    }

    fn apply(
        &self,
        key: &[u8],
        observation: &Observation,
        decision: Decision,
        baseline: Option<Baseline>,
        reference: Option<Authorized>,
    ) -> Outcome {
        let first_sight = baseline.is_none();
        let mut entry = baseline.unwrap_or_else(|| Baseline::absent(0));
        entry.state = observation.state.clone();
        entry.event_time_ns = observation.event.time.unix_timestamp_nanos();
        if entry.authorized.is_none() {
            entry.authorized = reference.clone();
        }
        // Back at its authorized state: the same change made again (say,
        // after a remediation) is news again.
        let authorized = entry.authorized.as_ref().map(|a| a.state.as_ref());
        if authorized.is_some_and(|a| !store::states_differ(a, entry.state.as_ref())) {
            entry.alerted.clear();
        }
        let (label, alert) = match decision {
            Decision::Unchanged | Decision::Stale => {
                let label = if decision == Decision::Stale { "stale" } else { "unchanged" };
                self.shared.metrics.decision(label);
                return Outcome { writes: Vec::new(), alert: None };
            }
            Decision::SetBaseline => {
                let state = observation.state.clone();
                entry.authorized = Some(Authorized { state, origin: Origin::Inventory });
                ("baseline_set", None)
            }
            Decision::Authorized => ("authorized", None),
            Decision::Alert { change, before } => {
                match self.judge(observation, change, before, &mut entry, first_sight) {
                    Judged::Skip(label) => {
                        self.shared.metrics.decision(label);
                        return Outcome { writes: Vec::new(), alert: None };
                    }
                    Judged::Record(label) => (label, None),
                    Judged::Alert(alert) => ("alert", Some(*alert)),
                }
            }
        };
        self.shared.metrics.decision(label);
        match Write::put(Table::Baselines, key.to_vec(), &entry) {
            Ok(write) => Outcome { writes: vec![write], alert },
            // Encoding a plain struct cannot fail; if it ever did, alert anyway.
            Err(_) => Outcome { writes: Vec::new(), alert },
        }
    }

    // Asks the rules about a difference and updates `entry` accordingly.
    fn judge(
        &self,
        observation: &Observation,
        change: ChangeKind,
        before: Option<FileState>,
        entry: &mut Baseline,
        first_sight: bool,
    ) -> Judged {
        let event = &observation.event;
        let container = match &event.source {
            Source::Container(container) => Some(container),
            Source::Host { .. } => None,
        };
        let target = Target { path: &event.path, change, container };
        let verdict = self.verdict(&target);
        let now = observation.state.clone();
        match verdict.action {
            Action::Ignore => return Judged::Skip("ignored"),
            Action::Accept => {
                entry.authorized = Some(Authorized { state: now, origin: Origin::Accepted });
                return Judged::Record("accepted");
            }
            Action::Alert => {}
        }
        if verdict.learn && change == ChangeKind::Created && first_sight {
            entry.authorized = Some(Authorized { state: now, origin: Origin::Learned });
            return Judged::Record("learned");
        }
        if entry.already_alerted(now.as_ref()) {
            return Judged::Record("duplicate");
        }
        entry.remember_alert(now.as_ref());
        Judged::Alert(Box::new(alert(observation, change, before, &verdict, &self.shared.metrics)))
    }

    fn verdict(&self, target: &Target<'_>) -> Verdict {
        let rules = self.shared.rules.read().unwrap_or_else(|poisoned| poisoned.into_inner());
        Arc::clone(&rules).evaluate(target)
    }

    // Records (or refreshes) the source an observation came from: when it
    // was last seen (for retention) and last fully scanned (for reports).
    fn container_record(&self, observation: &Observation) -> Result<Option<Write>, crate::Error> {
        let event = &observation.event;
        let info = match &event.source {
            Source::Container(info) => Some(info.clone()),
            Source::Host { .. } => None,
        };
        let key = store::source_key(&event.source, &event.node).into_bytes();
        let now = event.time.unix_timestamp_nanos();
        let inventory = event.change == ChangeKind::Inventory;
        let old: Option<ContainerRecord> = self.shared.store.get(Table::Containers, &key)?;
        let refresh = |t: i128| now - t > RECORD_REFRESH_NS;
        let stale = old.as_ref().is_none_or(|old| {
            old.info != info
                || refresh(old.last_seen_ns)
                || (inventory && old.last_inventory_ns.is_none_or(refresh))
        });
        if !stale {
            return Ok(None);
        }
        let last_inventory_ns = match inventory {
            true => Some(now),
            false => old.and_then(|o| o.last_inventory_ns),
        };
        let node = event.node.clone();
        let record = ContainerRecord { info, node, last_seen_ns: now, last_inventory_ns };
        Write::put(Table::Containers, key, &record).map(Some)
    }

    // Publishes the alert (or folds it into a storm aggregate), then writes
    // and flushes the baseline; the consume loop acknowledges afterwards.
    async fn settle(&mut self, key: &[u8], mut outcome: Outcome) -> Result<(), Failure> {
        let _storm = self.shared.storm_lock.clone().lock_owned().await;
        if let Some(alert) = outcome.alert.take() {
            let source = store::split_key(key).map(|(s, _)| s).unwrap_or_default();
            let folded = self.storms.over_threshold(&source, &self.shared.limits, Instant::now());
            if folded {
                outcome.writes.push(self.fold(source, &alert).map_err(transient)?);
                self.shared.metrics.decision("aggregated");
            } else {
                publish(&self.shared, &alert).await?;
            }
        }
        if outcome.writes.is_empty() {
            return Ok(());
        }
        self.shared.store.apply(outcome.writes).await.map_err(transient)
    }

    fn fold(&self, source: String, alert: &Alert) -> Result<Write, crate::Error> {
        let limits = &self.shared.limits;
        let existing: Option<Aggregate> =
            self.shared.store.get(Table::Storms, source.as_bytes())?;
        let aggregate = match existing {
            Some(mut aggregate) => {
                aggregate.fold(alert, limits.max_paths);
                aggregate
            }
            None => Aggregate::start(source.clone(), alert, limits.window, limits.max_paths),
        };
        Write::put(Table::Storms, source.into_bytes(), &aggregate)
    }
}

enum Judged {
    /// Nothing to record.
    Skip(&'static str),
    /// Record the entry silently.
    Record(&'static str),
    /// Record the entry and publish the alert.
    Alert(Box<Alert>),
}

impl<S: BaselineStore> Handler<Observation> for Worker<S> {
    async fn handle(&mut self, observation: Observation, _: &Delivery) -> Result<(), Failure> {
        self.evaluate(observation).await
    }
}

/// Publishes storm aggregates whose window has closed, oldest first.
pub(crate) async fn flush_storms<S: BaselineStore>(shared: &Shared<S>) -> Result<(), Failure> {
    let _storm = shared.storm_lock.lock().await;
    let due: Vec<(Vec<u8>, Aggregate)> =
        shared.store.scan(Table::Storms, b"").map_err(transient)?;
    let now = time::OffsetDateTime::now_utc().unix_timestamp_nanos();
    for (key, aggregate) in due.into_iter().filter(|(_, a)| a.due_ns <= now) {
        publish(shared, &aggregate.alert()).await?;
        shared.store.apply(vec![Write::Delete(Table::Storms, key)]).await.map_err(transient)?;
        debug!(source = %aggregate.source, count = aggregate.count, "storm aggregate published");
    }
    Ok(())
}

async fn publish<S>(shared: &Shared<S>, alert: &Alert) -> Result<(), Failure> {
    let payload = schemas::encode(alert)
        .map_err(|e| Failure::Permanent { reason: "encode", error: e.into() })?;
    let namespace = match &alert.container {
        None => subject::HOST_NAMESPACE,
        Some(container) => container.namespace.as_deref().unwrap_or(subject::NO_NAMESPACE),
    };
    let subject = subject::alerts(alert.severity, namespace);
    shared.ctx.bus.publish(Outgoing::new(subject, &alert.id, payload)).await.map_err(transient)?;
    let labels = AlertLabels { severity: alert.severity.as_str(), rule: alert.rule.clone() };
    shared.metrics.alerts.get_or_create(&labels).inc();
    Ok(())
}

fn alert(
    observation: &Observation,
    change: ChangeKind,
    before: Option<FileState>,
    verdict: &Verdict,
    metrics: &Metrics,
) -> Alert {
    let event = &observation.event;
    let container = match &event.source {
        Source::Container(container) => Some(container.clone()),
        Source::Host { .. } => None,
    };
    let found = match (&observation.content, &observation.state) {
        (Some(captured), Some(_)) => content::findings(&event.path, captured),
        _ => Vec::new(),
    };
    metrics.findings.inc_by(found.len() as u64);
    let severity = found.iter().map(|f| f.severity).fold(verdict.severity, Ord::max);
    Alert {
        schema_version: SCHEMA_VERSION,
        id: format!("alert:{}", observation.id),
        time: event.time,
        severity,
        rule: verdict.rule.clone(),
        change,
        path: event.path.clone(),
        previous_path: event.previous_path.clone(),
        node: event.node.clone(),
        container,
        before,
        after: observation.state.clone(),
        process: event.process.clone(),
        controls: verdict.controls.clone(),
        diff: observation.content.as_ref().map(content::diff),
        findings: found.into_iter().map(|f| f.text).collect(),
    }
}

fn transient(error: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Failure {
    Failure::Transient(error.into())
}
