//! The ledger: an append-only log of every governance decision and every key release, that
//! anyone can verify without trusting the server that keeps it. What the governance entries
//! mean is `confide-gov`'s.
//!
//! - [`merkle`]: the RFC 9162 Merkle tree, its inclusion and consistency proofs.
//! - [`cose`]: COSE_Sign1 and the COSE receipt header labels (RFC 9052, RFC 9942).
//! - [`receipt`]: signed checkpoints and COSE receipts (RFC 9942) for confide's own ledger.
//! - [`store`]: the ledger on disk: durable batches in append-only segments, recovery after a
//!   crash, the index, receipts and consistency proofs.
//! - [`ccf`]: verification of CCF's JSON and COSE receipts against a service certificate.

#![forbid(unsafe_code)]

pub mod ccf;
pub mod cose;
pub mod merkle;
pub mod receipt;
pub mod store;

pub use store::{Ledger, LedgerError, Prepared, Recovery};
