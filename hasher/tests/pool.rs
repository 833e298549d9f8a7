//! The hasher pool against the in-process bus: events in, observations
//! with BLAKE3 and metadata out, on the partition that owns the source.

use std::time::Duration;

use bus::{Bus, ConsumerSpec, Outgoing, StageContext};
use schemas::{ChangeKind, FileKind, Observation, RawEvent, RawPath, SCHEMA_VERSION, Source};
use schemas::{stream, subject};
use time::OffsetDateTime;
use tokio::time::timeout;

fn event(id: &str, path: RawPath) -> RawEvent {
    RawEvent {
        schema_version: SCHEMA_VERSION,
        id: id.into(),
        node: "node-1".into(),
        time: OffsetDateTime::now_utc(),
        source: Source::Host { root: RawPath::from("/") },
        path: path.clone(),
        host_path: path,
        previous_path: None,
        change: ChangeKind::Modified,
        is_dir: false,
        process: None,
        container_root: None,
    }
}

#[tokio::test]
async fn every_event_becomes_an_observation_with_content_hash_or_gone() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("app.properties");
    std::fs::write(&file, "spring.datasource.url=jdbc:postgresql://db/app\n").unwrap();
    let odd = RawPath::from(dir.path()).join(b"caf\xe9");
    std::fs::write(odd.as_path(), "x").unwrap();

    let bus = Bus::memory();
    let ctx = StageContext::standalone(bus.clone());
    let ready = ctx.ready.clone();
    let mut config = hasher::Config::new("node-1");
    config.workers = 2;
    config.partitions = 4;
    let metrics = hasher::Metrics::register(&mut Default::default());
    let task = tokio::spawn(hasher::run(config, metrics, ctx.clone()));
    ready.wait().await;

    let events = [
        event("present", RawPath::from(file.as_path())),
        event("missing", RawPath::from(dir.path().join("gone").as_path())),
        event("odd", odd.clone()),
    ];
    for event in &events {
        let payload = schemas::encode(event).unwrap();
        bus.publish(Outgoing::new(subject::events("node-1"), &event.id, payload)).await.unwrap();
    }

    let spec = ConsumerSpec::new(stream::OBSERVATIONS, "test", "fim.observations.>");
    let mut observations = bus.consumer(spec).await.unwrap();
    let expected_subject = subject::observations(subject::partition(b"host:node-1", 4));
    let mut seen = std::collections::HashMap::new();
    for _ in 0..events.len() {
        let delivery = timeout(Duration::from_secs(10), observations.next()).await.unwrap();
        let delivery = delivery.unwrap().unwrap();
        assert_eq!(delivery.subject, expected_subject);
        let observation: Observation = schemas::decode(&delivery.payload).unwrap();
        seen.insert(observation.event.id.clone(), observation);
    }

    let present = seen["present"].state.clone().unwrap();
    let content = std::fs::read(&file).unwrap();
    assert_eq!(present.kind, FileKind::File);
    assert_eq!(present.size, content.len() as u64);
    assert_eq!(present.blake3, Some(blake3::hash(&content).to_hex().to_string()));
    assert_eq!(seen["missing"].state, None);
    assert_eq!(seen["odd"].event.path, odd);
    assert_eq!(
        seen["odd"].state.as_ref().unwrap().blake3,
        Some(blake3::hash(b"x").to_hex().to_string())
    );

    ctx.shutdown.cancel();
    timeout(Duration::from_secs(10), task).await.unwrap().unwrap().unwrap();
}

#[tokio::test]
async fn hostile_files_never_stall_the_pool() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let c = |name: &str| std::ffi::CString::new(root.join(name).to_str().unwrap()).unwrap();
    // SAFETY: the paths are NUL-terminated; mknod has no memory effects.
    unsafe {
        assert_eq!(libc::mknod(c("fifo").as_ptr(), libc::S_IFIFO | 0o600, 0), 0);
        assert_eq!(libc::mknod(c("zero").as_ptr(), libc::S_IFCHR | 0o666, libc::makedev(1, 5)), 0);
    }
    let _socket = std::os::unix::net::UnixListener::bind(root.join("socket")).unwrap();
    std::os::unix::fs::symlink("loop", root.join("loop")).unwrap();
    std::fs::File::create(root.join("sparse")).unwrap().set_len(1 << 40).unwrap();
    std::fs::write(root.join("plain"), "ok").unwrap();

    let bus = Bus::memory();
    let ctx = StageContext::standalone(bus.clone());
    let mut config = hasher::Config::new("node-1");
    config.workers = 2;
    config.max_hash_bytes = 1 << 20;
    let metrics = hasher::Metrics::register(&mut Default::default());
    let task = tokio::spawn(hasher::run(config, metrics, ctx.clone()));
    ctx.ready.wait().await;

    let names = ["fifo", "zero", "socket", "loop", "loop/deeper", "sparse", "plain"];
    for name in names {
        let mut event = event(name, RawPath::from(root.join(name).as_path()));
        event.source = Source::Host { root: RawPath::from(root) };
        let payload = schemas::encode(&event).unwrap();
        bus.publish(Outgoing::new(subject::events("node-1"), name, payload)).await.unwrap();
    }

    let spec = ConsumerSpec::new(stream::OBSERVATIONS, "test", "fim.observations.>");
    let mut observations = bus.consumer(spec).await.unwrap();
    let mut kinds = std::collections::HashMap::new();
    for _ in 0..names.len() {
        let delivery = timeout(Duration::from_secs(10), observations.next()).await;
        let delivery = delivery.expect("no worker stalled").unwrap().unwrap();
        let observation: Observation = schemas::decode(&delivery.payload).unwrap();
        let state = observation.state.clone();
        kinds.insert(observation.event.id.clone(), state.map(|s| (s.kind, s.partial)));
    }
    assert_eq!(kinds["fifo"], Some((FileKind::Fifo, false)));
    assert_eq!(kinds["zero"], Some((FileKind::CharDevice, false)));
    assert_eq!(kinds["socket"], Some((FileKind::Socket, false)));
    assert_eq!(kinds["loop"], Some((FileKind::Symlink, false)));
    assert_eq!(kinds["loop/deeper"], None);
    assert_eq!(kinds["sparse"], Some((FileKind::File, true)));
    assert_eq!(kinds["plain"], Some((FileKind::File, false)));

    ctx.shutdown.cancel();
    timeout(Duration::from_secs(10), task).await.unwrap().unwrap().unwrap();
}
