//! `vpmctl agent`: the cooperative agent of one host (one network
//! namespace).  It answers its peers' requests for local allocations
//! ([`super::server`]), asks its peers for the mappings its own client
//! AIDs want ([`super::client`]), renews both, and writes what it knows
//! to its state file, which `vpmctl peer show` reads.
//!
//! One UDP socket, one thread: a request costs a netlink round trip at
//! most, and peers are few.  The allocations are kernel state: stopping
//! the agent changes nothing in the kernel, so established flows carry
//! on, and a restarted agent reads its state file back (which peer holds
//! which mapping, until when) and keeps its epoch while the kernel still
//! holds what the file says.  When the kernel lost them (the module was
//! reloaded), the agent starts a new epoch, which tells its peers to ask
//! again.

use std::collections::BTreeMap;
use std::io::ErrorKind;
use std::net::{IpAddr, Ipv6Addr, SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::auth::{self, Key, ReplayWindow, SeqCounter};
use super::client::{Client, Event, Want};
use super::server::{Alloc, AllocError, Allocator, Answer, Export, Outcome, Policy, ServerState};
use super::wire::{self, Msg, Opcode, ResultCode};
use crate::aid::Aid;
use crate::connection::Connection;
use crate::error::{Error, Result};
use crate::mapping::{self, AddOpts};
use crate::proto::Proto;

/// The agents' UDP port unless the configuration says otherwise.
pub const DEFAULT_PORT: u16 = 9478;
/// The longest lifetime granted unless the configuration says otherwise.
const DEFAULT_MAX_LIFETIME: u32 = 3600;
/// Unauthenticated error answers per second, at most (they go to
/// addresses nobody vouched for: a flood must not make this host a
/// reflector).
const ERROR_ANSWERS_PER_SEC: u32 = 20;
/// Refusals logged per second, at most (any sender can cause them).
const REFUSAL_LOGS_PER_SEC: u32 = 20;
/// The records one peer may hold unless the configuration says otherwise.
const DEFAULT_MAX_PER_PEER: usize = 64;

/// The configuration file (TOML; docs/COOPERATIVE.md, "Configuration").
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Address and port to listen on (default `[::]:9478`, both families).
    #[serde(default)]
    pub listen: Option<SocketAddr>,
    /// The state file (default: per network namespace, under /run/vpm).
    #[serde(default)]
    pub state_file: Option<PathBuf>,
    #[serde(default = "default_max_lifetime")]
    pub max_lifetime: u32,
    /// The mappings one peer may hold here.
    #[serde(default = "default_max_per_peer")]
    pub max_mappings_per_peer: usize,
    #[serde(default, rename = "peer")]
    pub peers: Vec<PeerConf>,
    #[serde(default, rename = "export")]
    pub exports: Vec<Export>,
    #[serde(default, rename = "map")]
    pub maps: Vec<Want>,
}

fn default_max_lifetime() -> u32 {
    DEFAULT_MAX_LIFETIME
}

fn default_max_per_peer() -> usize {
    DEFAULT_MAX_PER_PEER
}

/// A peer: the allow-list entry and its key.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeerConf {
    pub name: String,
    /// Its agent's address: the allow-list's, and where requests go.
    pub address: IpAddr,
    /// Other addresses of the same host that its applications use (an
    /// IPv6 one beside an IPv4 `address`, say): the data path matches
    /// them too.
    #[serde(default)]
    pub addresses: Vec<IpAddr>,
    #[serde(default = "default_port")]
    pub port: u16,
    pub key_id: u32,
    /// The shared secret, hex; or `key_file`, a file holding it.
    #[serde(default)]
    pub key: Option<String>,
    #[serde(default)]
    pub key_file: Option<PathBuf>,
}

impl PeerConf {
    /// Every address of the peer host the data path knows: `address`,
    /// then `addresses`.
    pub fn all_addresses(&self) -> Vec<IpAddr> {
        let mut out = vec![self.address];
        for a in &self.addresses {
            if !out.iter().any(|o| canon(*o) == canon(*a)) {
                out.push(*a);
            }
        }
        out
    }
}

fn default_port() -> u16 {
    DEFAULT_PORT
}

impl Config {
    /// Reads and checks a configuration file.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::Input(format!("agent: cannot read {}: {e}", path.display())))?;
        let cfg: Config = toml::from_str(&text)
            .map_err(|e| Error::Input(format!("agent: {}: {e}", path.display())))?;
        cfg.check()
            .map_err(|e| Error::Input(format!("agent: {}: {e}", path.display())))?;
        Ok(cfg)
    }

    fn check(&self) -> std::result::Result<(), String> {
        let mut names = std::collections::BTreeSet::new();
        for p in &self.peers {
            if !names.insert(p.name.as_str()) {
                return Err(format!("peer {} is listed twice", p.name));
            }
            for a in p.all_addresses() {
                let holders = self
                    .peers
                    .iter()
                    .filter(|q| q.all_addresses().iter().any(|b| canon(*b) == canon(a)))
                    .count();
                if holders > 1 {
                    return Err(format!("address {a} belongs to two peers"));
                }
            }
            if p.key.is_some() == p.key_file.is_some() {
                return Err(format!(
                    "peer {}: give exactly one of key and key_file",
                    p.name
                ));
            }
        }
        for (i, e) in self.exports.iter().enumerate() {
            if self.exports[..i].iter().any(|f| f.port == e.port) {
                return Err(format!(
                    "port {} is exported twice: list its AIDs in one [[export]]",
                    e.port
                ));
            }
            if e.aids.is_empty() {
                return Err(format!(
                    "export of port {}: list the AIDs peers may ask for (aids = [...])",
                    e.port
                ));
            }
            for peer in &e.peers {
                if !names.contains(peer.as_str()) {
                    return Err(format!("export of port {}: no peer named {peer}", e.port));
                }
            }
        }
        for (i, m) in self.maps.iter().enumerate() {
            if self.maps[..i]
                .iter()
                .any(|n| n.peer == m.peer && n.aid == m.aid && n.port == m.port)
            {
                return Err(format!(
                    "map {} port {} from peer {} is listed twice",
                    m.aid, m.port, m.peer
                ));
            }
            if !names.contains(m.peer.as_str()) {
                return Err(format!(
                    "map {} port {}: no peer named {}",
                    m.aid, m.port, m.peer
                ));
            }
            if m.port == 0 || m.lifetime == 0 {
                return Err(format!(
                    "map {} port {}: port and lifetime must be above 0",
                    m.aid, m.port
                ));
            }
        }
        if self.max_lifetime < super::server::MIN_LIFETIME {
            return Err(format!(
                "max_lifetime must be at least {}",
                super::server::MIN_LIFETIME
            ));
        }
        Ok(())
    }
}

/// The state file of this network namespace unless the configuration
/// names one: `vpmctl peer show` finds it the same way.
pub fn default_state_file() -> Result<PathBuf> {
    Ok(PathBuf::from(format!(
        "/run/vpm/agent-net{}.json",
        crate::metrics::netns()?
    )))
}

/// IPv4-mapped addresses as IPv4, so that both spellings match.
fn canon(a: IpAddr) -> IpAddr {
    a.to_canonical()
}

/// What the state file holds.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct StateFile {
    pub epoch: u32,
    pub server: ServerState,
    /// The mappings asked of peers, with where each stands.
    pub client: Vec<super::client::Entry>,
    /// What the agent did since it started (see docs/COOPERATIVE.md).
    pub counters: BTreeMap<String, u64>,
    /// Per peer, the highest sequence number accepted: a restarted agent
    /// refuses everything up to it, so a message captured before the
    /// restart cannot be replayed after it.
    #[serde(default)]
    pub replay_tops: BTreeMap<String, u64>,
    /// Per peer, its last epoch and its addresses when saved: a
    /// restarted agent takes over running grants only from the same
    /// host, and sees that host's restart in its first answer.
    #[serde(default)]
    pub epochs: BTreeMap<String, u32>,
    #[serde(default)]
    pub peer_addresses: BTreeMap<String, Vec<IpAddr>>,
}

impl StateFile {
    pub fn read(path: &Path) -> Result<Option<Self>> {
        match std::fs::read(path) {
            Ok(b) => serde_json::from_slice(&b).map(Some).map_err(|e| {
                Error::Input(format!(
                    "{}: {e} (delete it to start afresh)",
                    path.display()
                ))
            }),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::Input(format!("cannot read {}: {e}", path.display()))),
        }
    }

    fn write(&self, path: &Path) -> Result<()> {
        let tmp = path.with_extension("json.tmp");
        let io =
            |e: std::io::Error| Error::Host(format!("agent: cannot write {}: {e}", path.display()));
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        std::fs::write(&tmp, serde_json::to_vec_pretty(self).expect("plain data")).map_err(io)?;
        std::fs::rename(&tmp, path).map_err(io)
    }
}

/// The kernel's allocations over netlink.
struct Kernel<'a>(&'a Connection);

impl Allocator for Kernel<'_> {
    fn find(&mut self, aid: &Aid, port: u16) -> std::result::Result<Option<Alloc>, AllocError> {
        let all = mapping::list(self.0).map_err(|e| AllocError::Failed(e.to_string()))?;
        Ok(all
            .into_iter()
            .find(|m| m.aid == *aid && m.port == port)
            .map(|m| Alloc {
                anon: m.anon_port,
                proto: m.proto,
                claimed: m.cgroup.is_some() || m.cgroup_id.is_some(),
            }))
    }

    fn allocate(
        &mut self,
        aid: &Aid,
        port: u16,
        proto: Proto,
    ) -> std::result::Result<u16, AllocError> {
        let opts = AddOpts {
            proto: Some(proto),
            ..Default::default()
        };
        match mapping::add(self.0, aid, port, &opts) {
            Ok(m) => Ok(m.anon_port),
            Err(Error::Kernel(e)) if e.errno == libc::ENOSPC => Err(AllocError::NoResources),
            Err(e) => Err(AllocError::Failed(e.to_string())),
        }
    }

    fn release(&mut self, aid: &Aid, port: u16) -> std::result::Result<(), AllocError> {
        mapping::del(self.0, aid, port).map_err(|e| AllocError::Failed(e.to_string()))
    }
}

static STOP: AtomicBool = AtomicBool::new(false);
static RELOAD: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(sig: libc::c_int) {
    if sig == libc::SIGHUP {
        RELOAD.store(true, Ordering::Relaxed);
    } else {
        STOP.store(true, Ordering::Relaxed);
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn random<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    getrandom::getrandom(&mut b).expect("the kernel's random source");
    b
}

fn jitter(n: u64) -> u64 {
    u64::from_ne_bytes(random::<8>()) % n.max(1)
}

/// One peer at run time.
struct Peer {
    conf: PeerConf,
    key: Key,
    /// Its sequence numbers we accepted.
    window: ReplayWindow,
    /// Ours towards it.
    seq: SeqCounter,
    /// Our address as it sees it (the client address of our requests).
    local: Option<IpAddr>,
}

/// Logs one event: `vpm-agent: event=NAME key=value ...`.
macro_rules! log {
    ($($arg:tt)*) => { eprintln!("vpm-agent: {}", format_args!($($arg)*)) };
}

struct Agent {
    cfg: Config,
    /// The configuration file, read again on SIGHUP.
    config: PathBuf,
    peers: Vec<Peer>,
    sock: UdpSocket,
    conn: Connection,
    state: StateFile,
    client: Client,
    path: PathBuf,
    /// Unauthenticated error answers: the second they were counted in,
    /// and how many.
    error_budget: (u64, u32),
    /// Refusals logged: the second, how many, how many left out since.
    refusal_logs: (u64, u32, u64),
    /// Counters changed since the last save, and when that was: counters
    /// alone are saved at most once a second, so a flood of refused
    /// datagrams does not rewrite the file at its own pace.
    dirty: bool,
    saved_ms: u64,
    /// The error that kept the client's data path (the socket hooks'
    /// map) closed, logged once.
    remote_error: Option<String>,
    /// Peers the kernel's exported allocations had when the agent
    /// started without records for them (a lost state file): kept until
    /// the longest lifetime has passed, so that their established flows
    /// carry on while they negotiate again.  (AID, port, address, until).
    adopted: Vec<(Aid, u16, IpAddr, u64)>,
    /// When the kernel was last brought in line.
    synced_ms: u64,
    /// The conversion of grants' ends to the socket hooks' clock, kept
    /// from sync to sync (see [`super::remote::Clock::follow`]).
    clock: Option<super::remote::Clock>,
}

/// How often the agent checks the kernel's peers and the socket hooks'
/// map against its records even when nothing changed (someone else may
/// have changed them).
const RESYNC_MS: u64 = 5_000;

/// Runs the agent until SIGTERM or SIGINT.
pub fn run(config: &Path) -> Result<()> {
    let cfg = Config::load(config)?;
    let path = match &cfg.state_file {
        Some(p) => p.clone(),
        None => default_state_file()?,
    };
    let mut peers = Vec::new();
    for p in &cfg.peers {
        peers.push(Peer {
            conf: p.clone(),
            key: load_key(p)?,
            window: ReplayWindow::default(),
            seq: SeqCounter::new(now_ms() * 1000),
            local: None,
        });
    }
    let conn = Connection::open()?;
    let listen = cfg
        .listen
        .unwrap_or(SocketAddr::from((Ipv6Addr::UNSPECIFIED, DEFAULT_PORT)));
    let sock = UdpSocket::bind(listen).map_err(|e| {
        Error::Host(format!(
            "agent: cannot listen on {listen}: {e} (is another agent running?)"
        ))
    })?;
    let mut state = StateFile::read(&path)?.unwrap_or_default();
    for p in &mut peers {
        if let Some(&top) = state.replay_tops.get(&p.conf.name) {
            p.window = ReplayWindow::after(top);
        }
    }
    let epoch = recover(&conn, &mut state)?;
    let mut client = Client::new(cfg.maps.clone(), now_ms());
    // The same host: the same set of addresses, whichever list named
    // them (a state file written before addresses were kept: trusted).
    let set = |v: &[IpAddr]| {
        v.iter()
            .map(|a| canon(*a))
            .collect::<std::collections::BTreeSet<_>>()
    };
    let same_peer = |name: &str| {
        cfg.peers.iter().any(|p| {
            p.name == name
                && state
                    .peer_addresses
                    .get(name)
                    .is_none_or(|saved| set(saved) == set(&p.all_addresses()))
        })
    };
    let resumed = client.resume(&state.client, &state.epochs, same_peer, now_ms());
    let adopted = adopt(&conn, &cfg, &state, now_ms())?;
    for (sig, what) in [
        (libc::SIGTERM, "SIGTERM"),
        (libc::SIGINT, "SIGINT"),
        (libc::SIGHUP, "SIGHUP"),
    ] {
        // SAFETY: on_signal only stores to an atomic, which is
        // async-signal-safe.
        if unsafe { libc::signal(sig, on_signal as *const () as libc::sighandler_t) }
            == libc::SIG_ERR
        {
            return Err(Error::Host(format!("agent: cannot handle {what}")));
        }
    }
    log!(
        "event=start listen={listen} epoch={epoch:08x} peers={} exports={} maps={} state={} resumed={resumed} adopted={}",
        cfg.peers.len(),
        cfg.exports.len(),
        cfg.maps.len(),
        path.display(),
        adopted.len()
    );
    let mut agent = Agent {
        cfg,
        config: config.to_path_buf(),
        peers,
        sock,
        conn,
        state,
        client,
        path,
        error_budget: (0, 0),
        refusal_logs: (0, 0, 0),
        dirty: false,
        saved_ms: 0,
        remote_error: None,
        adopted,
        synced_ms: 0,
        clock: None,
    };
    agent.sync_kernel();
    agent.save()?;
    agent.serve()
}

/// Whether `export` lets peers ask for (aid, port).
fn exports(exports: &[Export], aid: &Aid, port: u16) -> bool {
    exports
        .iter()
        .any(|e| e.port == port && e.aids.contains(aid))
}

/// The peers that the kernel's exported allocations have and that no
/// record of `state` accounts for (see [`Agent::adopted`]).
fn adopt(
    conn: &Connection,
    cfg: &Config,
    state: &StateFile,
    now: u64,
) -> Result<Vec<(Aid, u16, IpAddr, u64)>> {
    let until = now + u64::from(cfg.max_lifetime) * 1000;
    let mut out = Vec::new();
    for m in mapping::list(conn)? {
        if !exports(&cfg.exports, &m.aid, m.port) {
            continue;
        }
        for &addr in &m.peers {
            let recorded = state.server.records.iter().any(|r| {
                r.aid == m.aid
                    && r.port == m.port
                    && cfg.peers.iter().any(|p| {
                        p.name == r.peer
                            && p.all_addresses().iter().any(|a| canon(*a) == canon(addr))
                    })
            });
            if !recorded {
                out.push((m.aid.clone(), m.port, addr, until));
            }
        }
    }
    Ok(out)
}

/// The changes that give each exported allocation in `live` exactly the
/// peers `want` lists for it: (AID, port, address, add?).
///
/// The agent owns the peers of the allocations it exports, and any
/// address of a configured peer on any allocation (an export removed on
/// reload leaves none behind); other peers are the operator's.
pub fn peer_changes(
    live: &[mapping::Mapping],
    want: &[(Aid, u16, IpAddr)],
    exported: impl Fn(&Aid, u16) -> bool,
    ours: impl Fn(IpAddr) -> bool,
) -> Vec<(Aid, u16, IpAddr, bool)> {
    let mut out = Vec::new();
    for m in live {
        let exp = exported(&m.aid, m.port);
        let wanted: Vec<IpAddr> = want
            .iter()
            .filter(|(a, p, _)| exp && *a == m.aid && *p == m.port)
            .map(|(_, _, ip)| canon(*ip))
            .collect();
        for &have in &m.peers {
            if (exp || ours(have)) && !wanted.contains(&canon(have)) {
                out.push((m.aid.clone(), m.port, have, false));
            }
        }
        let mut added: Vec<IpAddr> = Vec::new();
        for ip in wanted {
            if !m.peers.iter().any(|h| canon(*h) == ip) && !added.contains(&ip) {
                out.push((m.aid.clone(), m.port, ip, true));
                added.push(ip);
            }
        }
    }
    out
}

/// A peer's key, from the configuration or its key file.
fn load_key(p: &PeerConf) -> Result<Key> {
    let hex = match (&p.key, &p.key_file) {
        (Some(k), _) => k.clone(),
        (None, Some(f)) => std::fs::read_to_string(f).map_err(|e| {
            Error::Input(format!(
                "agent: peer {}: cannot read {}: {e}",
                p.name,
                f.display()
            ))
        })?,
        (None, None) => unreachable!("checked by Config::check"),
    };
    Key::from_hex(p.key_id, &hex).map_err(|e| Error::Input(format!("agent: peer {}: {e}", p.name)))
}

/// Keeps the state file's epoch if the kernel still holds every
/// allocation it says the agent created; otherwise the kernel lost them
/// (or there was no file): a new epoch, and the records of what is gone
/// dropped.
fn recover(conn: &Connection, state: &mut StateFile) -> Result<u32> {
    let live = mapping::list(conn)?;
    // The very allocation: same (AID, port) and same anonymous port.
    let have = |aid: &Aid, port: u16, anon: u16| {
        live.iter()
            .any(|m| m.aid == *aid && m.port == port && m.anon_port == anon)
    };
    let lost = state
        .server
        .created
        .values()
        .any(|(a, p, anon)| !have(a, *p, *anon))
        || state
            .server
            .records
            .iter()
            .any(|r| !have(&r.aid, r.port, r.negotiated));
    if state.epoch == 0 || lost {
        state.epoch = u32::from_ne_bytes(random::<4>()).max(1);
        state
            .server
            .records
            .retain(|r| have(&r.aid, r.port, r.negotiated));
        state
            .server
            .created
            .retain(|_, (a, p, anon)| have(a, *p, *anon));
    }
    Ok(state.epoch)
}

impl Agent {
    fn count(&mut self, what: &str) {
        *self.state.counters.entry(what.to_string()).or_default() += 1;
        self.dirty = true;
    }

    fn save(&mut self) -> Result<()> {
        self.state.client = self.client.entries.clone();
        self.state.epochs = self.client.epochs().clone();
        self.state.peer_addresses = self
            .peers
            .iter()
            .map(|p| (p.conf.name.clone(), p.conf.all_addresses()))
            .collect();
        for p in &self.peers {
            self.state
                .replay_tops
                .insert(p.conf.name.clone(), p.window.top());
        }
        self.dirty = false;
        self.saved_ms = now_ms();
        self.state.write(&self.path)
    }

    /// Brings the kernel in line with the agent's records: the
    /// cooperative peers of exported allocations (server side), and the
    /// socket hooks' map (client side).  Failures are logged; the next
    /// sync tries again.
    fn sync_kernel(&mut self) {
        let now = now_ms();
        self.synced_ms = now;
        self.adopted.retain(|a| a.3 > now);
        if let Err(e) = self.sync_peers() {
            log!("event=sync-error side=server error=\"{e}\"");
        }
        if let Err(e) = self.sync_remote() {
            log!("event=sync-error side=client error=\"{e}\"");
        }
    }

    fn sync_peers(&mut self) -> Result<()> {
        let addresses = |name: &str| {
            self.peers
                .iter()
                .find(|p| p.conf.name == name)
                .map(|p| p.conf.all_addresses())
                .unwrap_or_default()
        };
        let mut want: Vec<(Aid, u16, IpAddr)> = Vec::new();
        for r in &self.state.server.records {
            for ip in addresses(&r.peer) {
                want.push((r.aid.clone(), r.port, ip));
            }
        }
        want.extend(
            self.adopted
                .iter()
                .map(|(a, p, ip, _)| (a.clone(), *p, *ip)),
        );
        let live = mapping::list(&self.conn)?;
        let exported = |aid: &Aid, port: u16| exports(&self.cfg.exports, aid, port);
        let ours = |ip: IpAddr| {
            self.peers.iter().any(|p| {
                p.conf
                    .all_addresses()
                    .iter()
                    .any(|a| canon(*a) == canon(ip))
            })
        };
        for (aid, port, ip, add) in peer_changes(&live, &want, exported, ours) {
            let r = if add {
                mapping::peer_add(&self.conn, &aid, port, ip)
            } else {
                mapping::peer_del(&self.conn, &aid, port, ip)
            };
            match r {
                Ok(()) => log!(
                    "event={} aid={aid} port={port} address={ip}",
                    if add { "peer-set" } else { "peer-unset" }
                ),
                Err(e) => log!(
                    "event=sync-error side=server aid={aid} port={port} address={ip} error=\"{e}\""
                ),
            }
        }
        Ok(())
    }

    /// The socket hooks' map, opened afresh every time (whoever removed
    /// or replaced the pin, this follows): made if this agent asks its
    /// peers for anything, else only emptied if it exists.
    fn sync_remote(&mut self) -> Result<()> {
        let wants = !self.client.entries.is_empty();
        let place = match crate::place::Place::current(None) {
            Ok(p) => p,
            Err(e) if wants => {
                self.data_path_unavailable(e);
                return Ok(());
            }
            Err(_) => return Ok(()),
        };
        // Under the hooks' lock: no exec's cleanup removes the map
        // between this open and the writes.
        let lock = match crate::hooks::Lock::take(&place) {
            Ok(l) => l,
            Err(e) if wants => {
                self.data_path_unavailable(e);
                return Ok(());
            }
            Err(_) => return Ok(()),
        };
        let map = if wants {
            match super::remote::open_or_create_locked(&place) {
                Ok(m) => m,
                Err(e) => {
                    self.data_path_unavailable(e);
                    return Ok(());
                }
            }
        } else {
            match super::remote::open(&place) {
                Some(m) => m,
                None => return Ok(()),
            }
        };
        self.remote_error = None;
        let clock = super::remote::Clock::follow(self.clock, now_ms(), super::remote::boot_ns());
        self.clock = Some(clock);
        let want = super::remote::desired(
            &self.client.entries,
            |name| {
                self.peers
                    .iter()
                    .find(|p| p.conf.name == name)
                    .map(|p| p.conf.all_addresses())
                    .unwrap_or_default()
            },
            &clock,
        );
        let current = super::remote::read(&map)?;
        let changes = super::remote::plan(&current, &want);
        if !changes.is_empty() {
            super::remote::apply(&map, &changes)?;
            log!(
                "event=data-path entries={} changed={}",
                want.len(),
                changes.len()
            );
        }
        if !wants {
            // Emptied, and unused if no AID has hooks either.
            super::remote::remove_if_unused(&place);
        }
        drop(lock);
        Ok(())
    }

    /// A grant's peer set is in the kernel before the answer leaves: the
    /// peer's first packets to the negotiated port may follow the answer
    /// at once, and their replies must keep that port.  An allocation
    /// that cannot take the peer's addresses (it holds 16 peers) is
    /// refused as out of resources, and the record taken back.
    fn peers_before_granting(
        &mut self,
        answer: Answer,
        renewal: bool,
        pi: usize,
        name: &str,
        msg: &Msg,
    ) -> Answer {
        if !matches!(answer.outcome, Outcome::Granted { .. }) {
            return answer;
        }
        let mut added = Vec::new();
        for ip in self.peers[pi].conf.all_addresses() {
            match mapping::peer_add(&self.conn, &msg.aid, msg.port, ip) {
                Ok(()) => added.push(ip),
                // A renewal keeps its grant: its flows use the addresses
                // already there (the sync tries the others again).
                Err(Error::Kernel(e)) if e.errno == libc::ENOSPC && renewal => {
                    log!(
                        "event=sync-error side=server aid={} port={} address={ip} error=\"the allocation holds the most peers it may\"",
                        msg.aid,
                        msg.port
                    );
                }
                Err(Error::Kernel(e)) if e.errno == libc::ENOSPC => {
                    for ip in added {
                        let _ = mapping::peer_del(&self.conn, &msg.aid, msg.port, ip);
                    }
                    let released = self.state.server.withdraw(
                        &mut Kernel(&self.conn),
                        name,
                        &msg.aid,
                        msg.port,
                    );
                    log!(
                        "event=withdrawn peer={name} aid={} port={} released={released} reason=\"the allocation holds the most peers it may\"",
                        msg.aid,
                        msg.port
                    );
                    return Answer {
                        result: ResultCode::NoResources,
                        negotiated: 0,
                        lifetime: 0,
                        outcome: Outcome::Refused(
                            ResultCode::NoResources,
                            "the allocation holds the most cooperative peers it may".into(),
                        ),
                        state_lost: answer.state_lost,
                    };
                }
                // The periodic sync tries again.
                Err(e) => log!(
                    "event=sync-error side=server aid={} port={} address={ip} error=\"{e}\"",
                    msg.aid,
                    msg.port
                ),
            }
        }
        answer
    }

    /// Logged once: without the map, the negotiated ports are recorded
    /// but sockets do not use them.
    fn data_path_unavailable(&mut self, e: Error) {
        let text = e.to_string();
        if self.remote_error.as_deref() != Some(&text) {
            log!("event=data-path-unavailable error=\"{text}\" (negotiated ports are not used by sockets)");
            self.remote_error = Some(text);
        }
    }

    fn serve(&mut self) -> Result<()> {
        let mut buf = [0u8; 2048];
        while !STOP.load(Ordering::Relaxed) {
            if RELOAD.swap(false, Ordering::Relaxed) {
                self.reload();
            }
            let now = now_ms();
            let mut changed = self.timers(now);
            let next = [self.client.next_due(), self.state.server.next_expiry()]
                .into_iter()
                .flatten()
                .min()
                .unwrap_or(now + 1000);
            // At most a second, so that a signal is seen soon.
            let wait = next.saturating_sub(now).clamp(10, 1000);
            self.sock
                .set_read_timeout(Some(Duration::from_millis(wait)))
                .map_err(|e| Error::Host(format!("agent: socket: {e}")))?;
            match self.sock.recv_from(&mut buf) {
                Ok((n, from)) => {
                    changed |= self.datagram(&buf[..n], from);
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                    ) => {}
                Err(e) => log!("event=recv-error error=\"{e}\""),
            }
            if changed || now_ms().saturating_sub(self.synced_ms) >= RESYNC_MS {
                self.sync_kernel();
            }
            if changed || (self.dirty && now_ms().saturating_sub(self.saved_ms) >= 1000) {
                if let Err(e) = self.save() {
                    log!("event=save-error error=\"{e}\"");
                }
            }
        }
        log!(
            "event=stop (mappings stay in the kernel; peers' grants run until their lifetimes end)"
        );
        self.save()
    }

    /// SIGHUP: the exports and the wanted mappings of the configuration
    /// file as it is now.  Mappings no longer wanted are released on
    /// both sides.  Peers (addresses, keys) and the socket need a
    /// restart; a file that does not load changes nothing.
    fn reload(&mut self) {
        let cfg = match Config::load(&self.config) {
            Ok(c) => c,
            Err(e) => {
                log!("event=reload-failed error=\"{e}\" (the running configuration stays)");
                return;
            }
        };
        // Keys compared by their secrets, so that a rotated key file is
        // seen too.
        let peers_changed = cfg.peers.len() != self.peers.len()
            || cfg.peers.iter().zip(&self.peers).any(|(a, b)| {
                a.name != b.conf.name
                    || a.address != b.conf.address
                    || a.addresses != b.conf.addresses
                    || a.port != b.conf.port
                    || load_key(a).map_or(true, |k| !k.same_as(&b.key))
            })
            || cfg.listen != self.cfg.listen
            || cfg.state_file != self.cfg.state_file;
        if peers_changed {
            log!("event=reload-failed error=\"peers, keys, listen or state_file changed: restart the agent for those\" (the running configuration stays)");
            return;
        }
        let (released, added) = self.client.reconfigure(cfg.maps.clone(), now_ms());
        log!(
            "event=reload exports={} maps={} released={released} added={added}",
            cfg.exports.len(),
            cfg.maps.len()
        );
        self.cfg.exports = cfg.exports;
        self.cfg.maps = cfg.maps;
        self.cfg.max_lifetime = cfg.max_lifetime;
        // Records of what is no longer exported end now, with their
        // peers (the next sync): the peer learns it at its next renewal,
        // which is refused.
        let exported = &self.cfg.exports;
        let (kept, gone): (Vec<_>, Vec<_>) = std::mem::take(&mut self.state.server.records)
            .into_iter()
            .partition(|r| exports(exported, &r.aid, r.port));
        self.state.server.records = kept;
        for r in gone {
            let released =
                self.state
                    .server
                    .release_if_unheld(&mut Kernel(&self.conn), &r.aid, r.port);
            log!(
                "event=unexported peer={} aid={} port={} released={released}",
                r.peer,
                r.aid,
                r.port
            );
        }
    }

    /// Expiries and due requests; whether anything changed.
    fn timers(&mut self, now: u64) -> bool {
        let mut changed = false;
        for (r, released) in self.state.server.expire(&mut Kernel(&self.conn), now) {
            log!(
                "event=expired side=server peer={} aid={} port={} negotiated={} released={released}",
                r.peer, r.aid, r.port, r.negotiated
            );
            self.count("server_expired");
            changed = true;
        }
        let n = self.client.expire(now);
        if n > 0 {
            log!("event=expired side=client count={n}");
            changed = true;
        }
        let due = self.client.due(now, random::<12>, jitter);
        for r in due {
            let Some(pi) = self.peers.iter().position(|p| p.conf.name == r.peer) else {
                continue;
            };
            let peer_addr = SocketAddr::new(self.peers[pi].conf.address, self.peers[pi].conf.port);
            // The listening address when it is one (the datagram leaves
            // from it), else the kernel's choice towards the peer.
            let bound = self
                .cfg
                .listen
                .map(|l| l.ip())
                .filter(|ip| !ip.is_unspecified());
            let local = match self.peers[pi].local.or(bound) {
                Some(a) => {
                    self.peers[pi].local = Some(a);
                    a
                }
                None => match local_address(peer_addr) {
                    Ok(a) => {
                        self.peers[pi].local = Some(a);
                        a
                    }
                    Err(e) => {
                        log!("event=send-error peer={} error=\"no route: {e}\"", r.peer);
                        continue;
                    }
                },
            };
            let p = &mut self.peers[pi];
            let msg = Msg {
                answer: false,
                opcode: Opcode::Map,
                result: ResultCode::Success,
                key_id: p.key.id,
                epoch: self.state.epoch,
                seq: p.seq.next(now * 1000),
                time_ms: now,
                nonce: r.nonce,
                lifetime: r.lifetime,
                port: r.port,
                negotiated: 0,
                protos: wire::protos_of(r.proto),
                aid: r.aid.clone(),
                client: wire::to_wire_addr(local),
            };
            let bytes = p.key.seal(&msg);
            match self.sock.send_to(&bytes, peer_addr) {
                Ok(_) => {
                    log!(
                        "event=request peer={} aid={} port={} lifetime={}",
                        r.peer,
                        r.aid,
                        r.port,
                        r.lifetime
                    );
                    self.count("requests_sent");
                }
                Err(e) => log!("event=send-error peer={} error=\"{e}\"", r.peer),
            }
        }
        changed
    }

    /// One datagram; whether state (not just counters) changed.
    fn datagram(&mut self, bytes: &[u8], from: SocketAddr) -> bool {
        let src = canon(from.ip());
        if bytes.len() < wire::MSG_LEN {
            // Never answered: an answer would be larger than what came.
            self.count("dropped_short");
            return false;
        }
        let Some(pi) = self.peers.iter().position(|p| canon(p.conf.address) == src) else {
            self.count("refused_not_allowed");
            self.refusal_log(format_args!(
                "event=refused from={from} reason=not-on-allow-list"
            ));
            self.error_answer(from, bytes, ResultCode::NotAuthorized);
            return false;
        };
        let name = self.peers[pi].conf.name.clone();
        if let Some(result) = wire::unauthenticated_error(bytes) {
            // A peer that could not authenticate our request (or could
            // not parse it) says so unsigned: a hint for the operator,
            // never acted on.
            self.count("unauthenticated_errors_received");
            self.refusal_log(format_args!(
                "event=peer-error peer={name} result={} (unsigned: check keys and clocks)",
                result.name()
            ));
            return false;
        }
        let (msg, tag) = match Msg::decode(bytes) {
            Ok(m) => m,
            Err(e) => {
                self.count("refused_malformed");
                self.refusal_log(format_args!(
                    "event=refused peer={name} reason=malformed detail=\"{e}\""
                ));
                self.error_answer(from, bytes, e.result());
                return false;
            }
        };
        let now = now_ms();
        let p = &self.peers[pi];
        if let Err(r) = auth::verify(&p.key, &p.window, &msg, &tag, now) {
            self.count(&format!("refused_{}", r.name().replace('-', "_")));
            self.refusal_log(format_args!(
                "event=refused peer={name} reason={}",
                r.name()
            ));
            if !msg.answer {
                self.error_answer(from, bytes, ResultCode::NotAuthorized);
            }
            return false;
        }
        if msg.answer {
            self.count("answers_received");
            // Bound to its direction: our address, our nonce.  Anything
            // else (a reflected answer, a late duplicate) changes nothing.
            let ours = self.peers[pi].local.map(|a| wire::to_wire_addr(canon(a)));
            if ours != Some(wire::to_wire_addr(canon(wire::from_wire_addr(msg.client)))) {
                self.count("answers_unmatched");
                return false;
            }
            let Some(events) = self.client.answer(&name, &msg, now, jitter) else {
                self.count("answers_unmatched");
                return false;
            };
            self.peers[pi].window.accept(msg.seq);
            for e in &events {
                self.log_client(pi, e);
            }
            return true;
        }
        self.count("requests_received");
        // Whether the peer holds this mapping already (a renewal).
        let renewal = self
            .state
            .server
            .records
            .iter()
            .any(|r| r.peer == name && r.aid == msg.aid && r.port == msg.port);
        let claimed = wire::from_wire_addr(msg.client).to_canonical();
        let answer = if claimed != src {
            // Not accepted into the window: a request reflected back to
            // its sender (which names the sender as client) lands here.
            Answer {
                result: ResultCode::AddressMismatch,
                negotiated: 0,
                lifetime: 0,
                outcome: Outcome::Refused(
                    ResultCode::AddressMismatch,
                    format!("request says {claimed} but came from {src}"),
                ),
                state_lost: false,
            }
        } else {
            self.peers[pi].window.accept(msg.seq);
            let policy = Policy {
                exports: &self.cfg.exports,
                max_lifetime: self.cfg.max_lifetime,
                max_per_peer: self.cfg.max_mappings_per_peer,
            };
            self.state
                .server
                .handle(&policy, &mut Kernel(&self.conn), &name, &msg, now)
        };
        let answer = self.peers_before_granting(answer, renewal, pi, &name, &msg);
        // The peer negotiated (or deleted) this mapping itself: the peers
        // adopted for it on a lost state file are its record's now, or
        // gone with it.
        if !matches!(answer.outcome, Outcome::Refused(..)) {
            let addrs = self.peers[pi].conf.all_addresses();
            self.adopted.retain(|(a, p, ip, _)| {
                !(*a == msg.aid && *p == msg.port && addrs.iter().any(|x| canon(*x) == canon(*ip)))
            });
        }
        if answer.state_lost {
            self.new_epoch("an allocation peers held was gone or moved");
        }
        match &answer.outcome {
            Outcome::Granted { negotiated, lifetime, created } => log!(
                "event=granted peer={name} aid={} port={} negotiated={negotiated} lifetime={lifetime} created={created}",
                msg.aid, msg.port
            ),
            Outcome::Deleted { released } => {
                log!("event=deleted peer={name} aid={} port={} released={released}", msg.aid, msg.port)
            }
            Outcome::Absent => log!("event=deleted peer={name} aid={} port={} (had none)", msg.aid, msg.port),
            Outcome::Refused(code, why) => self.refusal_log(format_args!(
                "event=refused peer={name} aid={} port={} result={} reason=\"{why}\"",
                msg.aid, msg.port, code.name()
            )),
        }
        self.count(&format!(
            "answers_{}",
            answer.result.name().replace('-', "_")
        ));
        let p = &mut self.peers[pi];
        let reply = Msg {
            answer: true,
            result: answer.result,
            key_id: p.key.id,
            epoch: self.state.epoch,
            seq: p.seq.next(now * 1000),
            time_ms: now,
            lifetime: answer.lifetime,
            negotiated: answer.negotiated,
            ..msg
        };
        if let Err(e) = self.sock.send_to(&p.key.seal(&reply), from) {
            log!("event=send-error peer={name} error=\"{e}\"");
        }
        !matches!(answer.outcome, Outcome::Refused(..))
    }

    /// A new epoch: peers that see it ask for all their mappings again.
    fn new_epoch(&mut self, why: &str) {
        self.state.epoch = u32::from_ne_bytes(random::<4>()).max(1);
        log!(
            "event=new-epoch epoch={:08x} reason=\"{why}\"",
            self.state.epoch
        );
        self.count("epochs");
    }

    /// Logs a refusal, at most [`REFUSAL_LOGS_PER_SEC`] a second (each a
    /// sender may cause at will); how many were left out is logged with
    /// the next one.
    fn refusal_log(&mut self, line: std::fmt::Arguments<'_>) {
        let sec = now_ms() / 1000;
        let (at, n, left_out) = &mut self.refusal_logs;
        if *at != sec {
            *at = sec;
            *n = 0;
        }
        if *n >= REFUSAL_LOGS_PER_SEC {
            *left_out += 1;
            return;
        }
        *n += 1;
        if *left_out > 0 {
            log!("event=refusals-not-logged count={left_out}");
            *left_out = 0;
        }
        log!("{line}");
    }

    /// An unsigned error answer, within [`ERROR_ANSWERS_PER_SEC`]; never
    /// to an answer, or to anything that looks like one.
    fn error_answer(&mut self, to: SocketAddr, bytes: &[u8], result: ResultCode) {
        if bytes.len() > 1 && bytes[1] & 0x80 != 0 {
            return;
        }
        let sec = now_ms() / 1000;
        if self.error_budget.0 != sec {
            self.error_budget = (sec, 0);
        }
        if self.error_budget.1 >= ERROR_ANSWERS_PER_SEC {
            self.count("error_answers_suppressed");
            return;
        }
        self.error_budget.1 += 1;
        let _ = self.sock.send_to(&wire::error_answer(result), to);
    }

    fn log_client(&mut self, pi: usize, e: &Event) {
        match e {
            Event::Granted {
                want: w,
                negotiated,
                lifetime,
            } => {
                log!(
                    "event=negotiated peer={} aid={} port={} negotiated={negotiated} lifetime={lifetime}",
                    w.peer, w.aid, w.port
                );
                self.count("client_granted");
            }
            Event::Deleted { want: w, result } => {
                log!(
                    "event=released side=client peer={} aid={} port={} result={}",
                    w.peer,
                    w.aid,
                    w.port,
                    result.name()
                );
                self.count("client_released");
            }
            Event::Refused { want: w, result } => {
                log!(
                    "event=refused-by-peer peer={} aid={} port={} result={}",
                    w.peer,
                    w.aid,
                    w.port,
                    result.name()
                );
                if *result == ResultCode::AddressMismatch {
                    // Our address changed: look it up again.
                    self.peers[pi].local = None;
                }
                self.count("client_refused");
            }
            Event::PeerRestarted { peer } => {
                log!("event=peer-restarted peer={peer} (its mappings are requested again)");
                self.count("peer_restarts");
            }
        }
    }
}

/// This host's address towards `peer` (what the kernel would pick).
fn local_address(peer: SocketAddr) -> std::io::Result<IpAddr> {
    let any: SocketAddr = match peer {
        SocketAddr::V4(_) => "0.0.0.0:0".parse().unwrap(),
        SocketAddr::V6(_) => "[::]:0".parse().unwrap(),
    };
    let s = UdpSocket::bind(any)?;
    s.connect(peer)?;
    Ok(s.local_addr()?.ip())
}

/// `vpmctl peer show`: the state file of this namespace's agent.
pub fn show(state_file: Option<&Path>, json: bool) -> Result<String> {
    let path = match state_file {
        Some(p) => p.to_path_buf(),
        None => default_state_file()?,
    };
    let Some(st) = StateFile::read(&path)? else {
        return Err(Error::Input(format!(
            "no agent state at {}: is vpmctl agent running in this network namespace?",
            path.display()
        )));
    };
    if json {
        return Ok(serde_json::to_string(&st).expect("plain data"));
    }
    let now = now_ms();
    let left = |t: u64| format!("{}s", t.saturating_sub(now) / 1000);
    let mut out = format!("epoch {:08x}\n", st.epoch);
    out += "asked of peers (client):\n";
    for e in &st.client {
        let w = &e.want;
        let (neg, life, state) = match &e.status {
            super::client::Status::Granted {
                negotiated,
                expires_ms,
            } => (
                negotiated.to_string(),
                left(*expires_ms),
                "granted".to_string(),
            ),
            super::client::Status::Pending => ("-".into(), "-".into(), "pending".into()),
            super::client::Status::Refused { result } => {
                ("-".into(), "-".into(), format!("refused: {result}"))
            }
        };
        out += &format!(
            "  peer {:<12} aid {:<12} port {:<5} {:<8} negotiated {neg:<5} left {life:<6} {state}\n",
            w.peer, w.aid, w.port, w.proto.to_string(),
        );
    }
    out += "granted to peers (server):\n";
    for r in &st.server.records {
        out += &format!(
            "  peer {:<12} aid {:<12} port {:<5} {:<8} negotiated {:<5} left {}\n",
            r.peer,
            r.aid,
            r.port,
            r.proto.to_string(),
            r.negotiated,
            left(r.expires_ms)
        );
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alloc(aid: &str, port: u16, peers: &[&str]) -> mapping::Mapping {
        mapping::Mapping {
            aid: aid.parse().unwrap(),
            port,
            proto: Proto::Both,
            anon_port: 20000 + port,
            cgroup: None,
            cgroup_id: None,
            pkts_in: 0,
            bytes_in: 0,
            pkts_out: 0,
            bytes_out: 0,
            peers: peers.iter().map(|p| p.parse().unwrap()).collect(),
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn peer_sets_follow_the_records_of_exported_allocations_only() {
        let live = [
            alloc("a", 9000, &["192.0.2.1", "192.0.2.9"]),
            alloc("b", 9000, &[]),
            // Not exported: the operator's, left alone.
            alloc("z", 9000, &["192.0.2.7"]),
        ];
        let a: Aid = "a".parse().unwrap();
        let b: Aid = "b".parse().unwrap();
        let want = [
            (a.clone(), 9000, ip("192.0.2.1")),
            // The same address twice (two records): added once.
            (b.clone(), 9000, ip("::ffff:192.0.2.1")),
            (b.clone(), 9000, ip("192.0.2.1")),
            (b.clone(), 9000, ip("2001:db8::1")),
            // No such allocation: nothing to do.
            (a.clone(), 53, ip("192.0.2.1")),
        ];
        let exported = |aid: &Aid, port: u16| port == 9000 && aid.as_str() != "z";
        let ours = |ip: IpAddr| ip == "192.0.2.9".parse::<IpAddr>().unwrap();
        let got = peer_changes(&live, &want, exported, ours);
        assert_eq!(
            got,
            vec![
                (a.clone(), 9000, ip("192.0.2.9"), false),
                (b.clone(), 9000, ip("192.0.2.1"), true),
                (b.clone(), 9000, ip("2001:db8::1"), true),
            ]
        );
        // Applied, nothing is left to do.
        let after = [
            alloc("a", 9000, &["192.0.2.1"]),
            alloc("b", 9000, &["192.0.2.1", "2001:db8::1"]),
            alloc("z", 9000, &["192.0.2.7"]),
        ];
        assert!(peer_changes(&after, &want, exported, ours).is_empty());
        // No records: every peer of exported allocations goes.
        assert_eq!(peer_changes(&after, &[], exported, ours).len(), 3);
        // An address of a configured peer goes from an allocation that is
        // not exported (any more); the operator's others stay.
        let unexported = [alloc("z", 9000, &["192.0.2.9", "192.0.2.7"])];
        assert_eq!(
            peer_changes(&unexported, &[], exported, ours),
            vec![("z".parse().unwrap(), 9000, ip("192.0.2.9"), false)]
        );
    }

    #[test]
    fn a_peer_s_addresses_are_its_address_then_the_others_once() {
        let conf: PeerConf = toml::from_str(
            r#"name = "s"
address = "192.0.2.1"
addresses = ["2001:db8::1", "::ffff:192.0.2.1"]
key_id = 1
key = "00""#,
        )
        .unwrap();
        assert_eq!(conf.all_addresses(), [ip("192.0.2.1"), ip("2001:db8::1")]);
    }
}

#[cfg(test)]
mod config_tests {
    use super::*;

    fn check(text: &str) -> std::result::Result<(), String> {
        toml::from_str::<Config>(text).unwrap().check()
    }

    #[test]
    fn an_address_belongs_to_one_peer_whichever_list_names_it() {
        let key = "0".repeat(64);
        let two = |a: &str, b: &str| {
            format!(
                "[[peer]]\nname = \"x\"\naddress = \"192.0.2.1\"\naddresses = [{a}]\nkey_id = 1\nkey = \"{key}\"\n\
                 [[peer]]\nname = \"y\"\naddress = \"192.0.2.2\"\naddresses = [{b}]\nkey_id = 2\nkey = \"{key}\"\n"
            )
        };
        assert!(check(&two("\"2001:db8::1\"", "\"2001:db8::2\"")).is_ok());
        let e = check(&two("\"2001:db8::1\"", "\"2001:db8::1\"")).unwrap_err();
        assert!(e.contains("2001:db8::1 belongs to two peers"), "{e}");
        let e = check(&two("", "\"::ffff:192.0.2.1\"")).unwrap_err();
        assert!(e.contains("belongs to two peers"), "{e}");
    }
}
