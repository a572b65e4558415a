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

#[cfg(test)]
mod alloc_props;
#[cfg(test)]
mod csum_props;
#[cfg(test)]
mod flow_props;
#[cfg(test)]
mod parse_props;
#[cfg(test)]
mod rules_props;
