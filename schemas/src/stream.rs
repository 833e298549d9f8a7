//! JetStream stream definitions. Both transports create exactly these.
//!
//! Retention is by age: a stage that is down for less than `max_age` catches
//! up from where its durable consumer stopped. The duplicate window bounds
//! how long a republished message id is recognised.

use std::time::Duration;

use crate::subject;

/// One stream: its name and the subjects it captures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamSpec {
    /// Stream name.
    pub name: &'static str,
    /// Subject filter the stream captures.
    pub subject: &'static str,
    /// How long a message is kept.
    pub max_age: Duration,
    /// Window in which a repeated `Nats-Msg-Id` is dropped.
    pub duplicate_window: Duration,
}

const DAY: Duration = Duration::from_secs(24 * 60 * 60);
// Two minutes is JetStream's default and covers any retry of a publish.
const DUPLICATE_WINDOW: Duration = Duration::from_secs(120);

/// Raw events, `fim.events.>`.
pub const EVENTS: StreamSpec = StreamSpec {
    name: "FIM_EVENTS",
    subject: "fim.events.>",
    max_age: DAY,
    duplicate_window: DUPLICATE_WINDOW,
};

/// Observations, `fim.observations.>`.
pub const OBSERVATIONS: StreamSpec = StreamSpec {
    name: "FIM_OBSERVATIONS",
    subject: "fim.observations.>",
    max_age: DAY,
    duplicate_window: DUPLICATE_WINDOW,
};

/// Alerts, `fim.alerts.>`; kept a week so a sink that was down for days
/// still receives every alert.
pub const ALERTS: StreamSpec = StreamSpec {
    name: "FIM_ALERTS",
    subject: "fim.alerts.>",
    max_age: Duration::from_secs(7 * 24 * 60 * 60),
    duplicate_window: DUPLICATE_WINDOW,
};

/// Control messages, `fim.control.>`.
pub const CONTROL: StreamSpec = StreamSpec {
    name: "FIM_CONTROL",
    subject: "fim.control.>",
    max_age: DAY,
    duplicate_window: DUPLICATE_WINDOW,
};

/// Comparison reports, `fim.reports.>`; kept five weeks, so the last
/// weekly comparisons of every container can always be read back.
pub const REPORTS: StreamSpec = StreamSpec {
    name: "FIM_REPORTS",
    subject: "fim.reports.>",
    max_age: Duration::from_secs(35 * 24 * 60 * 60),
    duplicate_window: DUPLICATE_WINDOW,
};

/// Dead letters, `fim.dlq.>`; kept a week for an operator to inspect.
pub const DEAD_LETTERS: StreamSpec = StreamSpec {
    name: "FIM_DLQ",
    subject: "fim.dlq.>",
    max_age: Duration::from_secs(7 * 24 * 60 * 60),
    duplicate_window: DUPLICATE_WINDOW,
};

/// Every stream, in creation order.
pub const ALL: [StreamSpec; 6] = [EVENTS, OBSERVATIONS, ALERTS, CONTROL, REPORTS, DEAD_LETTERS];

/// The stream that captures `subject`, if any.
pub fn for_subject(subject_name: &str) -> Option<&'static StreamSpec> {
    ALL.iter().find(|spec| subject::matches(spec.subject, subject_name))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Severity;

    #[test]
    fn every_subject_builder_lands_in_exactly_one_stream() {
        let subjects = [
            subject::events("n"),
            subject::observations(3),
            subject::alerts(Severity::High, "ns"),
            subject::rescan("n"),
            subject::dead_letters("hasher"),
            subject::BASELINE_APPROVALS.to_owned(),
            subject::reports(2, "abc"),
        ];
        for s in subjects {
            let count = ALL.iter().filter(|spec| subject::matches(spec.subject, &s)).count();
            assert_eq!(count, 1, "{s}");
        }
    }
}
