//! Hasher metrics, `fim_hasher_*`.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct OutcomeLabels {
    /// hashed, cached (digest reused), partial (cap reached), unstable
    /// (kept changing), metadata (not a regular file), gone, failed.
    pub outcome: &'static str,
}

/// Counters and histograms of the hasher.
#[derive(Clone)]
pub struct Metrics {
    pub(crate) files: Family<OutcomeLabels, Counter>,
    pub(crate) bytes: Counter,
    pub(crate) seconds: Histogram,
}

impl Metrics {
    /// Registers the hasher's metrics.
    pub fn register(registry: &mut Registry) -> Self {
        let buckets = [0.0001, 0.001, 0.01, 0.1, 1.0, 10.0];
        let metrics = Self {
            files: Family::default(),
            bytes: Counter::default(),
            seconds: Histogram::new(buckets),
        };
        let registry = registry.sub_registry_with_prefix("fim_hasher");
        registry.register("files", "Files inspected, by outcome", metrics.files.clone());
        registry.register("bytes", "Bytes of content read to hash", metrics.bytes.clone());
        registry.register("inspect_seconds", "Time to inspect one file", metrics.seconds.clone());
        metrics
    }

    pub(crate) fn file(&self, outcome: &'static str) {
        self.files.get_or_create(&OutcomeLabels { outcome }).inc();
    }
}
