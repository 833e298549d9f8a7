//! Parsing `/proc/<pid>/mountinfo`: the root mount of a container, its
//! overlay layers, its bind mounts, and where a mounted directory lives on
//! the node.
//!
//! Fields are separated by spaces and a space, tab, newline or backslash
//! inside a field is written as an octal escape (`\040`), so every field is
//! unescaped to raw bytes. A line that does not parse is skipped.

use schemas::RawPath;

/// One line of a mountinfo file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Mount {
    /// `major:minor` of the mounted filesystem.
    pub device: String,
    /// The directory of that filesystem that is mounted (`/` for all of it).
    pub root: RawPath,
    /// Where it is mounted, in the reader's mount namespace.
    pub mount_point: RawPath,
    /// Filesystem type (`overlay`, `ext4`, …).
    pub fs_type: String,
    /// Per-superblock options (for overlay: `lowerdir=…,upperdir=…`).
    pub super_options: Vec<u8>,
}

/// The layers of an overlay mount.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Overlay {
    /// `upperdir`: where the container's writes land.
    pub upper: RawPath,
    /// `lowerdir`, top first.
    pub lowers: Vec<RawPath>,
}

/// Every mount in `text` that parses.
pub(crate) fn parse(text: &[u8]) -> Vec<Mount> {
    text.split(|b| *b == b'\n').filter_map(parse_line).collect()
}

fn parse_line(line: &[u8]) -> Option<Mount> {
    let fields: Vec<&[u8]> = line.split(|b| *b == b' ').collect();
    let separator = fields.iter().position(|field| *field == b"-")?;
    if separator < 6 || fields.len() < separator + 4 {
        return None;
    }
    Some(Mount {
        device: String::from_utf8(fields[2].to_vec()).ok()?,
        root: RawPath::from_bytes(unescape(fields[3])),
        mount_point: RawPath::from_bytes(unescape(fields[4])),
        fs_type: String::from_utf8(unescape(fields[separator + 1])).ok()?,
        super_options: unescape(fields[separator + 3]),
    })
}

/// Reverses the kernel's `\ooo` escapes; anything else is kept as is.
fn unescape(field: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(field.len());
    let mut at = 0;
    while at < field.len() {
        if let Some(byte) = octal(&field[at..]) {
            out.push(byte);
            at += 4;
        } else {
            out.push(field[at]);
            at += 1;
        }
    }
    out
}

fn octal(rest: &[u8]) -> Option<u8> {
    let [b'\\', a, b, c, ..] = rest else { return None };
    let digits = [*a, *b, *c];
    if !digits.iter().all(|d| (b'0'..=b'7').contains(d)) {
        return None;
    }
    let value = digits.iter().fold(0u32, |acc, d| acc * 8 + u32::from(d - b'0'));
    u8::try_from(value).ok()
}

/// The mount at `/` of a process.
pub(crate) fn root_mount(mounts: &[Mount]) -> Option<&Mount> {
    // A later mount on `/` hides an earlier one.
    mounts.iter().rev().find(|mount| mount.mount_point.as_bytes() == b"/")
}

/// The layers of an overlay mount, or `None` for other filesystems.
pub(crate) fn overlay(mount: &Mount) -> Option<Overlay> {
    if mount.fs_type != "overlay" {
        return None;
    }
    let mut upper = None;
    let mut lowers = Vec::new();
    for option in mount.super_options.split(|b| *b == b',') {
        if let Some(value) = option.strip_prefix(b"upperdir=") {
            upper = Some(RawPath::from_bytes(value));
        } else if let Some(value) = option.strip_prefix(b"lowerdir=") {
            lowers = value.split(|b| *b == b':').map(RawPath::from_bytes).collect();
        }
    }
    Some(Overlay { upper: upper?, lowers })
}

// Filesystems that hold no container data worth watching.
const PSEUDO: [&str; 14] = [
    "proc",
    "sysfs",
    "tmpfs",
    "devtmpfs",
    "devpts",
    "mqueue",
    "cgroup",
    "cgroup2",
    "overlay",
    "securityfs",
    "debugfs",
    "tracefs",
    "bpf",
    "nsfs",
];
// Files the runtime writes into every container: not the application's.
const RUNTIME_FILES: [&[u8]; 4] =
    [b"/etc/resolv.conf", b"/etc/hostname", b"/etc/hosts", b"/dev/termination-log"];

/// Bind mounts of a container that hold data on a real filesystem
/// (volumes), excluding pseudo filesystems and the runtime's own files.
pub(crate) fn volumes(mounts: &[Mount]) -> Vec<&Mount> {
    let special = |point: &[u8]| {
        [&b"/proc"[..], b"/sys", b"/dev"].iter().any(|top| crate::watch::is_under(point, top))
    };
    mounts
        .iter()
        .filter(|m| m.mount_point.as_bytes() != b"/")
        .filter(|m| !PSEUDO.contains(&m.fs_type.as_str()))
        .filter(|m| !RUNTIME_FILES.contains(&m.mount_point.as_bytes()))
        .filter(|m| !special(m.mount_point.as_bytes()))
        .collect()
}

/// Where the directory a container's `mount` shows can be opened by this
/// process: a mount of the same device, in `own` (this process's
/// mountinfo), whose root contains the mount's root. The longest such root
/// wins.
pub(crate) fn host_path(mount: &Mount, own: &[Mount]) -> Option<RawPath> {
    let wanted = mount.root.as_bytes();
    let (best, rest) = own
        .iter()
        .filter(|m| m.device == mount.device)
        .filter_map(|m| {
            let root = m.root.as_bytes();
            let rest = wanted.strip_prefix(root)?;
            let whole = root.ends_with(b"/") || rest.is_empty() || rest.starts_with(b"/");
            whole.then_some((m, rest))
        })
        .max_by_key(|(m, _)| m.root.as_bytes().len())?;
    let rest = rest.strip_prefix(b"/").unwrap_or(rest);
    Some(if rest.is_empty() { best.mount_point.clone() } else { best.mount_point.join(rest) })
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOCKER: &[u8] = b"75 51 0:40 / / rw,relatime master:2 - overlay overlay rw,\
lowerdir=/var/lib/docker/overlay2/l/2BOJ:/var/lib/docker/overlay2/l/VZIS,\
upperdir=/var/lib/docker/overlay2/3622/diff,workdir=/var/lib/docker/overlay2/3622/work
76 75 0:43 / /proc rw,nosuid,nodev,noexec,relatime - proc proc rw
77 75 0:44 / /dev rw,nosuid - tmpfs tmpfs rw,size=65536k,mode=755
92 75 254:0 /var/lib/docker/containers/17/resolv.conf /etc/resolv.conf rw,relatime - ext4 /dev/vda rw
95 75 254:0 /var/lib/docker/volumes/data/_data /srv/my\\040data rw,relatime - ext4 /dev/vda rw
96 75 254:0 /home/op/conf /app/conf ro,relatime master:1 - ext4 /dev/vda rw
";

    const HOST: &[u8] = b"22 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw
30 22 254:16 / /home rw,relatime shared:2 - ext4 /dev/vdb rw
31 22 254:0 /var/lib/docker /mnt/docker rw,relatime shared:3 - ext4 /dev/vda rw
";

    #[test]
    fn the_root_mount_gives_upper_and_lower_layers_top_first() {
        let mounts = parse(DOCKER);
        let root = root_mount(&mounts).expect("a root mount");
        let overlay = overlay(root).expect("an overlay");
        assert_eq!(overlay.upper, RawPath::from("/var/lib/docker/overlay2/3622/diff"));
        let lowers: Vec<_> = overlay.lowers.iter().map(RawPath::escaped).collect();
        assert_eq!(lowers, ["/var/lib/docker/overlay2/l/2BOJ", "/var/lib/docker/overlay2/l/VZIS"]);
    }

    #[test]
    fn octal_escapes_are_undone_in_every_field() {
        let mounts = parse(DOCKER);
        let volume = mounts.iter().find(|m| m.root.as_bytes().ends_with(b"_data")).unwrap();
        assert_eq!(volume.mount_point, RawPath::from("/srv/my data"));
        assert_eq!(unescape(b"a\\134b\\011c\\9"), b"a\\b\tc\\9");
        assert_eq!(unescape(b"\\377\\400"), b"\xff\\400", "values above a byte stay text");
    }

    #[test]
    fn volumes_skip_pseudo_filesystems_and_runtime_files() {
        let mounts = parse(DOCKER);
        let points: Vec<_> = volumes(&mounts).iter().map(|m| m.mount_point.escaped()).collect();
        assert_eq!(points, ["/srv/my data", "/app/conf"]);
    }

    #[test]
    fn a_bind_mount_is_found_on_the_host_by_device_and_root() {
        let mounts = parse(DOCKER);
        let own = parse(HOST);
        let find = |point: &str| mounts.iter().find(|m| m.mount_point == point.into()).unwrap();
        assert_eq!(
            host_path(find("/srv/my data"), &own),
            Some("/mnt/docker/volumes/data/_data".into()),
            "the longest matching root wins"
        );
        assert_eq!(host_path(find("/app/conf"), &own), Some("/home/op/conf".into()));
        let elsewhere = Mount { device: "9:9".into(), ..find("/app/conf").clone() };
        assert_eq!(host_path(&elsewhere, &own), None);
    }

    #[test]
    fn a_non_overlay_root_has_no_layers_and_broken_lines_are_skipped() {
        let mounts = parse(b"1 0 254:0 /var/lib/docker/vfs/dir/ab / rw - ext4 /dev/vda rw\nbad\n");
        assert_eq!(mounts.len(), 1);
        assert_eq!(overlay(root_mount(&mounts).unwrap()), None);
    }
}
