//! OCSF File System Activity (class 1001, category 1 System Activity),
//! schema version 1.1.0.
//!
//! Activities: created 1 Create, modified 3 Update, deleted 4 Delete,
//! renamed 5 Rename (`file` is the old path, `file_result` the new one, as
//! OCSF describes them), attributes 6 Set Attributes; an inventory record
//! (never an alert in practice) is 99 Other. BLAKE3 has no fingerprint
//! algorithm id of its own, so hashes use 99 Other with `algorithm`
//! "BLAKE3". The fim alert itself travels under `unmapped`.

use schemas::{Alert, ChangeKind, FileKind, FileState, RawPath, Severity};
use serde_json::{Map, Value, json};

use super::{PRODUCT, VERSION, summary};

/// OCSF schema version the events follow.
pub const OCSF_VERSION: &str = "1.1.0";
/// File System Activity.
pub const CLASS_UID: u64 = 1001;
/// System Activity.
pub const CATEGORY_UID: u64 = 1;
/// Fingerprint algorithm "Other", named in `algorithm`.
pub const ALGORITHM_OTHER: u64 = 99;

/// The OCSF event of one alert.
pub fn ocsf(alert: &Alert) -> Value {
    let (activity_id, activity_name) = activity(alert.change);
    let (severity_id, severity) = severity(alert.severity);
    let (target, result) = match (&alert.change, &alert.previous_path) {
        (ChangeKind::Renamed, Some(previous)) => (previous, Some(&alert.path)),
        _ => (&alert.path, None),
    };
    let current = if alert.change == ChangeKind::Deleted { &alert.before } else { &alert.after };
    let mut event = json!({
        "activity_id": activity_id,
        "activity_name": activity_name,
        "category_uid": CATEGORY_UID,
        "category_name": "System Activity",
        "class_uid": CLASS_UID,
        "class_name": "File System Activity",
        "type_uid": CLASS_UID * 100 + activity_id,
        "type_name": format!("File System Activity: {activity_name}"),
        "severity_id": severity_id,
        "severity": severity,
        "time": alert.time.unix_timestamp_nanos() / 1_000_000,
        "message": summary(alert),
        "status_id": 1,
        "status": "Success",
        "metadata": {
            "version": OCSF_VERSION,
            "uid": alert.id,
            "product": { "name": PRODUCT, "vendor_name": PRODUCT, "version": VERSION },
            "labels": alert.controls,
        },
        "actor": actor(alert),
        "device": device(alert),
        "file": file(target, if result.is_some() { alert.before.as_ref() } else { current.as_ref() }),
        "unmapped": { "fim": serde_json::to_value(alert).unwrap_or_default() },
    });
    if let Some(result) = result {
        event["file_result"] = file(result, alert.after.as_ref());
    }
    let changed_in_place = matches!(alert.change, ChangeKind::Attributes | ChangeKind::Modified);
    if changed_in_place && let Some(before) = &alert.before {
        event["file_diff"] = Value::from(alert.diff.clone());
        event["unmapped"]["previous_state"] = file(&alert.path, Some(before));
    }
    event
}

fn activity(change: ChangeKind) -> (u64, &'static str) {
    match change {
        ChangeKind::Created => (1, "Create"),
        ChangeKind::Modified => (3, "Update"),
        ChangeKind::Deleted => (4, "Delete"),
        ChangeKind::Renamed => (5, "Rename"),
        ChangeKind::Attributes => (6, "Set Attributes"),
        ChangeKind::Inventory => (99, "Other"),
    }
}

fn severity(severity: Severity) -> (u64, &'static str) {
    match severity {
        Severity::Info => (1, "Informational"),
        Severity::Low => (2, "Low"),
        Severity::Medium => (3, "Medium"),
        Severity::High => (4, "High"),
        Severity::Critical => (5, "Critical"),
    }
}

fn actor(alert: &Alert) -> Value {
    let Some(process) = &alert.process else { return json!({}) };
    let mut value = json!({ "process": { "pid": process.pid } });
    if let Some(command) = &process.command {
        value["process"]["name"] = command.clone().into();
    }
    if let Some(executable) = &process.executable {
        value["process"]["file"] = json!({
            "name": file_name(executable),
            "path": executable.escaped(),
            "type_id": 1,
        });
    }
    if let Some(uid) = process.uid {
        value["user"] = json!({ "uid": uid.to_string() });
        value["process"]["user"] = json!({ "uid": uid.to_string() });
    }
    value
}

fn device(alert: &Alert) -> Value {
    let mut device = json!({ "hostname": alert.node, "type_id": 0, "type": "Unknown" });
    if let Some(container) = &alert.container {
        let mut value = Map::new();
        value.insert("uid".into(), container.id.clone().into());
        if let Some(name) = &container.name {
            value.insert("name".into(), name.clone().into());
        }
        if let Some(image) = &container.image {
            let mut image_value = json!({ "name": image });
            if let Some(id) = &container.image_id {
                image_value["uid"] = id.clone().into();
            }
            value.insert("image".into(), image_value);
        }
        device["container"] = Value::Object(value);
        if let Some(namespace) = &container.namespace {
            device["domain"] = namespace.clone().into();
        }
        if let Some(pod) = &container.pod {
            device["container"]["labels"] = json!([format!("pod={pod}")]);
        }
    }
    strip_nulls(device)
}

fn file(path: &RawPath, state: Option<&FileState>) -> Value {
    let escaped = path.escaped();
    let parent = escaped.rsplit_once('/').map(|(dir, _)| if dir.is_empty() { "/" } else { dir });
    let mut file = json!({
        "name": file_name(path),
        "path": escaped,
        "parent_folder": parent,
        "type_id": 0,
        "type": "Unknown",
    });
    if let Some(state) = state {
        let (type_id, type_name) = file_type(state.kind);
        file["type_id"] = type_id.into();
        file["type"] = type_name.into();
        file["size"] = state.size.into();
        file["mode"] = format!("{:o}", state.mode & 0o7777).into();
        file["owner"] = json!({ "uid": state.uid.to_string() });
        file["modified_time"] = (state.mtime_ns / 1_000_000).into();
        if let Some(hash) = &state.blake3 {
            file["hashes"] = json!([{
                "algorithm_id": ALGORITHM_OTHER,
                "algorithm": "BLAKE3",
                "value": hash,
            }]);
        }
        if let Some(target) = &state.link_target {
            file["unmapped_link_target"] = target.escaped().into();
        }
    }
    strip_nulls(file)
}

fn file_type(kind: FileKind) -> (u64, &'static str) {
    match kind {
        FileKind::File => (1, "Regular File"),
        FileKind::Directory => (2, "Folder"),
        FileKind::CharDevice => (3, "Character Device"),
        FileKind::BlockDevice => (4, "Block Device"),
        FileKind::Socket => (5, "Local Socket"),
        FileKind::Fifo => (6, "Named Pipe"),
        FileKind::Symlink => (7, "Symbolic Link"),
    }
}

fn file_name(path: &RawPath) -> String {
    let escaped = path.escaped();
    escaped.rsplit('/').next().unwrap_or(&escaped).to_owned()
}

fn strip_nulls(value: Value) -> Value {
    match value {
        Value::Object(map) => {
            Value::Object(map.into_iter().filter(|(_, v)| !v.is_null()).collect())
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encoding::fixtures;

    // Required attributes of File System Activity (OCSF 1.1.0), written
    // from the OCSF documentation: no OCSF schema package was used. The
    // base event requires activity_id, category_uid, class_uid, metadata
    // (with product and version), severity_id, time and type_uid; the
    // class adds actor, device and file; a file requires name and type_id;
    // a fingerprint requires algorithm_id and value; a product requires
    // vendor_name.
    fn check_required(event: &Value) {
        for key in ["activity_id", "category_uid", "class_uid", "severity_id", "time", "type_uid"] {
            assert!(event[key].is_u64() || event[key].is_i64(), "{key} is an integer: {event}");
        }
        for key in ["metadata", "actor", "device", "file"] {
            assert!(event[key].is_object(), "{key} is an object: {event}");
        }
        assert_eq!(event["class_uid"], CLASS_UID);
        assert_eq!(event["category_uid"], CATEGORY_UID);
        let activity = event["activity_id"].as_u64().unwrap();
        assert!([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 99].contains(&activity));
        assert_eq!(event["type_uid"].as_u64().unwrap(), CLASS_UID * 100 + activity);
        assert!(
            (0..=6).contains(&event["severity_id"].as_u64().unwrap()) || event["severity_id"] == 99
        );
        assert!(event["metadata"]["version"].is_string());
        assert!(event["metadata"]["product"]["vendor_name"].is_string());
        for file in [&event["file"], &event["file_result"]] {
            if file.is_null() {
                continue;
            }
            assert!(file["name"].is_string(), "file.name: {file}");
            assert!(file["type_id"].is_u64(), "file.type_id: {file}");
            for hash in file["hashes"].as_array().into_iter().flatten() {
                assert!(hash["algorithm_id"].is_u64() && hash["value"].is_string(), "{hash}");
            }
        }
        assert!(event["device"]["hostname"].is_string() || event["device"]["ip"].is_string());
    }

    #[test]
    fn every_change_kind_maps_to_a_valid_activity() {
        let expected = [
            (ChangeKind::Created, 1),
            (ChangeKind::Modified, 3),
            (ChangeKind::Deleted, 4),
            (ChangeKind::Renamed, 5),
            (ChangeKind::Attributes, 6),
        ];
        for (change, activity_id) in expected {
            let mut alert = fixtures::alert();
            alert.change = change;
            if change == ChangeKind::Renamed {
                alert.previous_path = Some(RawPath::from("/etc/passwd-"));
            }
            let event = ocsf(&alert);
            check_required(&event);
            assert_eq!(event["activity_id"], activity_id, "{change:?}");
            assert_eq!(event["type_uid"], 100_100 + activity_id);
        }
    }

    #[test]
    fn blake3_is_fingerprint_algorithm_99() {
        let event = ocsf(&fixtures::alert());
        let hash = &event["file"]["hashes"][0];
        assert_eq!(hash["algorithm_id"], 99);
        assert_eq!(hash["algorithm"], "BLAKE3");
        assert_eq!(hash["value"], "9a".repeat(32));
        assert_eq!(event["severity_id"], 5);
        assert_eq!(event["file"]["name"], "passwd");
        assert_eq!(event["file"]["parent_folder"], "/etc");
        assert_eq!(event["actor"]["process"]["pid"], 4242);
        assert_eq!(event["device"]["container"]["name"], "web");
    }

    #[test]
    fn a_rename_names_both_files_and_a_deletion_the_old_state() {
        let mut alert = fixtures::alert();
        alert.change = ChangeKind::Renamed;
        alert.previous_path = Some(RawPath::from("/app/old.jar"));
        alert.path = RawPath::from("/app/app.jar");
        let event = ocsf(&alert);
        assert_eq!(event["file"]["path"], "/app/old.jar");
        assert_eq!(event["file_result"]["path"], "/app/app.jar");

        let mut alert = fixtures::alert();
        alert.change = ChangeKind::Deleted;
        alert.after = None;
        let event = ocsf(&alert);
        check_required(&event);
        assert_eq!(event["file"]["hashes"][0]["value"], "3f".repeat(32));
    }

    #[test]
    fn host_alerts_without_process_still_have_every_required_attribute() {
        let mut alert = fixtures::hostile_alert();
        alert.container = None;
        alert.process = None;
        let event = ocsf(&alert);
        check_required(&event);
        assert_eq!(event["file"]["name"], "a|b\\\\c=d\ne\\xff\\xfe.jar");
    }
}
