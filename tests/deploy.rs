//! The Kubernetes manifests: every kustomization renders, and the rendered
//! objects validate strictly against the schema of a current Kubernetes
//! release. Needs `kubectl` (for its built-in kustomize) and
//! `kubernetes-validate` (PyPI); `scripts/test` installs the latter.

use std::path::{Path, PathBuf};
use std::process::Command;

const KUBERNETES_VERSION: &str = "1.34.0";

fn k8s_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/k8s")
}

fn render(kustomization: &Path) -> String {
    let output = Command::new("kubectl")
        .arg("kustomize")
        .arg(kustomization)
        .output()
        .expect("kubectl is needed to render kustomizations (apt-get install kubectl)");
    assert!(
        output.status.success(),
        "kubectl kustomize {} failed: {}",
        kustomization.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

fn validate(manifests: &str) -> Result<(), String> {
    let file = tempfile::Builder::new().suffix(".yaml").tempfile().unwrap();
    std::fs::write(file.path(), manifests).unwrap();
    let output = Command::new("kubernetes-validate")
        .args(["--strict", "--quiet", "-k", KUBERNETES_VERSION])
        .arg(file.path())
        .output()
        .expect("kubernetes-validate is needed (pip install kubernetes-validate)");
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ))
    }
}

fn kustomizations() -> Vec<PathBuf> {
    let overlays = std::fs::read_dir(k8s_dir().join("overlays")).unwrap();
    let mut dirs: Vec<PathBuf> = overlays.map(|entry| entry.unwrap().path()).collect();
    dirs.sort();
    dirs.insert(0, k8s_dir().join("base"));
    dirs
}

#[test]
fn the_base_and_every_overlay_render_and_validate_strictly() {
    for dir in kustomizations() {
        let manifests = render(&dir);
        if let Err(errors) = validate(&manifests) {
            panic!("{} does not validate:\n{errors}", dir.display());
        }
    }
}

#[test]
fn the_validator_rejects_an_unknown_field() {
    let broken = "apiVersion: v1\nkind: Service\nmetadata:\n  name: x\nspec:\n  portz: []\n";
    assert!(validate(broken).is_err(), "a misspelled field must fail validation");
}

#[test]
fn every_fim_container_has_both_probes_and_limits() {
    let manifests = render(&k8s_dir().join("base"));
    let containers = manifests.matches("image: ghcr.io/fim-project/fim").count();
    assert_eq!(containers, 4, "one fim container per stage");
    for (needle, what) in [
        ("path: /healthz\n", "a liveness probe on /healthz"),
        ("path: /readyz\n", "a readiness probe on /readyz"),
    ] {
        assert!(manifests.matches(needle).count() >= containers, "each stage needs {what}");
    }
    assert!(manifests.matches("limits:").count() >= containers, "each stage needs limits");
    assert!(manifests.contains("- SYS_ADMIN"), "the collector's fanotify capability");
    assert!(!manifests.contains("privileged: true"), "no privileged containers");
}
