#![no_main]
//! Any bytes as a `.safetensors` file.

mod common;

libfuzzer_sys::fuzz_target!(|data: &[u8]| common::read_file("input.safetensors", data));
