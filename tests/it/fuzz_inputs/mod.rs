//! A bounded, seeded mutation harness over every input format gradtail reads: small valid
//! seeds (tests/data/fuzz, written by make_seeds.py with numpy and safetensors) are truncated,
//! bit-flipped and have their header fields edited; each result is opened and read in full
//! through the library, and a subset through `gradtail analyze`. Nothing may panic, allocate
//! from a size it has not checked, or fail without naming the file in one line.
//!
//! `GRADTAIL_FUZZ_CASES` sets the cases per seed (default 300); `GRADTAIL_FUZZ_SEED` moves the
//! stream. A failing case is written under the target folder's `fuzz-failures/` and listed
//! with the mutations that made it, for shrinking into `tests/data/fuzz/regressions/`.

mod mutate;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::time::Instant;

use gradtail::input::{self, plan, Select};
use mutate::{Kind, Rng};

/// Any single allocation above this, made while reading a seed-sized input, is a size taken
/// from the file without a check (the seeds are under 1 KiB; the largest honest buffer is a
/// few KiB).
const ALLOC_LIMIT: usize = 16 << 20;

thread_local! {
    static LARGEST: Cell<usize> = const { Cell::new(0) };
}

/// Records the largest allocation made by each thread, so a case can be checked after it ran.
struct Watch;

unsafe impl GlobalAlloc for Watch {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        System.alloc(layout)
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        System.alloc_zeroed(layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size);
        System.realloc(ptr, layout, new_size)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
}

fn note(size: usize) {
    let _ = LARGEST.try_with(|m| m.set(m.get().max(size)));
}

#[global_allocator]
static WATCH: Watch = Watch;

fn seeds() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/fuzz")
}

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Each source's name, dtype, shape (K first) and checksum: the sum over sample k and
/// C-order coordinate j of x[k, j] · ((k + 1) + (j + 1) / 16), as make_seeds.py computes it.
type Read = Vec<(String, String, Vec<usize>, f64)>;

/// Opens `paths` as the CLI does, checks them as the pipeline does, then reads every value
/// in small blocks (rows and columns split, Fortran inputs by whole columns).
fn read_all(paths: &[PathBuf], skip_bad: bool) -> Result<Read, String> {
    let run = || -> gradtail::Result<Read> {
        let inputs = input::open_all(paths, &Select::default(), skip_bad)?;
        gradtail::analyze::validate(&inputs.sources)?;
        let mut out = Vec::new();
        for s in &inputs.sources {
            let m = s.meta();
            let (k, p) = (m.samples, m.coords());
            let mut sum = 0.0;
            for (rows, cols) in plan::blocks(k, p, 2, m.dtype.size(), 40, s.is_fortran()) {
                let b = s.read_block(rows.clone(), cols.clone())?;
                assert_eq!(b.data.len(), rows.len() * cols.len());
                let mut row = vec![0.0; cols.len()];
                for (i, r) in rows.clone().enumerate() {
                    b.data
                        .widen_into(i * cols.len()..(i + 1) * cols.len(), &mut row);
                    for (c, x) in cols.clone().zip(&row) {
                        sum += x * ((r + 1) as f64 + (c + 1) as f64 / 16.0);
                    }
                }
            }
            let mut shape = vec![k];
            shape.extend(&m.shape);
            let dtype = format!("{:?}", m.dtype).to_lowercase();
            out.push((m.name.clone(), dtype, shape, sum));
        }
        Ok(out)
    };
    run().map_err(|e| e.to_string())
}

/// Whether the input was refused, and what went wrong with the case, if anything.
fn check(paths: &[PathBuf], names: &str, skip_bad: bool) -> (bool, Option<String>) {
    LARGEST.with(|m| m.set(0));
    let got = catch_unwind(AssertUnwindSafe(|| read_all(paths, skip_bad)));
    let largest = LARGEST.with(|m| m.get());
    let refused = !matches!(got, Ok(Ok(_)));
    if largest > ALLOC_LIMIT {
        return (refused, Some(format!("allocated {largest} bytes at once")));
    }
    let problem = match got {
        Err(panic) => Some(format!(
            "panicked: {}",
            panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default()
        )),
        Ok(Err(msg)) if !msg.contains(names) => Some(format!("error does not name {names}: {msg}")),
        Ok(Err(msg)) if msg.contains('\n') => Some(format!("error is not one line: {msg}")),
        Ok(_) => None,
    };
    (refused, problem)
}

/// Runs `gradtail analyze` on `input`: it must succeed with outputs, or exit 1 with a
/// one-line error naming `names` and nothing left in the output folder.
fn check_cli(input: &Path, names: &str, work: &Path, skip_bad: bool) -> Option<String> {
    let out = work.join("out");
    let mut cmd = assert_cmd::Command::cargo_bin("gradtail").unwrap();
    cmd.env("RUST_LOG", "warn")
        .arg("analyze")
        .arg(input)
        .arg("--out")
        .arg(&out)
        .args(["--backend", "cpu"]);
    if skip_bad {
        cmd.arg("--skip-bad");
    }
    let o = cmd.output().unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    let last = stderr.trim().lines().last().unwrap_or_default();
    let problem = match o.status.code() {
        Some(0) if out.join("summary.json").exists() => None,
        Some(0) => Some("exit 0 without summary.json".to_string()),
        Some(1) if out.exists() => Some("exit 1 but the output folder exists".into()),
        Some(1) if !(last.starts_with("gradtail: error:") && last.contains(names)) => {
            Some("exit 1 without a last line naming the input".into())
        }
        Some(1) => None,
        code => Some(format!("exit code {code:?}")),
    };
    let leftovers = std::fs::read_dir(work)
        .unwrap()
        .filter_map(|e| e.ok())
        .any(|e| e.file_name().to_string_lossy().contains("partial"));
    let _ = std::fs::remove_dir_all(&out);
    match (problem, leftovers) {
        (Some(p), _) => Some(format!("CLI: {p}; stderr: {stderr}")),
        (None, true) => Some("CLI: staging files left behind".into()),
        (None, false) => None,
    }
}

/// Tallies of a run, for the message every harness test prints.
#[derive(Default)]
struct Tally {
    cases: usize,
    refused: usize,
    cli: usize,
    failures: Vec<String>,
}

impl Tally {
    fn record(&mut self, what: String, outcome: Option<String>, keep: impl FnOnce(&Path)) {
        if let Some(problem) = outcome {
            let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("fuzz-failures");
            std::fs::create_dir_all(&dir).unwrap();
            keep(&dir);
            self.failures.push(format!("{what}: {problem}"));
        }
    }

    fn finish(self, name: &str, start: Instant) {
        eprintln!(
            "{name}: {} cases ({} refused, {} also through the CLI) in {:.1} s",
            self.cases,
            self.refused,
            self.cli,
            start.elapsed().as_secs_f64()
        );
        assert!(
            self.failures.is_empty(),
            "{} of {} cases failed (inputs kept under {}/fuzz-failures):\n{}",
            self.failures.len(),
            self.cases,
            env!("CARGO_TARGET_TMPDIR"),
            self.failures.join("\n")
        );
        // Mutations that never reach past the first check would make this test vacuous.
        assert!(
            self.refused > self.cases / 10 && self.refused < self.cases,
            "{name}: {} of {} cases refused; the mutations no longer exercise the readers",
            self.refused,
            self.cases
        );
    }
}

/// One in this many cases also runs through the CLI (a process start each).
const CLI_EVERY: u64 = 40;

#[test]
fn mutated_files_never_panic() {
    let start = Instant::now();
    let cases = env_or("GRADTAIL_FUZZ_CASES", 300);
    let base = env_or("GRADTAIL_FUZZ_SEED", 16);
    let work = tempfile::tempdir().unwrap();
    let mut tally = Tally::default();
    let files = [
        ("v1_f4.npy", Kind::Npy),
        ("v2_f8_big_fortran.npy", Kind::Npy),
        ("v3_f2.npy", Kind::Npy),
        ("savez.npz", Kind::Npz),
        ("compressed.npz", Kind::Npz),
        ("stacked.safetensors", Kind::Safetensors),
    ];
    let mut per_seed = std::collections::BTreeMap::new();
    for (s, (file, kind)) in files.into_iter().enumerate() {
        let seed = std::fs::read(seeds().join(file)).unwrap();
        let ext = Path::new(file).extension().unwrap().to_str().unwrap();
        let path = work.path().join(format!("case.{ext}"));
        let names = path.display().to_string();
        for case in 0..cases {
            let mut rng = Rng::new(base ^ ((s as u64) << 40) ^ case);
            let (bytes, log) = mutate::mutate(kind, &seed, &mut rng);
            std::fs::write(&path, &bytes).unwrap();
            let (refused, mut outcome) = check(std::slice::from_ref(&path), &names, false);
            tally.refused += usize::from(refused);
            *per_seed.entry(file).or_insert(0) += usize::from(refused);
            if outcome.is_none() && case % CLI_EVERY == 0 {
                outcome = check_cli(&path, &names, work.path(), false);
                tally.cli += 1;
            }
            tally.cases += 1;
            tally.record(
                format!("{file} case {case} [{}]", log.join("; ")),
                outcome,
                |d| {
                    std::fs::write(d.join(format!("{file}.case{case}.{ext}")), &bytes).unwrap();
                },
            );
        }
    }
    eprintln!("refused per seed: {per_seed:?}");
    tally.finish("mutated files", start);
}

/// Damages a copy of the seed step folder: a file removed, emptied, replaced by a file of
/// another layout (`others`), copied under a multi-byte name, or mutated like a safetensors
/// file.
fn damage_folder(dir: &Path, others: &[Vec<u8>], rng: &mut Rng) -> Vec<String> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    let mut log = Vec::new();
    for _ in 0..1 + rng.below(2) {
        let victim = rng.pick(&files).clone();
        let name = victim.file_name().unwrap().to_string_lossy().into_owned();
        log.push(match rng.below(8) {
            0 => {
                let _ = std::fs::remove_file(&victim);
                format!("remove {name}")
            }
            1 => {
                std::fs::write(&victim, b"").unwrap();
                format!("empty {name}")
            }
            2 => {
                let i = rng.below(others.len());
                std::fs::write(&victim, &others[i]).unwrap();
                format!("{name} replaced by file {i} of another layout")
            }
            3 => {
                let _ = std::fs::copy(&victim, dir.join("step_é中.safetensors"));
                format!("copy {name} as step_é中")
            }
            _ => {
                let seed = std::fs::read(&victim).unwrap_or_default();
                let (bytes, l) = mutate::mutate(Kind::Safetensors, &seed, rng);
                std::fs::write(&victim, bytes).unwrap();
                format!("{name}: {}", l.join(", "))
            }
        });
    }
    log
}

fn copy_dir(from: &Path, to: &Path) {
    let _ = std::fs::remove_dir_all(to);
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

#[test]
fn mutated_step_folders_never_panic() {
    let start = Instant::now();
    let cases = env_or("GRADTAIL_FUZZ_CASES", 300);
    let base = env_or("GRADTAIL_FUZZ_SEED", 16);
    let work = tempfile::tempdir().unwrap();
    let others: Vec<Vec<u8>> = [
        "stacked.safetensors",
        "regressions/only_integers.safetensors",
    ]
    .iter()
    .map(|f| std::fs::read(seeds().join(f)).unwrap())
    .collect();
    let dir = work.path().join("steps");
    let names = dir.display().to_string();
    let mut tally = Tally::default();
    for case in 0..cases {
        let mut rng = Rng::new(base ^ (99 << 40) ^ case);
        copy_dir(&seeds().join("steps"), &dir);
        let log = damage_folder(&dir, &others, &mut rng);
        for skip_bad in [false, true] {
            let (refused, mut outcome) = check(std::slice::from_ref(&dir), &names, skip_bad);
            tally.refused += usize::from(refused);
            if outcome.is_none() && case % CLI_EVERY == u64::from(skip_bad) {
                outcome = check_cli(&dir, &names, work.path(), skip_bad);
                tally.cli += 1;
            }
            tally.cases += 1;
            let what = format!("steps case {case} skip_bad={skip_bad} [{}]", log.join("; "));
            tally.record(what, outcome, |d| {
                copy_dir(&dir, &d.join(format!("steps.case{case}")))
            });
        }
    }
    tally.finish("mutated step folders", start);
}

#[test]
fn seeds_read_as_numpy_wrote_them() {
    let text = std::fs::read_to_string(seeds().join("expected.json")).unwrap();
    let expected: serde_json::Value = serde_json::from_str(&text).unwrap();
    for (input, tensors) in expected.as_object().unwrap() {
        let got = read_all(&[seeds().join(input)], false).unwrap();
        assert_eq!(got.len(), tensors.as_object().unwrap().len(), "{input}");
        for (name, dtype, shape, sum) in got {
            let t = &tensors[&name];
            assert_eq!(t["dtype"], dtype, "{input} {name}");
            let want: Vec<usize> = serde_json::from_value(t["shape"].clone()).unwrap();
            assert_eq!(shape, want, "{input} {name}");
            // Both sides sum at most 48 float64 products of exactly converted values, in
            // different orders: rounding differs by far less than 1e-12.
            let want = t["checksum"].as_f64().unwrap();
            assert!(
                (sum - want).abs() < 1e-12,
                "{input} {name}: {sum} vs {want}"
            );
        }
    }
    let e = read_all(&[seeds().join("compressed.npz")], false).unwrap_err();
    assert!(
        e.contains("compressed.npz") && e.contains("savez_compressed"),
        "{e}"
    );
}

/// Shrunk failing cases (tests/data/fuzz/make_regressions.py): each is read or refused
/// without a panic, a refusal in one line naming the input and saying what is wrong.
#[test]
fn regressions_stay_fixed() {
    // (input, --skip-bad, Err(what the error says) or Ok(samples read))
    let cases: &[(&str, bool, Result<usize, &str>)] = &[
        (
            "descr_multibyte.npy",
            false,
            Err("unknown byte order in descr 'é4'"),
        ),
        (
            "shape_multibyte.npy",
            false,
            Err("not a Python dict literal"),
        ),
        (
            "shape_overflow.npy",
            false,
            Err("more data than a file can hold"),
        ),
        (
            "header_newline.npy",
            false,
            Err("{'desc': '<f4',\\n 'fortran_order'"),
        ),
        (
            "header_past_end.npy",
            false,
            Err("truncated inside the .npy header"),
        ),
        (
            "header_huge_in_range.npy",
            false,
            Err("implausible .npy header length 70000"),
        ),
        (
            "zero_samples_overflow.safetensors",
            false,
            Err("more elements than"),
        ),
        ("only_integers.safetensors", false, Err("no tensor left")),
        ("member_past_end.npz", false, Err("claims 1048576 bytes")),
        (
            "steps_all_bad",
            true,
            Err("no readable step files; the first: "),
        ),
        ("steps_first_int", false, Err("step_0.safetensors [tensor")),
        ("steps_first_int", true, Ok(7)),
    ];
    let dir = seeds().join("regressions");
    for &(name, skip_bad, want) in cases {
        let path = dir.join(name);
        let names = path.display().to_string();
        let (refused, problem) = check(std::slice::from_ref(&path), &names, skip_bad);
        assert_eq!((refused, problem), (want.is_err(), None), "{name}");
        match (read_all(&[path], skip_bad), want) {
            (Err(e), Err(says)) => assert!(e.contains(says), "{name}: {e}"),
            (Ok(read), Ok(k)) => assert!(read.iter().all(|t| t.2[0] == k), "{name}: {read:?}"),
            (got, _) => panic!("{name}: {got:?}"),
        }
    }
}
