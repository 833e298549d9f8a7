//! Subject names, in one place.
//!
//! ```text
//! fim.events.<node>                       raw events of one node (hasher queue per node)
//! fim.observations.<partition>            hashed events, partitioned for evaluators
//! fim.alerts.<severity>.<namespace>       alerts; namespace is the Kubernetes namespace,
//!                                         `_host` for node paths, `_none` for plain containers
//! fim.control.rescan.<node>               rescan requests for one node's collector
//! fim.control.baseline                    baseline approvals, applied by every evaluator
//! fim.reports.<partition>.<container>     comparison reports; `_host_<node>` for node paths
//! fim.dlq.<stage>                         messages a stage could not decode
//! ```
//!
//! Every variable part goes through [`token`], because a NATS token cannot
//! hold `.`, `*`, `>` or whitespace.

use crate::Severity;

/// Prefix of all raw-event subjects.
pub const EVENTS: &str = "fim.events";
/// Prefix of all observation subjects.
pub const OBSERVATIONS: &str = "fim.observations";
/// Prefix of all alert subjects.
pub const ALERTS: &str = "fim.alerts";
/// Prefix of all rescan-request subjects.
pub const RESCAN: &str = "fim.control.rescan";
/// Baseline approvals; every evaluator replica applies each one.
pub const BASELINE_APPROVALS: &str = "fim.control.baseline";
/// Prefix of all comparison-report subjects.
pub const REPORTS: &str = "fim.reports";
/// Prefix of all dead-letter subjects.
pub const DEAD_LETTERS: &str = "fim.dlq";

/// Namespace token of alerts about paths on the node itself.
pub const HOST_NAMESPACE: &str = "_host";
/// Namespace token of alerts about containers outside Kubernetes.
pub const NO_NAMESPACE: &str = "_none";

/// Makes any string usable as one subject token: `.`, `*`, `>`, whitespace
/// and control characters become `_`, and an empty string becomes `_`.
pub fn token(value: &str) -> String {
    if value.is_empty() {
        return "_".into();
    }
    value
        .chars()
        .map(|c| match c {
            '.' | '*' | '>' => '_',
            c if c.is_whitespace() || c.is_control() => '_',
            c => c,
        })
        .collect()
}

/// Raw events of one node.
pub fn events(node: &str) -> String {
    format!("{EVENTS}.{}", token(node))
}

/// Observations of one evaluator partition.
pub fn observations(partition: u32) -> String {
    format!("{OBSERVATIONS}.{partition}")
}

/// The evaluator partition that owns a key (a container id, or the node and
/// watch root for host paths). FNV-1a, so every process and every release
/// agrees on the owner of a key.
pub fn partition(key: &[u8], partitions: u32) -> u32 {
    let hash = key.iter().fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    (hash % u64::from(partitions.max(1))) as u32
}

/// Alerts of one severity about one namespace token (see [`HOST_NAMESPACE`]
/// and [`NO_NAMESPACE`]).
pub fn alerts(severity: Severity, namespace: &str) -> String {
    format!("{ALERTS}.{}.{}", severity.as_str(), token(namespace))
}

/// Rescan requests for one node.
pub fn rescan(node: &str) -> String {
    format!("{RESCAN}.{}", token(node))
}

/// Comparison reports of one container (or `_host_<node>`), under the
/// partition that owns it.
pub fn reports(partition: u32, source: &str) -> String {
    format!("{REPORTS}.{partition}.{}", token(source))
}

/// Dead letters of one stage.
pub fn dead_letters(stage: &str) -> String {
    format!("{DEAD_LETTERS}.{}", token(stage))
}

/// Whether `subject` matches the NATS pattern `filter` (`*` one token, `>`
/// the rest).
pub fn matches(filter: &str, subject: &str) -> bool {
    let mut subject_tokens = subject.split('.');
    for pattern in filter.split('.') {
        match (pattern, subject_tokens.next()) {
            (">", Some(_)) => return true,
            ("*", Some(_)) => {}
            (p, Some(s)) if p == s => {}
            _ => return false,
        }
    }
    subject_tokens.next().is_none()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_never_contain_subject_syntax() {
        assert_eq!(token("web.prod *x> y\tz"), "web_prod__x__y_z");
        assert_eq!(token(""), "_");
        assert_eq!(events("node.example.com"), "fim.events.node_example_com");
    }

    #[test]
    fn alert_subjects_filter_by_severity_and_namespace() {
        let subject = alerts(Severity::Critical, "payments");
        assert_eq!(subject, "fim.alerts.critical.payments");
        assert!(matches("fim.alerts.critical.>", &subject));
        assert!(matches("fim.alerts.*.payments", &subject));
        assert!(!matches("fim.alerts.high.>", &subject));
    }

    #[test]
    fn partitions_are_stable_and_in_range() {
        assert_eq!(partition(b"abc", 1), 0);
        assert_eq!(partition(b"abc", 8), partition(b"abc", 8));
        assert!((0..1000).all(|i| partition(format!("c{i}").as_bytes(), 4) < 4));
        // Pinned: changing the hash would move every key to another replica.
        assert_eq!(partition(b"container-1", 16), 10);
    }

    #[test]
    fn report_subjects_sit_under_their_partition() {
        assert_eq!(reports(3, "container:a.b"), "fim.reports.3.container:a_b");
        assert!(matches("fim.reports.3.>", &reports(3, "x")));
    }

    #[test]
    fn wildcards_follow_nats_rules() {
        assert!(matches("a.*.c", "a.b.c"));
        assert!(!matches("a.*", "a.b.c"));
        assert!(!matches("a.>", "a"));
        assert!(matches("a.>", "a.b.c"));
        assert!(!matches("a.b", "a.b.c"));
    }
}
