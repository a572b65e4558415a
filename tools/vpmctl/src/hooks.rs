//! The socket hooks of `vpmctl exec` (bpf/vpm_sock.bpf.c): cgroup-BPF
//! programs that turn an unmodified server's bind of its fixed port into a
//! bind of its AID's anonymous port, and show it the fixed port again;
//! and, for the cooperative mode's clients, connect/sendmsg to a peer's
//! fixed port into the negotiated port (their map is the namespace's, see
//! [`crate::coop::remote`]).
//!
//! Per hooked AID, in its pin directory (see [`crate::place`]): the map
//! `vpm_ports` and one bpf_link per program, pinned so that they outlive
//! vpmctl.  Removing the pins detaches the programs and frees the map.
//!
//! The map follows the kernel's allocations of the AID ([`sync`]): every
//! vpmctl command that changes allocations calls it, and so does the
//! keeper that `exec` leaves behind, for changes made by anyone else.

use std::collections::BTreeMap;
use std::fs::File;
use std::os::fd::{AsFd, AsRawFd};
use std::path::Path;

use libbpf_rs::{MapCore, MapFlags, MapHandle, ObjectBuilder};

use crate::aid::Aid;
use crate::connection::Connection;
use crate::error::{Error, Result};
use crate::mapping::{self, Mapping};
use crate::place::{self, Place};

/// The compiled programs (build.rs builds them with clang -target bpf).
static OBJECT: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/vpm_sock.bpf.o"));

/// The programs, by the names of their functions, which are also their
/// pins' names: exec's bind hooks, then the cooperative client's
/// (docs/COOPERATIVE.md).
pub const PROGRAMS: [&str; 12] = [
    "vpm_bind4",
    "vpm_bind6",
    "vpm_getsockname4",
    "vpm_getsockname6",
    "vpm_connect4",
    "vpm_connect6",
    "vpm_sendmsg4",
    "vpm_sendmsg6",
    "vpm_recvmsg4",
    "vpm_recvmsg6",
    "vpm_getpeername4",
    "vpm_getpeername6",
];

/// The cooperative client's map (one per namespace, pinned in the
/// scope's directory beside the AIDs' ones; see [`crate::coop::remote`]).
pub const REMOTE_MAP: &str = "vpm_remote";

/// The map that tells a copy of the programs its AID.
pub const AID_MAP: &str = "vpm_aid";

/// The map's name, which is also its pin's name.
pub const MAP: &str = "vpm_ports";

/// The map that records which cgroup the programs are attached to (so
/// that tidying up finds the group whatever parent exec was given).
pub const GROUP_MAP: &str = "vpm_group";

/// Size of `struct vpm_group_path` (a u64 id, then the path).
const GROUP_RECORD_SIZE: usize = 4096;

/// `struct vpm_hook_key` of the BPF program.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct HookKey {
    /// A fixed port ([`Dir::Bind`]) or an anonymous port ([`Dir::Name`]).
    pub port: u16,
    pub proto: u8,
    pub dir: Dir,
}

/// What a key looks up (`enum vpm_hook_dir`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Dir {
    /// bind(): fixed port -> anonymous port.
    Bind = 0,
    /// getsockname(): anonymous port -> fixed port.
    Name = 1,
}

/// `struct vpm_hook_val` of the BPF program.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HookVal {
    pub port: u16,
    /// [`REVOKED`] or 0.
    pub flags: u16,
}

/// `VPM_HOOK_REVOKED`: the allocation is gone and a bind fails with
/// EADDRNOTAVAIL.
pub const REVOKED: u16 = 1;

impl HookKey {
    pub const SIZE: usize = 4;

    /// The key's bytes as the BPF program lays them out (native order).
    pub fn to_bytes(self) -> [u8; Self::SIZE] {
        let p = self.port.to_ne_bytes();
        [p[0], p[1], self.proto, self.dir as u8]
    }

    pub fn from_bytes(b: &[u8]) -> Option<Self> {
        let b: [u8; Self::SIZE] = b.try_into().ok()?;
        let dir = match b[3] {
            0 => Dir::Bind,
            1 => Dir::Name,
            _ => return None,
        };
        Some(HookKey {
            port: u16::from_ne_bytes([b[0], b[1]]),
            proto: b[2],
            dir,
        })
    }
}

impl HookVal {
    pub const SIZE: usize = 4;

    pub fn to_bytes(self) -> [u8; Self::SIZE] {
        let p = self.port.to_ne_bytes();
        let f = self.flags.to_ne_bytes();
        [p[0], p[1], f[0], f[1]]
    }

    pub fn from_bytes(b: &[u8]) -> Option<Self> {
        let b: [u8; Self::SIZE] = b.try_into().ok()?;
        Some(HookVal {
            port: u16::from_ne_bytes([b[0], b[1]]),
            flags: u16::from_ne_bytes([b[2], b[3]]),
        })
    }
}

pub type Entries = BTreeMap<HookKey, HookVal>;

/// The entries that AID `aid`'s allocations call for.
pub fn desired(maps: &[Mapping], aid: &Aid) -> Entries {
    let mut out = Entries::new();
    for m in maps.iter().filter(|m| &m.aid == aid) {
        for &proto in m.proto.ip_protocols() {
            let bind = HookKey {
                port: m.port,
                proto,
                dir: Dir::Bind,
            };
            let name = HookKey {
                port: m.anon_port,
                proto,
                dir: Dir::Name,
            };
            out.insert(
                bind,
                HookVal {
                    port: m.anon_port,
                    flags: 0,
                },
            );
            out.insert(
                name,
                HookVal {
                    port: m.port,
                    flags: 0,
                },
            );
        }
    }
    out
}

/// One change to a map.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Set(HookKey, HookVal),
    Delete(HookKey),
}

/// What turns `current` into what `want` calls for.  A bind entry that
/// is no longer wanted is kept, revoked, so that a running instance's
/// next bind of that port fails instead of taking the fixed port itself;
/// a name entry that is no longer wanted is deleted (getsockname of a
/// socket still bound to the old anonymous port then shows that port).
pub fn plan(current: &Entries, want: &Entries) -> Vec<Change> {
    let mut out = Vec::new();
    for (k, v) in want {
        if current.get(k) != Some(v) {
            out.push(Change::Set(*k, *v));
        }
    }
    for (k, v) in current {
        if want.contains_key(k) {
            continue;
        }
        match k.dir {
            Dir::Bind if v.flags & REVOKED == 0 => out.push(Change::Set(
                *k,
                HookVal {
                    flags: v.flags | REVOKED,
                    ..*v
                },
            )),
            Dir::Bind => {}
            Dir::Name => out.push(Change::Delete(*k)),
        }
    }
    out
}

/// A failure of the BPF side, with what to do.
fn bpf_err(what: impl std::fmt::Display, e: impl std::fmt::Display) -> Error {
    Error::Host(format!("{what}: {e}"))
}

/// Reads a pinned map's entries.
fn read_entries(map: &MapHandle) -> Result<Entries> {
    let mut out = Entries::new();
    for k in map.keys() {
        let Some(key) = HookKey::from_bytes(&k) else {
            continue;
        };
        let v = map
            .lookup(&k, MapFlags::ANY)
            .map_err(|e| bpf_err("reading the hooks' map", e))?;
        if let Some(val) = v.as_deref().and_then(HookVal::from_bytes) {
            out.insert(key, val);
        }
    }
    Ok(out)
}

fn apply(map: &MapHandle, changes: &[Change]) -> Result<()> {
    for c in changes {
        match c {
            Change::Set(k, v) => map
                .update(&k.to_bytes(), &v.to_bytes(), MapFlags::ANY)
                .map_err(|e| bpf_err("updating the hooks' map", e))?,
            Change::Delete(k) => match map.delete(&k.to_bytes()) {
                Ok(()) => {}
                Err(e) if e.kind() == libbpf_rs::ErrorKind::NotFound => {}
                Err(e) => return Err(bpf_err("updating the hooks' map", e)),
            },
        }
    }
    Ok(())
}

/// Exec's own programs, which every version of vpmctl installed.
const BIND_PROGRAMS: usize = 4;

/// Whether AID `aid` has hooks here (at least exec's bind hooks, as an
/// earlier vpmctl installed them).
pub fn installed(place: &Place, aid: &Aid) -> bool {
    let dir = place.pin_dir(aid);
    [MAP, GROUP_MAP]
        .iter()
        .chain(PROGRAMS[..BIND_PROGRAMS].iter())
        .all(|p| dir.join(p).exists())
}

/// Whether AID `aid`'s hooks are this vpmctl's whole set (not an earlier
/// version's, without the cooperative client's programs).
pub fn complete(place: &Place, aid: &Aid) -> bool {
    let dir = place.pin_dir(aid);
    installed(place, aid) && PROGRAMS.iter().all(|p| dir.join(p).exists())
}

/// The cgroup AID `aid`'s hooks were attached to, as recorded when they
/// were installed: its path and id (inode).
pub fn recorded(place: &Place, aid: &Aid) -> Option<(std::path::PathBuf, u64)> {
    let v = MapHandle::from_pinned_path(place.pin_dir(aid).join(GROUP_MAP))
        .ok()?
        .lookup(&0u32.to_ne_bytes(), MapFlags::ANY)
        .ok()??;
    parse_record(&v)
}

fn parse_record(v: &[u8]) -> Option<(std::path::PathBuf, u64)> {
    let id = u64::from_ne_bytes(v.get(..8)?.try_into().ok()?);
    let path = &v[8..];
    let end = path.iter().position(|&b| b == 0)?;
    let path = String::from_utf8(path[..end].to_vec()).ok()?;
    path.starts_with('/').then(|| (path.into(), id))
}

/// The cgroup AID `aid`'s hooks are attached to; the place's group for
/// the AID if no record can be read.
pub fn group_of(place: &Place, aid: &Aid) -> std::path::PathBuf {
    recorded(place, aid)
        .map(|(p, _)| p)
        .unwrap_or_else(|| place.group(aid))
}

/// Whether AID `aid`'s hooks are attached to `group` as it is now (the
/// same path, and not a group removed and made again since).
pub fn attached_to(place: &Place, aid: &Aid, group: &Path) -> bool {
    match recorded(place, aid) {
        Some((p, id)) => p == group && place::inode(group) == Some(id),
        None => false,
    }
}

/// Size of `struct vpm_self` and of a remote key's AID.
pub const AID_SIZE: usize = 32;

/// An AID as `struct vpm_self`: its bytes, NUL-padded.
pub fn aid_record(aid: &Aid) -> [u8; AID_SIZE] {
    let mut v = [0u8; AID_SIZE];
    let b = aid.as_str().as_bytes();
    v[..b.len()].copy_from_slice(b);
    v
}

/// A group's path and id as `struct vpm_group_path`.
fn group_record(group: &Path, id: u64) -> Result<Vec<u8>> {
    use std::os::unix::ffi::OsStrExt;
    let p = group.as_os_str().as_bytes();
    if p.len() >= GROUP_RECORD_SIZE - 8 || p.contains(&0) {
        return Err(Error::Host(format!(
            "cgroup path {} is too long for the hooks' record",
            group.display()
        )));
    }
    let mut v = vec![0u8; GROUP_RECORD_SIZE];
    v[..8].copy_from_slice(&id.to_ne_bytes());
    v[8..8 + p.len()].copy_from_slice(p);
    Ok(v)
}

/// Loads the programs for AID `aid`, fills their map with `entries`,
/// attaches them to `group` and pins map and links in the AID's pin
/// directory.  On failure nothing stays pinned.
pub fn install(place: &Place, aid: &Aid, group: &Path, entries: &Entries) -> Result<()> {
    quiet_libbpf();
    let dir = place.pin_dir(aid);
    // A directory left half-done by a crash is redone from scratch.
    remove_pins(&dir)?;
    std::fs::create_dir_all(&dir)
        .map_err(|e| bpf_err(format!("cannot create {}", dir.display()), e))?;
    let r = install_pins(&dir, aid, group, entries);
    if r.is_err() {
        let _ = remove_pins(&dir);
    }
    r
}

fn install_pins(dir: &Path, aid: &Aid, group: &Path, entries: &Entries) -> Result<()> {
    let cg = File::open(group)
        .map_err(|e| bpf_err(format!("cannot open cgroup {}", group.display()), e))?;
    let mut open = ObjectBuilder::default()
        .open_memory(OBJECT)
        .map_err(|e| bpf_err("cannot read vpmctl's own BPF object", e))?;
    // The namespace's cooperative map: the pinned one if the agent (or
    // another exec) made it, else this load's, pinned below.  Both are
    // checked against the layout the agent writes before anything uses
    // them.  (The caller holds the lock the agent makes the map under.)
    let remote = dir
        .parent()
        .ok_or_else(|| Error::Host(format!("{} has no parent", dir.display())))?
        .join(crate::coop::remote::PIN);
    let pinned = MapHandle::from_pinned_path(&remote).ok();
    if let Some(m) = &pinned {
        crate::coop::remote::check_layout(m.key_size(), m.value_size(), &remote)?;
        open.maps_mut()
            .find(|m| m.name() == REMOTE_MAP)
            .ok_or_else(|| Error::Host(format!("vpmctl's BPF object has no map {REMOTE_MAP}")))?
            .reuse_fd(m.as_fd())
            .map_err(|e| bpf_err(format!("cannot use {}", remote.display()), e))?;
    }
    let mut obj = open.load().map_err(|e| {
        bpf_err(
            "the kernel refused the socket hooks' BPF programs (it needs \
             CONFIG_BPF_SYSCALL and CONFIG_CGROUP_BPF, and vpmctl needs \
             CAP_BPF or root)",
            e,
        )
    })?;
    if pinned.is_none() {
        let mut rmap = obj
            .maps_mut()
            .find(|m| m.name() == REMOTE_MAP)
            .ok_or_else(|| Error::Host(format!("vpmctl's BPF object has no map {REMOTE_MAP}")))?;
        crate::coop::remote::check_layout(rmap.key_size(), rmap.value_size(), &remote)?;
        rmap.pin(&remote)
            .map_err(|e| bpf_err(format!("cannot pin {}", remote.display()), e))?;
    }
    let mut map = obj
        .maps_mut()
        .find(|m| m.name() == MAP)
        .ok_or_else(|| Error::Host(format!("vpmctl's BPF object has no map {MAP}")))?;
    for (k, v) in entries {
        map.update(&k.to_bytes(), &v.to_bytes(), MapFlags::ANY)
            .map_err(|e| bpf_err("filling the hooks' map", e))?;
    }
    map.pin(dir.join(MAP))
        .map_err(|e| bpf_err(format!("cannot pin {}", dir.join(MAP).display()), e))?;
    let mut rec = obj
        .maps_mut()
        .find(|m| m.name() == GROUP_MAP)
        .ok_or_else(|| Error::Host(format!("vpmctl's BPF object has no map {GROUP_MAP}")))?;
    let id = place::inode(group)
        .ok_or_else(|| Error::Host(format!("cgroup {} is gone", group.display())))?;
    rec.update(
        &0u32.to_ne_bytes(),
        &group_record(group, id)?,
        MapFlags::ANY,
    )
    .map_err(|e| bpf_err("recording the hooks' cgroup", e))?;
    rec.pin(dir.join(GROUP_MAP))
        .map_err(|e| bpf_err(format!("cannot pin {}", dir.join(GROUP_MAP).display()), e))?;
    let me = obj
        .maps_mut()
        .find(|m| m.name() == AID_MAP)
        .ok_or_else(|| Error::Host(format!("vpmctl's BPF object has no map {AID_MAP}")))?;
    me.update(&0u32.to_ne_bytes(), &aid_record(aid), MapFlags::ANY)
        .map_err(|e| bpf_err("recording the hooks' AID", e))?;
    for name in PROGRAMS {
        let prog = obj
            .progs_mut()
            .find(|p| p.name() == name)
            .ok_or_else(|| Error::Host(format!("vpmctl's BPF object has no program {name}")))?;
        let mut link = prog.attach_cgroup(cg.as_raw_fd()).map_err(|e| {
            bpf_err(
                format!(
                    "cannot attach {name} to {} (the kernel needs CONFIG_CGROUP_BPF; \
                     'Operation not permitted' can also mean a program attached \
                     to a parent group forbids others: see bpftool cgroup tree)",
                    group.display()
                ),
                e,
            )
        })?;
        link.pin(dir.join(name))
            .map_err(|e| bpf_err(format!("cannot pin {}", dir.join(name).display()), e))?;
    }
    Ok(())
}

/// Removes AID's pins (detaching its programs) and its pin directory.
fn remove_pins(dir: &Path) -> Result<()> {
    for name in PROGRAMS.iter().chain([MAP, GROUP_MAP].iter()) {
        match std::fs::remove_file(dir.join(name)) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(bpf_err(
                    format!("cannot remove {}", dir.join(name).display()),
                    e,
                ))
            }
        }
    }
    match std::fs::remove_dir(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(bpf_err(format!("cannot remove {}", dir.display()), e)),
    }
}

/// Takes AID `aid`'s hooks off their group (removes the pins), leaving
/// groups and directories as they are.
pub fn detach(place: &Place, aid: &Aid) -> Result<()> {
    remove_pins(&place.pin_dir(aid))
}

/// Removes AID `aid`'s hooks, and its group and the directories above it
/// that vpm made, when they are empty.  A group that still has processes
/// stays.
pub fn remove(place: &Place, aid: &Aid) -> Result<()> {
    let group = group_of(place, aid);
    remove_pins(&place.pin_dir(aid))?;
    // rmdir fails on a directory that is not empty (or, for a group, has
    // processes), which is what keeps what is still used.
    let _ = std::fs::remove_dir(&group);
    if let Some(scope) = group
        .parent()
        .filter(|d| d.file_name() == place.groups.file_name())
    {
        let _ = std::fs::remove_dir(scope);
    }
    if place.default_parent {
        let _ = std::fs::remove_dir(&place.parent);
    }
    crate::coop::remote::remove_if_unused(place);
    let _ = std::fs::remove_dir(&place.pins);
    let _ = std::fs::remove_dir(place.bpffs.join("vpm"));
    Ok(())
}

/// Serialises vpmctl processes that change hooks, groups or, around an
/// exec, allocations (exec, sync, the keepers): a lock on the BPF
/// filesystem's root, which is never removed; released when dropped.
pub struct Lock {
    _dir: File,
}

impl Lock {
    pub fn take(place: &Place) -> Result<Self> {
        let dir = &place.bpffs;
        let f =
            File::open(dir).map_err(|e| bpf_err(format!("cannot open {}", dir.display()), e))?;
        loop {
            // SAFETY: `f` is an open file for the duration of the call.
            if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) } == 0 {
                return Ok(Lock { _dir: f });
            }
            let e = std::io::Error::last_os_error();
            if e.kind() != std::io::ErrorKind::Interrupted {
                return Err(bpf_err(format!("cannot lock {}", dir.display()), e));
            }
        }
    }
}

/// Brings AID `aid`'s hooks in line with `maps` (the namespace's
/// allocations): the map gets what they call for, and an AID without
/// allocations whose group has no process left loses its hooks and
/// group.  Expects the [`Lock`] held.
pub fn sync_aid(place: &Place, aid: &Aid, maps: &[Mapping]) -> Result<()> {
    let group = group_of(place, aid);
    if !installed(place, aid) {
        // Half a pin directory: a crash mid-install; nothing to follow.
        if place.pin_dir(aid).exists() && !place::populated(&group) {
            remove(place, aid)?;
        }
        return Ok(());
    }
    let want = desired(maps, aid);
    if want.is_empty() && !place::populated(&group) {
        return remove(place, aid);
    }
    let map = MapHandle::from_pinned_path(place.pin_dir(aid).join(MAP))
        .map_err(|e| bpf_err("cannot open the hooks' map", e))?;
    let current = read_entries(&map)?;
    apply(&map, &plan(&current, &want))
}

/// [`sync_aid`] for every hooked AID of this namespace; does nothing (and
/// asks the kernel nothing) when there are none.
pub fn sync(conn: &Connection) -> Result<()> {
    let Some(place) = Place::existing() else {
        return Ok(());
    };
    let _lock = Lock::take(&place)?;
    let maps = mapping::list(conn)?;
    for aid in place.hooked_aids() {
        sync_aid(&place, &aid, &maps).map_err(|e| {
            Error::Host(format!(
                "the allocations changed, but the socket hooks of AID {aid} could not follow: {e}"
            ))
        })?;
    }
    sweep_groups(&place, &maps);
    Ok(())
}

/// Removes the groups in this scope's directory of AIDs that have no
/// hooks, no allocation and no process (a group `restore` made again for
/// an allocation deleted since, say); then the scope's directory if it
/// is empty.  Expects the [`Lock`] held.
fn sweep_groups(place: &Place, maps: &[Mapping]) {
    for aid in place.grouped_aids() {
        let group = place.group(&aid);
        if !place.pin_dir(&aid).exists()
            && !maps.iter().any(|m| m.aid == aid)
            && !place::populated(&group)
        {
            let _ = std::fs::remove_dir(&group);
        }
    }
    let _ = std::fs::remove_dir(&place.groups);
    if place.default_parent {
        let _ = std::fs::remove_dir(&place.parent);
    }
}

/// libbpf prints its progress on stderr; vpmctl reports its errors itself.
fn quiet_libbpf() {
    libbpf_rs::set_print(Some((libbpf_rs::PrintLevel::Warn, |_, msg: String| {
        eprint!("vpmctl: libbpf: {msg}")
    })));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::Proto;

    fn mapping(aid: &str, port: u16, proto: Proto, anon: u16) -> Mapping {
        Mapping {
            aid: aid.parse().unwrap(),
            port,
            proto,
            anon_port: anon,
            cgroup: None,
            cgroup_id: None,
            pkts_in: 0,
            bytes_in: 0,
            pkts_out: 0,
            bytes_out: 0,
            peers: Vec::new(),
        }
    }

    fn key(port: u16, proto: u8, dir: Dir) -> HookKey {
        HookKey { port, proto, dir }
    }

    #[test]
    fn layout_matches_the_bpf_program() {
        // struct vpm_hook_key { __u16 port; __u8 proto; __u8 dir; }
        let k = key(9000, 17, Dir::Name);
        let b = k.to_bytes();
        assert_eq!(&b[..2], &9000u16.to_ne_bytes());
        assert_eq!(b[2..], [17, 1]);
        assert_eq!(HookKey::from_bytes(&b), Some(k));
        assert_eq!(HookKey::from_bytes(&[0, 0, 6, 2]), None);
        // struct vpm_hook_val { __u16 port; __u16 flags; }
        let v = HookVal {
            port: 20001,
            flags: REVOKED,
        };
        assert_eq!(HookVal::from_bytes(&v.to_bytes()), Some(v));
        assert_eq!(HookVal::from_bytes(&[1, 2, 3]), None);
    }

    #[test]
    fn the_object_has_the_programs_and_the_map() {
        let text = String::from_utf8_lossy(OBJECT);
        for name in PROGRAMS.iter().chain([MAP, GROUP_MAP].iter()) {
            assert!(text.contains(name), "{name} missing from the BPF object");
        }
        for map in [REMOTE_MAP, AID_MAP] {
            assert!(text.contains(map), "{map} missing from the BPF object");
        }
        for sec in [
            "cgroup/bind4",
            "cgroup/bind6",
            "cgroup/getsockname4",
            "cgroup/getsockname6",
            "cgroup/connect4",
            "cgroup/connect6",
            "cgroup/sendmsg4",
            "cgroup/sendmsg6",
            "cgroup/recvmsg4",
            "cgroup/recvmsg6",
            "cgroup/getpeername4",
            "cgroup/getpeername6",
        ] {
            assert!(text.contains(sec), "section {sec} missing");
        }
    }

    #[test]
    fn the_group_record_is_a_nul_terminated_path() {
        let r = group_record(Path::new("/sys/fs/cgroup/vpm/blue"), 77).unwrap();
        assert_eq!(r.len(), GROUP_RECORD_SIZE);
        assert_eq!(
            parse_record(&r),
            Some(("/sys/fs/cgroup/vpm/blue".into(), 77))
        );
        let long = format!("/{}", "x".repeat(GROUP_RECORD_SIZE));
        assert!(group_record(Path::new(&long), 1).is_err());
        assert_eq!(parse_record(&[0; 8]), None);
    }

    #[test]
    fn desired_entries_per_protocol_and_direction() {
        let maps = [
            mapping("blue", 9000, Proto::Both, 20000),
            mapping("green", 9000, Proto::Both, 20001),
            mapping("blue", 53, Proto::Udp, 20002),
        ];
        let d = desired(&maps, &"blue".parse().unwrap());
        let want: Entries = [
            (
                key(9000, 6, Dir::Bind),
                HookVal {
                    port: 20000,
                    flags: 0,
                },
            ),
            (
                key(9000, 17, Dir::Bind),
                HookVal {
                    port: 20000,
                    flags: 0,
                },
            ),
            (
                key(20000, 6, Dir::Name),
                HookVal {
                    port: 9000,
                    flags: 0,
                },
            ),
            (
                key(20000, 17, Dir::Name),
                HookVal {
                    port: 9000,
                    flags: 0,
                },
            ),
            (
                key(53, 17, Dir::Bind),
                HookVal {
                    port: 20002,
                    flags: 0,
                },
            ),
            (key(20002, 17, Dir::Name), HookVal { port: 53, flags: 0 }),
        ]
        .into_iter()
        .collect();
        assert_eq!(d, want);
        assert!(desired(&maps, &"red".parse().unwrap()).is_empty());
    }

    /// Applies `plan` to a model map.
    fn run(current: &Entries, want: &Entries) -> Entries {
        let mut m = current.clone();
        for c in plan(current, want) {
            match c {
                Change::Set(k, v) => {
                    m.insert(k, v);
                }
                Change::Delete(k) => {
                    m.remove(&k);
                }
            }
        }
        m
    }

    #[test]
    fn a_deleted_allocation_revokes_the_bind_and_forgets_the_name() {
        let before = desired(
            &[mapping("a", 9000, Proto::Tcp, 20000)],
            &"a".parse().unwrap(),
        );
        let after = run(&before, &Entries::new());
        assert_eq!(
            after,
            [(
                key(9000, 6, Dir::Bind),
                HookVal {
                    port: 20000,
                    flags: REVOKED
                }
            )]
            .into_iter()
            .collect()
        );
        // Once revoked, nothing more to do.
        assert!(plan(&after, &Entries::new()).is_empty());
    }

    #[test]
    fn a_restored_allocation_clears_the_revocation() {
        let a: Aid = "a".parse().unwrap();
        let live = desired(&[mapping("a", 9000, Proto::Tcp, 20000)], &a);
        let revoked = run(&live, &Entries::new());
        // Restored on another anonymous port.
        let again = desired(&[mapping("a", 9000, Proto::Tcp, 20005)], &a);
        assert_eq!(run(&revoked, &again), again);
    }

    #[test]
    fn plan_reaches_the_wanted_state_from_any_state() {
        let a: Aid = "a".parse().unwrap();
        let states = [
            vec![],
            vec![mapping("a", 9000, Proto::Both, 20000)],
            vec![
                mapping("a", 9000, Proto::Udp, 20001),
                mapping("a", 80, Proto::Tcp, 20002),
            ],
            vec![mapping("a", 80, Proto::Both, 20000)],
        ];
        for from in &states {
            for to in &states {
                let cur = desired(from, &a);
                let want = desired(to, &a);
                let got = run(&cur, &want);
                // Everything wanted is there, exactly.
                for (k, v) in &want {
                    assert_eq!(got.get(k), Some(v), "{from:?} -> {to:?}");
                }
                // Everything else is a revoked bind.
                for (k, v) in &got {
                    if !want.contains_key(k) {
                        assert_eq!((k.dir, v.flags & REVOKED), (Dir::Bind, REVOKED));
                    }
                }
                // And a second plan has nothing left to do.
                assert!(plan(&got, &want).is_empty());
            }
        }
    }
}
