//! Driver start-up noise kept off a user's terminal. Vulkan and EGL drivers write to the
//! process's stderr while adapters are enumerated (Mesa prints "XDG_RUNTIME_DIR is invalid or
//! not set" on headless machines), which is no message of ours. While probing, fd 2 points at a
//! temporary file; what the drivers wrote there is logged at info level (`RUST_LOG=info`).

/// Runs `f` with stderr captured, then logs the capture line by line.
#[cfg(unix)]
pub fn quietly<T>(f: impl FnOnce() -> T) -> T {
    use std::io::{Read, Seek};
    use std::os::fd::AsRawFd;

    let Ok(mut sink) = tempfile() else {
        return f();
    };
    // SAFETY: plain descriptor calls; fd 2 is restored from `saved` before returning.
    let saved = unsafe { libc::dup(2) };
    if saved < 0 || unsafe { libc::dup2(sink.as_raw_fd(), 2) } < 0 {
        if saved >= 0 {
            unsafe { libc::close(saved) };
        }
        return f();
    }
    let out = f();
    unsafe {
        libc::dup2(saved, 2);
        libc::close(saved);
    }
    let mut text = String::new();
    if sink.rewind().is_ok() && sink.read_to_string(&mut text).is_ok() {
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            tracing::info!(target: "gradtail::gpu", "driver: {line}");
        }
    }
    out
}

#[cfg(not(unix))]
pub fn quietly<T>(f: impl FnOnce() -> T) -> T {
    f()
}

/// An anonymous file: created in the temporary folder and unlinked at once.
#[cfg(unix)]
fn tempfile() -> std::io::Result<std::fs::File> {
    let path = std::env::temp_dir().join(format!(".gradtail-probe-{}", std::process::id()));
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&path)?;
    std::fs::remove_file(&path)?;
    Ok(file)
}
