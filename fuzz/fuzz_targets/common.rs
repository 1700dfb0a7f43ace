//! What every target does with the input it is given: open it as the CLI does, check it as
//! the pipeline does, read every value in small blocks, and require any error to be one line
//! naming the input. A panic, or an allocation over `-malloc_limit_mb`, is a crash.
#![allow(dead_code)] // each target uses a different subset

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use gradtail::input::{self, plan, Select};

/// A folder for this process's inputs, under `fuzz/target` (libFuzzer exits without running
/// destructors, so a temporary folder would be left behind on every run).
pub fn work() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("target/inputs")
            .join(std::process::id().to_string());
        std::fs::create_dir_all(&dir).unwrap();
        dir
    })
}

pub fn read_everything(paths: &[PathBuf], names: &Path, skip_bad: bool) {
    let run = || -> gradtail::Result<()> {
        let inputs = input::open_all(paths, &Select::default(), skip_bad)?;
        gradtail::analyze::validate(&inputs.sources)?;
        for s in &inputs.sources {
            let m = s.meta();
            for (rows, cols) in
                plan::blocks(m.samples, m.coords(), 2, m.dtype.size(), 40, s.is_fortran())
            {
                let b = s.read_block(rows.clone(), cols.clone())?;
                assert_eq!(b.data.len(), rows.len() * cols.len());
            }
        }
        Ok(())
    };
    if let Err(e) = run() {
        let msg = e.to_string();
        let names = names.display().to_string();
        assert!(msg.contains(&names), "error does not name {names}: {msg}");
        assert!(!msg.contains('\n'), "error is not one line: {msg}");
    }
}

/// Writes `data` as `name` in the work folder and reads it.
pub fn read_file(name: &str, data: &[u8]) {
    let path = work().join(name);
    std::fs::write(&path, data).unwrap();
    read_everything(std::slice::from_ref(&path), &path, false);
}
