//! Hostile files against the inspector, as root: FIFOs, sockets, device
//! nodes, link loops, links out of the root (also as an intermediate
//! directory of a container's upper layer), a terabyte sparse file, files
//! deleted, truncated or rewritten while hashed, names that are not UTF-8
//! and paths near PATH_MAX. Every inspection runs under a deadline: none
//! may block or crash.

use std::ffi::{CString, OsStr};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use hasher::{Inspection, Inspector};
use schemas::{ChangeKind, ContainerRoot, FileKind, RawEvent, RawPath, SCHEMA_VERSION, Source};
use time::OffsetDateTime;

const DEADLINE: Duration = Duration::from_secs(20);

fn inspector(max_hash_bytes: u64) -> Arc<Inspector> {
    let globs = hasher::DEFAULT_CAPTURE_GLOBS.iter().map(|g| g.to_string()).collect();
    Arc::new(Inspector::new(max_hash_bytes, 1024, globs, 64 * 1024))
}

fn host_event(root: &Path, path: &RawPath) -> RawEvent {
    RawEvent {
        schema_version: SCHEMA_VERSION,
        id: "e".into(),
        node: "node-1".into(),
        time: OffsetDateTime::now_utc(),
        source: Source::Host { root: RawPath::from(root) },
        path: path.clone(),
        host_path: path.clone(),
        previous_path: None,
        change: ChangeKind::Modified,
        is_dir: false,
        process: None,
        container_root: None,
    }
}

fn container_event(upper: &Path, lowers: &[&Path], path: &str) -> RawEvent {
    let in_upper = RawPath::from(upper).join(path.trim_start_matches('/').as_bytes());
    let mut event = host_event(upper, &in_upper);
    event.source = Source::Container(Default::default());
    event.path = RawPath::from(path);
    event.container_root = Some(ContainerRoot {
        upper_dir: RawPath::from(upper),
        lower_dirs: lowers.iter().map(|l| RawPath::from(*l)).collect(),
    });
    event
}

/// Observes on another thread and fails the test if it takes too long.
fn observe(inspector: &Arc<Inspector>, event: RawEvent) -> Inspection {
    let inspector = inspector.clone();
    let (send, receive) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = send.send(inspector.observe(&event).expect("inspectable"));
    });
    receive.recv_timeout(DEADLINE).expect("inspection finished before the deadline")
}

fn observe_host(inspector: &Arc<Inspector>, root: &Path, path: &Path) -> Inspection {
    observe(inspector, host_event(root, &RawPath::from(path)))
}

fn mknod(path: &Path, mode: u32, dev: libc::dev_t) {
    let c = CString::new(path.as_os_str().as_bytes()).unwrap();
    // SAFETY: c is NUL-terminated.
    let rc = unsafe { libc::mknod(c.as_ptr(), mode, dev) };
    assert_eq!(rc, 0, "mknod needs root: {}", std::io::Error::last_os_error());
}

fn set_opaque(path: &Path) {
    let c = CString::new(path.as_os_str().as_bytes()).unwrap();
    // SAFETY: pointers are valid for the lengths given.
    let rc = unsafe {
        libc::setxattr(c.as_ptr(), c"trusted.overlay.opaque".as_ptr(), b"y".as_ptr().cast(), 1, 0)
    };
    assert_eq!(rc, 0, "setxattr trusted.* needs root: {}", std::io::Error::last_os_error());
}

fn blake3_of(content: &[u8]) -> Option<String> {
    Some(blake3::hash(content).to_hex().to_string())
}

fn write(root: &Path, relative: &str, content: &str) -> PathBuf {
    let path = root.join(relative);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, content).unwrap();
    path
}

#[test]
fn a_fifo_is_reported_by_type_without_blocking() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("pipe");
    mknod(&fifo, libc::S_IFIFO | 0o600, 0);
    let state = observe_host(&inspector(1 << 30), dir.path(), &fifo).state.unwrap();
    assert_eq!((state.kind, state.blake3), (FileKind::Fifo, None));
}

#[test]
fn a_socket_is_reported_by_type() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sock");
    let _listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
    let state = observe_host(&inspector(1 << 30), dir.path(), &path).state.unwrap();
    assert_eq!((state.kind, state.blake3), (FileKind::Socket, None));
}

#[test]
fn a_device_node_is_reported_by_type_and_never_read() {
    let dir = tempfile::tempdir().unwrap();
    // A copy of /dev/zero: reading it would never end.
    let zero = dir.path().join("zero");
    mknod(&zero, libc::S_IFCHR | 0o666, libc::makedev(1, 5));
    let block = dir.path().join("loop");
    mknod(&block, libc::S_IFBLK | 0o600, libc::makedev(7, 0));
    let inspector = inspector(1 << 30);
    let state = observe_host(&inspector, dir.path(), &zero).state.unwrap();
    assert_eq!((state.kind, state.blake3), (FileKind::CharDevice, None));
    let state = observe_host(&inspector, dir.path(), &block).state.unwrap();
    assert_eq!((state.kind, state.blake3), (FileKind::BlockDevice, None));
}

#[test]
fn a_link_loop_is_reported_as_a_link() {
    let dir = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink("b", dir.path().join("a")).unwrap();
    std::os::unix::fs::symlink("a", dir.path().join("b")).unwrap();
    let state = observe_host(&inspector(1 << 30), dir.path(), &dir.path().join("a")).state.unwrap();
    assert_eq!(state.kind, FileKind::Symlink);
    assert_eq!(state.link_target, Some(RawPath::from("b")));
    // Through the loop as a directory: nothing is followed, so it is gone.
    let through = dir.path().join("a/x");
    assert_eq!(observe_host(&inspector(1 << 30), dir.path(), &through).state, None);
}

#[test]
fn a_link_out_of_the_root_is_reported_never_followed() {
    let dir = tempfile::tempdir().unwrap();
    let link = dir.path().join("shadow");
    std::os::unix::fs::symlink("/etc/shadow", &link).unwrap();
    let state = observe_host(&inspector(1 << 30), dir.path(), &link).state.unwrap();
    assert_eq!((state.kind, state.blake3), (FileKind::Symlink, None));
    assert_eq!(state.link_target, Some(RawPath::from("/etc/shadow")));
}

#[test]
fn a_host_path_through_a_directory_link_below_the_root_is_gone_not_followed() {
    let dir = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink("/etc", dir.path().join("conf")).unwrap();
    let path = dir.path().join("conf/passwd");
    assert_eq!(observe_host(&inspector(1 << 30), dir.path(), &path).state, None);
}

#[test]
fn a_container_link_to_etc_as_an_intermediate_directory_never_reads_the_host() {
    let (upper, lower) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    std::os::unix::fs::symlink("/etc", upper.path().join("app")).unwrap();
    write(lower.path(), "app/passwd", "image\n");
    let event = container_event(upper.path(), &[lower.path()], "/app/passwd");
    let inspection = observe(&inspector(1 << 30), event);
    // The host's /etc/passwd must not appear as the container's file, and
    // the link hides the image's directory in the merged view.
    assert_eq!(inspection.state, None);
    let image = inspection.image.unwrap().state.unwrap();
    assert_eq!(image.blake3, blake3_of(b"image\n"));
}

#[test]
fn a_terabyte_sparse_file_with_a_small_cap_is_quick_and_partial() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sparse");
    std::fs::File::create(&path).unwrap().set_len(1 << 40).unwrap();
    let started = Instant::now();
    let state = observe_host(&inspector(4 << 20), dir.path(), &path).state.unwrap();
    assert!(started.elapsed() < Duration::from_secs(5), "took {:?}", started.elapsed());
    assert!(state.partial);
    assert_eq!(state.size, 1 << 40);
    assert_eq!(state.blake3, blake3_of(&vec![0; 4 << 20]));
}

// A sparse file of this size takes about a second to read, long enough to
// change it while it is read.
const SLOW: u64 = 3 << 30;

fn slow_file(dir: &Path) -> PathBuf {
    let path = dir.join("slow");
    std::fs::File::create(&path).unwrap().set_len(SLOW).unwrap();
    path
}

#[test]
fn a_file_deleted_while_hashed_is_gone() {
    let dir = tempfile::tempdir().unwrap();
    let path = slow_file(dir.path());
    let remove = path.clone();
    let deleter = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(150));
        std::fs::remove_file(remove).unwrap();
    });
    let inspection = observe_host(&inspector(SLOW), dir.path(), &path);
    deleter.join().unwrap();
    assert_eq!(inspection.state, None);
}

#[test]
fn a_file_truncated_while_hashed_is_hashed_again_without_sigbus() {
    let dir = tempfile::tempdir().unwrap();
    let path = slow_file(dir.path());
    let target = path.clone();
    // Write the new head, then cut the file: it is never momentarily empty
    // (as `fs::write`'s O_TRUNC would make it), so the final state is exact.
    let truncater = std::thread::spawn(move || {
        use std::os::unix::fs::FileExt;
        std::thread::sleep(Duration::from_millis(150));
        let file = std::fs::OpenOptions::new().write(true).open(target).unwrap();
        file.write_at(b"short", 0).unwrap();
        file.set_len(5).unwrap();
    });
    let state = observe_host(&inspector(SLOW), dir.path(), &path).state.unwrap();
    truncater.join().unwrap();
    assert_eq!(state.size, 5);
    assert_eq!(state.blake3, blake3_of(b"short"));
    assert!(!state.unstable && !state.partial);
}

#[test]
fn a_file_that_keeps_changing_is_marked_unstable() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("busy");
    std::fs::File::create(&path).unwrap().set_len(256 << 20).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let (writer_path, writer_stop) = (path.clone(), stop.clone());
    let writer = std::thread::spawn(move || {
        use std::os::unix::fs::FileExt;
        let file = std::fs::OpenOptions::new().write(true).open(writer_path).unwrap();
        let mut byte = 0u8;
        while !writer_stop.load(Ordering::Relaxed) {
            byte = byte.wrapping_add(1);
            file.write_at(&[byte], 0).unwrap();
            std::thread::sleep(Duration::from_millis(2));
        }
    });
    std::thread::sleep(Duration::from_millis(20));
    let state = observe_host(&inspector(1 << 30), dir.path(), &path).state.unwrap();
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    assert!(state.unstable, "a file rewritten throughout every read is unstable");
    assert!(state.blake3.is_some());
}

#[test]
fn names_that_are_not_utf8_are_hashed_and_kept_as_bytes() {
    let (upper, lower) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let name = OsStr::from_bytes(b"caf\xe9\xff.conf");
    std::fs::write(upper.path().join(name), "x=1\n").unwrap();
    let mut event = container_event(upper.path(), &[lower.path()], "/");
    event.path = RawPath::from_bytes(b"/caf\xe9\xff.conf".to_vec());
    let inspection = observe(&inspector(1 << 30), event);
    assert_eq!(inspection.state.unwrap().blake3, blake3_of(b"x=1\n"));
    assert_eq!(inspection.image.unwrap().state, None);
    assert_eq!(inspection.content.unwrap().current, b"x=1\n");
}

#[test]
fn a_path_near_path_max_is_hashed() {
    let dir = tempfile::tempdir().unwrap();
    let mut path = dir.path().to_path_buf();
    let segment = "d".repeat(200);
    while path.as_os_str().len() + 201 < 3900 {
        path.push(&segment);
    }
    std::fs::create_dir_all(&path).unwrap();
    let file = path.join("f".repeat(150));
    assert!(file.as_os_str().len() > 3900, "{}", file.as_os_str().len());
    std::fs::write(&file, "deep").unwrap();
    let state = observe_host(&inspector(1 << 30), dir.path(), &file).state.unwrap();
    assert_eq!(state.blake3, blake3_of(b"deep"));
}

#[test]
fn an_unchanged_file_is_not_read_again_but_a_changed_one_is() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "app.jar", "v1");
    let inspector = inspector(1 << 30);
    assert_eq!(observe_host(&inspector, dir.path(), &path).bytes_read, 2);
    let again = observe_host(&inspector, dir.path(), &path);
    assert_eq!((again.bytes_read, again.state.unwrap().blake3), (0, blake3_of(b"v1")));
    std::fs::write(&path, "v2!").unwrap();
    let changed = observe_host(&inspector, dir.path(), &path);
    assert_eq!((changed.bytes_read, changed.state.unwrap().blake3), (3, blake3_of(b"v2!")));
}

#[test]
fn a_container_change_carries_the_image_version_and_redacted_content() {
    let (upper, top, base) =
        (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let image =
        "spring.datasource.url=jdbc:postgresql://db/app\nspring.datasource.password=s3cret\n";
    write(base.path(), "app/application.properties", "old layer\n");
    write(top.path(), "app/application.properties", image);
    let now =
        "spring.datasource.url=jdbc:postgresql://evil/app\nspring.datasource.password=s3cret\n";
    write(upper.path(), "app/application.properties", now);
    let event =
        container_event(upper.path(), &[top.path(), base.path()], "/app/application.properties");
    let inspection = observe(&inspector(1 << 30), event);

    assert_eq!(inspection.state.unwrap().blake3, blake3_of(now.as_bytes()));
    let image_version = inspection.image.unwrap();
    assert_eq!(image_version.layer, Some(RawPath::from(top.path())));
    assert_eq!(image_version.state.unwrap().blake3, blake3_of(image.as_bytes()));
    let content = inspection.content.unwrap();
    let current = String::from_utf8(content.current).unwrap();
    let before = String::from_utf8(content.image.unwrap()).unwrap();
    assert!(current.contains("jdbc:postgresql://evil/app") && before.contains("//db/app"));
    assert!(!current.contains("s3cret") && !before.contains("s3cret"));
    assert!(current.contains(&format!("password={}", hasher::REDACTED)));
}

#[test]
fn a_whiteout_in_the_upper_layer_is_gone_while_the_image_keeps_the_file() {
    let (upper, lower) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    write(lower.path(), "etc/passwd", "root:x:0:0::/root:/bin/sh\n");
    std::fs::create_dir(upper.path().join("etc")).unwrap();
    mknod(&upper.path().join("etc/passwd"), libc::S_IFCHR, 0);
    let inspection =
        observe(&inspector(1 << 30), container_event(upper.path(), &[lower.path()], "/etc/passwd"));
    assert_eq!(inspection.state, None);
    let image = inspection.image.unwrap();
    assert_eq!(image.layer, Some(RawPath::from(lower.path())));
    assert_eq!(image.state.unwrap().kind, FileKind::File);
}

#[test]
fn an_opaque_upper_directory_hides_the_image_files_in_it() {
    let (upper, lower) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    write(lower.path(), "etc/sudoers.d/ops", "ops ALL=(ALL) ALL\n");
    std::fs::create_dir_all(upper.path().join("etc/sudoers.d")).unwrap();
    set_opaque(&upper.path().join("etc/sudoers.d"));
    let event = container_event(upper.path(), &[lower.path()], "/etc/sudoers.d/ops");
    let inspection = observe(&inspector(1 << 30), event);
    assert_eq!(inspection.state, None);
    assert!(inspection.image.unwrap().state.is_some());
}

#[test]
fn an_image_without_the_path_has_an_empty_image_version() {
    let (upper, lower) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    write(upper.path(), "tmp/dropper.sh", "#!/bin/sh\n");
    let inspection = observe(
        &inspector(1 << 30),
        container_event(upper.path(), &[lower.path()], "/tmp/dropper.sh"),
    );
    assert!(inspection.state.is_some());
    let image = inspection.image.unwrap();
    assert_eq!((image.state, image.layer), (None, None));
}

#[test]
fn shadow_content_is_never_captured() {
    let (upper, lower) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    write(upper.path(), "etc/shadow", "root:$6$salt$hash:19000:0:99999:7:::\n");
    let inspection =
        observe(&inspector(1 << 30), container_event(upper.path(), &[lower.path()], "/etc/shadow"));
    assert!(inspection.state.unwrap().blake3.is_some());
    assert_eq!(inspection.content, None);
}

/// Unmounts on drop, so a failed assertion leaves no mount behind.
struct Mounted(PathBuf);

impl Drop for Mounted {
    fn drop(&mut self) {
        let c = CString::new(self.0.as_os_str().as_bytes()).unwrap();
        // SAFETY: c is NUL-terminated.
        unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
    }
}

fn mount_overlay(lower: &Path, upper: &Path, work: &Path, merged: &Path) -> Mounted {
    let options = format!(
        "lowerdir={},upperdir={},workdir={}",
        lower.display(),
        upper.display(),
        work.display()
    );
    let (source, target) = (c"overlay", CString::new(merged.as_os_str().as_bytes()).unwrap());
    let data = CString::new(options).unwrap();
    // SAFETY: every pointer is a valid NUL-terminated string.
    let rc = unsafe {
        libc::mount(source.as_ptr(), target.as_ptr(), c"overlay".as_ptr(), 0, data.as_ptr().cast())
    };
    assert_eq!(rc, 0, "mounting overlayfs needs root: {}", std::io::Error::last_os_error());
    Mounted(merged.to_path_buf())
}

#[test]
fn whiteouts_and_opaque_directories_made_by_the_kernel_read_as_the_merged_view() {
    let dirs: Vec<_> = (0..4).map(|_| tempfile::tempdir().unwrap()).collect();
    let (lower, upper, work, merged) =
        (dirs[0].path(), dirs[1].path(), dirs[2].path(), dirs[3].path());
    write(lower, "etc/passwd", "root:x:0:0::/root:/bin/sh\n");
    write(lower, "etc/shadow", "root:*:19000:0:99999:7:::\n");
    write(lower, "app/conf/old.yml", "a: 1\n");
    let mounted = mount_overlay(lower, upper, work, merged);

    // What a container does: append, delete, replace a directory.
    let passwd = "root:x:0:0::/root:/bin/sh\nevil:x:0:0::/:/bin/sh\n";
    std::fs::write(merged.join("etc/passwd"), passwd).unwrap();
    std::fs::remove_file(merged.join("etc/shadow")).unwrap();
    std::fs::remove_dir_all(merged.join("app/conf")).unwrap();
    write(merged, "app/conf/new.yml", "b: 2\n");
    drop(mounted);

    let inspector = inspector(1 << 30);
    let look = |path: &str| observe(&inspector, container_event(upper, &[lower], path));
    let changed = look("/etc/passwd");
    assert_eq!(changed.state.unwrap().blake3, blake3_of(passwd.as_bytes()));
    let image = changed.image.unwrap().state.unwrap();
    assert_eq!(image.blake3, blake3_of(b"root:x:0:0::/root:/bin/sh\n"));

    let deleted = look("/etc/shadow");
    assert_eq!(deleted.state, None, "the kernel's whiteout reads as gone");
    assert!(deleted.image.unwrap().state.is_some());

    let hidden = look("/app/conf/old.yml");
    assert_eq!(hidden.state, None, "the kernel's opaque directory hides the image's file");
    assert!(hidden.image.unwrap().state.is_some());

    let added = look("/app/conf/new.yml");
    assert_eq!(added.state.unwrap().blake3, blake3_of(b"b: 2\n"));
    assert_eq!(added.image.unwrap().state, None);
}
