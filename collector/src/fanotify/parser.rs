//! A parser of the buffer read from a fanotify group that reports file ids.
//!
//! The buffer is a sequence of events, each a fixed metadata header
//! followed by info records up to `event_len`. Every length is checked
//! against the bytes actually present, so no input can make it panic or read
//! out of bounds. A damaged event header ends the buffer (the next event's
//! position is unknown); a damaged info record spoils only its own event.

use std::os::fd::RawFd;

/// `FANOTIFY_METADATA_VERSION`: the only layout this parser understands.
pub const METADATA_VERSION: u8 = 3;
/// `FAN_NOFD`: the event carries no file descriptor.
const NO_FD: i32 = -1;
/// Size of `struct fanotify_event_metadata`.
const METADATA_LEN: usize = 24;
/// Size of `struct fanotify_event_info_header`.
const INFO_HEADER_LEN: usize = 4;
/// Size of `__kernel_fsid_t`: two 32-bit words, kept as raw bytes since
/// they are only ever compared.
const FSID_LEN: usize = 8;
/// Size of the fixed part of `struct file_handle`.
const HANDLE_HEADER_LEN: usize = 8;

const INFO_TYPE_FID: u8 = 1;
const INFO_TYPE_DFID_NAME: u8 = 2;
const INFO_TYPE_DFID: u8 = 3;
const INFO_TYPE_OLD_DFID_NAME: u8 = 10;
const INFO_TYPE_NEW_DFID_NAME: u8 = 12;

/// Identity of a file system object: filesystem id plus file handle.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FileId {
    /// `f_fsid` of the filesystem, as raw bytes.
    pub fsid: [u8; FSID_LEN],
    /// `handle_type` of the file handle.
    pub handle_type: i32,
    /// The opaque handle bytes.
    pub handle: Vec<u8>,
}

/// Which object an info record describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordKind {
    /// The object itself.
    Fid,
    /// Its directory and its name there.
    DirName,
    /// Its directory, without a name.
    Dir,
    /// Old directory and name of a rename.
    OldDirName,
    /// New directory and name of a rename.
    NewDirName,
}

/// One file-id info record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InfoRecord {
    /// What the record describes.
    pub kind: RecordKind,
    /// The object's or directory's id.
    pub id: FileId,
    /// The entry name, for the `*DirName` kinds; bytes, not text.
    pub name: Option<Vec<u8>>,
}

/// One event as the kernel reported it.
#[derive(Debug, PartialEq, Eq)]
pub struct KernelEvent {
    /// `FAN_*` bits.
    pub mask: u64,
    /// Process (thread group) that caused it; 0 when unknown.
    pub pid: i32,
    /// A descriptor the reader must close, if the kernel opened one.
    pub fd: Option<RawFd>,
    /// The info records, or why they could not be read.
    pub records: Result<Vec<InfoRecord>, ParseError>,
}

/// Why (part of) a buffer could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// Fewer bytes remain than a structure needs.
    #[error("truncated at offset {offset}: {needed} bytes needed, {available} available")]
    Truncated {
        /// Offset in the buffer.
        offset: usize,
        /// Bytes the structure needs.
        needed: usize,
        /// Bytes that remain.
        available: usize,
    },
    /// The kernel speaks another metadata version.
    #[error("fanotify metadata version {found}, expected {METADATA_VERSION}")]
    Version {
        /// Version found.
        found: u8,
    },
    /// A length field is impossible.
    #[error("invalid {what} length {len} at offset {offset}")]
    Length {
        /// Which length field.
        what: &'static str,
        /// Its value.
        len: usize,
        /// Offset in the buffer.
        offset: usize,
    },
    /// A name has no terminating NUL inside its record.
    #[error("unterminated name at offset {offset}")]
    Unterminated {
        /// Offset of the record in the buffer.
        offset: usize,
    },
}

/// Iterates over the events of `buffer`.
pub fn events(buffer: &[u8]) -> Events<'_> {
    Events { buffer, offset: 0 }
}

/// Iterator over the events of one read; see [`events`]. After an error in
/// an event header it yields that error once and then ends.
pub struct Events<'a> {
    buffer: &'a [u8],
    offset: usize,
}

impl Iterator for Events<'_> {
    type Item = Result<KernelEvent, ParseError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.offset >= self.buffer.len() {
            return None;
        }
        let parsed = parse_event(self.buffer, self.offset);
        match &parsed {
            Ok((_, event_len)) => self.offset += event_len,
            Err(_) => self.offset = self.buffer.len(),
        }
        Some(parsed.map(|(event, _)| event))
    }
}

// Parses the event at `offset` and returns it with its length.
fn parse_event(buffer: &[u8], offset: usize) -> Result<(KernelEvent, usize), ParseError> {
    let header = slice(buffer, offset, METADATA_LEN)?;
    let event_len = u32_at(header, 0) as usize;
    let version = header[4];
    let metadata_len = u16_at(header, 6) as usize;
    if version != METADATA_VERSION {
        return Err(ParseError::Version { found: version });
    }
    if metadata_len < METADATA_LEN || event_len < metadata_len {
        return Err(ParseError::Length { what: "event", len: event_len, offset });
    }
    let body = slice(buffer, offset, event_len)?;

    let fd = i32_at(header, 16);
    let event = KernelEvent {
        mask: u64_at(header, 8),
        pid: i32_at(header, 20),
        fd: (fd != NO_FD).then_some(fd),
        records: parse_records(&body[metadata_len..], offset + metadata_len),
    };
    Ok((event, event_len))
}

fn parse_records(mut bytes: &[u8], mut offset: usize) -> Result<Vec<InfoRecord>, ParseError> {
    let mut records = Vec::new();
    while !bytes.is_empty() {
        let header = slice(bytes, 0, INFO_HEADER_LEN).map_err(|e| at(e, offset))?;
        let len = u16_at(header, 2) as usize;
        if len < INFO_HEADER_LEN || len > bytes.len() {
            return Err(ParseError::Length { what: "info record", len, offset });
        }
        if let Some(kind) = record_kind(header[0]) {
            records.push(parse_fid_record(kind, &bytes[..len], offset)?);
        }
        // Other record types (pidfd, error) are skipped by their length.
        bytes = &bytes[len..];
        offset += len;
    }
    Ok(records)
}

fn record_kind(info_type: u8) -> Option<RecordKind> {
    match info_type {
        INFO_TYPE_FID => Some(RecordKind::Fid),
        INFO_TYPE_DFID_NAME => Some(RecordKind::DirName),
        INFO_TYPE_DFID => Some(RecordKind::Dir),
        INFO_TYPE_OLD_DFID_NAME => Some(RecordKind::OldDirName),
        INFO_TYPE_NEW_DFID_NAME => Some(RecordKind::NewDirName),
        _ => None,
    }
}

// `record` is one whole info record: header, fsid, file_handle, then a
// NUL-terminated name for the name kinds, then padding.
fn parse_fid_record(
    kind: RecordKind,
    record: &[u8],
    offset: usize,
) -> Result<InfoRecord, ParseError> {
    let fixed = INFO_HEADER_LEN + FSID_LEN + HANDLE_HEADER_LEN;
    let head = slice(record, 0, fixed).map_err(|e| at(e, offset))?;
    let handle_bytes = u32_at(head, INFO_HEADER_LEN + FSID_LEN) as usize;
    let handle_end = fixed.checked_add(handle_bytes).filter(|end| *end <= record.len());
    let Some(handle_end) = handle_end else {
        return Err(ParseError::Length { what: "file handle", len: handle_bytes, offset });
    };

    let mut fsid = [0; FSID_LEN];
    fsid.copy_from_slice(&head[INFO_HEADER_LEN..INFO_HEADER_LEN + FSID_LEN]);
    let id = FileId {
        fsid,
        handle_type: i32_at(head, INFO_HEADER_LEN + FSID_LEN + 4),
        handle: record[fixed..handle_end].to_vec(),
    };
    let name = match kind {
        RecordKind::DirName | RecordKind::OldDirName | RecordKind::NewDirName => {
            Some(parse_name(&record[handle_end..], offset)?)
        }
        RecordKind::Fid | RecordKind::Dir => None,
    };
    Ok(InfoRecord { kind, id, name })
}

fn parse_name(bytes: &[u8], offset: usize) -> Result<Vec<u8>, ParseError> {
    let end = bytes.iter().position(|b| *b == 0).ok_or(ParseError::Unterminated { offset })?;
    Ok(bytes[..end].to_vec())
}

// `len` bytes of `bytes` from `offset`, or how many were missing.
fn slice(bytes: &[u8], offset: usize, len: usize) -> Result<&[u8], ParseError> {
    let available = bytes.len().saturating_sub(offset);
    bytes.get(offset..).and_then(|rest| rest.get(..len)).ok_or(ParseError::Truncated {
        offset,
        needed: len,
        available,
    })
}

// Rebases a truncation found in a sub-slice onto the buffer offset.
fn at(error: ParseError, base: usize) -> ParseError {
    match error {
        ParseError::Truncated { offset, needed, available } => {
            ParseError::Truncated { offset: base + offset, needed, available }
        }
        other => other,
    }
}

// The helpers below are only called on slices already checked to be long
// enough, so the conversions cannot fail; they still avoid panicking.
fn array<const N: usize>(bytes: &[u8], at: usize) -> [u8; N] {
    let mut out = [0; N];
    if let Some(src) = bytes.get(at..at + N) {
        out.copy_from_slice(src);
    }
    out
}

fn u16_at(bytes: &[u8], at: usize) -> u16 {
    u16::from_ne_bytes(array(bytes, at))
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_ne_bytes(array(bytes, at))
}

fn i32_at(bytes: &[u8], at: usize) -> i32 {
    i32::from_ne_bytes(array(bytes, at))
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    u64::from_ne_bytes(array(bytes, at))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Builds buffers the way the kernel lays them out.
    pub(crate) struct EventBuilder {
        mask: u64,
        pid: i32,
        fd: i32,
        records: Vec<u8>,
    }

    impl EventBuilder {
        pub(crate) fn new(mask: u64, pid: i32) -> Self {
            Self { mask, pid, fd: NO_FD, records: Vec::new() }
        }

        pub(crate) fn fd(mut self, fd: i32) -> Self {
            self.fd = fd;
            self
        }

        pub(crate) fn record(mut self, info_type: u8, id: &FileId, name: Option<&[u8]>) -> Self {
            let mut body = Vec::new();
            body.extend_from_slice(&id.fsid);
            body.extend_from_slice(&(id.handle.len() as u32).to_ne_bytes());
            body.extend_from_slice(&id.handle_type.to_ne_bytes());
            body.extend_from_slice(&id.handle);
            if let Some(name) = name {
                body.extend_from_slice(name);
                body.push(0);
            }
            while !(body.len() + INFO_HEADER_LEN).is_multiple_of(4) {
                body.push(0);
            }
            let len = (body.len() + INFO_HEADER_LEN) as u16;
            self.records.extend_from_slice(&[info_type, 0]);
            self.records.extend_from_slice(&len.to_ne_bytes());
            self.records.extend_from_slice(&body);
            self
        }

        pub(crate) fn build(&self) -> Vec<u8> {
            let mut out = Vec::new();
            let event_len = (METADATA_LEN + self.records.len()) as u32;
            out.extend_from_slice(&event_len.to_ne_bytes());
            out.extend_from_slice(&[METADATA_VERSION, 0]);
            out.extend_from_slice(&(METADATA_LEN as u16).to_ne_bytes());
            out.extend_from_slice(&self.mask.to_ne_bytes());
            out.extend_from_slice(&self.fd.to_ne_bytes());
            out.extend_from_slice(&self.pid.to_ne_bytes());
            out.extend_from_slice(&self.records);
            out
        }
    }

    pub(crate) fn file_id(n: u8) -> FileId {
        FileId { fsid: [7; 8], handle_type: 1, handle: vec![n; 8] }
    }

    const CLOSE_WRITE: u64 = 0x8;
    const RENAME: u64 = 0x1000_0000;

    fn all(buffer: &[u8]) -> Vec<Result<KernelEvent, ParseError>> {
        events(buffer).collect()
    }

    #[test]
    fn an_event_with_directory_name_and_object_records_is_parsed() {
        let buffer = EventBuilder::new(CLOSE_WRITE, 42)
            .record(INFO_TYPE_DFID_NAME, &file_id(1), Some(b"passwd"))
            .record(INFO_TYPE_FID, &file_id(2), None)
            .build();
        let events = all(&buffer);
        assert_eq!(events.len(), 1);
        let event = events[0].as_ref().unwrap();
        assert_eq!((event.mask, event.pid, event.fd), (CLOSE_WRITE, 42, None));
        let records = event.records.as_ref().unwrap();
        assert_eq!(records[0].kind, RecordKind::DirName);
        assert_eq!(records[0].id, file_id(1));
        assert_eq!(records[0].name.as_deref(), Some(&b"passwd"[..]));
        assert_eq!(records[1], InfoRecord { kind: RecordKind::Fid, id: file_id(2), name: None });
    }

    #[test]
    fn a_rename_carries_old_and_new_directory_records() {
        let buffer = EventBuilder::new(RENAME, 1)
            .record(INFO_TYPE_OLD_DFID_NAME, &file_id(1), Some(b".tmp123"))
            .record(INFO_TYPE_NEW_DFID_NAME, &file_id(3), Some(b"app.properties"))
            .record(INFO_TYPE_FID, &file_id(9), None)
            .build();
        let event = all(&buffer).remove(0).unwrap();
        let records = event.records.unwrap();
        let kinds: Vec<_> = records.iter().map(|r| r.kind).collect();
        assert_eq!(kinds, [RecordKind::OldDirName, RecordKind::NewDirName, RecordKind::Fid]);
        assert_eq!(records[0].name.as_deref(), Some(&b".tmp123"[..]));
        assert_eq!(records[1].name.as_deref(), Some(&b"app.properties"[..]));
        assert_eq!(records[1].id, file_id(3));
    }

    #[test]
    fn non_utf8_names_are_kept_as_bytes() {
        let name = b"caf\xe9\xff";
        let buffer =
            EventBuilder::new(CLOSE_WRITE, 1).record(INFO_TYPE_DFID_NAME, &file_id(1), Some(name));
        let event = all(&buffer.build()).remove(0).unwrap();
        assert_eq!(event.records.unwrap()[0].name.as_deref(), Some(&name[..]));
    }

    #[test]
    fn consecutive_events_are_split_by_event_len() {
        let mut buffer =
            EventBuilder::new(CLOSE_WRITE, 1).record(INFO_TYPE_DFID_NAME, &file_id(1), Some(b"a"));
        let mut bytes = buffer.build();
        buffer = EventBuilder::new(0x4000, 0).fd(5);
        bytes.extend(buffer.build());
        let events = all(&bytes);
        assert_eq!(events.len(), 2);
        let overflow = events[1].as_ref().unwrap();
        assert_eq!((overflow.mask, overflow.fd), (0x4000, Some(5)));
        assert_eq!(overflow.records, Ok(Vec::new()));
    }

    #[test]
    fn unknown_record_types_are_skipped() {
        let buffer = EventBuilder::new(CLOSE_WRITE, 1)
            .record(4, &file_id(1), None)
            .record(INFO_TYPE_DFID_NAME, &file_id(2), Some(b"x"))
            .build();
        let records = all(&buffer).remove(0).unwrap().records.unwrap();
        assert_eq!(records.len(), 1);
        assert_eq!(records[0].id, file_id(2));
    }

    #[test]
    fn a_truncated_header_is_an_error_not_a_panic() {
        let buffer = EventBuilder::new(CLOSE_WRITE, 1).build();
        let events = all(&buffer[..10]);
        assert!(matches!(events[..], [Err(ParseError::Truncated { offset: 0, .. })]));
    }

    #[test]
    fn an_event_longer_than_the_buffer_ends_the_buffer() {
        let buffer =
            EventBuilder::new(CLOSE_WRITE, 1).record(INFO_TYPE_DFID_NAME, &file_id(1), Some(b"a"));
        let bytes = buffer.build();
        let events = all(&bytes[..bytes.len() - 1]);
        assert!(matches!(events[..], [Err(ParseError::Truncated { .. })]));
    }

    #[test]
    fn an_event_len_shorter_than_the_metadata_is_refused() {
        let mut bytes = EventBuilder::new(CLOSE_WRITE, 1).build();
        bytes[..4].copy_from_slice(&8u32.to_ne_bytes());
        assert!(matches!(all(&bytes)[..], [Err(ParseError::Length { what: "event", .. })]));
    }

    #[test]
    fn another_metadata_version_is_refused() {
        let mut bytes = EventBuilder::new(CLOSE_WRITE, 1).build();
        bytes[4] = 2;
        assert_eq!(all(&bytes), [Err(ParseError::Version { found: 2 })]);
    }

    #[test]
    fn a_bad_record_spoils_only_its_event() {
        let mut first =
            EventBuilder::new(CLOSE_WRITE, 1).record(INFO_TYPE_DFID_NAME, &file_id(1), Some(b"a"));
        let mut bytes = first.build();
        // The record's length field claims more than the event holds.
        bytes[METADATA_LEN + 2..METADATA_LEN + 4].copy_from_slice(&200u16.to_ne_bytes());
        first = EventBuilder::new(CLOSE_WRITE, 2).record(INFO_TYPE_FID, &file_id(2), None);
        bytes.extend(first.build());
        let events = all(&bytes);
        assert!(matches!(
            events[0].as_ref().unwrap().records,
            Err(ParseError::Length { what: "info record", .. })
        ));
        assert_eq!(events[1].as_ref().unwrap().pid, 2);
    }

    #[test]
    fn a_handle_longer_than_its_record_is_refused() {
        let mut bytes =
            EventBuilder::new(CLOSE_WRITE, 1).record(INFO_TYPE_FID, &file_id(1), None).build();
        let handle_bytes_at = METADATA_LEN + INFO_HEADER_LEN + FSID_LEN;
        bytes[handle_bytes_at..handle_bytes_at + 4].copy_from_slice(&u32::MAX.to_ne_bytes());
        let event = all(&bytes).remove(0).unwrap();
        assert!(matches!(event.records, Err(ParseError::Length { what: "file handle", .. })));
    }

    #[test]
    fn a_name_without_nul_is_refused() {
        let mut bytes = EventBuilder::new(CLOSE_WRITE, 1)
            .record(INFO_TYPE_DFID_NAME, &file_id(1), Some(b"abc"))
            .build();
        // Overwrite the terminating NUL and the padding after it.
        let len = bytes.len();
        bytes[len - 4..].copy_from_slice(b"xxxx");
        let event = all(&bytes).remove(0).unwrap();
        assert!(matches!(event.records, Err(ParseError::Unterminated { .. })));
    }

    #[test]
    fn a_zero_record_length_does_not_loop() {
        let mut bytes =
            EventBuilder::new(CLOSE_WRITE, 1).record(INFO_TYPE_FID, &file_id(1), None).build();
        bytes[METADATA_LEN + 2..METADATA_LEN + 4].copy_from_slice(&0u16.to_ne_bytes());
        let event = all(&bytes).remove(0).unwrap();
        assert!(matches!(event.records, Err(ParseError::Length { len: 0, .. })));
    }

    #[test]
    fn every_prefix_and_every_corrupted_byte_parses_without_panic() {
        let bytes = EventBuilder::new(RENAME, 1)
            .record(INFO_TYPE_OLD_DFID_NAME, &file_id(1), Some(b"old\xff"))
            .record(INFO_TYPE_NEW_DFID_NAME, &file_id(3), Some(b"new"))
            .record(INFO_TYPE_FID, &file_id(9), None)
            .build();
        for end in 0..=bytes.len() {
            let _ = all(&bytes[..end]);
        }
        for at in 0..bytes.len() {
            for value in [0x00, 0x01, 0x7f, 0x80, 0xff] {
                let mut corrupted = bytes.clone();
                corrupted[at] = value;
                let _ = all(&corrupted);
            }
        }
    }
}
