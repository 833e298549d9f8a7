//! Alert storms: a flood of changes in one container becomes one aggregated
//! alert per window, with counts and a bounded list of paths.
//!
//! The first `threshold` alerts of a source in a window go out one by one;
//! later ones are folded into an [`Aggregate`] kept in the store (written in
//! the same batch as the baseline, before the observation is acknowledged),
//! and the aggregate is published once its window has closed. A crash
//! between folding and publishing loses nothing: the aggregate is read back
//! from the store. Window counters live in memory and restart empty.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use schemas::{Alert, ChangeKind, ContainerInfo, RawPath, SCHEMA_VERSION, Severity};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// Limits of storm aggregation.
#[derive(Debug, Clone, Copy)]
pub struct StormLimits {
    /// Length of a window.
    pub window: Duration,
    /// Alerts per source and window published one by one.
    pub threshold: u32,
    /// Paths listed in an aggregated alert.
    pub max_paths: usize,
}

impl Default for StormLimits {
    // Twenty alerts in ten seconds is more than a person reads one by one
    // and fewer than any deployment or package install produces.
    fn default() -> Self {
        Self { window: Duration::from_secs(10), threshold: 20, max_paths: 20 }
    }
}

/// Alerts folded together for one source.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Aggregate {
    /// Source key (`container:<id>` or `host:<node>`).
    pub source: String,
    /// Node of the source.
    pub node: String,
    /// The container, for containers.
    pub container: Option<ContainerInfo>,
    /// First folded change.
    #[serde(with = "time::serde::rfc3339")]
    pub first: OffsetDateTime,
    /// Unix time (ns) after which the aggregate is published.
    pub due_ns: i128,
    /// Folded alerts.
    pub count: u64,
    /// Highest severity folded.
    pub severity: Severity,
    /// Rules that matched, with counts.
    pub rules: std::collections::BTreeMap<String, u64>,
    /// The first paths folded.
    pub paths: Vec<RawPath>,
    /// Controls of the folded alerts.
    pub controls: Vec<String>,
}

impl Aggregate {
    /// Folds one alert in.
    pub fn fold(&mut self, alert: &Alert, max_paths: usize) {
        self.count += 1;
        self.severity = self.severity.max(alert.severity);
        *self.rules.entry(alert.rule.clone()).or_insert(0) += 1;
        if self.paths.len() < max_paths && !self.paths.contains(&alert.path) {
            self.paths.push(alert.path.clone());
        }
        for control in &alert.controls {
            if !self.controls.contains(control) {
                self.controls.push(control.clone());
            }
        }
    }

    /// A new aggregate starting with `alert`, due after `window`.
    pub fn start(source: String, alert: &Alert, window: Duration, max_paths: usize) -> Self {
        let due_ns = OffsetDateTime::now_utc().unix_timestamp_nanos() + window.as_nanos() as i128;
        let mut aggregate = Self {
            source,
            node: alert.node.clone(),
            container: alert.container.clone(),
            first: alert.time,
            due_ns,
            count: 0,
            severity: alert.severity,
            rules: Default::default(),
            paths: Vec::new(),
            controls: Vec::new(),
        };
        aggregate.fold(alert, max_paths);
        aggregate
    }

    /// The alert that reports the aggregate.
    pub fn alert(&self) -> Alert {
        let rules: Vec<String> = self.rules.iter().map(|(r, n)| format!("{r} ({n})")).collect();
        let listed: Vec<String> = self.paths.iter().map(RawPath::escaped).collect();
        let more = self.count.saturating_sub(self.paths.len() as u64);
        let mut findings = vec![
            format!("{} further changes aggregated in one storm", self.count),
            format!("rules: {}", rules.join(", ")),
            format!("paths: {}", listed.join(", ")),
        ];
        if more > 0 {
            findings.push(format!("and {more} more changes not listed"));
        }
        Alert {
            schema_version: SCHEMA_VERSION,
            id: format!("storm:{}:{}", self.source, self.first.unix_timestamp_nanos()),
            time: self.first,
            severity: self.severity,
            rule: STORM_RULE.into(),
            change: ChangeKind::Modified,
            path: self.paths.first().cloned().unwrap_or_else(|| RawPath::from("/")),
            previous_path: None,
            node: self.node.clone(),
            container: self.container.clone(),
            before: None,
            after: None,
            process: None,
            controls: self.controls.clone(),
            diff: None,
            findings,
        }
    }
}

/// Rule id of aggregated alerts.
pub const STORM_RULE: &str = "change-storm";

/// Per-source alert counts in the current window.
#[derive(Debug, Default)]
pub struct StormGuard {
    windows: HashMap<String, (Instant, u32)>,
}

impl StormGuard {
    // Limitation: counts live in memory, so a restart in the middle of a
    // storm lets the next `threshold` alerts through one by one again.
    /// Counts one alert of `source`; `true` when it should be folded into
    /// an aggregate rather than published on its own.
    pub fn over_threshold(&mut self, source: &str, limits: &StormLimits, now: Instant) -> bool {
        // Forget closed windows now and then, so the map stays small.
        if self.windows.len() > 4096 {
            self.windows.retain(|_, (start, _)| now.duration_since(*start) < limits.window);
        }
        let entry = self.windows.entry(source.to_owned()).or_insert((now, 0));
        if now.duration_since(entry.0) >= limits.window {
            *entry = (now, 0);
        }
        entry.1 += 1;
        entry.1 > limits.threshold
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alert(path: &str, severity: Severity) -> Alert {
        Alert {
            schema_version: SCHEMA_VERSION,
            id: "a".into(),
            time: OffsetDateTime::UNIX_EPOCH,
            severity,
            rule: "r".into(),
            change: ChangeKind::Created,
            path: RawPath::from(path),
            previous_path: None,
            node: "n".into(),
            container: None,
            before: None,
            after: None,
            process: None,
            controls: vec!["PCI-DSS-4.0:11.5.2".into()],
            diff: None,
            findings: Vec::new(),
        }
    }

    #[test]
    fn alerts_past_the_threshold_in_one_window_are_folded() {
        let limits = StormLimits { window: Duration::from_secs(10), threshold: 3, max_paths: 2 };
        let mut guard = StormGuard::default();
        let start = Instant::now();
        let folded: Vec<bool> = (0..5).map(|_| guard.over_threshold("c", &limits, start)).collect();
        assert_eq!(folded, [false, false, false, true, true]);
        assert!(!guard.over_threshold("other", &limits, start));
        let later = start + Duration::from_secs(11);
        assert!(!guard.over_threshold("c", &limits, later), "a new window starts afresh");
    }

    #[test]
    fn an_aggregate_counts_everything_but_lists_a_bounded_number_of_paths() {
        let first = alert("/app/0", Severity::Medium);
        let mut aggregate = Aggregate::start("container:c".into(), &first, Duration::ZERO, 3);
        for i in 1..1000 {
            let severity = if i == 500 { Severity::Critical } else { Severity::Medium };
            aggregate.fold(&alert(&format!("/app/{i}"), severity), 3);
        }
        let alert = aggregate.alert();
        assert_eq!(alert.rule, STORM_RULE);
        assert_eq!(alert.severity, Severity::Critical);
        assert_eq!(alert.findings[0], "1000 further changes aggregated in one storm");
        assert_eq!(alert.findings[2], "paths: /app/0, /app/1, /app/2");
        assert_eq!(alert.findings[3], "and 997 more changes not listed");
    }
}
