//! Containers: which watch roots belong to which container, and how a path
//! on the node becomes the path the container sees.
//!
//! Discovery ([`discovery`]) finds running containers from /proc and the
//! runtimes' state files and registers one [`Origin`] per watch root it
//! adds: the overlay upper directory of the root filesystem (or, on other
//! storage, the root directory itself) and every volume. The publisher
//! looks the origin up by the root of each change. Host roots have none.

pub(crate) mod cgroup;
pub(crate) mod discovery;
pub(crate) mod metadata;
pub(crate) mod mountinfo;

use std::collections::HashMap;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::sync::{Arc, RwLock};

use schemas::{ChangeKind, ContainerInfo, ContainerRoot, RawPath};

/// The container a watch root belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Origin {
    /// Identity of the container.
    pub container: ContainerInfo,
    /// Where the root appears inside the container (`/` for the root
    /// filesystem, the mount point for a volume).
    pub mount_point: RawPath,
    /// The overlay layers, for the root filesystem on overlay only.
    pub layers: Option<ContainerRoot>,
}

impl Origin {
    /// The in-container path of `host`, a path at or below `root`.
    pub fn inside(&self, host: &RawPath, root: &RawPath) -> RawPath {
        let rest = host.as_bytes().strip_prefix(root.as_bytes()).unwrap_or_default();
        let rest = rest.strip_prefix(b"/").unwrap_or(rest);
        if rest.is_empty() { self.mount_point.clone() } else { self.mount_point.join(rest) }
    }

    /// What a change to `host` (in-container `inside`) means for the
    /// container. On overlay a deletion of an image file appears as the
    /// creation of a whiteout (a character device 0/0), and the first
    /// change of an image file or directory (a chmod, an append) as the
    /// creation of its copy in the upper directory: that is reported as an
    /// attribute change of the existing path, with any write following as
    /// its own modification.
    pub fn refine(&self, kind: ChangeKind, host: &RawPath, inside: &RawPath) -> ChangeKind {
        let Some(layers) = &self.layers else { return kind };
        if kind != ChangeKind::Created {
            return kind;
        }
        if is_whiteout(host) {
            ChangeKind::Deleted
        } else if in_image(layers, inside) {
            ChangeKind::Attributes
        } else {
            kind
        }
    }
}

/// Whether `path` is an overlay whiteout: a character device 0/0.
pub(crate) fn is_whiteout(path: &RawPath) -> bool {
    std::fs::symlink_metadata(path.as_path())
        .is_ok_and(|meta| meta.file_type().is_char_device() && meta.rdev() == 0)
}

// Whether a lower layer holds the path. Limitation: whiteouts and opaque
// directories of the lower layers are not honoured here, so a path that an
// upper image layer deleted still counts as present.
fn in_image(layers: &ContainerRoot, inside: &RawPath) -> bool {
    let relative = inside.as_bytes().strip_prefix(b"/").unwrap_or(inside.as_bytes());
    layers.lower_dirs.iter().any(|lower| {
        let candidate = lower.join(relative);
        std::fs::symlink_metadata(candidate.as_path()).is_ok()
    })
}

/// Origins by watch root; shared by discovery, the worker and the
/// publisher. Reads vastly outnumber writes.
#[derive(Debug, Clone, Default)]
pub(crate) struct Origins(Arc<RwLock<HashMap<RawPath, Arc<Origin>>>>);

impl Origins {
    /// The origin of a root, if it belongs to a container.
    pub fn get(&self, root: &RawPath) -> Option<Arc<Origin>> {
        self.read().get(root).cloned()
    }

    /// Registers the origin of a root.
    pub fn insert(&self, root: RawPath, origin: Origin) {
        self.write().insert(root, Arc::new(origin));
    }

    /// Forgets a root.
    pub fn remove(&self, root: &RawPath) {
        self.write().remove(root);
    }

    // Every update is a single insert or remove, so a panic elsewhere leaves
    // the map usable.
    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<RawPath, Arc<Origin>>> {
        self.0.read().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<RawPath, Arc<Origin>>> {
        self.0.write().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origin(mount_point: &str, layers: Option<ContainerRoot>) -> Origin {
        let container = ContainerInfo { id: "c".into(), ..ContainerInfo::default() };
        Origin { container, mount_point: mount_point.into(), layers }
    }

    #[test]
    fn host_paths_become_container_paths() {
        let root = RawPath::from("/var/lib/docker/overlay2/ab/diff");
        let fs = origin("/", None);
        assert_eq!(fs.inside(&root, &root), RawPath::from("/"));
        assert_eq!(fs.inside(&root.join(b"etc/passwd"), &root), RawPath::from("/etc/passwd"));
        let volume = origin("/data", None);
        assert_eq!(volume.inside(&root.join(b"x\xff"), &root).as_bytes(), b"/data/x\xff");
    }

    #[test]
    fn whiteouts_are_deletions_and_copy_ups_are_attribute_changes() {
        let dir = tempfile::tempdir().unwrap();
        let (upper, lower) = (dir.path().join("upper"), dir.path().join("lower"));
        std::fs::create_dir_all(upper.join("etc")).unwrap();
        std::fs::create_dir_all(lower.join("etc")).unwrap();
        std::fs::write(lower.join("etc/passwd"), "root\n").unwrap();
        std::fs::write(upper.join("etc/passwd"), "root\nevil\n").unwrap();
        std::fs::write(upper.join("etc/new"), "").unwrap();
        let whiteout =
            std::ffi::CString::new(upper.join("etc/shadow").into_os_string().into_encoded_bytes())
                .unwrap();
        // SAFETY: a NUL-terminated path; mknod has no memory effects.
        assert_eq!(unsafe { libc::mknod(whiteout.as_ptr(), libc::S_IFCHR | 0o600, 0) }, 0);

        let layers =
            ContainerRoot { upper_dir: upper.clone().into(), lower_dirs: vec![lower.into()] };
        let fs = origin("/", Some(layers));
        let refine = |name: &str| {
            let host = RawPath::from(upper.join("etc").join(name));
            fs.refine(ChangeKind::Created, &host, &RawPath::from(format!("/etc/{name}").as_str()))
        };
        assert_eq!(refine("shadow"), ChangeKind::Deleted);
        assert_eq!(refine("passwd"), ChangeKind::Attributes);
        assert_eq!(refine("new"), ChangeKind::Created);
        let no_layers = origin("/", None);
        let host = RawPath::from(upper.join("etc/shadow"));
        assert_eq!(
            no_layers.refine(ChangeKind::Created, &host, &"/etc/shadow".into()),
            ChangeKind::Created
        );
    }
}
