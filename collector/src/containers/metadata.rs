//! Names, images and Kubernetes identity of a container, from the runtimes'
//! own state files; no runtime API is called.
//!
//! Docker keeps `config.v2.json` per container; containerd keeps an OCI
//! bundle per task whose annotations carry the CRI's pod identity; CRI-O
//! and podman keep an OCI `config.json` under their storage's run
//! directory. A missing or unreadable file leaves fields empty: a container
//! is always reported by its id at least.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use schemas::ContainerInfo;
use serde::Deserialize;

/// Where the runtimes keep their state on the node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatePaths {
    /// Docker's data root (`/var/lib/docker`).
    pub docker: PathBuf,
    /// containerd's state directory (`/run/containerd`).
    pub containerd: PathBuf,
    /// The run directory of containers/storage, CRI-O and podman
    /// (`/run/containers/storage`).
    pub containers_storage: PathBuf,
}

impl Default for StatePaths {
    fn default() -> Self {
        Self {
            docker: "/var/lib/docker".into(),
            containerd: "/run/containerd".into(),
            containers_storage: "/run/containers/storage".into(),
        }
    }
}

/// Everything the state files say about container `id`.
pub(crate) fn describe(paths: &StatePaths, id: &str) -> ContainerInfo {
    let docker = paths.docker.join("containers").join(id).join("config.v2.json");
    if let Some(info) = read(&docker).and_then(|text| docker_config(id, &text)) {
        return info;
    }
    if let Some(info) = containerd_bundle(&paths.containerd, id) {
        return info;
    }
    let crio = paths.containers_storage.join("overlay-containers").join(id);
    let crio = crio.join("userdata").join("config.json");
    if let Some(info) = read(&crio).and_then(|text| oci_config(id, &text)) {
        return info;
    }
    ContainerInfo { id: id.to_owned(), ..ContainerInfo::default() }
}

fn read(path: &Path) -> Option<String> {
    std::fs::read_to_string(path).ok()
}

// Every namespace of containerd's task directory (`k8s.io`, `moby`, …).
fn containerd_bundle(state: &Path, id: &str) -> Option<ContainerInfo> {
    let tasks = state.join("io.containerd.runtime.v2.task");
    std::fs::read_dir(tasks).ok()?.filter_map(Result::ok).find_map(|namespace| {
        let config = namespace.path().join(id).join("config.json");
        read(&config).and_then(|text| oci_config(id, &text))
    })
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DockerConfig {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    image: Option<String>,
    #[serde(default)]
    config: Option<DockerInner>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DockerInner {
    #[serde(default)]
    image: Option<String>,
    #[serde(default)]
    labels: Option<BTreeMap<String, String>>,
}

/// Parses Docker's `config.v2.json`; Kubernetes identity comes from the
/// labels dockershim and cri-dockerd set.
pub(crate) fn docker_config(id: &str, text: &str) -> Option<ContainerInfo> {
    let config: DockerConfig = serde_json::from_str(text).ok()?;
    let inner = config.config;
    let labels = inner.as_ref().and_then(|c| c.labels.clone()).unwrap_or_default();
    let label = |key: &str| labels.get(key).cloned();
    let docker_name = config.name.map(|name| name.trim_start_matches('/').to_owned());
    Some(ContainerInfo {
        id: id.to_owned(),
        name: label("io.kubernetes.container.name").or(docker_name),
        image: inner.and_then(|c| c.image),
        image_id: config.image,
        pod: label("io.kubernetes.pod.name"),
        namespace: label("io.kubernetes.pod.namespace"),
        labels,
        ..ContainerInfo::default()
    })
}

#[derive(Deserialize)]
struct OciConfig {
    #[serde(default)]
    annotations: BTreeMap<String, String>,
}

// Annotation keys, first match wins: containerd's CRI plugin, then CRI-O's.
const NAME_KEYS: [&str; 3] = [
    "io.kubernetes.cri.container-name",
    "io.kubernetes.container.name",
    "io.kubernetes.cri-o.ContainerName",
];
const IMAGE_KEYS: [&str; 2] = ["io.kubernetes.cri.image-name", "io.kubernetes.cri-o.ImageName"];
const IMAGE_ID_KEYS: [&str; 2] = ["io.kubernetes.cri.image-id", "io.kubernetes.cri-o.ImageRef"];
const POD_KEYS: [&str; 2] = ["io.kubernetes.cri.sandbox-name", "io.kubernetes.pod.name"];
const NAMESPACE_KEYS: [&str; 2] =
    ["io.kubernetes.cri.sandbox-namespace", "io.kubernetes.pod.namespace"];

/// Parses an OCI runtime `config.json` (containerd bundles, CRI-O and
/// podman) and reads the identity from its annotations.
pub(crate) fn oci_config(id: &str, text: &str) -> Option<ContainerInfo> {
    let config: OciConfig = serde_json::from_str(text).ok()?;
    let first = |keys: &[&str]| keys.iter().find_map(|key| config.annotations.get(*key).cloned());
    Some(ContainerInfo {
        id: id.to_owned(),
        name: first(&NAME_KEYS),
        image: first(&IMAGE_KEYS),
        image_id: first(&IMAGE_ID_KEYS),
        pod: first(&POD_KEYS),
        namespace: first(&NAMESPACE_KEYS),
        annotations: config.annotations.clone(),
        ..ContainerInfo::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_names_images_and_labels() {
        let text = r#"{"ID":"ab","Name":"/web","Image":"sha256:5f1e",
            "Config":{"Image":"fim-test:latest","Labels":{"app":"x"}},"State":{"Pid":1}}"#;
        let info = docker_config("ab", text).unwrap();
        assert_eq!(info.name.as_deref(), Some("web"));
        assert_eq!(info.image.as_deref(), Some("fim-test:latest"));
        assert_eq!(info.image_id.as_deref(), Some("sha256:5f1e"));
        assert_eq!((info.pod, info.namespace), (None, None));
        assert_eq!(info.labels.get("app").map(String::as_str), Some("x"));
    }

    #[test]
    fn docker_under_kubernetes_uses_the_pod_labels() {
        let text = r#"{"Name":"/k8s_app_web-1_shop_uid_0","Config":{"Labels":{
            "io.kubernetes.container.name":"app","io.kubernetes.pod.name":"web-1",
            "io.kubernetes.pod.namespace":"shop"}}}"#;
        let info = docker_config("ab", text).unwrap();
        assert_eq!(info.name.as_deref(), Some("app"));
        assert_eq!(info.pod.as_deref(), Some("web-1"));
        assert_eq!(info.namespace.as_deref(), Some("shop"));
    }

    #[test]
    fn containerd_cri_annotations() {
        let text = r#"{"ociVersion":"1.1.0","annotations":{
            "io.kubernetes.cri.container-type":"container",
            "io.kubernetes.cri.container-name":"api",
            "io.kubernetes.cri.image-name":"registry.local/api:2",
            "io.kubernetes.cri.sandbox-name":"api-7d9f","io.kubernetes.cri.sandbox-namespace":"payments"}}"#;
        let info = oci_config("cd", text).unwrap();
        assert_eq!(info.name.as_deref(), Some("api"));
        assert_eq!(info.image.as_deref(), Some("registry.local/api:2"));
        assert_eq!(info.pod.as_deref(), Some("api-7d9f"));
        assert_eq!(info.namespace.as_deref(), Some("payments"));
        assert_eq!(info.annotations.len(), 5);
    }

    #[test]
    fn crio_annotations() {
        let text = r#"{"annotations":{"io.kubernetes.container.name":"db",
            "io.kubernetes.cri-o.ImageName":"quay.io/db:15","io.kubernetes.cri-o.ImageRef":"sha256:77",
            "io.kubernetes.pod.name":"db-0","io.kubernetes.pod.namespace":"data"}}"#;
        let info = oci_config("ef", text).unwrap();
        assert_eq!(info.name.as_deref(), Some("db"));
        assert_eq!(info.image.as_deref(), Some("quay.io/db:15"));
        assert_eq!(info.image_id.as_deref(), Some("sha256:77"));
        assert_eq!(info.pod.as_deref(), Some("db-0"));
    }

    #[test]
    fn plain_containerd_and_podman_bundles_without_annotations_give_the_id_only() {
        let info = oci_config("ef", r#"{"ociVersion":"1.0.2","process":{}}"#).unwrap();
        assert_eq!(info, ContainerInfo { id: "ef".into(), ..ContainerInfo::default() });
        assert_eq!(oci_config("ef", "not json"), None);
    }

    #[test]
    fn state_files_are_searched_in_every_runtime_layout() {
        let dir = tempfile::tempdir().unwrap();
        let paths = StatePaths {
            docker: dir.path().join("docker"),
            containerd: dir.path().join("containerd"),
            containers_storage: dir.path().join("storage"),
        };
        let bundle = paths.containerd.join("io.containerd.runtime.v2.task/k8s.io/c1");
        std::fs::create_dir_all(&bundle).unwrap();
        let annotations = r#"{"annotations":{"io.kubernetes.cri.sandbox-name":"p"}}"#;
        std::fs::write(bundle.join("config.json"), annotations).unwrap();
        let crio = paths.containers_storage.join("overlay-containers/c2/userdata");
        std::fs::create_dir_all(&crio).unwrap();
        std::fs::write(
            crio.join("config.json"),
            r#"{"annotations":{"io.kubernetes.pod.name":"q"}}"#,
        )
        .unwrap();
        assert_eq!(describe(&paths, "c1").pod.as_deref(), Some("p"));
        assert_eq!(describe(&paths, "c2").pod.as_deref(), Some("q"));
        assert_eq!(describe(&paths, "c3").name, None);
    }
}
