//! Evaluator configuration, validated once at start-up.

use std::path::PathBuf;
use std::time::Duration;

use bus::ConsumerSpec;
use schemas::{stream, subject};

use crate::Error;
use crate::storm::StormLimits;

/// Default interval of scheduled full comparisons: PCI DSS 11.5.2 asks for
/// critical file comparisons at least weekly.
pub const DEFAULT_COMPARISON_INTERVAL: Duration = Duration::from_secs(7 * 24 * 60 * 60);
/// Default retention of a container's baselines after it was last seen:
/// two comparison periods, so a quiet container refreshed by the weekly
/// rescan is never pruned.
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(14 * 24 * 60 * 60);

/// How the evaluator runs.
#[derive(Debug, Clone)]
pub struct Config {
    /// Directory for the baseline database (`baselines.sled` inside it).
    pub data_dir: PathBuf,
    /// Directory of rule files (`*.yaml`, `*.yml`); `None`: defaults only.
    pub rules_dir: Option<PathBuf>,
    /// How often the rule directory is checked for changes.
    pub rules_reload: Duration,
    /// Number of observation partitions (must equal the hashers').
    pub partitions: u32,
    /// Partitions this replica owns; `None`: all, through one shared
    /// durable consumer (single-replica deployments and `fim all`).
    pub partition_ids: Option<Vec<u32>>,
    /// Interval of scheduled full comparisons.
    pub comparison_interval: Duration,
    /// How long after a container was last seen its baselines are kept.
    pub retention: Duration,
    /// Storm aggregation limits.
    pub storms: StormLimits,
    /// Wait between a rescan request and the comparison it triggers.
    pub rescan_settle: Duration,
}

impl Config {
    /// Defaults for everything but the data directory.
    pub fn new(data_dir: PathBuf) -> Self {
        Self {
            data_dir,
            rules_dir: None,
            rules_reload: crate::rules::reload::DEFAULT_INTERVAL,
            partitions: 1,
            partition_ids: None,
            comparison_interval: DEFAULT_COMPARISON_INTERVAL,
            retention: DEFAULT_RETENTION,
            storms: StormLimits::default(),
            rescan_settle: crate::control::RESCAN_SETTLE,
        }
    }

    /// Checks every field, naming the first bad one.
    pub fn validate(&self) -> Result<(), Error> {
        let invalid = |field, reason: &str| Err(Error::Config { field, reason: reason.into() });
        if self.data_dir.as_os_str().is_empty() {
            return invalid("data_dir", "must not be empty");
        }
        if self.partitions == 0 {
            return invalid("partitions", "must be at least 1");
        }
        if let Some(ids) = &self.partition_ids {
            if ids.is_empty() {
                return invalid("partition_ids", "must name at least one partition");
            }
            if let Some(bad) = ids.iter().find(|id| **id >= self.partitions) {
                let reason = format!("{bad} is not below --partitions {}", self.partitions);
                return Err(Error::Config { field: "partition_ids", reason });
            }
        }
        if self.comparison_interval.is_zero() || self.rules_reload.is_zero() {
            return invalid("comparison_interval", "intervals must be positive");
        }
        Ok(())
    }

    /// A name for this replica's own consumers: its partitions, or `all`.
    pub(crate) fn replica(&self) -> String {
        match &self.partition_ids {
            None => "all".into(),
            Some(ids) => ids.iter().map(u32::to_string).collect::<Vec<_>>().join("-"),
        }
    }

    // Limitation: baselines stay in the database of the replica that wrote
    // them; a replica that takes over a partition relearns its sources.
    /// One consumer per owned partition, each with its own durable name so
    /// a partition's position survives the replica that owned it.
    pub(crate) fn observation_consumers(&self) -> Vec<ConsumerSpec> {
        match &self.partition_ids {
            None => vec![ConsumerSpec::new(
                stream::OBSERVATIONS,
                "evaluator",
                format!("{}.>", subject::OBSERVATIONS),
            )],
            Some(ids) => ids
                .iter()
                .map(|id| {
                    let durable = format!("evaluator-p{id}");
                    ConsumerSpec::new(stream::OBSERVATIONS, durable, subject::observations(*id))
                })
                .collect(),
        }
    }

    /// This replica's consumer of baseline approvals: every replica applies
    /// every approval to its own database.
    pub(crate) fn approval_consumer(&self) -> ConsumerSpec {
        let durable = format!("evaluator-approvals-{}", self.replica());
        ConsumerSpec::new(stream::CONTROL, durable, subject::BASELINE_APPROVALS)
    }

    /// This replica's consumer of rescan requests, which trigger comparisons.
    pub(crate) fn rescan_consumer(&self) -> ConsumerSpec {
        let durable = format!("evaluator-rescans-{}", self.replica());
        ConsumerSpec::new(stream::CONTROL, durable, format!("{}.>", subject::RESCAN))
    }
}
