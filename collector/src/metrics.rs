//! The collector's Prometheus metrics, all named `fim_collector_*`.
//!
//! Every event that is dropped, retried or lost on purpose increments one of
//! these with a small fixed set of label values, so a gap is always visible.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use schemas::ChangeKind;

/// Why an event was not reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum IgnoreReason {
    /// Caused by the collector's own process.
    OwnProcess,
    /// Under an `exclude` path.
    Excluded,
    /// In a directory the collector does not know (moved out, or a race).
    UnknownDir,
    /// A sibling of a watched single file.
    UnwatchedSibling,
}

impl IgnoreReason {
    fn as_str(self) -> &'static str {
        match self {
            Self::OwnProcess => "own_process",
            Self::Excluded => "excluded",
            Self::UnknownDir => "unknown_dir",
            Self::UnwatchedSibling => "unwatched_sibling",
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ChangeLabels {
    change: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ScopeLabels {
    /// all (start-up, overflow, rescan request) or roots (new containers).
    scope: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StorageLabels {
    storage: &'static str,
}

/// Counters and gauges of the collector. Clones share the values.
#[derive(Clone, Default)]
pub struct Metrics {
    published: Family<ChangeLabels, Counter>,
    ignored: Family<ReasonLabels, Counter>,
    overflows: Counter,
    publish_retries: Counter,
    malformed: Counter,
    mark_failures: Counter,
    watched_directories: Gauge,
    containers: Family<StorageLabels, Gauge>,
    containers_started: Counter,
    containers_stopped: Counter,
    inventories: Family<ScopeLabels, Counter>,
}

fn storage(degraded: bool) -> StorageLabels {
    StorageLabels { storage: if degraded { "degraded" } else { "overlay" } }
}

impl Metrics {
    /// Registers every metric of the collector.
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self::default();
        let m = &metrics;
        registry.register(
            "fim_collector_events_published",
            "Raw events published, by change kind",
            m.published.clone(),
        );
        registry.register(
            "fim_collector_events_ignored",
            "Kernel events not reported, by reason",
            m.ignored.clone(),
        );
        registry.register(
            "fim_collector_queue_overflows",
            "fanotify queue overflows; each one triggers a rescan",
            m.overflows.clone(),
        );
        registry.register(
            "fim_collector_publish_retries",
            "Publish attempts that failed and were retried",
            m.publish_retries.clone(),
        );
        registry.register(
            "fim_collector_malformed_events",
            "Kernel event records the collector could not parse",
            m.malformed.clone(),
        );
        registry.register(
            "fim_collector_mark_failures",
            "Directories that could not be watched; changes inside them are missed",
            m.mark_failures.clone(),
        );
        registry.register(
            "fim_collector_watched_directories",
            "Directories currently carrying a fanotify mark",
            m.watched_directories.clone(),
        );
        registry.register(
            "fim_collector_containers",
            "Containers watched now, by root storage: overlay, or degraded (no overlay layers)",
            m.containers.clone(),
        );
        registry.register(
            "fim_collector_containers_started",
            "Containers discovered since start",
            m.containers_started.clone(),
        );
        registry.register(
            "fim_collector_containers_stopped",
            "Containers whose watch was released after their last process exited",
            m.containers_stopped.clone(),
        );
        registry.register(
            "fim_collector_inventories",
            "Inventories (rescans) published: all watches, or new roots only",
            m.inventories.clone(),
        );
        metrics
    }

    pub(crate) fn inventory(&self, all: bool) {
        let scope = if all { "all" } else { "roots" };
        self.inventories.get_or_create(&ScopeLabels { scope }).inc();
    }

    pub(crate) fn container_started(&self, degraded: bool) {
        self.containers_started.inc();
        self.containers.get_or_create(&storage(degraded)).inc();
    }

    pub(crate) fn container_stopped(&self, degraded: bool) {
        self.containers_stopped.inc();
        self.containers.get_or_create(&storage(degraded)).dec();
    }

    pub(crate) fn published(&self, change: ChangeKind) {
        self.published.get_or_create(&ChangeLabels { change: change.as_str() }).inc();
    }

    pub(crate) fn ignored(&self, reason: IgnoreReason) {
        self.ignored.get_or_create(&ReasonLabels { reason: reason.as_str() }).inc();
    }

    pub(crate) fn overflow(&self) {
        self.overflows.inc();
    }

    pub(crate) fn publish_retry(&self) {
        self.publish_retries.inc();
    }

    pub(crate) fn malformed(&self) {
        self.malformed.inc();
    }

    pub(crate) fn mark_failure(&self) {
        self.mark_failures.inc();
    }

    pub(crate) fn set_watched_directories(&self, count: usize) {
        self.watched_directories.set(i64::try_from(count).unwrap_or(i64::MAX));
    }
}
