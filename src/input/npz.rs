//! `.npz` archives of named stacked arrays, as written by `numpy.savez`: each member is an
//! `.npy` image stored uncompressed inside the zip, so it is read in place with positional
//! reads. `numpy.savez_compressed` members would need whole-array decompression and are
//! refused with a message saying so.

use std::fs::File;
use std::path::Path;

use super::npy::NpyTensor;
use super::{Select, TensorSource};
use crate::error::{Error, Result};

pub fn open(path: &Path, select: &Select) -> Result<Vec<Box<dyn TensorSource>>> {
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    let archive_len = file.metadata().map_err(|e| Error::io(path, e))?.len();
    let mut zip = zip::ZipArchive::new(file)
        .map_err(|e| Error::bad(path, format!("not a readable .npz (zip) archive: {e}")))?;
    let mut out: Vec<Box<dyn TensorSource>> = Vec::new();
    for i in 0..zip.len() {
        let member = zip
            .by_index_raw(i)
            .map_err(|e| Error::bad(path, format!("damaged .npz member {i}: {e}")))?;
        let Some(name) = member.name().strip_suffix(".npy").map(str::to_owned) else {
            continue;
        };
        if !select.keep(&name) {
            continue;
        }
        if member.compression() != zip::CompressionMethod::Stored {
            return Err(Error::unusable(
                path,
                Some(&name),
                "compressed .npz members (numpy.savez_compressed) cannot be streamed; save with numpy.savez",
            ));
        }
        let (start, size) = (member.data_start(), member.size());
        drop(member);
        if start.checked_add(size).is_none_or(|end| end > archive_len) {
            return Err(Error::bad(
                path,
                format!("member '{name}' claims {size} bytes at offset {start} but the archive is {archive_len} bytes long; it is truncated or damaged"),
            ));
        }
        let f = File::open(path).map_err(|e| Error::io(path, e))?;
        let t = NpyTensor::open_at(path, f, start, size, name.clone()).map_err(|e| match e {
            Error::BadInput { path, msg } => Error::bad(path, format!("member '{name}': {msg}")),
            Error::Unusable {
                path,
                tensor: None,
                msg,
            } => Error::unusable(path, Some(&name), msg),
            other => other,
        })?;
        out.push(Box::new(t));
    }
    if out.is_empty() {
        return Err(Error::unusable(
            path,
            None,
            "no float arrays selected in this .npz",
        ));
    }
    Ok(out)
}
