// SPDX-License-Identifier: GPL-2.0

//! vpm's in-kernel micro-benchmark, compiled only into a `VPM_BENCH=1`
//! build (`make bench`; a production vpm.ko has none of it).
//!
//! Under software emulation a hook costing tens of nanoseconds vanishes in
//! the noise of a packet-rate measurement, so this times vpm's hook
//! itself: it runs `vpm_nf::hook` N times on a prepared skb, in the
//! namespace of the task that asks, with bottom halves disabled as for a
//! received packet, and reports nanoseconds per packet; and it times the
//! pieces of the hit path one by one, to show where the time goes.
//!
//! The trigger is `/sys/kernel/debug/vpm/bench`: write a command, read the
//! result.  A command is `KIND PKT ITERS REPS [FLOWS]`:
//!
//! - `PKT`: `udp4`, `tcp4`, `udp6` or `tcp6`; client 10.9.0.2 / fd09::2
//!   port 40000, server 10.9.0.1 / fd09::1 (which the caller makes local),
//!   fixed port [`FIXED`] (which the caller multiplexes) or [`MISS`] (which
//!   it must not).
//! - `KIND`, the hook on: `hit` (one flow, pinned), `flows` (`FLOWS`
//!   client ports in turn, pinned after the first round), `new` (a new
//!   client address every packet: the flow table's insert and eviction
//!   path), `miss` (a port vpm does not multiplex), `out` (a TCP reply
//!   from the allocation's anonymous port, as the kernel's reset for it);
//!   or one piece of the hit path: `parse` (header copy-out and parsing),
//!   `local` (is the destination a local address), `views` (the port's
//!   view and its selection), `flow` (the flow table's lookup and
//!   refresh), `count` (the four per-CPU counter updates), `writable`
//!   (`skb_ensure_writable`), `clock` (the flow table's clock), `rcu`
//!   (an RCU read-side section), `skb` (the hook's view of the skb).
//!
//! The answer has one line per repetition, `NAME REP NS` (NAME is
//! `hook_PKT_KIND` or `part_PKT_KIND`), NS being the
//! mean nanoseconds per packet of that repetition (one decimal).  The hook
//! kinds undo the hook's rewrite before every packet; the time of the
//! undo alone, measured in the same repetition, is subtracted.

use core::fmt::{self, Write};
use core::hint::black_box;

use kernel::alloc::flags::GFP_KERNEL;
use kernel::debugfs::{Dir, File};
use kernel::new_mutex;
use kernel::prelude::*;
use kernel::sync::{rcu, Mutex};
use kernel::uaccess::UserSliceReader;

use crate::vpm_counters::{EntryStat, Stat};
use crate::vpm_csum;
use crate::vpm_flow::{FlowKey, Seen};
use crate::vpm_parse::{self, Packet, Parsed, IPPROTO_TCP, IPPROTO_UDP};
use crate::vpm_rules::{Family, Source};
use crate::vpm_state::NetState;
use crate::vpm_sys::bench::{in_softirq_context, now_ns, with_current_net, BenchSkb};
use crate::vpm_sys::now_secs;
use crate::vpm_uapi::{vpm_proto_VPM_PROTO_TCP as PROTO_TCP, vpm_proto_VPM_PROTO_UDP as PROTO_UDP};

/// The fixed port the caller multiplexes.
pub(crate) const FIXED: u16 = 9000;
/// A port the caller does not multiplex.
pub(crate) const MISS: u16 = 9001;
const CLIENT_PORT: u16 = 40000;
const PRE_ROUTING: u32 = kernel::bindings::nf_inet_hooks_NF_INET_PRE_ROUTING;
const POST_ROUTING: u32 = kernel::bindings::nf_inet_hooks_NF_INET_POST_ROUTING;
/// Longest packet built here (IPv6 + TCP + payload).
const MAX_PKT: usize = 40 + 20 + 8;
const MAX_ITERS: u32 = 200_000;
const MAX_REPS: u32 = 20;
const MAX_FLOWS: u32 = 65536;

/// The debugfs trigger; removed (waiting for a running benchmark) when
/// dropped.
///
/// Known limit: the kernel's Rust debugfs files carry no module owner,
/// so a process that keeps the file open across `rmmod` would have its
/// close call into the unloaded module.  The benchmark opens it per
/// command; nothing else should hold it (a test build only).
pub(crate) struct BenchFile {
    _file: Pin<KBox<File<Mutex<KVec<u8>>>>>,
    _dir: Dir,
}

impl BenchFile {
    /// Creates `/sys/kernel/debug/vpm/bench`.
    pub(crate) fn new() -> Result<Self> {
        let dir = Dir::new(c"vpm");
        let file = KBox::pin_init(
            dir.read_write_callback_file(
                c"bench",
                new_mutex!(KVec::new(), "vpm_bench"),
                &show,
                &run,
            ),
            GFP_KERNEL,
        )?;
        Ok(Self {
            _file: file,
            _dir: dir,
        })
    }
}

fn show(out: &Mutex<KVec<u8>>, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    f.write_str(core::str::from_utf8(&out.lock()).unwrap_or(""))
}

fn run(out: &Mutex<KVec<u8>>, r: &mut UserSliceReader) -> Result {
    let mut buf = [0u8; 64];
    let cmd = buf.get_mut(..r.len()).ok_or(EINVAL)?;
    r.read_slice(cmd)?;
    let cmd = Command::parse(core::str::from_utf8(cmd).map_err(|_| EINVAL)?)?;
    let mut out = out.lock();
    out.clear();
    with_current_net(|net| {
        let state = net.state::<NetState>().ok_or(ENODEV)?;
        let mut bench = Bench::new(net, state, &cmd)?;
        let mut w = Out(&mut out);
        for rep in 0..cmd.reps {
            let ns_x10 = bench.rep(&cmd);
            writeln!(w, "{} {} {}.{}", cmd, rep, ns_x10 / 10, ns_x10 % 10).map_err(|_| ENOMEM)?;
        }
        Ok(())
    })
    .ok_or(ENODEV)?
}

/// Appends formatted text to the result.
struct Out<'a>(&'a mut KVec<u8>);

impl Write for Out<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.0
            .extend_from_slice(s.as_bytes(), GFP_KERNEL)
            .map_err(|_| fmt::Error)
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Hit,
    Flows,
    New,
    Miss,
    Out,
    Parse,
    Local,
    Views,
    Flow,
    Count,
    Writable,
    Clock,
    Rcu,
    Skb,
}

struct Command {
    kind: Kind,
    v6: bool,
    tcp: bool,
    iters: u32,
    reps: u32,
    flows: u32,
    /// `hook_PKT_KIND` or `part_PKT_KIND`, as reported.
    name: KVec<u8>,
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(core::str::from_utf8(&self.name).unwrap_or("?"))
    }
}

impl Command {
    fn parse(s: &str) -> Result<Self> {
        let mut w = s.split_ascii_whitespace();
        let (Some(kind), Some(pkt), Some(iters), Some(reps)) =
            (w.next(), w.next(), w.next(), w.next())
        else {
            return Err(EINVAL);
        };
        let flows = w
            .next()
            .map_or(Ok(1), |f| f.parse::<u32>().map_err(|_| EINVAL))?;
        let kind_of = match kind {
            "hit" => Kind::Hit,
            "flows" => Kind::Flows,
            "new" => Kind::New,
            "miss" => Kind::Miss,
            "out" => Kind::Out,
            "parse" => Kind::Parse,
            "local" => Kind::Local,
            "views" => Kind::Views,
            "flow" => Kind::Flow,
            "count" => Kind::Count,
            "writable" => Kind::Writable,
            "clock" => Kind::Clock,
            "rcu" => Kind::Rcu,
            "skb" => Kind::Skb,
            _ => return Err(EINVAL),
        };
        let (v6, tcp) = match pkt {
            "udp4" => (false, false),
            "tcp4" => (false, true),
            "udp6" => (true, false),
            "tcp6" => (true, true),
            _ => return Err(EINVAL),
        };
        let iters = iters.parse::<u32>().map_err(|_| EINVAL)?;
        let reps = reps.parse::<u32>().map_err(|_| EINVAL)?;
        if !(1..=MAX_ITERS).contains(&iters)
            || !(1..=MAX_REPS).contains(&reps)
            || !(1..=MAX_FLOWS).contains(&flows)
            || (kind_of == Kind::Out && !tcp)
            || w.next().is_some()
        {
            return Err(EINVAL);
        }
        let hook = matches!(
            kind_of,
            Kind::Hit | Kind::Flows | Kind::New | Kind::Miss | Kind::Out
        );
        let mut name = KVec::new();
        for part in [if hook { "hook_" } else { "part_" }, pkt, "_", kind] {
            name.extend_from_slice(part.as_bytes(), GFP_KERNEL)?;
        }
        Ok(Self {
            kind: kind_of,
            v6,
            tcp,
            iters,
            reps,
            flows: match kind_of {
                Kind::Flows => flows,
                Kind::New => MAX_FLOWS,
                _ => 1,
            },
            name,
        })
    }
}

/// The addresses of packet number `i` of a run: the client's address
/// varies for [`Kind::New`], its port for [`Kind::Flows`].
fn endpoints(cmd: &Command, i: u32) -> ([u8; 16], [u8; 16], u16) {
    let (mut client, mut server) = ([0u8; 16], [0u8; 16]);
    if cmd.v6 {
        client[..2].copy_from_slice(&[0xfd, 0x09]);
        server[..2].copy_from_slice(&[0xfd, 0x09]);
        client[15] = 2;
        server[15] = 1;
        if cmd.kind == Kind::New {
            client[12..14].copy_from_slice(&(i as u16).to_be_bytes());
        }
    } else {
        client[..4].copy_from_slice(&[10, 9, 0, 2]);
        server[..4].copy_from_slice(&[10, 9, 0, 1]);
        if cmd.kind == Kind::New {
            // 10.(9+hi).lo.2: 65,536 distinct clients.
            client[1] = 9u8.wrapping_add((i >> 8) as u8);
            client[2] = i as u8;
        }
    }
    let port = if cmd.kind == Kind::Flows {
        CLIENT_PORT.wrapping_add(i as u16)
    } else {
        CLIENT_PORT
    };
    (client, server, port)
}

/// An IPv4 or IPv6 packet, TCP or UDP, from `src`:`sport` to `dst`:`dport`
/// with valid checksums (TCP: an ACK, or a SYN for `syn`), 8 bytes of
/// payload.  Returns the bytes and their length.
fn packet(
    v6: bool,
    tcp: bool,
    (src, sport): ([u8; 16], u16),
    (dst, dport): ([u8; 16], u16),
    flags: u8,
) -> ([u8; MAX_PKT], usize) {
    let mut p = [0u8; MAX_PKT];
    let l4_len = if tcp { 20 } else { 8 } + 8;
    let proto = if tcp { IPPROTO_TCP } else { IPPROTO_UDP };
    let (l4, pseudo) = if v6 {
        p[0] = 0x60;
        p[4..6].copy_from_slice(&(l4_len as u16).to_be_bytes());
        p[6] = proto;
        p[7] = 64;
        p[8..24].copy_from_slice(&src);
        p[24..40].copy_from_slice(&dst);
        let mut sum = vpm_csum::sum_bytes(&p[8..40], 0);
        sum += l4_len as u64 + u64::from(proto);
        (40, sum)
    } else {
        p[0] = 0x45;
        p[2..4].copy_from_slice(&((20 + l4_len) as u16).to_be_bytes());
        p[6] = 0x40;
        p[8] = 64;
        p[9] = proto;
        p[12..16].copy_from_slice(&src[..4]);
        p[16..20].copy_from_slice(&dst[..4]);
        let check = vpm_csum::checksum(&p[..20], 0);
        p[10..12].copy_from_slice(&check.to_be_bytes());
        let mut sum = vpm_csum::sum_bytes(&p[12..20], 0);
        sum += l4_len as u64 + u64::from(proto);
        (20, sum)
    };
    p[l4..l4 + 2].copy_from_slice(&sport.to_be_bytes());
    p[l4 + 2..l4 + 4].copy_from_slice(&dport.to_be_bytes());
    let check_at = if tcp {
        p[l4 + 4..l4 + 8].copy_from_slice(&1u32.to_be_bytes());
        p[l4 + 12] = 5 << 4;
        p[l4 + 13] = flags;
        p[l4 + 14..l4 + 16].copy_from_slice(&65535u16.to_be_bytes());
        l4 + 16
    } else {
        p[l4 + 4..l4 + 6].copy_from_slice(&(l4_len as u16).to_be_bytes());
        l4 + 6
    };
    let end = l4 + l4_len;
    p[end - 8..end].copy_from_slice(b"vpmbench");
    let mut check = vpm_csum::checksum(&p[l4..end], pseudo);
    if !tcp && check == 0 {
        check = 0xffff;
    }
    p[check_at..check_at + 2].copy_from_slice(&check.to_be_bytes());
    (p, end)
}

/// One benchmark's prepared packets.
struct Bench<'a> {
    state: &'a NetState,
    skb: BenchSkb<'a>,
    /// The packets, `len` bytes each, one per flow.
    pkts: KVVec<u8>,
    len: usize,
    pf: u8,
}

impl<'a> Bench<'a> {
    fn new(
        net: &crate::vpm_sys::bench::CurrentNet<'a>,
        state: &'a NetState,
        cmd: &Command,
    ) -> Result<Self> {
        let fixed = if cmd.kind == Kind::Miss { MISS } else { FIXED };
        let mut pkts = KVVec::new();
        let mut len = 0;
        for i in 0..cmd.flows {
            let (client, server, port) = endpoints(cmd, i);
            let (bytes, n) = if cmd.kind == Kind::Out {
                let anon = anon_port(state, cmd).ok_or(ENOENT)?;
                packet(cmd.v6, true, (server, anon), (client, port), 0x10)
            } else {
                // UDP, or a TCP SYN: a flow's first packet pins it.
                let flags = if cmd.tcp { 0x02 } else { 0 };
                packet(cmd.v6, cmd.tcp, (client, port), (server, fixed), flags)
            };
            pkts.extend_from_slice(&bytes[..n], GFP_KERNEL)?;
            len = n;
        }
        let skb = BenchSkb::new(net, &pkts[..len], cmd.v6)?;
        let pf = if cmd.v6 {
            kernel::bindings::NFPROTO_IPV6
        } else {
            kernel::bindings::NFPROTO_IPV4
        } as u8;
        let mut bench = Self {
            state,
            skb,
            pkts,
            len,
            pf,
        };
        // Pin the flows and warm the caches.
        bench.hook_loop(cmd, cmd.flows.max(1000));
        bench.check(cmd)?;
        Ok(bench)
    }

    /// Fails unless the hook translates the first packet (leaves it alone
    /// for a miss): a packet the parser rejected would time the wrong path.
    fn check(&mut self, cmd: &Command) -> Result {
        let at = if cmd.v6 { 40 } else { 20 } + if cmd.kind == Kind::Out { 0 } else { 2 };
        let before = [self.pkts[at], self.pkts[at + 1]];
        let len = self.len;
        self.skb.restore(&self.pkts[..len]);
        let view = self.skb.hook_view().ok_or(EIO)?;
        crate::vpm_nf::hook(self.state, view, self.pf, hooknum(cmd));
        let mut after = [0u8; 2];
        if !self.skb.hook_view().is_some_and(|v| v.read(at, &mut after)) {
            return Err(EIO);
        }
        self.skb.restore(&self.pkts[..len]);
        // EPROTO: the namespace lacks the addresses or the allocation.
        if (after != before) == (cmd.kind == Kind::Miss) {
            return Err(EPROTO);
        }
        Ok(())
    }

    fn pkt(&self, i: u32) -> &[u8] {
        pkt(&self.pkts, self.len, i)
    }

    /// Packets `0..iters` through the hook, each restored first; total ns.
    fn hook_loop(&mut self, cmd: &Command, iters: u32) -> u64 {
        let (state, pf, hooknum) = (self.state, self.pf, hooknum(cmd));
        timed(iters, |i| {
            self.skb.restore(pkt(&self.pkts, self.len, i));
            if let Some(view) = self.skb.hook_view() {
                black_box(crate::vpm_nf::hook(state, view, pf, hooknum));
            }
        })
    }

    /// The undo alone, as `hook_loop` does it; total ns.
    fn restore_loop(&mut self, iters: u32) -> u64 {
        timed(iters, |i| {
            self.skb.restore(pkt(&self.pkts, self.len, i));
            black_box(&self.skb);
        })
    }

    /// One repetition: mean ns per packet, times 10.
    fn rep(&mut self, cmd: &Command) -> u64 {
        let n = u64::from(cmd.iters);
        let total = match cmd.kind {
            Kind::Hit | Kind::Flows | Kind::New | Kind::Miss | Kind::Out => {
                let base = self.restore_loop(cmd.iters);
                self.hook_loop(cmd, cmd.iters).saturating_sub(base)
            }
            _ => self.part(cmd),
        };
        (total * 10).checked_div(n).unwrap_or(0)
    }

    /// One piece of the hit path, `cmd.iters` times; total ns.
    fn part(&mut self, cmd: &Command) -> u64 {
        let state = self.state;
        let pkt = self.pkt(0);
        let Parsed::Flow(flow) = (if cmd.v6 {
            vpm_parse::ipv6(pkt)
        } else {
            vpm_parse::ipv4(pkt)
        }) else {
            return 0;
        };
        let v6 = cmd.v6;
        let proto = if cmd.tcp { PROTO_TCP } else { PROTO_UDP };
        let key = FlowKey {
            proto: flow.proto,
            family: flow.family,
            fixed: flow.dport,
            port: flow.sport,
            addr: flow.src,
        };
        let src = Source {
            family: if v6 { Family::V6 } else { Family::V4 },
            addr: flow.src,
            port: flow.sport,
        };
        let len = flow.write_len();
        if cmd.kind == Kind::Skb {
            return timed(cmd.iters, |_| {
                black_box(self.skb.hook_view());
            });
        }
        let Some(mut skb) = self.skb.hook_view() else {
            return 0;
        };
        let iters = cmd.iters;
        match cmd.kind {
            Kind::Parse => timed(iters, |_| {
                black_box(if v6 {
                    vpm_parse::ipv6(&skb)
                } else {
                    vpm_parse::ipv4(&skb)
                });
            }),
            Kind::Local => timed(iters, |_| {
                black_box(skb.addr_is_local(&flow.dst));
            }),
            Kind::Views => timed(iters, |_| {
                let guard = rcu::read_lock();
                let t = state
                    .views
                    .fwd(FIXED, &guard)
                    .and_then(|v| v.select(&src, None, proto));
                black_box(t.map(|t| t.anon));
            }),
            Kind::Flow => timed(iters, |_| {
                let guard = rcu::read_lock();
                // As the hook does: one lookup, whose slot the refresh reuses.
                if let Some(p) = state
                    .views
                    .flows(&guard)
                    .and_then(|f| f.pinned(&key, now_secs()))
                {
                    let seen = Seen::Client {
                        tcp: cmd.tcp,
                        flags: 0x10,
                    };
                    black_box(p.touch(now_secs(), seen));
                }
            }),
            Kind::Count => {
                let guard = rcu::read_lock();
                let target = state
                    .views
                    .fwd(FIXED, &guard)
                    .and_then(|v| v.select(&src, None, proto));
                let Some(t) = target else {
                    return 0;
                };
                // As the hook does: two counters per call.
                timed(iters, |_| {
                    state.count2(Stat::PktsSeen, Stat::XlatIn);
                    t.counters
                        .add_packet(EntryStat::PktsIn, EntryStat::BytesIn, 60);
                })
            }
            Kind::Writable => timed(iters, |_| {
                black_box(skb.writable(len).is_some());
            }),
            Kind::Rcu => timed(iters, |_| {
                black_box(rcu::read_lock());
            }),
            _ => timed(iters, |_| {
                black_box(now_secs());
            }),
        }
    }
}

/// Packet `i` (modulo their number) of `pkts`, `len` bytes each.
fn pkt(pkts: &[u8], len: usize, i: u32) -> &[u8] {
    let n = (pkts.len() / len.max(1)).max(1);
    let at = (i as usize % n) * len;
    pkts.get(at..at + len).unwrap_or(&[])
}

/// The hook a command's packets go through.
fn hooknum(cmd: &Command) -> u32 {
    if cmd.kind == Kind::Out {
        POST_ROUTING
    } else {
        PRE_ROUTING
    }
}

/// The anonymous port of the fixed port's default selection.
fn anon_port(state: &NetState, cmd: &Command) -> Option<u16> {
    let guard = rcu::read_lock();
    let src = Source {
        family: if cmd.v6 { Family::V6 } else { Family::V4 },
        addr: [0; 16],
        port: CLIENT_PORT,
    };
    let proto = if cmd.tcp { PROTO_TCP } else { PROTO_UDP };
    state
        .views
        .fwd(FIXED, &guard)
        .and_then(|v| v.select(&src, None, proto))
        .map(|t| t.anon)
}

/// Iterations per softirq-context section: bottom halves go back on
/// between sections (a few milliseconds each under emulation), so pending
/// softirqs and RCU are not held off for a whole repetition.
const CHUNK: u32 = 2000;

/// Runs `f(0..iters)` in softirq context; total ns, sections summed.
fn timed(iters: u32, mut f: impl FnMut(u32)) -> u64 {
    let mut total = 0u64;
    let mut start = 0;
    while start < iters {
        let end = iters.min(start.saturating_add(CHUNK));
        total += in_softirq_context(|| {
            let t0 = now_ns();
            for i in start..end {
                f(i);
            }
            now_ns().saturating_sub(t0)
        });
        start = end;
    }
    total
}
