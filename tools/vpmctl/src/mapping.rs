//! `vpmctl add | del | show | flush`: allocations of (AID, fixed port).

use std::net::IpAddr;
use std::time::{Duration, Instant};

use neli::genl::Genlmsghdr;
use neli::types::{Buffer, GenlBuffer};
use serde::Serialize;

use crate::aid::Aid;
use crate::attrs::Attrs;
use crate::connection::{attr, nul_str, Connection};
use crate::error::{Error, KernelError, Result};
use crate::proto::Proto;
use crate::uapi::{Cmd, MappingAttr};

/// One allocation as the kernel reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Mapping {
    pub aid: Aid,
    pub port: u16,
    pub proto: Proto,
    pub anon_port: u16,
    /// cgroup v2 path whose local clients reach this allocation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cgroup: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cgroup_id: Option<u64>,
    /// Packets and bytes translated to the anonymous port.
    pub pkts_in: u64,
    pub bytes_in: u64,
    /// Packets and bytes translated back to the fixed port.
    pub pkts_out: u64,
    pub bytes_out: u64,
    /// Cooperative peers: hosts whose agent negotiated the anonymous
    /// port, so replies to them keep it (docs/COOPERATIVE.md).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub peers: Vec<IpAddr>,
}

impl Mapping {
    /// Reads a mapping reply or notification.
    pub fn from_attrs(a: &Attrs<MappingAttr>) -> Result<Self> {
        let m = Mapping {
            aid: a.require(MappingAttr::Aid)?,
            port: a.require(MappingAttr::Port)?,
            proto: a.require(MappingAttr::Proto)?,
            anon_port: a.require(MappingAttr::AnonPort)?,
            cgroup: a.get(MappingAttr::Cgroup)?,
            cgroup_id: a.get(MappingAttr::CgroupId)?,
            pkts_in: a.get(MappingAttr::PktsIn)?.unwrap_or(0),
            bytes_in: a.get(MappingAttr::BytesIn)?.unwrap_or(0),
            pkts_out: a.get(MappingAttr::PktsOut)?.unwrap_or(0),
            bytes_out: a.get(MappingAttr::BytesOut)?.unwrap_or(0),
            peers: a.get_all(MappingAttr::Peer)?,
        };
        if m.port == 0 || m.anon_port == 0 {
            return Err(Error::Protocol("mapping with port 0".into()));
        }
        Ok(m)
    }

    fn from_msg(msg: &Genlmsghdr<Cmd, MappingAttr>) -> Result<Self> {
        Self::from_attrs(&Attrs::of("mapping", msg))
    }
}

fn key_attrs(aid: &Aid, port: u16) -> Result<GenlBuffer<MappingAttr, Buffer>> {
    let mut attrs = GenlBuffer::new();
    attrs.push(attr(MappingAttr::Aid, nul_str(aid.as_str()))?);
    attrs.push(attr(MappingAttr::Port, port)?);
    Ok(attrs)
}

/// Longest wait for a free port vpmctl accepts.
pub const MAX_WAIT_MS: u32 = 60_000;

/// Parses a wait: `5s`, `500ms`, `1m`, or plain seconds; at most 60 s.
pub fn parse_wait(s: &str) -> std::result::Result<u32, String> {
    let bad = || format!("'{s}' is not a duration: use e.g. 5s, 500ms, 1m (at most 60s)");
    let (num, scale) = if let Some(n) = s.strip_suffix("ms") {
        (n, 1)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1000)
    } else if let Some(n) = s.strip_suffix('m') {
        (n, 60_000)
    } else {
        (s, 1000)
    };
    let ms = num
        .trim()
        .parse::<u32>()
        .map_err(|_| bad())?
        .checked_mul(scale)
        .ok_or_else(bad)?;
    if ms > MAX_WAIT_MS {
        return Err(format!("'{s}' is too long: vpm waits at most 60s"));
    }
    Ok(ms)
}

/// What `add` asks for beyond (AID, port).
#[derive(Debug, Default, Clone)]
pub struct AddOpts {
    /// Protocols (default: both).
    pub proto: Option<Proto>,
    /// Exactly this anonymous port.
    pub anon: Option<u16>,
    /// Wait this long for room instead of failing.
    pub wait_ms: Option<u32>,
    /// cgroup v2 path, relative to the cgroup2 root.
    pub cgroup: Option<String>,
}

/// Where cgroup v2 is usually mounted; a path below it is given to the
/// kernel relative to it.
const CGROUP2_MOUNT: &str = "/sys/fs/cgroup";

/// A cgroup v2 path as the kernel wants it: relative to the cgroup2 root
/// (`/sys/fs/cgroup/vpm/a` and `/vpm/a` both give `/vpm/a`).
pub fn cgroup_path(p: &str) -> std::result::Result<String, String> {
    let rel = p
        .strip_prefix(CGROUP2_MOUNT)
        .filter(|r| r.is_empty() || r.starts_with('/'))
        .unwrap_or(p);
    if !rel.starts_with('/') && !rel.is_empty() {
        return Err(format!(
            "'{p}' is not a cgroup v2 path: give /sys/fs/cgroup/... or /..."
        ));
    }
    Ok(if rel.is_empty() {
        "/".to_string()
    } else {
        rel.to_string()
    })
}

/// Allocates (or returns) the anonymous port of (aid, port); with
/// `wait_ms`, waits that long for room instead of failing (see [`add_wait`]).
pub fn add(conn: &Connection, aid: &Aid, port: u16, opts: &AddOpts) -> Result<Mapping> {
    match opts.wait_ms {
        Some(ms) if ms > 0 => add_wait(conn, aid, port, opts, ms),
        _ => add_once(conn, aid, port, opts),
    }
}

fn add_once(conn: &Connection, aid: &Aid, port: u16, opts: &AddOpts) -> Result<Mapping> {
    Mapping::from_msg(&conn.request_one("add", Cmd::AddMapping, add_attrs(aid, port, opts)?)?)
}

/// Longest sleep between two attempts of a waiting add: a missed event
/// (or a port freed by a socket closing, which has none) costs at most this.
const WAIT_TICK: Duration = Duration::from_secs(1);

/// [`WAIT_TICK`], unless `VPMCTL_WAIT_TICK_MS` says otherwise: the VM test
/// sets a tick longer than its wait, so that only the event can wake it.
/// At least [`MIN_WAIT_TICK`]: a zero tick would hammer the kernel with
/// back-to-back requests, each taking the table's lock.
fn wait_tick() -> Duration {
    std::env::var("VPMCTL_WAIT_TICK_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .map(Duration::from_millis)
        .unwrap_or(WAIT_TICK)
        .max(MIN_WAIT_TICK)
}

/// The shortest tick `VPMCTL_WAIT_TICK_MS` may set.
const MIN_WAIT_TICK: Duration = Duration::from_millis(10);

/// Queued allocation, done here rather than in the kernel (a request that
/// slept there would hold generic netlink's global lock): listen for
/// changes first, then try; while the kernel answers ENOSPC (range
/// exhausted, entry limit), wait for a release, flush or config event, or
/// at most [`WAIT_TICK`], and try again until `wait_ms` have passed.  A
/// signal ends the process as usual; unloading the module ends the wait
/// with [`Error::Unloaded`].
fn add_wait(
    conn: &Connection,
    aid: &Aid,
    port: u16,
    opts: &AddOpts,
    wait_ms: u32,
) -> Result<Mapping> {
    let deadline = Instant::now() + Duration::from_millis(u64::from(wait_ms));
    // Subscribed before the first attempt, so no release can slip between
    // a refusal and the wait.
    let watch = conn.watch()?;
    let tick = wait_tick();
    loop {
        let refusal = match add_once(conn, aid, port, opts) {
            Err(Error::Kernel(e)) if e.errno == libc::ENOSPC => e,
            // An unknown family: the module went away (or came back as
            // another family).  Other ENOENTs (a missing cgroup) stand.
            Err(Error::Kernel(e)) if e.errno == libc::ENOENT && !conn.family_alive()? => {
                return Err(Error::Unloaded("add"))
            }
            other => return other,
        };
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(timed_out(wait_ms, refusal));
        }
        watch.wait(left.min(tick))?;
    }
}

/// The error of a wait that ran out, with the kernel's last refusal.
fn timed_out(wait_ms: u32, refusal: KernelError) -> Error {
    let why = refusal
        .message
        .map(|m| format!(" (the last refusal: {m})"))
        .unwrap_or_default();
    Error::Kernel(KernelError {
        request: refusal.request,
        errno: libc::ETIMEDOUT,
        message: Some(format!(
            "waited {wait_ms} ms and no allocation was released{why}"
        )),
    })
}

/// Allocates many at once (see [`Connection::pipeline`]): each request's
/// outcome, in order.
pub fn add_many(conn: &Connection, reqs: &[(&Aid, u16, &AddOpts)]) -> Result<Vec<Result<Mapping>>> {
    let attrs = reqs
        .iter()
        .map(|(aid, port, opts)| add_attrs(aid, *port, opts))
        .collect::<Result<Vec<_>>>()?;
    Ok(conn
        .pipeline("add", Cmd::AddMapping, attrs)?
        .into_iter()
        .map(|r| r.and_then(|msg| Mapping::from_msg(&msg)))
        .collect())
}

fn add_attrs(aid: &Aid, port: u16, opts: &AddOpts) -> Result<GenlBuffer<MappingAttr, Buffer>> {
    let mut attrs = key_attrs(aid, port)?;
    attrs.push(attr(
        MappingAttr::Proto,
        opts.proto.unwrap_or(Proto::Both).bits(),
    )?);
    if let Some(a) = opts.anon {
        attrs.push(attr(MappingAttr::AnonPort, a)?);
    }
    if let Some(c) = &opts.cgroup {
        attrs.push(attr(MappingAttr::Cgroup, nul_str(c))?);
    }
    Ok(attrs)
}

/// Releases the allocation of (aid, port).
pub fn del(conn: &Connection, aid: &Aid, port: u16) -> Result<()> {
    conn.request("del", Cmd::DelMapping, key_attrs(aid, port)?)?;
    Ok(())
}

/// The peer attribute of an address: 4 bytes for IPv4, 16 for IPv6.
fn peer_attrs(aid: &Aid, port: u16, peer: IpAddr) -> Result<GenlBuffer<MappingAttr, Buffer>> {
    let mut attrs = key_attrs(aid, port)?;
    let bytes = match peer {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    };
    attrs.push(attr(MappingAttr::Peer, bytes)?);
    Ok(attrs)
}

/// Makes `peer` a cooperative peer of (aid, port)'s allocation: replies
/// to it keep the anonymous port (docs/COOPERATIVE.md).  Idempotent.
pub fn peer_add(conn: &Connection, aid: &Aid, port: u16, peer: IpAddr) -> Result<()> {
    conn.request("peer add", Cmd::AddPeer, peer_attrs(aid, port, peer)?)?;
    Ok(())
}

/// Removes cooperative peer `peer` of (aid, port)'s allocation.
pub fn peer_del(conn: &Connection, aid: &Aid, port: u16, peer: IpAddr) -> Result<()> {
    conn.request("peer del", Cmd::DelPeer, peer_attrs(aid, port, peer)?)?;
    Ok(())
}

/// Every allocation, ordered by fixed port then AID.
pub fn list(conn: &Connection) -> Result<Vec<Mapping>> {
    conn.dump("show", Cmd::GetMapping, Mapping::from_msg)
}

/// Releases every allocation.
pub fn flush(conn: &Connection) -> Result<()> {
    conn.request(
        "flush",
        Cmd::Flush,
        GenlBuffer::<MappingAttr, Buffer>::new(),
    )?;
    Ok(())
}

/// The human-readable table; a PEERS column (cooperative peers) when
/// any allocation has one.
pub fn render(maps: &[Mapping]) -> String {
    let peers = maps.iter().any(|m| !m.peers.is_empty());
    let mut out = format!(
        "{:<24} {:>5} {:<7} {:>9} {:>10} {:>12} {:>10} {:>12}  {}",
        "AID",
        "PORT",
        "PROTO",
        "ANON-PORT",
        "PKTS-IN",
        "BYTES-IN",
        "PKTS-OUT",
        "BYTES-OUT",
        "CGROUP"
    );
    if peers {
        out += "  PEERS";
    }
    out.push('\n');
    for m in maps {
        out += &format!(
            "{:<24} {:>5} {:<7} {:>9} {:>10} {:>12} {:>10} {:>12}  {}",
            m.aid,
            m.port,
            m.proto,
            m.anon_port,
            m.pkts_in,
            m.bytes_in,
            m.pkts_out,
            m.bytes_out,
            m.cgroup.as_deref().unwrap_or("-")
        );
        if peers {
            let list: Vec<String> = m.peers.iter().map(IpAddr::to_string).collect();
            out += "  ";
            out += &if list.is_empty() {
                "-".into()
            } else {
                list.join(",")
            };
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attrs::tests::attrs;

    #[test]
    fn parses_a_mapping() {
        let a = [
            (MappingAttr::Aid, b"a\0".to_vec()),
            (MappingAttr::Port, 9000u16.to_ne_bytes().to_vec()),
            (MappingAttr::Proto, 3u32.to_ne_bytes().to_vec()),
            (MappingAttr::AnonPort, 20000u16.to_ne_bytes().to_vec()),
        ];
        let m = Mapping::from_attrs(&attrs("mapping", &a)).unwrap();
        assert_eq!(
            serde_json::to_string(&m).unwrap(),
            r#"{"aid":"a","port":9000,"proto":["tcp","udp"],"anon_port":20000,"pkts_in":0,"bytes_in":0,"pkts_out":0,"bytes_out":0}"#
        );
    }

    /// The JSON of a kernel mapping with proto bits `bits`.
    fn json_of(bits: u32, cgroup: Option<(&str, u64)>) -> String {
        let mut a = vec![
            (MappingAttr::Aid, b"a\0".to_vec()),
            (MappingAttr::Port, 9000u16.to_ne_bytes().to_vec()),
            (MappingAttr::Proto, bits.to_ne_bytes().to_vec()),
            (MappingAttr::AnonPort, 20000u16.to_ne_bytes().to_vec()),
            (MappingAttr::PktsIn, 5u64.to_ne_bytes().to_vec()),
            (MappingAttr::BytesIn, 600u64.to_ne_bytes().to_vec()),
            (MappingAttr::PktsOut, 7u32.to_ne_bytes().to_vec()),
            (MappingAttr::BytesOut, 800u64.to_ne_bytes().to_vec()),
        ];
        if let Some((path, id)) = cgroup {
            a.push((MappingAttr::Cgroup, format!("{path}\0").into_bytes()));
            a.push((MappingAttr::CgroupId, id.to_ne_bytes().to_vec()));
        }
        let m = Mapping::from_attrs(&attrs("mapping", &a)).unwrap();
        serde_json::to_string(&m).unwrap()
    }

    #[test]
    fn json_forms_are_stable() {
        let tail = r#""anon_port":20000,"pkts_in":5,"bytes_in":600,"pkts_out":7,"bytes_out":800}"#;
        let head = r#"{"aid":"a","port":9000,"proto":"#;
        assert_eq!(json_of(1, None), format!(r#"{head}["tcp"],{tail}"#));
        assert_eq!(json_of(2, None), format!(r#"{head}["udp"],{tail}"#));
        assert_eq!(json_of(3, None), format!(r#"{head}["tcp","udp"],{tail}"#));
        assert_eq!(
            json_of(3, Some(("/vpm/a", 42))),
            r#"{"aid":"a","port":9000,"proto":["tcp","udp"],"anon_port":20000,"cgroup":"/vpm/a","cgroup_id":42,"pkts_in":5,"bytes_in":600,"pkts_out":7,"bytes_out":800}"#
        );
    }

    #[test]
    fn cgroup_paths() {
        assert_eq!(cgroup_path("/sys/fs/cgroup/vpm/a").unwrap(), "/vpm/a");
        assert_eq!(cgroup_path("/vpm/a").unwrap(), "/vpm/a");
        assert_eq!(cgroup_path("/sys/fs/cgroup").unwrap(), "/");
        assert_eq!(cgroup_path("/sys/fs/cgroupx").unwrap(), "/sys/fs/cgroupx");
        assert!(cgroup_path("vpm/a").is_err());
    }

    #[test]
    fn waits() {
        assert_eq!(parse_wait("5s"), Ok(5000));
        assert_eq!(parse_wait("250ms"), Ok(250));
        assert_eq!(parse_wait("1m"), Ok(60_000));
        assert_eq!(parse_wait("7"), Ok(7000));
        assert!(parse_wait("61s").is_err());
        assert!(parse_wait("soon").is_err());
    }

    #[test]
    fn timeout_names_the_wait_and_the_last_refusal() {
        let refusal = KernelError {
            request: "add",
            errno: libc::ENOSPC,
            message: Some("no free port in range 31000-31000 (1 in use); widen the range".into()),
        };
        assert_eq!(
            timed_out(2000, refusal).to_string(),
            "add failed: Connection timed out: waited 2000 ms and no allocation was released \
             (the last refusal: no free port in range 31000-31000 (1 in use); widen the range)"
        );
    }

    #[test]
    fn peers_are_every_peer_attribute() {
        let a = [
            (MappingAttr::Aid, b"a\0".to_vec()),
            (MappingAttr::Port, 9000u16.to_ne_bytes().to_vec()),
            (MappingAttr::Proto, 3u32.to_ne_bytes().to_vec()),
            (MappingAttr::AnonPort, 20000u16.to_ne_bytes().to_vec()),
            (MappingAttr::Peer, vec![192, 0, 2, 7]),
            (
                MappingAttr::Peer,
                "2001:db8::7"
                    .parse::<std::net::Ipv6Addr>()
                    .unwrap()
                    .octets()
                    .to_vec(),
            ),
        ];
        let m = Mapping::from_attrs(&attrs("mapping", &a)).unwrap();
        assert_eq!(
            m.peers,
            [
                "192.0.2.7".parse::<IpAddr>().unwrap(),
                "2001:db8::7".parse().unwrap()
            ]
        );
        assert!(serde_json::to_string(&m)
            .unwrap()
            .ends_with(r#""peers":["192.0.2.7","2001:db8::7"]}"#));
        let text = render(std::slice::from_ref(&m));
        assert!(text.lines().next().unwrap().ends_with("  PEERS"), "{text}");
        assert!(
            text.lines()
                .nth(1)
                .unwrap()
                .ends_with("  192.0.2.7,2001:db8::7"),
            "{text}"
        );
        let bad = [
            (MappingAttr::Aid, b"a\0".to_vec()),
            (MappingAttr::Port, 9000u16.to_ne_bytes().to_vec()),
            (MappingAttr::Proto, 3u32.to_ne_bytes().to_vec()),
            (MappingAttr::AnonPort, 20000u16.to_ne_bytes().to_vec()),
            (MappingAttr::Peer, vec![1, 2, 3]),
        ];
        assert!(Mapping::from_attrs(&attrs("mapping", &bad)).is_err());
    }

    #[test]
    fn rejects_incomplete_mapping() {
        let a = [(MappingAttr::Aid, b"a\0".to_vec())];
        assert!(Mapping::from_attrs(&attrs("mapping", &a)).is_err());
    }
}
