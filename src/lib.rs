//! gradtail: how heavy are the tails of stochastic gradient noise?
//!
//! The pipeline reads gradient snapshots (`input`), reduces them per coordinate on the CPU or
//! GPU (`engine`), finishes estimates and tests in f64 (`stats`) and writes reports
//! (`report`). `analyze` runs it end to end; `synth` writes α-stable test data.

#[macro_use]
mod simd;

pub mod analyze;
pub mod bench;
pub mod engine;
pub mod error;
pub mod input;
pub mod report;
pub mod shard;
pub mod stats;
pub mod sweep;
pub mod synth;

pub use error::{Error, Result};
