//! MessagePack encoding with named fields and a schema version check.
//!
//! Decoding first reads only `schema_version`, so a message from a newer,
//! incompatible writer is reported as such rather than as a confusing field
//! error. Unknown fields are ignored, which is what lets writers add fields.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::SCHEMA_VERSION;

/// Why a payload could not be encoded or decoded.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// The payload is not a MessagePack map of the expected shape.
    #[error("malformed message: {0}")]
    Malformed(#[from] rmp_serde::decode::Error),
    /// The payload declares a schema version this build does not read.
    #[error("unsupported schema version {found} (this build reads {SCHEMA_VERSION})")]
    UnsupportedVersion {
        /// The version the writer declared.
        found: u16,
    },
    /// Serialization failed (a bug: every message type is serializable).
    #[error("cannot encode message: {0}")]
    Encode(#[from] rmp_serde::encode::Error),
}

impl CodecError {
    /// A short fixed label for metrics and dead-letter headers.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Malformed(_) => "malformed",
            Self::UnsupportedVersion { .. } => "unsupported_version",
            Self::Encode(_) => "encode",
        }
    }
}

#[derive(serde::Deserialize)]
struct VersionProbe {
    schema_version: u16,
}

/// Encodes a message as a MessagePack map with named fields.
pub fn encode<T: Serialize>(message: &T) -> Result<Vec<u8>, CodecError> {
    Ok(rmp_serde::to_vec_named(message)?)
}

/// Decodes a message, refusing other schema versions.
pub fn decode<T: DeserializeOwned>(payload: &[u8]) -> Result<T, CodecError> {
    let probe: VersionProbe = rmp_serde::from_slice(payload)?;
    if probe.schema_version != SCHEMA_VERSION {
        return Err(CodecError::UnsupportedVersion { found: probe.schema_version });
    }
    Ok(rmp_serde::from_slice(payload)?)
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;
    use time::OffsetDateTime;

    use super::*;
    use crate::{
        Alert, CapturedContent, ChangeKind, ContainerInfo, FileKind, FileState, ImageVersion,
        Observation, ProcessInfo, RawEvent, RawPath, Severity, Source,
    };

    fn event() -> RawEvent {
        RawEvent {
            schema_version: SCHEMA_VERSION,
            id: "node-1:42".into(),
            node: "node-1".into(),
            time: OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap(),
            source: Source::Container(ContainerInfo {
                id: "abc".into(),
                name: Some("web".into()),
                ..ContainerInfo::default()
            }),
            path: RawPath::from_bytes(b"/etc/pass\xffwd".to_vec()),
            host_path: RawPath::from("/var/lib/docker/overlay2/x/diff/etc/passwd"),
            previous_path: None,
            change: ChangeKind::Modified,
            is_dir: false,
            process: Some(ProcessInfo {
                pid: 7,
                command: Some("sh".into()),
                executable: None,
                uid: Some(0),
            }),
            container_root: None,
        }
    }

    fn state() -> FileState {
        FileState {
            kind: FileKind::File,
            blake3: Some("ab".repeat(32)),
            size: 10,
            mode: 0o100644,
            uid: 0,
            gid: 0,
            mtime_ns: 1,
            link_target: None,
            partial: false,
            unstable: false,
        }
    }

    #[test]
    fn every_message_round_trips_with_non_utf8_paths() {
        let event = event();
        assert_eq!(decode::<RawEvent>(&encode(&event).unwrap()).unwrap(), event);

        let observation = Observation {
            schema_version: SCHEMA_VERSION,
            id: "o".into(),
            event: event.clone(),
            state: Some(state()),
            image: Some(ImageVersion { state: None, layer: Some(RawPath::from("/l1")) }),
            content: Some(CapturedContent {
                current: b"a=\xff\n".to_vec(),
                image: None,
                truncated: true,
            }),
        };
        assert_eq!(decode::<Observation>(&encode(&observation).unwrap()).unwrap(), observation);

        let alert = Alert {
            schema_version: SCHEMA_VERSION,
            id: "a".into(),
            time: event.time,
            severity: Severity::Critical,
            rule: "r".into(),
            change: ChangeKind::Deleted,
            path: event.path.clone(),
            previous_path: Some(RawPath::from("/old")),
            node: "n".into(),
            container: None,
            before: Some(state()),
            after: None,
            process: None,
            controls: vec!["PCI-DSS-4.0:11.5.2".into()],
            diff: None,
            findings: Vec::new(),
        };
        assert_eq!(decode::<Alert>(&encode(&alert).unwrap()).unwrap(), alert);
    }

    #[test]
    fn paths_travel_as_msgpack_binary_not_text() {
        let bytes = encode(&event()).unwrap();
        let needle = b"/etc/pass\xffwd";
        let at = bytes.windows(needle.len()).position(|w| w == needle).unwrap();
        // 0xc4 is MessagePack's bin 8 marker, followed by the length.
        assert_eq!(&bytes[at - 2..at], &[0xc4, needle.len() as u8]);
    }

    #[test]
    fn readers_ignore_fields_they_do_not_know() {
        #[derive(Serialize)]
        struct NewerEvent {
            #[serde(flatten)]
            event: RawEvent,
            added_in_a_later_release: Vec<u32>,
        }
        let newer = NewerEvent { event: event(), added_in_a_later_release: vec![1, 2] };
        let decoded: RawEvent = decode(&encode(&newer).unwrap()).unwrap();
        assert_eq!(decoded, event());
    }

    #[test]
    fn readers_accept_messages_without_optional_fields() {
        #[derive(Serialize)]
        struct OlderProcess {
            pid: u32,
        }
        #[derive(Deserialize, Debug)]
        struct Wrapper {
            process: ProcessInfo,
        }
        #[derive(Serialize)]
        struct OlderWrapper {
            process: OlderProcess,
        }
        let bytes = rmp_serde::to_vec_named(&OlderWrapper { process: OlderProcess { pid: 3 } });
        let decoded: Wrapper = rmp_serde::from_slice(&bytes.unwrap()).unwrap();
        assert_eq!(decoded.process.pid, 3);
        assert_eq!(decoded.process.command, None);
    }

    #[test]
    fn other_schema_versions_are_refused_by_name() {
        let mut event = event();
        event.schema_version = SCHEMA_VERSION + 1;
        let error = decode::<RawEvent>(&encode(&event).unwrap()).unwrap_err();
        assert!(matches!(error, CodecError::UnsupportedVersion { found } if found == 2));
        assert_eq!(error.reason(), "unsupported_version");
    }

    #[test]
    fn garbage_is_malformed_not_a_panic() {
        for payload in [&b""[..], b"\xc1", b"not msgpack at all", &[0x81, 0xa1, b'x', 0x01]] {
            let error = decode::<RawEvent>(payload).unwrap_err();
            assert_eq!(error.reason(), "malformed");
        }
    }
}
