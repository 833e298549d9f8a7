//! What the hasher learns about one changed path: its state now, the
//! image's version of it, and captured content for a diff.
//!
//! Container paths on overlay roots are looked up through the upper
//! directory and the image layers as overlayfs merges them; the image's
//! version through the layers alone. Host paths are looked up below the
//! watch root. Every open is beneath a root descriptor with no link
//! followed (see `beneath`); only regular files are opened for reading, with
//! `O_NONBLOCK`, so a FIFO, socket or device is reported by type and never
//! blocks a worker. A path that is gone, or hidden by a whiteout, has no
//! state.

use std::io;
use std::os::fd::AsFd;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use schemas::{
    CapturedContent, ContainerRoot, FileKind, FileState, ImageVersion, RawEvent, RawPath, Source,
};

use crate::beneath::{self, Stat};
use crate::capture;
use crate::digest::Digester;
use crate::layers::{self, Found, Rules};

/// Why a path could not be inspected (other than being gone).
#[derive(Debug, thiserror::Error)]
#[error("cannot inspect {path}")]
pub struct FileError {
    path: RawPath,
    #[source]
    source: io::Error,
}

/// Everything learnt about one event's path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inspection {
    /// The path now; `None` when it is gone.
    pub state: Option<FileState>,
    /// The image's version, for container paths on overlay roots.
    pub image: Option<ImageVersion>,
    /// Redacted content for a diff, when the path is captured.
    pub content: Option<CapturedContent>,
    /// Bytes read to hash (0 when every digest came from the cache).
    pub bytes_read: u64,
}

/// How files are inspected; shared by every worker of a pool.
pub struct Inspector {
    digester: Digester,
    capture_globs: Vec<String>,
    capture_bytes: usize,
}

/// One side of a lookup: the found entry and its state.
struct Side {
    found: Option<Found>,
    state: Option<FileState>,
    bytes_read: u64,
}

/// The image's side, with the layer directory that holds it.
struct ImageSide {
    side: Side,
    layer: Option<RawPath>,
}

impl Inspector {
    /// An inspector hashing at most `max_hash_bytes` of a file, caching
    /// `cache_entries` digests, capturing content of paths under
    /// `capture_globs` up to `capture_bytes`.
    pub fn new(
        max_hash_bytes: u64,
        cache_entries: usize,
        capture_globs: Vec<String>,
        capture_bytes: usize,
    ) -> Self {
        let digester = Digester::new(max_hash_bytes, cache_entries);
        Self { digester, capture_globs, capture_bytes }
    }

    /// Inspects the path `event` names.
    pub fn observe(&self, event: &RawEvent) -> Result<Inspection, FileError> {
        let fail = |source| FileError { path: event.host_path.clone(), source };
        let (current, image) = match &event.container_root {
            Some(root) => self.container(root, event.path.as_bytes()).map_err(fail)?,
            None => (self.host(event).map_err(fail)?, None),
        };
        let content = self.capture(event, &current, image.as_ref().map(|image| &image.side));
        let bytes_read =
            current.bytes_read + image.as_ref().map_or(0, |image| image.side.bytes_read);
        let image = image.map(|image| ImageVersion { state: image.side.state, layer: image.layer });
        Ok(Inspection { state: current.state, image, content, bytes_read })
    }

    fn container(
        &self,
        root: &ContainerRoot,
        path: &[u8],
    ) -> io::Result<(Side, Option<ImageSide>)> {
        let lowers: Vec<&Path> = root.lower_dirs.iter().map(RawPath::as_path).collect();
        let mut merged = vec![root.upper_dir.as_path()];
        merged.extend(&lowers);
        let current = self.side(&merged, path, Rules::Overlay)?;
        let image = self.side(&lowers, path, Rules::Overlay)?;
        let layer = image.found.as_ref().map(|found| root.lower_dirs[found.layer].clone());
        Ok((current, Some(ImageSide { side: image, layer })))
    }

    fn host(&self, event: &RawEvent) -> io::Result<Side> {
        let (base, relative) = host_split(event);
        self.side(&[base.as_path()], &relative, Rules::Plain)
    }

    fn side(&self, layers: &[&Path], path: &[u8], rules: Rules) -> io::Result<Side> {
        let Some(found) = layers::resolve(layers, path, rules)? else {
            return Ok(Side { found: None, state: None, bytes_read: 0 });
        };
        match self.state_of(&found) {
            Ok(Some((state, bytes_read))) => {
                Ok(Side { found: Some(found), state: Some(state), bytes_read })
            }
            Ok(None) => Ok(Side { found: None, state: None, bytes_read: 0 }),
            Err(error) if layers::is_missing(&error) => {
                Ok(Side { found: None, state: None, bytes_read: 0 })
            }
            Err(error) => Err(error),
        }
    }

    /// The state of a found entry: a digest for regular files, the target
    /// for links, metadata for everything else. `None` when it vanished.
    fn state_of(&self, found: &Found) -> io::Result<Option<(FileState, u64)>> {
        let stat = &found.stat;
        match kind_of(stat) {
            FileKind::File => self.regular(found),
            FileKind::Symlink => {
                let target = beneath::read_link_at(found.parent.as_fd(), &found.name)?;
                let state = file_state(stat, None, Some(RawPath::from_bytes(target)));
                Ok(Some((state, 0)))
            }
            _ => Ok(Some((file_state(stat, None, None), 0))),
        }
    }

    // Limitation: between lstat and open a regular file can be swapped for a
    // device node; O_NONBLOCK keeps the open from blocking, but opening some
    // devices has side effects (a tape rewinds). The state reported is the
    // device's, never its content.
    fn regular(&self, found: &Found) -> io::Result<Option<(FileState, u64)>> {
        let fd = beneath::open_file_beneath(found.parent.as_fd(), &found.name)?;
        // Replaced by a FIFO or device between lstat and open: O_NONBLOCK
        // made the open harmless; report what is there now.
        let now = beneath::stat_fd(fd.as_fd())?;
        if !now.is_regular() {
            return Ok(Some((file_state(&now, None, None), 0)));
        }
        let Some(digest) = self.digester.digest(fd, now)? else { return Ok(None) };
        let mut state = file_state(&digest.stat, Some(digest.hex), None);
        state.partial = digest.partial;
        state.unstable = digest.unstable;
        Ok(Some((state, digest.bytes_read)))
    }

    fn capture(
        &self,
        event: &RawEvent,
        current: &Side,
        image: Option<&Side>,
    ) -> Option<CapturedContent> {
        if !capture::wanted(&self.capture_globs, event.path.as_bytes()) {
            return None;
        }
        let (now, now_cut) = self.read_text(current)?;
        let (image, image_cut) = match image.and_then(|side| self.read_text(side)) {
            Some((content, cut)) => (Some(content), cut),
            None => (None, false),
        };
        let path = event.path.as_bytes();
        Some(CapturedContent {
            current: capture::redact(path, &now),
            image: image.map(|content| capture::redact(path, &content)),
            truncated: now_cut || image_cut,
        })
    }

    /// The first `capture_bytes` of a regular text file, and whether it was
    /// cut. Limitation: it is read after hashing, so a write in between can
    /// make the captured text newer than the hash. `None` for anything else or on any error: capture is best
    /// effort and never fails an observation.
    fn read_text(&self, side: &Side) -> Option<(Vec<u8>, bool)> {
        let found = side.found.as_ref()?;
        if side.state.as_ref()?.kind != FileKind::File {
            return None;
        }
        let fd = beneath::open_file_beneath(found.parent.as_fd(), &found.name).ok()?;
        let file = std::fs::File::from(fd);
        let mut buffer = vec![0; self.capture_bytes + 1];
        let mut filled = 0;
        while filled < buffer.len() {
            match file.read_at(&mut buffer[filled..], filled as u64) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return None,
            }
        }
        let truncated = filled > self.capture_bytes;
        buffer.truncate(filled.min(self.capture_bytes));
        capture::is_text(&buffer).then_some((buffer, truncated))
    }
}

/// The directory to resolve a host path from, and the path below it: the
/// watch root when the path lies below it (the root's parent when the root
/// is the file itself), else `/`, so no link below the root is followed.
fn host_split(event: &RawEvent) -> (PathBuf, Vec<u8>) {
    let path = event.host_path.as_bytes();
    if let Source::Host { root } = &event.source {
        let root_bytes = root.as_bytes();
        if let Some(rest) = path.strip_prefix(root_bytes) {
            if rest.is_empty() {
                let parent = root.as_path().parent().unwrap_or(Path::new("/"));
                let name = root.as_path().file_name().map(|n| n.as_encoded_bytes().to_vec());
                return (parent.to_path_buf(), name.unwrap_or_default());
            }
            if rest.starts_with(b"/") || root_bytes.ends_with(b"/") {
                return (root.as_path().to_path_buf(), rest.to_vec());
            }
        }
    }
    // Limitation: a container path without overlay layers (another
    // snapshotter, a volume) is resolved from `/` with no link allowed at
    // all, so a root reached through a link on the host reads as gone.
    (PathBuf::from("/"), path.to_vec())
}

pub(crate) fn file_state(
    stat: &Stat,
    blake3: Option<String>,
    link_target: Option<RawPath>,
) -> FileState {
    FileState {
        kind: kind_of(stat),
        blake3,
        size: stat.size,
        mode: stat.mode,
        uid: stat.uid,
        gid: stat.gid,
        mtime_ns: stat.mtime_ns,
        link_target,
        partial: false,
        unstable: false,
    }
}

fn kind_of(stat: &Stat) -> FileKind {
    match stat.format() {
        libc::S_IFLNK => FileKind::Symlink,
        libc::S_IFDIR => FileKind::Directory,
        libc::S_IFIFO => FileKind::Fifo,
        libc::S_IFSOCK => FileKind::Socket,
        libc::S_IFBLK => FileKind::BlockDevice,
        libc::S_IFCHR => FileKind::CharDevice,
        _ => FileKind::File,
    }
}
