//! The delivery worker of one sink: reads its durable consumer, gathers
//! batches, waits for the rate limit, sends, retries with exponential
//! backoff and jitter (never sooner than a `Retry-After`), and
//! acknowledges only after the sink took the alerts.
//!
//! Batches are sent one at a time, so a sink receives alerts in stream
//! order. A batch that fails for good, or still fails after
//! `max_attempts`, is published to `fim.dlq.notifier-<sink>` (the
//! `FIM_DLQ` stream), logged as an error and counted, then acknowledged;
//! if even that publish fails, nothing is acknowledged and the bus
//! delivers the alerts again. A delivery whose payload does not decode
//! goes to the same subject at once. On shutdown, alerts held but not
//! delivered are handed back to the bus at once (a nak with no delay).

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use bus::stage::error_chain;
use bus::{Consumer, Delivery, StageContext};
use schemas::{Alert, subject};
use tokio::time::Instant;
use tracing::{Instrument, debug, error, trace, warn};

use crate::config::{DeliveryPolicy, durable_name};
use crate::sinks::{Sink, SinkError};
use crate::{Error, Metrics};

// How many settled stream sequences are remembered to skip redeliveries of
// alerts this process already delivered (an ack that was lost, or an ack
// wait that ran out during a long retry).
const SETTLED_MEMORY: usize = 16_384;
// Pause after a receive error, so an outage is not a busy loop.
const RECEIVE_RETRY: Duration = Duration::from_secs(1);

/// One sink's worker.
pub(crate) struct Worker<S> {
    sink_name: Arc<str>,
    sink: S,
    consumer: Consumer,
    ctx: StageContext,
    policy: DeliveryPolicy,
    metrics: Metrics,
    settled: Settled,
    next_request: Instant,
}

struct Held {
    delivery: Delivery,
    alert: Alert,
}

// Why the worker stopped waiting.
enum Stop {
    Shutdown,
    Closed,
}

impl<S: Sink> Worker<S> {
    pub(crate) fn new(
        sink_name: &str,
        sink: S,
        consumer: Consumer,
        ctx: StageContext,
        policy: DeliveryPolicy,
        metrics: Metrics,
    ) -> Self {
        Self {
            sink_name: sink_name.into(),
            sink,
            consumer,
            ctx,
            policy,
            metrics,
            settled: Settled::default(),
            next_request: Instant::now(),
        }
    }

    /// Delivers until shutdown; an error means the consumer closed for good.
    pub(crate) async fn run(mut self) -> Result<(), Error> {
        loop {
            let batch = match self.collect().await {
                Ok(batch) => batch,
                Err(Stop::Shutdown) => break,
                Err(Stop::Closed) => {
                    error!(sink = %self.sink_name, "consumer closed by the transport; sink stops");
                    return Err(Error::ConsumerClosed { sink: self.sink_name.to_string() });
                }
            };
            // One span per batch, continuing the first alert's trace, so a
            // file change's trace ends at the sinks that delivered it.
            let span = tracing::info_span!(
                "deliver",
                sink = %self.sink_name,
                alerts = batch.len(),
                path = tracing::field::Empty,
                container = tracing::field::Empty,
                rule = tracing::field::Empty,
            );
            if let Some(first) = batch.first() {
                bus::trace::continue_from(&first.delivery.headers, &span);
                bus::trace::describe(&span, &first.alert);
            }
            if self.deliver(batch).instrument(span).await.is_err() {
                break;
            }
        }
        debug!(sink = %self.sink_name, "delivery worker drained");
        Ok(())
    }

    // Waits for the first alert, then up to `batch_max_wait` for more.
    async fn collect(&mut self) -> Result<Vec<Held>, Stop> {
        let mut batch = Vec::new();
        while batch.is_empty() {
            let shutdown = self.ctx.shutdown.clone();
            let next = tokio::select! {
                biased;
                () = shutdown.cancelled() => return Err(Stop::Shutdown),
                next = self.consumer.next() => next,
            };
            self.accept(next, &mut batch).await?;
        }
        let deadline = Instant::now() + self.policy.batch_max_wait;
        while batch.len() < self.policy.batch_max_events {
            let Ok(next) = tokio::time::timeout_at(deadline, self.consumer.next()).await else {
                break;
            };
            if self.ctx.shutdown.is_cancelled() {
                break;
            }
            self.accept(next, &mut batch).await?;
        }
        Ok(batch)
    }

    // Adds a delivery to the batch, or settles it at once: a redelivery of
    // something already delivered is acknowledged again, an undecodable
    // payload is dead-lettered.
    async fn accept(
        &mut self,
        next: Option<Result<Delivery, bus::BusError>>,
        batch: &mut Vec<Held>,
    ) -> Result<(), Stop> {
        let delivery = match next {
            Some(Ok(delivery)) => delivery,
            Some(Err(error)) => {
                warn!(sink = %self.sink_name, error = %error_chain(&error), "receive failed, retrying");
                tokio::time::sleep(RECEIVE_RETRY).await;
                return Ok(());
            }
            None => return Err(Stop::Closed),
        };
        if self.settled.contains(delivery.stream_sequence) {
            self.metrics.duplicate(&self.sink_name);
            self.ack(&delivery).await;
            return Ok(());
        }
        match schemas::decode::<Alert>(&delivery.payload) {
            Ok(alert) => batch.push(Held { delivery, alert }),
            Err(error) => {
                let reason = error.reason();
                self.dead_letter(&delivery, None, reason, &error.to_string(), 1).await;
            }
        }
        Ok(())
    }

    // Sends until success, a permanent error or the last attempt.
    async fn deliver(&mut self, batch: Vec<Held>) -> Result<(), Stop> {
        let alerts: Vec<Alert> = batch.iter().map(|held| held.alert.clone()).collect();
        let mut attempt = 1;
        loop {
            if let Err(stop) = self.wait_until(self.next_request).await {
                self.hand_back(&batch).await;
                return Err(stop);
            }
            self.next_request = Instant::now() + self.policy.min_interval;
            self.metrics.request(&self.sink_name);
            let Err(error) = self.attempt(&alerts).await else {
                self.delivered(&batch).await;
                return Ok(());
            };
            if !error.is_retryable() || attempt >= self.policy.max_attempts {
                self.give_up(&batch, &error, attempt).await;
                return Ok(());
            }
            let delay = self.backoff(attempt, error.retry_after());
            self.metrics.retry(&self.sink_name, error.reason());
            warn!(
                sink = %self.sink_name, attempt, alerts = alerts.len(),
                retry_in_ms = delay.as_millis() as u64, error = %error_chain(&error),
                "alert delivery failed, will retry"
            );
            // The rate limit also spaces retries, so it can only add delay.
            self.next_request = self.next_request.max(Instant::now() + delay);
            attempt += 1;
        }
    }

    async fn attempt(&mut self, alerts: &[Alert]) -> Result<(), SinkError> {
        match tokio::time::timeout(self.policy.timeout, self.sink.send(alerts)).await {
            Ok(result) => result,
            Err(_) => Err(SinkError::Timeout(self.policy.timeout)),
        }
    }

    fn backoff(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        backoff(&self.policy, attempt, retry_after)
    }

    async fn wait_until(&self, at: Instant) -> Result<(), Stop> {
        tokio::select! {
            biased;
            () = self.ctx.shutdown.cancelled() => Err(Stop::Shutdown),
            () = tokio::time::sleep_until(at) => Ok(()),
        }
    }

    async fn delivered(&mut self, batch: &[Held]) {
        // Acknowledge only now: the receiver has the alerts. A crash before
        // this line delivers them again, which receivers deduplicate by id.
        for held in batch {
            trace!(sink = %self.sink_name, alert = %held.alert.id, "alert delivered");
            self.ack(&held.delivery).await;
            self.settled.insert(held.delivery.stream_sequence);
        }
        self.metrics.delivered(&self.sink_name, batch.len());
    }

    async fn give_up(&mut self, batch: &[Held], error: &SinkError, attempts: u32) {
        self.metrics.failed(&self.sink_name, batch.len());
        let text = error_chain(error);
        for held in batch {
            let alert = Some(&held.alert);
            if self.dead_letter(&held.delivery, alert, error.reason(), &text, attempts).await {
                self.settled.insert(held.delivery.stream_sequence);
            }
        }
    }

    // Parks one delivery on fim.dlq.notifier-<sink>, then acknowledges it.
    // Returns whether it was parked; if not, it is handed back to the bus.
    async fn dead_letter(
        &mut self,
        delivery: &Delivery,
        alert: Option<&Alert>,
        reason: &'static str,
        error_text: &str,
        attempts: u32,
    ) -> bool {
        let durable = durable_name(&self.sink_name);
        let error = format!("after {attempts} attempts: {error_text}");
        let message = delivery.dead_letter(&durable, reason, error);
        let alert_id = alert.map_or("-", |a| a.id.as_str());
        if let Err(publish) = self.ctx.bus.publish(message).await {
            error!(
                sink = %self.sink_name, alert = alert_id, reason, error = %error_chain(&publish),
                "dead-lettering failed; the alert will be delivered again"
            );
            self.nak(delivery, self.policy.initial_backoff).await;
            return false;
        }
        self.metrics.dead_letter(&self.sink_name, reason);
        error!(
            sink = %self.sink_name, alert = alert_id, reason, attempts, error = error_text,
            subject = %subject::dead_letters(&durable), "alert not delivered, sent to dead letters"
        );
        self.ack(delivery).await;
        true
    }

    async fn hand_back(&self, batch: &[Held]) {
        for held in batch {
            self.nak(&held.delivery, Duration::ZERO).await;
        }
    }

    async fn ack(&self, delivery: &Delivery) {
        if let Err(error) = delivery.ack().await {
            warn!(sink = %self.sink_name, error = %error_chain(&error), "acknowledgement failed; the alert will be redelivered and skipped");
        }
    }

    async fn nak(&self, delivery: &Delivery, delay: Duration) {
        if let Err(error) = delivery.nak(delay).await {
            debug!(sink = %self.sink_name, error = %error_chain(&error), "nak failed; the alert returns after the ack wait");
        }
    }
}

/// The wait before attempt `attempt + 1`: exponential from
/// `initial_backoff`, capped at `max_backoff`, with "equal jitter" (half
/// fixed, half random) so that notifiers retrying one receiver spread out;
/// never less than the receiver's `Retry-After` (itself capped at
/// `max_retry_after`).
fn backoff(policy: &DeliveryPolicy, attempt: u32, retry_after: Option<Duration>) -> Duration {
    let exponent = attempt.saturating_sub(1).min(20);
    let base = policy.initial_backoff.saturating_mul(1 << exponent);
    let capped = base.min(policy.max_backoff);
    let half = capped / 2;
    let jitter = half.mul_f64(fastrand::f64());
    let asked = retry_after.map_or(Duration::ZERO, |d| d.min(policy.max_retry_after));
    (half + jitter).max(asked)
}

/// A bounded set of stream sequences already settled by this process.
#[derive(Default)]
struct Settled {
    set: HashSet<u64>,
    order: VecDeque<u64>,
}

impl Settled {
    fn contains(&self, sequence: u64) -> bool {
        self.set.contains(&sequence)
    }

    fn insert(&mut self, sequence: u64) {
        if self.set.insert(sequence) {
            self.order.push_back(sequence);
        }
        while self.order.len() > SETTLED_MEMORY {
            if let Some(oldest) = self.order.pop_front() {
                self.set.remove(&oldest);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> DeliveryPolicy {
        DeliveryPolicy {
            max_attempts: 10,
            initial_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(60),
            max_retry_after: Duration::from_secs(300),
            timeout: Duration::from_secs(10),
            batch_max_events: 1,
            batch_max_wait: Duration::ZERO,
            min_interval: Duration::ZERO,
            ack_wait: Duration::from_secs(60),
        }
    }

    #[test]
    fn backoff_doubles_with_jitter_up_to_the_cap() {
        let policy = policy();
        for attempt in 1..=12 {
            let full =
                (Duration::from_millis(500) * 2u32.pow(attempt - 1)).min(Duration::from_secs(60));
            for _ in 0..50 {
                let wait = backoff(&policy, attempt, None);
                assert!(
                    wait >= full / 2 && wait <= full,
                    "attempt {attempt}: {wait:?} vs {full:?}"
                );
            }
        }
        assert!(backoff(&policy, u32::MAX, None) <= Duration::from_secs(60));
    }

    #[test]
    fn retry_after_is_a_floor_capped_at_its_maximum() {
        let policy = policy();
        assert!(backoff(&policy, 1, Some(Duration::from_secs(30))) >= Duration::from_secs(30));
        let capped = backoff(&policy, 1, Some(Duration::from_secs(3600)));
        assert_eq!(capped, Duration::from_secs(300));
    }

    #[test]
    fn settled_sequences_are_remembered_up_to_a_bound() {
        let mut settled = Settled::default();
        for sequence in 0..(SETTLED_MEMORY as u64 + 10) {
            settled.insert(sequence);
        }
        assert!(!settled.contains(0) && settled.contains(SETTLED_MEMORY as u64 + 9));
        assert_eq!(settled.set.len(), SETTLED_MEMORY);
    }
}
