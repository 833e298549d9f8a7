//! What operators look at: the Grafana dashboard only queries metrics the
//! binary exports, and readiness follows the NATS connection.

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::{Fim, append};
use testkit::NatsServer;

// Metric families named in the dashboard's queries, without the suffixes
// Prometheus adds (`_total`, `_bucket`, ...).
fn dashboard_metrics() -> BTreeSet<String> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/grafana/fim-dashboard.json");
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let mut names = BTreeSet::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            let expr = target["expr"].as_str().unwrap();
            for (at, _) in expr.match_indices("fim_") {
                let name: String = expr[at..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                names.insert(strip_suffix(&name).to_owned());
            }
        }
    }
    names
}

fn strip_suffix(name: &str) -> &str {
    ["_total", "_bucket", "_sum", "_count"]
        .iter()
        .find_map(|s| name.strip_suffix(s))
        .unwrap_or(name)
}

// Families without any series yet are not listed by /metrics, so the test
// first makes every kind of series exist: an alert, a delivery and a dead
// letter.
#[tokio::test(flavor = "multi_thread")]
async fn the_dashboard_queries_only_metrics_that_fim_exports() {
    let server = NatsServer::start().unwrap();
    let url = server.url();
    let watched = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let file = watched.path().join("f");
    std::fs::write(&file, "a\n").unwrap();
    let (watch, data_dir) = (watched.path().to_str().unwrap(), data.path().to_str().unwrap());
    let fim = Fim::all_over_nats(&url, watch, data_dir);
    fim.wait_ready();
    let jetstream = async_nats::jetstream::new(async_nats::connect(&url).await.unwrap());
    jetstream.publish("fim.events.test", "garbage".into()).await.unwrap().await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    append(&file, "b");
    fim.alert_where(Duration::from_secs(10), |a| a["change"] == "modified");
    tokio::time::sleep(Duration::from_millis(300)).await;

    let (_, metrics) = testkit::http_get(&fim.listen, "/metrics").unwrap();
    let exported: BTreeSet<&str> = metrics
        .lines()
        .filter_map(|line| line.strip_prefix("# TYPE "))
        .filter_map(|rest| rest.split_whitespace().next())
        .collect();
    let missing: Vec<String> =
        dashboard_metrics().into_iter().filter(|m| !exported.contains(m.as_str())).collect();
    assert!(missing.is_empty(), "dashboard queries metrics fim does not export: {missing:?}");
}

#[test]
fn readiness_follows_the_nats_connection() {
    let mut server = NatsServer::start().unwrap();
    let notifier = Fim::start(&["notifier", "--nats", &server.url()]);
    notifier.wait_ready();

    server.kill();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (status, body) = testkit::http_get(&notifier.listen, "/readyz").unwrap();
        if status == 503 {
            assert!(body.contains("nats"), "503 names the failing check: {body}");
            break;
        }
        assert!(Instant::now() < deadline, "still ready with NATS down");
        std::thread::sleep(Duration::from_millis(100));
    }
    let (status, _) = testkit::http_get(&notifier.listen, "/healthz").unwrap();
    assert_eq!(status, 200, "alive even while NATS is down");

    server.restart().unwrap();
    notifier.wait_ready();
    assert!(notifier.terminate().success());
}

#[test]
fn metrics_move_as_a_change_flows_through() {
    let watched = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let file = watched.path().join("f");
    std::fs::write(&file, "a\n").unwrap();
    let fim = Fim::start(&[
        "all",
        "--no-containers",
        "--watch",
        watched.path().to_str().unwrap(),
        "--data-dir",
        data.path().to_str().unwrap(),
    ]);
    fim.wait_ready();
    std::thread::sleep(Duration::from_millis(500));
    let before = testkit::http_get(&fim.listen, "/metrics").unwrap().1;
    append(&file, "b");
    fim.alert_where(Duration::from_secs(10), |a| a["change"] == "modified");
    // The evaluator counts its message after acknowledging it, which can be
    // a moment after the notifier printed the alert.
    for family in [
        "fim_collector_events_published_total{change=\"modified\"}",
        "fim_messages_total{stage=\"evaluator\",outcome=\"acked\"}",
        "fim_hasher_bytes_total",
    ] {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let after = testkit::http_get(&fim.listen, "/metrics").unwrap().1;
            if value(&after, family) > value(&before, family) {
                break;
            }
            assert!(Instant::now() < deadline, "{family} did not move");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn value(metrics: &str, series: &str) -> f64 {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(series).and_then(|v| v.trim().parse().ok()))
        .unwrap_or(0.0)
}
