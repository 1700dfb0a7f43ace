//! Reading files in place (memory-mapped), and what happens when such a file shrinks under
//! the run.
//!
//! A block read in place is not copied out of the page cache: on a large stacked file that
//! copy is a seventh of a CPU run. The price is how a file cut short mid-run shows itself.
//! A positioned read returns an error, which the run reports like any other; a read of a
//! mapped page beyond the file's new end raises SIGBUS, which kills the process. Each
//! block's file length is still checked before the block is handed out, but blocks already
//! handed out are read later. So reading in place is for a process that can end there: the
//! command line turns it on ([`read_in_place`]), and its SIGBUS handler prints which file
//! shrank, removes the run's unpublished output folder ([`unpublished`]) and exits with
//! status 1. Library callers, which expect an error, keep positioned reads.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicUsize, Ordering};

static IN_PLACE: AtomicBool = AtomicBool::new(false);

/// Files opened after this call are read in place where they can be, and a SIGBUS ends the
/// process as described above. For programs that own their process (the `gradtail` binary);
/// Unix only (elsewhere nothing changes).
pub fn read_in_place() {
    #[cfg(unix)]
    {
        install();
        IN_PLACE.store(true, Ordering::SeqCst);
    }
}

/// Whether files are read in place ([`read_in_place`]).
pub(crate) fn in_place() -> bool {
    IN_PLACE.load(Ordering::SeqCst)
}

/// A mapped file, for the handler's message: its address range and its path (leaked, so the
/// handler may read it at any time).
struct Slot {
    start: AtomicUsize,
    len: AtomicUsize,
    path: AtomicPtr<u8>,
    path_len: AtomicUsize,
}

const SLOTS: usize = 64;
#[allow(clippy::declare_interior_mutable_const)] // the array's initialiser, copied per slot
const EMPTY: Slot = Slot {
    start: AtomicUsize::new(0),
    len: AtomicUsize::new(0),
    path: AtomicPtr::new(std::ptr::null_mut()),
    path_len: AtomicUsize::new(0),
};
static MAPPED: [Slot; SLOTS] = [EMPTY; SLOTS];
static NEXT: AtomicUsize = AtomicUsize::new(0);

/// Notes that `path` is mapped at `start..start + len`, so a fault there can name it (the
/// first [`SLOTS`] files mapped; a fault in a later one says "an input file"). A file's map
/// lasts as long as its tensor source; a later map may take the addresses of one dropped, so
/// the handler looks from the newest slot back.
pub(crate) fn mapped(path: &Path, start: usize, len: usize) {
    let i = NEXT.fetch_add(1, Ordering::SeqCst);
    let Some(slot) = MAPPED.get(i) else { return };
    let bytes: &'static [u8] =
        Box::leak(path.display().to_string().into_bytes().into_boxed_slice());
    slot.path.store(bytes.as_ptr() as *mut u8, Ordering::SeqCst);
    slot.path_len.store(bytes.len(), Ordering::SeqCst);
    slot.len.store(len, Ordering::SeqCst);
    slot.start.store(start, Ordering::SeqCst);
}

/// The output folder being written and not yet published (a NUL-terminated path, leaked), which
/// the handler removes.
static UNPUBLISHED: AtomicPtr<u8> = AtomicPtr::new(std::ptr::null_mut());

/// Registers `dir` as the unpublished output folder (`None` once it is published or gone).
pub fn unpublished(dir: Option<&Path>) {
    let ptr = match dir {
        #[cfg(unix)]
        Some(d) => {
            use std::os::unix::ffi::OsStrExt;
            let mut bytes = d.as_os_str().as_bytes().to_vec();
            bytes.push(0);
            Box::leak(bytes.into_boxed_slice()).as_mut_ptr()
        }
        _ => std::ptr::null_mut(),
    };
    UNPUBLISHED.store(ptr, Ordering::SeqCst);
}

#[cfg(unix)]
fn install() {
    static INSTALL: std::sync::Once = std::sync::Once::new();
    INSTALL.call_once(|| {
        // SAFETY: `handler` calls only async-signal-safe functions, and the sigaction struct
        // is fully initialised before use.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = handler as *const () as usize;
            action.sa_flags = libc::SA_SIGINFO;
            libc::sigemptyset(&mut action.sa_mask);
            libc::sigaction(libc::SIGBUS, &action, std::ptr::null_mut());
        }
    });
}

#[cfg(unix)]
extern "C" fn handler(_: libc::c_int, info: *mut libc::siginfo_t, _: *mut libc::c_void) {
    let say = |b: &[u8]| {
        // SAFETY: write(2) is async-signal-safe; `b` is readable.
        unsafe { libc::write(2, b.as_ptr().cast(), b.len()) };
    };
    // SAFETY: the kernel passes a valid siginfo with SA_SIGINFO.
    let addr = unsafe { (*info).si_addr() } as usize;
    say(b"error: ");
    let file = MAPPED.iter().rev().find(|s| {
        let start = s.start.load(Ordering::SeqCst);
        start != 0 && (start..start + s.len.load(Ordering::SeqCst)).contains(&addr)
    });
    match file {
        Some(s) => {
            let (p, n) = (
                s.path.load(Ordering::SeqCst),
                s.path_len.load(Ordering::SeqCst),
            );
            // SAFETY: `p` points to `n` leaked bytes.
            say(unsafe { std::slice::from_raw_parts(p, n) });
            say(b": the file");
        }
        None => say(b"an input file"),
    }
    say(b" shrank while it was being read (another program truncated or rewrote it); no output was written. Run again once the file is complete.\n");
    let dir = UNPUBLISHED.load(Ordering::SeqCst);
    if !dir.is_null() {
        // SAFETY: `dir` is a leaked NUL-terminated path; the calls are async-signal-safe.
        unsafe { remove_flat_dir(dir as *const libc::c_char) };
    }
    // SAFETY: _exit(2) is async-signal-safe.
    unsafe { libc::_exit(1) };
}

/// Removes the files of the folder `dir` (it holds no folders) and the folder, with system
/// calls only: no allocation, as a signal handler requires.
///
/// # Safety
/// `dir` must be a NUL-terminated path.
#[cfg(target_os = "linux")]
unsafe fn remove_flat_dir(dir: *const libc::c_char) {
    // SAFETY: the caller's contract; the buffer is this frame's, and getdents64 fills at most
    // its length with records whose lengths it gives.
    unsafe {
        let fd = libc::open(dir, libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC);
        if fd < 0 {
            return;
        }
        let mut buf = [0u8; 4096];
        loop {
            let n = libc::syscall(libc::SYS_getdents64, fd, buf.as_mut_ptr(), buf.len());
            if n <= 0 {
                break;
            }
            let mut at = 0;
            while at < n as usize {
                let d = buf.as_ptr().add(at) as *const libc::dirent64;
                let name = (*d).d_name.as_ptr();
                let dot = *name == b'.' as libc::c_char
                    && (*name.add(1) == 0
                        || (*name.add(1) == b'.' as libc::c_char && *name.add(2) == 0));
                if !dot {
                    libc::unlinkat(fd, name, 0);
                }
                at += (*d).d_reclen as usize;
            }
        }
        libc::close(fd);
        libc::rmdir(dir);
    }
}

#[cfg(all(unix, not(target_os = "linux")))]
unsafe fn remove_flat_dir(_: *const libc::c_char) {}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    /// The handler's removal of the unpublished folder, by system calls alone: every file
    /// (more than one buffer of directory records) and the folder go.
    #[test]
    fn the_unpublished_folder_is_removed_without_allocating() {
        let parent = tempfile::tempdir().unwrap();
        let dir = parent.path().join(".out.partial-1");
        std::fs::create_dir(&dir).unwrap();
        for i in 0..300 {
            std::fs::write(dir.join(format!("plot_{i:03}_with_a_long_name.svg")), b"x").unwrap();
        }
        let path = std::ffi::CString::new(dir.to_str().unwrap()).unwrap();
        // SAFETY: a NUL-terminated path.
        unsafe { remove_flat_dir(path.as_ptr()) };
        assert!(!dir.exists());
        assert!(parent.path().exists());
    }
}
