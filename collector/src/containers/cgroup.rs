//! The container id of a process, from the text of `/proc/<pid>/cgroup`.
//!
//! Every runtime puts a container's processes in a cgroup whose last path
//! component carries the 64-hex-digit container id, in one of a few
//! spellings (systemd scopes or cgroupfs directories). Helper processes of
//! the runtimes (`libpod-conmon-…`, shims) do not match, by design.

/// Runtime families recognised from cgroup paths.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Runtime {
    /// Docker (`docker-<id>.scope`, `/docker/<id>`).
    Docker,
    /// containerd, Kubernetes CRI or plain (`cri-containerd-<id>.scope`).
    Containerd,
    /// CRI-O (`crio-<id>.scope`).
    Crio,
    /// podman (`libpod-<id>.scope`, `/libpod_parent/libpod-<id>`).
    Podman,
    /// A Kubernetes pod cgroup with a bare id (`kubepods/…/<id>`).
    Kubernetes,
}

/// Prefixes of a scope or directory name, before the id.
const PREFIXES: [(&str, Runtime); 5] = [
    ("docker-", Runtime::Docker),
    ("cri-containerd-", Runtime::Containerd),
    ("crio-", Runtime::Crio),
    ("libpod-", Runtime::Podman),
    ("", Runtime::Kubernetes),
];

/// The container id and runtime named by a cgroup file, if any.
pub(crate) fn container_id(cgroup: &str) -> Option<(String, Runtime)> {
    cgroup.lines().find_map(line_id)
}

// One line is `hierarchy-id:controllers:path`; the path may hold colons.
// The innermost component that names a container wins (podman nests the
// processes one level below its scope, in `container`).
fn line_id(line: &str) -> Option<(String, Runtime)> {
    let path = line.splitn(3, ':').nth(2)?;
    let components: Vec<&str> = path.split('/').filter(|c| !c.is_empty()).collect();
    components.iter().enumerate().rev().find_map(|(at, component)| {
        let parent = at.checked_sub(1).map_or("", |p| components[p]);
        component_id(component, parent, path)
    })
}

fn component_id(component: &str, parent: &str, path: &str) -> Option<(String, Runtime)> {
    let name = component.strip_suffix(".scope").unwrap_or(component);
    PREFIXES.iter().find_map(|(prefix, runtime)| {
        let id = name.strip_prefix(prefix).filter(|id| is_id(id))?;
        let runtime = match runtime {
            Runtime::Kubernetes if parent == "docker" => Runtime::Docker,
            Runtime::Kubernetes if !path.contains("kubepods") => return None,
            other => *other,
        };
        Some((id.to_owned(), runtime))
    })
}

fn is_id(text: &str) -> bool {
    text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "1763e7842c9bdc4661f71a0f744bdcd94badc4eb345ee0843117511aa5f367df";

    fn id_of(text: &str) -> Option<(String, Runtime)> {
        container_id(&text.replace("ID", ID))
    }

    #[test]
    fn docker_on_cgroupfs_v1() {
        let text = "12:memory:/docker/ID\n9:name=systemd:/docker/ID\n0::/\n";
        assert_eq!(id_of(text), Some((ID.into(), Runtime::Docker)));
    }

    #[test]
    fn docker_as_a_systemd_scope_on_cgroup_v2() {
        let text = "0::/system.slice/docker-ID.scope\n";
        assert_eq!(id_of(text), Some((ID.into(), Runtime::Docker)));
    }

    #[test]
    fn kubernetes_containerd_crio_and_podman_scopes() {
        let containerd = "0::/kubepods.slice/kubepods-burstable.slice/\
                          kubepods-burstable-pod1.slice/cri-containerd-ID.scope\n";
        assert_eq!(id_of(containerd), Some((ID.into(), Runtime::Containerd)));
        let crio = "0::/kubepods.slice/kubepods-pod2.slice/crio-ID.scope\n";
        assert_eq!(id_of(crio), Some((ID.into(), Runtime::Crio)));
        let nested = "0::/machine.slice/libpod-ID.scope/container\n";
        assert_eq!(id_of(nested), Some((ID.into(), Runtime::Podman)));
        let podman = "0::/machine.slice/libpod-ID.scope\n";
        assert_eq!(id_of(podman), Some((ID.into(), Runtime::Podman)));
    }

    #[test]
    fn kubernetes_cgroupfs_paths_carry_a_bare_id() {
        let text = "11:memory:/kubepods/burstable/pod0b1c/ID\n";
        assert_eq!(id_of(text), Some((ID.into(), Runtime::Kubernetes)));
    }

    #[test]
    fn host_processes_and_runtime_helpers_have_no_id() {
        assert_eq!(id_of("0::/init.scope\n"), None);
        assert_eq!(id_of("0::/system.slice/libpod-conmon-ID.scope\n"), None);
        assert_eq!(id_of("0::/user.slice/ID\n"), None, "a bare id outside kubepods");
        assert_eq!(id_of("garbage"), None);
        assert_eq!(id_of("0::/docker/abc\n"), None, "too short to be an id");
    }
}
