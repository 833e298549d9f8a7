//! Elastic Common Schema (ECS 8.x) documents: `event.*` says what kind of
//! change it was, `file.*` the file now (or before a deletion) with its
//! BLAKE3 at `file.hash.blake3`, `container.*`, `orchestrator.*`,
//! `process.*` and `host.name` where; fim-specific fields (both states, the
//! diff, controls) go under `fim`.

use schemas::{Alert, ChangeKind, FileKind, FileState, Severity};
use serde_json::{Value, json};

use super::{PRODUCT, VERSION, summary};

/// ECS version the documents follow.
pub const ECS_VERSION: &str = "8.11.0";

/// The ECS document of one alert.
pub fn ecs(alert: &Alert) -> Value {
    let state = if alert.change == ChangeKind::Deleted { &alert.before } else { &alert.after };
    let mut doc = json!({
        "@timestamp": rfc3339(alert),
        "ecs": { "version": ECS_VERSION },
        "message": summary(alert),
        "event": {
            "kind": "alert",
            "category": ["file"],
            "type": [event_type(alert.change)],
            "action": alert.change.as_str(),
            "id": alert.id,
            "severity": severity(alert.severity),
            "module": PRODUCT,
            "dataset": "fim.alert",
        },
        "rule": { "id": alert.rule, "name": alert.rule },
        "observer": { "product": PRODUCT, "vendor": PRODUCT, "version": VERSION, "type": "fim" },
        "host": { "name": alert.node },
        "file": file(alert, state.as_ref()),
        "fim": {
            "severity": alert.severity.as_str(),
            "controls": alert.controls,
            "before": alert.before,
            "after": alert.after,
            "diff": alert.diff,
        },
    });
    if let Some(container) = &alert.container {
        doc["container"] = json!({
            "id": container.id,
            "name": container.name,
            "image": { "name": container.image, "hash": { "all": container.image_id.iter().collect::<Vec<_>>() } },
        });
        if container.pod.is_some() || container.namespace.is_some() {
            doc["orchestrator"] = json!({
                "type": "kubernetes",
                "namespace": container.namespace,
                "resource": { "type": "pod", "name": container.pod },
            });
        }
    }
    if let Some(process) = &alert.process {
        doc["process"] = json!({
            "pid": process.pid,
            "name": process.command,
            "executable": process.executable.as_ref().map(|p| p.escaped()),
            "user": { "id": process.uid.map(|uid| uid.to_string()) },
        });
    }
    doc
}

fn rfc3339(alert: &Alert) -> String {
    alert
        .time
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| alert.time.unix_timestamp().to_string())
}

fn event_type(change: ChangeKind) -> &'static str {
    match change {
        ChangeKind::Created => "creation",
        ChangeKind::Deleted => "deletion",
        ChangeKind::Inventory => "info",
        ChangeKind::Modified | ChangeKind::Renamed | ChangeKind::Attributes => "change",
    }
}

fn severity(severity: Severity) -> u8 {
    match severity {
        Severity::Info => 21,
        Severity::Low => 47,
        Severity::Medium => 63,
        Severity::High => 73,
        Severity::Critical => 99,
    }
}

fn file(alert: &Alert, state: Option<&FileState>) -> Value {
    let path = alert.path.escaped();
    let (directory, name) = path.rsplit_once('/').unwrap_or(("", &path));
    let mut file = json!({
        "path": path,
        "name": name,
        "directory": if directory.is_empty() { "/" } else { directory },
    });
    if let Some(extension) = name.rsplit_once('.').map(|(_, e)| e).filter(|e| !e.is_empty()) {
        file["extension"] = extension.into();
    }
    if let Some(previous) = &alert.previous_path {
        file["fim_previous_path"] = previous.escaped().into();
    }
    let Some(state) = state else { return file };
    file["type"] = file_type(state.kind).into();
    file["size"] = state.size.into();
    file["mode"] = format!("{:o}", state.mode & 0o7777).into();
    file["uid"] = state.uid.to_string().into();
    file["gid"] = state.gid.to_string().into();
    if let Some(hash) = &state.blake3 {
        file["hash"] = json!({ "blake3": hash });
    }
    if let Some(target) = &state.link_target {
        file["target_path"] = target.escaped().into();
    }
    file
}

fn file_type(kind: FileKind) -> &'static str {
    match kind {
        FileKind::File => "file",
        FileKind::Directory => "dir",
        FileKind::Symlink => "symlink",
        FileKind::Fifo | FileKind::Socket | FileKind::BlockDevice | FileKind::CharDevice => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encoding::fixtures;

    #[test]
    fn blake3_lands_at_file_hash_blake3() {
        let doc = ecs(&fixtures::alert());
        assert_eq!(doc["file"]["hash"]["blake3"], "9a".repeat(32));
        assert_eq!(doc["file"]["path"], "/etc/passwd");
        assert_eq!(doc["file"]["directory"], "/etc");
        assert_eq!(doc["event"]["kind"], "alert");
        assert_eq!(doc["event"]["type"][0], "change");
        assert_eq!(doc["orchestrator"]["namespace"], "payments");
        assert_eq!(doc["process"]["pid"], 4242);
        assert_eq!(doc["@timestamp"], "2025-12-03T12:46:40.123456789Z");
    }
}
