#![allow(dead_code)] // Each test binary uses its own part of these helpers.
//! Running the real `fim` binary in tests: spawn it, read its stdout lines,
//! stop it with SIGTERM, and kill it if a test fails half-way.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

/// A running `fim` process.
pub struct Fim {
    child: Child,
    stdout: Receiver<String>,
    pub listen: String,
}

impl Fim {
    /// Starts `fim <args> --listen <free port> --node test`.
    pub fn start(args: &[&str]) -> Self {
        Self::start_with_env(args, &[])
    }

    /// Like [`Fim::start`], with extra environment variables.
    pub fn start_with_env(args: &[&str], env: &[(&str, &str)]) -> Self {
        let listen = format!("127.0.0.1:{}", testkit::free_port().unwrap());
        let mut child = Command::new(env!("CARGO_BIN_EXE_fim"))
            .args(args)
            .envs(env.iter().copied())
            .args(["--listen", &listen, "--node", "test"])
            .env("FIM_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("fim starts");
        let stdout = child.stdout.take().expect("stdout is piped");
        let (sender, receiver) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        Self { child, stdout: receiver, listen }
    }

    /// Starts `fim all --nats <url>` watching one host directory only
    /// (no containers), with its baselines in `data_dir`.
    pub fn all_over_nats(url: &str, watch: &str, data_dir: &str) -> Self {
        let args = ["--nats", url, "--no-containers", "--watch", watch, "--data-dir", data_dir];
        Self::start(&[&["all"][..], &args].concat())
    }

    /// Waits for `/readyz` to answer 200.
    pub fn wait_ready(&self) {
        testkit::wait_ready(&self.listen, Duration::from_secs(30)).unwrap();
    }

    /// The first stdout line that `matches` within `within`, as JSON.
    pub fn alert_where(
        &self,
        within: Duration,
        matches: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let deadline = Instant::now() + within;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            let Ok(line) = self.stdout.recv_timeout(left) else { break };
            let alert: serde_json::Value =
                serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON: {line:?}: {e}"));
            if matches(&alert) {
                return alert;
            }
        }
        panic!("no matching alert on stdout within {within:?}");
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn terminate(mut self) -> ExitStatus {
        let pid = self.child.id() as i32;
        // SAFETY: kill(2) on our own child's pid has no memory effects.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(40);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait for fim") {
                return status;
            }
            assert!(Instant::now() < deadline, "fim did not exit after SIGTERM");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Fim {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Appends one line to a file, as `echo line >> file` does.
pub fn append(path: &Path, line: &str) {
    use std::io::Write;
    let mut file = std::fs::OpenOptions::new().append(true).open(path).unwrap();
    writeln!(file, "{line}").unwrap();
}

/// Whether `alert` is about `path` with change `change`.
pub fn is_change(alert: &serde_json::Value, path: &Path, change: &str) -> bool {
    alert["path"] == path.to_str().unwrap() && alert["change"] == change
}

/// A directory to watch holding a `passwd` file with one root line.
pub fn watched_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("passwd"), "root:x:0:0:root:/root:/bin/sh\n").unwrap();
    dir
}
