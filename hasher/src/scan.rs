//! Scans of host trees into a manifest, and comparison of two manifests:
//! the periodic critical-file comparison (PCI DSS 11.5.2 asks for one at
//! least weekly) for paths the event stream may have missed.
//!
//! The walk starts from a descriptor of each root, stats every entry
//! without following links and stays on the root's file system. One thread
//! lists directories while `workers` threads hash the regular files it
//! queues (and list directories when they have nothing to hash), with the
//! same safe open, cap and stability checks as the pool. The manifest is sorted by path bytes, so two scans of the same
//! tree give the same lines whatever the number of workers.

use std::collections::VecDeque;
use std::io::{self, BufRead, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex};

use schemas::{FileKind, FileState, RawPath};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use tracing::debug;

use crate::beneath::{self, Stat};
use crate::digest::Digester;
use crate::inspect::file_state;

/// How a scan runs.
#[derive(Debug, Clone)]
pub struct ScanOptions {
    /// Hashing threads. Default: the number of cores.
    pub workers: usize,
    /// Bytes of a file hashed at most; larger files get a `partial` hash.
    pub max_hash_bytes: u64,
}

impl Default for ScanOptions {
    fn default() -> Self {
        let workers = std::thread::available_parallelism().map_or(1, usize::from);
        Self { workers, max_hash_bytes: crate::DEFAULT_MAX_HASH_BYTES }
    }
}

/// One line of a manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    /// The path, escaped as [`RawPath`] does in JSON.
    pub path: RawPath,
    /// Object type.
    #[serde(rename = "type")]
    pub kind: FileKind,
    /// BLAKE3 of the content, regular files only.
    #[serde(default)]
    pub blake3: Option<String>,
    /// Size in bytes.
    pub size: u64,
    /// `st_mode`: type and permission bits.
    pub mode: u32,
    /// Owner user id.
    pub uid: u32,
    /// Owner group id.
    pub gid: u32,
    /// Modification time, RFC 3339 in UTC.
    #[serde(with = "time::serde::rfc3339")]
    pub mtime: OffsetDateTime,
    /// Target of a symbolic link.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link_target: Option<RawPath>,
    /// The hash covers only the first `max_hash_bytes`.
    #[serde(default, skip_serializing_if = "is_false")]
    pub partial: bool,
    /// The file kept changing while it was hashed.
    #[serde(default, skip_serializing_if = "is_false")]
    pub unstable: bool,
}

fn is_false(value: &bool) -> bool {
    !value
}

/// A path the scan could not read; the scan goes on without it.
#[derive(Debug, thiserror::Error)]
#[error("cannot scan {path}")]
pub struct ScanError {
    /// The path.
    pub path: RawPath,
    /// Why.
    #[source]
    pub source: io::Error,
}

/// What a scan found.
#[derive(Debug, Default)]
pub struct Scan {
    /// Every entry, sorted by path bytes.
    pub entries: Vec<Entry>,
    /// Paths that could not be read.
    pub errors: Vec<ScanError>,
}

/// A root of the scan: a descriptor of the directory paths are opened
/// beneath, the prefix its entries are shown with, and what to scan there.
struct Root {
    fd: OwnedFd,
    shown: RawPath,
    kind: RootKind,
}

enum RootKind {
    /// The directory itself, walked; its `fstat`.
    Tree(Stat),
    /// One entry of the directory, by name.
    Single(Vec<u8>),
}

/// An entry found by the walk, hashed by a worker when it is a regular
/// file.
struct Found {
    root: usize,
    relative: Vec<u8>,
    stat: Stat,
    link_target: Option<RawPath>,
}

impl Found {
    fn path(&self, roots: &[Root]) -> RawPath {
        let shown = &roots[self.root].shown;
        if self.relative.is_empty() { shown.clone() } else { shown.join(&self.relative) }
    }
}

/// Scans `paths` (directories are walked, anything else is one entry).
pub fn scan(paths: &[PathBuf], options: &ScanOptions) -> Scan {
    let mut result = Scan::default();
    let mut roots = Vec::new();
    for path in paths {
        match open_root(path) {
            Ok(root) => roots.push(root),
            Err(source) => {
                result.errors.push(ScanError { path: RawPath::from(path.as_path()), source })
            }
        }
    }
    let digester = Digester::new(options.max_hash_bytes, 0);
    let work = Work::new(&roots, &digester);
    for index in 0..roots.len() {
        work.add_root(index, &mut result);
    }
    std::thread::scope(|scope| {
        // One thread lists directories only, so that the workers hash while
        // the tree is walked; idle workers list directories too.
        let walker = scope.spawn(|| work.run(false));
        let workers: Vec<_> =
            (0..options.workers.max(1)).map(|_| scope.spawn(|| work.run(true))).collect();
        for thread in std::iter::once(walker).chain(workers) {
            let done = thread.join().unwrap_or_else(|_| Scan {
                entries: Vec::new(),
                errors: vec![ScanError {
                    path: RawPath::default(),
                    source: io::Error::other("scan thread panicked"),
                }],
            });
            result.entries.extend(done.entries);
            result.errors.extend(done.errors);
        }
    });
    result.entries.sort_by(|a, b| a.path.cmp(&b.path));
    result.entries.dedup_by(|a, b| a.path == b.path);
    result
}

/// Opens a root: a directory to walk, or the parent of a single file,
/// whose own name is then not followed if it is a link.
fn open_root(path: &Path) -> io::Result<Root> {
    if std::fs::metadata(path)?.is_dir() {
        let fd = beneath::open_root(path)?;
        let stat = beneath::stat_fd(fd.as_fd())?;
        return Ok(Root { fd, shown: RawPath::from(path), kind: RootKind::Tree(stat) });
    }
    let parent = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = path.file_name().map(|n| n.as_encoded_bytes().to_vec()).unwrap_or_default();
    let fd = beneath::open_root(parent)?;
    Ok(Root { fd, shown: RawPath::from(parent), kind: RootKind::Single(name) })
}

/// A directory waiting to be listed: root index, path below the root,
/// and the root's device (directories on other devices are not entered).
struct Dir {
    root: usize,
    relative: Vec<u8>,
    dev: u64,
}

enum Job {
    List(Dir),
    Hash(Found),
}

#[derive(Default)]
struct Queue {
    dirs: Vec<Dir>,
    files: VecDeque<Found>,
    /// Directories being listed now: their entries are still to come.
    listing: usize,
}

/// The work of one scan, shared by the walker and the hashing workers.
/// It is finished when no directory is queued or being listed and no file
/// is queued.
struct Work<'a> {
    roots: &'a [Root],
    digester: &'a Digester,
    queue: Mutex<Queue>,
    changed: Condvar,
}

impl<'a> Work<'a> {
    fn new(roots: &'a [Root], digester: &'a Digester) -> Self {
        Self { roots, digester, queue: Mutex::default(), changed: Condvar::new() }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Queues a root: its directory entry and its listing, or its one file.
    fn add_root(&self, index: usize, result: &mut Scan) {
        let root = &self.roots[index];
        let found = match &root.kind {
            RootKind::Tree(stat) => {
                let dir = Dir { root: index, relative: Vec::new(), dev: stat.dev };
                self.lock().dirs.push(dir);
                Ok(Found { root: index, relative: Vec::new(), stat: *stat, link_target: None })
            }
            RootKind::Single(name) => beneath::stat_at(root.fd.as_fd(), name).and_then(|stat| {
                let link_target = link_target(&root.fd, name, &stat)?;
                Ok(Found { root: index, relative: name.clone(), stat, link_target })
            }),
        };
        let mut files = Vec::new();
        match found {
            Ok(found) => self.sort_out(found, result, &mut files),
            Err(source) => result.errors.push(ScanError { path: root.shown.clone(), source }),
        }
        self.lock().files.extend(files);
    }

    /// One thread's loop; `hashes` is false for the walker.
    fn run(&self, hashes: bool) -> Scan {
        let mut done = Scan::default();
        while let Some(job) = self.next(hashes) {
            match job {
                Job::Hash(found) => match hash_entry(self.roots, &found, self.digester) {
                    Ok(Some(entry)) => done.entries.push(entry),
                    Ok(None) => {
                        debug!(path = %found.path(self.roots), "file vanished during the scan")
                    }
                    Err(source) => {
                        done.errors.push(ScanError { path: found.path(self.roots), source })
                    }
                },
                Job::List(dir) => {
                    let _listing = Listing(self);
                    let (dirs, files) = self.list(dir, &mut done);
                    let mut queue = self.lock();
                    queue.dirs.extend(dirs);
                    queue.files.extend(files);
                }
            }
        }
        done
    }

    /// The next job: files first for workers, so the queue drains; `None`
    /// once the scan is finished.
    fn next(&self, hashes: bool) -> Option<Job> {
        let mut queue = self.lock();
        loop {
            if hashes && let Some(found) = queue.files.pop_front() {
                return Some(Job::Hash(found));
            }
            if let Some(dir) = queue.dirs.pop() {
                queue.listing += 1;
                return Some(Job::List(dir));
            }
            let files_left = hashes && !queue.files.is_empty();
            if queue.listing == 0 && !files_left {
                return None;
            }
            queue = self.changed.wait(queue).unwrap_or_else(|poisoned| poisoned.into_inner());
        }
    }

    /// Lists one directory: subdirectories on the root's file system and
    /// regular files are returned for the queue, other entries are done.
    /// Limitation: a path more than PATH_MAX bytes below its root cannot be
    /// opened (ENAMETOOLONG) and is reported as an error.
    fn list(&self, dir: Dir, done: &mut Scan) -> (Vec<Dir>, Vec<Found>) {
        let (mut dirs, mut files) = (Vec::new(), Vec::new());
        let root = &self.roots[dir.root];
        let listed = beneath::open_dir_beneath(root.fd.as_fd(), &dir.relative)
            .and_then(|fd| beneath::list_dir(fd.as_fd()).map(|names| (fd, names)));
        let (fd, names) = match listed {
            Ok(listed) => listed,
            Err(source) => {
                done.errors.push(ScanError { path: shown(root, &dir.relative), source });
                return (dirs, files);
            }
        };
        for name in names {
            let child = child_path(&dir.relative, &name);
            let found = beneath::stat_at(fd.as_fd(), &name).and_then(|stat| {
                let link_target = link_target(&fd, &name, &stat)?;
                Ok(Found { root: dir.root, relative: child.clone(), stat, link_target })
            });
            match found {
                Ok(found) => {
                    if found.stat.is_dir() && found.stat.dev == dir.dev {
                        dirs.push(Dir { root: dir.root, relative: child, dev: dir.dev });
                    }
                    self.sort_out(found, done, &mut files);
                }
                Err(error) if error.raw_os_error() == Some(libc::ENOENT) => {}
                Err(source) => {
                    done.errors.push(ScanError { path: root.shown.join(&child), source })
                }
            }
        }
        (dirs, files)
    }

    /// A regular file goes to the hashing queue; anything else is done.
    fn sort_out(&self, found: Found, done: &mut Scan, files: &mut Vec<Found>) {
        if found.stat.is_regular() {
            files.push(found);
        } else {
            let path = found.path(self.roots);
            done.entries.push(entry(path, &found.stat, None, found.link_target));
        }
    }
}

/// Marks the end of a listing even if the lister panicked, so the other
/// threads never wait for it forever.
struct Listing<'a, 'b>(&'a Work<'b>);

impl Drop for Listing<'_, '_> {
    fn drop(&mut self) {
        self.0.lock().listing -= 1;
        self.0.changed.notify_all();
    }
}

fn shown(root: &Root, relative: &[u8]) -> RawPath {
    if relative.is_empty() { root.shown.clone() } else { root.shown.join(relative) }
}

fn child_path(parent: &[u8], name: &[u8]) -> Vec<u8> {
    let mut child = Vec::with_capacity(parent.len() + 1 + name.len());
    if !parent.is_empty() {
        child.extend_from_slice(parent);
        child.push(b'/');
    }
    child.extend_from_slice(name);
    child
}

fn link_target(dir: &OwnedFd, name: &[u8], stat: &Stat) -> io::Result<Option<RawPath>> {
    if stat.format() != libc::S_IFLNK {
        return Ok(None);
    }
    beneath::read_link_at(dir.as_fd(), name).map(|target| Some(RawPath::from_bytes(target)))
}

fn hash_entry(roots: &[Root], item: &Found, digester: &Digester) -> io::Result<Option<Entry>> {
    let path = item.path(roots);
    let fd = match beneath::open_file_beneath(roots[item.root].fd.as_fd(), &item.relative) {
        Ok(fd) => fd,
        Err(error) if error.raw_os_error() == Some(libc::ENOENT) => return Ok(None),
        Err(error) => return Err(error),
    };
    // Replaced by something else since the walk saw it.
    let now = beneath::stat_fd(fd.as_fd())?;
    if !now.is_regular() {
        return Ok(Some(entry(path, &now, None, None)));
    }
    let Some(digest) = digester.digest(fd, now)? else { return Ok(None) };
    let mut entry = entry(path, &digest.stat, Some(digest.hex), None);
    entry.partial = digest.partial;
    entry.unstable = digest.unstable;
    Ok(Some(entry))
}

fn entry(
    path: RawPath,
    stat: &Stat,
    blake3: Option<String>,
    link_target: Option<RawPath>,
) -> Entry {
    Entry::new(path, file_state(stat, blake3, link_target))
}

impl Entry {
    /// The manifest line of a path in `state`.
    pub fn new(path: RawPath, state: FileState) -> Self {
        let mtime = OffsetDateTime::from_unix_timestamp_nanos(i128::from(state.mtime_ns))
            .unwrap_or(OffsetDateTime::UNIX_EPOCH);
        Entry {
            path,
            kind: state.kind,
            blake3: state.blake3,
            size: state.size,
            mode: state.mode,
            uid: state.uid,
            gid: state.gid,
            mtime,
            link_target: state.link_target,
            partial: state.partial,
            unstable: state.unstable,
        }
    }
}

/// Writes one JSON line per entry.
pub fn write_manifest(entries: &[Entry], out: &mut impl Write) -> io::Result<()> {
    for entry in entries {
        serde_json::to_writer(&mut *out, entry)?;
        out.write_all(b"\n")?;
    }
    out.flush()
}

/// A manifest line that is not an entry.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// The manifest could not be read.
    #[error("cannot read the manifest")]
    Read(#[from] io::Error),
    /// A line is not a manifest entry.
    #[error("manifest line {line} is not an entry")]
    Line {
        /// 1-based line number.
        line: usize,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
}

/// Reads a manifest written by [`write_manifest`]; blank lines are skipped.
pub fn read_manifest(input: impl BufRead) -> Result<Vec<Entry>, ManifestError> {
    let mut entries = Vec::new();
    for (index, line) in input.lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let entry = serde_json::from_str(&line)
            .map_err(|source| ManifestError::Line { line: index + 1, source })?;
        entries.push(entry);
    }
    Ok(entries)
}

/// Writes one JSON line per difference.
pub fn write_differences(differences: &[Difference], out: &mut impl Write) -> io::Result<()> {
    for difference in differences {
        serde_json::to_writer(&mut *out, difference)?;
        out.write_all(b"\n")?;
    }
    out.flush()
}

/// What differs for one path between two manifests.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Difference {
    /// `added`, `removed` or `changed`.
    pub change: &'static str,
    /// The path.
    pub path: RawPath,
    /// For `changed`: the fields that differ.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<&'static str>,
    /// The entry in the old manifest.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub before: Option<Entry>,
    /// The entry now.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub after: Option<Entry>,
}

/// The differences from `before` to `after`, sorted by path. Timestamps
/// alone are not a difference (as for alerts); content, type, mode, owner
/// and link targets are, and size except for directories.
pub fn compare(before: &[Entry], after: &[Entry]) -> Vec<Difference> {
    let mut before: Vec<&Entry> = before.iter().collect();
    let mut after: Vec<&Entry> = after.iter().collect();
    before.sort_by(|a, b| a.path.cmp(&b.path));
    after.sort_by(|a, b| a.path.cmp(&b.path));
    let (mut old, mut new) = (before.into_iter().peekable(), after.into_iter().peekable());
    let mut differences = Vec::new();
    loop {
        let order = match (old.peek(), new.peek()) {
            (None, None) => break,
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (Some(a), Some(b)) => a.path.cmp(&b.path),
        };
        let (a, b) = match order {
            std::cmp::Ordering::Less => (old.next(), None),
            std::cmp::Ordering::Greater => (None, new.next()),
            std::cmp::Ordering::Equal => (old.next(), new.next()),
        };
        differences.extend(difference(a, b));
    }
    differences
}

fn difference(before: Option<&Entry>, after: Option<&Entry>) -> Option<Difference> {
    let (change, path, fields) = match (before, after) {
        (Some(old), None) => ("removed", old.path.clone(), Vec::new()),
        (None, Some(new)) => ("added", new.path.clone(), Vec::new()),
        (Some(old), Some(new)) => {
            let fields = changed_fields(old, new);
            if fields.is_empty() {
                return None;
            }
            ("changed", new.path.clone(), fields)
        }
        (None, None) => return None,
    };
    Some(Difference { change, path, fields, before: before.cloned(), after: after.cloned() })
}

fn changed_fields(old: &Entry, new: &Entry) -> Vec<&'static str> {
    let directories = old.kind == FileKind::Directory && new.kind == FileKind::Directory;
    let checks = [
        ("type", old.kind != new.kind),
        ("blake3", old.blake3 != new.blake3),
        ("size", !directories && old.size != new.size),
        ("mode", old.mode != new.mode),
        ("uid", old.uid != new.uid),
        ("gid", old.gid != new.gid),
        ("link_target", old.link_target != new.link_target),
    ];
    checks.into_iter().filter(|(_, differs)| *differs).map(|(field, _)| field).collect()
}
