//! Operator approvals: the current states in an approval's scope become the
//! authorized baseline.
//!
//! An approval is applied at most once (its id is recorded in the same
//! batch as the baselines it changes), so a redelivered control message or
//! a repeated command changes nothing. An approval by image is also kept
//! per image and path, so containers of that image started later treat the
//! approved state as their baseline too.

use std::collections::HashMap;

use schemas::message::{ApprovalScope, BaselineApproval};
use schemas::{FileState, RawPath};

use crate::Error;
use crate::store::{
    self, Authorized, Baseline, BaselineStore, ContainerRecord, Origin, Table, Write,
};

/// What applying an approval did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// This many baselines now hold the approved state.
    Approved(usize),
    /// The approval was applied before; nothing changed.
    Duplicate,
}

// Limitation: an approval covers states already observed; approving a
// container before its first observation records nothing for it (an image
// approval still covers the paths observed in other containers).
/// Applies `approval` to the store, durably.
pub async fn apply<S: BaselineStore>(
    store: &S,
    approval: &BaselineApproval,
) -> Result<Applied, Error> {
    let scope = &approval.scope;
    if scope.container.is_none() && scope.image.is_none() && scope.path.is_none() {
        return Err(Error::Config {
            field: "scope",
            reason: "names no container, image or path".into(),
        });
    }
    if store.get_raw(Table::Approvals, approval.id.as_bytes())?.is_some() {
        return Ok(Applied::Duplicate);
    }
    let images = container_images(store)?;
    let prefix = match &scope.container {
        Some(id) => format!("container:{id}\0").into_bytes(),
        None => Vec::new(),
    };
    let mut writes = Vec::new();
    let mut image_states: HashMap<RawPath, Option<FileState>> = HashMap::new();
    for (key, mut baseline) in store.scan::<Baseline>(Table::Baselines, &prefix)? {
        let Some((source, path)) = store::split_key(&key) else { continue };
        if !in_scope(scope, &source, &path, &images) {
            continue;
        }
        image_states.insert(path, baseline.state.clone());
        baseline.authorized =
            Some(Authorized { state: baseline.state.clone(), origin: Origin::Approved });
        writes.push(Write::put(Table::Baselines, key, &baseline)?);
    }
    let approved = writes.len();
    if let Some(image) = &scope.image {
        for (path, state) in image_states {
            writes.push(Write::put(Table::ImageApprovals, store::image_key(image, &path), &state)?);
        }
    }
    writes.push(Write::put(Table::Approvals, approval.id.as_bytes().to_vec(), approval)?);
    store.apply(writes).await?;
    Ok(Applied::Approved(approved))
}

// Image reference and id of every known container, by source key.
fn container_images<S: BaselineStore>(store: &S) -> Result<HashMap<String, Vec<String>>, Error> {
    let records = store.scan::<ContainerRecord>(Table::Containers, b"")?;
    Ok(records
        .into_iter()
        .filter_map(|(key, record)| {
            let info = record.info?;
            let images = [info.image, info.image_id].into_iter().flatten().collect();
            Some((String::from_utf8_lossy(&key).into_owned(), images))
        })
        .collect())
}

fn in_scope(
    scope: &ApprovalScope,
    source: &str,
    path: &RawPath,
    images: &HashMap<String, Vec<String>>,
) -> bool {
    let container = scope.container.as_ref().is_none_or(|id| source == format!("container:{id}"));
    let image = scope
        .image
        .as_ref()
        .is_none_or(|image| images.get(source).is_some_and(|known| known.contains(image)));
    let path = scope.path.as_ref().is_none_or(|wanted| wanted == path);
    container && image && path
}

#[cfg(test)]
mod tests {
    use schemas::{ContainerInfo, FileKind, SCHEMA_VERSION, Source};
    use time::OffsetDateTime;

    use super::*;
    use crate::store::SledStore;

    fn state(hash: &str) -> FileState {
        FileState {
            kind: FileKind::File,
            blake3: Some(hash.into()),
            size: 1,
            mode: 0o100644,
            uid: 0,
            gid: 0,
            mtime_ns: 0,
            link_target: None,
            partial: false,
            unstable: false,
        }
    }

    fn approval(id: &str, scope: ApprovalScope) -> BaselineApproval {
        let time = OffsetDateTime::UNIX_EPOCH;
        let (approver, reason) = (None, None);
        BaselineApproval {
            schema_version: SCHEMA_VERSION,
            id: id.into(),
            time,
            scope,
            approver,
            reason,
        }
    }

    async fn seed(store: &SledStore, container: &str, path: &str) {
        let info =
            ContainerInfo { id: container.into(), image: Some("img".into()), ..Default::default() };
        let source = Source::Container(info.clone());
        let baseline = Baseline {
            state: Some(state("drifted")),
            event_time_ns: 1,
            authorized: Some(Authorized { state: Some(state("image")), origin: Origin::Image }),
            alerted: Vec::new(),
        };
        let record = ContainerRecord {
            info: Some(info),
            node: "n".into(),
            last_seen_ns: 1,
            last_inventory_ns: None,
        };
        let key = store::key(&source, "n", &RawPath::from(path));
        let writes = vec![
            Write::put(Table::Baselines, key, &baseline).unwrap(),
            Write::put(Table::Containers, format!("container:{container}").into_bytes(), &record)
                .unwrap(),
        ];
        store.apply(writes).await.unwrap();
    }

    #[tokio::test]
    async fn an_approval_is_applied_once_and_only_within_its_scope() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path()).unwrap();
        seed(&store, "c1", "/app/a.jar").await;
        seed(&store, "c1", "/app/b.jar").await;
        seed(&store, "c2", "/app/a.jar").await;

        let scope = ApprovalScope {
            container: Some("c1".into()),
            path: Some(RawPath::from("/app/a.jar")),
            ..ApprovalScope::default()
        };
        let first = approval("a1", scope);
        assert_eq!(apply(&store, &first).await.unwrap(), Applied::Approved(1));
        assert_eq!(apply(&store, &first).await.unwrap(), Applied::Duplicate);

        let drifted: Vec<String> = store
            .scan::<Baseline>(Table::Baselines, b"")
            .unwrap()
            .into_iter()
            .filter(|(_, b)| b.drifted())
            .filter_map(|(k, _)| store::split_key(&k).map(|(s, p)| format!("{s} {p}")))
            .collect();
        assert_eq!(drifted, ["container:c1 /app/b.jar", "container:c2 /app/a.jar"]);
    }

    #[tokio::test]
    async fn an_image_approval_covers_its_containers_and_is_kept_for_later_ones() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path()).unwrap();
        seed(&store, "c1", "/app/a.jar").await;
        seed(&store, "c2", "/app/a.jar").await;
        let scope = ApprovalScope { image: Some("img".into()), ..ApprovalScope::default() };
        assert_eq!(apply(&store, &approval("a1", scope)).await.unwrap(), Applied::Approved(2));
        let key = store::image_key("img", &RawPath::from("/app/a.jar"));
        let kept: Option<Option<FileState>> = store.get(Table::ImageApprovals, &key).unwrap();
        assert_eq!(kept, Some(Some(state("drifted"))));
    }

    #[tokio::test]
    async fn an_approval_without_a_scope_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path()).unwrap();
        let error = apply(&store, &approval("a1", ApprovalScope::default())).await.unwrap_err();
        assert!(matches!(error, Error::Config { field: "scope", .. }));
    }
}
