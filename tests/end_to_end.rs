//! One change flowing through all four stages of the real binary: in one
//! process on the in-process bus, in one process on NATS, and as four
//! processes over a real nats-server with a plain subscriber listening.

mod common;

use std::time::{Duration, Instant};

use common::{Fim, append, is_change, watched_dir};
use futures_util::StreamExt;
use testkit::NatsServer;

// Generous: CI machines are shared and slow; the typical latency is milliseconds.
const WITHIN: Duration = Duration::from_secs(30);

#[test]
fn embedded_mode_prints_an_alert_for_an_appended_line_and_exits_cleanly() {
    let watched = watched_dir();
    let data = tempfile::tempdir().unwrap();
    let (watch, data_dir) = (watched.path().to_str().unwrap(), data.path().to_str().unwrap());
    let fim = Fim::start(&["all", "--no-containers", "--watch", watch, "--data-dir", data_dir]);
    fim.wait_ready();
    // Let the inventory settle into baselines before changing anything.
    std::thread::sleep(Duration::from_millis(500));

    let passwd = watched.path().join("passwd");
    let started = Instant::now();
    append(&passwd, "evil:x:0:0::/:/bin/sh");
    let alert = fim.alert_where(WITHIN, |a| is_change(a, &passwd, "modified"));
    eprintln!("alert latency: {:?}", started.elapsed());

    assert_eq!(alert["severity"], "high");
    assert_eq!(alert["node"], "test");
    assert!(alert["container"].is_null());
    assert_ne!(alert["before"]["blake3"], alert["after"]["blake3"]);
    let expected = blake3::hash(&std::fs::read(&passwd).unwrap()).to_hex().to_string();
    assert_eq!(alert["after"]["blake3"], expected.as_str());
    assert_eq!(alert["controls"][0], "PCI-DSS-4.0:11.5.2");

    let (status, _) = testkit::http_get(&fim.listen, "/healthz").unwrap();
    assert_eq!(status, 200);
    let (status, metrics) = testkit::http_get(&fim.listen, "/metrics").unwrap();
    assert_eq!(status, 200);
    for counter in [
        "fim_evaluator_alerts_total{severity=\"high\",rule=\"host-path-changed\"} 1",
        "fim_notifier_deliveries_total{sink=\"stdout\",outcome=\"delivered\"} 1",
        "fim_hasher_files_total{outcome=\"hashed\"}",
    ] {
        assert!(metrics.contains(counter), "/metrics lacks {counter}:\n{metrics}");
    }
    assert!(fim.terminate().success(), "SIGTERM drains and exits 0");
}

#[test]
fn embedded_mode_alerts_on_changes_made_while_it_was_stopped() {
    let watched = watched_dir();
    let data = tempfile::tempdir().unwrap();
    let (watch, data_dir) = (watched.path().to_str().unwrap(), data.path().to_str().unwrap());
    let args = ["all", "--no-containers", "--watch", watch, "--data-dir", data_dir];
    let first = Fim::start(&args);
    first.wait_ready();
    std::thread::sleep(Duration::from_millis(1000));
    assert!(first.terminate().success());

    let passwd = watched.path().join("passwd");
    append(&passwd, "evil:x:0:0::/:/bin/sh");
    let second = Fim::start(&args);
    second.wait_ready();
    second.alert_where(WITHIN, |a| is_change(a, &passwd, "modified"));
}

#[tokio::test(flavor = "multi_thread")]
async fn four_stage_processes_deliver_the_alert_to_a_plain_nats_subscriber() {
    let server = NatsServer::start().unwrap();
    let url = server.url();
    let watched = watched_dir();
    let data = tempfile::tempdir().unwrap();
    let watch = watched.path().to_str().unwrap();
    let client = async_nats::connect(&url).await.unwrap();
    let mut alerts = client.subscribe("fim.alerts.>").await.unwrap();

    let stages = [
        Fim::start(&["notifier", "--nats", &url]),
        Fim::start(&["evaluator", "--nats", &url, "--data-dir", data.path().to_str().unwrap()]),
        Fim::start(&["hasher", "--nats", &url]),
        Fim::start(&["collector", "--nats", &url, "--no-containers", "--watch", watch]),
    ];
    for stage in &stages {
        stage.wait_ready();
    }
    tokio::time::sleep(Duration::from_millis(1000)).await;

    let passwd = watched.path().join("passwd");
    append(&passwd, "evil:x:0:0::/:/bin/sh");
    // Other alerts may pass by on a shared machine; take the one for passwd.
    let (message, alert) = tokio::time::timeout(WITHIN, async {
        loop {
            let message = alerts.next().await.unwrap();
            let alert: schemas::Alert = schemas::decode(&message.payload).unwrap();
            if alert.path.as_path() == passwd {
                return (message, alert);
            }
        }
    })
    .await
    .expect("an alert for passwd");
    assert_eq!(message.subject.as_str(), "fim.alerts.high._host");
    assert_eq!(alert.change, schemas::ChangeKind::Modified);

    let notifier_line = stages[0].alert_where(WITHIN, |a| is_change(a, &passwd, "modified"));
    assert_eq!(notifier_line["id"], alert.id.as_str());
    for stage in stages {
        assert!(stage.terminate().success());
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_malformed_event_is_dead_lettered_and_the_pipeline_keeps_working() {
    let server = NatsServer::start().unwrap();
    let url = server.url();
    let watched = watched_dir();
    let data = tempfile::tempdir().unwrap();
    let (watch, data_dir) = (watched.path().to_str().unwrap(), data.path().to_str().unwrap());
    let client = async_nats::connect(&url).await.unwrap();
    let mut dead = client.subscribe("fim.dlq.>").await.unwrap();

    let fim = Fim::all_over_nats(&url, watch, data_dir);
    fim.wait_ready();
    let jetstream = async_nats::jetstream::new(client.clone());
    jetstream.publish("fim.events.test", "garbage".into()).await.unwrap().await.unwrap();
    let letter = tokio::time::timeout(WITHIN, dead.next()).await.unwrap().unwrap();
    assert_eq!(letter.subject.as_str(), "fim.dlq.hasher");

    let passwd = watched.path().join("passwd");
    append(&passwd, "evil:x:0:0::/:/bin/sh");
    fim.alert_where(WITHIN, |a| is_change(a, &passwd, "modified"));
    assert!(fim.terminate().success());
}

#[test]
fn invalid_flags_exit_non_zero_and_name_the_field() {
    let cases: [(&[&str], &str); 3] = [
        (&["all", "--watch", "/nonexistent/fim-test"], "watch"),
        (&["all", "--no-containers"], "watch"),
        (&["hasher", "--nats", "nats://127.0.0.1:1", "--workers", "0"], "workers"),
    ];
    for (args, field) in cases {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_fim"))
            .args(args)
            .args(["--node", "test"])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{args:?} should fail");
        assert!(stderr.contains(field), "{args:?}: stderr should name {field}: {stderr}");
    }
}
