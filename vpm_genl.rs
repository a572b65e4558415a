// SPDX-License-Identifier: GPL-2.0

//! Handlers of the `vpm` generic netlink family (`uapi/vpm.yaml`).
//!
//! The C entry points the generated tables name (`gen/vpm_nl_gen.h`) are
//! defined at the end of this file; the floor's macros hand each handler a
//! safe [`GenlInfo`] (or [`Dump`]).  Handlers run in process context and
//! may sleep.  Every error sets an extended-ack message
//! that says what was wrong and, where it helps, what to do.

use kernel::prelude::*;

use crate::vpm_counters::{EntryStat, Stat};
use crate::vpm_error::TableError;
use crate::vpm_keys::{Aid, Key, RuleKey, AID_MAX_LEN};
use crate::vpm_rules::{Family, Match, Peer, RuleError, PEERS_PER_MAPPING};
use crate::vpm_state::NetState;
use crate::vpm_sys::{
    self, cgroup_id, Dump, DumpCursor, DumpMsg, Event, GenlInfo, PutAttrs, Reply,
};
use crate::vpm_table::{Cgroup, Mapping, Table, PROTO_ALL};
use crate::vpm_uapi as uapi;

/// `get-status`: module version, hooks and counters of the caller's namespace.
pub(crate) fn get_status(info: &GenlInfo<'_>) -> Result {
    let state = info.state::<NetState>()?;
    // The version, a u32 and at most 16 uints of 12 bytes.
    let mut reply = Reply::new(info, 32 + 8 + 16 * 12)?;
    const _: () = assert!(Stat::COUNT < 16);
    reply.put_str(uapi::VPM_A_STATUS_VERSION, crate::VERSION)?;
    reply.put_u32(uapi::VPM_A_STATUS_HOOKS, state.hooks())?;
    for (attr, stat) in [
        (uapi::VPM_A_STATUS_PKTS_SEEN, Stat::PktsSeen),
        (uapi::VPM_A_STATUS_PKTS_XLAT_IN, Stat::XlatIn),
        (uapi::VPM_A_STATUS_PKTS_XLAT_OUT, Stat::XlatOut),
        (uapi::VPM_A_STATUS_PKTS_NO_AID, Stat::NoAid),
        (uapi::VPM_A_STATUS_PKTS_MALFORMED, Stat::Malformed),
        (uapi::VPM_A_STATUS_PKTS_FRAGMENTS, Stat::Fragments),
        (uapi::VPM_A_STATUS_PKTS_ICMP_XLAT, Stat::IcmpXlat),
        (uapi::VPM_A_STATUS_FLOWS_NEW, Stat::FlowsNew),
        (uapi::VPM_A_STATUS_FLOWS_EXPIRED, Stat::FlowsExpired),
        (uapi::VPM_A_STATUS_FLOWS_EVICTED, Stat::FlowsEvicted),
        (uapi::VPM_A_STATUS_FLOWS_UNPINNED, Stat::FlowsUnpinned),
        (uapi::VPM_A_STATUS_PKTS_DROPPED, Stat::Dropped),
        (uapi::VPM_A_STATUS_PKTS_FOREIGN, Stat::Foreign),
        (uapi::VPM_A_STATUS_PKTS_PEER, Stat::Peer),
    ] {
        reply.put_uint(attr, state.read(stat))?;
    }
    reply.put_uint(uapi::VPM_A_STATUS_FLOWS_ACTIVE, state.flows_active())?;
    reply.send()
}

/// `add-mapping`: allocate (or return) the anonymous port of (aid, port).
///
/// Never sleeps waiting for other users: a handler runs under generic
/// netlink's global lock (`cb_lock`), so a wait here would hold up every
/// genetlink request and family (un)registration on the system.  (The
/// first allocation of a namespace does sleep briefly, on netfilter's
/// hook mutex, to register the hooks: see [`sync_hooks`].)  Queued
/// allocation is the client's job: on -ENOSPC it listens on the `events`
/// group and retries (`vpmctl add --wait`).
pub(crate) fn add_mapping(info: &GenlInfo<'_>) -> Result {
    let key = req_key(info)?;
    let protos = match opt_u32(info, uapi::VPM_A_MAPPING_PROTO)? {
        None => PROTO_ALL,
        Some(0) => {
            info.set_err(c"proto: name at least one of tcp, udp");
            return Err(EINVAL);
        }
        Some(p) => p,
    };
    let want = opt_u16(info, uapi::VPM_A_MAPPING_ANON_PORT)?;
    if opt_u32(info, uapi::VPM_A_MAPPING_WAIT_MS)?.unwrap_or(0) != 0 {
        info.set_err(c"wait-ms: the kernel never waits for a free port; waiting is the client's job: retry on ENOSPC after a mapping-del, flush or config event (vpmctl add --wait does)");
        return Err(EOPNOTSUPP);
    }
    let mut cgroup = req_cgroup(info)?;
    let state = info.state::<NetState>()?;
    let mut table = state.table.lock();
    // The reply is allocated before the table changes, sized for the
    // larger of the request's cgroup path and the existing allocation's:
    // once the change is made (and announced), nothing may fail.
    let cgroup_len = [
        cgroup.as_ref(),
        table.get(&key).and_then(|m| m.cgroup.as_ref()),
    ]
    .into_iter()
    .flatten()
    .map(|c| c.path.len())
    .max();
    let mut reply = Reply::new(info, mapping_size(cgroup_len))?;
    let created = table.get(&key).is_none();
    let changed = table
        .add(key, protos, want, &mut cgroup)
        .map_err(|e| table_error(info, e))?;
    if let Err(e) = sync_hooks(info, &table) {
        // Without hooks the new allocation would translate nothing: take
        // it back (port, views, reservation, cgroup; memory made for it,
        // such as the flow table, stays until the namespace goes).
        // Registering fails only when the hooks were off, so the table was
        // empty and the entry is alone on its port, which makes the delete
        // one that needs no memory and cannot fail.  No event or reply has
        // named the entry yet.
        if created {
            let _ = table.del(&key);
        }
        return Err(e);
    }
    // `add` succeeded, so the allocation exists.
    let mapping = table.get(&key).ok_or(ENOENT)?;
    if changed {
        notify_mapping(info, uapi::VPM_CMD_MAPPING_NEW_NTF, &key, mapping);
    }
    // Cannot fail: the reply was sized for exactly these attributes.
    put_mapping(&mut reply, &key, mapping)?;
    drop(table);
    // The allocation is made: do not report a failure for it.  A reply the
    // requester's full socket cannot take shows there as an overrun
    // (ENOBUFS), which tells it to look (get-mapping) rather than that the
    // add failed.
    let _ = reply.send();
    Ok(())
}

/// Makes the namespace's netfilter hooks follow its table: registered
/// while it has an allocation, unregistered once it has none.  Every
/// handler that adds or removes allocations calls it after the change,
/// under the table's lock, so the two never disagree for longer than a
/// request.
///
/// Hooks cost every packet of a namespace, and any user can make the
/// kernel load vpm (the family's alias): a namespace vpm has nothing for
/// must not pay for it.  Registering can fail (out of memory, or
/// netfilter's limit of 1024 hooks at one hook point); unregistering
/// cannot.
fn sync_hooks(info: &GenlInfo<'_>, table: &Table) -> Result {
    info.set_hooks::<NetState>(!table.is_empty())
        .inspect_err(|e| info.set_err(hooks_error(*e)))
}

/// The extended-ack message for hooks that could not be registered.
fn hooks_error(e: Error) -> &'static CStr {
    if e == E2BIG {
        c"a hook point of this namespace already has netfilter's limit of 1024 hooks (nftables chains, iptables tables): remove some, then add again"
    } else if e == ENOMEM {
        c"out of memory registering vpm's netfilter hooks in this namespace: nothing was added"
    } else {
        c"could not register vpm's netfilter hooks in this namespace: nothing was added"
    }
}

/// Attribute bytes of a mapping message (see [`put_mapping`]) whose
/// cgroup path, if any, has `cgroup_path` bytes: room for every peer the
/// allocation may hold.
fn mapping_size(cgroup_path: Option<usize>) -> usize {
    // aid (up to 32 with NUL, padded), three u16/u32 attributes, four uints,
    // the cgroup path and id when set, and up to 16 peers of 16 bytes.
    let cgroup = cgroup_path.map_or(0, |len| 4 + len + 1 + 3 + 12);
    (4 + 32) + 3 * 8 + 4 * 12 + cgroup + PEERS_PER_MAPPING * (4 + 16)
}

/// Attribute bytes of `m` as a mapping message.
fn mapping_size_of(m: &Mapping) -> usize {
    mapping_size(m.cgroup.as_ref().map(|c| c.path.len()))
}

/// The cgroup of an add-mapping request, resolved to its id.
fn req_cgroup(info: &GenlInfo<'_>) -> Result<Option<Cgroup>> {
    let Some(raw) = info.attr(uapi::VPM_A_MAPPING_CGROUP) else {
        return Ok(None);
    };
    // The policy (NLA_NUL_STRING) guarantees a NUL within the payload.
    let len = raw.iter().position(|&b| b == 0).ok_or(EINVAL)?;
    let path = CStr::from_bytes_with_nul(&raw[..=len]).map_err(|_| EINVAL)?;
    let (id, level) = cgroup_id(path).inspect_err(|e| {
        if *e == ENOENT || *e == ENOTDIR {
            info.set_err(c"cgroup: no such cgroup v2 directory (give its path below the cgroup2 root, e.g. /vpm/a)");
        } else {
            info.set_err(c"cgroup: cannot resolve the cgroup v2 path");
        }
    })?;
    let mut path = KVec::with_capacity(len, GFP_KERNEL_ACCOUNT)?;
    path.extend_from_slice(&raw[..len], GFP_KERNEL_ACCOUNT)?;
    Ok(Some(Cgroup { id, level, path }))
}

/// `del-mapping`: release the allocation of (aid, port).
pub(crate) fn del_mapping(info: &GenlInfo<'_>) -> Result {
    let key = req_key(info)?;
    let mut table = info.state::<NetState>()?.table.lock();
    // The rules the allocation takes with it, for their rule-del events
    // (collected first: once the table changed, nothing may fail).
    let rules = table.rules_of(&key).map_err(|e| table_error(info, e))?;
    let mapping = table.del(&key).map_err(|e| table_error(info, e))?;
    // Announced under the lock (handlers run in parallel): a listener
    // sees changes in the order they were made.
    for rk in &rules {
        notify_rule(info, uapi::VPM_CMD_RULE_DEL_NTF, rk, &key.aid);
    }
    notify_mapping(info, uapi::VPM_CMD_MAPPING_DEL_NTF, &key, &mapping);
    // Unregistering cannot fail.
    let _ = sync_hooks(info, &table);
    drop(table);
    Ok(())
}

/// `get-mapping` (do): one allocation.
pub(crate) fn get_mapping(info: &GenlInfo<'_>) -> Result {
    let key = req_key(info)?;
    let table = info.state::<NetState>()?.table.lock();
    let mapping = table
        .get(&key)
        .ok_or_else(|| table_error(info, TableError::NotFound))?;
    let mut reply = Reply::new(info, mapping_size_of(mapping))?;
    put_mapping(&mut reply, &key, mapping)?;
    drop(table);
    reply.send()
}

/// `flush`: release every allocation and rule of the namespace.  One
/// flush event stands for all of them (per-entry events could be 131,070
/// messages, more than a listener's socket holds).
pub(crate) fn flush(info: &GenlInfo<'_>) -> Result {
    let mut table = info.state::<NetState>()?.table.lock();
    table.flush();
    // Under the lock, like every event: listeners see changes in order.
    if let Some(event) = Event::new(info, uapi::VPM_CMD_FLUSH_NTF) {
        event.send();
    }
    // Unregistering cannot fail.
    let _ = sync_hooks(info, &table);
    drop(table);
    Ok(())
}

/// `get-config`: range, limit and usage.
pub(crate) fn get_config(info: &GenlInfo<'_>) -> Result {
    // Two u16 and three u32 attributes.
    let mut reply = Reply::new(info, 5 * 8)?;
    put_config(&mut reply, &info.state::<NetState>()?.table.lock())?;
    reply.send()
}

fn put_config(msg: &mut impl PutAttrs, table: &Table) -> Result {
    let (lo, hi, max, entries, rules) = table.config();
    msg.put_u16(uapi::VPM_A_CONFIG_RANGE_LO, lo)?;
    msg.put_u16(uapi::VPM_A_CONFIG_RANGE_HI, hi)?;
    msg.put_u32(uapi::VPM_A_CONFIG_MAX_ENTRIES, max)?;
    msg.put_u32(uapi::VPM_A_CONFIG_ENTRIES, entries)?;
    msg.put_u32(uapi::VPM_A_CONFIG_RULES, rules)
}

/// Tells the "events" group about a mapping change (if anyone listens).
fn notify_mapping(info: &GenlInfo<'_>, cmd: u32, key: &Key, mapping: &Mapping) {
    if let Some(mut event) = Event::new(info, cmd) {
        if put_mapping(&mut event, key, mapping).is_ok() {
            event.send();
        }
    }
}

/// `set-config`: change the range and/or the limit, all or nothing.
pub(crate) fn set_config(info: &GenlInfo<'_>) -> Result {
    let lo = opt_u16(info, uapi::VPM_A_CONFIG_RANGE_LO)?;
    let hi = opt_u16(info, uapi::VPM_A_CONFIG_RANGE_HI)?;
    let max = opt_u32(info, uapi::VPM_A_CONFIG_MAX_ENTRIES)?;
    let range = match (lo, hi) {
        (Some(lo), Some(hi)) => Some((lo, hi)),
        (None, None) => None,
        _ => {
            info.set_err(c"range-lo and range-hi must be given together");
            return Err(EINVAL);
        }
    };
    if range.is_none() && max.is_none() {
        info.set_err(c"nothing to change: give range-lo/range-hi or max-entries");
        return Err(EINVAL);
    }
    let mut table = info.state::<NetState>()?.table.lock();
    table
        .set_config(range, max)
        .map_err(|e| table_error(info, e))?;
    // Under the lock, like every event: listeners see changes in order.
    if let Some(mut event) = Event::new(info, uapi::VPM_CMD_CONFIG_NTF) {
        if put_config(&mut event, &table).is_ok() {
            event.send();
        }
    }
    drop(table);
    Ok(())
}

/// Where a mapping dump resumes: after the key it sent last.
#[derive(Clone, Copy)]
#[repr(C)]
struct MappingCursor {
    started: u8,
    aid_len: u8,
    port: u16,
    aid: [u8; AID_MAX_LEN],
}

// SAFETY: Plain integers and bytes: every bit pattern is a valid value.
unsafe impl DumpCursor for MappingCursor {}

impl Resume for MappingCursor {
    type Key = Key;

    fn after(&self) -> Option<Key> {
        if self.started == 0 {
            return None;
        }
        let len = usize::from(self.aid_len).min(AID_MAX_LEN);
        Some(Key {
            port: self.port,
            aid: Aid::new(&self.aid[..len])?,
        })
    }

    fn at(key: &Key) -> Self {
        let mut aid = [0; AID_MAX_LEN];
        let bytes = key.aid.as_bytes();
        aid[..bytes.len()].copy_from_slice(bytes);
        Self {
            started: 1,
            aid_len: bytes.len() as u8,
            port: key.port,
            aid,
        }
    }
}

/// A dump's resume point over a table keyed by `Key`.
trait Resume: DumpCursor {
    type Key: Copy;
    /// The key sent last, or `None` at the start.
    fn after(&self) -> Option<Self::Key>;
    /// The cursor after `key`.
    fn at(key: &Self::Key) -> Self;
}

/// Fills one dump message batch from `visit`, which calls back with every
/// entry after the cursor in key order, and saves where it stopped.
fn dump_table<C: Resume, V>(
    dump: &mut Dump<'_>,
    visit: impl FnOnce(&Table, Option<&C::Key>, &mut dyn FnMut(&C::Key, &V) -> bool),
    put: impl Fn(&mut DumpMsg<'_, '_>, &C::Key, &V) -> Result,
) -> Result<usize> {
    let state = dump.state::<NetState>()?;
    let table = state.table.lock();
    let generation = table.generation();
    // On every call, not only when a message starts: the core checks the
    // generation again on the NLMSG_DONE message, and a last call that adds
    // no message must still report a change since the previous call.
    dump.set_generation(generation);
    let after = dump.cursor::<C>().after();
    let mut last = None;
    let mut full = false;
    visit(&table, after.as_ref(), &mut |key, val| {
        let Some(mut msg) = dump.msg(generation) else {
            full = true;
            return false;
        };
        if put(&mut msg, key, val).is_err() {
            full = true;
            return false; // `msg` is dropped, which cancels it.
        }
        msg.end();
        last = Some(*key);
        true
    });
    match last {
        Some(key) => dump.set_cursor(C::at(&key)),
        // Not even one entry fits an empty message: cannot make progress.
        None if full => return Err(EMSGSIZE),
        None => {}
    }
    Ok(dump.len())
}

/// `get-mapping` (dump): every allocation, in key order, across as many
/// calls as the messages need.
pub(crate) fn dump_mappings(dump: &mut Dump<'_>) -> Result<usize> {
    dump_table::<MappingCursor, Mapping>(
        dump,
        |t, after, f| t.visit_from(after, f),
        |m, k, v| put_mapping(m, k, v),
    )
}

fn put_mapping(msg: &mut impl PutAttrs, key: &Key, m: &Mapping) -> Result {
    msg.put_bytes_str(uapi::VPM_A_MAPPING_AID, key.aid.as_bytes())?;
    msg.put_u16(uapi::VPM_A_MAPPING_PORT, key.port)?;
    msg.put_u32(uapi::VPM_A_MAPPING_PROTO, m.protos)?;
    msg.put_u16(uapi::VPM_A_MAPPING_ANON_PORT, m.anon)?;
    if let Some(c) = &m.cgroup {
        msg.put_bytes_str(uapi::VPM_A_MAPPING_CGROUP, &c.path)?;
        msg.put_uint(uapi::VPM_A_MAPPING_CGROUP_ID, c.id)?;
    }
    for (attr, stat) in [
        (uapi::VPM_A_MAPPING_PKTS_IN, EntryStat::PktsIn),
        (uapi::VPM_A_MAPPING_BYTES_IN, EntryStat::BytesIn),
        (uapi::VPM_A_MAPPING_PKTS_OUT, EntryStat::PktsOut),
        (uapi::VPM_A_MAPPING_BYTES_OUT, EntryStat::BytesOut),
    ] {
        msg.put_uint(attr, m.counters.sum(stat))?;
    }
    for p in &m.peers {
        msg.put_raw(uapi::VPM_A_MAPPING_PEER, p.bytes())?;
    }
    Ok(())
}

// ---- cooperative peers -----------------------------------------------------

/// `add-peer`: make an address a cooperative peer of an allocation.
pub(crate) fn add_peer(info: &GenlInfo<'_>) -> Result {
    let key = req_key(info)?;
    let peer = req_peer(info)?;
    let mut table = info.state::<NetState>()?.table.lock();
    let added = table
        .peer_add(&key, peer)
        .map_err(|e| table_error(info, e))?;
    if added {
        if let Some(m) = table.get(&key) {
            notify_mapping(info, uapi::VPM_CMD_MAPPING_NEW_NTF, &key, m);
        }
    }
    drop(table);
    Ok(())
}

/// `del-peer`: remove a cooperative peer of an allocation.
pub(crate) fn del_peer(info: &GenlInfo<'_>) -> Result {
    let key = req_key(info)?;
    let peer = req_peer(info)?;
    let mut table = info.state::<NetState>()?.table.lock();
    table
        .peer_del(&key, peer)
        .map_err(|e| table_error(info, e))?;
    if let Some(m) = table.get(&key) {
        notify_mapping(info, uapi::VPM_CMD_MAPPING_NEW_NTF, &key, m);
    }
    drop(table);
    Ok(())
}

/// The peer address of an add-peer or del-peer request.
fn req_peer(info: &GenlInfo<'_>) -> Result<Peer> {
    let Some(raw) = info.attr(uapi::VPM_A_MAPPING_PEER) else {
        info.set_err_missing(c"missing attribute: peer", uapi::VPM_A_MAPPING_PEER);
        return Err(EINVAL);
    };
    Peer::new(raw).ok_or_else(|| {
        info.set_err(
            c"peer must be an IPv4 (4 bytes) or IPv6 (16 bytes) address, not the unspecified one",
        );
        EINVAL
    })
}

// ---- source rules ----------------------------------------------------------

/// `add-rule`: steer a source match on a fixed port to an allocation.
pub(crate) fn add_rule(info: &GenlInfo<'_>) -> Result {
    let rk = req_rule_key(info)?;
    let Some(aid) = req_aid(info, uapi::VPM_A_RULE_AID)? else {
        info.set_err_missing(c"missing attribute: aid", uapi::VPM_A_RULE_AID);
        return Err(EINVAL);
    };
    let state = info.state::<NetState>()?;
    let mut table = state.table.lock();
    table.rule_add(rk, aid).map_err(|e| table_error(info, e))?;
    // Under the lock, so events keep the order of the changes.
    notify_rule(info, uapi::VPM_CMD_RULE_NEW_NTF, &rk, &aid);
    drop(table);
    Ok(())
}

/// `del-rule`: remove the rule with this match.
pub(crate) fn del_rule(info: &GenlInfo<'_>) -> Result {
    let rk = req_rule_key(info)?;
    let mut table = info.state::<NetState>()?.table.lock();
    let aid = table.rule_del(&rk).map_err(|e| table_error(info, e))?;
    notify_rule(info, uapi::VPM_CMD_RULE_DEL_NTF, &rk, &aid);
    drop(table);
    Ok(())
}

fn notify_rule(info: &GenlInfo<'_>, cmd: u32, rk: &RuleKey, aid: &Aid) {
    if let Some(mut event) = Event::new(info, cmd) {
        if put_rule(&mut event, rk, aid).is_ok() {
            event.send();
        }
    }
}

fn put_rule(msg: &mut impl PutAttrs, rk: &RuleKey, aid: &Aid) -> Result {
    msg.put_u16(uapi::VPM_A_RULE_PORT, rk.port)?;
    msg.put_bytes_str(uapi::VPM_A_RULE_AID, aid.as_bytes())?;
    let len = usize::from(rk.m.family().bits() / 8);
    if len > 0 {
        msg.put_raw(uapi::VPM_A_RULE_ADDR, &rk.m.addr()[..len])?;
        msg.put_raw(uapi::VPM_A_RULE_PREFIX_LEN, &[rk.m.plen()])?;
    }
    if rk.m.port() != 0 {
        msg.put_u16(uapi::VPM_A_RULE_SRC_PORT, rk.m.port())?;
    }
    Ok(())
}

/// The (port, match) key every rule request carries.
fn req_rule_key(info: &GenlInfo<'_>) -> Result<RuleKey> {
    let Some(port) = opt_u16(info, uapi::VPM_A_RULE_PORT)? else {
        info.set_err_missing(c"missing attribute: port", uapi::VPM_A_RULE_PORT);
        return Err(EINVAL);
    };
    let plen = opt_ne(
        info,
        uapi::VPM_A_RULE_PREFIX_LEN,
        u8::from_ne_bytes,
        c"malformed u8 attribute",
    )?;
    let sport = opt_u16(info, uapi::VPM_A_RULE_SRC_PORT)?.unwrap_or(0);
    let mut addr = [0u8; 16];
    let family = match info.attr(uapi::VPM_A_RULE_ADDR) {
        None if plen.is_some() => {
            info.set_err(c"prefix-len needs addr");
            return Err(EINVAL);
        }
        None => Family::Any,
        Some(a) if a.len() == 4 || a.len() == 16 => {
            addr[..a.len()].copy_from_slice(a);
            if a.len() == 4 {
                Family::V4
            } else {
                Family::V6
            }
        }
        Some(_) => {
            info.set_err(c"addr must be 4 (IPv4) or 16 (IPv6) bytes");
            return Err(EINVAL);
        }
    };
    let plen = plen.unwrap_or(family.bits());
    let m = Match::new(family, addr, plen, sport).map_err(|e| {
        match e {
            RuleError::PrefixTooLong { max } => info.set_err_fmt(format_args!(
                "prefix-len {plen} is longer than the address ({max} bits)"
            )),
            RuleError::HostBits => info.set_err(
                c"addr has bits set beyond prefix-len: give the network address (e.g. 10.1.0.0/16)",
            ),
        }
        EINVAL
    })?;
    Ok(RuleKey { port, m })
}

/// Where a rule dump resumes: after the rule it sent last.
#[derive(Clone, Copy)]
#[repr(C)]
struct RuleCursor {
    started: u8,
    family: u8,
    plen: u8,
    _pad: u8,
    port: u16,
    sport: u16,
    addr: [u8; 16],
}

// SAFETY: Plain integers and bytes: every bit pattern is a valid value.
unsafe impl DumpCursor for RuleCursor {}

impl Resume for RuleCursor {
    type Key = RuleKey;

    fn after(&self) -> Option<RuleKey> {
        if self.started == 0 {
            return None;
        }
        let family = Family::from_code(self.family).unwrap_or(Family::Any);
        let m = Match::new(family, self.addr, self.plen, self.sport).ok()?;
        Some(RuleKey { port: self.port, m })
    }

    fn at(rk: &RuleKey) -> Self {
        Self {
            started: 1,
            family: rk.m.family().code(),
            plen: rk.m.plen(),
            _pad: 0,
            port: rk.port,
            sport: rk.m.port(),
            addr: *rk.m.addr(),
        }
    }
}

/// `get-rule` (dump): every rule, in key order.
pub(crate) fn dump_rules(dump: &mut Dump<'_>) -> Result<usize> {
    dump_table::<RuleCursor, Aid>(
        dump,
        |t, after, f| t.visit_rules_from(after, f),
        |m, k, v| put_rule(m, k, v),
    )
}

/// The AID in attribute `ty`, if present.
fn req_aid(info: &GenlInfo<'_>, ty: u32) -> Result<Option<Aid>> {
    let Some(raw) = info.attr(ty) else {
        return Ok(None);
    };
    // The policy (NLA_NUL_STRING) guarantees a NUL within the payload.
    let text = raw.split(|&b| b == 0).next().unwrap_or(raw);
    let Some(aid) = Aid::new(text) else {
        info.set_err(c"aid must be 1-31 bytes of [A-Za-z0-9._-]");
        return Err(EINVAL);
    };
    Ok(Some(aid))
}

/// The (aid, port) key every mapping request carries.
fn req_key(info: &GenlInfo<'_>) -> Result<Key> {
    let Some(aid) = req_aid(info, uapi::VPM_A_MAPPING_AID)? else {
        info.set_err_missing(c"missing attribute: aid", uapi::VPM_A_MAPPING_AID);
        return Err(EINVAL);
    };
    let Some(port) = opt_u16(info, uapi::VPM_A_MAPPING_PORT)? else {
        info.set_err_missing(c"missing attribute: port", uapi::VPM_A_MAPPING_PORT);
        return Err(EINVAL);
    };
    Ok(Key { port, aid })
}

fn opt_u16(info: &GenlInfo<'_>, ty: u32) -> Result<Option<u16>> {
    opt_ne(info, ty, u16::from_ne_bytes, c"malformed u16 attribute")
}

fn opt_u32(info: &GenlInfo<'_>, ty: u32) -> Result<Option<u32>> {
    opt_ne(info, ty, u32::from_ne_bytes, c"malformed u32 attribute")
}

/// Attribute `ty` as a host-order integer of `N` bytes, if present.
fn opt_ne<T, const N: usize>(
    info: &GenlInfo<'_>,
    ty: u32,
    from_bytes: fn([u8; N]) -> T,
    malformed: &'static CStr,
) -> Result<Option<T>> {
    let Some(p) = info.attr(ty) else {
        return Ok(None);
    };
    let bytes: [u8; N] = p.try_into().map_err(|_| {
        info.set_err(malformed);
        EINVAL
    })?;
    Ok(Some(from_bytes(bytes)))
}

/// Maps a table error to its errno, setting the extended-ack message.
fn table_error(info: &GenlInfo<'_>, e: TableError) -> Error {
    info.set_err_fmt(format_args!("{e}"));
    e.into()
}

// ---- entry points ----------------------------------------------------------

vpm_sys::genl_doit!(vpm_nl_get_status_doit => get_status);
vpm_sys::genl_doit!(vpm_nl_add_mapping_doit => add_mapping);
vpm_sys::genl_doit!(vpm_nl_del_mapping_doit => del_mapping);
vpm_sys::genl_doit!(vpm_nl_get_mapping_doit => get_mapping);
vpm_sys::genl_doit!(vpm_nl_flush_doit => flush);
vpm_sys::genl_doit!(vpm_nl_get_config_doit => get_config);
vpm_sys::genl_doit!(vpm_nl_set_config_doit => set_config);
vpm_sys::genl_doit!(vpm_nl_add_rule_doit => add_rule);
vpm_sys::genl_doit!(vpm_nl_del_rule_doit => del_rule);
vpm_sys::genl_doit!(vpm_nl_add_peer_doit => add_peer);
vpm_sys::genl_doit!(vpm_nl_del_peer_doit => del_peer);
vpm_sys::genl_dumpit!(vpm_nl_get_mapping_dumpit => dump_mappings);
vpm_sys::genl_dumpit!(vpm_nl_get_rule_dumpit => dump_rules);
