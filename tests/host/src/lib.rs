//! The kernel module's `core`-only files, compiled for the host.
//!
//! Each `#[path]` module below is the very file `vpm.ko` builds, so what is
//! tested here is what runs in the kernel.

#[path = "../../../vpm_csum.rs"]
#[allow(dead_code)]
pub mod vpm_csum;

#[path = "../../../vpm_alloc.rs"]
#[allow(dead_code)]
pub mod vpm_alloc;

#[path = "../../../vpm_rules.rs"]
#[allow(dead_code)]
pub mod vpm_rules;

#[path = "../../../vpm_parse.rs"]
#[allow(dead_code)]
pub mod vpm_parse;

#[path = "../../../vpm_flow.rs"]
#[allow(dead_code)]
pub mod vpm_flow;

#[cfg(all(test, not(loom)))]
mod alloc_props;
#[cfg(all(test, not(loom)))]
mod csum_props;
#[cfg(all(test, loom))]
mod flow_loom;
#[cfg(all(test, not(loom)))]
mod flow_props;
#[cfg(all(test, not(loom)))]
mod parse_props;
#[cfg(all(test, not(loom)))]
mod rules_props;
