//! BLAKE3 of an open regular file: buffered reads (never `mmap`, whose
//! pages raise SIGBUS when the file is truncated underneath), a byte cap,
//! re-reads while the file changes, and a cache that skips files whose
//! identity and timestamps have not moved.
//!
//! A read is judged stable when size, mtime and ctime are the same before
//! and after it; ctime cannot be set from user space, so a writer that
//! restores mtime is still seen. A file whose link count drops to zero
//! while it is read was deleted: it is reported gone.

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::FileExt;
use std::sync::Mutex;

use crate::beneath::{Stat, stat_fd};

// Read buffer per thread: large enough for BLAKE3's SIMD paths and few
// system calls, small enough to stay in the L2 cache between the kernel's
// copy and the hash (256 KiB doubled the copy's share of a profile; see
// docs/benchmarks.md) and to keep the pool's memory small.
const BUFFER: usize = 64 * 1024;
// Reads of a file that keeps changing before it is reported unstable.
const ATTEMPTS: usize = 3;

thread_local! {
    static BUFFER_CELL: RefCell<Vec<u8>> = RefCell::new(vec![0; BUFFER]);
}

/// The digest of one version of a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Digest {
    /// Lower-case hex BLAKE3.
    pub hex: String,
    /// The cap was reached: the hash covers the first `cap` bytes only.
    pub partial: bool,
    /// The file changed during every attempt.
    pub unstable: bool,
    /// Metadata after the last read.
    pub stat: Stat,
    /// Bytes read for this digest (0 on a cache hit).
    pub bytes_read: u64,
}

/// Hashes files, remembering what it hashed.
pub(crate) struct Digester {
    max_bytes: u64,
    cache: Mutex<Cache>,
}

impl Digester {
    /// `cache_entries` of 0 disables the cache.
    pub fn new(max_bytes: u64, cache_entries: usize) -> Self {
        Self { max_bytes, cache: Mutex::new(Cache::new(cache_entries)) }
    }

    /// The digest of the regular file `fd`, whose `fstat` the caller just
    /// took as `opened`, or `None` when it was deleted while being read.
    pub fn digest(&self, fd: OwnedFd, opened: Stat) -> io::Result<Option<Digest>> {
        let file = File::from(fd);
        let mut last = None;
        let mut before = opened;
        for _ in 0..ATTEMPTS {
            if let Some(hit) = self.cached(&before) {
                return Ok(Some(hit));
            }
            let (hex, bytes_read) = self.read(&file, before.size)?;
            let after = stat_fd(file.as_fd())?;
            if after.nlink == 0 {
                return Ok(None);
            }
            let partial = after.size > self.max_bytes;
            let digest = Digest { hex, partial, unstable: false, stat: after, bytes_read };
            if same_version(&before, &after) {
                self.remember(&digest);
                return Ok(Some(digest));
            }
            last = Some(digest);
            before = after;
        }
        Ok(last.map(|digest| Digest { unstable: true, ..digest }))
    }

    // Reads up to the size fstat reported (a file that grows or shrinks
    // meanwhile fails the stability check and is read again), saving the
    // read that would return end of file. A size of 0 may hide content
    // (some pseudo files), so such a file is read to its end.
    fn read(&self, file: &File, size: u64) -> io::Result<(String, u64)> {
        let limit = if size == 0 { self.max_bytes } else { size.min(self.max_bytes) };
        BUFFER_CELL.with_borrow_mut(|buffer| hash_prefix(file, limit, buffer))
    }

    fn cached(&self, stat: &Stat) -> Option<Digest> {
        let cache = self.cache.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let entry = cache.get(stat)?;
        let partial = stat.size > self.max_bytes;
        Some(Digest { hex: entry, partial, unstable: false, stat: *stat, bytes_read: 0 })
    }

    fn remember(&self, digest: &Digest) {
        let mut cache = self.cache.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        cache.insert(&digest.stat, digest.hex.clone());
    }
}

/// BLAKE3 of the first `cap` bytes, read from offset 0 with `pread` so a
/// shared descriptor's position does not matter.
// Limitation: a `partial` hash does not see a change past the cap that
// keeps the size and is hidden from mtime; ctime still moves with it.
fn hash_prefix(file: &File, cap: u64, buffer: &mut [u8]) -> io::Result<(String, u64)> {
    let mut hasher = blake3::Hasher::new();
    let mut offset = 0u64;
    while offset < cap {
        let want = usize::try_from(cap - offset).unwrap_or(usize::MAX).min(buffer.len());
        match file.read_at(&mut buffer[..want], offset) {
            Ok(0) => break,
            Ok(n) => {
                hasher.update(&buffer[..n]);
                offset += n as u64;
            }
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) => return Err(error),
        }
    }
    Ok((hasher.finalize().to_hex().to_string(), offset))
}

fn same_version(before: &Stat, after: &Stat) -> bool {
    before.size == after.size
        && before.mtime_ns == after.mtime_ns
        && before.ctime_ns == after.ctime_ns
}

/// What the cache keys on: the object, and everything that moves when its
/// content is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Identity {
    dev: u64,
    ino: u64,
}

#[derive(Debug)]
struct Entry {
    size: u64,
    mtime_ns: i64,
    ctime_ns: i64,
    hex: String,
    generation: u64,
}

/// A bounded map from file identity to digest, evicting the oldest insert
/// first. Layer files of an image never change, so they stay hits.
#[derive(Debug)]
struct Cache {
    capacity: usize,
    entries: HashMap<Identity, Entry>,
    order: VecDeque<(Identity, u64)>,
    generation: u64,
}

impl Cache {
    fn new(capacity: usize) -> Self {
        Self { capacity, entries: HashMap::new(), order: VecDeque::new(), generation: 0 }
    }

    fn get(&self, stat: &Stat) -> Option<String> {
        let entry = self.entries.get(&Identity { dev: stat.dev, ino: stat.ino })?;
        let same = entry.size == stat.size
            && entry.mtime_ns == stat.mtime_ns
            && entry.ctime_ns == stat.ctime_ns;
        same.then(|| entry.hex.clone())
    }

    fn insert(&mut self, stat: &Stat, hex: String) {
        if self.capacity == 0 {
            return;
        }
        self.generation += 1;
        let key = Identity { dev: stat.dev, ino: stat.ino };
        let (size, mtime_ns, ctime_ns) = (stat.size, stat.mtime_ns, stat.ctime_ns);
        let entry = Entry { size, mtime_ns, ctime_ns, hex, generation: self.generation };
        self.entries.insert(key, entry);
        self.order.push_back((key, self.generation));
        while self.entries.len() > self.capacity || self.order.len() > 2 * self.capacity {
            self.evict_oldest();
        }
    }

    // The order queue may hold stale generations of re-inserted keys; only
    // the current generation removes an entry.
    fn evict_oldest(&mut self) {
        let Some((key, generation)) = self.order.pop_front() else { return };
        if self.entries.get(&key).is_some_and(|entry| entry.generation == generation) {
            self.entries.remove(&key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stat(ino: u64, size: u64) -> Stat {
        Stat {
            dev: 1,
            ino,
            mode: libc::S_IFREG | 0o644,
            nlink: 1,
            uid: 0,
            gid: 0,
            size,
            rdev: 0,
            mtime_ns: 5,
            ctime_ns: 7,
        }
    }

    #[test]
    fn cache_hits_only_when_size_and_times_match() {
        let mut cache = Cache::new(4);
        cache.insert(&stat(1, 10), "aa".into());
        assert_eq!(cache.get(&stat(1, 10)).as_deref(), Some("aa"));
        assert_eq!(cache.get(&stat(1, 11)), None);
        assert_eq!(cache.get(&Stat { ctime_ns: 8, ..stat(1, 10) }), None);
    }

    #[test]
    fn cache_stays_within_its_capacity() {
        let mut cache = Cache::new(3);
        for ino in 0..100 {
            cache.insert(&stat(ino, 1), format!("{ino}"));
            cache.insert(&stat(ino % 2, 1), "again".into());
        }
        assert!(cache.entries.len() <= 3);
        assert!(cache.order.len() <= 6);
        assert_eq!(cache.get(&stat(99, 1)).as_deref(), Some("99"));
    }

    #[test]
    fn a_cap_makes_the_digest_partial_and_quick() {
        // Named: an unlinked file counts as deleted.
        let file = tempfile::NamedTempFile::new().unwrap();
        file.as_file().set_len(1 << 40).unwrap();
        let file = file.reopen().unwrap();
        let digester = Digester::new(1 << 20, 0);
        let started = std::time::Instant::now();
        let opened = stat_fd(file.as_fd()).unwrap();
        let digest = digester.digest(file.into(), opened).unwrap().unwrap();
        assert!(digest.partial);
        assert_eq!(digest.bytes_read, 1 << 20);
        assert_eq!(digest.hex, blake3::hash(&vec![0; 1 << 20]).to_hex().to_string());
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
    }
}
