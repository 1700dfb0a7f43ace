#![no_main]
//! Any bytes as a `.npy` file.

mod common;

libfuzzer_sys::fuzz_target!(|data: &[u8]| common::read_file("input.npy", data));
