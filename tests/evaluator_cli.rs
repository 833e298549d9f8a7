//! The evaluator's commands on the real binary: `fim rules check` names
//! file, line and column; `fim baseline accept|list|export` and `fim report`
//! work on a stopped evaluator's database and refuse clearly while one
//! holds it.

mod common;

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use common::{Fim, watched_dir};

fn fim(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_fim")).args(args).output().expect("fim runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn lines(output: &Output) -> Vec<serde_json::Value> {
    assert!(output.status.success(), "stderr: {}", text(&output.stderr));
    text(&output.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

#[test]
fn rules_check_names_file_line_and_column_and_exits_non_zero() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.yaml");
    std::fs::write(&bad, "rules:\n  - id: a\n    severity: high\n    pathz: [/etc]\n").unwrap();
    let output = fim(&["rules", "check", dir.path().to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = text(&output.stderr);
    let expected = format!("{}:4:5: unknown field `pathz`", bad.display());
    assert!(stderr.contains(&expected), "{stderr}");
}

#[test]
fn rules_check_accepts_the_example_rules() {
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/rules");
    let output = fim(&["rules", "check", examples.to_str().unwrap()]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert!(text(&output.stdout).starts_with("ok: "), "{}", text(&output.stdout));
}

#[test]
fn baseline_commands_refuse_a_database_held_by_a_running_evaluator() {
    let (watched, data) = (watched_dir(), tempfile::tempdir().unwrap());
    let (watch, data_dir) = (watched.path().to_str().unwrap(), data.path().to_str().unwrap());
    let running = Fim::start(&["all", "--no-containers", "--watch", watch, "--data-dir", data_dir]);
    running.wait_ready();
    let output = fim(&["baseline", "list", "--data-dir", data_dir]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = text(&output.stderr);
    assert!(stderr.contains("locked by another process") && stderr.contains("--nats"), "{stderr}");
    assert!(running.terminate().success());
}

#[test]
fn baselines_are_exported_approved_listed_and_reported_after_the_evaluator_stops() {
    let (watched, data) = (watched_dir(), tempfile::tempdir().unwrap());
    let (watch, data_dir) = (watched.path().to_str().unwrap(), data.path().to_str().unwrap());
    let running = Fim::start(&["all", "--no-containers", "--watch", watch, "--data-dir", data_dir]);
    running.wait_ready();
    std::thread::sleep(Duration::from_millis(1000));
    assert!(running.terminate().success());

    let passwd = watched.path().join("passwd");
    let exported = lines(&fim(&["baseline", "export", "--data-dir", data_dir]));
    let entry = exported.iter().find(|e| e["path"] == passwd.to_str().unwrap()).expect("passwd");
    assert_eq!(entry["source"], "host:test");
    assert_eq!(entry["drifted"], false);

    let path = passwd.to_str().unwrap();
    let accept =
        ["baseline", "accept", "--path", path, "--reason", "CHG-1", "--data-dir", data_dir];
    let output = fim(&accept);
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert!(text(&output.stdout).contains("applied to 1 baselines"), "{}", text(&output.stdout));

    let approvals = lines(&fim(&["baseline", "list", "--data-dir", data_dir]));
    assert_eq!(approvals.len(), 1);
    assert_eq!(approvals[0]["reason"], "CHG-1");
    let exported = lines(&fim(&["baseline", "export", "--data-dir", data_dir]));
    let entry = exported.iter().find(|e| e["path"] == path).unwrap();
    assert_eq!(entry["authorized"]["origin"], "approved");

    // Containers running on the machine have reports of their own.
    let reports = lines(&fim(&["report", "--data-dir", data_dir]));
    let host = reports.iter().find(|r| r["container"].is_null()).expect("a host report");
    assert_eq!(host["node"], "test");
    assert_eq!(host["differences"], 0);
    assert!(host["files_checked"].as_u64().unwrap() >= 1);
    assert!(host["last_verified"].is_string(), "{host}");
}

#[test]
fn baseline_accept_without_a_scope_is_refused() {
    let data = tempfile::tempdir().unwrap();
    let output = fim(&["baseline", "accept", "--data-dir", data.path().to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(1));
    assert!(text(&output.stderr).contains("--container, --image or --path"));
}

#[tokio::test(flavor = "multi_thread")]
async fn an_approval_sent_over_nats_is_applied_by_the_running_evaluator() {
    let server = testkit::NatsServer::start().unwrap();
    let url = server.url();
    let (watched, data) = (watched_dir(), tempfile::tempdir().unwrap());
    let (watch, data_dir) = (watched.path().to_str().unwrap(), data.path().to_str().unwrap());
    let running = Fim::all_over_nats(&url, watch, data_dir);
    running.wait_ready();
    tokio::time::sleep(Duration::from_millis(1000)).await;

    let passwd = watched.path().join("passwd");
    common::append(&passwd, "evil:x:0:0::/:/bin/sh");
    running.alert_where(Duration::from_secs(10), |a| common::is_change(a, &passwd, "modified"));
    let path = passwd.to_str().unwrap();
    let output = fim(&["baseline", "accept", "--path", path, "--nats", &url]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert!(text(&output.stdout).starts_with("sent approval "));
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert!(running.terminate().success());

    let approvals = lines(&fim(&["baseline", "list", "--data-dir", data_dir]));
    assert_eq!(approvals.len(), 1, "{approvals:?}");
    let exported = lines(&fim(&["baseline", "export", "--data-dir", data_dir]));
    let entry = exported.iter().find(|e| e["path"] == path).unwrap();
    assert_eq!(entry["authorized"]["origin"], "approved");
    assert_eq!(entry["drifted"], false);
}
