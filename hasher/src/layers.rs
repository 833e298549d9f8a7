//! Finding a path in a stack of directories the way overlayfs merges them:
//! the top layer first, a whiteout (character device 0/0) hiding the name
//! in every layer below, an opaque directory (`trusted.overlay.opaque=y`)
//! hiding everything below it in lower layers, and a non-directory hiding a
//! directory of the same name below.
//!
//! Each layer is walked one component at a time from a descriptor of its
//! root with `openat2` beneath it, so no link a container made is followed.
//! A host path is a stack of one layer with overlay rules switched off.

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;

use crate::beneath::{self, Stat};

/// Where a path was found.
#[derive(Debug)]
pub(crate) struct Found {
    /// Index of the layer in the stack, top first.
    pub layer: usize,
    /// The directory holding the entry.
    pub parent: OwnedFd,
    /// The entry's name in `parent` (`.` for a layer's root).
    pub name: Vec<u8>,
    /// `lstat` of the entry.
    pub stat: Stat,
}

/// How to read a stack of directories.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Rules {
    /// Whiteouts and opaque directories mean what overlayfs says.
    Overlay,
    /// A plain directory: a 0/0 device is just a device.
    Plain,
}

/// The components of a path relative to a layer root. `.` is skipped;
/// `..` is refused because no event names a path with it legitimately.
pub(crate) fn components(path: &[u8]) -> io::Result<Vec<&[u8]>> {
    let mut parts = Vec::new();
    for part in path.split(|&b| b == b'/') {
        match part {
            b"" | b"." => {}
            b".." => return Err(io::Error::new(io::ErrorKind::InvalidInput, "`..` in path")),
            _ => parts.push(part),
        }
    }
    Ok(parts)
}

// Limitation: only the classic overlay markers are read: whiteouts as 0/0
// devices and `overlay.opaque=y`. Whiteouts stored as xattrs on regular
// files (kernel 6.7+), `overlay.redirect` of renamed directories and
// `metacopy` files (metadata in the upper layer, data in a lower one) are
// not followed; Docker, containerd and CRI-O do not enable the last two by
// default.

/// Looks `path` up in `layers` (top first). `Ok(None)` when no layer has
/// it, or a whiteout or opaque directory hides it.
pub(crate) fn resolve(layers: &[&Path], path: &[u8], rules: Rules) -> io::Result<Option<Found>> {
    let parts = components(path)?;
    for (index, layer) in layers.iter().enumerate() {
        match lookup_in_layer(layer, &parts, rules)? {
            InLayer::Found(parent, name, stat) => {
                return Ok(Some(Found { layer: index, parent, name, stat }));
            }
            InLayer::Hidden => return Ok(None),
            InLayer::Absent { opaque: true } => return Ok(None),
            InLayer::Absent { opaque: false } => {}
        }
    }
    Ok(None)
}

enum InLayer {
    Found(OwnedFd, Vec<u8>, Stat),
    /// A whiteout or a non-directory parent hides the path here and below.
    Hidden,
    /// Not in this layer; `opaque` when a parent directory here is opaque,
    /// so lower layers do not count either.
    Absent {
        opaque: bool,
    },
}

fn lookup_in_layer(layer: &Path, parts: &[&[u8]], rules: Rules) -> io::Result<InLayer> {
    let mut dir = match beneath::open_root(layer) {
        Ok(dir) => dir,
        // A layer directory that vanished (image removed) holds nothing.
        Err(error) if is_missing(&error) => return Ok(InLayer::Absent { opaque: false }),
        Err(error) => return Err(error),
    };
    let Some((last, parents)) = parts.split_last() else {
        let stat = beneath::stat_fd(dir.as_fd())?;
        return Ok(InLayer::Found(dir, b".".to_vec(), stat));
    };

    let mut opaque = false;
    for part in parents {
        let stat = match beneath::stat_at(dir.as_fd(), part) {
            Ok(stat) => stat,
            Err(error) if is_missing(&error) => return Ok(InLayer::Absent { opaque }),
            Err(error) => return Err(error),
        };
        if !stat.is_dir() {
            // A whiteout, file or link in place of a directory hides the
            // directory in lower layers; the path cannot exist below it.
            return Ok(if rules == Rules::Overlay {
                InLayer::Hidden
            } else {
                InLayer::Absent { opaque }
            });
        }
        dir = match beneath::open_dir_beneath(dir.as_fd(), part) {
            Ok(dir) => dir,
            Err(error) if is_missing(&error) => return Ok(InLayer::Absent { opaque }),
            Err(error) => return Err(error),
        };
        opaque |= rules == Rules::Overlay && beneath::is_opaque(dir.as_fd());
    }

    match beneath::stat_at(dir.as_fd(), last) {
        Ok(stat) if rules == Rules::Overlay && stat.is_whiteout() => Ok(InLayer::Hidden),
        Ok(stat) => Ok(InLayer::Found(dir, last.to_vec(), stat)),
        Err(error) if is_missing(&error) => Ok(InLayer::Absent { opaque }),
        Err(error) => Err(error),
    }
}

// ENOENT: no such entry. ENOTDIR: a component was replaced by a file
// between stat and open. ELOOP: it was replaced by a link.
pub(crate) fn is_missing(error: &io::Error) -> bool {
    matches!(error.raw_os_error(), Some(libc::ENOENT | libc::ENOTDIR | libc::ELOOP))
}

#[cfg(test)]
mod tests {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;

    use super::*;

    /// A whiteout as overlayfs writes it: mknod c 0 0.
    pub(crate) fn whiteout(path: &Path) {
        let c = CString::new(path.as_os_str().as_bytes()).unwrap();
        // SAFETY: c is NUL-terminated.
        let rc = unsafe { libc::mknod(c.as_ptr(), libc::S_IFCHR, 0) };
        assert_eq!(rc, 0, "mknod needs root: {}", io::Error::last_os_error());
    }

    /// Marks a directory opaque as overlayfs does.
    pub(crate) fn opaque(path: &Path) {
        let c = CString::new(path.as_os_str().as_bytes()).unwrap();
        let name = c"trusted.overlay.opaque";
        // SAFETY: pointers are valid for the lengths given.
        let rc = unsafe { libc::setxattr(c.as_ptr(), name.as_ptr(), b"y".as_ptr().cast(), 1, 0) };
        assert_eq!(rc, 0, "setxattr trusted.* needs root: {}", io::Error::last_os_error());
    }

    fn write(root: &Path, relative: &str, content: &str) {
        let path = root.join(relative);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, content).unwrap();
    }

    fn layer_of(layers: &[&Path], path: &str) -> Option<usize> {
        resolve(layers, path.as_bytes(), Rules::Overlay).unwrap().map(|found| found.layer)
    }

    #[test]
    fn the_top_layer_that_has_the_path_wins() {
        let (top, bottom) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        write(bottom.path(), "etc/passwd", "image");
        write(bottom.path(), "etc/group", "image");
        write(top.path(), "etc/passwd", "top");
        let layers = [top.path(), bottom.path()];
        assert_eq!(layer_of(&layers, "/etc/passwd"), Some(0));
        assert_eq!(layer_of(&layers, "/etc/group"), Some(1));
        assert_eq!(layer_of(&layers, "/etc/nothing"), None);
    }

    #[test]
    fn a_whiteout_hides_the_file_below() {
        let (top, bottom) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        write(bottom.path(), "etc/shadow", "image");
        std::fs::create_dir(top.path().join("etc")).unwrap();
        whiteout(&top.path().join("etc/shadow"));
        assert_eq!(layer_of(&[top.path(), bottom.path()], "/etc/shadow"), None);
    }

    #[test]
    fn a_whiteout_of_a_parent_directory_hides_everything_in_it() {
        let (top, bottom) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        write(bottom.path(), "app/conf/app.yml", "image");
        whiteout(&top.path().join("app"));
        assert_eq!(layer_of(&[top.path(), bottom.path()], "/app/conf/app.yml"), None);
    }

    #[test]
    fn an_opaque_parent_hides_lower_layers_but_not_its_own_files() {
        let layers: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
        write(layers[2].path(), "app/conf/old.yml", "bottom");
        write(layers[2].path(), "app/keep.yml", "bottom");
        write(layers[1].path(), "app/conf/new.yml", "middle");
        opaque(&layers[1].path().join("app/conf"));
        let stack: Vec<&Path> = layers.iter().map(|d| d.path()).collect();
        assert_eq!(layer_of(&stack, "/app/conf/new.yml"), Some(1));
        assert_eq!(layer_of(&stack, "/app/conf/old.yml"), None);
        assert_eq!(layer_of(&stack, "/app/keep.yml"), Some(2));
    }

    #[test]
    fn an_opaque_grandparent_hides_deeper_lower_paths() {
        let (top, bottom) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        write(bottom.path(), "srv/a/b/c.conf", "bottom");
        std::fs::create_dir_all(top.path().join("srv/a")).unwrap();
        opaque(&top.path().join("srv"));
        assert_eq!(layer_of(&[top.path(), bottom.path()], "/srv/a/b/c.conf"), None);
    }

    #[test]
    fn a_link_in_place_of_a_directory_is_not_followed_and_hides_below() {
        let (top, bottom) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        write(bottom.path(), "app/passwd", "image");
        std::os::unix::fs::symlink("/etc", top.path().join("app")).unwrap();
        assert_eq!(layer_of(&[top.path(), bottom.path()], "/app/passwd"), None);
    }

    #[test]
    fn plain_rules_treat_a_zero_device_as_a_device() {
        let root = tempfile::tempdir().unwrap();
        whiteout(&root.path().join("dev0"));
        let found = resolve(&[root.path()], b"dev0", Rules::Plain).unwrap().unwrap();
        assert_eq!(found.stat.format(), libc::S_IFCHR);
    }

    #[test]
    fn dot_dot_is_refused() {
        let root = tempfile::tempdir().unwrap();
        assert!(resolve(&[root.path()], b"a/../../etc", Rules::Plain).is_err());
    }
}
