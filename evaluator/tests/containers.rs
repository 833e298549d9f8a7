//! The evaluator on container observations, against the in-process bus and
//! a real sled database: image baselines, rules, learned and approved
//! baselines, findings and diffs, storms, comparison reports, rule reloads
//! and partition ownership.

use std::path::Path;
use std::time::Duration;

use bus::{Bus, Consumer, ConsumerSpec, Outgoing, StageContext};
use schemas::message::{ApprovalScope, BaselineApproval, ComparisonReport};
use schemas::{
    Alert, CapturedContent, ChangeKind, ContainerInfo, FileKind, FileState, ImageVersion,
    Observation, RawEvent, RawPath, RescanRequest, SCHEMA_VERSION, Severity, Source, stream,
    subject,
};
use time::OffsetDateTime;
use tokio::task::JoinHandle;
use tokio::time::timeout;
use tokio_util::sync::CancellationToken;

const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\nwww:x:33:33::/var/www:/bin/false\n";

struct Running {
    bus: Bus,
    shutdown: CancellationToken,
    task: JoinHandle<Result<(), evaluator::Error>>,
    alerts: Consumer,
    reports: Consumer,
    sequence: i64,
}

fn config(data_dir: &Path) -> evaluator::Config {
    let mut config = evaluator::Config::new(data_dir.to_owned());
    config.rescan_settle = Duration::ZERO;
    config
}

async fn start(config: evaluator::Config) -> Running {
    let bus = Bus::memory();
    let ctx = StageContext::standalone(bus.clone());
    let ready = ctx.ready.clone();
    let shutdown = ctx.shutdown.clone();
    let task = tokio::spawn(evaluator::run(config, evaluator::Metrics::default(), ctx));
    timeout(Duration::from_secs(10), ready.wait()).await.expect("evaluator ready");
    let spec = ConsumerSpec::new(stream::ALERTS, "test", "fim.alerts.>");
    let alerts = bus.consumer(spec).await.unwrap();
    let spec = ConsumerSpec::new(stream::REPORTS, "test", "fim.reports.>");
    let reports = bus.consumer(spec).await.unwrap();
    Running { bus, shutdown, task, alerts, reports, sequence: 0 }
}

fn container(id: &str) -> ContainerInfo {
    ContainerInfo {
        id: id.into(),
        name: Some("web".into()),
        image: Some("registry.local/shop/web:1.4".into()),
        namespace: Some("shop".into()),
        ..ContainerInfo::default()
    }
}

fn state(text: &str) -> FileState {
    FileState {
        kind: FileKind::File,
        blake3: Some(blake3::hash(text.as_bytes()).to_hex().to_string()),
        size: text.len() as u64,
        mode: 0o100644,
        uid: 0,
        gid: 0,
        mtime_ns: 0,
        link_target: None,
        partial: false,
        unstable: false,
    }
}

/// One change seen in a container: the path, the image's content (None:
/// not in the image) and the current content (None: gone).
struct Seen<'a> {
    container: &'a str,
    path: &'a str,
    change: ChangeKind,
    image: Option<&'a str>,
    now: Option<&'a str>,
    capture: bool,
    partition: u32,
}

impl<'a> Seen<'a> {
    fn new(
        container: &'a str,
        path: &'a str,
        image: Option<&'a str>,
        now: Option<&'a str>,
    ) -> Self {
        Self {
            container,
            path,
            change: ChangeKind::Modified,
            image,
            now,
            capture: false,
            partition: 0,
        }
    }
}

impl Running {
    async fn observe(&mut self, seen: Seen<'_>) {
        self.sequence += 1;
        let sequence = self.sequence;
        let content = seen.capture.then(|| CapturedContent {
            current: seen.now.unwrap_or_default().as_bytes().to_vec(),
            image: seen.image.map(|i| i.as_bytes().to_vec()),
            truncated: false,
        });
        let observation = Observation {
            schema_version: SCHEMA_VERSION,
            id: format!("obs:{sequence}"),
            event: RawEvent {
                schema_version: SCHEMA_VERSION,
                id: format!("ev:{sequence}"),
                node: "node-1".into(),
                time: OffsetDateTime::from_unix_timestamp(1_700_000_000 + sequence).unwrap(),
                source: Source::Container(container(seen.container)),
                path: RawPath::from(seen.path),
                host_path: RawPath::from(format!("/upper{}", seen.path).as_str()),
                previous_path: None,
                change: seen.change,
                is_dir: false,
                process: None,
                container_root: None,
            },
            state: seen.now.map(state),
            image: Some(ImageVersion { state: seen.image.map(state), layer: None }),
            content,
        };
        let payload = schemas::encode(&observation).unwrap();
        let message =
            Outgoing::new(subject::observations(seen.partition), &observation.id, payload);
        self.bus.publish(message).await.unwrap();
    }

    async fn publish<T: serde::Serialize>(&self, subject: String, id: &str, message: &T) {
        let payload = schemas::encode(message).unwrap();
        self.bus.publish(Outgoing::new(subject, id, payload)).await.unwrap();
    }

    async fn next_alert(&mut self) -> Alert {
        let delivery = timeout(Duration::from_secs(10), self.alerts.next()).await.unwrap();
        let delivery = delivery.unwrap().unwrap();
        delivery.ack().await.unwrap();
        schemas::decode(&delivery.payload).unwrap()
    }

    async fn no_alert(&mut self) {
        let next = timeout(Duration::from_millis(700), self.alerts.next()).await;
        if let Ok(Some(Ok(delivery))) = next {
            let alert: Alert = schemas::decode(&delivery.payload).unwrap();
            panic!("unexpected alert: {alert:?}");
        }
    }

    /// The next report about `container`, skipping the others.
    async fn report_of(&mut self, container: &str) -> ComparisonReport {
        loop {
            let delivery = timeout(Duration::from_secs(10), self.reports.next()).await.unwrap();
            let delivery = delivery.unwrap().unwrap();
            delivery.ack().await.unwrap();
            let report: ComparisonReport = schemas::decode(&delivery.payload).unwrap();
            if report.container.as_ref().is_some_and(|c| c.id == container) {
                return report;
            }
        }
    }

    async fn rescan(&self, id: &str) {
        let request = RescanRequest {
            schema_version: SCHEMA_VERSION,
            id: id.into(),
            node: "node-1".into(),
            reason: "test".into(),
        };
        self.publish(subject::rescan("node-1"), id, &request).await;
    }

    async fn stop(self) {
        self.shutdown.cancel();
        timeout(Duration::from_secs(10), self.task).await.unwrap().unwrap().unwrap();
    }
}

#[tokio::test]
async fn a_file_matching_its_image_is_silent_and_drift_alerts_once_with_diff_and_findings() {
    let data = tempfile::tempdir().unwrap();
    let mut evaluator = start(config(data.path())).await;
    let mut seen = Seen::new("c1", "/etc/passwd", Some(PASSWD), Some(PASSWD));
    seen.change = ChangeKind::Inventory;
    evaluator.observe(seen).await;
    evaluator.no_alert().await;

    let evil = format!("{PASSWD}evil:x:0:0::/:/bin/sh\n");
    let mut seen = Seen::new("c1", "/etc/passwd", Some(PASSWD), Some(&evil));
    seen.capture = true;
    evaluator.observe(seen).await;
    let alert = evaluator.next_alert().await;
    assert_eq!(alert.rule, "identity-files-changed");
    assert_eq!(alert.severity, Severity::Critical, "a uid 0 user raises the severity");
    assert_eq!(alert.findings, ["new user with uid 0 in /etc/passwd: evil"]);
    assert!(alert.diff.as_deref().unwrap().contains("+evil:x:0:0::/:/bin/sh\n"));
    assert_eq!(alert.before.unwrap().blake3, state(PASSWD).blake3);
    assert_eq!(alert.container.unwrap().namespace.as_deref(), Some("shop"));

    // The same content again alerts no more, nor does a flap between two
    // changed versions.
    let other = format!("{PASSWD}guest:x:1001:1001::/:/bin/sh\n");
    evaluator.observe(Seen::new("c1", "/etc/passwd", Some(PASSWD), Some(&evil))).await;
    evaluator.observe(Seen::new("c1", "/etc/passwd", Some(PASSWD), Some(&other))).await;
    assert_eq!(evaluator.next_alert().await.change, ChangeKind::Modified);
    evaluator.observe(Seen::new("c1", "/etc/passwd", Some(PASSWD), Some(&evil))).await;
    evaluator.no_alert().await;

    // Put back to the image version silently; made again, it alerts again.
    evaluator.observe(Seen::new("c1", "/etc/passwd", Some(PASSWD), Some(PASSWD))).await;
    evaluator.no_alert().await;
    evaluator.observe(Seen::new("c1", "/etc/passwd", Some(PASSWD), Some(&evil))).await;
    assert_eq!(evaluator.next_alert().await.rule, "identity-files-changed");
    evaluator.stop().await;
}

#[tokio::test]
async fn writable_noise_in_containers_is_quiet_by_default() {
    let data = tempfile::tempdir().unwrap();
    let mut evaluator = start(config(data.path())).await;
    for path in ["/tmp/upload.bin", "/var/log/nginx/access.log", "/var/cache/apt/pkgcache.bin"] {
        let mut seen = Seen::new("c1", path, None, Some("x"));
        seen.change = ChangeKind::Created;
        evaluator.observe(seen).await;
    }
    evaluator.no_alert().await;

    // A file created outside the noise and the rules is container drift.
    let mut seen = Seen::new("c1", "/srv/dropper.sh", None, Some("x"));
    seen.change = ChangeKind::Created;
    evaluator.observe(seen).await;
    let alert = evaluator.next_alert().await;
    assert_eq!((alert.rule.as_str(), alert.change), ("container-drift", ChangeKind::Created));
    evaluator.stop().await;
}

#[tokio::test]
async fn files_missing_from_the_image_are_learned_where_a_rule_says_so() {
    let data = tempfile::tempdir().unwrap();
    let rules = tempfile::tempdir().unwrap();
    let yaml = "rules:\n  - {id: app-data, paths: [/data/**], severity: medium, learn: true}\n";
    std::fs::write(rules.path().join("site.yaml"), yaml).unwrap();
    let mut config = config(data.path());
    config.rules_dir = Some(rules.path().to_owned());
    let mut evaluator = start(config).await;

    let mut seen = Seen::new("c1", "/data/state.db", None, Some("v1"));
    seen.change = ChangeKind::Created;
    evaluator.observe(seen).await;
    evaluator.no_alert().await;
    evaluator.observe(Seen::new("c1", "/data/state.db", None, Some("v2"))).await;
    let alert = evaluator.next_alert().await;
    assert_eq!(alert.rule, "app-data");
    assert_eq!(alert.before.unwrap().blake3, state("v1").blake3);
    evaluator.stop().await;
}

#[tokio::test]
async fn an_approval_sent_as_a_control_message_makes_the_change_the_baseline_once() {
    let data = tempfile::tempdir().unwrap();
    let mut evaluator = start(config(data.path())).await;
    let jar = Some("new build");
    evaluator.observe(Seen::new("c1", "/app/app.jar", Some("release"), jar)).await;
    let alert = evaluator.next_alert().await;
    assert_eq!(alert.rule, "application-artifacts-changed");
    evaluator.rescan("rescan-1").await;
    let report = evaluator.report_of("c1").await;
    assert_eq!((report.files_checked, report.differences), (1, 1));
    assert_eq!(report.differing_paths, [RawPath::from("/app/app.jar")]);

    let approval = BaselineApproval {
        schema_version: SCHEMA_VERSION,
        id: "approval-1".into(),
        time: OffsetDateTime::now_utc(),
        scope: ApprovalScope {
            image: Some("registry.local/shop/web:1.4".into()),
            ..ApprovalScope::default()
        },
        approver: Some("ops".into()),
        reason: Some("CHG-42".into()),
    };
    evaluator.publish(subject::BASELINE_APPROVALS.into(), &approval.id, &approval).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    evaluator.rescan("rescan-2").await;
    let report = evaluator.report_of("c1").await;
    assert_eq!(report.differences, 0, "{report:?}");

    // Another container of the same image with the approved content is fine.
    evaluator.observe(Seen::new("c2", "/app/app.jar", Some("release"), jar)).await;
    evaluator.no_alert().await;
    // A later change is compared with the approved state.
    evaluator.observe(Seen::new("c1", "/app/app.jar", Some("release"), Some("evil"))).await;
    let alert = evaluator.next_alert().await;
    assert_eq!(alert.before.unwrap().blake3, state("new build").blake3);
    evaluator.stop().await;
}

#[tokio::test]
async fn a_flood_in_one_container_becomes_one_aggregated_alert() {
    let data = tempfile::tempdir().unwrap();
    let mut config = config(data.path());
    config.storms =
        evaluator::StormLimits { window: Duration::from_secs(1), threshold: 3, max_paths: 5 };
    let mut evaluator = start(config).await;
    let paths: Vec<String> = (0..50).map(|i| format!("/app/lib/dep{i}.jar")).collect();
    for path in &paths {
        let mut seen = Seen::new("c1", path, None, Some("dropped"));
        seen.change = ChangeKind::Created;
        evaluator.observe(seen).await;
    }
    for _ in 0..3 {
        assert_eq!(evaluator.next_alert().await.rule, "application-artifacts-changed");
    }
    let storm = evaluator.next_alert().await;
    assert_eq!(storm.rule, "change-storm");
    assert_eq!(storm.findings[0], "47 further changes aggregated in one storm");
    assert_eq!(storm.findings[3], "and 42 more changes not listed");
    evaluator.no_alert().await;
    evaluator.stop().await;
}

#[tokio::test]
async fn rules_are_reloaded_when_their_files_change() {
    let data = tempfile::tempdir().unwrap();
    let rules = tempfile::tempdir().unwrap();
    let file = rules.path().join("site.yaml");
    std::fs::write(&file, "rules:\n  - {id: quiet, paths: [/srv/**], action: ignore}\n").unwrap();
    let mut config = config(data.path());
    config.rules_dir = Some(rules.path().to_owned());
    config.rules_reload = Duration::from_millis(100);
    let mut evaluator = start(config).await;
    evaluator.observe(Seen::new("c1", "/srv/a", Some("1"), Some("2"))).await;
    evaluator.no_alert().await;

    let loud = "rules:\n  - {id: loud-srv, paths: [/srv/**], severity: critical}\n";
    std::fs::write(&file, loud).unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    evaluator.observe(Seen::new("c1", "/srv/b", Some("1"), Some("2"))).await;
    let alert = evaluator.next_alert().await;
    assert_eq!((alert.rule.as_str(), alert.severity), ("loud-srv", Severity::Critical));

    // A broken file keeps the rules in force.
    std::fs::write(&file, "rules: [ {id: x, pathz: 1} ]\n").unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    evaluator.observe(Seen::new("c1", "/srv/c", Some("1"), Some("2"))).await;
    assert_eq!(evaluator.next_alert().await.rule, "loud-srv");
    evaluator.stop().await;
}

#[tokio::test]
async fn a_replica_evaluates_only_the_partitions_it_owns() {
    let data = tempfile::tempdir().unwrap();
    let mut config = config(data.path());
    config.partitions = 2;
    config.partition_ids = Some(vec![1]);
    let mut evaluator = start(config).await;
    let mut other = Seen::new("c1", "/srv/a", Some("1"), Some("2"));
    other.partition = 0;
    evaluator.observe(other).await;
    evaluator.no_alert().await;
    let mut owned = Seen::new("c2", "/srv/a", Some("1"), Some("2"));
    owned.partition = 1;
    evaluator.observe(owned).await;
    assert_eq!(evaluator.next_alert().await.container.unwrap().id, "c2");
    evaluator.stop().await;
}

#[tokio::test]
async fn invalid_rules_stop_the_evaluator_before_it_starts() {
    let data = tempfile::tempdir().unwrap();
    let rules = tempfile::tempdir().unwrap();
    std::fs::write(rules.path().join("bad.yaml"), "rules:\n  - {id: x}\n").unwrap();
    let mut config = config(data.path());
    config.rules_dir = Some(rules.path().to_owned());
    let ctx = StageContext::standalone(Bus::memory());
    let error = evaluator::run(config, evaluator::Metrics::default(), ctx).await.unwrap_err();
    assert!(error.to_string().contains("bad.yaml:2:"), "{error}");
}

#[tokio::test]
async fn a_scheduled_comparison_asks_nodes_to_rescan_and_reports_each_container() {
    let data = tempfile::tempdir().unwrap();
    let mut config = config(data.path());
    config.comparison_interval = Duration::from_millis(300);
    let mut evaluator = start(config).await;
    let mut seen = Seen::new("c1", "/etc/passwd", Some(PASSWD), Some(PASSWD));
    seen.change = ChangeKind::Inventory;
    evaluator.observe(seen).await;

    let spec = ConsumerSpec::new(stream::CONTROL, "test", "fim.control.rescan.>");
    let mut rescans = evaluator.bus.consumer(spec).await.unwrap();
    let delivery =
        timeout(Duration::from_secs(10), rescans.next()).await.unwrap().unwrap().unwrap();
    let request: RescanRequest = schemas::decode(&delivery.payload).unwrap();
    assert_eq!(request.node, "node-1");
    loop {
        let report = evaluator.report_of("c1").await;
        if report.trigger == "schedule" {
            assert_eq!((report.files_checked, report.differences), (1, 0));
            assert!(report.last_verified.is_some());
            break;
        }
    }
    evaluator.stop().await;
}
