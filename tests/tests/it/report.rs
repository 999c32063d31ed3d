//! `whittle plan render FILE`: a plan saved as JSON rendered offline (no configuration,
//! state or AWS), in every format, with `--output-dir`; and a clear error for a file that is
//! not a plan. The HTML report's behaviour in a browser is tested in `tests/browser/`.

use std::path::{Path, PathBuf};
use std::process::Output;

use crate::support::whittle;

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The demo-like plan of the `plan-fixture` binary, built beside whittle.
fn demo_plan(dir: &Path) -> PathBuf {
    let fixture = whittle_tests::whittle_binary().with_file_name("plan-fixture");
    let path = dir.join("plan.json");
    let out = std::process::Command::new(&fixture)
        .args(["--demo", "--out"])
        .arg(&path)
        .output()
        .expect("run plan-fixture (cargo build --workspace --bins --tests builds it)");
    assert!(out.status.success(), "{}", text(&out.stderr));
    path
}

fn render(file: &Path, args: &[&str]) -> Output {
    let file = file.to_str().expect("utf-8");
    whittle(&[&["plan", "render", file], args].concat())
}

#[test]
fn a_saved_plan_renders_offline_in_every_format() {
    let dir = tempfile::tempdir().expect("temp dir");
    let plan = demo_plan(dir.path());
    // No configuration file exists here: render needs none.
    let html = render(
        &plan,
        &["--format", "html", "--config", "/nonexistent/whittle.toml"],
    );
    assert_eq!(
        html.status.code(),
        Some(2),
        "changes proposed: {}",
        text(&html.stderr)
    );
    let page = text(&html.stdout);
    assert!(page.starts_with("<!DOCTYPE html>"));
    assert!(page.contains("arn:aws:iam::123456789012:role/app-orders"));

    let markdown = text(&render(&plan, &["--format", "markdown"]).stdout);
    assert!(
        markdown.starts_with("## whittle plan `plan-20261124100000-demo`"),
        "{markdown}"
    );
    assert!(
        !markdown.contains("<!-- whittle: next part -->"),
        "five roles fit one comment"
    );

    // JSON out is the plan in.
    let json = text(&render(&plan, &["--format", "json"]).stdout);
    let original: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&plan).expect("read")).expect("JSON");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&json).expect("JSON"),
        original
    );

    // --output-dir: the HTML report in DIR/plan.html, its path on stdout.
    let out_dir = dir.path().join("out");
    let written = render(
        &plan,
        &[
            "--format",
            "html",
            "--output-dir",
            out_dir.to_str().expect("utf-8"),
        ],
    );
    assert_eq!(
        text(&written.stdout).trim(),
        out_dir.join("plan.html").display().to_string()
    );
    assert_eq!(
        std::fs::read_to_string(out_dir.join("plan.html")).expect("plan.html"),
        page
    );
}

#[test]
fn a_file_that_is_not_a_plan_is_refused_saying_what_to_give() {
    let dir = tempfile::tempdir().expect("temp dir");
    let cases = [
        ("usage.json", r#"{"principals": []}"#, "no `schema` number"),
        ("notes.txt", "not json at all", "not a JSON object"),
        ("roles.json", r#"{"schema": 1, "id": "p"}"#, "missing field"),
    ];
    for (name, content, why) in cases {
        let path = dir.path().join(name);
        std::fs::write(&path, content).expect("write");
        let out = render(&path, &["--format", "html"]);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{name}: {stderr}");
        assert!(out.stdout.is_empty());
        assert!(
            stderr.contains(&format!("{} is not a whittle plan", path.display())),
            "{stderr}"
        );
        assert!(stderr.contains(why), "{name}: {stderr}");
        assert!(stderr.contains("whittle plan --format json"), "{stderr}");
    }
    let newer = dir.path().join("newer.json");
    std::fs::write(&newer, r#"{"schema": 7, "roles": []}"#).expect("write");
    let stderr = text(&render(&newer, &[]).stderr);
    assert!(
        stderr.contains("is a plan of schema 7, newer than this whittle reads (1)"),
        "{stderr}"
    );
    let plan = demo_plan(dir.path());
    let out = whittle(&[
        "plan",
        "--role",
        "arn:aws:iam::123456789012:role/app-orders",
        "render",
        plan.to_str().expect("utf-8"),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("renders the file whole"));
    let missing = dir.path().join("missing.json");
    let stderr = text(&render(&missing, &[]).stderr);
    assert!(
        stderr.contains(&format!("cannot read {}", missing.display())),
        "{stderr}"
    );
}
