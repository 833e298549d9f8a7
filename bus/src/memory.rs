//! The in-process transport used by `fim all` when no NATS URL is given.
//!
//! It mirrors the JetStream semantics the stages rely on: streams capture
//! subjects, publishes with a known message id inside the duplicate window
//! are stored once, durable consumers deliver every matching message from
//! the start of the stream, and a delivery that is not acknowledged comes
//! back after the ack wait, after a nak, or as soon as its consumer handle is
//! dropped. A message is released once every consumer of its stream has
//! acknowledged it, or when it is older than the stream's `max_age`.
//! Nothing is persisted.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use schemas::header;
use schemas::stream::{self, StreamSpec};
use schemas::subject;
use tokio::sync::watch;

use crate::message::{Acker, Delivery, Headers, Outgoing};
use crate::{BusError, ConsumerSpec};

/// Handle to the in-process streams. Clones share them.
#[derive(Clone)]
pub struct MemoryBus {
    state: Arc<Mutex<State>>,
    // Bumped on every change a waiting consumer may care about.
    changes: watch::Sender<u64>,
    handles: Arc<AtomicU64>,
}

struct State {
    streams: HashMap<&'static str, MemStream>,
}

struct MemStream {
    spec: StreamSpec,
    last_sequence: u64,
    messages: BTreeMap<u64, Stored>,
    recent_ids: HashMap<String, Instant>,
    consumers: HashMap<String, ConsumerState>,
}

struct Stored {
    subject: String,
    headers: Headers,
    payload: Bytes,
    stored_at: Instant,
}

struct ConsumerState {
    spec: ConsumerSpec,
    // Next sequence never delivered yet.
    cursor: u64,
    in_flight: BTreeMap<u64, InFlight>,
    redeliver: BTreeSet<u64>,
    delivered: HashMap<u64, u64>,
}

struct InFlight {
    deadline: Instant,
    handle: u64,
}

impl Default for MemoryBus {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryBus {
    /// Creates every stream in [`schemas::stream::ALL`].
    pub fn new() -> Self {
        let streams = stream::ALL
            .iter()
            .map(|spec| {
                let stream = MemStream {
                    spec: *spec,
                    last_sequence: 0,
                    messages: BTreeMap::new(),
                    recent_ids: HashMap::new(),
                    consumers: HashMap::new(),
                };
                (spec.name, stream)
            })
            .collect();
        Self {
            state: Arc::new(Mutex::new(State { streams })),
            changes: watch::channel(0).0,
            handles: Arc::new(AtomicU64::new(1)),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves consistent data behind
        // (every mutation is a single insert or remove), so keep going.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn wake(&self) {
        self.changes.send_modify(|n| *n = n.wrapping_add(1));
    }

    pub(crate) fn publish(&self, message: Outgoing) -> Result<(), BusError> {
        let spec = stream::for_subject(&message.subject)
            .ok_or_else(|| BusError::NoStream { subject: message.subject.clone() })?;
        let mut state = self.lock();
        let stream = state.streams.get_mut(spec.name).expect("every spec has a stream");
        let now = Instant::now();
        stream.expire(now);
        if let Some(id) = message.headers.get(header::MSG_ID) {
            if stream.recent_ids.contains_key(id) {
                return Ok(());
            }
            stream.recent_ids.insert(id.to_owned(), now);
        }
        stream.last_sequence += 1;
        let stored = Stored {
            subject: message.subject,
            headers: message.headers,
            payload: message.payload,
            stored_at: now,
        };
        stream.messages.insert(stream.last_sequence, stored);
        drop(state);
        self.wake();
        Ok(())
    }

    pub(crate) fn consumer(&self, spec: ConsumerSpec) -> Result<MemoryConsumer, BusError> {
        let mut state = self.lock();
        let stream = state.streams.get_mut(spec.stream.name).ok_or_else(|| BusError::Stream {
            stream: spec.stream.name.to_owned(),
            source: "no such stream".into(),
        })?;
        let first = stream.messages.keys().next().copied().unwrap_or(stream.last_sequence + 1);
        stream.consumers.entry(spec.durable.clone()).or_insert_with(|| ConsumerState {
            spec: spec.clone(),
            cursor: first,
            in_flight: BTreeMap::new(),
            redeliver: BTreeSet::new(),
            delivered: HashMap::new(),
        });
        Ok(MemoryConsumer {
            bus: self.clone(),
            stream: spec.stream.name,
            durable: spec.durable,
            handle: self.handles.fetch_add(1, Ordering::Relaxed),
            changes: self.changes.subscribe(),
        })
    }

    fn settle(&self, target: &Target, redeliver_after: Option<Duration>) {
        let mut state = self.lock();
        let Some(stream) = state.streams.get_mut(target.stream) else { return };
        let Some(consumer) = stream.consumers.get_mut(&target.durable) else { return };
        let was_in_flight = consumer.in_flight.remove(&target.sequence).is_some();
        match redeliver_after {
            // A late nak of a delivery that already timed out changes nothing.
            Some(_) if !was_in_flight => return,
            Some(delay) => {
                let deadline = Instant::now() + delay;
                consumer.in_flight.insert(target.sequence, InFlight { deadline, handle: 0 });
            }
            // A late ack still counts, as in JetStream: the work was done.
            None => {
                consumer.redeliver.remove(&target.sequence);
                consumer.delivered.remove(&target.sequence);
                stream.release_acknowledged();
            }
        }
        drop(state);
        self.wake();
    }
}

impl MemoryBus {
    // Restarts the ack wait of a delivery still in flight.
    fn extend(&self, target: &Target) {
        let mut state = self.lock();
        let Some(stream) = state.streams.get_mut(target.stream) else { return };
        let Some(consumer) = stream.consumers.get_mut(&target.durable) else { return };
        let ack_wait = consumer.spec.ack_wait;
        if let Some(in_flight) = consumer.in_flight.get_mut(&target.sequence) {
            in_flight.deadline = Instant::now() + ack_wait;
        }
    }
}

impl MemStream {
    // Drops messages past max_age and message ids past the duplicate window.
    fn expire(&mut self, now: Instant) {
        let window = self.spec.duplicate_window;
        self.recent_ids.retain(|_, at| now.duration_since(*at) < window);
        let max_age = self.spec.max_age;
        while let Some(entry) = self.messages.first_entry() {
            if now.duration_since(entry.get().stored_at) < max_age {
                break;
            }
            entry.remove();
        }
    }

    // Frees messages that every consumer has acknowledged. With no consumer
    // yet, everything is kept: the first consumer starts at the beginning.
    fn release_acknowledged(&mut self) {
        let floor = self.consumers.values().map(ConsumerState::ack_floor).min();
        if let Some(floor) = floor {
            self.messages = self.messages.split_off(&floor);
        }
    }
}

impl ConsumerState {
    fn ack_floor(&self) -> u64 {
        let in_flight = self.in_flight.keys().next().copied();
        let redeliver = self.redeliver.first().copied();
        [Some(self.cursor), in_flight, redeliver].into_iter().flatten().min().unwrap_or(0)
    }

    fn expire_in_flight(&mut self, now: Instant) {
        let expired: Vec<u64> =
            self.in_flight.iter().filter(|(_, f)| f.deadline <= now).map(|(seq, _)| *seq).collect();
        for sequence in expired {
            self.in_flight.remove(&sequence);
            self.redeliver.insert(sequence);
        }
    }

    // Picks the next sequence to deliver: redeliveries first, then new ones.
    fn next_sequence(&mut self, messages: &BTreeMap<u64, Stored>) -> Option<u64> {
        while let Some(sequence) = self.redeliver.pop_first() {
            if messages.contains_key(&sequence) && !self.exhausted(sequence) {
                return Some(sequence);
            }
        }
        let filter = &self.spec.filter;
        let found = messages
            .range(self.cursor..)
            .find(|(_, m)| subject::matches(filter, &m.subject))
            .map(|(seq, _)| *seq);
        self.cursor = found.map_or(self.cursor.max(messages_end(messages)), |seq| seq + 1);
        found
    }

    fn exhausted(&self, sequence: u64) -> bool {
        let delivered = self.delivered.get(&sequence).copied().unwrap_or(0);
        self.spec.max_deliver > 0 && delivered >= self.spec.max_deliver as u64
    }
}

fn messages_end(messages: &BTreeMap<u64, Stored>) -> u64 {
    messages.keys().next_back().map_or(0, |last| last + 1)
}

struct Target {
    stream: &'static str,
    durable: String,
    sequence: u64,
}

/// Settles one in-process delivery.
pub(crate) struct MemoryAcker {
    bus: MemoryBus,
    target: Target,
}

impl MemoryAcker {
    pub(crate) fn ack(&self) {
        self.bus.settle(&self.target, None);
    }

    pub(crate) fn nak(&self, delay: Duration) {
        self.bus.settle(&self.target, Some(delay));
    }

    pub(crate) fn extend(&self) {
        self.bus.extend(&self.target);
    }
}

/// An attachment to an in-process durable consumer.
pub struct MemoryConsumer {
    bus: MemoryBus,
    stream: &'static str,
    durable: String,
    handle: u64,
    changes: watch::Receiver<u64>,
}

impl MemoryConsumer {
    pub(crate) fn pending(&self) -> u64 {
        let state = self.bus.lock();
        let Some(stream) = state.streams.get(self.stream) else { return 0 };
        let Some(consumer) = stream.consumers.get(&self.durable) else { return 0 };
        let filter = &consumer.spec.filter;
        let new = stream
            .messages
            .range(consumer.cursor..)
            .filter(|(_, m)| subject::matches(filter, &m.subject))
            .count();
        (new + consumer.redeliver.len()) as u64
    }

    pub(crate) async fn next(&mut self) -> Delivery {
        loop {
            self.changes.borrow_and_update();
            let wait = match self.try_next() {
                Ok(delivery) => return delivery,
                Err(wait) => wait,
            };
            let changed = self.changes.changed();
            match wait {
                Some(deadline) => {
                    let _ = tokio::time::timeout_at(deadline.into(), changed).await;
                }
                // The sender lives in `self.bus`, so `changed` cannot fail.
                None => {
                    let _ = changed.await;
                }
            }
        }
    }

    // A delivery, or the earliest in-flight deadline to wake up for.
    fn try_next(&mut self) -> Result<Delivery, Option<Instant>> {
        let mut state = self.bus.lock();
        let stream = state.streams.get_mut(self.stream).expect("consumer of a known stream");
        let now = Instant::now();
        stream.expire(now);
        let consumer = stream.consumers.get_mut(&self.durable).expect("consumer was created");
        consumer.expire_in_flight(now);
        let Some(sequence) = consumer.next_sequence(&stream.messages) else {
            return Err(consumer.in_flight.values().map(|f| f.deadline).min());
        };

        let delivered = consumer.delivered.entry(sequence).or_insert(0);
        *delivered += 1;
        let delivered = *delivered;
        let deadline = now + consumer.spec.ack_wait;
        consumer.in_flight.insert(sequence, InFlight { deadline, handle: self.handle });
        let message = &stream.messages[&sequence];
        Ok(Delivery {
            subject: message.subject.clone(),
            headers: message.headers.clone(),
            payload: message.payload.clone(),
            stream_sequence: sequence,
            delivered,
            acker: Acker::Memory(MemoryAcker {
                bus: self.bus.clone(),
                target: Target { stream: self.stream, durable: self.durable.clone(), sequence },
            }),
        })
    }
}

impl Drop for MemoryConsumer {
    // Like a crashed process: what this handle held unacknowledged is handed
    // back at once for redelivery to the consumer's other handles.
    fn drop(&mut self) {
        let mut state = self.bus.lock();
        let Some(stream) = state.streams.get_mut(self.stream) else { return };
        let Some(consumer) = stream.consumers.get_mut(&self.durable) else { return };
        let held: Vec<u64> = consumer
            .in_flight
            .iter()
            .filter(|(_, f)| f.handle == self.handle)
            .map(|(seq, _)| *seq)
            .collect();
        for sequence in held {
            consumer.in_flight.remove(&sequence);
            consumer.redeliver.insert(sequence);
        }
        drop(state);
        self.bus.wake();
    }
}
