//! Clean rooms: contracts over several members' datasets, and the runner that executes an
//! approved contract's SQL inside a TEE with Apache DataFusion, decrypting each dataset as it is
//! read, and lets out only a result that meets the contract's output rules.
//!
//! This crate does no network I/O: the CLI fetches contracts, keys and ciphertexts and hands
//! the runner the tables as openers of plaintext streams.

#![forbid(unsafe_code)]

pub mod aml;
pub mod contract;
pub mod rules;
pub mod runner;

pub use contract::{Contract, Measurement, MinGroup, OnViolation, OutputRules};
pub use rules::Released;
pub use runner::{Format, Opener, Table};

/// Why a clean-room step refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CleanroomError {
    /// The contract's terms are not acceptable.
    #[error("the contract: {0}")]
    Contract(String),
    /// A dataset could not be read as its record says.
    #[error("a dataset: {0}")]
    Dataset(String),
    /// The query failed.
    #[error("{0}")]
    Query(String),
    /// The result breaks the output rules; nothing leaves.
    #[error("the result is refused: {0}")]
    OutputRefused(String),
}
