// SPDX-License-Identifier: GPL-2.0

//! Handlers of the `vpm` generic netlink family (`uapi/vpm.yaml`).
//!
//! The C entry points generated from the spec land in `vpm_sys.rs`, which
//! hands each handler a safe [`GenlInfo`] (or [`Dump`]); handlers run in
//! process context and may sleep.  Every error sets an extended-ack message
//! that says what was wrong and, where it helps, what to do.

use kernel::prelude::*;
use kernel::sync::CondVarTimeoutResult;
use kernel::time::msecs_to_jiffies;

use crate::vpm_sys::{Dump, DumpCursor, Event, GenlInfo, PutAttrs, Reply};
use crate::vpm_table::{Aid, Key, Mapping, Stat, TableError, AID_MAX_LEN, PROTO_ALL};
use crate::vpm_uapi as uapi;

/// `get-status`: module version, hooks and counters of the caller's namespace.
pub(crate) fn get_status(info: &GenlInfo<'_>) -> Result {
    let state = info.net_state();
    let mut reply = Reply::new(info)?;
    reply.put_str(uapi::VPM_A_STATUS_VERSION, crate::VERSION)?;
    reply.put_u32(uapi::VPM_A_STATUS_HOOKS, state.hooks())?;
    reply.put_uint(uapi::VPM_A_STATUS_PKTS_SEEN, state.read(Stat::PktsSeen))?;
    reply.send()
}

/// `add-mapping`: allocate (or return) the anonymous port of (aid, port).
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
    let wait_ms = opt_u32(info, uapi::VPM_A_MAPPING_WAIT_MS)?.unwrap_or(0);
    let state = info.net_state();
    let mut table = state.table.lock();
    let mut left = msecs_to_jiffies(wait_ms);
    let (mapping, changed) = loop {
        match table.add(key, protos, want) {
            Ok(done) => break done,
            // Queued allocation: wait for a release, then try again.
            Err(TableError::RangeExhausted { .. } | TableError::TooManyEntries { .. }) if left > 0 => {
                match state.freed.wait_interruptible_timeout(&mut table, left) {
                    CondVarTimeoutResult::Woken { jiffies } => left = jiffies,
                    CondVarTimeoutResult::Timeout => {
                        info.set_err_fmt(format_args!(
                            "waited {wait_ms} ms and no allocation was released"
                        ));
                        return Err(ETIMEDOUT);
                    }
                    CondVarTimeoutResult::Signal { .. } => {
                        info.set_err(c"interrupted by a signal while waiting for a free port");
                        return Err(EINTR);
                    }
                }
            }
            Err(e) => return Err(table_error(info, e)),
        }
    };
    drop(table);
    if changed {
        notify_mapping(info, uapi::VPM_CMD_MAPPING_NEW_NTF, &key, &mapping);
    }
    let mut reply = Reply::new(info)?;
    put_mapping(&mut reply, &key, &mapping)?;
    reply.send()
}

/// `del-mapping`: release the allocation of (aid, port).
pub(crate) fn del_mapping(info: &GenlInfo<'_>) -> Result {
    let key = req_key(info)?;
    let state = info.net_state();
    let mapping = state.table.lock().del(&key).map_err(|e| table_error(info, e))?;
    state.freed.notify_all();
    notify_mapping(info, uapi::VPM_CMD_MAPPING_DEL_NTF, &key, &mapping);
    Ok(())
}

/// `get-mapping` (do): one allocation.
pub(crate) fn get_mapping(info: &GenlInfo<'_>) -> Result {
    let key = req_key(info)?;
    let mapping = info.net_state().table.lock().get(&key);
    let mapping = mapping.ok_or_else(|| table_error(info, TableError::NotFound))?;
    let mut reply = Reply::new(info)?;
    put_mapping(&mut reply, &key, &mapping)?;
    reply.send()
}

/// `flush`: release every allocation of the namespace.
pub(crate) fn flush(info: &GenlInfo<'_>) -> Result {
    let state = info.net_state();
    state.table.lock().flush();
    state.freed.notify_all();
    if let Some(event) = Event::new(info, uapi::VPM_CMD_FLUSH_NTF) {
        event.send();
    }
    Ok(())
}

/// `get-config`: range, limit and usage.
pub(crate) fn get_config(info: &GenlInfo<'_>) -> Result {
    let mut reply = Reply::new(info)?;
    put_config(&mut reply, info)?;
    reply.send()
}

fn put_config(msg: &mut impl PutAttrs, info: &GenlInfo<'_>) -> Result {
    let (lo, hi, max, entries) = info.net_state().table.lock().config();
    msg.put_u16(uapi::VPM_A_CONFIG_RANGE_LO, lo)?;
    msg.put_u16(uapi::VPM_A_CONFIG_RANGE_HI, hi)?;
    msg.put_u32(uapi::VPM_A_CONFIG_MAX_ENTRIES, max)?;
    msg.put_u32(uapi::VPM_A_CONFIG_ENTRIES, entries)
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
    let state = info.net_state();
    state.table.lock().set_config(range, max).map_err(|e| table_error(info, e))?;
    // A wider range or a higher limit may make room for waiters.
    state.freed.notify_all();
    if let Some(mut event) = Event::new(info, uapi::VPM_CMD_CONFIG_NTF) {
        if put_config(&mut event, info).is_ok() {
            event.send();
        }
    }
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

impl MappingCursor {
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

/// `get-mapping` (dump): every allocation, in key order, across as many
/// calls as the messages need.
pub(crate) fn dump_mappings(dump: &mut Dump<'_>) -> Result<usize> {
    let state = dump.net_state();
    let mut table = state.table.lock();
    let generation = table.generation();
    let cursor: MappingCursor = dump.cursor();
    let after = cursor.after();
    let mut last = None;
    let mut full = false;
    table.visit_from(after.as_ref(), |key, mapping| {
        let Some(mut msg) = dump.msg(generation) else {
            full = true;
            return false;
        };
        if put_mapping(&mut msg, key, mapping).is_err() {
            full = true;
            return false; // `msg` is dropped, which cancels it.
        }
        msg.end();
        last = Some(*key);
        true
    });
    match last {
        Some(key) => dump.set_cursor(MappingCursor::at(&key)),
        // Not even one entry fits an empty message: cannot make progress.
        None if full => return Err(EMSGSIZE),
        None => {}
    }
    Ok(dump.len())
}

fn put_mapping(msg: &mut impl PutAttrs, key: &Key, m: &Mapping) -> Result {
    msg.put_bytes_str(uapi::VPM_A_MAPPING_AID, key.aid.as_bytes())?;
    msg.put_u16(uapi::VPM_A_MAPPING_PORT, key.port)?;
    msg.put_u32(uapi::VPM_A_MAPPING_PROTO, m.protos)?;
    msg.put_u16(uapi::VPM_A_MAPPING_ANON_PORT, m.anon)
}

/// The (aid, port) key every mapping request carries.
fn req_key(info: &GenlInfo<'_>) -> Result<Key> {
    let Some(raw) = info.attr(uapi::VPM_A_MAPPING_AID) else {
        info.set_err_missing(c"missing attribute: aid", uapi::VPM_A_MAPPING_AID);
        return Err(EINVAL);
    };
    // The policy (NLA_NUL_STRING) guarantees a NUL within the payload.
    let text = raw.split(|&b| b == 0).next().unwrap_or(raw);
    let Some(aid) = Aid::new(text) else {
        info.set_err(c"aid must be 1-31 bytes of [A-Za-z0-9._-]");
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
    match e {
        TableError::RangeExhausted { in_use, lo, hi } => {
            info.set_err_fmt(format_args!(
                "no free port in range {lo}-{hi} ({in_use} in use); widen the range"
            ));
            ENOSPC
        }
        TableError::TooManyEntries { max } => {
            info.set_err_fmt(format_args!(
                "entry limit {max} reached; raise max-entries or delete entries"
            ));
            ENOSPC
        }
        TableError::PortOutOfRange { lo, hi } => {
            info.set_err_fmt(format_args!("anon-port is outside the range {lo}-{hi}"));
            ERANGE
        }
        TableError::PortTaken => {
            info.set_err(c"anon-port is allocated to another AID or port");
            EADDRINUSE
        }
        TableError::OtherAnonPort { anon } => {
            info.set_err_fmt(format_args!(
                "this AID and port already hold anonymous port {anon}"
            ));
            EEXIST
        }
        TableError::NotFound => {
            info.set_err(c"no allocation for this AID and port");
            ENOENT
        }
        TableError::RangeInUse => {
            info.set_err(c"allocations lie outside the new range; delete them first");
            EBUSY
        }
        TableError::BadRange => {
            info.set_err(c"range-lo is above range-hi");
            EINVAL
        }
        TableError::LimitBelowUse { entries } => {
            info.set_err_fmt(format_args!(
                "max-entries is below the {entries} allocations held"
            ));
            EBUSY
        }
        TableError::NoMemory => ENOMEM,
    }
}
