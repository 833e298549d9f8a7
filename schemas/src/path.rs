//! Paths as bytes.
//!
//! Linux file names are arbitrary bytes except `/` and NUL, and an attacker
//! chooses them, so a path is carried as bytes end to end and never lossily
//! converted. In MessagePack it is a binary value; in JSON and logs it is a
//! string where bytes that are not UTF-8 appear as `\xNN` and a backslash as
//! `\\`, an escaping that [`RawPath::from_escaped`] reverses exactly.

use std::ffi::OsStr;
use std::fmt;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::{Deserialize, Serialize, Serializer};

/// A file path exactly as the kernel gave it.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct RawPath(Vec<u8>);

impl RawPath {
    /// Wraps raw bytes.
    pub fn from_bytes(bytes: impl Into<Vec<u8>>) -> Self {
        Self(bytes.into())
    }

    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The path as an operating-system path, for opening the file.
    pub fn as_path(&self) -> &Path {
        Path::new(OsStr::from_bytes(&self.0))
    }

    /// Appends one component, adding a `/` between when needed.
    pub fn join(&self, name: &[u8]) -> Self {
        let mut bytes = self.0.clone();
        if !bytes.ends_with(b"/") {
            bytes.push(b'/');
        }
        bytes.extend_from_slice(name);
        Self(bytes)
    }

    /// The escaped text form: UTF-8 as is, `\` as `\\`, other bytes as `\xNN`.
    pub fn escaped(&self) -> String {
        let mut out = String::with_capacity(self.0.len());
        for chunk in self.0.utf8_chunks() {
            for c in chunk.valid().chars() {
                if c == '\\' {
                    out.push_str("\\\\");
                } else {
                    out.push(c);
                }
            }
            for byte in chunk.invalid() {
                out.push_str(&format!("\\x{byte:02x}"));
            }
        }
        out
    }

    /// Parses the escaped text form produced by [`RawPath::escaped`].
    pub fn from_escaped(text: &str) -> Result<Self, EscapeError> {
        let mut bytes = Vec::with_capacity(text.len());
        let mut rest = text.as_bytes();
        while let Some((&first, tail)) = rest.split_first() {
            if first != b'\\' {
                bytes.push(first);
                rest = tail;
                continue;
            }
            match tail {
                [b'\\', after @ ..] => {
                    bytes.push(b'\\');
                    rest = after;
                }
                [b'x', hi, lo, after @ ..] => {
                    bytes.push(hex_pair(*hi, *lo).ok_or(EscapeError { text: text.into() })?);
                    rest = after;
                }
                _ => return Err(EscapeError { text: text.into() }),
            }
        }
        Ok(Self(bytes))
    }
}

fn hex_pair(hi: u8, lo: u8) -> Option<u8> {
    let digit = |b: u8| (b as char).to_digit(16);
    Some((digit(hi)? * 16 + digit(lo)?) as u8)
}

/// A string that is not a valid escaped path (a lone `\` or a bad `\xNN`).
#[derive(Debug, thiserror::Error)]
#[error("invalid escape sequence in path {text:?}")]
pub struct EscapeError {
    text: String,
}

impl From<PathBuf> for RawPath {
    fn from(path: PathBuf) -> Self {
        Self(path.into_os_string().into_vec())
    }
}

impl From<&Path> for RawPath {
    fn from(path: &Path) -> Self {
        Self(path.as_os_str().as_bytes().to_vec())
    }
}

impl From<&str> for RawPath {
    fn from(path: &str) -> Self {
        Self(path.as_bytes().to_vec())
    }
}

impl fmt::Display for RawPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.escaped())
    }
}

impl fmt::Debug for RawPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.escaped())
    }
}

impl Serialize for RawPath {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            serializer.serialize_str(&self.escaped())
        } else {
            serializer.serialize_bytes(&self.0)
        }
    }
}

impl<'de> Deserialize<'de> for RawPath {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        if deserializer.is_human_readable() {
            deserializer.deserialize_str(RawPathVisitor)
        } else {
            deserializer.deserialize_bytes(RawPathVisitor)
        }
    }
}

struct RawPathVisitor;

impl<'de> Visitor<'de> for RawPathVisitor {
    type Value = RawPath;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a path as bytes or as an escaped string")
    }

    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<RawPath, E> {
        Ok(RawPath(v.to_vec()))
    }

    fn visit_byte_buf<E: de::Error>(self, v: Vec<u8>) -> Result<RawPath, E> {
        Ok(RawPath(v))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<RawPath, E> {
        RawPath::from_escaped(v).map_err(E::custom)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<RawPath, A::Error> {
        let mut bytes = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        while let Some(byte) = seq.next_element::<u8>()? {
            bytes.push(byte);
        }
        Ok(RawPath(bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_utf8_bytes_are_escaped_and_restored_exactly() {
        let path = RawPath::from_bytes(b"/etc/caf\xe9\\x41\xff".to_vec());
        let text = path.escaped();
        assert_eq!(text, "/etc/caf\\xe9\\\\x41\\xff");
        assert_eq!(RawPath::from_escaped(&text).unwrap(), path);
    }

    #[test]
    fn utf8_paths_are_shown_unchanged() {
        let path = RawPath::from("/app/templates/ünïcode.html");
        assert_eq!(path.to_string(), "/app/templates/ünïcode.html");
    }

    #[test]
    fn bad_escapes_are_rejected() {
        assert!(RawPath::from_escaped("trailing\\").is_err());
        assert!(RawPath::from_escaped("\\xZZ").is_err());
        assert!(RawPath::from_escaped("\\q").is_err());
    }

    #[test]
    fn json_carries_the_escaped_form() {
        let path = RawPath::from_bytes(b"/tmp/\x80".to_vec());
        let json = serde_json::to_string(&path).unwrap();
        assert_eq!(json, r#""/tmp/\\x80""#);
        assert_eq!(serde_json::from_str::<RawPath>(&json).unwrap(), path);
    }

    #[test]
    fn join_adds_exactly_one_separator() {
        assert_eq!(RawPath::from("/a").join(b"b").as_bytes(), b"/a/b");
        assert_eq!(RawPath::from("/").join(b"b").as_bytes(), b"/b");
    }
}
