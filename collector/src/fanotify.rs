//! The fanotify group: creation, directory marks, reads, and directory ids.
//!
//! fanotify-rs provides the two system calls; reading and parsing are ours
//! (see [`parser`]) because its reader ignores `event_len` and panics on
//! non-UTF-8 names. Marks are inode marks on directories, so the cost of the
//! group grows with the watched trees, not with unrelated writes on the host.

pub mod parser;

use std::ffi::CString;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use fanotify::low_level::{
    FAN_ATTRIB, FAN_CLASS_NOTIF, FAN_CLOEXEC, FAN_CLOSE_WRITE, FAN_CREATE, FAN_DELETE,
    FAN_DELETE_SELF, FAN_EVENT_ON_CHILD, FAN_MARK_ADD, FAN_MARK_ONLYDIR, FAN_MARK_REMOVE,
    FAN_MOVE_SELF, FAN_NONBLOCK, FAN_ONDIR, FAN_REPORT_DIR_FID, FAN_REPORT_FID, FAN_REPORT_NAME,
    fanotify_init, fanotify_mark,
};
pub use parser::{FileId, KernelEvent, RecordKind};

use crate::Error;

/// One event carrying the old and the new directory and name of a rename
/// (Linux 5.17). fanotify-rs predates it.
pub const FAN_RENAME: u64 = 0x1000_0000;

/// `FAN_*` bits of the events the collector reports.
pub mod mask {
    pub use super::FAN_RENAME as RENAME;
    pub use fanotify::low_level::{
        FAN_ATTRIB as ATTRIB, FAN_CLOSE_WRITE as CLOSE_WRITE, FAN_CREATE as CREATE,
        FAN_DELETE as DELETE, FAN_DELETE_SELF as DELETE_SELF, FAN_MOVE_SELF as MOVE_SELF,
        FAN_ONDIR as ONDIR, FAN_Q_OVERFLOW as Q_OVERFLOW,
    };
}

// Everything that changes content, metadata or names below a directory.
const MARK_MASK: u64 = FAN_CLOSE_WRITE
    | FAN_ATTRIB
    | FAN_CREATE
    | FAN_DELETE
    | FAN_RENAME
    | FAN_DELETE_SELF
    | FAN_MOVE_SELF
    | FAN_ONDIR
    | FAN_EVENT_ON_CHILD;

// Largest file handle the kernel encodes (MAX_HANDLE_SZ).
const MAX_HANDLE_SZ: usize = 128;

/// A fanotify notification group that reports directory ids, names and
/// object ids. Closing it (drop) removes every mark.
pub struct Group {
    fd: OwnedFd,
}

impl Group {
    /// Creates the group, non-blocking, for [`tokio::io::unix::AsyncFd`].
    pub fn new() -> Result<Self, Error> {
        let flags = FAN_CLASS_NOTIF
            | FAN_CLOEXEC
            | FAN_NONBLOCK
            | FAN_REPORT_DIR_FID
            | FAN_REPORT_NAME
            | FAN_REPORT_FID;
        let event_flags = (libc::O_RDONLY | libc::O_CLOEXEC | libc::O_LARGEFILE) as u32;
        let fd = fanotify_init(flags, event_flags).map_err(|source| {
            if source.raw_os_error() == Some(libc::EPERM) {
                Error::NotPermitted { source }
            } else {
                Error::Init { source }
            }
        })?;
        // SAFETY: fanotify_init returned a fresh descriptor that nothing else owns.
        Ok(Self { fd: unsafe { OwnedFd::from_raw_fd(fd) } })
    }

    /// Places an inode mark on the directory `dir` refers to.
    pub fn mark_directory(&self, dir: BorrowedFd<'_>) -> io::Result<()> {
        let flags = FAN_MARK_ADD | FAN_MARK_ONLYDIR;
        fanotify_mark(self.fd.as_raw_fd(), flags, MARK_MASK, dir.as_raw_fd(), ".")
    }

    /// Removes the inode mark from the directory `dir` refers to.
    pub fn unmark_directory(&self, dir: BorrowedFd<'_>) -> io::Result<()> {
        let flags = FAN_MARK_REMOVE | FAN_MARK_ONLYDIR;
        fanotify_mark(self.fd.as_raw_fd(), flags, MARK_MASK, dir.as_raw_fd(), ".")
    }

    /// Adds (or removes) an ignore mask for close-after-write on the file
    /// `fd` refers to; it survives modification, so writes stay ignored
    /// until it is removed.
    pub fn ignore_writes(&self, fd: RawFd, ignore: bool) -> io::Result<()> {
        let action = if ignore { FAN_MARK_ADD } else { FAN_MARK_REMOVE };
        let flags = action | libc::FAN_MARK_IGNORED_MASK | libc::FAN_MARK_IGNORED_SURV_MODIFY;
        // SAFETY: both descriptors are open; a null path marks `fd` itself.
        let rc = unsafe {
            libc::fanotify_mark(self.fd.as_raw_fd(), flags, FAN_CLOSE_WRITE, fd, std::ptr::null())
        };
        if rc == 0 { Ok(()) } else { Err(io::Error::last_os_error()) }
    }

    /// Reads queued events into `buffer`; `WouldBlock` when there are none.
    pub fn read(&self, buffer: &mut [u8]) -> io::Result<usize> {
        // SAFETY: the pointer and length describe `buffer`, which outlives the call.
        let n =
            unsafe { libc::read(self.fd.as_raw_fd(), buffer.as_mut_ptr().cast(), buffer.len()) };
        usize::try_from(n).map_err(|_| io::Error::last_os_error())
    }
}

impl AsFd for Group {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl AsRawFd for Group {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

/// Opens a directory without following a final symlink, for marking and
/// identifying it; the descriptor grants no read access.
pub fn open_directory(path: &Path) -> io::Result<OwnedFd> {
    let path = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    let flags = libc::O_PATH | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC;
    // SAFETY: `path` is NUL-terminated and lives across the call.
    let fd = unsafe { libc::open(path.as_ptr(), flags) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: open returned a fresh descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Opens a file for reading without following a final symlink or blocking
/// on a FIFO, for an ignore mark and its status (fanotify_mark refuses
/// O_PATH descriptors without a path); nothing is read.
pub fn open_file(path: &Path) -> io::Result<OwnedFd> {
    let path = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    let flags = libc::O_RDONLY | libc::O_NONBLOCK | libc::O_NOFOLLOW | libc::O_CLOEXEC;
    // SAFETY: `path` is NUL-terminated and lives across the call.
    let fd = unsafe { libc::open(path.as_ptr(), flags) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: open returned a fresh descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

#[repr(C)]
struct FileHandle {
    handle_bytes: libc::c_uint,
    handle_type: libc::c_int,
    f_handle: [u8; MAX_HANDLE_SZ],
}

/// The id fanotify reports for the object `fd` refers to: the filesystem's
/// `f_fsid` and the object's file handle.
pub fn file_id(fd: BorrowedFd<'_>) -> io::Result<FileId> {
    let handle = match file_handle(fd, libc::AT_HANDLE_FID) {
        // Before Linux 6.5 AT_HANDLE_FID is unknown; the plain handle is
        // the same for the filesystems that older kernels can report.
        Err(error) if error.raw_os_error() == Some(libc::EINVAL) => file_handle(fd, 0)?,
        other => other?,
    };
    let len = (handle.handle_bytes as usize).min(MAX_HANDLE_SZ);
    Ok(FileId {
        fsid: fsid(fd)?,
        handle_type: handle.handle_type,
        handle: handle.f_handle[..len].to_vec(),
    })
}

fn file_handle(fd: BorrowedFd<'_>, flags: libc::c_int) -> io::Result<FileHandle> {
    let mut handle =
        FileHandle { handle_bytes: MAX_HANDLE_SZ as u32, handle_type: 0, f_handle: [0; 128] };
    let mut mount_id: libc::c_int = 0;
    // SAFETY: `handle` is a file_handle with room for MAX_HANDLE_SZ bytes, as
    // `handle_bytes` says; the empty path is NUL-terminated.
    let rc = unsafe {
        libc::name_to_handle_at(
            fd.as_raw_fd(),
            c"".as_ptr(),
            (&raw mut handle).cast(),
            &mut mount_id,
            libc::AT_EMPTY_PATH | flags,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(handle)
}

// fanotify reports `__kernel_fsid_t` (two ints); statfs's `fsid_t` has the
// same eight bytes with private fields, so compare the raw bytes.
fn fsid(fd: BorrowedFd<'_>) -> io::Result<[u8; 8]> {
    // SAFETY: statfs is plain data; all-zero is a valid value.
    let mut stat: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: `stat` is a valid, writable statfs.
    if unsafe { libc::fstatfs(fd.as_raw_fd(), &mut stat) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fsid_t is two c_ints (8 bytes), checked by transmute's size rule.
    Ok(unsafe { std::mem::transmute::<libc::fsid_t, [u8; 8]>(stat.f_fsid) })
}
