//! Slack, webhook and Splunk HEC sinks against a recording HTTP receiver
//! on loopback: batching, rate limits, Retry-After, retries with backoff,
//! dead letters, HMAC signatures, ordering, and one failing sink not
//! delaying another.

mod common;

use std::time::Duration;

use bus::Bus;
use common::{Receiver, Running, alert, dead_letters, publish};

const WITHIN: Duration = Duration::from_secs(20);

fn ids_in_slack_message(body: &serde_json::Value) -> Vec<String> {
    let text = body["blocks"].to_string();
    let mut ids = Vec::new();
    let mut rest = text.as_str();
    while let Some(start) = rest.find("alert-") {
        ids.push(rest[start..start + 9].to_owned());
        rest = &rest[start + 9..];
    }
    ids
}

#[tokio::test(flavor = "multi_thread")]
async fn slack_honours_retry_after_batches_and_keeps_order() {
    // The first request is throttled for one second; everything else is ok.
    let receiver = Receiver::start(Duration::ZERO, |_, n| match n {
        0 => (429, Some("1")),
        _ => (200, None),
    })
    .await;
    // SAFETY of the environment change: no other thread reads this variable.
    unsafe { std::env::set_var("FIM_TEST_SLACK_URL", format!("{}/services/T/B/x", receiver.url)) };
    let bus = Bus::memory();
    let alerts: Vec<_> = (0..7).map(alert).collect();
    publish(&bus, &alerts).await;

    let yaml = "sinks:\n  - name: slack\n    slack:\n      url_env: FIM_TEST_SLACK_URL\n    delivery:\n      initial_backoff_ms: 10\n";
    let notifier = Running::start(&bus, yaml).await;
    let requests = receiver.wait_for(WITHIN, |r| r.len() >= 3).await;

    // 429, then its retry no sooner than Retry-After, then the next batch
    // no sooner than the one-a-second rate limit.
    assert_eq!(requests.iter().map(|r| r.status).collect::<Vec<_>>(), [429, 200, 200]);
    assert!(requests[1].at - requests[0].at >= Duration::from_millis(950), "Retry-After honoured");
    assert!(requests[2].at - requests[1].at >= Duration::from_millis(950), "rate limited");
    assert_eq!(requests[0].body, requests[1].body, "the retry resends the same batch");
    let delivered: Vec<String> =
        requests[1..].iter().flat_map(|r| ids_in_slack_message(&r.json())).collect();
    let expected: Vec<String> = alerts.iter().map(|a| a.id.clone()).collect();
    assert_eq!(delivered, expected, "every alert once, in order, 5 per message");

    let body = requests[1].json();
    assert!(body["text"].as_str().unwrap().starts_with("high /etc/file-000 modified"));
    let blocks = body["blocks"].to_string();
    for part in ["*HIGH* `/etc/file-000` modified", "host node-1", "sh[4242] uid 0", "+evil:x:0:0"]
    {
        assert!(blocks.contains(part), "{part} in {blocks}");
    }
    let delivered = "fim_notifier_deliveries_total{sink=\"slack\",outcome=\"delivered\"} 7";
    let metrics = notifier.metrics_with(&[delivered]).await;
    assert!(metrics.contains(delivered), "{metrics}");
    assert!(
        metrics.contains("fim_notifier_retries_total{sink=\"slack\",reason=\"rate_limited\"} 1"),
        "{metrics}"
    );
    notifier.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn webhook_retries_server_errors_then_dead_letters_and_keeps_order() {
    // Anything about the poisoned path fails with 500, forever.
    let receiver = Receiver::start(Duration::ZERO, |request, _| {
        if request.body.contains("/etc/file-001") { (500, None) } else { (200, None) }
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("hmac.key");
    std::fs::write(&key_file, "k3y\n").unwrap();
    let bus = Bus::memory();
    let alerts: Vec<_> = (0..3).map(alert).collect();
    publish(&bus, &alerts).await;

    let yaml = format!(
        "sinks:\n  - name: hook\n    webhook:\n      url: {}/ingest\n      hmac_key_file: {}\n    delivery:\n      max_attempts: 3\n      initial_backoff_ms: 100\n",
        receiver.url,
        key_file.display()
    );
    let notifier = Running::start(&bus, &yaml).await;
    let letters = dead_letters(&bus, "hook", 1).await;
    let requests =
        receiver.wait_for(WITHIN, |r| r.iter().filter(|r| r.status == 200).count() >= 2).await;

    let paths: Vec<String> =
        requests.iter().map(|r| r.json()["path"].as_str().unwrap().to_owned()).collect();
    assert_eq!(
        paths,
        ["/etc/file-000", "/etc/file-001", "/etc/file-001", "/etc/file-001", "/etc/file-002"]
    );
    // Exponential backoff: the second wait is longer than the first.
    let (first, second) = (requests[2].at - requests[1].at, requests[3].at - requests[2].at);
    assert!(
        first >= Duration::from_millis(50) && second >= Duration::from_millis(100),
        "{first:?} {second:?}"
    );
    for request in &requests {
        let expected = notifier::sinks::webhook::sign("k3y", &request.body);
        assert_eq!(request.header("x-fim-signature-256"), expected);
        assert_eq!(request.header("content-type"), "application/json");
    }

    let letter = &letters[0];
    assert_eq!(letter.subject, "fim.dlq.notifier-hook");
    let parked: schemas::Alert = schemas::decode(&letter.payload).unwrap();
    assert_eq!(parked.id, "alert-001");
    assert_eq!(letter.headers.get(schemas::header::DEAD_LETTER_REASON), Some("server_error"));
    assert!(
        letter
            .headers
            .get(schemas::header::DEAD_LETTER_ERROR)
            .unwrap()
            .contains("after 3 attempts")
    );
    let metrics = notifier
        .metrics_with(&[
            "fim_notifier_dead_letters_total{sink=\"hook\",reason=\"server_error\"} 1",
            "fim_notifier_deliveries_total{sink=\"hook\",outcome=\"delivered\"} 2",
        ])
        .await;
    assert!(
        metrics
            .contains("fim_notifier_dead_letters_total{sink=\"hook\",reason=\"server_error\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("fim_notifier_deliveries_total{sink=\"hook\",outcome=\"delivered\"} 2"),
        "{metrics}"
    );
    notifier.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn splunk_hec_batches_ocsf_events_and_dead_letters_rejections_at_once() {
    let receiver = Receiver::start(Duration::ZERO, |request, _| {
        if request.body.contains("/etc/file-009") { (400, None) } else { (200, None) }
    })
    .await;
    unsafe { std::env::set_var("FIM_TEST_HEC_TOKEN", "t0ken") };
    let bus = Bus::memory();
    let alerts: Vec<_> = (0..4).map(alert).collect();
    publish(&bus, &alerts).await;

    let yaml = format!(
        "sinks:\n  - name: hec\n    splunk_hec:\n      url: {}/services/collector/event\n      token_env: FIM_TEST_HEC_TOKEN\n      index: fim\n      encoding: ocsf\n",
        receiver.url
    );
    let notifier = Running::start(&bus, &yaml).await;
    let requests = receiver.wait_for(WITHIN, |r| r.len() == 1).await;
    let request = &requests[0];
    assert_eq!(request.path, "/services/collector/event");
    assert_eq!(request.header("authorization"), "Splunk t0ken");
    let events: Vec<serde_json::Value> =
        request.body.lines().map(|line| serde_json::from_str(line).unwrap()).collect();
    assert_eq!(events.len(), 4, "one request carries the whole batch");
    for (event, alert) in events.iter().zip(&alerts) {
        assert_eq!(event["index"], "fim");
        assert_eq!(event["host"], "node-1");
        assert_eq!(event["sourcetype"], "fim:alert");
        assert_eq!(event["event"]["class_uid"], 1001);
        assert_eq!(event["event"]["activity_id"], 3);
        assert_eq!(event["event"]["file"]["path"], alert.path.escaped());
        assert_eq!(event["event"]["metadata"]["uid"], alert.id);
    }

    // A 400 is not retried: the alert goes to dead letters after one try.
    publish(&bus, &[alert(9)]).await;
    let letters = dead_letters(&bus, "hec", 1).await;
    assert_eq!(letters[0].headers.get(schemas::header::DEAD_LETTER_REASON), Some("rejected"));
    assert_eq!(receiver.requests().len(), 2);
    notifier.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_sink_never_delays_another() {
    let receiver = Receiver::start(Duration::ZERO, |request, _| {
        if request.path == "/down" { (503, None) } else { (200, None) }
    })
    .await;
    let bus = Bus::memory();
    let yaml = format!(
        "sinks:\n  - name: down\n    webhook:\n      url: {url}/down\n    delivery:\n      initial_backoff_ms: 30000\n  - name: up\n    webhook:\n      url: {url}/up\n      encoding: cef\n",
        url = receiver.url
    );
    let notifier = Running::start(&bus, &yaml).await;
    let alerts: Vec<_> = (0..5).map(alert).collect();
    publish(&bus, &alerts).await;
    let requests = receiver
        .wait_for(Duration::from_secs(10), |r| r.iter().filter(|r| r.path == "/up").count() == 5)
        .await;
    let up: Vec<_> = requests.iter().filter(|r| r.path == "/up").collect();
    for (request, alert) in up.iter().zip(&alerts) {
        assert!(request.body.starts_with("CEF:0|fim|fim|"), "{}", request.body);
        assert!(request.body.contains(&format!("externalId={}", alert.id)), "{}", request.body);
    }
    assert_eq!(requests.iter().filter(|r| r.path == "/down").count(), 1, "still backing off");
    notifier.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn secrets_never_reach_errors_or_logs() {
    unsafe { std::env::set_var("FIM_TEST_SECRET_URL", "not a url but a s3cret") };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sinks.yaml");
    std::fs::write(&path, "sinks:\n  - name: s\n    slack:\n      url_env: FIM_TEST_SECRET_URL\n")
        .unwrap();
    let config = notifier::Config::from_file(&path).unwrap();
    let debug = format!("{config:?}");
    assert!(!debug.contains("s3cret"), "{debug}");
    let ctx = bus::StageContext::standalone(Bus::memory());
    let error = notifier::run(config, notifier::Metrics::default(), ctx).await.unwrap_err();
    let text = error.to_string();
    assert!(text.contains("sinks[0] (s).slack.url") && !text.contains("s3cret"), "{text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn dead_letters_land_in_the_fim_dlq_stream_of_a_real_nats_server() {
    let server = testkit::NatsServer::start().unwrap();
    let bus = Bus::connect(&server.url(), "test").await.unwrap();
    let receiver = Receiver::start(Duration::ZERO, |_, _| (404, None)).await;
    let yaml =
        format!("sinks:\n  - name: gone\n    webhook: {{ url: \"{}/revoked\" }}\n", receiver.url);
    let notifier = Running::start(&bus, &yaml).await;
    publish(&bus, &[alert(1), alert(2)]).await;

    let letters = dead_letters(&bus, "gone", 2).await;
    let ids: Vec<String> =
        letters.iter().map(|l| schemas::decode::<schemas::Alert>(&l.payload).unwrap().id).collect();
    assert_eq!(ids, ["alert-001", "alert-002"]);
    for letter in &letters {
        assert_eq!(letter.subject, "fim.dlq.notifier-gone");
        assert_eq!(
            letter.headers.get(schemas::header::DEAD_LETTER_SUBJECT),
            Some("fim.alerts.high._host")
        );
        assert_eq!(letter.headers.get(schemas::header::DEAD_LETTER_REASON), Some("rejected"));
    }
    assert_eq!(receiver.requests().len(), 2, "a 404 is not retried");
    notifier.stop().await;
}
