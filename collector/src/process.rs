//! Attribution of an event to the process that caused it, from /proc.
//!
//! The process is looked up when the event is read, so a short-lived
//! process may already be gone: then only its pid is known. A pid reused in
//! between would be misattributed; the kernel offers no cheaper guard
//! without pidfd records.

use std::os::unix::ffi::OsStringExt;

use schemas::{ProcessInfo, RawPath};

/// What /proc still knows about `pid`.
pub(crate) fn describe(pid: u32) -> ProcessInfo {
    let proc_dir = format!("/proc/{pid}");
    let command = std::fs::read(format!("{proc_dir}/comm"))
        .ok()
        .map(|bytes| String::from_utf8_lossy(bytes.trim_ascii_end()).into_owned());
    let executable = std::fs::read_link(format!("{proc_dir}/exe"))
        .ok()
        .map(|target| RawPath::from_bytes(target.into_os_string().into_vec()));
    let uid = std::fs::read(format!("{proc_dir}/status")).ok().and_then(|status| real_uid(&status));
    ProcessInfo { pid, command, executable, uid }
}

// The first field of the `Uid:` line: real, effective, saved, filesystem.
fn real_uid(status: &[u8]) -> Option<u32> {
    let line = status.split(|b| *b == b'\n').find_map(|line| line.strip_prefix(b"Uid:"))?;
    let first = line.split(|b| b.is_ascii_whitespace()).find(|field| !field.is_empty())?;
    std::str::from_utf8(first).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_real_uid_is_the_first_field() {
        let status = b"Name:\tsh\nUid:\t1000\t0\t0\t0\nGid:\t1\n";
        assert_eq!(real_uid(status), Some(1000));
        assert_eq!(real_uid(b"Name:\tsh\n"), None);
        assert_eq!(real_uid(b"Uid:\tnope\n"), None);
    }

    #[test]
    fn the_current_process_is_described() {
        let me = describe(std::process::id());
        assert!(me.command.is_some());
        assert!(me.executable.is_some());
        // SAFETY: getuid has no preconditions.
        assert_eq!(me.uid, Some(unsafe { libc::getuid() }));
    }

    #[test]
    fn a_vanished_process_keeps_only_its_pid() {
        let gone = describe(u32::MAX);
        assert_eq!(gone, ProcessInfo { pid: u32::MAX, command: None, executable: None, uid: None });
    }
}
