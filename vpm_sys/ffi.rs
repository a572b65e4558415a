// SPDX-License-Identifier: GPL-2.0

//! Prototypes of the C glue (`vpm_glue.c`, `gen/vpm_nl_gen.c`).
//!
//! They mirror `vpm_glue.h`, one twin per C declaration: keep them in step.
//! Only the other files of `vpm_sys` call them, each behind a safe type.

use core::ffi::{c_int, c_uint, c_void};

use kernel::bindings;
use kernel::ffi::c_char;

#[expect(
    improper_ctypes,
    reason = "kernel structs are only passed by pointer, never by value"
)]
extern "C" {
    pub(super) fn vpm_net_generic(net: *const bindings::net, id: c_uint) -> *mut c_void;

    pub(super) static vpm_hook_count: c_uint;
    pub(super) fn vpm_hooks_register(
        net: *mut bindings::net,
        priv_: *mut c_void,
        out: *mut *mut c_void,
    ) -> c_int;
    pub(super) fn vpm_hooks_unregister(net: *mut bindings::net, ops: *mut c_void);
    pub(super) fn vpm_hooks_free(ops: *mut c_void);

    pub(super) fn vpm_skb_nh_off(skb: *const bindings::sk_buff) -> c_int;
    pub(super) fn vpm_skb_ip_summed(skb: *const bindings::sk_buff) -> u8;
    pub(super) fn vpm_skb_writable(skb: *mut bindings::sk_buff, len: c_uint) -> *mut u8;
    pub(super) fn vpm_skb_dst_local(skb: *const bindings::sk_buff) -> bool;
    pub(super) fn vpm_addr_local(
        net: *mut bindings::net,
        dev: *const bindings::net_device,
        pf: u8,
        addr: *const u8,
    ) -> bool;
    pub(super) fn vpm_skb_received(skb: *const bindings::sk_buff, pf: u8) -> bool;
    pub(super) fn vpm_skb_sender(skb: *const bindings::sk_buff) -> u32;
    pub(super) fn vpm_skb_cgroup_ancestor(skb: *const bindings::sk_buff, level: c_int) -> u64;

    pub(super) fn vpm_cgroup_id(path: *const c_char, level: *mut c_int) -> i64;
    pub(super) fn vpm_now_secs() -> u32;

    pub(super) fn vpm_port_reserve(net: *mut bindings::net, port: u16) -> bool;
    pub(super) fn vpm_port_unreserve(net: *mut bindings::net, port: u16);

    pub(super) fn vpm_pcpu_alloc(n: c_uint) -> *mut u64;
    pub(super) fn vpm_pcpu_free(ctrs: *mut u64);
    pub(super) fn vpm_pcpu_add(ctrs: *mut u64, idx: c_uint, val: u64);
    pub(super) fn vpm_pcpu_sum(ctrs: *mut u64, idx: c_uint) -> u64;
    pub(super) fn vpm_pcpu_reset(ctrs: *mut u64, idx: c_uint);

    pub(super) fn vpm_genl_net(info: *const bindings::genl_info) -> *mut bindings::net;
    pub(super) fn vpm_genl_reply_header(
        skb: *mut bindings::sk_buff,
        info: *mut bindings::genl_info,
    ) -> *mut c_void;
    pub(super) fn vpm_genl_reply_send(
        skb: *mut bindings::sk_buff,
        info: *mut bindings::genl_info,
    ) -> c_int;
    pub(super) fn vpm_genl_set_err(
        info: *mut bindings::genl_info,
        msg: *const c_char,
        copy: bool,
        missing: u16,
    );
    pub(super) fn vpm_genl_attr(
        info: *const bindings::genl_info,
        ty: u16,
    ) -> *const bindings::nlattr;

    pub(super) fn vpm_dump_net(cb: *const bindings::netlink_callback) -> *mut bindings::net;
    pub(super) fn vpm_dump_ctx(cb: *mut bindings::netlink_callback) -> *mut c_void;
    pub(super) static vpm_dump_ctx_size: usize;
    pub(super) fn vpm_dump_msg_start(
        skb: *mut bindings::sk_buff,
        cb: *mut bindings::netlink_callback,
        gen: u32,
    ) -> *mut c_void;
    pub(super) fn vpm_dump_msg_end(skb: *mut bindings::sk_buff, hdr: *mut c_void);
    pub(super) fn vpm_dump_msg_cancel(skb: *mut bindings::sk_buff, hdr: *mut c_void);
    pub(super) fn vpm_skb_len(skb: *const bindings::sk_buff) -> c_uint;

    pub(super) fn vpm_event_new(
        net: *mut bindings::net,
        cmd: u8,
        hdr: *mut *mut c_void,
    ) -> *mut bindings::sk_buff;
    pub(super) fn vpm_event_send(
        net: *mut bindings::net,
        skb: *mut bindings::sk_buff,
        hdr: *mut c_void,
    );

    pub(super) fn vpm_dump_set_seq(cb: *mut bindings::netlink_callback, gen: u32);
    pub(super) fn vpm_port_bound(net: *mut bindings::net, port: u16) -> bool;

    /// Defined by the ynl-generated `gen/vpm_nl_gen.c`.
    pub(super) static mut vpm_nl_family: bindings::genl_family;
}
