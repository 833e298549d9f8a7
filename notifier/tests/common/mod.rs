//! Helpers for the notifier's integration tests: alerts to publish, a
//! notifier running on a bus with its metrics, and a recording HTTP
//! receiver that answers what each test scripts (200, 429 with
//! Retry-After, 500, ...).

#![allow(dead_code)]

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use bus::{Bus, ConsumerSpec, Outgoing, StageContext};
use prometheus_client::registry::Registry;
use schemas::{Alert, stream, subject};

/// The documented example alert with a distinct id and path.
pub fn alert(n: usize) -> Alert {
    let value = serde_json::json!({
        "schema_version": schemas::SCHEMA_VERSION,
        "id": format!("alert-{n:03}"),
        "time": "2026-12-03T13:00:00.1Z",
        "severity": "high",
        "rule": "host-path-changed",
        "change": "modified",
        "path": format!("/etc/file-{n:03}"),
        "previous_path": null,
        "node": "node-1",
        "container": null,
        "before": null,
        "after": {"kind": "file", "blake3": "ab".repeat(32), "size": 3, "mode": 33188,
                  "uid": 0, "gid": 0, "mtime_ns": 1, "link_target": null},
        "process": {"pid": 4242, "command": "sh", "executable": "/usr/bin/dash", "uid": 0},
        "controls": ["PCI-DSS-4.0:11.5.2"],
        "diff": "+evil:x:0:0::/:/bin/sh\n",
    });
    serde_json::from_value(value).unwrap()
}

/// Publishes alerts as the evaluator does.
pub async fn publish(bus: &Bus, alerts: &[Alert]) {
    for alert in alerts {
        let subject = subject::alerts(alert.severity, subject::HOST_NAMESPACE);
        let payload = schemas::encode(alert).unwrap();
        bus.publish(Outgoing::new(subject, &alert.id, payload)).await.unwrap();
    }
}

/// A notifier running on a bus, with its registry for `/metrics` checks.
pub struct Running {
    pub ctx: StageContext,
    pub registry: Registry,
    pub task: tokio::task::JoinHandle<Result<(), notifier::Error>>,
    _dir: tempfile::TempDir,
}

impl Running {
    /// Parses `yaml` as a sinks file and starts the notifier.
    pub async fn start(bus: &Bus, yaml: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sinks.yaml");
        std::fs::write(&path, yaml).unwrap();
        let config = notifier::Config::from_file(&path).unwrap();
        let mut registry = Registry::default();
        let metrics = notifier::Metrics::register(&mut registry);
        let ctx = StageContext::standalone(bus.clone());
        let task = tokio::spawn(notifier::run(config, metrics, ctx.clone()));
        tokio::time::timeout(Duration::from_secs(10), ctx.ready.wait()).await.unwrap();
        Self { ctx, registry, task, _dir: dir }
    }

    /// The metrics in Prometheus text.
    pub fn metrics(&self) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry).unwrap();
        text
    }

    /// The metrics text once it contains every one of `series`, or as it
    /// is after 20 s (counters move just after the receiver saw a request).
    pub async fn metrics_with(&self, series: &[&str]) -> String {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
        loop {
            let metrics = self.metrics();
            let all = series.iter().all(|s| metrics.contains(s));
            if all || tokio::time::Instant::now() >= deadline {
                return metrics;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    /// Stops the notifier and waits for it to drain.
    pub async fn stop(self) {
        self.ctx.shutdown.cancel();
        self.task.await.unwrap().unwrap();
    }
}

/// Reads `count` dead letters of `sink` from the FIM_DLQ stream.
pub async fn dead_letters(bus: &Bus, sink: &str, count: usize) -> Vec<bus::Delivery> {
    let filter = subject::dead_letters(&notifier::durable_name(sink));
    let spec = ConsumerSpec::new(stream::DEAD_LETTERS, format!("test-{sink}"), filter);
    let mut consumer = bus.consumer(spec).await.unwrap();
    let mut letters = Vec::new();
    while letters.len() < count {
        let next = tokio::time::timeout(Duration::from_secs(20), consumer.next()).await;
        let delivery = next.expect("dead letter in time").unwrap().unwrap();
        delivery.ack().await.unwrap();
        letters.push(delivery);
    }
    letters
}

/// One request the receiver saw.
#[derive(Debug, Clone)]
pub struct Request {
    pub path: String,
    pub headers: HeaderMap,
    pub body: String,
    pub at: Instant,
    pub status: u16,
}

impl Request {
    /// The body as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }

    pub fn header(&self, name: &str) -> &str {
        self.headers.get(name).map(|v| v.to_str().unwrap()).unwrap_or("")
    }
}

/// Decides the answer to a request: status and optional Retry-After.
pub type Script = dyn Fn(&Request, usize) -> (u16, Option<&'static str>) + Send + Sync;

/// A recording HTTP receiver on a loopback port.
#[derive(Clone)]
pub struct Receiver {
    pub url: String,
    requests: Arc<Mutex<Vec<Request>>>,
}

#[derive(Clone)]
struct AppState {
    requests: Arc<Mutex<Vec<Request>>>,
    script: Arc<Script>,
    delay: Duration,
}

impl Receiver {
    /// Starts a receiver answering every path with `script(request, n)`,
    /// where `n` counts earlier requests, after waiting `delay`.
    pub async fn start(
        delay: Duration,
        script: impl Fn(&Request, usize) -> (u16, Option<&'static str>) + Send + Sync + 'static,
    ) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let requests = Arc::new(Mutex::new(Vec::new()));
        let state = AppState { requests: requests.clone(), script: Arc::new(script), delay };
        let app = Router::new().fallback(record).with_state(state);
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self { url, requests }
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<Request> {
        self.requests.lock().unwrap().clone()
    }

    /// Waits until `done(requests)` holds.
    pub async fn wait_for(
        &self,
        within: Duration,
        done: impl Fn(&[Request]) -> bool,
    ) -> Vec<Request> {
        let deadline = Instant::now() + within;
        loop {
            let requests = self.requests();
            if done(&requests) {
                return requests;
            }
            assert!(Instant::now() < deadline, "receiver condition not met; saw {requests:#?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

async fn record(
    State(state): State<AppState>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    tokio::time::sleep(state.delay).await;
    let mut request = Request {
        path: uri.path().to_owned(),
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
        at: Instant::now(),
        status: 0,
    };
    let mut requests = state.requests.lock().unwrap();
    let (status, retry_after) = (state.script)(&request, requests.len());
    request.status = status;
    requests.push(request);
    drop(requests);
    let status = StatusCode::from_u16(status).unwrap();
    match retry_after {
        Some(seconds) => (status, [("retry-after", seconds)], "busy").into_response(),
        None => (status, "ok").into_response(),
    }
}

/// Makes a test CA (`ca.pem`) and a server certificate for localhost and
/// 127.0.0.1 signed by it (`server.pem`, `server.key`) in `dir`, with the
/// openssl command-line tool.
#[allow(dead_code)] // Only the TLS tests use it.
pub fn make_certificates(dir: &std::path::Path) {
    let openssl = |args: &[&str]| {
        let status = std::process::Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .expect("openssl not found; install it with `apt-get install openssl`");
        assert!(status.success(), "openssl {args:?} failed");
    };
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
    openssl(
        &[
            &["req", "-x509"],
            &ec[..],
            &["-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=fim test CA"],
        ]
        .concat(),
    );
    openssl(
        &[
            &["req"],
            &ec[..],
            &["-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=localhost"],
        ]
        .concat(),
    );
    std::fs::write(dir.join("san.ext"), "subjectAltName=DNS:localhost,IP:127.0.0.1\n").unwrap();
    openssl(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.pem",
        "-days",
        "2",
        "-extfile",
        "san.ext",
    ]);
}
