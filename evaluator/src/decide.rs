//! The comparison of an observation with its baselines, as a pure function.
//!
//! Two baselines meet here: the last seen state of the path (so one change
//! alerts once) and, when known, the authorized state (the image's version
//! for container files, an operator's approval, a learned or accepted
//! state). A state equal to the authorized one is never an alert; a state
//! that differs alerts once, when it first appears.

use schemas::{ChangeKind, FileState, Observation};

use crate::store::{Authorized, Baseline, states_differ};

/// What to do with one observation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// First sighting during an inventory: record it silently.
    SetBaseline,
    /// Matches what is already recorded: nothing to do.
    Unchanged,
    /// Matches the authorized state while the record says otherwise (a
    /// file put back, or first seen equal to its image): record silently.
    Authorized,
    /// Older than the event the baseline already reflects (a late
    /// redelivery): ignore it.
    Stale,
    /// Differs: raise an alert, then make the new state the last seen one.
    Alert {
        /// What happened, judged from the states rather than the event name.
        change: ChangeKind,
        /// The state the alert says it changed from.
        before: Option<FileState>,
    },
}

/// Compares `observation` with the baseline of its path, the baseline of
/// the old path for a rename, and the authorized state when one applies.
pub fn decide(
    baseline: Option<&Baseline>,
    previous: Option<&Baseline>,
    observation: &Observation,
    reference: Option<&Authorized>,
) -> Decision {
    let event = &observation.event;
    if baseline.is_some_and(|b| event.time.unix_timestamp_nanos() < b.event_time_ns) {
        return Decision::Stale;
    }
    if event.change == ChangeKind::Renamed && event.previous_path.is_some() {
        let before = previous.and_then(|b| b.state.clone());
        return Decision::Alert { change: ChangeKind::Renamed, before };
    }
    match reference {
        Some(reference) => against_reference(baseline, observation.state.as_ref(), reference),
        None => against_last_seen(baseline, observation),
    }
}

fn against_reference(
    baseline: Option<&Baseline>,
    now: Option<&FileState>,
    reference: &Authorized,
) -> Decision {
    let last = baseline.map(|b| b.state.as_ref());
    if !states_differ(reference.state.as_ref(), now) {
        let recorded = baseline.is_some_and(|b| b.authorized.is_some());
        return match last {
            Some(last) if recorded && !states_differ(last, now) => Decision::Unchanged,
            _ => Decision::Authorized,
        };
    }
    match last {
        Some(last) if !states_differ(last, now) => Decision::Unchanged,
        Some(last) => alert(last, now),
        None => alert(reference.state.as_ref(), now),
    }
}

fn against_last_seen(baseline: Option<&Baseline>, observation: &Observation) -> Decision {
    let event = &observation.event;
    let known = baseline.and_then(|b| b.state.as_ref());
    match (known, &observation.state) {
        (None, None) => Decision::Unchanged,
        (None, Some(_)) if baseline.is_none() && event.change == ChangeKind::Inventory => {
            Decision::SetBaseline
        }
        (Some(before), Some(now)) if !before.differs_from(now) => Decision::Unchanged,
        (before, now) => alert(before, now.as_ref()),
    }
}

fn alert(before: Option<&FileState>, now: Option<&FileState>) -> Decision {
    let change = match (before, now) {
        (None, _) => ChangeKind::Created,
        (Some(_), None) => ChangeKind::Deleted,
        (Some(before), Some(now)) if before.same_content(now) => ChangeKind::Attributes,
        (Some(_), Some(_)) => ChangeKind::Modified,
    };
    Decision::Alert { change, before: before.cloned() }
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
        Baseline {
            state,
            event_time_ns: i128::from(at) * 1_000_000_000,
            authorized: None,
            alerted: Vec::new(),
        }
    }

    #[test]
    fn inventory_of_an_unknown_path_sets_the_baseline_silently() {
        let obs = observation(ChangeKind::Inventory, Some(state("a", 0o644)), 10);
        assert_eq!(decide(None, None, &obs, None), Decision::SetBaseline);
    }

    #[test]
    fn a_path_created_after_the_inventory_alerts() {
        let obs = observation(ChangeKind::Created, Some(state("a", 0o644)), 10);
        assert_eq!(
            decide(None, None, &obs, None),
            Decision::Alert { change: ChangeKind::Created, before: None }
        );
    }

    #[test]
    fn a_content_change_alerts_with_the_baseline_as_before() {
        let old = baseline(Some(state("root", 0o644)), 5);
        let obs = observation(ChangeKind::Modified, Some(state("root\nevil", 0o644)), 10);
        let expected = Decision::Alert { change: ChangeKind::Modified, before: old.state.clone() };
        assert_eq!(decide(Some(&old), None, &obs, None), expected);
    }

    #[test]
    fn a_change_made_while_fim_was_down_alerts_at_the_next_inventory() {
        let old = baseline(Some(state("root", 0o644)), 5);
        let obs = observation(ChangeKind::Inventory, Some(state("evil", 0o644)), 10);
        assert!(matches!(
            decide(Some(&old), None, &obs, None),
            Decision::Alert { change: ChangeKind::Modified, .. }
        ));
    }

    #[test]
    fn a_mode_change_alone_is_an_attributes_alert() {
        let old = baseline(Some(state("bin", 0o755)), 5);
        let obs = observation(ChangeKind::Attributes, Some(state("bin", 0o4755)), 10);
        assert!(matches!(
            decide(Some(&old), None, &obs, None),
            Decision::Alert { change: ChangeKind::Attributes, .. }
        ));
    }

    #[test]
    fn the_same_state_again_is_not_a_second_alert() {
        let old = baseline(Some(state("a", 0o644)), 5);
        let obs = observation(ChangeKind::Modified, Some(state("a", 0o644)), 10);
        assert_eq!(decide(Some(&old), None, &obs, None), Decision::Unchanged);
    }

    #[test]
    fn deletion_of_a_known_path_alerts_and_unknown_does_not() {
        let old = baseline(Some(state("a", 0o644)), 5);
        let obs = observation(ChangeKind::Deleted, None, 10);
        assert!(matches!(
            decide(Some(&old), None, &obs, None),
            Decision::Alert { change: ChangeKind::Deleted, .. }
        ));
        assert_eq!(decide(None, None, &obs, None), Decision::Unchanged);
    }

    #[test]
    fn a_path_recreated_after_deletion_alerts_even_at_inventory() {
        let tombstone = baseline(None, 5);
        let obs = observation(ChangeKind::Inventory, Some(state("a", 0o644)), 10);
        assert!(matches!(
            decide(Some(&tombstone), None, &obs, None),
            Decision::Alert { change: ChangeKind::Created, .. }
        ));
    }

    #[test]
    fn late_redeliveries_of_older_events_are_stale() {
        let newer = baseline(Some(state("b", 0o644)), 20);
        let obs = observation(ChangeKind::Modified, Some(state("a", 0o644)), 10);
        assert_eq!(decide(Some(&newer), None, &obs, None), Decision::Stale);
    }

    #[test]
    fn renames_alert_with_the_old_paths_state() {
        let old = baseline(Some(state("a", 0o644)), 5);
        let mut obs = observation(ChangeKind::Renamed, Some(state("a", 0o644)), 10);
        obs.event.previous_path = Some(RawPath::from("/etc/passwd-"));
        let expected = Decision::Alert { change: ChangeKind::Renamed, before: old.state.clone() };
        assert_eq!(decide(None, Some(&old), &obs, None), expected);
    }

    fn image(state: Option<FileState>) -> Authorized {
        Authorized { state, origin: crate::store::Origin::Image }
    }

    #[test]
    fn a_container_file_that_still_matches_its_image_is_fine() {
        let obs = observation(ChangeKind::Inventory, Some(state("image", 0o644)), 10);
        let reference = image(Some(state("image", 0o644)));
        assert_eq!(decide(None, None, &obs, Some(&reference)), Decision::Authorized);
    }

    #[test]
    fn a_container_file_that_differs_from_its_image_is_drift_once() {
        let reference = image(Some(state("image", 0o644)));
        let obs = observation(ChangeKind::Inventory, Some(state("edited", 0o644)), 10);
        let expected =
            Decision::Alert { change: ChangeKind::Modified, before: reference.state.clone() };
        assert_eq!(decide(None, None, &obs, Some(&reference)), expected);

        let mut seen = baseline(Some(state("edited", 0o644)), 10);
        seen.authorized = Some(reference.clone());
        let again = observation(ChangeKind::Modified, Some(state("edited", 0o644)), 11);
        assert_eq!(decide(Some(&seen), None, &again, Some(&reference)), Decision::Unchanged);
    }

    #[test]
    fn a_file_put_back_to_its_image_version_is_recorded_silently() {
        let reference = image(Some(state("image", 0o644)));
        let mut seen = baseline(Some(state("edited", 0o644)), 10);
        seen.authorized = Some(reference.clone());
        let obs = observation(ChangeKind::Modified, Some(state("image", 0o644)), 11);
        assert_eq!(decide(Some(&seen), None, &obs, Some(&reference)), Decision::Authorized);
    }

    #[test]
    fn a_file_missing_from_the_image_is_a_creation() {
        let reference = image(None);
        let obs = observation(ChangeKind::Inventory, Some(state("dropped", 0o755)), 10);
        let expected = Decision::Alert { change: ChangeKind::Created, before: None };
        assert_eq!(decide(None, None, &obs, Some(&reference)), expected);
    }
}
