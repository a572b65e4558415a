// SPDX-License-Identifier: GPL-2.0

//! vpm: virtual port multiplexing.
//!
//! Several applications, each named by an application id (AID), share one
//! fixed TCP/UDP port.  vpm gives every (AID, fixed port) an anonymous port
//! and rewrites packet headers between the two, so each party only ever
//! sees the fixed port (US patent 6,859,835).
//!
//! This file is the crate root: load and unload.  The pieces, each in its
//! own file (`docs/ARCHITECTURE.md` shows how they stack):
//!
//! - the pure core, `core` only, compiled by the host tests too:
//!   `vpm_csum.rs` (checksum arithmetic), `vpm_alloc.rs` (the anonymous
//!   port allocator), `vpm_rules.rs` (source rules), `vpm_parse.rs`
//!   (header parsing), `vpm_flow.rs` (the flow pin table);
//! - the floor, `vpm_sys/`: every `unsafe` block, over the kernel and
//!   the C glue `vpm_glue.c`;
//! - the owners: `vpm_table.rs` (the state of one network namespace),
//!   `vpm_net.rs` (the per-namespace operations), `vpm_nf.rs` (the packet
//!   path and its hook entry point), `vpm_genl.rs` (the generic netlink
//!   API of `uapi/vpm.yaml` and its entry points);
//! - `vpm_kunit.rs`: the pure core's KUnit tests.
//!
//! Userspace talks to it with `vpmctl` (`tools/vpmctl`):
//!
//! ```text
//! # insmod vpm.ko
//! # vpmctl status
//! ```

use kernel::prelude::*;

mod vpm_alloc;
#[cfg(vpm_bench)]
mod vpm_bench;
mod vpm_counters;
#[cfg_attr(
    not(any(CONFIG_KUNIT = "y", vpm_bench)),
    expect(
        dead_code,
        reason = "checksum() and sum_bytes() serve the KUnit suite and the benchmark"
    )
)]
mod vpm_csum;
mod vpm_error;
mod vpm_flow;
mod vpm_genl;
mod vpm_keys;
#[cfg(CONFIG_KUNIT = "y")]
mod vpm_kunit;
mod vpm_net;
mod vpm_nf;
mod vpm_parse;
mod vpm_rules;
mod vpm_state;
mod vpm_sys;
mod vpm_table;
mod vpm_views;
// Generated (tools/ynl-gen.sh): formatted by bindgen, not by rustfmt.
#[rustfmt::skip]
#[path = "gen/vpm_uapi.rs"]
#[expect(
    non_camel_case_types,
    non_upper_case_globals,
    dead_code,
    unreachable_pub,
    reason = "bindgen output of the generated uapi header"
)]
mod vpm_uapi;

module! {
    type: Vpm,
    name: "vpm",
    authors: ["vpm developers"],
    description: "Virtual port multiplexing: several applications share one TCP/UDP port",
    license: "GPL",
    // Load-time only (the macro gives them no sysfs file, so they never
    // change under a running table): the settings every namespace starts
    // with, which `vpmctl config` then changes per namespace.
    params: {
        anon_port_min: u16 {
            default: 20000,
            description: "First anonymous port of each new namespace's range (1-65535, at most anon_port_max; default 20000)",
        },
        anon_port_max: u16 {
            default: 29999,
            description: "Last anonymous port of each new namespace's range (1-65535, at least anon_port_min; default 29999)",
        },
        max_entries: u32 {
            default: 65535,
            description: "Limit on allocations (and on rules) per new namespace (1-4294967295; default 65535)",
        },
    },
}

/// The settings a new namespace starts with (the module parameters).
pub(crate) fn net_defaults() -> vpm_table::Defaults {
    vpm_table::Defaults {
        range: (
            module_parameters::anon_port_min.value(),
            module_parameters::anon_port_max.value(),
        ),
        max_entries: module_parameters::max_entries.value(),
    }
}

/// Version reported by `get-status`; bumped with user-visible changes.
pub(crate) const VERSION: &CStr = c"0.1.0";

/// The loaded module.
///
/// Fields drop in declaration order, the reverse of `init`: the netlink
/// family goes first, so no request can arrive while the per-namespace
/// state (and with it the hooks) is torn down.
struct Vpm {
    /// The micro-benchmark's trigger (`VPM_BENCH=1` builds): removed
    /// first, since a running benchmark uses the per-namespace state.
    #[cfg(vpm_bench)]
    _bench: vpm_bench::BenchFile,
    _genl: vpm_sys::GenlFamily,
    _pernet: vpm_sys::Registration<vpm_state::NetState>,
}

impl kernel::Module for Vpm {
    fn init(_module: &'static ThisModule) -> Result<Self> {
        let defaults = net_defaults();
        if !defaults.valid() {
            pr_err!(
                "anon_port_min={} anon_port_max={} max_entries={}: the range must be 1-65535 with min <= max, and max_entries at least 1\n",
                defaults.range.0,
                defaults.range.1,
                defaults.max_entries
            );
            return Err(EINVAL);
        }
        let pernet = vpm_net::PERNET.register()?;
        let genl = vpm_sys::GenlFamily::register()?;
        #[cfg(vpm_bench)]
        let bench = vpm_bench::BenchFile::new()?;
        pr_info!("vpm {} loaded\n", VERSION.to_str().unwrap_or("?"));
        Ok(Self {
            #[cfg(vpm_bench)]
            _bench: bench,
            _genl: genl,
            _pernet: pernet,
        })
    }
}

impl Drop for Vpm {
    fn drop(&mut self) {
        pr_info!("vpm unloading\n");
    }
}
