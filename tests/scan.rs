//! `fim scan` on the real binary: a manifest on stdout, and `--compare`
//! with its exit statuses (0 identical, 1 different, 2 errors).

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const DEADLINE: Duration = Duration::from_secs(60);

struct Run {
    code: i32,
    stdout: String,
}

/// Runs `fim scan <args>` and kills it at the deadline.
fn fim_scan(args: &[&str]) -> Run {
    let mut child = Command::new(env!("CARGO_BIN_EXE_fim"))
        .arg("scan")
        .args(args)
        .env("FIM_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("fim starts");
    let mut stdout = child.stdout.take().expect("stdout is piped");
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        stdout.read_to_string(&mut text).expect("stdout is UTF-8");
        text
    });
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for fim") {
            break status;
        }
        if started.elapsed() > DEADLINE {
            let _ = child.kill();
            panic!("fim scan did not finish within {DEADLINE:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Run { code: status.code().expect("exited, not killed"), stdout: reader.join().unwrap() }
}

fn tree() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("etc")).unwrap();
    std::fs::write(dir.path().join("etc/passwd"), "root:x:0:0::/root:/bin/sh\n").unwrap();
    std::fs::write(dir.path().join("etc/group"), "root:x:0:\n").unwrap();
    let odd = <std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(b"etc/caf\xe9");
    std::fs::write(dir.path().join(odd), "x").unwrap();
    dir
}

fn lines(text: &str) -> Vec<serde_json::Value> {
    text.lines().map(|line| serde_json::from_str(line).expect("JSON line")).collect()
}

fn save(dir: &Path, manifest: &str) -> String {
    let path = dir.join("manifest.jsonl");
    std::fs::write(&path, manifest).unwrap();
    path.to_str().unwrap().to_owned()
}

#[test]
fn scan_prints_a_sorted_manifest_of_hashes_and_exits_0() {
    let dir = tree();
    let root = dir.path().to_str().unwrap();
    let run = fim_scan(&[root, "--workers", "2"]);
    assert_eq!(run.code, 0);
    let entries = lines(&run.stdout);
    let paths: Vec<&str> = entries.iter().map(|e| e["path"].as_str().unwrap()).collect();
    let mut sorted = paths.clone();
    sorted.sort();
    assert_eq!(paths, sorted);
    let passwd = entries.iter().find(|e| e["path"] == format!("{root}/etc/passwd")).unwrap();
    let expected = blake3::hash(b"root:x:0:0::/root:/bin/sh\n").to_hex().to_string();
    assert_eq!(passwd["blake3"], expected.as_str());
    assert_eq!(passwd["type"], "file");
    for field in ["size", "mode", "uid", "gid", "mtime"] {
        assert!(!passwd[field].is_null(), "manifest lines carry {field}");
    }
    assert!(paths.contains(&format!("{root}/etc/caf\\xe9").as_str()), "escaped name: {paths:?}");
    assert_eq!(fim_scan(&[root, "--workers", "1"]).stdout, run.stdout, "deterministic");
}

#[test]
fn compare_with_an_unchanged_tree_prints_nothing_and_exits_0() {
    let (dir, keep) = (tree(), tempfile::tempdir().unwrap());
    let root = dir.path().to_str().unwrap();
    let manifest = save(keep.path(), &fim_scan(&[root]).stdout);
    let run = fim_scan(&["--compare", &manifest, root]);
    assert_eq!((run.code, run.stdout.as_str()), (0, ""));
}

#[test]
fn compare_reports_added_removed_and_changed_files_and_exits_1() {
    let (dir, keep) = (tree(), tempfile::tempdir().unwrap());
    let root = dir.path().to_str().unwrap();
    let manifest = save(keep.path(), &fim_scan(&[root]).stdout);
    let passwd = dir.path().join("etc/passwd");
    std::fs::write(&passwd, "root:x:0:0::/root:/bin/sh\nevil:x:0:0::/:/bin/sh\n").unwrap();
    std::fs::remove_file(dir.path().join("etc/group")).unwrap();
    std::fs::write(dir.path().join("etc/ld.so.preload"), "/tmp/evil.so\n").unwrap();

    let run = fim_scan(&["--compare", &manifest, root]);
    assert_eq!(run.code, 1);
    let changes: Vec<(String, String)> = lines(&run.stdout)
        .iter()
        .map(|d| (d["change"].as_str().unwrap().into(), d["path"].as_str().unwrap().into()))
        .collect();
    let expected: Vec<(String, String)> =
        [("removed", "etc/group"), ("added", "etc/ld.so.preload"), ("changed", "etc/passwd")]
            .iter()
            .map(|(change, path)| (change.to_string(), format!("{root}/{path}")))
            .collect();
    assert_eq!(changes, expected);
}

#[test]
fn compare_with_a_file_that_is_not_a_manifest_exits_2() {
    let (dir, keep) = (tree(), tempfile::tempdir().unwrap());
    let bad = save(keep.path(), "not json\n");
    let run = fim_scan(&["--compare", &bad, dir.path().to_str().unwrap()]);
    assert_eq!(run.code, 2);
    let missing = fim_scan(&["--compare", "/nonexistent/manifest", dir.path().to_str().unwrap()]);
    assert_eq!(missing.code, 2);
}

#[test]
fn scan_of_a_path_that_does_not_exist_exits_2() {
    assert_eq!(fim_scan(&["/nonexistent/fim-scan-root"]).code, 2);
}
