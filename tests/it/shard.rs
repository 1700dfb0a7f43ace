//! `shard` and `merge`: a run merged from N shards equals the same run in one process, on
//! both engines (per-coordinate maps to the bit, pooled numbers to `tolerance::MERGED`), and
//! `merge` refuses states that do not belong together, naming the problem in one line.

use std::path::{Path, PathBuf};

use assert_cmd::Command;

use crate::common::{self, tolerance, Draws};
use gradtail::analyze::{self, Analysis, Options};
use gradtail::engine::cpu::CpuEngine;
use gradtail::engine::Backend;
use gradtail::input::{self, Select};
use gradtail::shard::{self, StateFile};

/// Three tensors whose bytes one dominates, so 2 and 3 shards cut it into coordinate ranges:
/// `big` (64 × 3000 f32, SαS 1.5, 10 % exact zeros, a constant coordinate and a NaN
/// sample), `mid` (64 × 400 f32, SαS 1.8) and `small` (64 × 100 f64, Gaussian).
/// Three tensors; with `nan`, one non-finite entry in `big` (its spectrum, and the model's,
/// are then undefined).
fn inputs(dir: &Path, nan: bool) -> Vec<PathBuf> {
    let k = 64;
    let mut d = Draws(0x5eed);
    let mut big: Vec<f32> = (0..k * 3000)
        .map(|_| {
            if d.uniform() < 0.1 {
                0.0
            } else {
                d.sas(1.5) as f32
            }
        })
        .collect();
    for r in 0..k {
        big[r * 3000 + 5] = 0.25;
    }
    if nan {
        big[10 * 3000 + 7] = f32::NAN;
    }
    let mid: Vec<f32> = (0..k * 400).map(|_| d.sas(1.8) as f32).collect();
    let small: Vec<f64> = (0..k * 100).map(|_| d.sas(2.0)).collect();
    let paths = ["big.npy", "mid.npy", "small.npy"].map(|n| dir.join(n));
    common::write_npy_f32(&paths[0], &[k, 3000], &big);
    common::write_npy_f32(&paths[1], &[k, 400], &mid);
    common::write_npy_f64(&paths[2], &[k, 100], &small);
    paths.to_vec()
}

fn opts() -> Options {
    Options {
        // Everything fits: the tables are kept whole and compared coordinate by coordinate.
        mem_budget: 1 << 30,
        threads: 2,
        ..Options::default()
    }
}

fn single(paths: &[PathBuf], opts: &Options, backend: &mut dyn Backend) -> Analysis {
    let inputs = input::open_all(paths, &Select::default(), false).unwrap();
    analyze::analyze(&inputs.sources, opts, backend).unwrap()
}

/// Runs every shard of `of` and merges the states given in reverse order; returns the merged
/// analysis and, per shard, the tensors it holds a piece of.
fn sharded(
    paths: &[PathBuf],
    opts: &Options,
    backend: &mut dyn Backend,
    of: usize,
) -> (Analysis, Vec<Vec<usize>>) {
    let dir = tempfile::tempdir().unwrap();
    let inputs = input::open_all(paths, &Select::default(), false).unwrap();
    let fp = shard::fingerprint(&inputs, opts, "cpu", "f32").unwrap();
    let mut states = Vec::new();
    for i in 0..of {
        let out = dir.path().join(format!("state-{i}.safetensors"));
        shard::shard(&inputs, opts, backend, (i, of), fp.clone(), &out).unwrap();
        states.push(out);
    }
    let held = states
        .iter()
        .map(|s| {
            let h = StateFile::open(s).unwrap().header;
            h.pieces.iter().map(|p| p.0).collect()
        })
        .collect();
    states.reverse();
    let merged = shard::merge(&states, opts.mem_budget, &mut |_| Ok(())).unwrap();
    (merged.analysis, held)
}

/// Walks two JSON values: strings, booleans and integers equal, floats within `tol`
/// relative, nulls (NaN) where the other has null.
fn same_json(path: &str, a: &serde_json::Value, b: &serde_json::Value, tol: f64) {
    use serde_json::Value as V;
    match (a, b) {
        (V::Object(x), V::Object(y)) => {
            assert_eq!(x.len(), y.len(), "{path}: fields differ");
            for (k, v) in x {
                same_json(&format!("{path}.{k}"), v, &y[k], tol);
            }
        }
        (V::Array(x), V::Array(y)) => {
            assert_eq!(x.len(), y.len(), "{path}: lengths differ");
            for (i, (v, w)) in x.iter().zip(y).enumerate() {
                same_json(&format!("{path}[{i}]"), v, w, tol);
            }
        }
        (V::Number(x), V::Number(y)) if x.is_f64() || y.is_f64() => {
            let (x, y) = (x.as_f64().unwrap(), y.as_f64().unwrap());
            let rel = (x - y).abs() / x.abs().max(y.abs()).max(f64::MIN_POSITIVE);
            assert!(rel <= tol, "{path}: {x} vs {y} ({rel:e})");
        }
        _ => assert_eq!(a, b, "{path}"),
    }
}

/// Per-coordinate maps to the bit (NaN where NaN), pooled numbers within `tol`.
fn same_analysis(got: &Analysis, want: &Analysis, tol: f64) {
    assert_eq!(got.tensors.len(), want.tensors.len());
    for (g, w) in got.tensors.iter().zip(&want.tensors) {
        let name = &w.meta.name;
        assert_eq!(g.meta.name, *name);
        for ((stat, gc), (_, wc)) in g.coords.iter().zip(w.coords.iter()) {
            let bits = |c: &[f64]| c.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
            assert!(bits(gc) == bits(wc), "{name}/{stat} differs");
        }
        assert_eq!(g.coords.stats(), w.coords.stats());
        let (gs, ws) = (
            serde_json::to_value(&g.summary).unwrap(),
            serde_json::to_value(&w.summary).unwrap(),
        );
        same_json(name, &gs, &ws, tol);
    }
    same_json(
        "model",
        &serde_json::to_value(&got.model).unwrap(),
        &serde_json::to_value(&want.model).unwrap(),
        tol,
    );
    assert_eq!(
        (got.samples, got.block_size, got.groups, got.bytes_read),
        (want.samples, want.block_size, want.groups, want.bytes_read)
    );
}

fn merged_equals_single(opts: &Options, backend: &mut dyn Backend, tol: f64, nan: bool) {
    let dir = tempfile::tempdir().unwrap();
    let paths = inputs(dir.path(), nan);
    let want = single(&paths, opts, backend);
    // The structure statistics are compared field by field with the rest of the summaries;
    // make sure there is something to compare.
    let so = &opts.structure;
    for t in &want.tensors {
        let st = &t.summary.structure;
        let finite = !(nan && t.meta.name == "big");
        assert_eq!(
            st.spectrum.is_some(),
            so.spectrum && finite,
            "{}",
            t.meta.name
        );
        assert_eq!(
            st.powerlaw_dimension.is_some(),
            so.powerlaw,
            "{}",
            t.meta.name
        );
        assert_eq!(st.noise_scale.is_some(), so.batch_size.is_some());
        assert_eq!(st.powerlaw_iteration.is_some(), so.powerlaw_coords);
    }
    assert_eq!(want.model.spectrum.is_some(), so.spectrum && !nan);
    for of in [1, 2, 3] {
        let (got, held) = sharded(&paths, opts, backend, of);
        same_analysis(&got, &want, tol);
        if of > 1 {
            // `big` is cut into coordinate ranges: it has a piece in more than one shard.
            let with_big = held.iter().filter(|h| h.contains(&0)).count();
            assert!(with_big > 1, "{of} shards: {held:?}");
        }
    }
}

#[test]
fn merged_equals_single_run_cpu() {
    merged_equals_single(
        &opts(),
        &mut CpuEngine::new(2).unwrap(),
        tolerance::MERGED,
        true,
    );
}

/// Small blocks: tensors read in row chunks of K1 rows and column strips, not whole columns,
/// so a shard's range starts inside a strip; the medians and fits then take their own read.
#[test]
fn merged_equals_single_run_cpu_row_chunks_median() {
    let opts = Options {
        block_bytes: 4096,
        center: analyze::Center::Median,
        ..opts()
    };
    merged_equals_single(
        &opts,
        &mut CpuEngine::new(2).unwrap(),
        tolerance::MERGED,
        true,
    );
}

/// Every structure accumulator in the state: the Gram, Σu², |u_k| of chosen samples, the
/// iteration-wise power-law fits and, with a centre file, Σc² for the noise scale.
#[test]
fn merged_equals_single_run_cpu_structure() {
    let dir = tempfile::tempdir().unwrap();
    let centre = dir.path().join("centre.npy");
    let mut d = Draws(3);
    let c: Vec<f64> = (0..3500).map(|_| 0.1 * d.sas(2.0)).collect();
    common::write_npy_f64(&centre, &[3500], &c);
    let opts = Options {
        center: analyze::Center::File(centre),
        structure: analyze::structure::StructureOptions {
            powerlaw_coords: true,
            powerlaw_samples: Some(vec![1, 30, 63]),
            batch_size: Some(32.0),
            ..Default::default()
        },
        ..opts()
    };
    merged_equals_single(
        &opts,
        &mut CpuEngine::new(2).unwrap(),
        tolerance::MERGED,
        false,
    );
}

#[test]
fn merged_equals_single_run_gpu() {
    let Some(mut gpu) = common::gpu_or_skip(Default::default()) else {
        return;
    };
    merged_equals_single(&opts(), &mut gpu, tolerance::MERGED_GPU, true);
}

fn gradtail() -> Command {
    let mut c = Command::cargo_bin("gradtail").unwrap();
    c.env("RUST_LOG", "warn");
    c
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Writes shard `index` of `of` with the CLI.
fn shard_cli(inputs: &[PathBuf], index: usize, of: usize, out: &Path, extra: &[&str]) {
    let mut c = gradtail();
    c.arg("shard").args(inputs.iter().map(|p| path(p)));
    c.args(["--index", &index.to_string(), "--of", &of.to_string()]);
    c.args(["--out", path(out), "--backend", "cpu", "-q"])
        .args(extra);
    c.assert().success();
}

/// The command line end to end: `merge` writes the files `analyze` writes, with the same
/// contents (four equal tensors, two shards of two whole tensors each: every per-tensor
/// number comes from the same engine calls, so the CSV and the maps are equal byte for byte).
#[test]
fn merge_writes_what_analyze_writes() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut draws = Draws(7);
    let paths: Vec<PathBuf> = (0..4)
        .map(|i| {
            let p = d.join(format!("t{i}.npy"));
            let v: Vec<f32> = (0..32 * 50).map(|_| draws.sas(1.6) as f32).collect();
            common::write_npy_f32(&p, &[32, 50], &v);
            p
        })
        .collect();
    let mut c = gradtail();
    c.arg("analyze").args(paths.iter().map(|p| path(p)));
    c.args(["--out", path(&d.join("single")), "--backend", "cpu", "-q"]);
    c.assert().success();
    for i in 0..2 {
        shard_cli(&paths, i, 2, &d.join(format!("s{i}.st")), &[]);
    }
    gradtail()
        .args(["merge", path(&d.join("s1.st")), path(&d.join("s0.st"))])
        .args(["--out", path(&d.join("merged"))])
        .assert()
        .success();
    let read = |dir: &str, f: &str| std::fs::read(d.join(dir).join(f)).unwrap();
    assert!(read("single", "tensors.csv") == read("merged", "tensors.csv"));
    assert!(read("single", "coords.safetensors") == read("merged", "coords.safetensors"));
    // Eigenvalues to the bit (the file's metadata map has no fixed order, so not its bytes).
    let eig = |dir: &str| {
        let bytes = read(dir, "spectrum.safetensors");
        let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        let mut v: Vec<(String, Vec<u8>)> = st
            .tensors()
            .into_iter()
            .map(|(n, t)| (n, t.data().to_vec()))
            .collect();
        v.sort();
        v
    };
    assert_eq!(eig("single").len(), 5, "four tensors and the model");
    assert!(eig("single") == eig("merged"));
    let json = |dir| {
        let mut v: serde_json::Value = serde_json::from_slice(&read(dir, "summary.json")).unwrap();
        v.as_object_mut().unwrap().remove("elapsed_s");
        v
    };
    same_json(
        "summary",
        &json("merged"),
        &json("single"),
        tolerance::MERGED,
    );
    let html = String::from_utf8(read("merged", "report.html")).unwrap();
    assert!((0..4).all(|i| html.contains(&format!("t{i}"))));
}

/// Runs `merge` on `states` and checks it fails with one line containing `want`, naming
/// `culprit`, and leaves no output folder.
fn refused(states: &[&Path], want: &str, culprit: Option<&Path>) {
    let out = states[0].with_file_name("merged");
    let got = gradtail()
        .arg("merge")
        .args(states.iter().map(|p| path(p)))
        .args(["--out", path(&out)])
        .assert()
        .failure();
    let err = String::from_utf8(got.get_output().stderr.clone()).unwrap();
    assert_eq!(err.trim_end().lines().count(), 1, "not one line: {err}");
    assert!(err.contains(want), "{want:?} not in: {err}");
    if let Some(c) = culprit {
        assert!(err.contains(path(c)), "{} not named: {err}", c.display());
    }
    assert!(!out.exists(), "merge left {}", out.display());
}

/// Rewrites a state's JSON header with `edit` (the tensors, and so the checksum, unchanged).
fn edit_header(src: &Path, dst: &Path, edit: impl FnOnce(&mut serde_json::Value)) {
    let bytes = std::fs::read(src).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let mut info = meta.metadata().clone().unwrap();
    let mut header: serde_json::Value = serde_json::from_str(&info["gradtail.state"]).unwrap();
    edit(&mut header);
    info.insert("gradtail.state".into(), header.to_string());
    let out = safetensors::serialize(st.tensors(), Some(info)).unwrap();
    std::fs::write(dst, out).unwrap();
}

#[test]
fn merge_refuses_states_that_do_not_belong_together() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut draws = Draws(11);
    std::fs::create_dir(d.join("other")).unwrap();
    let mut write = |name: &str, p: usize| {
        let path = d.join(name);
        let v: Vec<f32> = (0..16 * p).map(|_| draws.sas(1.7) as f32).collect();
        common::write_npy_f32(&path, &[16, p], &v);
        path
    };
    let data = [write("a.npy", 90)];
    // The same name, another shape (the fingerprint holds names, shapes, dtypes and sizes;
    // not the values).
    let other = [write("other/a.npy", 91)];
    let s: Vec<PathBuf> = (0..3).map(|i| d.join(format!("s{i}.st"))).collect();
    for (i, p) in s.iter().enumerate() {
        shard_cli(&data, i, 3, p, &["--no-fits"]);
    }
    let (s0, s1, s2) = (s[0].as_path(), s[1].as_path(), s[2].as_path());

    refused(&[s0, s2], "shard 1 of 3 missing", None);
    refused(&[s0, s1, s1, s2], "shard 1 of 3 is given twice", Some(s1));

    let two = d.join("two.st");
    shard_cli(&data, 1, 2, &two, &["--no-fits"]);
    refused(
        &[s0, &two, s2],
        "merge the states of one sharding",
        Some(&two),
    );

    let moved = d.join("moved.st");
    shard_cli(&other, 1, 3, &moved, &["--no-fits"]);
    refused(&[s0, &moved, s2], "other inputs", Some(&moved));

    let block = d.join("block.st");
    shard_cli(&data, 1, 3, &block, &["--no-fits", "--block", "2"]);
    refused(&[s0, &block, s2], "other options (--block)", Some(&block));
    let fits = d.join("fits.st");
    shard_cli(&data, 1, 3, &fits, &[]);
    refused(&[s0, &fits, s2], "other options (--no-fits)", Some(&fits));
    let spectrum = d.join("spectrum.st");
    shard_cli(&data, 1, 3, &spectrum, &["--no-fits", "--no-spectrum"]);
    refused(
        &[s0, &spectrum, s2],
        "other options (the structure options",
        Some(&spectrum),
    );

    let newer = d.join("newer.st");
    edit_header(s1, &newer, |h| h["schema"] = "gradtail.state/2".into());
    refused(&[s0, &newer, s2], "a gradtail.state/2 state", Some(&newer));

    let bytes = std::fs::read(s1).unwrap();
    let cut = d.join("cut.st");
    std::fs::write(&cut, &bytes[..bytes.len() - 100]).unwrap();
    refused(&[s0, &cut, s2], "truncated", Some(&cut));

    let flipped = d.join("flipped.st");
    let mut damaged = bytes.clone();
    let at = damaged.len() - 20;
    damaged[at] ^= 0x40;
    std::fs::write(&flipped, &damaged).unwrap();
    refused(&[s0, &flipped, s2], "checksum", Some(&flipped));

    let foreign = d.join("coords.st");
    let coords = safetensors::serialize(
        [(
            "x",
            safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![1], &[0u8; 4])
                .unwrap(),
        )],
        None,
    )
    .unwrap();
    std::fs::write(&foreign, coords).unwrap();
    refused(&[s0, &foreign, s2], "not a gradtail state", Some(&foreign));

    // The three states themselves merge.
    gradtail()
        .args(["merge", path(s2), path(s0), path(s1)])
        .args(["--out", path(&d.join("ok"))])
        .assert()
        .success();
}

/// (tensor, columns) of every block read, shared by the sources of one run.
type Reads = std::sync::Arc<std::sync::Mutex<Vec<(usize, std::ops::Range<usize>)>>>;

/// A source that records every block read from it.
struct Counting {
    inner: Box<dyn input::TensorSource>,
    reads: Reads,
    tensor: usize,
}

impl input::TensorSource for Counting {
    fn meta(&self) -> &input::TensorMeta {
        self.inner.meta()
    }

    fn read_block_into(
        &self,
        rows: std::ops::Range<usize>,
        cols: std::ops::Range<usize>,
        reuse: Option<input::BlockData>,
    ) -> gradtail::Result<input::Block> {
        self.reads.lock().unwrap().push((self.tensor, cols.clone()));
        self.inner.read_block_into(rows, cols, reuse)
    }

    fn is_fortran(&self) -> bool {
        self.inner.is_fortran()
    }
}

/// A shard reads only the coordinates of its pieces, each once per read the plan makes of it
/// (one on the CPU engine, whose blocks of whole columns feed both passes).
#[test]
fn a_shard_reads_only_its_coordinates() {
    let dir = tempfile::tempdir().unwrap();
    let paths = inputs(dir.path(), true);
    let opts = opts();
    let mut cpu = CpuEngine::new(2).unwrap();
    for i in 0..3 {
        let reads = Reads::default();
        let mut inputs = input::open_all(&paths, &Select::default(), false).unwrap();
        inputs.sources = std::mem::take(&mut inputs.sources)
            .into_iter()
            .enumerate()
            .map(|(tensor, inner)| {
                Box::new(Counting {
                    inner,
                    reads: reads.clone(),
                    tensor,
                }) as Box<dyn input::TensorSource>
            })
            .collect();
        let fp = shard::fingerprint(&inputs, &opts, "cpu", "f32").unwrap();
        let out = dir.path().join(format!("s{i}"));
        shard::shard(&inputs, &opts, &mut cpu, (i, 3), fp, &out).unwrap();
        let pieces = StateFile::open(&out).unwrap().header.pieces;
        // Every coordinate read lies in a piece, and every piece's coordinates are read once.
        let mut read: Vec<(usize, usize)> = Vec::new();
        for (t, cols) in reads.lock().unwrap().iter() {
            read.extend(cols.clone().map(|c| (*t, c)));
        }
        read.sort_unstable();
        let mut want: Vec<(usize, usize)> = pieces
            .iter()
            .flat_map(|&(t, a, b)| (a..b).map(move |c| (t, c)))
            .collect();
        want.sort_unstable();
        assert_eq!(read, want, "shard {i}: {pieces:?}");
    }
}
