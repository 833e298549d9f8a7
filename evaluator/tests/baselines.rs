//! The evaluator against the in-process bus and a real sled database:
//! first sightings become baselines, a difference alerts once, and
//! baselines survive a restart.

use std::path::Path;
use std::time::Duration;

use bus::{Bus, Consumer, ConsumerSpec, Outgoing, StageContext};
use schemas::{
    Alert, ChangeKind, FileKind, FileState, Observation, RawEvent, RawPath, SCHEMA_VERSION, Source,
    stream, subject,
};
use time::OffsetDateTime;
use tokio::task::JoinHandle;
use tokio::time::timeout;
use tokio_util::sync::CancellationToken;

struct Running {
    bus: Bus,
    shutdown: CancellationToken,
    task: JoinHandle<Result<(), evaluator::Error>>,
    alerts: Consumer,
}

async fn start(data_dir: &Path) -> Running {
    let bus = Bus::memory();
    let ctx = StageContext::standalone(bus.clone());
    let ready = ctx.ready.clone();
    let config = evaluator::Config::new(data_dir.to_owned());
    let metrics = evaluator::Metrics::default();
    let shutdown = ctx.shutdown.clone();
    let task = tokio::spawn(evaluator::run(config, metrics, ctx));
    timeout(Duration::from_secs(10), ready.wait()).await.expect("evaluator ready");
    let alerts =
        bus.consumer(ConsumerSpec::new(stream::ALERTS, "test", "fim.alerts.>")).await.unwrap();
    Running { bus, shutdown, task, alerts }
}

impl Running {
    async fn observe(&self, sequence: i64, change: ChangeKind, content: Option<&str>) {
        let observation = observation(sequence, change, content);
        let payload = schemas::encode(&observation).unwrap();
        let message = Outgoing::new(subject::observations(0), &observation.id, payload);
        self.bus.publish(message).await.unwrap();
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

    async fn stop(self) {
        self.shutdown.cancel();
        timeout(Duration::from_secs(10), self.task).await.unwrap().unwrap().unwrap();
    }
}

fn observation(sequence: i64, change: ChangeKind, content: Option<&str>) -> Observation {
    let state = content.map(|text| FileState {
        kind: FileKind::File,
        blake3: Some(blake3::hash(text.as_bytes()).to_hex().to_string()),
        size: text.len() as u64,
        mode: 0o100644,
        uid: 0,
        gid: 0,
        mtime_ns: sequence,
        link_target: None,
        partial: false,
        unstable: false,
    });
    Observation {
        schema_version: SCHEMA_VERSION,
        id: format!("obs:{sequence}"),
        event: RawEvent {
            schema_version: SCHEMA_VERSION,
            id: format!("ev:{sequence}"),
            node: "node-1".into(),
            time: OffsetDateTime::from_unix_timestamp(1_700_000_000 + sequence).unwrap(),
            source: Source::Host { root: RawPath::from("/etc") },
            path: RawPath::from("/etc/passwd"),
            host_path: RawPath::from("/etc/passwd"),
            previous_path: None,
            change,
            is_dir: false,
            process: None,
            container_root: None,
        },
        state,
        image: None,
        content: None,
    }
}

fn hash(text: &str) -> Option<String> {
    Some(blake3::hash(text.as_bytes()).to_hex().to_string())
}

#[tokio::test]
async fn a_change_alerts_once_with_before_and_after() {
    let data = tempfile::tempdir().unwrap();
    let mut evaluator = start(data.path()).await;
    evaluator.observe(1, ChangeKind::Inventory, Some("root")).await;
    evaluator.no_alert().await;

    evaluator.observe(2, ChangeKind::Modified, Some("root\nevil")).await;
    let alert = evaluator.next_alert().await;
    assert_eq!(alert.change, ChangeKind::Modified);
    assert_eq!(alert.before.unwrap().blake3, hash("root"));
    assert_eq!(alert.after.unwrap().blake3, hash("root\nevil"));
    assert_eq!(alert.id, "alert:obs:2");

    // The same content seen again (another close after write) is no news.
    evaluator.observe(3, ChangeKind::Modified, Some("root\nevil")).await;
    evaluator.no_alert().await;
    evaluator.stop().await;
}

#[tokio::test]
async fn baselines_survive_a_restart() {
    let data = tempfile::tempdir().unwrap();
    let first = start(data.path()).await;
    first.observe(1, ChangeKind::Inventory, Some("root")).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    first.stop().await;

    let mut second = start(data.path()).await;
    second.observe(2, ChangeKind::Inventory, Some("root")).await;
    second.no_alert().await;
    second.observe(3, ChangeKind::Inventory, Some("changed while down")).await;
    let alert = second.next_alert().await;
    assert_eq!(alert.change, ChangeKind::Modified);
    assert_eq!(alert.before.unwrap().blake3, hash("root"));
    second.stop().await;
}

#[tokio::test]
async fn a_deletion_alerts_and_a_recreation_alerts_again() {
    let data = tempfile::tempdir().unwrap();
    let mut evaluator = start(data.path()).await;
    evaluator.observe(1, ChangeKind::Inventory, Some("root")).await;
    evaluator.observe(2, ChangeKind::Deleted, None).await;
    let deleted = evaluator.next_alert().await;
    assert_eq!(deleted.change, ChangeKind::Deleted);
    assert!(deleted.after.is_none());

    evaluator.observe(3, ChangeKind::Created, Some("root")).await;
    let created = evaluator.next_alert().await;
    assert_eq!(created.change, ChangeKind::Created);
    assert!(created.before.is_none());
    evaluator.stop().await;
}

#[tokio::test]
async fn late_observations_of_older_events_are_ignored() {
    let data = tempfile::tempdir().unwrap();
    let mut evaluator = start(data.path()).await;
    evaluator.observe(5, ChangeKind::Inventory, Some("new")).await;
    evaluator.observe(1, ChangeKind::Modified, Some("old")).await;
    evaluator.no_alert().await;
    evaluator.stop().await;
}
