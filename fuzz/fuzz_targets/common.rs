//! What every target does with the input it is given: open it as the CLI does, check it as
//! the pipeline does, read every value in small blocks, and require any error to be one line
//! naming the input. A panic, or an allocation over `-malloc_limit_mb`, is a crash.
#![allow(dead_code)] // each target uses a different subset

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use gradtail::input::{self, plan, Select};

/// A folder for this process's inputs, in memory (`/dev/shm`) where the system has it: the
/// steps target writes eight files per run. libFuzzer leaves by `exit`, which skips Rust
/// destructors but runs C `atexit` handlers, so the folder is removed by one of those.
pub fn work() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    extern "C" {
        fn atexit(f: extern "C" fn()) -> i32;
    }
    extern "C" fn remove() {
        if let Some(dir) = DIR.get() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
    DIR.get_or_init(|| {
        let shm = Path::new("/dev/shm");
        let root = if shm.is_dir() {
            shm.to_path_buf()
        } else {
            std::env::temp_dir()
        };
        let dir = root.join(format!("gradtail-fuzz-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        // SAFETY: registers a plain function with the C runtime; it only removes the folder.
        unsafe { atexit(remove) };
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
