//! gradtail's integration tests, in one binary so the crate and its GPU stack link once.
//! `common` holds the shared helpers: tolerances with reasons, the independent naive oracle,
//! seeded draws and the GPU start-or-skip rule.

mod common;

mod bench;
mod cli;
mod engines;
mod fits;
mod fuzz_inputs;
mod gpu_fits;
mod gpu_smoke;
mod gram_gpu;
mod powerlaw_gpu;
mod report_html;
mod serve;
mod shaders;
mod shard;
mod structure;
mod structure_cli;
mod sweep;
