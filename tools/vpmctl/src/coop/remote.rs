//! The cooperative client's data path (docs/COOPERATIVE.md, "The data
//! path"): the namespace's `vpm_remote` map, which the socket hooks of
//! every AID's group read (bpf/vpm_sock.bpf.c) and the agent writes.
//!
//! For a mapping granted by a peer, two entries per protocol: connect and
//! sendmsg to (peer address, fixed port) go to the negotiated port, and
//! getpeername and recvmsg of (peer address, negotiated port) show the
//! fixed port.  A mapping not granted (still asked, or refused) has one
//! entry per protocol that makes connect and sendmsg fail with
//! ECONNREFUSED: the AID's packets never reach the peer's fixed port,
//! where another instance would take them.  A mapping that is no longer
//! configured has none: its AID's sockets reach the fixed port as any
//! other's do.
//!
//! The map is pinned in the namespace's scope directory, beside the AIDs'
//! pin directories (as [`PIN`], a name no AID can have), and outlives
//! the agent, so that a restarted agent breaks nothing.  Whoever needs it
//! first (the agent, or an exec installing hooks) makes it, under the
//! hooks' lock.  Every entry carries two deadlines on CLOCK_BOOTTIME: a
//! grant redirects until its end, and every entry refuses after that
//! until a lease the agent renews while it runs ([`LEASE_NS`] past the
//! grant's end, or past now for a pending entry), and counts as absent
//! then.  So a grant not renewed in time is refused, not sent to the
//! fixed port; an agent that stopped for good leaves nothing that
//! redirects or refuses for long; and the map goes when it holds nothing
//! live and no AID has hooks ([`remove_if_unused`]).

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use libbpf_rs::{MapCore, MapFlags, MapHandle, MapType};

use super::client::{Entry, Status};
use crate::aid::Aid;
use crate::error::{Error, Result};
use crate::hooks::{self, AID_SIZE};
use crate::place::Place;

/// `struct vpm_remote_key` of the BPF programs: what a key looks up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Dir {
    /// connect/sendmsg: the fixed port; the value is the negotiated port.
    Connect = 0,
    /// getpeername/recvmsg: the negotiated port; the value is the fixed one.
    Peer = 1,
}

/// `VPM_REMOTE_PENDING`: no grant, connect and sendmsg are refused.
pub const PENDING: u16 = 1;

/// The map's pin in the scope directory: `@` is not an AID character,
/// and the version changes with the key or value layout (a pinned map of
/// another layout could not be reused).
pub const PIN: &str = "@remote-v1";

/// Size of `struct vpm_remote_key`.
pub const KEY_SIZE: usize = 56;
/// Size of `struct vpm_remote_val`.
pub const VAL_SIZE: usize = 24;

/// `BPF_F_NO_PREALLOC`, as the BPF object declares the map (libbpf
/// reuses a pinned map only with the same flags).
pub const MAP_FLAGS: u32 = 1;

/// How long an entry refuses, past a grant's end or past now, without
/// the agent renewing it.
pub const LEASE_NS: u64 = 90_000_000_000;
/// Pending leases move on in steps of this, so that the map is not
/// rewritten at every sync.
const LEASE_STEP_NS: u64 = 30_000_000_000;
/// `max_entries` of the BPF object's map, which a map made here must
/// equal (libbpf reuses a pinned map only if it does).
pub const MAX_ENTRIES: u32 = 4096;

/// One key of the map.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct RemoteKey {
    pub peer: IpAddr,
    pub port: u16,
    pub proto: u8,
    pub dir: Dir,
    pub aid: Aid,
}

impl RemoteKey {
    /// The key as the BPF programs lay it out.
    pub fn to_bytes(&self) -> [u8; KEY_SIZE] {
        let mut b = [0u8; KEY_SIZE];
        let family = match self.peer {
            IpAddr::V4(a) => {
                b[..4].copy_from_slice(&a.octets());
                4
            }
            IpAddr::V6(a) => match a.to_ipv4_mapped() {
                // As the programs see a dual-stack socket's peer.
                Some(v4) => {
                    b[..4].copy_from_slice(&v4.octets());
                    4
                }
                None => {
                    b[..16].copy_from_slice(&a.octets());
                    6
                }
            },
        };
        b[16..18].copy_from_slice(&self.port.to_ne_bytes());
        b[18] = self.proto;
        b[19] = family;
        b[20] = self.dir as u8;
        b[24..24 + AID_SIZE].copy_from_slice(&hooks::aid_record(&self.aid));
        b
    }
}

/// One value of the map.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RemoteVal {
    pub port: u16,
    /// [`PENDING`] or 0.
    pub flags: u16,
    /// CLOCK_BOOTTIME ns: redirects before (a grant), refuses from then
    /// until `refuse_until`, counts as absent after.
    pub redirect_until: u64,
    pub refuse_until: u64,
}

impl RemoteVal {
    pub fn to_bytes(self) -> [u8; VAL_SIZE] {
        let mut b = [0u8; VAL_SIZE];
        b[..2].copy_from_slice(&self.port.to_ne_bytes());
        b[2..4].copy_from_slice(&self.flags.to_ne_bytes());
        b[8..16].copy_from_slice(&self.redirect_until.to_ne_bytes());
        b[16..].copy_from_slice(&self.refuse_until.to_ne_bytes());
        b
    }

    pub fn from_bytes(b: &[u8]) -> Option<Self> {
        let b: &[u8; VAL_SIZE] = b.try_into().ok()?;
        Some(Self {
            port: u16::from_ne_bytes([b[0], b[1]]),
            flags: u16::from_ne_bytes([b[2], b[3]]),
            redirect_until: u64::from_ne_bytes(b[8..16].try_into().ok()?),
            refuse_until: u64::from_ne_bytes(b[16..].try_into().ok()?),
        })
    }
}

/// CLOCK_BOOTTIME now, in ns: the programs' clock.
pub fn boot_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec for the call to write.
    unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) };
    (ts.tv_sec as u64) * 1_000_000_000 + ts.tv_nsec as u64
}

/// Converts the agent's wall-clock times (ms) to the programs' clock.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    /// CLOCK_BOOTTIME ns minus wall-clock ns.
    offset: i128,
    /// Boot time now, ns.
    pub boot_now: u64,
}

/// How far the two clocks may drift apart before [`Clock::follow`]
/// takes a new offset: a step of the wall clock, which the agent's
/// schedules follow too (docs/COOPERATIVE.md, known limits).
const STEP_NS: i128 = 2_000_000_000;

impl Clock {
    pub fn new(wall_ms: u64, boot_now: u64) -> Self {
        Self {
            offset: i128::from(boot_now) - i128::from(wall_ms) * 1_000_000,
            boot_now,
        }
    }

    /// The clock at (`wall_ms`, `boot_now`), keeping `prev`'s offset
    /// unless the clocks moved apart by a step: the same grant then
    /// converts to the same value at every sync.
    pub fn follow(prev: Option<Clock>, wall_ms: u64, boot_now: u64) -> Self {
        let now = Self::new(wall_ms, boot_now);
        match prev {
            Some(p) if (p.offset - now.offset).abs() < STEP_NS => Self {
                offset: p.offset,
                boot_now,
            },
            _ => now,
        }
    }

    /// Wall-clock `ms` on CLOCK_BOOTTIME, to the second (so that the same
    /// grant converts to the same value at every sync).
    pub fn boot_of(&self, ms: u64) -> u64 {
        let ns = i128::from(ms) * 1_000_000 + self.offset;
        (ns.max(0) as u64) / 1_000_000_000 * 1_000_000_000
    }

    /// A pending entry's lease: [`LEASE_NS`] on from now, in steps.
    pub fn pending_until(&self) -> u64 {
        self.boot_now / LEASE_STEP_NS * LEASE_STEP_NS + LEASE_NS
    }
}

/// The map's contents, by the keys' bytes.
pub type Entries = BTreeMap<Vec<u8>, [u8; VAL_SIZE]>;

/// What the client's entries call for at `clock`; `addresses` gives a
/// peer's addresses by name (none: a peer no longer configured, no
/// entries).
pub fn desired(
    entries: &[Entry],
    addresses: impl Fn(&str) -> Vec<IpAddr>,
    clock: &Clock,
) -> Entries {
    let mut out = Entries::new();
    for e in entries.iter().filter(|e| !e.is_deleting()) {
        let w = &e.want;
        for (peer, &proto) in addresses(&w.peer)
            .into_iter()
            .flat_map(|a| w.proto.ip_protocols().iter().map(move |p| (a, p)))
        {
            let key = |port, dir| RemoteKey {
                peer,
                port,
                proto,
                dir,
                aid: w.aid.clone(),
            };
            match e.status {
                Status::Granted {
                    negotiated,
                    expires_ms,
                } => {
                    let until = clock.boot_of(expires_ms);
                    let refuse_until = until.saturating_add(LEASE_NS).max(clock.pending_until());
                    let towards = RemoteVal {
                        port: negotiated,
                        flags: 0,
                        redirect_until: until,
                        refuse_until,
                    };
                    let back = RemoteVal {
                        port: w.port,
                        flags: 0,
                        redirect_until: until,
                        refuse_until,
                    };
                    out.insert(
                        key(w.port, Dir::Connect).to_bytes().to_vec(),
                        towards.to_bytes(),
                    );
                    out.insert(
                        key(negotiated, Dir::Peer).to_bytes().to_vec(),
                        back.to_bytes(),
                    );
                }
                Status::Pending | Status::Refused { .. } => {
                    let refuse = RemoteVal {
                        port: 0,
                        flags: PENDING,
                        redirect_until: 0,
                        refuse_until: clock.pending_until(),
                    };
                    out.insert(
                        key(w.port, Dir::Connect).to_bytes().to_vec(),
                        refuse.to_bytes(),
                    );
                }
            }
        }
    }
    out
}

/// One change to the map.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Set(Vec<u8>, [u8; VAL_SIZE]),
    Delete(Vec<u8>),
}

/// What turns `current` into `want` (the agent is the map's only
/// writer): deletes first, so that a full map has room for the sets.
pub fn plan(current: &Entries, want: &Entries) -> Vec<Change> {
    let mut out: Vec<Change> = current
        .keys()
        .filter(|k| !want.contains_key(*k))
        .map(|k| Change::Delete(k.clone()))
        .collect();
    out.extend(
        want.iter()
            .filter(|(k, v)| current.get(*k) != Some(v))
            .map(|(k, v)| Change::Set(k.clone(), *v)),
    );
    out
}

/// Where the namespace's map is pinned.
pub fn pin_path(place: &Place) -> PathBuf {
    place.pins.join(PIN)
}

/// Refuses a map whose key and value sizes are not the ones written
/// here: a pin an older vpmctl left, or a build whose BPF object and this
/// file disagree.
pub fn check_layout(key: u32, value: u32, path: &Path) -> Result<()> {
    let have = (key as usize, value as usize);
    if have != (KEY_SIZE, VAL_SIZE) {
        return Err(Error::Host(format!(
            "the cooperative map {} has {have:?}-byte keys and values, this vpmctl writes \
             {:?}: stop the agents of this namespace and remove it",
            path.display(),
            (KEY_SIZE, VAL_SIZE)
        )));
    }
    Ok(())
}

/// The namespace's map, if it is pinned.
pub fn open(place: &Place) -> Option<MapHandle> {
    MapHandle::from_pinned_path(pin_path(place)).ok()
}

/// The namespace's map: the pinned one, else made and pinned now.
/// Expects the hooks' lock held (exec makes it under the same lock).
pub fn open_or_create_locked(place: &Place) -> Result<MapHandle> {
    let path = pin_path(place);
    match MapHandle::from_pinned_path(&path) {
        Ok(m) => {
            check_layout(m.key_size(), m.value_size(), &path)?;
            Ok(m)
        }
        Err(_) => create(&path),
    }
}

/// Whether `entries` has one that the programs still use at `boot_now`.
pub fn any_live(entries: &Entries, boot_now: u64) -> bool {
    entries
        .values()
        .filter_map(|v| RemoteVal::from_bytes(v))
        .any(|v| v.refuse_until > boot_now)
}

/// Removes the namespace's map once no AID has hooks here and it holds
/// nothing live (an agent that runs keeps its entries live).  Expects
/// the hooks' lock held.
pub fn remove_if_unused(place: &Place) {
    if !place.hooked_aids().is_empty() {
        return;
    }
    let Some(map) = open(place) else {
        return;
    };
    match read(&map) {
        Ok(entries) if !any_live(&entries, boot_ns()) => {
            let _ = std::fs::remove_file(pin_path(place));
        }
        _ => {}
    }
}

fn create(path: &Path) -> Result<MapHandle> {
    let err = |what: &str, e: &dyn std::fmt::Display| {
        Error::Host(format!("{what} {}: {e}", path.display()))
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| err("cannot create the directory of", &e))?;
    }
    let opts = libbpf_rs::libbpf_sys::bpf_map_create_opts {
        sz: std::mem::size_of::<libbpf_rs::libbpf_sys::bpf_map_create_opts>()
            as libbpf_rs::libbpf_sys::size_t,
        map_flags: MAP_FLAGS,
        ..Default::default()
    };
    let mut m = MapHandle::create(
        MapType::Hash,
        Some(hooks::REMOTE_MAP),
        KEY_SIZE as u32,
        VAL_SIZE as u32,
        MAX_ENTRIES,
        &opts,
    )
    .map_err(|e| {
        err(
            "cannot make the cooperative map (the kernel needs CONFIG_BPF_SYSCALL, the agent CAP_BPF or root)",
            &e,
        )
    })?;
    m.pin(path).map_err(|e| err("cannot pin", &e))?;
    Ok(m)
}

/// The map's contents.
pub fn read(map: &MapHandle) -> Result<Entries> {
    let mut out = Entries::new();
    for k in map.keys() {
        let v = map
            .lookup(&k, MapFlags::ANY)
            .map_err(|e| Error::Host(format!("reading the cooperative map: {e}")))?;
        if let Some(v) = v.and_then(|v| <[u8; VAL_SIZE]>::try_from(v.as_slice()).ok()) {
            out.insert(k, v);
        }
    }
    Ok(out)
}

/// Applies `changes`; how many.
pub fn apply(map: &MapHandle, changes: &[Change]) -> Result<usize> {
    for c in changes {
        match c {
            Change::Set(k, v) => map
                .update(k, v, MapFlags::ANY)
                .map_err(|e| Error::Host(format!("updating the cooperative map: {e}")))?,
            Change::Delete(k) => match map.delete(k) {
                Ok(()) => {}
                Err(e) if e.kind() == libbpf_rs::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::Host(format!("updating the cooperative map: {e}"))),
            },
        }
    }
    Ok(changes.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::coop::client::{Client, Want};
    use crate::proto::Proto;

    fn want(aid: &str, proto: Proto) -> Want {
        Want {
            peer: "s".into(),
            aid: aid.parse().unwrap(),
            port: 9000,
            proto,
            lifetime: 100,
        }
    }

    fn at(_: &str) -> Vec<IpAddr> {
        vec!["192.0.2.10".parse().unwrap()]
    }

    /// Wall clock 1,000,000 ms is boot time 50 s.
    fn clock() -> Clock {
        Clock::new(1_000_000, 50_000_000_000)
    }

    fn val(b: &[u8; VAL_SIZE]) -> RemoteVal {
        RemoteVal::from_bytes(b).unwrap()
    }

    #[test]
    fn the_layouts_match_the_bpf_program() {
        let k = RemoteKey {
            peer: "192.0.2.10".parse().unwrap(),
            port: 9000,
            proto: 6,
            dir: Dir::Peer,
            aid: "blue".parse().unwrap(),
        };
        let b = k.to_bytes();
        assert_eq!(&b[..4], &[192, 0, 2, 10]);
        assert_eq!(&b[4..16], &[0; 12]);
        assert_eq!(&b[16..18], &9000u16.to_ne_bytes());
        assert_eq!(b[18..24], [6, 4, 1, 0, 0, 0]);
        assert_eq!(&b[24..28], b"blue");
        assert_eq!(&b[28..], &[0; 28]);
        // An IPv4-mapped peer is the IPv4 one, as the programs see it.
        let mapped = RemoteKey {
            peer: "::ffff:192.0.2.10".parse().unwrap(),
            ..k.clone()
        };
        assert_eq!(mapped.to_bytes(), b);
        let v6 = RemoteKey {
            peer: "fd00::10".parse().unwrap(),
            ..k
        };
        let b6 = v6.to_bytes();
        assert_eq!(b6[0], 0xfd);
        assert_eq!(b6[19], 6);
        // struct vpm_remote_val { __u16 port; __u16 flags; __u32 pad;
        //     __u64 redirect_until; __u64 refuse_until; }
        let v = RemoteVal {
            port: 7,
            flags: PENDING,
            redirect_until: 0x0102_0304_0506_0708,
            refuse_until: 0x1112_1314_1516_1718,
        };
        let vb = v.to_bytes();
        assert_eq!(&vb[..2], &7u16.to_ne_bytes());
        assert_eq!(&vb[2..4], &1u16.to_ne_bytes());
        assert_eq!(&vb[4..8], &[0; 4]);
        assert_eq!(&vb[8..16], &0x0102_0304_0506_0708u64.to_ne_bytes());
        assert_eq!(&vb[16..], &0x1112_1314_1516_1718u64.to_ne_bytes());
        assert_eq!(RemoteVal::from_bytes(&vb), Some(v));
        assert_eq!(RemoteVal::from_bytes(&vb[..4]), None);
    }

    #[test]
    fn grants_expire_with_the_grant_and_pending_entries_with_a_lease() {
        let c = clock();
        // 10 s after now on the wall clock is 10 s after now at boot.
        assert_eq!(c.boot_of(1_010_000), 60_000_000_000);
        // Rounded to the second, so a grant converts the same every time.
        assert_eq!(c.boot_of(1_010_400), 60_000_000_000);
        assert_eq!(
            Clock::new(1_000_100, 50_000_000_000).boot_of(1_010_000),
            59_000_000_000
        );
        // The offset stays through jitter between the two clocks' reads,
        // and follows a step of the wall clock.
        let later = Clock::follow(Some(c), 1_005_000, 55_000_400_000);
        assert_eq!(later.boot_of(1_010_000), 60_000_000_000);
        assert_eq!(later.boot_now, 55_000_400_000);
        let stepped = Clock::follow(Some(c), 1_105_000, 55_000_000_000);
        assert_eq!(stepped.boot_of(1_110_000), 60_000_000_000);
        // A lease of 90 s on from the last 30 s step.
        assert_eq!(c.pending_until(), 30_000_000_000 + 90_000_000_000);
        assert_eq!(
            Clock::new(0, 59_999_999_999).pending_until(),
            c.pending_until()
        );
    }

    #[test]
    fn pending_refuses_granted_translates_both_ways() {
        let mut c = Client::new(vec![want("a", Proto::Tcp)], 0);
        let d = desired(&c.entries, at, &clock());
        assert_eq!(d.len(), 1);
        let (k, v) = d.iter().next().unwrap();
        assert_eq!(k[20], Dir::Connect as u8);
        assert_eq!(
            val(v),
            RemoteVal {
                port: 0,
                flags: PENDING,
                redirect_until: 0,
                refuse_until: clock().pending_until()
            }
        );
        c.entries[0].status = Status::Granted {
            negotiated: 20005,
            expires_ms: 1_100_000,
        };
        let d = desired(&c.entries, at, &clock());
        let connect = RemoteKey {
            peer: at("s")[0],
            port: 9000,
            proto: 6,
            dir: Dir::Connect,
            aid: "a".parse().unwrap(),
        };
        let peer = RemoteKey {
            port: 20005,
            dir: Dir::Peer,
            ..connect.clone()
        };
        let until = 150_000_000_000;
        let refuse = until + LEASE_NS;
        assert_eq!(
            d,
            [
                (
                    connect.to_bytes().to_vec(),
                    RemoteVal {
                        port: 20005,
                        flags: 0,
                        redirect_until: until,
                        refuse_until: refuse
                    }
                    .to_bytes()
                ),
                (
                    peer.to_bytes().to_vec(),
                    RemoteVal {
                        port: 9000,
                        flags: 0,
                        redirect_until: until,
                        refuse_until: refuse
                    }
                    .to_bytes()
                ),
            ]
            .into_iter()
            .collect()
        );
        assert!(any_live(&d, refuse - 1));
        assert!(!any_live(&d, refuse));
        // Both protocols: two entries; a peer no longer configured: none.
        let c = Client::new(vec![want("a", Proto::Both)], 0);
        assert_eq!(desired(&c.entries, at, &clock()).len(), 2);
        assert!(desired(&c.entries, |_| Vec::new(), &clock()).is_empty());
        // Two addresses of the peer (IPv4 and IPv6): twice the entries.
        let two = |_: &str| {
            vec![
                "192.0.2.10".parse().unwrap(),
                "2001:db8::10".parse().unwrap(),
            ]
        };
        assert_eq!(desired(&c.entries, two, &clock()).len(), 4);
    }

    #[test]
    fn a_released_mapping_leaves_the_map_and_deletes_come_first() {
        let mut c = Client::new(vec![want("a", Proto::Udp), want("b", Proto::Udp)], 0);
        let before = desired(&c.entries, at, &clock());
        c.release(0, 0);
        c.entries[1].status = Status::Granted {
            negotiated: 20001,
            expires_ms: 2_000_000,
        };
        let after = desired(&c.entries, at, &clock());
        assert_eq!(after.len(), 2);
        let changes = plan(&before, &after);
        // a's entry goes (first), b's is granted and gains its way back.
        assert_eq!(changes.len(), 3);
        assert!(matches!(&changes[0], Change::Delete(_)));
        assert!(changes[1..].iter().all(|c| matches!(c, Change::Set(..))));
        // A plan applied leaves nothing to do.
        let mut m = before.clone();
        for ch in changes {
            match ch {
                Change::Set(k, v) => {
                    m.insert(k, v);
                }
                Change::Delete(k) => {
                    m.remove(&k);
                }
            }
        }
        assert_eq!(m, after);
        assert!(plan(&m, &after).is_empty());
    }
}
