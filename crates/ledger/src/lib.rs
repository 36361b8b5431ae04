//! The ledger: an append-only log of every governance decision and every key release, that
//! anyone can verify without trusting the server that keeps it.
//!
//! - [`merkle`]: the RFC 9162 Merkle tree, its inclusion and consistency proofs.

#![forbid(unsafe_code)]

pub mod merkle;
