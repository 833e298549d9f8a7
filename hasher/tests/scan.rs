//! Scans and manifest comparisons on real trees: order, hashes, hostile
//! entries, links that must not be walked, and non-UTF-8 names.

use std::ffi::{CString, OsStr};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::time::Duration;

use hasher::scan::{Entry, ScanOptions, compare, read_manifest, scan, write_manifest};
use schemas::{FileKind, RawPath};

fn options(workers: usize) -> ScanOptions {
    ScanOptions { workers, max_hash_bytes: 1 << 20 }
}

fn tree() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::create_dir_all(root.join("etc/ssh")).unwrap();
    std::fs::write(root.join("etc/passwd"), "root:x:0:0::/root:/bin/sh\n").unwrap();
    std::fs::write(root.join("etc/ssh/sshd_config"), "PermitRootLogin no\n").unwrap();
    std::fs::write(root.join(OsStr::from_bytes(b"etc/caf\xe9")), "x").unwrap();
    std::os::unix::fs::symlink("/etc", root.join("escape")).unwrap();
    dir
}

/// Runs a scan on another thread under a deadline.
fn scan_within(paths: Vec<std::path::PathBuf>, options: ScanOptions) -> hasher::scan::Scan {
    let (send, receive) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = send.send(scan(&paths, &options));
    });
    receive.recv_timeout(Duration::from_secs(30)).expect("scan finished before the deadline")
}

fn find<'a>(entries: &'a [Entry], root: &Path, relative: &[u8]) -> &'a Entry {
    let path = RawPath::from(root).join(relative);
    entries.iter().find(|e| e.path == path).unwrap_or_else(|| panic!("no entry {path}"))
}

#[test]
fn a_scan_lists_every_entry_sorted_with_hashes_and_does_not_walk_links() {
    let dir = tree();
    let result = scan_within(vec![dir.path().to_path_buf()], options(2));
    assert!(result.errors.is_empty(), "{:?}", result.errors);
    let paths: Vec<&RawPath> = result.entries.iter().map(|e| &e.path).collect();
    let mut sorted = paths.clone();
    sorted.sort();
    assert_eq!(paths, sorted);
    assert_eq!(result.entries.len(), 7, "root, etc, etc/ssh, 3 files, 1 link");

    let passwd = find(&result.entries, dir.path(), b"etc/passwd");
    let expected = blake3::hash(b"root:x:0:0::/root:/bin/sh\n").to_hex().to_string();
    assert_eq!(passwd.blake3.as_deref(), Some(expected.as_str()));
    let escape = find(&result.entries, dir.path(), b"escape");
    assert_eq!((escape.kind, escape.link_target.clone()), (FileKind::Symlink, Some("/etc".into())));
    assert_eq!(find(&result.entries, dir.path(), b"etc/caf\xe9").size, 1);
}

#[test]
fn one_worker_and_many_workers_write_identical_manifests() {
    let dir = tree();
    for i in 0..50 {
        std::fs::write(dir.path().join(format!("etc/f{i}")), vec![b'a'; i * 1000]).unwrap();
    }
    let manifest = |workers| {
        let mut out = Vec::new();
        write_manifest(&scan_within(vec![dir.path().into()], options(workers)).entries, &mut out)
            .unwrap();
        out
    };
    assert_eq!(manifest(1), manifest(4));
}

#[test]
fn hostile_entries_are_listed_by_type_without_blocking() {
    let dir = tempfile::tempdir().unwrap();
    let c = |name: &str| CString::new(dir.path().join(name).as_os_str().as_bytes()).unwrap();
    // SAFETY: the paths are NUL-terminated; mknod has no memory effects.
    unsafe {
        assert_eq!(libc::mknod(c("fifo").as_ptr(), libc::S_IFIFO | 0o600, 0), 0);
        assert_eq!(libc::mknod(c("zero").as_ptr(), libc::S_IFCHR | 0o666, libc::makedev(1, 5)), 0);
    }
    let _socket = std::os::unix::net::UnixListener::bind(dir.path().join("socket")).unwrap();
    std::os::unix::fs::symlink("loop", dir.path().join("loop")).unwrap();
    std::fs::File::create(dir.path().join("sparse")).unwrap().set_len(1 << 40).unwrap();

    let result = scan_within(vec![dir.path().into()], options(2));
    assert!(result.errors.is_empty(), "{:?}", result.errors);
    let kind = |name: &str| find(&result.entries, dir.path(), name.as_bytes()).kind;
    assert_eq!(kind("fifo"), FileKind::Fifo);
    assert_eq!(kind("zero"), FileKind::CharDevice);
    assert_eq!(kind("socket"), FileKind::Socket);
    assert_eq!(kind("loop"), FileKind::Symlink);
    assert!(find(&result.entries, dir.path(), b"sparse").partial);
}

#[test]
fn a_comparison_names_added_removed_and_changed_fields_but_ignores_timestamps() {
    let dir = tree();
    let before = scan_within(vec![dir.path().into()], options(2)).entries;
    let root = dir.path();
    std::fs::write(root.join("etc/passwd"), "root:x:0:0::/root:/bin/sh\nevil:x:0:0::/:/bin/sh\n")
        .unwrap();
    std::fs::remove_file(root.join("etc/ssh/sshd_config")).unwrap();
    std::fs::write(root.join("etc/ld.so.preload"), "/tmp/evil.so\n").unwrap();
    let odd =
        std::fs::File::options().write(true).open(root.join(OsStr::from_bytes(b"etc/caf\xe9")));
    let old = std::time::SystemTime::UNIX_EPOCH + Duration::from_secs(86_400);
    odd.unwrap().set_modified(old).unwrap();
    let after = scan_within(vec![root.into()], options(2)).entries;

    let differences = compare(&before, &after);
    let summary: Vec<(&str, String)> =
        differences.iter().map(|d| (d.change, d.path.to_string())).collect();
    let shown = |relative: &str| RawPath::from(root).join(relative.as_bytes()).to_string();
    let expected = vec![
        ("added", shown("etc/ld.so.preload")),
        ("changed", shown("etc/passwd")),
        ("removed", shown("etc/ssh/sshd_config")),
    ];
    assert_eq!(summary, expected, "an mtime alone is not a change");
    let passwd = differences.iter().find(|d| d.path.to_string() == shown("etc/passwd")).unwrap();
    assert_eq!(passwd.fields, vec!["blake3", "size"]);
    assert!(compare(&after, &after).is_empty());
}

#[test]
fn a_manifest_round_trips_through_json_lines_with_escaped_names() {
    let dir = tree();
    let entries = scan_within(vec![dir.path().into()], options(1)).entries;
    let mut out = Vec::new();
    write_manifest(&entries, &mut out).unwrap();
    let text = String::from_utf8(out.clone()).expect("manifests are UTF-8");
    assert!(text.contains("caf\\\\xe9"), "non-UTF-8 bytes are escaped:\n{text}");
    assert_eq!(read_manifest(out.as_slice()).unwrap(), entries);
    assert!(read_manifest(&b"{\"path\":1}\n"[..]).is_err());
}
