//! `gradtail serve` over real HTTP: the built binary on a free loopback port (`--listen
//! 127.0.0.1:0`; the address is read from its first line), plain HTTP/1.1 over a TcpStream.
//! Inputs that must keep a job running (to cancel it, fill the queue or kill the server under
//! it) are named pipes: the analysis blocks opening one until the test says otherwise.
#![cfg(unix)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::common::data;

/// Longest wait for a job: the digits analysis takes about a second alone, far longer on a
/// loaded CI machine.
const JOB_TIMEOUT: Duration = Duration::from_secs(180);

struct Server {
    child: Child,
    addr: String,
    /// The server's later stdout lines.
    lines: mpsc::Receiver<String>,
}

impl Server {
    fn start(root: &Path, state: &Path, extra: &[&str]) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_gradtail"))
            .arg("serve")
            .arg("--data-root")
            .arg(root)
            .arg("--state")
            .arg(state)
            .args(["--listen", "127.0.0.1:0"])
            .args(extra)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let (tx, lines) = mpsc::channel();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        std::thread::spawn(move || {
            for line in stdout.lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let first = lines
            .recv_timeout(Duration::from_secs(60))
            .expect("the server printed its address");
        let addr = first
            .strip_prefix("gradtail serve: listening on http://")
            .unwrap_or_else(|| panic!("unexpected first line: {first}"))
            .to_owned();
        Server { child, addr, lines }
    }

    fn call(&self, method: &str, path: &str, body: &[u8]) -> (u16, Vec<u8>) {
        http(&self.addr, method, path, &[], body)
    }

    fn json(&self, method: &str, path: &str, body: Value) -> (u16, Value) {
        let body = if body.is_null() {
            Vec::new()
        } else {
            body.to_string().into_bytes()
        };
        let (status, reply) = self.call(method, path, &body);
        let value = serde_json::from_slice(&reply)
            .unwrap_or_else(|e| panic!("{method} {path}: reply is not JSON ({e})"));
        (status, value)
    }

    fn submit(&self, body: Value) -> String {
        let (status, reply) = self.json("POST", "/v1/jobs", body);
        assert_eq!(status, 202, "{reply}");
        reply["id"].as_str().unwrap().to_owned()
    }

    /// Polls the job until `done(state)`, returning its record.
    fn wait(&self, id: &str, done: impl Fn(&str) -> bool) -> Value {
        let start = Instant::now();
        loop {
            let (status, job) = self.json("GET", &format!("/v1/jobs/{id}"), Value::Null);
            assert_eq!(status, 200, "{job}");
            if done(job["state"].as_str().unwrap()) {
                return job;
            }
            assert!(start.elapsed() < JOB_TIMEOUT, "job {id} stuck: {job}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// One request on its own connection; returns the status and the body.
fn http(addr: &str, method: &str, path: &str, headers: &[&str], body: &[u8]) -> (u16, Vec<u8>) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for h in headers {
        head += &format!("{h}\r\n");
    }
    head += "\r\n";
    // A server may answer and close before reading all of a body it refuses.
    let _ = s
        .write_all(head.as_bytes())
        .and_then(|()| s.write_all(body));
    let mut reply = Vec::new();
    let _ = s.read_to_end(&mut reply);
    let end = reply
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a complete reply head");
    let head = String::from_utf8_lossy(&reply[..end]).to_lowercase();
    assert!(!head.contains("chunked"), "replies carry a length: {head}");
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, reply[end + 4..].to_vec())
}

/// A summary without what differs between two runs of the same analysis: its run time.
fn untimed(mut summary: Value) -> Value {
    let time = summary.as_object_mut().unwrap().remove("elapsed_s");
    assert!(time.is_some_and(|t| t.is_f64()));
    summary
}

/// `gradtail analyze` run directly: the outputs a job's must equal.
/// `gradtail analyze` in the data root `root`, as the server runs it: `input` relative to it.
fn analyze(args: &[&str], root: &Path, input: &str, out: &Path) {
    let status = Command::new(env!("CARGO_BIN_EXE_gradtail"))
        .current_dir(root)
        .arg("analyze")
        .args(args)
        .arg("--out")
        .arg(out)
        .arg(input)
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

fn mkfifo(path: &Path) {
    assert!(Command::new("mkfifo").arg(path).status().unwrap().success());
}

/// Whether an analysis writing into this job's folder still runs (Linux: /proc).
fn analysis_alive(id: &str) -> bool {
    let needle = format!("jobs/{id}/out");
    std::fs::read_dir("/proc").unwrap().flatten().any(|p| {
        std::fs::read(p.path().join("cmdline"))
            .is_ok_and(|c| String::from_utf8_lossy(&c).contains(&needle))
    })
}

/// Waits for the job's analysis process to appear: the record says `running` as the server
/// starts the process, which a loaded machine may take a moment to show in /proc.
fn wait_alive(id: &str) {
    let start = Instant::now();
    while !analysis_alive(id) {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "no analysis process for {id} while its record says running"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn wait_gone(id: &str) {
    let start = Instant::now();
    while analysis_alive(id) {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the analysis of {id} outlived its server or cancel"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn root_with_digits() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("data");
    copy_dir(&data("digits/snapshots"), &root.join("snapshots"));
    std::fs::copy(data("digits/full.npy"), root.join("full.npy")).unwrap();
    (dir, root)
}

#[test]
fn a_job_gives_what_analyze_gives() {
    let (dir, root) = root_with_digits();
    let server = Server::start(&root, &dir.path().join("state"), &[]);
    let id = server.submit(json!({"inputs": ["snapshots"],
        "options": {"backend": "cpu", "center": "full.npy", "include": "fc*"}}));
    let job = server.wait(&id, |s| s != "queued" && s != "running");
    assert_eq!(job["state"], "done", "{job}");
    assert_eq!(job["progress"], 1.0);
    assert_eq!(job["attempts"], 1);
    assert!(job["error"].is_null());
    for t in ["created_at", "started_at", "finished_at"] {
        assert!(
            job[t].as_str().is_some_and(|s| s.ends_with('Z')),
            "{t}: {job}"
        );
    }

    let direct = dir.path().join("direct");
    let args = [
        "--backend",
        "cpu",
        "--include",
        "fc*",
        "--center",
        "full.npy",
    ];
    analyze(&args, &root, "snapshots", &direct);
    let (status, summary) = server.call("GET", &format!("/v1/jobs/{id}/files/summary.json"), b"");
    assert_eq!(status, 200);
    // Files are named as the client named them, not by where the data root lies.
    let text = String::from_utf8_lossy(&summary);
    assert!(text.contains("\"path\": \"snapshots\""), "{text}");
    let root_name = root.canonicalize().unwrap();
    assert!(!text.contains(root_name.to_str().unwrap()), "{text}");
    let summary: Value = serde_json::from_slice(&summary).unwrap();
    let expected: Value =
        serde_json::from_slice(&std::fs::read(direct.join("summary.json")).unwrap()).unwrap();
    assert_eq!(untimed(summary), untimed(expected));
    for name in ["tensors.csv", "coords.safetensors"] {
        let (status, bytes) = server.call("GET", &format!("/v1/jobs/{id}/files/{name}"), b"");
        assert_eq!(status, 200, "{name}");
        assert!(bytes == std::fs::read(direct.join(name)).unwrap(), "{name}");
    }
    let (status, html) = server.call("GET", &format!("/v1/jobs/{id}/files/report.html"), b"");
    assert_eq!(status, 200);
    assert!(String::from_utf8_lossy(&html).contains("fc0.weight"));

    let (status, list) = server.json("GET", "/v1/jobs", Value::Null);
    assert_eq!(status, 200);
    assert_eq!(list["jobs"][0]["id"], id.as_str());
    // Only the outputs are served.
    for name in ["job.json", "..%2Fjob.json", "%2Fetc%2Fpasswd"] {
        let (status, _) = server.call("GET", &format!("/v1/jobs/{id}/files/{name}"), b"");
        assert_eq!(status, 404, "{name}");
    }
    let (status, _) = server.json("GET", "/v1/jobs/0123456789abcdef", Value::Null);
    assert_eq!(status, 404);
    let (status, reply) = server.json("DELETE", &format!("/v1/jobs/{id}"), Value::Null);
    assert_eq!(status, 409, "a finished job cannot be cancelled: {reply}");
}

#[test]
fn refusals_name_the_problem() {
    let (dir, root) = root_with_digits();
    let outside = dir.path().join("secret");
    std::fs::create_dir(&outside).unwrap();
    std::fs::copy(data("digits/stack.npy"), outside.join("stack.npy")).unwrap();
    std::os::unix::fs::symlink(outside.join("stack.npy"), root.join("link.npy")).unwrap();
    std::fs::create_dir(root.join("steps")).unwrap();
    std::os::unix::fs::symlink(outside.join("stack.npy"), root.join("steps/a.safetensors"))
        .unwrap();
    let server = Server::start(&root, &dir.path().join("state"), &["--max-body", "4096"]);
    let cases = [
        (json!({"inputs": ["../secret/stack.npy"]}), "without `..`"),
        (
            json!({"inputs": [outside.join("stack.npy")]}),
            "without `..` or a leading `/`",
        ),
        (json!({"inputs": ["link.npy"]}), "outside the data root"),
        (json!({"inputs": ["steps"]}), "a.safetensors leads outside"),
        (json!({"inputs": ["nothing.npy"]}), "no such file"),
        (json!({"inputs": []}), "`inputs` is empty"),
        (
            json!({"inputs": ["snapshots"], "options": {"out": "/tmp/x"}}),
            "unknown option `out`",
        ),
        (
            json!({"inputs": ["snapshots"], "options": {"block": -1}}),
            "option `block`",
        ),
        (
            json!({"inputs": ["snapshots"], "options": {"center": "../secret/stack.npy"}}),
            "`..`",
        ),
        (json!({"input": ["snapshots"]}), "unknown field `input`"),
    ];
    for (body, part) in cases {
        let (status, reply) = server.json("POST", "/v1/jobs", body.clone());
        assert_eq!(status, 400, "{body}: {reply}");
        let message = reply["error"].as_str().unwrap();
        assert!(message.contains(part), "{body}: {message}");
        assert!(!message.contains(root.to_str().unwrap()), "{message}");
    }
    let (status, reply) = server.call("POST", "/v1/jobs", b"{\"inputs\": [\"snapshots\"");
    assert_eq!(status, 400);
    assert!(String::from_utf8_lossy(&reply).contains("not valid JSON"));
    let big = format!(r#"{{"inputs": ["{}"]}}"#, "a".repeat(5000));
    let (status, reply) = server.call("POST", "/v1/jobs", big.as_bytes());
    assert_eq!(status, 413, "{}", String::from_utf8_lossy(&reply));
    assert!(String::from_utf8_lossy(&reply).contains("larger than 4096 bytes"));
    let (status, list) = server.json("GET", "/v1/jobs", Value::Null);
    assert_eq!(status, 200);
    assert_eq!(list["jobs"], json!([]), "no refused request became a job");

    // An input the analysis itself rejects: the job fails with its error, paths relative.
    std::fs::write(root.join("bad.npy"), b"not an npy file").unwrap();
    let id = server.submit(json!({"inputs": ["bad.npy"], "options": {"backend": "cpu"}}));
    let job = server.wait(&id, |s| s != "queued" && s != "running");
    assert_eq!(job["state"], "failed", "{job}");
    let error = job["error"].as_str().unwrap();
    assert!(error.starts_with("bad.npy"), "{error}");
    assert!(!error.contains(root.to_str().unwrap()), "{error}");
}

#[test]
fn analyze_reports_progress_as_json_lines() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_gradtail"))
        .args(["analyze", "--backend", "cpu", "--progress-json", "--out"])
        .arg(dir.path().join("out"))
        .arg(data("digits/stack.npy"))
        .output()
        .unwrap();
    assert!(out.status.success());
    let lines: Vec<Value> = String::from_utf8_lossy(&out.stderr)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect();
    let progress: Vec<f64> = lines
        .iter()
        .map(|l| l["progress"].as_f64().unwrap())
        .collect();
    assert!(progress.windows(2).all(|w| w[0] <= w[1]), "{progress:?}");
    // Whole percents are sent: the last one is the last whole percent of the bytes read.
    assert!(*progress.last().unwrap() >= 0.99, "{progress:?}");
    assert!(lines.iter().all(|l| l["step"].is_string()));
}

#[test]
fn cancel_and_a_full_queue() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("data");
    std::fs::create_dir(&root).unwrap();
    mkfifo(&root.join("pipe.npy"));
    let server = Server::start(&root, &dir.path().join("state"), &["--max-queue", "2"]);
    let body = json!({"inputs": ["pipe.npy"], "options": {"backend": "cpu"}});
    let running = server.submit(body.clone());
    server.wait(&running, |s| s == "running");
    let queued = server.submit(body.clone());
    let (status, reply) = server.json("POST", "/v1/jobs", body.clone());
    assert_eq!(status, 429, "{reply}");
    assert!(reply["error"].as_str().unwrap().contains("queue is full"));

    let (status, job) = server.json("DELETE", &format!("/v1/jobs/{queued}"), Value::Null);
    assert_eq!((status, job["state"].as_str()), (200, Some("cancelled")));
    wait_alive(&running);
    let (status, job) = server.json("DELETE", &format!("/v1/jobs/{running}"), Value::Null);
    assert_eq!((status, job["state"].as_str()), (200, Some("cancelled")));
    wait_gone(&running);
    let job = server.wait(&running, |s| s == "cancelled");
    assert_eq!(job["attempts"], 1);
    let (status, _) = server.json("DELETE", &format!("/v1/jobs/{running}"), Value::Null);
    assert_eq!(status, 409);
    let (status, _) = server.call(
        "GET",
        &format!("/v1/jobs/{running}/files/summary.json"),
        b"",
    );
    assert_eq!(status, 409);
    // Room again once the two have ended; the queued job never ran.
    let third = server.submit(body);
    server.wait(&third, |s| s == "running");
    let (_, job) = server.json("GET", &format!("/v1/jobs/{queued}"), Value::Null);
    assert_eq!(
        (job["state"].as_str(), &job["attempts"]),
        (Some("cancelled"), &json!(0))
    );
}

#[test]
fn one_job_runs_per_engine() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("data");
    std::fs::create_dir(&root).unwrap();
    mkfifo(&root.join("pipe.npy"));
    std::fs::copy(data("digits/stack.npy"), root.join("stack.npy")).unwrap();
    let server = Server::start(&root, &dir.path().join("state"), &[]);
    let blocked = server.submit(json!({"inputs": ["pipe.npy"], "options": {"backend": "cpu"}}));
    server.wait(&blocked, |s| s == "running");
    let cpu = server.submit(json!({"inputs": ["stack.npy"], "options": {"backend": "cpu"}}));
    // The GPU engine's queue does not wait for the CPU's (without an adapter the job fails,
    // which is an end too).
    let gpu = server.submit(json!({"inputs": ["stack.npy"], "options": {"backend": "gpu"}}));
    let job = server.wait(&gpu, |s| s == "done" || s == "failed");
    assert_eq!(job["engine"], "gpu");
    let (_, job) = server.json("GET", &format!("/v1/jobs/{cpu}"), Value::Null);
    assert_eq!(job["state"], "queued", "behind the running CPU job: {job}");
    server.json("DELETE", &format!("/v1/jobs/{blocked}"), Value::Null);
    let job = server.wait(&cpu, |s| s == "done" || s == "failed");
    assert_eq!(job["state"], "done", "{job}");
}

#[test]
fn a_job_survives_kill_9_of_its_server() {
    let dir = tempfile::tempdir().unwrap();
    let (root, state) = (dir.path().join("data"), dir.path().join("state"));
    std::fs::create_dir(&root).unwrap();
    let input = root.join("grads.npy");
    mkfifo(&input);
    let mut server = Server::start(&root, &state, &[]);
    let id = server.submit(json!({"inputs": ["grads.npy"], "options": {"backend": "cpu"}}));
    server.wait(&id, |s| s == "running");
    wait_alive(&id);
    server.kill(); // SIGKILL
    wait_gone(&id);

    // The data arrive; a new server finishes the job.
    std::fs::remove_file(&input).unwrap();
    std::fs::copy(data("digits/stack.npy"), &input).unwrap();
    let server = Server::start(&root, &state, &[]);
    assert_eq!(
        server.lines.recv_timeout(Duration::from_secs(10)).unwrap(),
        "gradtail serve: 1 interrupted jobs queued again"
    );
    let job = server.wait(&id, |s| s != "queued" && s != "running");
    assert_eq!(job["state"], "done", "{job}");
    assert_eq!(job["attempts"], 2);
    let direct = dir.path().join("direct");
    analyze(&["--backend", "cpu"], &root, "grads.npy", &direct);
    let (status, summary) = server.call("GET", &format!("/v1/jobs/{id}/files/summary.json"), b"");
    assert_eq!(status, 200);
    let expected: Value =
        serde_json::from_slice(&std::fs::read(direct.join("summary.json")).unwrap()).unwrap();
    assert_eq!(
        untimed(serde_json::from_slice(&summary).unwrap()),
        untimed(expected)
    );
}

#[test]
fn a_token_is_required_off_loopback() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_gradtail"))
        .arg("serve")
        .arg("--data-root")
        .arg(dir.path())
        .arg("--state")
        .arg(dir.path().join("state"))
        .args(["--listen", "0.0.0.0:0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--token-file"), "{err}");
    assert!(out.stdout.is_empty(), "it never listened");

    // With a token, every request must carry it.
    let token = "0123456789abcdef0123456789abcdef";
    let file = dir.path().join("token");
    std::fs::write(&file, format!("{token}\n")).unwrap();
    let server = Server::start(
        dir.path(),
        &dir.path().join("state"),
        &["--token-file", file.to_str().unwrap()],
    );
    let auth = format!("Authorization: Bearer {token}");
    let wrong = format!("Authorization: Bearer {}", token.replace('0', "1"));
    for (headers, want) in [
        (vec![], 401),
        (vec![wrong.as_str()], 401),
        (vec!["Authorization: Basic eDp5"], 401),
        (vec![auth.as_str()], 200),
    ] {
        let (status, _) = http(&server.addr, "GET", "/v1/jobs", &headers, b"");
        assert_eq!(status, want, "{headers:?}");
    }
    let (status, _) = http(&server.addr, "POST", "/v1/jobs", &[], b"{}");
    assert_eq!(status, 401, "refused before the body is read");
}
