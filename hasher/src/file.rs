//! Inspecting one file safely: metadata always, BLAKE3 for regular files.
//!
//! The path is examined with `lstat` and opened with `O_NOFOLLOW |
//! O_NONBLOCK`, so a symbolic link is reported as a link (never followed)
//! and a FIFO or device never blocks the worker: only regular files are
//! read. Content is read through a buffer, never memory-mapped, because a
//! file truncated underneath a mapping raises SIGBUS. A file whose size or
//! modification time changes while it is read is read again, a few times.

use std::fs::{File, Metadata, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::Path;

use schemas::{FileKind, FileState, RawPath};

// Read buffer: large enough for BLAKE3's SIMD paths, small enough that many
// workers stay within a few megabytes whatever the file sizes.
const BUFFER: usize = 128 * 1024;
// Attempts at hashing a file that keeps changing before the last result is
// reported as is.
const ATTEMPTS: usize = 3;

/// Why a file could not be inspected (other than being gone).
#[derive(Debug, thiserror::Error)]
#[error("cannot inspect {path}")]
pub struct FileError {
    path: RawPath,
    #[source]
    source: io::Error,
}

/// The file's current state, or `None` when it does not exist (any more).
pub fn inspect(path: &Path) -> Result<Option<FileState>, FileError> {
    let fail = |source| FileError { path: path.into(), source };
    let metadata = match std::fs::symlink_metadata(path) {
        Ok(metadata) => metadata,
        Err(error) if is_gone(&error) => return Ok(None),
        Err(error) => return Err(fail(error)),
    };
    let kind = kind_of(&metadata);
    match kind {
        FileKind::File => {
            hash_regular(path).or_else(|e| if is_gone(&e) { Ok(None) } else { Err(fail(e)) })
        }
        FileKind::Symlink => match std::fs::read_link(path) {
            Ok(target) => Ok(Some(state(kind, &metadata, None, Some(target.into())))),
            Err(error) if is_gone(&error) => Ok(None),
            Err(error) => Err(fail(error)),
        },
        _ => Ok(Some(state(kind, &metadata, None, None))),
    }
}

fn hash_regular(path: &Path) -> io::Result<Option<FileState>> {
    let mut file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)?;
    let mut last = None;
    for _ in 0..ATTEMPTS {
        let before = file.metadata()?;
        if kind_of(&before) != FileKind::File {
            // Replaced by something else between lstat and open.
            return Ok(Some(state(kind_of(&before), &before, None, None)));
        }
        let digest = hash_content(&mut file)?;
        let after = file.metadata()?;
        let stable = before.len() == after.len()
            && before.mtime_nsec() == after.mtime_nsec()
            && before.mtime() == after.mtime();
        last = Some(state(FileKind::File, &after, Some(digest), None));
        if stable {
            break;
        }
    }
    Ok(last)
}

fn hash_content(file: &mut File) -> io::Result<String> {
    use std::io::Seek;
    file.rewind()?;
    let mut hasher = blake3::Hasher::new();
    let mut buffer = vec![0; BUFFER];
    loop {
        match file.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => {
                hasher.update(&buffer[..n]);
            }
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) => return Err(error),
        }
    }
    Ok(hasher.finalize().to_hex().to_string())
}

fn state(
    kind: FileKind,
    metadata: &Metadata,
    blake3: Option<String>,
    link_target: Option<RawPath>,
) -> FileState {
    FileState {
        kind,
        blake3,
        size: metadata.len(),
        mode: metadata.mode(),
        uid: metadata.uid(),
        gid: metadata.gid(),
        mtime_ns: metadata
            .mtime()
            .saturating_mul(1_000_000_000)
            .saturating_add(metadata.mtime_nsec()),
        link_target,
        partial: false,
        unstable: false,
    }
}

fn kind_of(metadata: &Metadata) -> FileKind {
    let file_type = metadata.file_type();
    if file_type.is_symlink() {
        FileKind::Symlink
    } else if file_type.is_dir() {
        FileKind::Directory
    } else if file_type.is_fifo() {
        FileKind::Fifo
    } else if file_type.is_socket() {
        FileKind::Socket
    } else if file_type.is_block_device() {
        FileKind::BlockDevice
    } else if file_type.is_char_device() {
        FileKind::CharDevice
    } else {
        FileKind::File
    }
}

// ENOTDIR: a parent directory was replaced by a file. ELOOP: the last
// component became a symbolic link between lstat and open.
fn is_gone(error: &io::Error) -> bool {
    matches!(error.raw_os_error(), Some(libc::ENOENT | libc::ENOTDIR | libc::ELOOP))
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::symlink;

    use super::*;

    #[test]
    fn regular_files_get_blake3_and_metadata() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("passwd");
        std::fs::write(&path, b"root:x:0:0::/root:/bin/sh\n").unwrap();
        let state = inspect(&path).unwrap().unwrap();
        assert_eq!(state.kind, FileKind::File);
        assert_eq!(state.size, 26);
        let expected = blake3::hash(b"root:x:0:0::/root:/bin/sh\n").to_hex().to_string();
        assert_eq!(state.blake3.as_deref(), Some(expected.as_str()));
    }

    #[test]
    fn missing_files_are_gone_not_errors() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(inspect(&dir.path().join("nope")).unwrap(), None);
        assert_eq!(inspect(&dir.path().join("nope/deeper")).unwrap(), None);
    }

    #[test]
    fn symbolic_links_are_reported_never_followed() {
        let dir = tempfile::tempdir().unwrap();
        let link = dir.path().join("shadow");
        symlink("/etc/shadow", &link).unwrap();
        let state = inspect(&link).unwrap().unwrap();
        assert_eq!(state.kind, FileKind::Symlink);
        assert_eq!(state.blake3, None);
        assert_eq!(state.link_target, Some(RawPath::from("/etc/shadow")));
    }

    #[test]
    fn fifos_are_reported_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("pipe");
        let c_path = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: c_path is a valid NUL-terminated string.
        assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0);
        let state = inspect(&fifo).unwrap().unwrap();
        assert_eq!(state.kind, FileKind::Fifo);
        assert_eq!(state.blake3, None);
    }
}
