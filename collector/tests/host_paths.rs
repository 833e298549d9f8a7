//! The collector on a real fanotify group and the in-process bus, watching a
//! temporary directory. Needs root (CAP_SYS_ADMIN) like the collector.
//!
//! Changes are made by child processes (`sh`, `sed`, `chmod`): the
//! collector ignores its own process, and the test runs inside it.

use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use bus::{Bus, Consumer, ConsumerSpec, Outgoing, StageContext};
use collector::{Config, Metrics};
use prometheus_client::registry::Registry;
use schemas::{ChangeKind, RawEvent, RawPath, RescanRequest, SCHEMA_VERSION, Source, subject};
use tokio::task::JoinHandle;
use tokio::time::{Instant, timeout};
use tokio_util::sync::CancellationToken;

const NODE: &str = "test-node";
// Generous: the machine is shared with other builds.
const WAIT: Duration = Duration::from_secs(15);

struct Harness {
    dir: tempfile::TempDir,
    root: PathBuf,
    bus: Bus,
    consumer: Consumer,
    shutdown: CancellationToken,
    task: JoinHandle<Result<(), collector::Error>>,
    seen: Vec<RawEvent>,
}

impl Harness {
    /// Prepares a directory with `setup`, then runs the collector on it
    /// (excluding `<dir>/data`) and waits until it is ready.
    async fn start(setup: impl FnOnce(&Path)) -> Self {
        let dir = tempfile::tempdir().expect("temporary directory");
        setup(dir.path());
        let root = std::fs::canonicalize(dir.path()).expect("canonical temporary directory");
        let config = Config {
            node: NODE.into(),
            watch: vec![root.clone()],
            exclude: vec![root.join("data")],
            containers: false,
            ..Config::default()
        };
        Self::run(dir, root, config).await
    }

    async fn run(dir: tempfile::TempDir, root: PathBuf, config: Config) -> Self {
        let bus = Bus::memory();
        let ctx = StageContext::standalone(bus.clone());
        let shutdown = ctx.shutdown.clone();
        let metrics = Metrics::register(&mut Registry::default());
        let task = tokio::spawn(collector::run(config, metrics, ctx.clone()));
        if timeout(WAIT, ctx.ready.wait()).await.is_err() {
            panic!("collector not ready in time: {:?}", task.await);
        }
        let spec = ConsumerSpec::new(schemas::stream::EVENTS, "test", "fim.events.>");
        let consumer = bus.consumer(spec).await.expect("events consumer");
        Self { dir, root, bus, consumer, shutdown, task, seen: Vec::new() }
    }

    fn path(&self, relative: &str) -> RawPath {
        let path = if relative.is_empty() { self.root.clone() } else { self.root.join(relative) };
        RawPath::from(path)
    }

    /// Runs a shell script in the watched directory, as another process.
    fn sh(&self, script: &str) {
        let status = Command::new("sh").arg("-c").arg(script).current_dir(&self.root).status();
        assert!(status.expect("sh runs").success(), "script failed: {script}");
    }

    /// Waits for an event matching `wanted`, keeping every event seen.
    async fn expect(&mut self, what: &str, wanted: impl Fn(&RawEvent) -> bool) -> RawEvent {
        if let Some(found) = self.seen.iter().find(|e| wanted(e)) {
            return found.clone();
        }
        let deadline = Instant::now() + WAIT;
        loop {
            let next = tokio::time::timeout_at(deadline, self.consumer.next()).await;
            let Ok(Some(Ok(delivery))) = next else {
                panic!("no event {what}; seen: {:#?}", self.seen);
            };
            delivery.ack().await.expect("ack");
            let event: RawEvent = schemas::decode(&delivery.payload).expect("a RawEvent");
            self.seen.push(event.clone());
            if wanted(&event) {
                return event;
            }
        }
    }

    async fn expect_change(&mut self, change: ChangeKind, relative: &str) -> RawEvent {
        let path = self.path(relative);
        let what = format!("{change:?} {path}");
        self.expect(&what, |e| e.change == change && e.path == path).await
    }

    async fn stop(self) -> Vec<RawEvent> {
        self.shutdown.cancel();
        let outcome = timeout(WAIT, self.task).await.expect("collector stops in time");
        outcome.expect("collector task").expect("collector returns Ok");
        drop(self.dir);
        self.seen
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inventory_reports_existing_paths_without_following_links() {
    let mut h = Harness::start(|dir| {
        std::fs::write(dir.join("existing.txt"), "old\n").unwrap();
        std::fs::create_dir_all(dir.join("sub/inner")).unwrap();
        std::os::unix::fs::symlink("/etc", dir.join("link")).unwrap();
    })
    .await;

    let root = h.expect_change(ChangeKind::Inventory, "").await;
    assert!(root.is_dir);
    let file = h.expect_change(ChangeKind::Inventory, "existing.txt").await;
    assert!(!file.is_dir);
    assert_eq!(file.host_path, file.path);
    assert_eq!(file.node, NODE);
    assert_eq!(file.schema_version, SCHEMA_VERSION);
    assert_eq!(file.source, Source::Host { root: RawPath::from(h.root.as_path()) });
    assert!(h.expect_change(ChangeKind::Inventory, "sub/inner").await.is_dir);
    assert!(!h.expect_change(ChangeKind::Inventory, "link").await.is_dir);

    let events = h.stop().await;
    assert!(events.iter().all(|e| !e.path.as_bytes().ends_with(b"link/passwd")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_after_ready_are_reported_with_their_kind_and_process() {
    let mut h = Harness::start(|dir| {
        std::fs::write(dir.join("existing.txt"), "old\n").unwrap();
        std::fs::write(dir.join("app.properties"), "url=a\n").unwrap();
        std::fs::write(dir.join("doomed"), "x\n").unwrap();
    })
    .await;

    h.sh("echo more >> existing.txt");
    let modified = h.expect_change(ChangeKind::Modified, "existing.txt").await;
    let process = modified.process.expect("process attribution");
    assert!(process.pid > 0);

    h.sh("echo new > new.txt");
    h.expect_change(ChangeKind::Created, "new.txt").await;
    h.expect_change(ChangeKind::Modified, "new.txt").await;

    h.sh("sed -i s/a/b/ app.properties");
    let renamed = h.expect_change(ChangeKind::Renamed, "app.properties").await;
    let previous = renamed.previous_path.expect("previous path of a rename");
    assert!(previous.as_bytes().starts_with(h.path("sed").as_bytes()), "{previous}");

    h.sh("chmod 600 existing.txt");
    h.expect_change(ChangeKind::Attributes, "existing.txt").await;

    h.sh("rm doomed");
    h.expect_change(ChangeKind::Deleted, "doomed").await;

    h.sh("mkdir newdir && echo x > newdir/inside");
    assert!(h.expect_change(ChangeKind::Created, "newdir").await.is_dir);
    h.expect_change(ChangeKind::Created, "newdir/inside").await;
    // The new directory is watched: later writes inside it are seen.
    h.sh("echo y >> newdir/inside");
    h.expect_change(ChangeKind::Modified, "newdir/inside").await;

    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_utf8_file_names_survive_as_bytes() {
    let mut h = Harness::start(|_| {}).await;

    h.sh(r#"echo x > "$(printf 'caf\351\377')""#);
    let mut expected = h.root.as_os_str().as_bytes().to_vec();
    expected.extend_from_slice(b"/caf\xe9\xff");
    let expected = RawPath::from_bytes(expected);
    h.expect("non-UTF-8 create", |e| e.change == ChangeKind::Created && e.path == expected).await;

    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renamed_directories_keep_reporting_under_their_new_path() {
    let mut h = Harness::start(|dir| {
        std::fs::create_dir_all(dir.join("conf/deep")).unwrap();
    })
    .await;

    h.sh("mv conf etc");
    let renamed = h.expect_change(ChangeKind::Renamed, "etc").await;
    assert!(renamed.is_dir);
    h.sh("echo x > etc/deep/file");
    h.expect_change(ChangeKind::Modified, "etc/deep/file").await;

    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn excluded_paths_and_own_writes_produce_nothing() {
    let mut h = Harness::start(|dir| {
        std::fs::create_dir(dir.join("data")).unwrap();
        std::fs::write(dir.join("data/state"), "s").unwrap();
    })
    .await;

    h.sh("echo x >> data/state && echo y > data/new && mkdir data/d");
    std::fs::write(h.root.join("own.txt"), "written by the collector's process").unwrap();
    // Events are handled in order, so once this one arrives the earlier
    // ones would have arrived too.
    h.sh("echo z > sentinel");
    h.expect_change(ChangeKind::Modified, "sentinel").await;

    let data = h.path("data");
    let own = h.path("own.txt");
    let events = h.stop().await;
    let leaked: Vec<_> = events
        .iter()
        .filter(|e| e.path.as_bytes().starts_with(data.as_bytes()) || e.path == own)
        .collect();
    assert!(leaked.is_empty(), "{leaked:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rescan_request_publishes_the_inventory_again() {
    let mut h = Harness::start(|dir| std::fs::write(dir.join("kept"), "k").unwrap()).await;
    h.expect_change(ChangeKind::Inventory, "kept").await;

    let request = RescanRequest {
        schema_version: SCHEMA_VERSION,
        id: "rescan-1".into(),
        node: NODE.into(),
        reason: "test".into(),
    };
    let payload = schemas::encode(&request).unwrap();
    h.bus.publish(Outgoing::new(subject::rescan(NODE), &request.id, payload)).await.unwrap();

    // Only events that arrive from now on count.
    h.seen.clear();
    h.expect_change(ChangeKind::Inventory, "kept").await;

    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_file_root_reports_only_that_file() {
    let dir = tempfile::tempdir().unwrap();
    let root = std::fs::canonicalize(dir.path()).unwrap();
    std::fs::write(root.join("passwd"), "root:x:0:0\n").unwrap();
    let config = Config {
        node: NODE.into(),
        watch: vec![root.join("passwd")],
        containers: false,
        ..Config::default()
    };
    let mut h = Harness::run(dir, root, config).await;

    h.sh("echo sibling > other && echo 'evil:x:0:0::/:/bin/sh' >> passwd");
    let event = h.expect_change(ChangeKind::Modified, "passwd").await;
    assert_eq!(event.source, Source::Host { root: h.path("passwd") });

    let other = h.path("other");
    let events = h.stop().await;
    assert!(events.iter().all(|e| e.path != other), "{events:#?}");
}
