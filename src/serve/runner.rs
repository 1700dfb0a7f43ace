//! The job table and the engines' queues. Each job runs as a child process, `gradtail analyze
//! --out <state>/jobs/<id>/out`: a cancel is a kill, a crashing analysis cannot take the
//! server with it, and the outputs appear whole (analyze publishes them from a staging folder).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::{oneshot, Notify};

use super::jobs::{self, Job, State, Store, OUTPUTS};
use super::request::{self, Lane, Spec};

/// Lines of an analysis's stderr kept to explain a failure.
const STDERR_TAIL: usize = 20;

pub struct Shared {
    /// The data root, canonical.
    pub root: PathBuf,
    pub store: Store,
    /// This program, run as `gradtail analyze` for each job.
    pub exe: PathBuf,
    /// Where `--backend auto` jobs queue: the GPU's queue when there is a real GPU.
    pub auto_lane: Lane,
    /// Jobs held at once, queued or running.
    pub max_queue: usize,
    pub max_body: usize,
    table: Mutex<BTreeMap<String, Entry>>,
    wake: [Notify; 2],
}

struct Entry {
    job: Job,
    /// Kills the running analysis.
    cancel: Option<oneshot::Sender<()>>,
}

pub enum Refusal {
    Full(usize),
    NotFound,
    Finished(State),
    Storage(std::io::Error),
}

enum Outcome {
    Done,
    Failed(String),
    Cancelled,
}

fn lane_index(lane: Lane) -> usize {
    match lane {
        Lane::Cpu => 0,
        Lane::Gpu => 1,
    }
}

impl Shared {
    /// The server's state from the stored jobs; jobs a stop interrupted are queued again.
    pub fn new(
        root: PathBuf,
        store: Store,
        exe: PathBuf,
        auto_lane: Lane,
        limits: (usize, usize),
    ) -> std::io::Result<(Shared, usize)> {
        let mut table = BTreeMap::new();
        let mut requeued = 0;
        for mut job in store.load()? {
            if job.state == State::Running {
                job.state = State::Queued;
                job.progress = 0.0;
                job.step = None;
                store.save(&job)?;
                requeued += 1;
            }
            table.insert(job.id.clone(), Entry { job, cancel: None });
        }
        let shared = Shared {
            root,
            store,
            exe,
            auto_lane,
            max_queue: limits.0,
            max_body: limits.1,
            table: Mutex::new(table),
            wake: [Notify::new(), Notify::new()],
        };
        Ok((shared, requeued))
    }

    fn table(&self) -> MutexGuard<'_, BTreeMap<String, Entry>> {
        // A panic elsewhere while holding the lock leaves a table still worth serving.
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Stores a new job (before its id is given out) and queues it.
    pub fn submit(&self, spec: Spec) -> Result<Job, Refusal> {
        let mut table = self.table();
        let held = table.values().filter(|e| !e.job.state.finished()).count();
        if held >= self.max_queue {
            return Err(Refusal::Full(held));
        }
        let lane = spec.lane(self.auto_lane);
        let job = Job::new(jobs::new_id(), spec, lane);
        self.store.save(&job).map_err(Refusal::Storage)?;
        let entry = Entry {
            job: job.clone(),
            cancel: None,
        };
        table.insert(job.id.clone(), entry);
        self.wake[lane_index(lane)].notify_one();
        Ok(job)
    }

    pub fn get(&self, id: &str) -> Option<Job> {
        self.table().get(id).map(|e| e.job.clone())
    }

    /// Every job, oldest first.
    pub fn list(&self) -> Vec<Job> {
        let mut all: Vec<Job> = self.table().values().map(|e| e.job.clone()).collect();
        all.sort_by(|a, b| (&a.created_at, &a.id).cmp(&(&b.created_at, &b.id)));
        all
    }

    pub fn cancel(&self, id: &str) -> Result<Job, Refusal> {
        let mut table = self.table();
        let entry = table.get_mut(id).ok_or(Refusal::NotFound)?;
        if entry.job.state.finished() {
            return Err(Refusal::Finished(entry.job.state));
        }
        entry.job.state = State::Cancelled;
        entry.job.finished_at = Some(jobs::now());
        self.store.save(&entry.job).map_err(Refusal::Storage)?;
        if let Some(kill) = entry.cancel.take() {
            let _ = kill.send(());
        }
        Ok(entry.job.clone())
    }

    /// Marks the oldest queued job of `lane` running.
    fn start_next(&self, lane: Lane) -> Option<(String, Spec, oneshot::Receiver<()>)> {
        let mut table = self.table();
        let entry = table
            .values_mut()
            .filter(|e| e.job.state == State::Queued && e.job.engine == lane)
            .min_by(|a, b| (&a.job.created_at, &a.job.id).cmp(&(&b.job.created_at, &b.job.id)))?;
        let (kill, killed) = oneshot::channel();
        let job = &mut entry.job;
        job.state = State::Running;
        job.attempts += 1;
        job.started_at = Some(jobs::now());
        (job.progress, job.step, job.error) = (0.0, None, None);
        self.persist(job);
        entry.cancel = Some(kill);
        Some((job.id.clone(), job.spec.clone(), killed))
    }

    fn finish(&self, id: &str, outcome: Outcome, out: &Path) {
        let mut table = self.table();
        let Some(entry) = table.get_mut(id) else {
            return;
        };
        entry.cancel = None;
        let job = &mut entry.job;
        if job.state != State::Running {
            // Cancelled while it ran: the record already says so.
            return;
        }
        match outcome {
            Outcome::Done => {
                job.state = State::Done;
                job.progress = 1.0;
                job.step = None;
                job.files = OUTPUTS
                    .iter()
                    .map(|(name, _)| *name)
                    .filter(|name| out.join(name).is_file())
                    .map(str::to_owned)
                    .collect();
            }
            Outcome::Failed(e) => {
                job.state = State::Failed;
                job.error = Some(e);
            }
            Outcome::Cancelled => job.state = State::Cancelled,
        }
        job.finished_at = Some(jobs::now());
        self.persist(job);
    }

    fn set_progress(&self, id: &str, progress: f64, step: String) {
        if let Some(e) = self.table().get_mut(id) {
            e.job.progress = progress.clamp(0.0, 1.0);
            e.job.step = Some(step);
        }
    }

    /// Saves a record the server changed on its own; a failure is logged, and the record is
    /// written again at the job's next change.
    fn persist(&self, job: &Job) {
        if let Err(e) = self.store.save(job) {
            eprintln!("gradtail serve: saving job {}: {e}", job.id);
        }
    }
}

/// Runs `lane`'s jobs one at a time, oldest first, for as long as the server runs.
pub async fn lane(sh: Arc<Shared>, lane: Lane) {
    loop {
        let Some((id, spec, killed)) = sh.start_next(lane) else {
            // `notify_one` keeps a permit when nobody waits, so a job queued between the
            // check above and this wait is not missed.
            sh.wake[lane_index(lane)].notified().await;
            continue;
        };
        let out = sh.store.dir(&id).join("out");
        let outcome = run(&sh, &id, &spec, &out, killed).await;
        sh.finish(&id, outcome, &out);
    }
}

async fn run(
    sh: &Arc<Shared>,
    id: &str,
    spec: &Spec,
    out: &Path,
    mut killed: oneshot::Receiver<()>,
) -> Outcome {
    let dir = sh.store.dir(id);
    clear_outputs(&dir);
    let args = match request::analyze_args(spec, &sh.root, out) {
        Ok(a) => a,
        Err(e) => return Outcome::Failed(e),
    };
    let mut cmd = tokio::process::Command::new(&sh.exe);
    // In the data root, where the arguments name the inputs.
    cmd.args(args)
        .current_dir(&sh.root)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    die_with_server(&mut cmd);
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => return Outcome::Failed(format!("the analysis could not start: {e}")),
    };
    let watcher = child
        .stderr
        .take()
        .map(|stderr| tokio::spawn(watch(sh.clone(), id.to_owned(), stderr)));
    let status = tokio::select! {
        status = child.wait() => status,
        Ok(()) = &mut killed => {
            let _ = child.kill().await;
            return Outcome::Cancelled;
        }
    };
    let tail = match watcher {
        Some(w) => w.await.unwrap_or_default(),
        None => Vec::new(),
    };
    match status {
        Ok(s) if s.success() => Outcome::Done,
        Ok(s) => Outcome::Failed(failure(&tail, s, &sh.root)),
        Err(e) => Outcome::Failed(format!("waiting for the analysis: {e}")),
    }
}

/// Reads an analysis's stderr: progress lines update the job; the last other lines are kept.
async fn watch(sh: Arc<Shared>, id: String, stderr: tokio::process::ChildStderr) -> Vec<String> {
    #[derive(serde::Deserialize)]
    struct Line {
        progress: f64,
        step: String,
    }
    // Split on bytes, not UTF-8 lines: the pipe must be drained whatever the analysis
    // writes, or it would block on a full pipe.
    let mut lines = BufReader::new(stderr).split(b'\n');
    let mut tail = std::collections::VecDeque::with_capacity(STDERR_TAIL);
    while let Ok(Some(line)) = lines.next_segment().await {
        let line = String::from_utf8_lossy(&line).into_owned();
        match serde_json::from_str::<Line>(&line) {
            Ok(p) => sh.set_progress(&id, p.progress, p.step),
            Err(_) => {
                if tail.len() == STDERR_TAIL {
                    tail.pop_front();
                }
                tail.push_back(line);
            }
        }
    }
    tail.into()
}

/// The analysis's own error line, with the data root left out of paths (a client names files
/// relative to it, and need not learn where it is).
fn failure(tail: &[String], status: ExitStatus, root: &Path) -> String {
    let line = tail
        .iter()
        .rev()
        .find_map(|l| l.strip_prefix("gradtail: error: "))
        .or_else(|| {
            tail.iter()
                .rev()
                .find(|l| !l.trim().is_empty())
                .map(String::as_str)
        });
    let message = match line {
        Some(l) => l.to_owned(),
        None => format!("the analysis ended with {status}"),
    };
    message.replace(&format!("{}/", root.display()), "")
}

/// Removes what an interrupted earlier run left: its outputs and analyze's staging folders.
fn clear_outputs(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name == "out" || name.starts_with(".out.partial-") {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// The analysis is killed when the server dies, even by SIGKILL, so a restarted server never
/// races an orphan writing the same job's outputs. Linux ties this to the thread that spawned
/// the child: here a runtime worker, which lives as long as the server.
#[cfg(target_os = "linux")]
fn die_with_server(cmd: &mut tokio::process::Command) {
    let server = std::process::id() as libc::pid_t;
    // SAFETY: between fork and exec the closure makes only async-signal-safe calls (prctl,
    // getppid) and allocates nothing.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // The server died before the request took effect.
            if libc::getppid() != server {
                return Err(std::io::Error::from_raw_os_error(libc::ESRCH));
            }
            Ok(())
        });
    }
}

#[cfg(not(target_os = "linux"))]
fn die_with_server(_cmd: &mut tokio::process::Command) {}
