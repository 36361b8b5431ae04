//! Clean rooms: contracts over several members' datasets, and the runner that executes an
//! approved contract's SQL inside a TEE with Apache DataFusion, decrypting each dataset as it is
//! read, and lets out only a result that meets the contract's output rules.
//!
//! The CLI fetches contracts and keys and hands the runner each table as its encrypted file,
//! opened for positioned reads that decrypt as they go; the one network I/O here is the blob
//! store's ([`store`]), which holds ciphertext only.

#![forbid(unsafe_code)]

pub mod aml;
mod dp;
pub mod history;
pub mod iot;
pub mod noise;
mod plaintext;
pub mod privacy;
pub mod rules;
pub mod runner;
pub mod store;

pub use confide_model::contract::{
    self, AnalysisRule, Contract, Measurement, MinGroup, OnViolation, OutputRules,
};
pub use confide_model::dataset::Privacy;
pub use rules::Released;
pub use runner::{Format, Table};
pub use store::BlobStore;

/// SplitMix64: a small deterministic generator for synthetic data and seeded statistics;
/// never for noise or keys.
pub(crate) struct SplitMix(pub(crate) u64);

impl SplitMix {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// Why a clean-room step refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CleanroomError {
    /// The contract's terms are not acceptable.
    #[error("the contract: {0}")]
    Contract(#[from] confide_model::ModelError),
    /// A dataset could not be read as its record says.
    #[error("a dataset: {0}")]
    Dataset(String),
    /// The query failed.
    #[error("{0}")]
    Query(String),
    /// The query calls a function whose result is not a function of the data alone.
    #[error(
        "the contract's SQL calls {function}(), whose result is not a function of the data alone \
         (it changes from run to run, or with the time of the run): two runs of one contract \
         could be told apart or averaged"
    )]
    NotDeterministic {
        /// The function's name.
        function: String,
    },
    /// The engine cannot count the individuals behind the query's result, or the query uses a
    /// column as its owner's declaration forbids.
    #[error("the contract's query: {0}")]
    NotAnalysable(String),
    /// The contract counts individuals with a column its own SQL computes, as contracts did
    /// before the engine counted them.
    #[error(
        "the contract counts individuals with its SQL's own column {column:?} and names no \
         analysis rule; the engine no longer trusts a count the SQL computes: propose the \
         contract again with an aggregation or list rule"
    )]
    NoAnalysisRule {
        /// The SQL's count column.
        column: String,
    },
    /// The blob store refused, failed, or holds something other than what the ledger recorded.
    #[error("the blob store: {0}")]
    Store(String),
    /// The result breaks the output rules; nothing leaves.
    #[error("the result is refused: {0}")]
    OutputRefused(confide_model::Refusal),
}
