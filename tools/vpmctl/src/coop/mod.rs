//! Cooperative multiplexing across hosts (patent figures 6-7): the
//! agents of two hosts negotiate the port an AID's stream uses between
//! them (docs/COOPERATIVE.md).
//!
//! - [`wire`]: the messages' layout, encoded and decoded without I/O;
//! - [`auth`]: HMAC-SHA-256 with per-peer keys, and replay protection;
//! - [`server`]: what the agent answers, and the mappings it keeps for
//!   its peers;
//! - [`client`]: the mappings this host asks of its peers;
//! - [`remote`]: the client's data path, the socket hooks' map;
//! - [`agent`]: `vpmctl agent`, the socket, the kernel and the state
//!   file around them.

pub mod agent;
pub mod auth;
pub mod client;
pub mod remote;
pub mod server;
pub mod wire;
