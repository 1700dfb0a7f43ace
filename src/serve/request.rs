//! A job request: inputs confined to the data root, and analyze options from a whitelist with
//! typed checks, turned into the arguments of a `gradtail analyze` run.

use std::ffi::OsString;
use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The engine a job waits for: one job runs per engine at a time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Lane {
    Cpu,
    Gpu,
}

/// The body of `POST /v1/jobs`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Body {
    inputs: Vec<String>,
    #[serde(default)]
    options: Map<String, Value>,
}

/// A checked job request, as stored in the job's record.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Spec {
    /// Paths relative to the data root, as given.
    pub inputs: Vec<String>,
    /// Analyze options, names in snake_case.
    pub options: Map<String, Value>,
}

/// The options a job may set: every `analyze` option except `--out`, which the server owns.
const OPTIONS: [&str; 12] = [
    "backend",
    "batch_size",
    "block",
    "center",
    "coords_dtype",
    "exclude",
    "include",
    "mem_budget",
    "no_fits",
    "no_powerlaw",
    "no_spectrum",
    "skip_bad",
];

/// Parses and checks a request body; the error is the message for a 400 reply.
pub fn parse(body: &[u8], root: &Path) -> Result<Spec, String> {
    let body: Body = serde_json::from_slice(body).map_err(|e| match e.classify() {
        serde_json::error::Category::Data => {
            format!(
                "the request is not a job ({e}); send {{\"inputs\": [...], \"options\": {{...}}}}"
            )
        }
        _ => format!("the request is not valid JSON: {e}"),
    })?;
    if body.inputs.is_empty() {
        return Err("`inputs` is empty: give at least one path under the data root".into());
    }
    let mut options = Map::new();
    for (name, value) in body.options {
        // The command line's spelling (`no-fits`) is accepted too.
        options.insert(name.replace('-', "_"), value);
    }
    let spec = Spec {
        inputs: body.inputs,
        options,
    };
    analyze_args(&spec, root, Path::new("out"))?;
    Ok(spec)
}

impl Spec {
    /// The engine the job needs; `auto` runs where `auto_lane` says (a real GPU or not).
    pub fn lane(&self, auto_lane: Lane) -> Lane {
        match self.options.get("backend").and_then(Value::as_str) {
            Some("cpu") => Lane::Cpu,
            Some("gpu") => Lane::Gpu,
            _ => auto_lane,
        }
    }
}

/// The arguments of `gradtail analyze` for `spec`, writing to `out`, for a process that runs
/// in the data root: its files are named relative to the root, so what the analysis writes
/// (summary.json's inputs, the report) names them as the client did, and not where the root
/// lies. Checked again before each run, since the data root may have changed since the job
/// was accepted.
pub fn analyze_args(spec: &Spec, root: &Path, out: &Path) -> Result<Vec<OsString>, String> {
    let mut args: Vec<OsString> =
        vec!["analyze".into(), "--quiet".into(), "--progress-json".into()];
    args.push(flag("out", out.as_os_str()));
    for (name, value) in &spec.options {
        let bad = |want: &str| format!("option `{name}`: expected {want}, got {value}");
        match name.as_str() {
            "backend" => match value.as_str() {
                Some(v @ ("auto" | "cpu" | "gpu")) => args.push(flag(name, v)),
                _ => return Err(bad("\"auto\", \"cpu\" or \"gpu\"")),
            },
            "coords_dtype" => match value.as_str() {
                Some(v @ ("f32" | "f64")) => args.push(flag(name, v)),
                _ => return Err(bad("\"f32\" or \"f64\"")),
            },
            "center" => match value.as_str() {
                Some(v @ ("mean" | "median" | "none")) => args.push(flag(name, v)),
                Some(v) if v.ends_with(".npy") => {
                    args.push(flag(name, under(root, v)?.as_os_str()))
                }
                _ => {
                    return Err(bad(
                        "\"mean\", \"median\", \"none\" or an .npy file under the data root",
                    ))
                }
            },
            "block" => match value.as_u64() {
                Some(v) if v > 0 => args.push(flag(name, v.to_string())),
                _ => return Err(bad("a positive integer")),
            },
            "batch_size" => match value.as_f64() {
                Some(v) if v.is_finite() && v > 0.0 => args.push(flag(name, v.to_string())),
                _ => return Err(bad("a positive number")),
            },
            "mem_budget" => {
                let text = match value {
                    Value::Number(n) => n.to_string(),
                    Value::String(s) => s.clone(),
                    _ => return Err(bad("a size like \"8G\" or a number of bytes")),
                };
                let bytes =
                    crate::cli::parse_bytes(&text).map_err(|e| format!("option `{name}`: {e}"))?;
                args.push(flag(name, bytes.to_string()));
            }
            "include" | "exclude" => {
                let globs: Option<Vec<&str>> = match value {
                    Value::String(s) => Some(vec![s]),
                    Value::Array(a) => a.iter().map(Value::as_str).collect(),
                    _ => None,
                };
                for g in globs.ok_or_else(|| bad("a glob or a list of globs"))? {
                    args.push(flag(name, g));
                }
            }
            "no_fits" | "no_powerlaw" | "no_spectrum" | "skip_bad" => match value.as_bool() {
                Some(true) => args.push(format!("--{}", name.replace('_', "-")).into()),
                Some(false) => {}
                None => return Err(bad("true or false")),
            },
            _ => {
                return Err(format!(
                    "unknown option `{name}`; the options are {}",
                    OPTIONS.join(", ")
                ))
            }
        }
    }
    // After `--`, an input is never read as an option.
    args.push("--".into());
    for input in &spec.inputs {
        args.push(under(root, input)?.into());
    }
    Ok(args)
}

/// `--name=value`, with the command line's spelling of the name.
fn flag(name: &str, value: impl AsRef<std::ffi::OsStr>) -> OsString {
    let mut f = OsString::from(format!("--{}=", name.replace('_', "-")));
    f.push(value);
    f
}

/// [`confine`]'s canonical path of `rel`, relative to `root` (`.` for the root itself).
fn under(root: &Path, rel: &str) -> Result<PathBuf, String> {
    let canonical = confine(root, rel)?;
    let inside = canonical
        .strip_prefix(root)
        .expect("confine keeps paths under the root");
    Ok(if inside.as_os_str().is_empty() {
        PathBuf::from(".")
    } else {
        inside.to_owned()
    })
}

/// The canonical path of `rel` under the canonical `root`: relative, no `..`, and no symbolic
/// link (of the path or, for a folder, of a file in it) that leads outside the root.
pub fn confine(root: &Path, rel: &str) -> Result<PathBuf, String> {
    let path = Path::new(rel);
    let plain = path
        .components()
        .all(|c| matches!(c, Component::Normal(_) | Component::CurDir));
    if rel.is_empty() || !plain {
        return Err(format!(
            "input `{rel}`: give a path relative to the data root, without `..` or a leading `/`"
        ));
    }
    let canonical = root
        .join(path)
        .canonicalize()
        .map_err(|_| format!("input `{rel}`: no such file or folder under the data root"))?;
    if !canonical.starts_with(root) {
        return Err(format!(
            "input `{rel}` leads outside the data root (a symbolic link); link or copy the data inside it"
        ));
    }
    if canonical.is_dir() {
        let entries = std::fs::read_dir(&canonical)
            .map_err(|e| format!("input `{rel}`: cannot list the folder: {e}"))?;
        for entry in entries.flatten() {
            let inside = entry
                .path()
                .canonicalize()
                .is_ok_and(|p| p.starts_with(root));
            if !inside {
                return Err(format!(
                    "input `{rel}`: {} leads outside the data root (a symbolic link); link or copy the data inside it",
                    entry.file_name().to_string_lossy()
                ));
            }
        }
    }
    Ok(canonical)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.npy"), b"x").unwrap();
        dir
    }

    fn spec(options: Value) -> Spec {
        Spec {
            inputs: vec!["a.npy".into()],
            options: options.as_object().unwrap().clone(),
        }
    }

    #[test]
    fn options_map_to_flags() {
        let r = root();
        let root = r.path().canonicalize().unwrap();
        let s = spec(
            serde_json::json!({"backend": "cpu", "block": 8, "no_fits": true,
            "include": ["fc*", "x"], "mem_budget": "1G", "skip_bad": false,
            "batch_size": 32, "no_spectrum": true, "no_powerlaw": false}),
        );
        let args = analyze_args(&s, &root, Path::new("/o")).unwrap();
        let args: Vec<String> = args.iter().map(|a| a.to_string_lossy().into()).collect();
        assert_eq!(
            args,
            [
                "analyze",
                "--quiet",
                "--progress-json",
                "--out=/o",
                "--backend=cpu",
                "--batch-size=32",
                "--block=8",
                "--include=fc*",
                "--include=x",
                "--mem-budget=1073741824",
                "--no-fits",
                "--no-spectrum",
                "--",
                "a.npy"
            ]
        );
    }

    #[test]
    fn bad_options_are_named() {
        let r = root();
        let root = r.path().canonicalize().unwrap();
        for (options, part) in [
            (serde_json::json!({"out": "/tmp"}), "unknown option `out`"),
            (serde_json::json!({"block": 0}), "option `block`"),
            (serde_json::json!({"block": "8"}), "option `block`"),
            (serde_json::json!({"backend": "tpu"}), "option `backend`"),
            (serde_json::json!({"no_fits": 1}), "option `no_fits`"),
            (serde_json::json!({"batch_size": 0}), "option `batch_size`"),
            (
                serde_json::json!({"batch_size": "32"}),
                "option `batch_size`",
            ),
            (
                serde_json::json!({"no_spectrum": "yes"}),
                "option `no_spectrum`",
            ),
            (
                serde_json::json!({"mem_budget": "lots"}),
                "option `mem_budget`",
            ),
            (serde_json::json!({"center": "../x.npy"}), "without `..`"),
        ] {
            let e = analyze_args(&spec(options), &root, Path::new("o")).unwrap_err();
            assert!(e.contains(part), "{e}");
        }
    }

    #[test]
    fn paths_stay_under_the_root() {
        let r = root();
        let root = r.path().canonicalize().unwrap();
        assert_eq!(confine(&root, "./a.npy").unwrap(), root.join("a.npy"));
        for bad in [
            "",
            "/etc/passwd",
            "../a.npy",
            "x/../../a.npy",
            "missing.npy",
        ] {
            assert!(confine(&root, bad).is_err(), "{bad}");
        }
        #[cfg(unix)]
        {
            let outside = tempfile::tempdir().unwrap();
            std::fs::write(outside.path().join("b.npy"), b"x").unwrap();
            std::os::unix::fs::symlink(outside.path().join("b.npy"), root.join("out.npy")).unwrap();
            assert!(confine(&root, "out.npy").unwrap_err().contains("outside"));
            std::fs::create_dir(root.join("d")).unwrap();
            std::os::unix::fs::symlink(root.join("a.npy"), root.join("d/in.npy")).unwrap();
            assert!(confine(&root, "d").is_ok());
            std::os::unix::fs::symlink(outside.path().join("b.npy"), root.join("d/o.npy")).unwrap();
            assert!(confine(&root, "d").unwrap_err().contains("o.npy"));
        }
    }
}
