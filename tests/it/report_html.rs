//! `report.html` as a reader uses it. The binary analyses the four digits tensors; then:
//! every tensor has its plots (inline and as standalone `.svg` files), the numbers the page and
//! its plots show equal `summary.json`, the page is self-contained and names no internal
//! documents, and headless Chromium renders it to a picture that is not blank.
//!
//! Without a `chromium` (or `chromium-browser`) on PATH the browser part prints
//! "skipped: no chromium", and fails instead when GRADTAIL_REQUIRE_CHROMIUM=1 (CI).

use crate::common;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use assert_cmd::Command as BinCommand;
use serde_json::Value;

/// Where plots put a value, read back to a value: plotters rounds every coordinate to a whole
/// pixel, so a mark and the two ticks that calibrate the axis are each off by under a pixel.
const PIXEL_SLACK: f64 = 2.0;

/// Runs `analyze` on the digits tensors; returns the output folder (kept alive by the guard).
fn analyze() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    BinCommand::cargo_bin("gradtail")
        .unwrap()
        .env("RUST_LOG", "warn")
        .args([
            "analyze",
            common::data("digits/stacked.safetensors").to_str().unwrap(),
        ])
        .args(["--out", out.to_str().unwrap(), "--backend", "cpu", "-q"])
        .assert()
        .success();
    (dir, out)
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&#39;", "'")
        .replace("&amp;", "&")
}

/// The value of attribute `name` in the tag text `tag`.
fn attr<'a>(tag: &'a str, name: &str) -> Option<&'a str> {
    let at = tag.find(&format!(" {name}=\""))? + name.len() + 3;
    tag[at..].split('"').next()
}

fn num(tag: &str, name: &str) -> f64 {
    attr(tag, name)
        .and_then(|v| v.parse().ok())
        .unwrap_or(f64::NAN)
}

/// Every `<tag ...>` opening in `s`, with what follows it up to the next `<`.
fn tags<'a>(s: &'a str, tag: &str) -> Vec<(&'a str, String)> {
    let open = format!("<{tag} ");
    s.match_indices(&open)
        .map(|(i, _)| {
            let end = i + s[i..].find('>').unwrap();
            let body = s[end + 1..].split('<').next().unwrap_or("");
            (&s[i..end], unescape(body.trim()))
        })
        .collect()
}

/// The `<svg>` element with `id` in `html`.
fn svg_by_id<'a>(html: &'a str, id: &str) -> &'a str {
    let at = html
        .find(&format!("<svg id=\"{id}\""))
        .unwrap_or_else(|| panic!("no <svg id=\"{id}\">"));
    let end = at + html[at..].find("</svg>").expect("closed <svg>") + "</svg>".len();
    &html[at..end]
}

/// A row chart's value axis: (pixel, value) of its leftmost and rightmost bottom tick labels.
fn value_axis(svg: &str) -> impl Fn(f64) -> f64 {
    let ticks: Vec<(f64, f64, f64)> = tags(svg, "text")
        .into_iter()
        .filter(|(t, _)| attr(t, "text-anchor") == Some("middle"))
        .filter_map(|(t, s)| Some((num(t, "y"), num(t, "x"), s.replace('−', "-").parse().ok()?)))
        .collect();
    let bottom = ticks.iter().map(|t| t.0).fold(f64::MIN, f64::max);
    let mut ticks: Vec<(f64, f64)> = ticks
        .iter()
        .filter(|t| t.0 == bottom)
        .map(|t| (t.1, t.2))
        .collect();
    ticks.sort_by(|a, b| a.0.total_cmp(&b.0));
    let ((p0, v0), (p1, v1)) = (ticks[0], ticks[ticks.len() - 1]);
    assert!(ticks.len() >= 3 && p1 > p0, "value axis ticks: {ticks:?}");
    move |px| v0 + (px - p0) * (v1 - v0) / (p1 - p0)
}

/// The y of the row label `name` in a row chart.
fn row_y(svg: &str, name: &str) -> f64 {
    let hits: Vec<f64> = tags(svg, "text")
        .into_iter()
        .filter(|(_, s)| s == name)
        .map(|(t, _)| num(t, "y"))
        .collect();
    assert_eq!(hits.len(), 1, "row label {name} once");
    hits[0]
}

/// A number as the page prints it, and how far from the true value its rounding may be.
fn parse_shown(s: &str) -> Option<(f64, f64)> {
    let t = s.replace(',', "").replace('−', "-");
    if let Some(p) = t.strip_suffix(" %") {
        let decimals = p.split('.').nth(1).map_or(0, str::len);
        return Some((
            p.parse::<f64>().ok()? / 100.0,
            0.5 * 10f64.powi(-(decimals as i32)) / 100.0,
        ));
    }
    if let Some((n, _)) = t.split_once(" (") {
        return Some((n.parse().ok()?, 0.5)); // "719 (14.95 %)": the count
    }
    let decimals = t.split('.').nth(1).map_or(0, str::len);
    Some((t.parse().ok()?, 0.5 * 10f64.powi(-(decimals as i32))))
}

/// The JSON value at a dotted path ("alpha_time_blocked_ci.0", "model.zero_entries").
fn lookup<'a>(v: &'a Value, path: &str) -> &'a Value {
    path.split('.')
        .fold(v, |v, key| match key.parse::<usize>() {
            Ok(i) => &v[i],
            Err(_) => &v[key],
        })
}

/// Checks every `data-stat` number inside `html` against `record`; returns the fields seen.
fn check_stats(html: &str, record: &Value, what: &str) -> Vec<String> {
    let mut seen = Vec::new();
    for (tag, shown) in tags(html, "span") {
        let Some(field) = attr(tag, "data-stat") else {
            continue;
        };
        let want = lookup(record, field);
        match (want.as_f64(), parse_shown(&shown)) {
            (Some(w), Some((got, slack))) => {
                assert!(
                    (got - w).abs() <= slack + 1e-12,
                    "{what} {field}: page shows {shown}, summary.json has {w}"
                )
            }
            (None, _) => assert!(
                want.is_null() && shown == "n/a",
                "{what} {field}: page shows {shown}, summary.json has {want}"
            ),
            (Some(w), None) => assert!(
                w.is_infinite() && shown.contains('∞'),
                "{what} {field}: {shown} vs {w}"
            ),
        }
        seen.push(field.to_owned());
    }
    seen
}

#[test]
fn report_shows_every_tensor_and_the_summary_numbers() {
    let (_guard, out) = analyze();
    let html = read(&out.join("report.html"));
    let summary: Value = serde_json::from_str(&read(&out.join("summary.json"))).unwrap();
    let tensors = summary["tensors"].as_array().unwrap();
    assert_eq!(tensors.len(), 4, "the digits file holds four tensors");

    // The page's numbers: the whole-input block and one table row per tensor.
    let model_at = html.find("id=\"model\"").expect("whole-input section");
    let model_html = &html[model_at..model_at + html[model_at..].find("</section>").unwrap()];
    assert_eq!(check_stats(model_html, &summary, "whole input").len(), 5);
    let alpha_svg = svg_by_id(&html, "plot-alpha");
    let reject_svg = svg_by_id(&html, "plot-reject");
    let alpha_at = value_axis(alpha_svg);
    let (lo, hi) = (alpha_at(0.0), alpha_at(960.0));
    let alpha_slack = PIXEL_SLACK * (alpha_at(1.0) - alpha_at(0.0));
    for t in tensors {
        let name = t["name"].as_str().unwrap();
        let row_at = html
            .find(&format!("<tr data-tensor=\"{name}\">"))
            .unwrap_or_else(|| panic!("{name} has no table row"));
        let row = &html[row_at..row_at + html[row_at..].find("</tr>").unwrap()];
        let seen = check_stats(row, t, name);
        for field in [
            "alpha_time_blocked",
            "alpha_time_blocked_ci.0",
            "alpha_time_blocked_ci.1",
            "alpha_time_blocked_se",
            "alpha_simsekli_flat",
            "alpha_block_quantiles.q50",
            "alpha_logm_quantiles.q50",
            "jb_reject_frac",
            "k2_reject_frac",
            "alpha_mcculloch_quantiles.q50",
            "stable_beats_gauss_frac",
            "ad_reject_frac",
            "constant_coords",
            "zero_entries",
        ] {
            assert!(
                seen.iter().any(|s| s == field),
                "{name}: the table does not show {field}"
            );
        }

        // The α plot puts the tensor's time-blocked α (a dot) and flat α (a square) where
        // the axis says they are.
        let y = row_y(alpha_svg, name);
        let in_row = |cy: f64| (cy - y).abs() < 12.0;
        let dot = tags(alpha_svg, "circle")
            .into_iter()
            .find(|(c, _)| in_row(num(c, "cy")))
            .expect("a dot in the row")
            .0;
        let tb = t["alpha_time_blocked"].as_f64().unwrap();
        assert!(
            (alpha_at(num(dot, "cx")) - tb).abs() <= alpha_slack,
            "{name}: dot at α {} for {tb}",
            alpha_at(num(dot, "cx"))
        );
        let flat = t["alpha_simsekli_flat"].as_f64().unwrap();
        if (lo..=hi).contains(&flat) {
            let sq = tags(alpha_svg, "rect")
                .into_iter()
                .find(|(r, _)| attr(r, "width") == Some("8") && in_row(num(r, "y") + 4.0))
                .expect("a square in the row")
                .0;
            let x = alpha_at(num(sq, "x") + 4.0);
            assert!(
                (x - flat).abs() <= alpha_slack,
                "{name}: square at α {x} for flat α {flat}"
            );
        }

        // The rejection plot labels the row's bars with the summary's shares.
        let y = row_y(reject_svg, name);
        let labels: Vec<String> = tags(reject_svg, "text")
            .into_iter()
            .filter(|(t, _)| (num(t, "y") - y).abs() < 12.0)
            .map(|(_, s)| s)
            .filter(|s| s.ends_with('%'))
            .collect();
        assert_eq!(labels.len(), 2, "{name}: {labels:?}");
        for (label, field) in labels.iter().zip(["jb_reject_frac", "k2_reject_frac"]) {
            let (shown, slack) = parse_shown(label).unwrap();
            let want = t[field].as_f64().unwrap();
            assert!(
                (shown - want).abs() <= slack + 1e-12,
                "{name} {field}: bar says {label}, summary.json {want}"
            );
        }

        // Four histograms and the KS plot on the page and beside it; the histograms' counts
        // add up to the tensor's coordinates and the α medians are the summary's.
        let block_at = html
            .find(&format!(
                "<div class=\"hist-tensor\" data-tensor=\"{name}\">"
            ))
            .unwrap_or_else(|| panic!("{name} has no histograms"));
        let rest = &html[block_at + 1..];
        let end = ["<div class=\"hist-tensor\"", "</section>"]
            .iter()
            .filter_map(|m| rest.find(m))
            .min()
            .unwrap();
        let block = &rest[..end];
        let ids: Vec<&str> = tags(block, "svg")
            .into_iter()
            .filter_map(|(s, _)| attr(s, "id"))
            .collect();
        assert_eq!(ids.len(), 5, "{name}: {ids:?}");
        let coords = t["coords"].as_u64().unwrap();
        check_ks_scatter(&out, block, ids[4], t);
        let hists = ["alpha_block", "alpha_logm", "alpha_mcculloch", "kurt"];
        for (id, stat) in ids.iter().zip(hists) {
            let slug = id
                .strip_prefix("hist-")
                .and_then(|s| s.strip_suffix(&format!("-{stat}")))
                .unwrap_or_else(|| panic!("{id} is not the {stat} histogram"));
            let inline = svg_by_id(block, id);
            let file = read(&out.join(format!("hist_{slug}_{stat}.svg")));
            assert!(
                file.starts_with("<?xml") && file.contains(inline),
                "{id}: the .svg file is not the plot on the page"
            );
            let note = tags(inline, "text")
                .into_iter()
                .map(|t| t.1)
                .find(|s| s.contains("NaN skipped"))
                .expect("a count note");
            let counted = note
                .split(' ')
                .next()
                .unwrap()
                .replace(',', "")
                .parse::<u64>()
                .unwrap();
            let nan = note
                .split("; ")
                .nth(1)
                .unwrap()
                .split(' ')
                .next()
                .unwrap()
                .replace(',', "")
                .parse::<u64>()
                .unwrap();
            assert_eq!(counted + nan, coords, "{id}: {note}");
            if stat != "kurt" {
                let median = note
                    .split("median ")
                    .nth(1)
                    .unwrap()
                    .split(';')
                    .next()
                    .unwrap();
                let want = t[format!("{stat}_quantiles")]["q50"].as_f64().unwrap();
                assert!(
                    (median.parse::<f64>().unwrap() - want).abs() <= 0.005 + 1e-12,
                    "{id}: median {median} vs {want}"
                );
            }
        }
    }
    for file in ["alpha.svg", "reject.svg"] {
        let svg = read(&out.join(file));
        let id = if file == "alpha.svg" {
            "plot-alpha"
        } else {
            "plot-reject"
        };
        assert!(
            svg.starts_with("<?xml") && svg.contains(svg_by_id(&html, id)),
            "{file}"
        );
    }
}

/// The tensor's KS plot: its file is the plot on the page, its pairs and NaN add up to the
/// tensor's coordinates, it draws a dot per pair (at most 2,000), and the share below the
/// diagonal it states is the summary's `stable_beats_gauss_frac`.
fn check_ks_scatter(out: &Path, block: &str, id: &str, t: &Value) {
    let slug = id
        .strip_prefix("scatter-")
        .and_then(|s| s.strip_suffix("-ks"))
        .unwrap_or_else(|| panic!("{id} is not the KS plot"));
    let inline = svg_by_id(block, id);
    let file = read(&out.join(format!("scatter_{slug}_ks.svg")));
    assert!(
        file.starts_with("<?xml") && file.contains(inline),
        "{id}: the .svg file is not the plot on the page"
    );
    let texts: Vec<String> = tags(inline, "text").into_iter().map(|t| t.1).collect();
    let note = texts
        .iter()
        .find(|s| s.contains("with a NaN skipped"))
        .expect("a count note");
    let count = |s: &str| s.replace(',', "").parse::<u64>().unwrap();
    let pairs = count(note.split(' ').next().unwrap());
    let nan = count(note.split("; ").nth(1).unwrap().split(' ').next().unwrap());
    assert_eq!(pairs + nan, t["coords"].as_u64().unwrap(), "{id}: {note}");
    let dots = tags(inline, "circle").len() as u64;
    assert!(
        dots > 0 && dots <= pairs.min(2000) && (pairs <= 2000) == (dots == pairs),
        "{id}: {dots} dots for {pairs} pairs"
    );
    let below = texts
        .iter()
        .find_map(|s| s.strip_prefix("below the dashed diagonal: stable law closer, "))
        .expect("the share below the diagonal");
    let (shown, slack) = parse_shown(below.trim_end_matches(" of coordinates")).unwrap();
    let want = t["stable_beats_gauss_frac"].as_f64().unwrap();
    assert!(
        (shown - want).abs() <= slack + 1e-12,
        "{id}: says {below}, summary.json {want}"
    );
}

/// Values of every `src=` / `href=` attribute (quoted or not) in `html`.
fn link_values(html: &str) -> Vec<String> {
    let lower = html.to_ascii_lowercase();
    let mut out = Vec::new();
    for attr in ["src=", "href=", "srcset=", "xlink:href="] {
        for (i, _) in lower.match_indices(attr) {
            let rest = &html[i + attr.len()..];
            let value = match rest.chars().next() {
                Some(q @ ('"' | '\'')) => rest[1..].split(q).next().unwrap_or(""),
                _ => rest.split([' ', '>']).next().unwrap_or(""),
            };
            out.push(value.to_owned());
        }
    }
    out
}

fn find_chromium() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    ["chromium", "chromium-browser"].iter().find_map(|name| {
        std::env::split_paths(&path)
            .map(|dir| dir.join(name))
            .find(|p| p.is_file())
    })
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
        ])
        .args([
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
fn report_is_self_contained_and_renders() {
    let (guard, out) = analyze();
    let page = out.join("report.html");
    let html = read(&page);
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
    // What a user reads never points at the team's internal documents.
    for entry in std::fs::read_dir(&out).unwrap() {
        let path = entry.unwrap().path();
        if matches!(
            path.extension().and_then(|e| e.to_str()),
            Some("html" | "svg")
        ) {
            let text = read(&path);
            for internal in [
                "§",
                "spec ",
                "estimators.md",
                "house.md",
                "style.md",
                "../shared",
                "issue ",
            ] {
                assert!(
                    !text.contains(internal),
                    "{} mentions {internal:?}",
                    path.display()
                );
            }
        }
    }

    let Some(chromium) = find_chromium() else {
        if std::env::var("GRADTAIL_REQUIRE_CHROMIUM").as_deref() == Ok("1") {
            panic!("no chromium or chromium-browser on PATH, and GRADTAIL_REQUIRE_CHROMIUM=1");
        }
        eprintln!("skipped: no chromium");
        return;
    };
    let url = format!("file://{}", page.canonicalize().unwrap().display());

    // The document Chromium builds from the file holds every plot of the source.
    let dom_path = guard.path().join("dom.html");
    run_chromium(&chromium, &["--dump-dom".into()], &url, &dom_path);
    let dom = read(&dom_path);
    let ids: Vec<&str> = tags(&html, "svg")
        .into_iter()
        .filter_map(|(s, _)| attr(s, "id"))
        .collect();
    // alpha and reject, five per tensor, and the spectra of the model and each tensor.
    assert_eq!(ids.len(), 2 + 4 * 5 + 1 + 4, "plots in the page: {ids:?}");
    assert!(ids.contains(&"spectrum-_model") && ids.contains(&"spectrum-fc0.weight"));
    for id in ids {
        assert!(
            dom.contains(&format!("<svg id=\"{id}\"")),
            "Chromium's DOM lacks {id}"
        );
    }

    // It renders to a picture: a screenshot far larger (more detail to compress) than the
    // same window showing a blank page.
    let shot = |url: &str, name: &str| {
        let png = guard.path().join(name);
        let extra = [
            format!("--screenshot={}", png.display()),
            "--window-size=1200,3000".into(),
        ];
        run_chromium(&chromium, &extra, url, &guard.path().join("screenshot.log"));
        let bytes = std::fs::read(&png).expect("screenshot written");
        assert!(
            bytes.starts_with(b"\x89PNG\r\n\x1a\n"),
            "{name} is not a PNG"
        );
        bytes.len()
    };
    let blank = guard.path().join("blank.html");
    std::fs::write(&blank, "<!DOCTYPE html><html><body></body></html>").unwrap();
    let (report, empty) = (
        shot(&url, "report.png"),
        shot(&format!("file://{}", blank.display()), "blank.png"),
    );
    assert!(
        report > 10 * empty,
        "screenshot {report} bytes, a blank page {empty} bytes"
    );
}
