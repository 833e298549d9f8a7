//! One file change is one trace: the four stage processes export spans over
//! OTLP/HTTP to a receiver in the test, and the spans of the change form one
//! connected tree that spans every stage and names the path.

mod common;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::routing::post;
use common::{Fim, append};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use prost::Message;
use testkit::NatsServer;

#[derive(Debug, Clone)]
struct SpanRecord {
    service: String,
    trace_id: Vec<u8>,
    span_id: Vec<u8>,
    parent_span_id: Vec<u8>,
    attributes: HashMap<String, String>,
}

type Spans = Arc<Mutex<Vec<SpanRecord>>>;

fn text(value: &Option<AnyValue>) -> String {
    match value.as_ref().and_then(|v| v.value.as_ref()) {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        Some(other) => format!("{other:?}"),
        None => String::new(),
    }
}

fn attributes(list: &[KeyValue]) -> HashMap<String, String> {
    list.iter().map(|kv| (kv.key.clone(), text(&kv.value))).collect()
}

async fn receive(State(spans): State<Spans>, body: Bytes) -> &'static str {
    let Ok(request) = ExportTraceServiceRequest::decode(body) else { return "" };
    let mut spans = spans.lock().unwrap();
    for resource in request.resource_spans {
        let resource_attributes =
            resource.resource.map(|r| attributes(&r.attributes)).unwrap_or_default();
        let service = resource_attributes.get("service.name").cloned().unwrap_or_default();
        for scope in resource.scope_spans {
            for span in scope.spans {
                spans.push(SpanRecord {
                    service: service.clone(),
                    trace_id: span.trace_id,
                    span_id: span.span_id,
                    parent_span_id: span.parent_span_id,
                    attributes: attributes(&span.attributes),
                });
            }
        }
    }
    ""
}

async fn start_receiver() -> (String, Spans) {
    let spans = Spans::default();
    let app = Router::new().route("/v1/traces", post(receive)).with_state(spans.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (endpoint, spans)
}

// The trace whose spans mention `path` and come from every stage.
fn complete_trace(spans: &[SpanRecord], path: &str) -> Option<Vec<SpanRecord>> {
    let traces: HashSet<&Vec<u8>> = spans
        .iter()
        .filter(|s| s.attributes.get("path").is_some_and(|p| p == path))
        .map(|s| &s.trace_id)
        .collect();
    let services = ["fim-collector", "fim-hasher", "fim-evaluator", "fim-notifier"];
    traces.into_iter().find_map(|trace| {
        let members: Vec<SpanRecord> =
            spans.iter().filter(|s| &s.trace_id == trace).cloned().collect();
        let all = services.iter().all(|svc| members.iter().any(|s| s.service == *svc));
        all.then_some(members)
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn one_file_change_is_one_connected_trace_across_four_stage_processes() {
    let (endpoint, spans) = start_receiver().await;
    let server = NatsServer::start().unwrap();
    let url = server.url();
    let watched = tempfile::tempdir().unwrap();
    let passwd = watched.path().join("passwd");
    std::fs::write(&passwd, "root:x:0:0:root:/root:/bin/sh\n").unwrap();
    let data = tempfile::tempdir().unwrap();
    let env =
        [("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()), ("OTEL_BSP_SCHEDULE_DELAY", "100")];
    let watch = watched.path().to_str().unwrap();
    let stages = [
        Fim::start_with_env(&["notifier", "--nats", &url], &env),
        Fim::start_with_env(
            &["evaluator", "--nats", &url, "--data-dir", data.path().to_str().unwrap()],
            &env,
        ),
        Fim::start_with_env(&["hasher", "--nats", &url], &env),
        Fim::start_with_env(
            &["collector", "--nats", &url, "--no-containers", "--watch", watch],
            &env,
        ),
    ];
    for stage in &stages {
        stage.wait_ready();
    }
    tokio::time::sleep(Duration::from_millis(1000)).await;
    append(&passwd, "evil:x:0:0::/:/bin/sh");

    let path = passwd.to_str().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let trace = loop {
        if let Some(trace) = complete_trace(&spans.lock().unwrap(), path) {
            break trace;
        }
        assert!(Instant::now() < deadline, "no trace through all four stages for {path}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };

    let ids: HashSet<&Vec<u8>> = trace.iter().map(|s| &s.span_id).collect();
    let roots: Vec<&SpanRecord> = trace.iter().filter(|s| s.parent_span_id.is_empty()).collect();
    assert_eq!(roots.len(), 1, "one root span: {roots:?}");
    assert_eq!(roots[0].service, "fim-collector");
    for span in trace.iter().filter(|s| !s.parent_span_id.is_empty()) {
        assert!(ids.contains(&span.parent_span_id), "span's parent is in the trace: {span:?}");
    }
    let rules: Vec<&String> = trace.iter().filter_map(|s| s.attributes.get("rule")).collect();
    assert!(rules.iter().any(|r| r.as_str() == "host-path-changed"), "a span names the rule");
    for stage in stages {
        assert!(stage.terminate().success());
    }
}
