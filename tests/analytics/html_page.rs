//! `replytime report --format html` rendered by headless Chromium (Debian's
//! `chromium`, installed by scripts/install-deps.sh) at phone and desktop
//! widths: not blank, no horizontal overflow, prints to PDF, and every number
//! in the rendered DOM equals the JSON report. Screenshots and the PDF are kept
//! under `target/tmp/analytics-html/`.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use chrono::Duration as Elapsed;
use serde_json::Value;

use crate::common::TestDb;
use crate::fixtures::{Anchor, Lead, analytics_db, draft, t};
use crate::outcomes::outcome_fixture;
use crate::report::run_report;

const PHONE: (u32, u32) = (390, 844);
const DESKTOP: (u32, u32) = (1280, 900);
const CHROMIUM_TIMEOUT: Duration = Duration::from_secs(120);
/// Columns shown as the plain number (others read as durations or percentages).
const COUNT_COLUMNS: [&str; 12] = [
    "booked",
    "notBooked",
    "bookedNoTimestamp",
    "pending",
    "canceled",
    "eligible",
    "excluded",
    "anchors",
    "answered",
    "setterAnswered",
    "aiAnswered",
    "rank",
];

/// The outcome fixture, plus AI answers over every delay and drift bucket and
/// a few draft sends, so every chart has bars.
async fn report_fixture(db: &TestDb) {
    outcome_fixture(db).await;
    let ai = [
        ("ai-1", Some(200), 10, Some("2024-03-09 10:00")),
        ("ai-2", Some(250), 45, None),
        ("ai-3", Some(310), 90, Some("2024-03-20 10:00")),
        ("ai-4", Some(400), 200, None),
        ("ai-5", None, 600, None),
        ("ai-6", Some(100), 1200, None),
    ];
    for (i, (lead, delay, drift, booked)) in ai.into_iter().enumerate() {
        let mut row = Lead::new(lead);
        if let Some(at) = booked {
            row = row.booked(at);
        }
        row.insert(db).await;
        let inbound = t(&format!("2024-03-{:02} 11:00", 4 + i));
        let run_at = inbound + Elapsed::seconds(i64::from(delay.unwrap_or(180)));
        Anchor::new(
            &format!("in-{lead}"),
            lead,
            &format!("2024-03-{:02} 11:00", 4 + i),
        )
        .channel(if i % 2 == 0 { "sms" } else { "email" })
        .delay(delay)
        .run_at(run_at)
        .ai_after((run_at - inbound + Elapsed::seconds(drift)).num_milliseconds())
        .insert(db)
        .await;
    }
    let out = |id: &'static str, at: &'static str| (id, "outbound", "ai", at);
    draft(
        db,
        ("d1", "ai-1", "sms", "AUTO_SENT"),
        &[out("m1", "2024-03-04 11:04")],
    )
    .await;
    draft(
        db,
        ("d2", "ai-2", "email", "EDITED"),
        &[out("m2", "2024-03-05 11:05")],
    )
    .await;
}

/// Where this test keeps what it rendered.
fn artifacts() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("analytics-html");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Runs headless Chromium with the flags a root container needs and a fresh
/// profile; returns its stdout. Fails the test when Chromium is missing.
fn chromium(args: &[String]) -> String {
    let binary = std::env::var("REPLYTIME_CHROMIUM").unwrap_or_else(|_| "chromium".into());
    let profile = tempfile::tempdir().unwrap();
    // Files, not pipes: a DOM larger than a pipe's buffer would block Chromium
    // until it is read.
    let (stdout_path, stderr_path) = (profile.path().join("out"), profile.path().join("err"));
    let mut child = Command::new(&binary)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--hide-scrollbars",
            "--force-device-scale-factor=1",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(args)
        .stdout(File::create(&stdout_path).unwrap())
        .stderr(File::create(&stderr_path).unwrap())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("{binary}: {e}: install Debian's chromium (scripts/install-deps.sh)")
        });
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > CHROMIUM_TIMEOUT {
            let _ = child.kill();
            panic!("chromium {args:?} ran for more than {CHROMIUM_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let status = child.wait().unwrap();
    let stderr = std::fs::read_to_string(&stderr_path).unwrap_or_default();
    assert!(status.success(), "chromium {args:?}: {stderr}");
    std::fs::read_to_string(&stdout_path).unwrap()
}

fn url(path: &Path) -> String {
    format!("file://{}", path.display())
}

fn window((width, height): (u32, u32)) -> String {
    format!("--window-size={width},{height}")
}

/// Takes a screenshot and checks it is the page, not a blank: its size, and
/// enough pixels that are neither white nor one flat colour.
fn screenshot(page: &Path, size: (u32, u32), name: &str) {
    let png = artifacts().join(name);
    let _ = std::fs::remove_file(&png);
    chromium(&[
        window(size),
        format!("--screenshot={}", png.display()),
        url(page),
    ]);
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(&png).unwrap()));
    let mut reader = decoder.read_info().unwrap();
    let mut pixels = vec![0; reader.output_buffer_size().unwrap()];
    let frame = reader.next_frame(&mut pixels).unwrap();
    assert_eq!((frame.width, frame.height), size, "{name}");
    let channels = frame.color_type.samples();
    let pixels = &pixels[..frame.buffer_size()];
    let inked = pixels
        .chunks(channels)
        .filter(|p| p[..3].iter().any(|&c| c < 200))
        .count();
    let share = inked as f64 / (frame.width * frame.height) as f64;
    let colours: std::collections::HashSet<&[u8]> = pixels.chunks(channels).collect();
    assert!(
        share > 0.02 && colours.len() > 20,
        "{name} looks blank: {:.1}% inked, {} colours",
        share * 100.0,
        colours.len()
    );
}

/// The page's scroll width and viewport width when laid out `size.0` px wide.
/// Headless Chromium keeps windows at least 500 px wide, so the page is laid out
/// in an iframe of the exact width (`srcdoc`: same origin as the probe), whose
/// script writes the numbers into the DOM (the report itself has no script).
fn scroll_width(page: &Path, size: (u32, u32)) -> (u64, u64) {
    let html = std::fs::read_to_string(page).unwrap();
    let srcdoc = html.replace('&', "&amp;").replace('"', "&quot;");
    let probe = format!(
        "<!DOCTYPE html><html><body style=\"margin:0\">\
         <iframe id=\"page\" style=\"width:{}px;height:{}px;border:0\" srcdoc=\"{srcdoc}\"></iframe>\
         <script>\
         var frame = document.getElementById('page');\
         function measure() {{\
           var doc = frame.contentDocument;\
           document.body.setAttribute('data-scroll-width', doc.documentElement.scrollWidth);\
           document.body.setAttribute('data-inner-width', frame.contentWindow.innerWidth);\
         }}\
         if (frame.contentDocument && frame.contentDocument.readyState === 'complete' \
             && frame.contentDocument.body && frame.contentDocument.body.children.length) measure();\
         else frame.addEventListener('load', measure);\
         </script></body></html>",
        size.0, size.1
    );
    let copy = artifacts().join(format!("overflow-probe-{}.html", size.0));
    std::fs::write(&copy, probe).unwrap();
    let dom = chromium(&[window(size), "--dump-dom".into(), url(&copy)]);
    let attribute = |name: &str| -> u64 {
        let start = dom
            .find(&format!("{name}=\""))
            .unwrap_or_else(|| panic!("no {name} in the DOM"))
            + name.len()
            + 2;
        dom[start..].split('"').next().unwrap().parse().unwrap()
    };
    (
        attribute("data-scroll-width"),
        attribute("data-inner-width"),
    )
}

fn unescape(text: &str) -> String {
    text.replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&nbsp;", "\u{a0}")
        .replace("&amp;", "&")
}

fn attribute(tag: &str, name: &str) -> Option<String> {
    let start = tag.find(&format!(" {name}=\""))? + name.len() + 3;
    Some(unescape(tag[start..].split('"').next()?))
}

/// Equal numbers, to within the last bit serde_json's float parser may miss.
fn same_number(a: Option<f64>, b: Option<f64>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => (a - b).abs() <= 1e-12 * a.abs().max(b.abs()),
        (a, b) => a == b,
    }
}

/// Checks every cell of every table of the DOM against the JSON report;
/// returns how many numbers were compared.
fn compare_dom_with_json(dom: &str, json: &Value) -> usize {
    let mut compared = 0;
    let sections: Vec<&str> = dom.split("<table data-section=\"").skip(1).collect();
    assert!(sections.len() >= 8, "{} tables in the DOM", sections.len());
    for section in sections {
        let key = section.split('"').next().unwrap();
        let table = section.split("</table>").next().unwrap();
        let rows_json = json[key]
            .as_array()
            .unwrap_or_else(|| panic!("{key} not in the JSON"));
        let rows: Vec<&str> = table.split("<tr data-row=\"").skip(1).collect();
        assert_eq!(rows.len(), rows_json.len(), "{key}: rows");
        for (i, row) in rows.iter().enumerate() {
            let expected = &rows_json[i];
            for cell in row.split("<td").skip(1) {
                let (tag, rest) = cell.split_once('>').unwrap();
                let text = unescape(rest.split("</td>").next().unwrap());
                let column = attribute(tag, "data-col").unwrap();
                if column == "bookingRate95" {
                    for (attr, json_key) in [
                        ("data-low", "bookingRateLow95"),
                        ("data-high", "bookingRateHigh95"),
                    ] {
                        let shown = attribute(tag, attr).map(|v| v.parse::<f64>().unwrap());
                        let wanted = expected[json_key].as_f64();
                        assert!(
                            same_number(shown, wanted),
                            "{key}[{i}].{json_key}: {shown:?} != {wanted:?}"
                        );
                        compared += usize::from(shown.is_some());
                    }
                    continue;
                }
                let raw = attribute(tag, "data-value").unwrap();
                let value: Value = serde_json::from_str(&raw).unwrap();
                if value.is_f64() {
                    let wanted = expected[&column].as_f64();
                    assert!(
                        same_number(value.as_f64(), wanted),
                        "{key}[{i}].{column}: {value} != {wanted:?}"
                    );
                } else {
                    assert_eq!(value, expected[&column], "{key}[{i}].{column}");
                }
                if COUNT_COLUMNS.contains(&column.as_str()) {
                    assert_eq!(text, value.to_string(), "{key}[{i}].{column} as shown");
                }
                compared += usize::from(value.is_number());
            }
        }
    }
    compared
}

#[tokio::test]
async fn html_report_renders_in_chromium_like_the_json() {
    let db = analytics_db().await;
    report_fixture(&db).await;
    let window_args = ["--from", "2024-03-01", "--to", "2024-04-01", "--tz", "UTC"];
    let (stdout, stderr, ok) = run_report(&db, &[&window_args[..], &["--format", "json"]].concat());
    assert!(ok, "{stderr}");
    let json: Value = serde_json::from_str(&stdout).unwrap();

    let page = artifacts().join("report.html");
    let page_arg = page.display().to_string();
    let html_args = [
        &window_args[..],
        &["--format", "html", "--output", &page_arg],
    ]
    .concat();
    let (stdout, stderr, ok) = run_report(&db, &html_args);
    assert!(ok, "{stderr}");
    assert!(stdout.is_empty(), "the page goes to --output only");
    assert!(stderr.contains(&format!("wrote {page_arg}")), "{stderr}");
    let html = std::fs::read_to_string(&page).unwrap();
    assert!(!html.contains("<script") && !html.contains("<link"));

    screenshot(&page, PHONE, "phone.png");
    screenshot(&page, DESKTOP, "desktop.png");
    for size in [PHONE, DESKTOP] {
        let (scroll, inner) = scroll_width(&page, size);
        assert_eq!(inner, u64::from(size.0), "the window is {size:?}");
        assert!(
            scroll <= inner,
            "{size:?}: the page scrolls sideways ({scroll} > {inner})"
        );
    }

    let pdf = artifacts().join("report.pdf");
    let _ = std::fs::remove_file(&pdf);
    chromium(&[
        "--no-pdf-header-footer".into(),
        format!("--print-to-pdf={}", pdf.display()),
        url(&page),
    ]);
    let bytes = std::fs::read(&pdf).unwrap();
    assert!(bytes.starts_with(b"%PDF-"), "not a PDF");
    assert!(bytes.len() > 20_000, "a {} byte PDF", bytes.len());

    let dom = chromium(&[window(DESKTOP), "--dump-dom".into(), url(&page)]);
    let compared = compare_dom_with_json(&dom, &json);
    assert!(compared > 300, "only {compared} numbers compared");
    // The chart of the setter section shows the first bucket's rate and count.
    assert!(dom.contains("30.8% (12.7%–57.6%) · n = 13"), "setter chart");
}
