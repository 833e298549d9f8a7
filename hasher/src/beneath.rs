//! File-system calls relative to a directory descriptor that never follow a
//! symbolic link and never leave the directory they start from.
//!
//! Every open goes through `openat2` with `RESOLVE_BENEATH |
//! RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS`: a container can make any
//! directory of its upper layer a link (`/app -> /etc`), and a plain `open`
//! by host path would then resolve it on the host. `stat` and `readlink`
//! take one name relative to a directory already opened that way. Paths are
//! bytes; a NUL inside one is an `InvalidInput` error, never a panic.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::path::Path;

// A concurrent rename under the root makes openat2 fail with EAGAIN when
// RESOLVE_BENEATH is set; the kernel asks the caller to retry.
const EAGAIN_RETRIES: usize = 8;

/// What `fstat` says about an object, in the units the rest of the crate
/// uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Stat {
    pub dev: u64,
    pub ino: u64,
    pub mode: u32,
    pub nlink: u64,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    pub rdev: u64,
    pub mtime_ns: i64,
    pub ctime_ns: i64,
}

impl Stat {
    fn from_raw(raw: &libc::stat) -> Self {
        let ns = |secs: i64, nsecs: i64| secs.saturating_mul(1_000_000_000).saturating_add(nsecs);
        Self {
            dev: raw.st_dev,
            ino: raw.st_ino,
            mode: raw.st_mode,
            nlink: raw.st_nlink,
            uid: raw.st_uid,
            gid: raw.st_gid,
            size: u64::try_from(raw.st_size).unwrap_or(0),
            rdev: raw.st_rdev,
            mtime_ns: ns(raw.st_mtime, raw.st_mtime_nsec),
            ctime_ns: ns(raw.st_ctime, raw.st_ctime_nsec),
        }
    }

    /// The `S_IFMT` bits.
    pub fn format(&self) -> u32 {
        self.mode & libc::S_IFMT
    }

    pub fn is_dir(&self) -> bool {
        self.format() == libc::S_IFDIR
    }

    pub fn is_regular(&self) -> bool {
        self.format() == libc::S_IFREG
    }

    /// An overlayfs whiteout: a character device with device number 0/0.
    pub fn is_whiteout(&self) -> bool {
        self.format() == libc::S_IFCHR && self.rdev == 0
    }
}

/// Opens a root directory by its host path. Links in the root's own path
/// are followed: the operator or the runtime chose it.
pub(crate) fn open_root(path: &Path) -> io::Result<OwnedFd> {
    let path = c_path(path.as_os_str().as_encoded_bytes())?;
    let flags = libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC;
    // SAFETY: path is NUL-terminated and outlives the call.
    let fd = unsafe { libc::open(path.as_ptr(), flags) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd was just returned by open and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Opens `relative` below `dir`, refusing any symbolic link on the way
/// (ELOOP) and any escape from `dir` (EXDEV). An empty path opens `dir`
/// itself again.
pub(crate) fn open_beneath(
    dir: BorrowedFd<'_>,
    relative: &[u8],
    flags: i32,
) -> io::Result<OwnedFd> {
    let relative = if relative.is_empty() { b"." as &[u8] } else { relative };
    let path = c_path(relative)?;
    // SAFETY: open_how is plain data; all-zero is its documented default.
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = (flags | libc::O_CLOEXEC | libc::O_NOFOLLOW) as u64;
    how.resolve = libc::RESOLVE_BENEATH | libc::RESOLVE_NO_SYMLINKS | libc::RESOLVE_NO_MAGICLINKS;
    let mut retries = 0;
    loop {
        // SAFETY: every pointer is valid for the call and the size is the
        // size of the struct passed.
        let fd = unsafe {
            libc::syscall(
                libc::SYS_openat2,
                dir.as_raw_fd(),
                path.as_ptr(),
                &how as *const libc::open_how,
                std::mem::size_of::<libc::open_how>(),
            )
        };
        if fd >= 0 {
            // SAFETY: the kernel returned a new descriptor that nobody owns.
            return Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) });
        }
        let error = io::Error::last_os_error();
        let again = matches!(error.raw_os_error(), Some(libc::EAGAIN | libc::EINTR));
        if !again || retries == EAGAIN_RETRIES {
            return Err(error);
        }
        retries += 1;
    }
}

/// Opens a directory below `dir` for reading entries and attributes.
pub(crate) fn open_dir_beneath(dir: BorrowedFd<'_>, relative: &[u8]) -> io::Result<OwnedFd> {
    open_beneath(dir, relative, libc::O_RDONLY | libc::O_DIRECTORY)
}

/// Opens a file below `dir` for reading without blocking on a FIFO and
/// without taking a terminal.
pub(crate) fn open_file_beneath(dir: BorrowedFd<'_>, relative: &[u8]) -> io::Result<OwnedFd> {
    open_beneath(dir, relative, libc::O_RDONLY | libc::O_NONBLOCK | libc::O_NOCTTY)
}

/// `lstat` of one name in `dir`.
pub(crate) fn stat_at(dir: BorrowedFd<'_>, name: &[u8]) -> io::Result<Stat> {
    let name = c_path(name)?;
    // SAFETY: stat is plain data and filled by the kernel.
    let mut raw: libc::stat = unsafe { std::mem::zeroed() };
    let flags = libc::AT_SYMLINK_NOFOLLOW | libc::AT_NO_AUTOMOUNT;
    // SAFETY: name is NUL-terminated, raw is a valid out pointer.
    let rc = unsafe { libc::fstatat(dir.as_raw_fd(), name.as_ptr(), &mut raw, flags) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(Stat::from_raw(&raw))
}

/// `fstat` of an open descriptor.
pub(crate) fn stat_fd(fd: BorrowedFd<'_>) -> io::Result<Stat> {
    // SAFETY: stat is plain data and filled by the kernel.
    let mut raw: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: raw is a valid out pointer; fd is open.
    if unsafe { libc::fstat(fd.as_raw_fd(), &mut raw) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(Stat::from_raw(&raw))
}

/// The target of the symbolic link `name` in `dir`, as bytes.
pub(crate) fn read_link_at(dir: BorrowedFd<'_>, name: &[u8]) -> io::Result<Vec<u8>> {
    let name = c_path(name)?;
    let mut buffer = vec![0u8; libc::PATH_MAX as usize];
    // SAFETY: buffer is valid for its length; name is NUL-terminated.
    let n = unsafe {
        libc::readlinkat(dir.as_raw_fd(), name.as_ptr(), buffer.as_mut_ptr().cast(), buffer.len())
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    buffer.truncate(n as usize);
    Ok(buffer)
}

/// Whether the directory `dir` carries overlayfs' opaque mark (`y`) under
/// the `trusted.` or, for unprivileged overlays, the `user.` namespace.
pub(crate) fn is_opaque(dir: BorrowedFd<'_>) -> bool {
    [c"trusted.overlay.opaque", c"user.overlay.opaque"].iter().any(|name| {
        let mut value = [0u8; 4];
        // SAFETY: value is valid for its length; name is NUL-terminated.
        let n = unsafe {
            libc::fgetxattr(dir.as_raw_fd(), name.as_ptr(), value.as_mut_ptr().cast(), value.len())
        };
        n == 1 && value[0] == b'y'
    })
}

/// The names in the directory `dir` (without `.` and `..`), unsorted.
pub(crate) fn list_dir(dir: BorrowedFd<'_>) -> io::Result<Vec<Vec<u8>>> {
    // fdopendir takes ownership of the descriptor it is given, so give it a
    // duplicate and keep `dir` usable.
    // SAFETY: F_DUPFD_CLOEXEC on an open descriptor has no memory effects.
    let copy = unsafe { libc::fcntl(dir.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 0) };
    if copy < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: copy is an open directory descriptor owned by nobody else.
    let stream = unsafe { libc::fdopendir(copy) };
    if stream.is_null() {
        let error = io::Error::last_os_error();
        // SAFETY: copy is still ours when fdopendir failed.
        unsafe { libc::close(copy) };
        return Err(error);
    }
    let names = read_entries(stream);
    // SAFETY: stream came from fdopendir and is closed exactly once.
    unsafe { libc::closedir(stream) };
    names
}

fn read_entries(stream: *mut libc::DIR) -> io::Result<Vec<Vec<u8>>> {
    let mut names = Vec::new();
    loop {
        // readdir reports errors only through errno, so clear it first.
        // SAFETY: errno is thread-local.
        unsafe { *libc::__errno_location() = 0 };
        // SAFETY: stream is a valid open directory stream.
        let entry = unsafe { libc::readdir64(stream) };
        if entry.is_null() {
            let error = io::Error::last_os_error();
            return match error.raw_os_error() {
                Some(0) | None => Ok(names),
                Some(_) => Err(error),
            };
        }
        // SAFETY: d_name is NUL-terminated within the entry the kernel gave.
        let name = unsafe { std::ffi::CStr::from_ptr((*entry).d_name.as_ptr()) }.to_bytes();
        if name != b"." && name != b".." {
            names.push(name.to_vec());
        }
    }
}

fn c_path(bytes: &[u8]) -> io::Result<CString> {
    CString::new(bytes).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL byte in path"))
}

#[cfg(test)]
mod tests {
    use std::os::fd::AsFd;
    use std::os::unix::fs::symlink;

    use super::*;

    #[test]
    fn an_intermediate_directory_link_is_refused_not_followed() {
        let root = tempfile::tempdir().unwrap();
        symlink("/etc", root.path().join("app")).unwrap();
        let fd = open_root(root.path()).unwrap();
        let error = open_file_beneath(fd.as_fd(), b"app/passwd").unwrap_err();
        assert_eq!(error.raw_os_error(), Some(libc::ELOOP));
    }

    #[test]
    fn dot_dot_cannot_climb_out_of_the_root() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir(root.path().join("sub")).unwrap();
        let sub = open_root(&root.path().join("sub")).unwrap();
        let error = open_file_beneath(sub.as_fd(), b"../../../etc/passwd").unwrap_err();
        assert_eq!(error.raw_os_error(), Some(libc::EXDEV));
    }

    #[test]
    fn nul_bytes_in_a_path_are_an_error_not_a_panic() {
        let root = tempfile::tempdir().unwrap();
        let fd = open_root(root.path()).unwrap();
        let error = open_file_beneath(fd.as_fd(), b"a\0b").unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::InvalidInput);
    }

    #[test]
    fn directory_listing_returns_raw_names() {
        let root = tempfile::tempdir().unwrap();
        let odd = root
            .path()
            .join(<std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(b"caf\xe9"));
        std::fs::write(odd, "x").unwrap();
        std::fs::write(root.path().join("plain"), "y").unwrap();
        let fd = open_root(root.path()).unwrap();
        let mut names = list_dir(fd.as_fd()).unwrap();
        names.sort();
        assert_eq!(names, vec![b"caf\xe9".to_vec(), b"plain".to_vec()]);
    }
}
