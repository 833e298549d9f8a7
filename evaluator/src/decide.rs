//! The comparison of an observation with a baseline, as a pure function.

use schemas::{ChangeKind, FileState, Observation};

use crate::Baseline;

/// What to do with one observation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// First sighting during an inventory: record it silently.
    SetBaseline,
    /// Matches the baseline: nothing to do.
    Unchanged,
    /// Older than the event the baseline already reflects (a late
    /// redelivery): ignore it.
    Stale,
    /// Differs: raise an alert, then make the new state the baseline.
    Alert {
        /// What happened, judged from the states rather than the event name.
        change: ChangeKind,
        /// The state the alert says it changed from.
        before: Option<FileState>,
    },
}

/// Compares `observation` with the baseline of its path and, for a rename,
/// with the baseline of the old path.
pub fn decide(
    baseline: Option<&Baseline>,
    previous: Option<&Baseline>,
    observation: &Observation,
) -> Decision {
    let event = &observation.event;
    if baseline.is_some_and(|b| event.time.unix_timestamp_nanos() < b.event_time_ns) {
        return Decision::Stale;
    }
    if event.change == ChangeKind::Renamed && event.previous_path.is_some() {
        let before = previous.and_then(|b| b.state.clone());
        return Decision::Alert { change: ChangeKind::Renamed, before };
    }

    let known = baseline.and_then(|b| b.state.as_ref());
    match (known, &observation.state) {
        (None, None) => Decision::Unchanged,
        (None, Some(_)) if baseline.is_none() && event.change == ChangeKind::Inventory => {
            Decision::SetBaseline
        }
        (None, Some(_)) => Decision::Alert { change: ChangeKind::Created, before: None },
        (Some(before), None) => {
            Decision::Alert { change: ChangeKind::Deleted, before: Some(before.clone()) }
        }
        (Some(before), Some(now)) if !before.differs_from(now) => Decision::Unchanged,
        (Some(before), Some(now)) => {
            let change = if before.same_content(now) {
                ChangeKind::Attributes
            } else {
                ChangeKind::Modified
            };
            Decision::Alert { change, before: Some(before.clone()) }
        }
    }
}

#[cfg(test)]
mod tests {
    use schemas::{FileKind, RawEvent, RawPath, SCHEMA_VERSION, Source};
    use time::OffsetDateTime;

    use super::*;

    fn state(content: &str, mode: u32) -> FileState {
        FileState {
            kind: FileKind::File,
            blake3: Some(blake3::hash(content.as_bytes()).to_hex().to_string()),
            size: content.len() as u64,
            mode,
            uid: 0,
            gid: 0,
            mtime_ns: 0,
            link_target: None,
            partial: false,
            unstable: false,
        }
    }

    fn observation(change: ChangeKind, state: Option<FileState>, at: i64) -> Observation {
        Observation {
            schema_version: SCHEMA_VERSION,
            id: "o".into(),
            event: RawEvent {
                schema_version: SCHEMA_VERSION,
                id: "e".into(),
                node: "n".into(),
                time: OffsetDateTime::from_unix_timestamp(at).unwrap(),
                source: Source::Host { root: "/etc".into() },
                path: RawPath::from("/etc/passwd"),
                host_path: RawPath::from("/etc/passwd"),
                previous_path: None,
                change,
                is_dir: false,
                process: None,
                container_root: None,
            },
            state,
            image: None,
            content: None,
        }
    }

    fn baseline(state: Option<FileState>, at: i64) -> Baseline {
        Baseline { state, event_time_ns: i128::from(at) * 1_000_000_000 }
    }

    #[test]
    fn inventory_of_an_unknown_path_sets_the_baseline_silently() {
        let obs = observation(ChangeKind::Inventory, Some(state("a", 0o644)), 10);
        assert_eq!(decide(None, None, &obs), Decision::SetBaseline);
    }

    #[test]
    fn a_path_created_after_the_inventory_alerts() {
        let obs = observation(ChangeKind::Created, Some(state("a", 0o644)), 10);
        assert_eq!(
            decide(None, None, &obs),
            Decision::Alert { change: ChangeKind::Created, before: None }
        );
    }

    #[test]
    fn a_content_change_alerts_with_the_baseline_as_before() {
        let old = baseline(Some(state("root", 0o644)), 5);
        let obs = observation(ChangeKind::Modified, Some(state("root\nevil", 0o644)), 10);
        let expected = Decision::Alert { change: ChangeKind::Modified, before: old.state.clone() };
        assert_eq!(decide(Some(&old), None, &obs), expected);
    }

    #[test]
    fn a_change_made_while_fim_was_down_alerts_at_the_next_inventory() {
        let old = baseline(Some(state("root", 0o644)), 5);
        let obs = observation(ChangeKind::Inventory, Some(state("evil", 0o644)), 10);
        assert!(matches!(
            decide(Some(&old), None, &obs),
            Decision::Alert { change: ChangeKind::Modified, .. }
        ));
    }

    #[test]
    fn a_mode_change_alone_is_an_attributes_alert() {
        let old = baseline(Some(state("bin", 0o755)), 5);
        let obs = observation(ChangeKind::Attributes, Some(state("bin", 0o4755)), 10);
        assert!(matches!(
            decide(Some(&old), None, &obs),
            Decision::Alert { change: ChangeKind::Attributes, .. }
        ));
    }

    #[test]
    fn the_same_state_again_is_not_a_second_alert() {
        let old = baseline(Some(state("a", 0o644)), 5);
        let obs = observation(ChangeKind::Modified, Some(state("a", 0o644)), 10);
        assert_eq!(decide(Some(&old), None, &obs), Decision::Unchanged);
    }

    #[test]
    fn deletion_of_a_known_path_alerts_and_unknown_does_not() {
        let old = baseline(Some(state("a", 0o644)), 5);
        let obs = observation(ChangeKind::Deleted, None, 10);
        assert!(matches!(
            decide(Some(&old), None, &obs),
            Decision::Alert { change: ChangeKind::Deleted, .. }
        ));
        assert_eq!(decide(None, None, &obs), Decision::Unchanged);
    }

    #[test]
    fn a_path_recreated_after_deletion_alerts_even_at_inventory() {
        let tombstone = baseline(None, 5);
        let obs = observation(ChangeKind::Inventory, Some(state("a", 0o644)), 10);
        assert!(matches!(
            decide(Some(&tombstone), None, &obs),
            Decision::Alert { change: ChangeKind::Created, .. }
        ));
    }

    #[test]
    fn late_redeliveries_of_older_events_are_stale() {
        let newer = baseline(Some(state("b", 0o644)), 20);
        let obs = observation(ChangeKind::Modified, Some(state("a", 0o644)), 10);
        assert_eq!(decide(Some(&newer), None, &obs), Decision::Stale);
    }

    #[test]
    fn renames_alert_with_the_old_paths_state() {
        let old = baseline(Some(state("a", 0o644)), 5);
        let mut obs = observation(ChangeKind::Renamed, Some(state("a", 0o644)), 10);
        obs.event.previous_path = Some(RawPath::from("/etc/passwd-"));
        let expected = Decision::Alert { change: ChangeKind::Renamed, before: old.state.clone() };
        assert_eq!(decide(None, Some(&old), &obs), expected);
    }
}
