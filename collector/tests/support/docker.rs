//! Real Docker for tests: checks the daemon, builds the `fim-test:latest`
//! image from busybox-static when it is missing, and runs containers that
//! are removed on drop. A missing Docker fails the test with the fix.

use std::path::Path;
use std::process::{Command, Output};

/// The image every container test runs.
pub const IMAGE: &str = "fim-test:latest";

// The applets the tests and the benchmark use inside containers.
const APPLETS: &[&str] = &[
    "sh", "sed", "cp", "mv", "chmod", "chown", "rm", "ln", "mkdir", "cat", "echo", "sleep",
    "touch", "truncate", "printf", "ls", "head", "dd", "seq", "true", "stat",
];

/// Runs `docker` with `args`; panics with the fix when Docker is missing.
pub fn docker(args: &[&str]) -> Output {
    match Command::new("docker").args(args).output() {
        Ok(output) => output,
        Err(error) => panic!(
            "cannot run docker ({error}): install it with `apt-get install -y docker.io \
             busybox-static` and start `dockerd` (./scripts/test does both)"
        ),
    }
}

fn docker_ok(args: &[&str]) -> String {
    let output = docker(args);
    assert!(
        output.status.success(),
        "docker {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

/// Checks that the daemon answers and that the test image exists.
pub fn ensure_image() {
    let info = docker(&["info", "--format", "{{.Driver}}"]);
    assert!(
        info.status.success(),
        "the Docker daemon is not running: start it with `dockerd >/var/log/dockerd.log 2>&1 &` \
         (./scripts/test does): {}",
        String::from_utf8_lossy(&info.stderr)
    );
    if docker(&["image", "inspect", IMAGE]).status.success() {
        return;
    }
    let dir = tempfile::tempdir().expect("temporary directory");
    let tar = dir.path().join("rootfs.tar");
    build_rootfs(&dir.path().join("rootfs"), &tar);
    let tar = tar.to_str().expect("UTF-8 temporary path");
    let imported = docker(&["import", "-c", "CMD [\"/bin/sleep\",\"100000\"]", tar, IMAGE]);
    assert!(imported.status.success(), "docker import failed: {imported:?}");
}

fn build_rootfs(root: &Path, tar: &Path) {
    let busybox = Path::new("/bin/busybox");
    assert!(
        busybox.exists(),
        "/bin/busybox is missing: install it with `apt-get install -y busybox-static`"
    );
    for dir in ["bin", "etc", "tmp", "app/templates", "data"] {
        std::fs::create_dir_all(root.join(dir)).expect("rootfs directory");
    }
    std::fs::copy(busybox, root.join("bin/busybox")).expect("copy busybox");
    for applet in APPLETS {
        std::os::unix::fs::symlink("busybox", root.join("bin").join(applet)).expect("applet link");
    }
    let files: [(&str, &[u8]); 4] = [
        ("etc/passwd", b"root:x:0:0:root:/root:/bin/sh\n"),
        ("app/application.properties", b"spring.datasource.url=jdbc:postgresql://db/app\n"),
        ("app/app.jar", b"PK\x03\x04 not really a jar\n"),
        ("app/templates/index.html", b"<html><body>hello</body></html>\n"),
    ];
    for (path, content) in files {
        std::fs::write(root.join(path), content).expect("rootfs file");
    }
    let status = Command::new("tar")
        .arg("-C")
        .arg(root)
        .arg("-cf")
        .arg(tar)
        .arg(".")
        .status()
        .expect("tar runs");
    assert!(status.success(), "tar of the rootfs failed");
}

/// A running container, removed (forcibly) on drop.
pub struct Container {
    /// Full id.
    pub id: String,
}

impl Container {
    /// `docker run -d --label io.fim.ignore=true --name <name> <extra…>
    /// fim-test:latest`.
    pub fn run(name: &str, extra: &[&str]) -> Self {
        let _ = docker(&["rm", "-f", name]);
        // Labelled so that fim processes of other tests running meanwhile
        // (host-path tests) leave it alone; container tests opt in.
        let mut args = vec!["run", "-d", "--label", "io.fim.ignore=true", "--name", name];
        args.extend_from_slice(extra);
        args.push(IMAGE);
        let id = docker_ok(&args);
        Self { id }
    }

    /// Runs a shell script inside the container; panics when it fails.
    pub fn sh(&self, script: &str) {
        docker_ok(&["exec", &self.id, "sh", "-c", script]);
    }

    /// The overlay upper directory Docker reports.
    pub fn upper_dir(&self) -> String {
        docker_ok(&["inspect", "-f", "{{.GraphDriver.Data.UpperDir}}", &self.id])
    }

    /// Stops and removes the container now.
    pub fn remove(&self) {
        let _ = docker(&["rm", "-f", &self.id]);
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        self.remove();
    }
}
