//! The wire contract of fim: every message that crosses a process boundary,
//! the subjects and headers they travel with, the JetStream streams that hold
//! them, and the MessagePack codec.
//!
//! Every stage depends on this crate and on nothing else for the shape of its
//! input and output. Messages are encoded as MessagePack maps with named
//! fields, so a field can be added without breaking older readers; a change
//! that older readers cannot ignore bumps [`SCHEMA_VERSION`].

pub mod codec;
pub mod describe;
pub mod header;
pub mod message;
pub mod path;
pub mod stream;
pub mod subject;

pub use codec::{CodecError, decode, encode};
pub use describe::Describe;
pub use message::{
    Alert, CapturedContent, ChangeKind, ContainerInfo, ContainerRoot, FileKind, FileState,
    ImageVersion, Observation, ProcessInfo, RawEvent, RescanRequest, Severity, Source,
};
pub use path::RawPath;

/// Version of every message defined here. Readers reject other versions, so
/// it only changes when a message changes in a way older readers must not
/// misread (a field removed or its meaning changed), never for new fields.
pub const SCHEMA_VERSION: u16 = 1;
