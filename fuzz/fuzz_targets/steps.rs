#![no_main]
//! Any bytes as one step file among seven good ones (the seeds of tests/data/fuzz/steps), at
//! a position picked by the input's length, read with and without `--skip-bad`.

mod common;

use std::path::PathBuf;

const GOOD: [&[u8]; 8] = [
    include_bytes!("../../tests/data/fuzz/steps/step_0.safetensors"),
    include_bytes!("../../tests/data/fuzz/steps/step_1.safetensors"),
    include_bytes!("../../tests/data/fuzz/steps/step_2.safetensors"),
    include_bytes!("../../tests/data/fuzz/steps/step_3.safetensors"),
    include_bytes!("../../tests/data/fuzz/steps/step_4.safetensors"),
    include_bytes!("../../tests/data/fuzz/steps/step_5.safetensors"),
    include_bytes!("../../tests/data/fuzz/steps/step_6.safetensors"),
    include_bytes!("../../tests/data/fuzz/steps/step_7.safetensors"),
];

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let dir = common::work().join("steps");
    std::fs::create_dir_all(&dir).unwrap();
    let bad = data.len() % GOOD.len();
    for (i, good) in GOOD.iter().enumerate() {
        let bytes = if i == bad { data } else { good };
        std::fs::write(dir.join(format!("step_{i}.safetensors")), bytes).unwrap();
    }
    let paths: [PathBuf; 1] = [dir.clone()];
    for skip_bad in [false, true] {
        common::read_everything(&paths, &dir, skip_bad);
    }
});
