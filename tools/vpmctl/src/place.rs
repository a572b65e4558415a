//! Where `vpmctl exec` keeps an AID's cgroup and socket hooks.
//!
//! vpm's allocations are per network namespace, cgroups and BPF pins are
//! not: the same AID in two namespaces is two different applications.  So
//! everything lives under a *scope* directory named after the namespace:
//! `host` for the host's own namespace (the one PID 1 is in),
//! `net-<inode>` for any other.  For AID `blue`:
//!
//! - its group: `<parent>/<scope>/blue`, parent `$VPM_CGROUP_PARENT` or
//!   `<cgroup2 mount>/vpm`;
//! - its hooks: `<bpffs>/vpm/<scope>/blue/{vpm_ports,vpm_bind4,...}`,
//!   bpffs `$VPM_BPFFS` or `/sys/fs/bpf`.

use std::path::{Path, PathBuf};

use crate::aid::Aid;
use crate::error::{Error, Result};

/// `statfs` magic numbers (linux/magic.h).
const CGROUP2_SUPER_MAGIC: i64 = 0x6367_7270;
const BPF_FS_MAGIC: i64 = 0xcafe_4a11;

/// The directories of one network namespace's hooked AIDs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Place {
    /// Where cgroup v2 is mounted.
    pub cgroup2: PathBuf,
    /// The directory AIDs' groups are made in (without the scope).
    pub parent: PathBuf,
    /// Whether `parent` is vpm's default, which vpm made and may remove
    /// when it is empty (a parent the operator chose stays).
    pub default_parent: bool,
    /// The scope's cgroup directory: AIDs' groups are its children.
    pub groups: PathBuf,
    /// The scope's bpffs directory: AIDs' pin directories are its children.
    pub pins: PathBuf,
    /// The BPF filesystem's root: vpmctl's lock (never removed).
    pub bpffs: PathBuf,
}

impl Place {
    /// The place of the calling process's network namespace.  `parent`
    /// overrides `$VPM_CGROUP_PARENT`.  Fails, saying what to do, when
    /// cgroup v2 or the BPF filesystem is not mounted.
    pub fn current(parent: Option<&Path>) -> Result<Self> {
        let mounts = std::fs::read_to_string("/proc/self/mounts")
            .map_err(|e| Error::Host(format!("cannot read /proc/self/mounts: {e}")))?;
        let cgroup2 = cgroup2_mount(&mounts).ok_or_else(|| {
            Error::Host(
                "cgroup v2 is not mounted: vpmctl exec needs the unified hierarchy \
                 (mount -t cgroup2 none /sys/fs/cgroup)"
                    .into(),
            )
        })?;
        let default = cgroup2.join("vpm");
        let parent = match parent {
            Some(p) => p.to_path_buf(),
            None => std::env::var_os("VPM_CGROUP_PARENT")
                .map(PathBuf::from)
                .unwrap_or_else(|| default.clone()),
        };
        let dotted = parent.components().any(|c| {
            !matches!(
                c,
                std::path::Component::RootDir | std::path::Component::Normal(_)
            )
        });
        if !parent.starts_with(&cgroup2) || !parent.is_absolute() || dotted {
            return Err(Error::Input(format!(
                "the vpm cgroup parent {} is not below the cgroup v2 mount {}",
                parent.display(),
                cgroup2.display()
            )));
        }
        let bpffs = std::env::var_os("VPM_BPFFS")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/sys/fs/bpf"));
        if fs_magic(&bpffs) != Some(BPF_FS_MAGIC) {
            return Err(Error::Host(format!(
                "no BPF filesystem at {0}: the socket hooks are pinned there \
                 (mount -t bpf bpf {0})",
                bpffs.display()
            )));
        }
        let scope = scope_name(
            netns_inode("/proc/self/ns/net"),
            netns_inode("/proc/1/ns/net"),
        );
        let mut place = Self::new(cgroup2, &parent, &bpffs, &scope);
        place.default_parent = parent == default;
        Ok(place)
    }

    /// The place for the given directories and scope (see the module's
    /// documentation).
    pub fn new(cgroup2: PathBuf, parent: &Path, bpffs: &Path, scope: &str) -> Self {
        Place {
            cgroup2,
            parent: parent.to_path_buf(),
            default_parent: false,
            groups: parent.join(scope),
            pins: bpffs.join("vpm").join(scope),
            bpffs: bpffs.to_path_buf(),
        }
    }

    /// The place of this namespace if its hooks directory exists: `None`
    /// when no AID of it was ever hooked (or cgroup v2 or bpffs is
    /// missing, which rules hooks out), so commands that only follow
    /// hooks do nothing.
    pub fn existing() -> Option<Self> {
        Self::current(None)
            .ok()
            .filter(|p| p.pins.is_dir() || p.groups.is_dir())
    }

    /// The AIDs that have a group in this scope's directory.
    pub fn grouped_aids(&self) -> Vec<Aid> {
        aids_in(&self.groups)
    }

    /// AID `aid`'s cgroup directory.
    pub fn group(&self, aid: &Aid) -> PathBuf {
        self.groups.join(aid.as_str())
    }

    /// AID `aid`'s pin directory.
    pub fn pin_dir(&self, aid: &Aid) -> PathBuf {
        self.pins.join(aid.as_str())
    }

    /// `group` as the kernel names cgroups: relative to the cgroup2 root.
    pub fn kernel_path(&self, group: &Path) -> String {
        match group.strip_prefix(&self.cgroup2) {
            Ok(rel) if rel.as_os_str().is_empty() => "/".into(),
            Ok(rel) => format!("/{}", rel.display()),
            Err(_) => group.display().to_string(),
        }
    }

    /// The AIDs that have a pin directory here.
    pub fn hooked_aids(&self) -> Vec<Aid> {
        aids_in(&self.pins)
    }
}

/// The subdirectories of `dir` whose names are AIDs.
fn aids_in(dir: &Path) -> Vec<Aid> {
    let Ok(dir) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut aids: Vec<Aid> = dir
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().map(|t| t.is_dir()).unwrap_or(false))
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .collect();
    aids.sort();
    aids
}

/// Whether a cgroup has processes (its own or its descendants'), from its
/// `cgroup.events`.  A group that does not exist has none.
pub fn populated(group: &Path) -> bool {
    std::fs::read_to_string(group.join("cgroup.events"))
        .map(|t| events_populated(&t))
        .unwrap_or(false)
}

/// `populated 1` in the text of a `cgroup.events` file.
pub fn events_populated(text: &str) -> bool {
    text.lines().any(|l| l.trim() == "populated 1")
}

/// The scope directory's name: `host` for the host's namespace (PID 1's),
/// `net-<inode>` for any other.  An unreadable inode is "other".
pub fn scope_name(own: Option<u64>, init: Option<u64>) -> String {
    match (own, init) {
        (Some(a), Some(b)) if a == b => "host".into(),
        (Some(a), _) => format!("net-{a}"),
        (None, _) => "net-unknown".into(),
    }
}

/// The cgroup (relative to the cgroup2 root) of the calling process.
pub fn own_cgroup() -> Option<String> {
    let t = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    t.lines()
        .find_map(|l| l.strip_prefix("0::").map(str::to_string))
}

/// The inode of a directory (a cgroup's id), if it exists.
pub fn inode(path: &Path) -> Option<u64> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).ok().map(|m| m.ino())
}

/// Where the cgroup v2 hierarchy is mounted, from /proc/self/mounts (the
/// first cgroup2 mount; a hybrid host has it at /sys/fs/cgroup/unified).
pub fn cgroup2_mount(mounts: &str) -> Option<PathBuf> {
    mounts.lines().find_map(|l| {
        let mut f = l.split_whitespace();
        let (_, dir, kind) = (f.next()?, f.next()?, f.next()?);
        (kind == "cgroup2").then(|| PathBuf::from(unescape_mount(dir)))
    })
}

/// /proc/self/mounts writes space, tab, newline and backslash as `\ooo`.
fn unescape_mount(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let code = (b[i] == b'\\')
            .then(|| s.get(i + 1..i + 4))
            .flatten()
            .and_then(|o| u8::from_str_radix(o, 8).ok());
        match code {
            Some(v) => {
                out.push(v);
                i += 4;
            }
            None => {
                out.push(b[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The inode of a namespace file: the namespace's identity.
fn netns_inode(path: &str) -> Option<u64> {
    inode(Path::new(path))
}

/// The filesystem type of `path`, or `None` if it cannot be read.
fn fs_magic(path: &Path) -> Option<i64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    // SAFETY: an all-zero `statfs` is a valid value of this plain C struct.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a NUL-terminated path and `st` a writable statfs,
    // both alive for the duration of the call.
    let rc = unsafe { libc::statfs(c.as_ptr(), &mut st) };
    #[allow(clippy::unnecessary_cast)] // f_type's type differs by libc target
    (rc == 0).then_some(st.f_type as i64)
}

/// Whether `path` is on a cgroup v2 filesystem.
pub fn is_cgroup2(path: &Path) -> bool {
    fs_magic(path) == Some(CGROUP2_SUPER_MAGIC)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn aid(s: &str) -> Aid {
        s.parse().unwrap()
    }

    #[test]
    fn host_namespace_is_the_host_scope() {
        let p = Place::new(
            "/sys/fs/cgroup".into(),
            Path::new("/sys/fs/cgroup/vpm"),
            Path::new("/sys/fs/bpf"),
            &scope_name(Some(7), Some(7)),
        );
        assert_eq!(
            p.group(&aid("blue")),
            Path::new("/sys/fs/cgroup/vpm/host/blue")
        );
        assert_eq!(
            p.pin_dir(&aid("blue")),
            Path::new("/sys/fs/bpf/vpm/host/blue")
        );
        assert_eq!(p.kernel_path(&p.group(&aid("blue"))), "/vpm/host/blue");
        // An AID named like a scope stays one level down.
        assert_eq!(
            p.group(&aid("net-5")),
            Path::new("/sys/fs/cgroup/vpm/host/net-5")
        );
    }

    #[test]
    fn other_namespaces_are_scoped_by_inode() {
        assert_eq!(
            scope_name(Some(4026532290), Some(4026531840)),
            "net-4026532290"
        );
        assert_eq!(scope_name(None, Some(1)), "net-unknown");
        assert_eq!(scope_name(Some(5), None), "net-5");
        let p = Place::new(
            "/sys/fs/cgroup/unified".into(),
            Path::new("/sys/fs/cgroup/unified/apps/vpm"),
            Path::new("/sys/fs/bpf"),
            "net-9",
        );
        assert_eq!(
            p.group(&aid("g")),
            Path::new("/sys/fs/cgroup/unified/apps/vpm/net-9/g")
        );
        assert_eq!(p.kernel_path(&p.group(&aid("g"))), "/apps/vpm/net-9/g");
        assert_eq!(p.pin_dir(&aid("g")), Path::new("/sys/fs/bpf/vpm/net-9/g"));
    }

    #[test]
    fn finds_the_cgroup2_mount() {
        let hybrid = "tmpfs /sys/fs/cgroup tmpfs rw 0 0\n\
                      cgroup /sys/fs/cgroup/cpu cgroup rw,cpu 0 0\n\
                      cgroup2 /sys/fs/cgroup/unified cgroup2 rw 0 0\n";
        assert_eq!(cgroup2_mount(hybrid), Some("/sys/fs/cgroup/unified".into()));
        let unified = "sysfs /sys sysfs rw 0 0\ncgroup2 /sys/fs/cgroup cgroup2 rw 0 0\n";
        assert_eq!(cgroup2_mount(unified), Some("/sys/fs/cgroup".into()));
        assert_eq!(cgroup2_mount("proc /proc proc rw 0 0\n"), None);
        assert_eq!(
            cgroup2_mount("none /mnt/my\\040cg cgroup2 rw 0 0\n"),
            Some("/mnt/my cg".into())
        );
    }

    #[test]
    fn reads_populated() {
        assert!(events_populated("populated 1\nfrozen 0\n"));
        assert!(!events_populated("populated 0\nfrozen 0\n"));
        assert!(!events_populated(""));
        assert!(!populated(Path::new("/nonexistent/vpm/group")));
    }
}
