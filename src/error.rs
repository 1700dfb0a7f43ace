//! Typed errors of the library. Each variant names the file (and tensor) involved and,
//! where the user can act, says what to do. The binary adds context with `anyhow`.

use std::path::PathBuf;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An I/O failure. The OS message is part of this one line, so it is not also exposed as
    /// `source()`: `anyhow`'s `{:#}` would print it a second time.
    #[error("{path}: {err}")]
    Io { path: PathBuf, err: std::io::Error },

    /// The file is not what its extension or header promises.
    #[error("{path}: {msg}")]
    BadInput { path: PathBuf, msg: String },

    /// A well-formed file whose contents cannot be analysed (too few samples, no coordinates,
    /// unsupported dtype, disagreeing inputs).
    #[error("{path}{}: {msg}", tensor.as_ref().map(|t| format!(" [tensor {t}]")).unwrap_or_default())]
    Unusable {
        path: PathBuf,
        tensor: Option<String>,
        msg: String,
    },

    #[error("invalid option: {0}")]
    Config(String),

    /// A GPU failure: never turned into zeros.
    #[error("GPU: {0}")]
    Gpu(String),

    /// The device failed mid-run (lost, or out of memory): `--backend auto` falls back to the
    /// CPU engine on this one.
    #[error("GPU device failed: {0}")]
    GpuFault(String),

    #[error("no GPU adapter: {0}")]
    NoAdapter(String),
}

impl Error {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            err: source,
        }
    }

    pub fn bad(path: impl Into<PathBuf>, msg: impl Into<String>) -> Self {
        Error::BadInput {
            path: path.into(),
            msg: msg.into(),
        }
    }

    pub fn unusable(
        path: impl Into<PathBuf>,
        tensor: Option<&str>,
        msg: impl Into<String>,
    ) -> Self {
        Error::Unusable {
            path: path.into(),
            tensor: tensor.map(str::to_owned),
            msg: msg.into(),
        }
    }
}
