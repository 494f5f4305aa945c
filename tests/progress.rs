//! `--progress plain` and `--progress json` of `imgscript run`.

mod common;

use common::*;

fn script(workspace: &Workspace) -> std::path::PathBuf {
    workspace.write(
        "build.img",
        &format!(
            "debian_slim(\"3.11\")\n    .run_commands([\"echo progress-{}\"])\n",
            nonce()
        ),
    )
}

#[test]
fn json_progress_is_one_object_per_event() {
    let _docker = docker_test();
    let workspace = Workspace::new();
    let script = script(&workspace);
    let result = run(imgscript().args(["run", "--progress", "json"]).arg(&script));
    assert_eq!(result.code, 0, "{}", result.stderr);

    let events: Vec<serde_json::Value> = result
        .stderr
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|_| panic!("not JSON: {line}")))
        .collect();
    let kinds: Vec<&str> = events
        .iter()
        .map(|event| event["event"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        vec![
            "step_cached",
            "step_started",
            "step_output",
            "step_finished",
            "summary"
        ]
    );
    assert_eq!(events[0]["step"], "debian_slim python:3.11-slim-bookworm");
    assert!(events[1]["location"]
        .as_str()
        .unwrap()
        .ends_with("build.img:2:6"));
    assert_eq!(
        events[1]["reason"],
        "no cached layer for this step (new or changed)"
    );
    assert!(events[2]["line"].as_str().unwrap().starts_with("progress-"));
    assert!(events[3]["seconds"].as_f64().unwrap() > 0.0);
    assert_eq!(events[4]["built"], 1);
    assert_eq!(events[4]["cached"], 1);
}

#[test]
fn plain_progress_ends_with_a_summary() {
    let _docker = docker_test();
    let workspace = Workspace::new();
    let script = script(&workspace);
    let first = run(imgscript()
        .args(["run", "--progress", "plain"])
        .arg(&script));
    assert_eq!(first.code, 0, "{}", first.stderr);
    let last = first.stderr.lines().last().unwrap();
    assert!(
        last.starts_with("steps: 1 built, 1 cached, in "),
        "{}",
        first.stderr
    );

    let again = run(imgscript().arg("run").arg(&script));
    let last = again.stderr.lines().last().unwrap();
    assert!(
        last.starts_with("steps: 0 built, 2 cached, in "),
        "{}",
        again.stderr
    );
}
