//! docker compose, for real: the shipped `deploy/docker-compose.yml` runs
//! NATS and the four stages as services, a container started next to them
//! gets a root user appended to its `/etc/passwd`, and the notifier prints
//! the alert.
//!
//! No registry is reachable, so the test seeds the engine with images it
//! makes from this machine's binaries (fim, nats-server, busybox) and their
//! shared libraries, and passes their names through the compose variables;
//! the fim image is built from `deploy/Dockerfile` (its `prebuilt` stage).

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn run(command: &mut Command) -> Output {
    let output = command.output().unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"));
    assert!(
        output.status.success(),
        "{command:?} failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

fn require_docker() {
    let info = Command::new("docker").arg("info").output();
    let running = info.is_ok_and(|o| o.status.success());
    assert!(running, "Docker is needed: apt-get install docker.io, then start dockerd");
    let compose = Command::new("docker-compose").arg("version").output();
    assert!(compose.is_ok_and(|o| o.status.success()), "apt-get install docker-compose");
}

// The shared libraries a binary loads, from `ldd`; none for a static one
// (for which `ldd` fails).
fn libraries(binary: &Path) -> Vec<PathBuf> {
    let output = Command::new("ldd").arg(binary).output().expect("ldd is part of libc-bin");
    if !output.status.success() {
        return Vec::new();
    }
    String::from_utf8_lossy(&output.stdout)
        .split_whitespace()
        .filter(|word| word.starts_with('/'))
        .map(PathBuf::from)
        .collect()
}

// Imports an image holding `binaries` and their libraries at their host
// paths (plus `extra` files), with `entrypoint`.
fn import_image(tag: &str, binaries: &[&Path], extra: &[(&str, &str)], entrypoint: &str) {
    let root = tempfile::tempdir().unwrap();
    let mut files: Vec<PathBuf> = binaries.iter().map(|b| b.to_path_buf()).collect();
    for binary in binaries {
        files.extend(libraries(binary));
    }
    for file in files {
        let target = root.path().join(file.strip_prefix("/").unwrap());
        std::fs::create_dir_all(target.parent().unwrap()).unwrap();
        std::fs::copy(&file, &target).unwrap();
    }
    for (path, content) in extra {
        let target = root.path().join(path);
        std::fs::create_dir_all(target.parent().unwrap()).unwrap();
        std::fs::write(target, content).unwrap();
    }
    std::fs::create_dir_all(root.path().join("tmp")).unwrap();
    let mut tar = Command::new("tar")
        .args(["-C", root.path().to_str().unwrap(), "-cf", "-", "."])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let change = format!("ENTRYPOINT {entrypoint}");
    let archive = tar.stdout.take().unwrap();
    run(Command::new("docker").args(["import", "--change", &change, "-", tag]).stdin(archive));
    assert!(tar.wait().unwrap().success(), "tar of the image root failed");
}

fn build_fim_image(tag: &str) {
    let context = tempfile::tempdir().unwrap();
    std::fs::copy(env!("CARGO_BIN_EXE_fim"), context.path().join("fim")).unwrap();
    let dockerfile = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/Dockerfile");
    run(Command::new("docker")
        .args(["build", "-q", "--target", "prebuilt"])
        .args(["--build-arg", "RUNTIME_IMAGE=fim-compose-runtime:test"])
        .args(["--build-arg", "FIM_BINARY=fim", "-t", tag, "-f"])
        .arg(dockerfile)
        .arg(context.path()));
}

/// Stops the compose project and the target container, whatever happens.
struct Project {
    name: String,
    env: Vec<(String, String)>,
    target: String,
}

impl Project {
    fn compose(&self) -> Command {
        let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/docker-compose.yml");
        let mut command = Command::new("docker-compose");
        command.arg("-p").arg(&self.name).arg("-f").arg(file);
        command.envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        command
    }

    fn logs(&self, service: &str) -> String {
        let output = run(self.compose().args(["logs", "--no-color", service]));
        String::from_utf8_lossy(&output.stdout).into_owned()
    }
}

impl Drop for Project {
    fn drop(&mut self) {
        let _ = Command::new("docker").args(["rm", "-f", &self.target]).output();
        let _ = self.compose().args(["down", "-v", "--timeout", "5"]).output();
    }
}

#[test]
fn compose_reports_a_root_user_appended_inside_a_container() {
    require_docker();
    let fim = Path::new(env!("CARGO_BIN_EXE_fim"));
    import_image("fim-compose-runtime:test", &[fim], &[], "[]");
    let nats = Path::new("/usr/sbin/nats-server");
    import_image("fim-compose-nats:test", &[nats], &[], r#"["/usr/sbin/nats-server"]"#);
    let passwd = [("etc/passwd", "root:x:0:0:root:/root:/bin/sh\n")];
    let busybox = Path::new("/bin/busybox");
    import_image("fim-compose-target:test", &[busybox], &passwd, r#"["/bin/busybox"]"#);
    build_fim_image("fim-compose:test");

    let suffix = std::process::id();
    let project = Project {
        name: format!("fimcompose{suffix}"),
        env: vec![
            ("FIM_IMAGE".into(), "fim-compose:test".into()),
            ("NATS_IMAGE".into(), "fim-compose-nats:test".into()),
            ("NATS_PORT".into(), testkit::free_port().unwrap().to_string()),
            ("FIM_NODE".into(), "compose-test".into()),
        ],
        target: format!("fim-compose-target-{suffix}"),
    };
    run(project.compose().args(["up", "-d", "--no-build"]));
    let started = run(Command::new("docker")
        .args(["run", "-d", "--name", &project.target, "fim-compose-target:test"])
        .args(["sleep", "3600"]));
    let id = String::from_utf8_lossy(&started.stdout).trim().to_owned();

    // The collector finds a new container within a second; allow for the
    // services starting up first, and append again until one is reported.
    let deadline = Instant::now() + Duration::from_secs(90);
    for attempt in 1.. {
        let line = format!("echo evil{attempt}:x:0:0::/:/bin/sh >> /etc/passwd");
        let exec = ["exec", &project.target, "/bin/busybox", "sh", "-c", &line];
        run(Command::new("docker").args(exec));
        std::thread::sleep(Duration::from_secs(3));
        let logs = project.logs("notifier");
        let alert = logs.lines().find(|l| l.contains("\"/etc/passwd\"") && l.contains(&id));
        if let Some(alert) = alert {
            assert!(alert.contains("\"change\":\"modified\""), "{alert}");
            return;
        }
        if Instant::now() > deadline {
            let collector = project.logs("collector");
            panic!("no alert for /etc/passwd in {id}; notifier:\n{logs}\ncollector:\n{collector}");
        }
    }
}
