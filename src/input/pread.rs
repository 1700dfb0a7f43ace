//! Positioned reads on Unix (`pread`) and Windows (`ReadFile` at an offset). Neither depends
//! on a shared file cursor, so one `File` can serve blocks read in any order by any thread.

use std::fs::File;
use std::io;

#[cfg(not(any(unix, windows)))]
compile_error!("gradtail reads inputs with positioned reads, available on Unix and Windows");

/// Reads up to `buf.len()` bytes at `offset`; returns how many were read (0 at end of file).
fn read_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    #[cfg(unix)]
    return std::os::unix::fs::FileExt::read_at(file, buf, offset);
    #[cfg(windows)]
    return std::os::windows::fs::FileExt::seek_read(file, buf, offset);
}

/// Reads until `buf` is full or the file ends; returns the bytes read.
pub fn read_up_to(file: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        match read_at(file, &mut buf[done..], offset + done as u64) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}

/// Fills `buf` from `offset`, or fails with [`truncated`] when the file ends first.
pub fn read_exact_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<()> {
    if read_up_to(file, buf, offset)? < buf.len() {
        return Err(truncated());
    }
    Ok(())
}

/// The error of a file that ends before the data its header promises.
pub fn truncated() -> io::Error {
    io::Error::new(
        io::ErrorKind::UnexpectedEof,
        "the file ends before the data its header promises (was it truncated?)",
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn reads_at_offsets_and_reports_the_end() {
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(b"0123456789").unwrap();
        let mut buf = [0u8; 4];
        read_exact_at(&f, &mut buf, 3).unwrap();
        assert_eq!(&buf, b"3456");
        assert_eq!(read_up_to(&f, &mut buf, 8).unwrap(), 2);
        let e = read_exact_at(&f, &mut buf, 8).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
    }
}
