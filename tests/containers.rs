//! Containers through the real `fim all` binary: an attack made inside a
//! running Docker container comes out of the notifier as an alert that
//! names the in-container path and the container. Needs root and a running
//! Docker daemon; the test image is built by the collector's test support.

mod common;

// Shared with the collector's tests; this file uses only part of it.
#[allow(dead_code)]
#[path = "../collector/tests/support/docker.rs"]
mod docker;

use std::time::{Duration, Instant};

use common::Fim;
use docker::Container;

const WITHIN: Duration = Duration::from_secs(15);

#[test]
fn embedded_mode_alerts_on_a_root_user_appended_inside_a_container() {
    docker::ensure_image();
    let container = Container::run("fim-e2e-passwd", &[]);
    let watched = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let (watch, data_dir) = (watched.path().to_str().unwrap(), data.path().to_str().unwrap());
    // Test containers carry the ignore label (see the docker support).
    let args = ["all", "--watch", watch, "--data-dir", data_dir, "--watch-ignored-containers"];
    let fim = Fim::start(&args);
    fim.wait_ready();
    // Let the inventory settle into baselines before changing anything.
    std::thread::sleep(Duration::from_millis(1000));

    let started = Instant::now();
    container.sh("echo 'evil:x:0:0::/:/bin/sh' >> /etc/passwd");
    let alert = fim.alert_where(WITHIN, |a| {
        a["path"] == "/etc/passwd" && a["container"]["id"] == container.id.as_str()
    });
    eprintln!("container alert latency: {:?}", started.elapsed());

    assert_eq!(alert["container"]["name"], "fim-e2e-passwd");
    assert_eq!(alert["container"]["image"], docker::IMAGE);
    let (status, metrics) = testkit::http_get(&fim.listen, "/metrics").unwrap();
    assert_eq!(status, 200);
    assert!(metrics.contains("fim_collector_containers{storage=\"overlay\"}"), "{metrics}");
    assert!(fim.terminate().success(), "SIGTERM drains and exits 0");
}
