//! Job records and where they live: `<state>/jobs/<id>/job.json`, each written whole (a
//! temporary file, fsync, rename, fsync of the folder), so a crash leaves the old record or the
//! new one, never half of one.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use super::request::{Lane, Spec};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    Queued,
    Running,
    Done,
    Failed,
    Cancelled,
}

impl State {
    pub fn finished(self) -> bool {
        matches!(self, State::Done | State::Failed | State::Cancelled)
    }
}

/// The outputs of a finished analysis, the only names `/files/{name}` serves.
pub const OUTPUTS: [(&str, &str); 4] = [
    ("summary.json", "application/json"),
    ("tensors.csv", "text/csv; charset=utf-8"),
    ("coords.safetensors", "application/octet-stream"),
    ("report.html", "text/html; charset=utf-8"),
];

/// A job as the API shows it and as it is stored.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Job {
    pub id: String,
    pub state: State,
    #[serde(flatten)]
    pub spec: Spec,
    pub engine: Lane,
    /// Fraction of the input bytes read, 0 to 1 (the analysis reads its inputs once or more).
    pub progress: f64,
    /// The analysis step under way, e.g. "pass 2/2".
    pub step: Option<String>,
    pub error: Option<String>,
    pub created_at: String,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    /// Runs started: more than one after a restart interrupted the job.
    pub attempts: u32,
    /// Output names, once done.
    pub files: Vec<String>,
}

impl Job {
    pub fn new(id: String, spec: Spec, engine: Lane) -> Job {
        Job {
            id,
            state: State::Queued,
            spec,
            engine,
            progress: 0.0,
            step: None,
            error: None,
            created_at: now(),
            started_at: None,
            finished_at: None,
            attempts: 0,
            files: Vec::new(),
        }
    }
}

/// A job id: 16 random hex digits (also a safe folder name).
pub fn new_id() -> String {
    format!("{:016x}", rand::random::<u64>())
}

pub fn valid_id(id: &str) -> bool {
    id.len() == 16
        && id
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}

pub struct Store {
    jobs: PathBuf,
}

impl Store {
    pub fn open(state: &Path) -> io::Result<Store> {
        let jobs = state.join("jobs");
        fs::create_dir_all(&jobs)?;
        // Absolute: the analyses run in their job's folder.
        let jobs = jobs.canonicalize()?;
        Ok(Store { jobs })
    }

    pub fn dir(&self, id: &str) -> PathBuf {
        self.jobs.join(id)
    }

    pub fn save(&self, job: &Job) -> io::Result<()> {
        let dir = self.dir(&job.id);
        fs::create_dir_all(&dir)?;
        let text = serde_json::to_vec_pretty(job).map_err(io::Error::other)?;
        write_atomic(&dir.join("job.json"), &text)
    }

    /// Every stored job. A folder without a record is a job whose creation did not finish
    /// (its client got no id) and is left out; an unreadable record is reported and left out.
    pub fn load(&self) -> io::Result<Vec<Job>> {
        let mut jobs = Vec::new();
        for entry in fs::read_dir(&self.jobs)? {
            let path = entry?.path().join("job.json");
            let Ok(bytes) = fs::read(&path) else { continue };
            match serde_json::from_slice::<Job>(&bytes) {
                Ok(job) if valid_id(&job.id) => jobs.push(job),
                Ok(_) => eprintln!("gradtail serve: {}: bad job id; left out", path.display()),
                Err(e) => eprintln!("gradtail serve: {}: {e}; left out", path.display()),
            }
        }
        jobs.sort_by(|a, b| (&a.created_at, &a.id).cmp(&(&b.created_at, &b.id)));
        Ok(jobs)
    }
}

fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let tmp = path.with_extension("json.tmp");
    let mut f = File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    drop(f);
    fs::rename(&tmp, path)?;
    // The rename is durable once the folder's entry is on disk.
    #[cfg(unix)]
    if let Some(dir) = path.parent() {
        File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// The time now as RFC 3339 UTC with milliseconds, e.g. `2026-11-29T16:30:00.123Z`.
pub fn now() -> String {
    let ms = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    rfc3339(ms)
}

fn rfc3339(unix_ms: i64) -> String {
    let (days, ms) = (
        unix_ms.div_euclid(86_400_000),
        unix_ms.rem_euclid(86_400_000),
    );
    // Days to a civil date: Howard Hinnant's `civil_from_days` (chrono-compatible algorithms).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    let s = ms / 1000;
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        s / 3600,
        s / 60 % 60,
        s % 60,
        ms % 1000
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps() {
        // Expected values from Python: datetime.fromtimestamp(t, timezone.utc).isoformat().
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(rfc3339(1_764_433_825_123), "2025-11-29T16:30:25.123Z");
        assert_eq!(rfc3339(-1), "1969-12-31T23:59:59.999Z");
    }

    #[test]
    fn records_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let spec = Spec {
            inputs: vec!["a.npy".into()],
            options: serde_json::Map::new(),
        };
        let mut job = Job::new(new_id(), spec, Lane::Cpu);
        store.save(&job).unwrap();
        job.state = State::Running;
        store.save(&job).unwrap();
        std::fs::create_dir(dir.path().join("jobs/0000000000000000")).unwrap();
        let loaded = store.load().unwrap();
        assert_eq!(loaded.len(), 1);
        assert_eq!(loaded[0].state, State::Running);
        assert!(valid_id(&loaded[0].id));
        assert!(!dir
            .path()
            .join("jobs")
            .join(&job.id)
            .join("job.json.tmp")
            .exists());
    }
}
