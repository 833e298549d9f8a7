//! OCSF output checked against the OCSF 1.1.0 schema for File System
//! Activity (class 1001) as packaged in PyPI's `pydantic-ocsf`, which ships
//! the official schema and builds validating models from it. Every change
//! kind, a hostile file name, and an alert without container or process.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};

use common::alert;
use schemas::{ChangeKind, RawPath};

// Validates one event per stdin line; prints one verdict line each.
const VALIDATOR: &str = r#"
import json, sys
from ocsf.v1_1_0.events import FileActivity
for line in sys.stdin:
    event = json.loads(line)
    try:
        model = FileActivity.model_validate(event)
        assert model.class_uid == 1001, model.class_uid
        print("ok")
    except Exception as error:
        print("invalid: " + " ".join(str(error).split()))
"#;

fn events() -> Vec<serde_json::Value> {
    let mut alerts = Vec::new();
    for (n, change) in [
        ChangeKind::Created,
        ChangeKind::Modified,
        ChangeKind::Deleted,
        ChangeKind::Renamed,
        ChangeKind::Attributes,
    ]
    .into_iter()
    .enumerate()
    {
        let mut alert = alert(n);
        alert.change = change;
        match change {
            ChangeKind::Deleted => {
                alert.before = alert.after.take();
            }
            ChangeKind::Renamed => alert.previous_path = Some(RawPath::from("/etc/old-name")),
            _ => {}
        }
        alerts.push(alert);
    }
    let mut hostile = alert(9);
    hostile.path = RawPath::from_bytes(b"/app/a|b\\c=d\ne\xff.jar".to_vec());
    hostile.process = None;
    alerts.push(hostile);
    alerts.iter().map(notifier::encoding::ocsf).collect()
}

#[test]
fn ocsf_events_validate_against_the_ocsf_1_1_0_schema() {
    let events = events();
    let mut child = Command::new("python3")
        .args(["-c", VALIDATOR])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 not found; install it with `apt-get install python3`");
    let mut stdin = child.stdin.take().unwrap();
    for event in &events {
        writeln!(stdin, "{event}").unwrap();
    }
    drop(stdin);
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the validator failed (install the schema with `pip install pydantic-ocsf`): {stderr}"
    );
    let verdicts: Vec<String> =
        String::from_utf8_lossy(&output.stdout).lines().map(str::to_owned).collect();
    assert_eq!(verdicts.len(), events.len(), "{verdicts:?} {stderr}");
    for (verdict, event) in verdicts.iter().zip(&events) {
        assert_eq!(verdict, "ok", "{event}");
    }
}

#[test]
fn the_validator_rejects_an_event_missing_required_attributes() {
    let mut event = events().remove(0);
    event.as_object_mut().unwrap().remove("actor");
    let output = Command::new("python3")
        .args(["-c", VALIDATOR])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            writeln!(child.stdin.take().unwrap(), "{event}")?;
            child.wait_with_output()
        })
        .unwrap();
    let verdict = String::from_utf8_lossy(&output.stdout);
    assert!(verdict.starts_with("invalid") && verdict.contains("actor"), "{verdict}");
}
