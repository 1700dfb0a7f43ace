//! End-to-end test of `report.html`: the binary writes a self-contained page and standalone
//! SVG plots; headless Chromium loads the page from disk and renders every plot.
//!
//! Without a `chromium` (or `chromium-browser`) on PATH the browser part prints
//! "skipped: no chromium", and fails instead when GRADTAIL_REQUIRE_CHROMIUM=1 (CI).

mod common;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use assert_cmd::Command as BinCommand;

/// Ids of the plots the digits report must hold (one tensor, named `stack`).
const PLOT_IDS: [&str; 5] = [
    "plot-alpha",
    "plot-reject",
    "hist-stack-alpha_block",
    "hist-stack-alpha_logm",
    "hist-stack-kurt",
];

fn find_chromium() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    ["chromium", "chromium-browser"].iter().find_map(|name| {
        std::env::split_paths(&path)
            .map(|dir| dir.join(name))
            .find(|p| p.is_file())
    })
}

/// Values of every `src=` / `href=` attribute (quoted or not) in `html`.
fn link_values(html: &str) -> Vec<String> {
    let lower = html.to_ascii_lowercase();
    let mut out = Vec::new();
    for attr in ["src=", "href=", "srcset=", "xlink:href="] {
        let mut from = 0;
        while let Some(i) = lower[from..].find(attr) {
            let start = from + i + attr.len();
            let rest = &html[start..];
            let value = match rest.chars().next() {
                Some(q @ ('"' | '\'')) => rest[1..].split(q).next().unwrap_or(""),
                _ => rest.split([' ', '>']).next().unwrap_or(""),
            };
            out.push(value.to_owned());
            from = start;
        }
    }
    out
}

/// The markup of the `<svg>` element with `id` in `html`.
fn svg_by_id<'a>(html: &'a str, id: &str) -> &'a str {
    let at = html
        .find(&format!("id=\"{id}\""))
        .unwrap_or_else(|| panic!("no element with id {id}"));
    let start = html[..at].rfind("<svg").expect("id is on an <svg>");
    let end = at + html[at..].find("</svg>").expect("closed <svg>");
    &html[start..end]
}

/// Runs headless Chromium on `url` with `extra` arguments and a fresh profile, stdout to
/// `stdout`; gives up after two minutes.
fn run_chromium(chromium: &Path, extra: &[String], url: &str, stdout: &Path) {
    let profile = tempfile::tempdir().unwrap();
    let mut child = Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(extra)
        .arg(url)
        .stdin(Stdio::null())
        .stdout(File::create(stdout).unwrap())
        .stderr(Stdio::null())
        .spawn()
        .expect("start chromium");
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "chromium {extra:?} exited with {status}");
            return;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("chromium {extra:?} did not finish within 120 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn report_html_is_self_contained_and_renders() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    BinCommand::cargo_bin("gradtail")
        .unwrap()
        .env("RUST_LOG", "warn")
        .args([
            "analyze",
            common::data("digits/stack.npy").to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--backend",
            "cpu",
        ])
        .assert()
        .success();

    // The page: every plot inline, nothing fetched from anywhere.
    let page = out.join("report.html");
    let html = std::fs::read_to_string(&page).expect("report.html is written");
    assert!(html.starts_with("<!DOCTYPE html>"));
    for v in link_values(&html) {
        let v = v.trim().to_ascii_lowercase();
        assert!(
            !(v.starts_with("http:") || v.starts_with("https:") || v.starts_with("//")),
            "report.html links to {v}"
        );
    }
    for banned in ["<script", "<link", "@import", "url(", "<iframe", "<img"] {
        assert!(!html.contains(banned), "report.html contains {banned}");
    }
    for id in PLOT_IDS {
        assert!(
            svg_by_id(&html, id).contains("<title>"),
            "{id} has no title"
        );
    }
    // Each plot also stands alone next to the page.
    for file in [
        "alpha.svg",
        "reject.svg",
        "hist_stack_alpha_block.svg",
        "hist_stack_alpha_logm.svg",
        "hist_stack_kurt.svg",
    ] {
        let svg = std::fs::read_to_string(out.join(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert!(
            svg.starts_with("<?xml") && svg.contains("<svg xmlns="),
            "{file}"
        );
    }

    let Some(chromium) = find_chromium() else {
        if std::env::var("GRADTAIL_REQUIRE_CHROMIUM").as_deref() == Ok("1") {
            panic!("no chromium or chromium-browser on PATH, and GRADTAIL_REQUIRE_CHROMIUM=1");
        }
        eprintln!("skipped: no chromium");
        return;
    };
    let url = format!("file://{}", page.canonicalize().unwrap().display());

    // The DOM Chromium built from the file holds every plot, with marks in it.
    let dom_path = dir.path().join("dom.html");
    run_chromium(&chromium, &["--dump-dom".into()], &url, &dom_path);
    let dom = std::fs::read_to_string(&dom_path).unwrap();
    let count = |s: &str, tag: &str| s.matches(tag).count();
    let alpha = svg_by_id(&dom, "plot-alpha");
    // A point for α_time_blocked (+ legend), a square for α_flat (+ legend), the background.
    assert!(count(alpha, "<circle") >= 2, "{alpha}");
    assert!(count(alpha, "<rect") >= 3, "{alpha}");
    assert!(count(alpha, "<line") >= 8, "{alpha}");
    assert!(
        alpha.contains("stroke-dasharray"),
        "no α = 2 reference line"
    );
    let reject = svg_by_id(&dom, "plot-reject");
    assert!(count(reject, "<rect") >= 3, "{reject}");
    for id in &PLOT_IDS[2..] {
        let h = svg_by_id(&dom, id);
        // Background plus at least ten non-empty bins out of 4,091 non-NaN coordinates.
        assert!(count(h, "<rect") >= 11, "{id}: {h}");
        assert!(count(h, "<text") >= 8, "{id} lacks tick labels");
    }
    assert!(dom.contains("NaN skipped"));

    // It renders to a non-trivial picture (a blank page of this size is about 5 KB).
    let png = dir.path().join("report.png");
    run_chromium(
        &chromium,
        &[
            format!("--screenshot={}", png.display()),
            "--window-size=1200,3000".into(),
        ],
        &url,
        &dir.path().join("screenshot.log"),
    );
    let bytes = std::fs::read(&png).expect("screenshot written");
    assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
    assert!(
        bytes.len() > 40_000,
        "screenshot is only {} bytes",
        bytes.len()
    );
}
