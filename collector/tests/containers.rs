//! The collector on a real fanotify group and real Docker containers,
//! publishing on the in-process bus. Needs root and a running Docker
//! daemon; the image is built locally from busybox-static.
//!
//! Every change is made inside a container with `docker exec`, so the
//! events carry in-container paths and the container's identity.

mod support;

use std::time::Duration;

use bus::{Bus, Consumer, ConsumerSpec, StageContext};
use collector::{Config, Metrics};
use prometheus_client::registry::Registry;
use schemas::{ChangeKind, ContainerInfo, RawEvent, RawPath, Source};
use support::docker::{self, Container};
use tokio::task::JoinHandle;
use tokio::time::{Instant, timeout};
use tokio_util::sync::CancellationToken;

const NODE: &str = "test-node";
// Generous: the machine is shared with other builds.
const WAIT: Duration = Duration::from_secs(20);

struct Harness {
    consumer: Consumer,
    registry: Registry,
    shutdown: CancellationToken,
    task: JoinHandle<Result<(), collector::Error>>,
    seen: Vec<RawEvent>,
}

impl Harness {
    /// Runs the collector with containers on and no host paths.
    async fn start() -> Self {
        docker::ensure_image();
        let bus = Bus::memory();
        let ctx = StageContext::standalone(bus.clone());
        let shutdown = ctx.shutdown.clone();
        let mut registry = Registry::default();
        let metrics = Metrics::register(&mut registry);
        // Test containers carry the ignore label (see support::docker).
        let config = Config { node: NODE.into(), watch_ignored: true, ..Config::default() };
        let task = tokio::spawn(collector::run(config, metrics, ctx.clone()));
        if timeout(WAIT, ctx.ready.wait()).await.is_err() {
            panic!("collector not ready in time: {:?}", task.await);
        }
        let spec = ConsumerSpec::new(schemas::stream::EVENTS, "test", "fim.events.>");
        let consumer = bus.consumer(spec).await.expect("events consumer");
        Self { consumer, registry, shutdown, task, seen: Vec::new() }
    }

    /// Waits for an event of container `id` matching `wanted`.
    async fn expect(
        &mut self,
        id: &str,
        what: &str,
        wanted: impl Fn(&RawEvent) -> bool,
    ) -> RawEvent {
        let matches = |e: &RawEvent| container_of(e).is_some_and(|c| c.id == id) && wanted(e);
        if let Some(found) = self.seen.iter().find(|e| matches(e)) {
            return found.clone();
        }
        let deadline = Instant::now() + WAIT;
        loop {
            let next = tokio::time::timeout_at(deadline, self.consumer.next()).await;
            let Ok(Some(Ok(delivery))) = next else {
                let mine: Vec<_> = self
                    .seen
                    .iter()
                    .filter(|e| container_of(e).is_some_and(|c| c.id == id))
                    .collect();
                panic!("no event {what} in container {id}; its events: {mine:#?}");
            };
            delivery.ack().await.expect("ack");
            let event: RawEvent = schemas::decode(&delivery.payload).expect("a RawEvent");
            self.seen.push(event.clone());
            if matches(&event) {
                return event;
            }
        }
    }

    async fn expect_change(&mut self, id: &str, kinds: &[ChangeKind], path: &str) -> RawEvent {
        let path = RawPath::from(path);
        let what = format!("{kinds:?} {path}");
        self.expect(id, &what, |e| kinds.contains(&e.change) && e.path == path).await
    }

    fn metrics(&self) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry).expect("metrics");
        text
    }

    /// Waits until the metric `name` (no labels) reaches `at_least`.
    async fn wait_metric(&self, name: &str, at_least: f64) {
        let deadline = Instant::now() + WAIT;
        let value = |text: String| {
            let line = text.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(' '));
            line.and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0)
        };
        while value(self.metrics()) < at_least {
            assert!(Instant::now() < deadline, "{name} < {at_least}:\n{}", self.metrics());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn stop(self) {
        self.shutdown.cancel();
        let outcome = timeout(WAIT, self.task).await.expect("collector stops in time");
        outcome.expect("collector task").expect("collector returns Ok");
    }
}

fn container_of(event: &RawEvent) -> Option<&ContainerInfo> {
    match &event.source {
        Source::Container(info) => Some(info),
        Source::Host { .. } => None,
    }
}

const MODIFIED: &[ChangeKind] = &[ChangeKind::Modified];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_four_attacks_are_reported_with_container_paths_and_identity() {
    docker::ensure_image();
    let c = Container::run("fim-test-attacks", &[]);
    let mut h = Harness::start().await;
    let root = h.expect_change(&c.id, &[ChangeKind::Inventory], "/").await;
    assert!(root.is_dir);

    c.sh("echo 'evil:x:0:0::/:/bin/sh' >> /etc/passwd");
    let passwd = h.expect_change(&c.id, MODIFIED, "/etc/passwd").await;
    let info = container_of(&passwd).expect("a container event").clone();
    assert_eq!(info.name.as_deref(), Some("fim-test-attacks"));
    assert_eq!(info.image.as_deref(), Some(docker::IMAGE));
    assert!(info.image_id.as_deref().is_some_and(|id| id.starts_with("sha256:")), "{info:?}");
    let layers = passwd.container_root.clone().expect("overlay layers");
    assert_eq!(layers.upper_dir, RawPath::from(c.upper_dir().as_str()));
    assert!(!layers.lower_dirs.is_empty());
    assert_eq!(passwd.host_path, layers.upper_dir.join(b"etc/passwd"));

    // sed writes a temporary file and renames it over the original. When
    // /app is copied up by this very command, the writes can precede the
    // directory's mark and are then reported from its listing as a
    // modification instead.
    c.sh("sed -i 's#//db/#//evil/#' /app/application.properties");
    let kinds = [ChangeKind::Renamed, ChangeKind::Modified];
    let sed = h.expect_change(&c.id, &kinds, "/app/application.properties").await;
    if let Some(previous) = sed.previous_path {
        assert!(previous.as_bytes().starts_with(b"/app/"), "{previous}");
    }

    c.sh("echo 'malicious' > /tmp/evil.jar && cp /tmp/evil.jar /app/app.jar");
    h.expect_change(&c.id, MODIFIED, "/app/app.jar").await;

    c.sh("echo '<script>steal()</script>' >> /app/templates/index.html");
    h.expect_change(&c.id, MODIFIED, "/app/templates/index.html").await;
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_write_pattern_is_reported_by_kind_and_container_path() {
    docker::ensure_image();
    let c = Container::run("fim-test-patterns", &[]);
    let mut h = Harness::start().await;
    h.expect_change(&c.id, &[ChangeKind::Inventory], "/").await;
    let id = c.id.clone();
    let created = &[ChangeKind::Created];

    c.sh("echo more >> /app/templates/index.html");
    h.expect_change(&id, MODIFIED, "/app/templates/index.html").await;
    c.sh("echo fresh > /tmp/notes && echo rewritten > /tmp/notes");
    h.expect_change(&id, created, "/tmp/notes").await;
    h.expect_change(&id, MODIFIED, "/tmp/notes").await;

    c.sh("echo a=1 > /app/.tmp && mv /app/.tmp /app/conf.properties");
    let renamed = h.expect_change(&id, &[ChangeKind::Renamed], "/app/conf.properties").await;
    assert_eq!(renamed.previous_path, Some("/app/.tmp".into()));
    c.sh("echo new > /tmp/new.jar && mv /tmp/new.jar /app/app.jar");
    let moved = h.expect_change(&id, &[ChangeKind::Renamed], "/app/app.jar").await;
    assert_eq!(moved.previous_path, Some("/tmp/new.jar".into()));

    c.sh("rm /etc/passwd");
    let whiteout = h.expect_change(&id, &[ChangeKind::Deleted], "/etc/passwd").await;
    assert!(whiteout.host_path.as_bytes().ends_with(b"/etc/passwd"));
    c.sh("rm /tmp/notes");
    h.expect_change(&id, &[ChangeKind::Deleted], "/tmp/notes").await;

    c.sh("chmod 600 /app/application.properties");
    h.expect_change(&id, &[ChangeKind::Attributes], "/app/application.properties").await;
    c.sh("chown 1000 /app/conf.properties");
    h.expect_change(&id, &[ChangeKind::Attributes], "/app/conf.properties").await;

    c.sh("ln /app/conf.properties /app/hard && ln -s /etc/shadow /app/soft");
    h.expect_change(&id, created, "/app/hard").await;
    h.expect_change(&id, created, "/app/soft").await;

    c.sh("mkdir -p /app/plugins/x && echo p > /app/plugins/x/p.conf");
    let dir = h.expect_change(&id, created, "/app/plugins").await;
    assert!(dir.is_dir);
    h.expect_change(&id, &[ChangeKind::Created, ChangeKind::Modified], "/app/plugins/x/p.conf")
        .await;

    c.sh("touch \"$(printf '/app/bad\\377name')\"");
    let odd = RawPath::from_bytes(&b"/app/bad\xffname"[..]);
    h.expect(&id, "a non-UTF-8 name", |e| e.path == odd).await;
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_container_started_later_is_watched_within_a_second_and_dropped_when_it_exits() {
    docker::ensure_image();
    let mut h = Harness::start().await;
    let started = Instant::now();
    let c = Container::run("fim-test-later", &[]);
    h.expect_change(&c.id, &[ChangeKind::Inventory], "/").await;
    let watched_after = started.elapsed();
    eprintln!("container watched {watched_after:?} after docker run returned");
    assert!(watched_after < Duration::from_secs(2), "took {watched_after:?}");

    c.sh("echo 'evil:x:0:0::/:/bin/sh' >> /etc/passwd");
    h.expect_change(&c.id, &[ChangeKind::Modified, ChangeKind::Inventory], "/etc/passwd").await;

    c.remove();
    // Other tests' containers may stop meanwhile: at least this one did.
    h.wait_metric("fim_collector_containers_stopped_total", 1.0).await;
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bind_mounted_volume_is_watched_under_its_mount_point() {
    docker::ensure_image();
    let volume = tempfile::tempdir().expect("volume directory");
    std::fs::write(volume.path().join("seed.txt"), "seed\n").expect("seed file");
    let host = std::fs::canonicalize(volume.path()).expect("canonical volume");
    let bind = format!("{}:/data", host.display());
    let c = Container::run("fim-test-volume", &["-v", &bind]);
    let mut h = Harness::start().await;

    let seed = h.expect_change(&c.id, &[ChangeKind::Inventory], "/data/seed.txt").await;
    assert_eq!(seed.host_path, RawPath::from(host.join("seed.txt")));
    assert_eq!(seed.container_root, None, "a volume has no image layers");

    c.sh("echo secret > /data/dump.sql");
    let dump = h.expect_change(&c.id, MODIFIED, "/data/dump.sql").await;
    assert_eq!(dump.host_path, RawPath::from(host.join("dump.sql")));
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_writing_process_is_attributed_while_it_runs() {
    docker::ensure_image();
    let c = Container::run("fim-test-writer", &[]);
    let mut h = Harness::start().await;
    // Copy /etc up first: a write racing the copy-up of its directory is
    // reported from a listing, which knows no process.
    c.sh("touch /etc/warm");
    h.expect_change(&c.id, &[ChangeKind::Created], "/etc/warm").await;

    // The trailing command keeps sh from exec'ing `sleep` in its place:
    // the process is described when its event is read, by its pid.
    c.sh("echo 'evil:x:0:0::/:/bin/sh' >> /etc/passwd; sleep 2; echo done");
    let passwd = h.expect_change(&c.id, MODIFIED, "/etc/passwd").await;
    let process = passwd.process.expect("the writer");
    assert_eq!(process.command.as_deref(), Some("sh"));
    assert_eq!(process.uid, Some(0));
    let exe = process.executable.expect("its executable");
    assert!(exe.as_bytes().ends_with(b"/bin/busybox"), "{exe}");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_container_labelled_to_be_ignored_is_not_watched_by_default() {
    docker::ensure_image();
    let c = Container::run("fim-test-ignored", &[]);
    let bus = Bus::memory();
    let ctx = StageContext::standalone(bus.clone());
    let config = Config { node: NODE.into(), ..Config::default() };
    let metrics = Metrics::register(&mut Registry::default());
    let task = tokio::spawn(collector::run(config, metrics, ctx.clone()));
    timeout(WAIT, ctx.ready.wait()).await.expect("collector ready");
    let spec = ConsumerSpec::new(schemas::stream::EVENTS, "test", "fim.events.>");
    let mut consumer = bus.consumer(spec).await.expect("events consumer");

    c.sh("echo 'evil:x:0:0::/:/bin/sh' >> /etc/passwd");
    let deadline = Instant::now() + Duration::from_secs(2);
    while let Ok(Some(Ok(delivery))) = tokio::time::timeout_at(deadline, consumer.next()).await {
        let event: RawEvent = schemas::decode(&delivery.payload).expect("a RawEvent");
        assert!(container_of(&event).is_none_or(|info| info.id != c.id), "{event:?}");
    }
    ctx.shutdown.cancel();
    timeout(WAIT, task).await.expect("stops").expect("task").expect("Ok");
}
