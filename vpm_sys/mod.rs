// SPDX-License-Identifier: GPL-2.0

//! The floor: vpm's thin unsafe layer between its safe logic and the kernel.
//!
//! Every raw kernel pointer and every `unsafe` block of vpm lives in this
//! folder, one concern per file, each type stating its invariants:
//!
//! - `ffi.rs`: the prototypes of the C glue (`vpm_glue.c`), generated
//!   from `vpm_glue.h` by bindgen into `gen/vpm_glue.rs`;
//! - `pernet.rs`: a per-namespace slot of any type, with the hooks;
//! - `nf.rs`: the netfilter hook entry ([`nf_hook!`]);
//! - `skb.rs`: a packet inside a hook;
//! - `percpu.rs`: per-CPU counters;
//! - `rcu.rs`: RCU-published values and per-port maps;
//! - `genl.rs`: the netlink family, requests, replies, events and the
//!   `do` entry points ([`genl_doit!`]);
//! - `dump.rs`: netlink dumps and their entry points ([`genl_dumpit!`]);
//! - `misc.rs`: clock, random numbers, cgroup lookups;
//! - `bench.rs`: the micro-benchmark's skbs and clock (`VPM_BENCH=1`).
//!
//! The floor imports nothing above it: it names no vpm type but those of
//! the pure core (`vpm_parse::Packet`).  The C entry points live with
//! their owners, which define them with the macros above; the types
//! those owners keep per namespace reach the floor only as generic
//! parameters ([`PernetState`], [`HookState`]).

mod ffi;

#[cfg(vpm_bench)]
pub(crate) mod bench;
pub(crate) mod dump;
pub(crate) mod genl;
pub(crate) mod misc;
pub(crate) mod nf;
pub(crate) mod percpu;
pub(crate) mod pernet;
pub(crate) mod rcu;
pub(crate) mod skb;

pub(crate) use dump::{genl_dumpit, Dump, DumpCursor, DumpMsg};
pub(crate) use genl::{genl_doit, Event, GenlFamily, GenlInfo, PutAttrs, Reply};
pub(crate) use misc::{cgroup_id, now_secs, random_u64};
pub(crate) use nf::{nf_hook, HookState};
pub(crate) use percpu::PerCpuCounters;
pub(crate) use pernet::{NetRef, Pernet, PernetState, Registration};
pub(crate) use skb::{CsumState, Sender, Skb};
