// SPDX-License-Identifier: GPL-2.0

//! vpm in every network namespace: the pernet operations and what they do
//! when a namespace comes and goes.
//!
//! The namespace core gives each namespace a [`NetState`] (created in its
//! init, dropped in its exit), and vpm's hooks while it has an allocation
//! (`vpm_genl.rs`); the floor's
//! [`Pernet`](crate::vpm_sys::Pernet) does the unsafe part, this file
//! says what the state is.

use kernel::prelude::*;

use crate::vpm_state::NetState;
use crate::vpm_sys::{NetRef, Pernet, PernetState};

/// vpm's per-namespace operations: registered at load, unregistered last
/// at unload.
pub(crate) static PERNET: Pernet<NetState> = Pernet::new();

impl PernetState for NetState {
    fn pernet() -> &'static Pernet<Self> {
        &PERNET
    }

    fn new(net: NetRef) -> Result<Self> {
        NetState::create(net)
    }

    fn hooks_changed(&self, n: u32) {
        self.hooks_registered(n);
    }
}
