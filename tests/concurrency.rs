//! Several imgscript processes at once on the same steps.

mod common;

use std::process::Stdio;

use common::*;

#[test]
fn two_runs_build_a_shared_step_once() {
    let _docker = docker_test();
    let workspace = Workspace::new();
    let script = workspace.write(
        "build.img",
        &format!(
            "debian_slim(\"3.11\").run_commands([\"echo {} && sleep 3\"])\n",
            nonce()
        ),
    );
    let start = || {
        imgscript()
            .arg("run")
            .arg(&script)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (first, second) = (start(), start());
    let first = Run::from(first.wait_with_output().unwrap());
    let second = Run::from(second.wait_with_output().unwrap());
    assert_eq!(first.code, 0, "{}", first.stderr);
    assert_eq!(second.code, 0, "{}", second.stderr);
    assert_eq!(image_id(&first), image_id(&second));

    let builds = [&first, &second]
        .iter()
        .filter(|run| run.stderr.contains("run_commands") && run.stderr.contains("(building"))
        .count();
    assert_eq!(
        builds, 1,
        "first:\n{}\nsecond:\n{}",
        first.stderr, second.stderr
    );
    let waited = [&first, &second]
        .iter()
        .filter(|run| run.stderr.contains("waited for another imgscript process"))
        .count();
    assert_eq!(
        waited, 1,
        "first:\n{}\nsecond:\n{}",
        first.stderr, second.stderr
    );
}

/// Runs `script` with `--progress json` and returns its events.
fn json_events(script: &std::path::Path, args: &[&str]) -> Vec<serde_json::Value> {
    let result = run(imgscript()
        .args(["run", "--progress", "json"])
        .args(args)
        .arg(script));
    assert_eq!(result.code, 0, "{}", result.stderr);
    result
        .stderr
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|_| panic!("not JSON: {line}")))
        .collect()
}

/// Returns the events named `kind` whose step description contains `text`, as
/// positions in the event list.
fn positions(events: &[serde_json::Value], kind: &str, text: &str) -> Vec<usize> {
    let index_of_step = |event: &serde_json::Value| event["index"].as_u64();
    let steps: Vec<u64> = events
        .iter()
        .filter(|event| event["event"] == "step_started")
        .filter(|event| event["step"].as_str().unwrap().contains(text))
        .filter_map(index_of_step)
        .collect();
    events
        .iter()
        .enumerate()
        .filter(|(_, event)| event["event"] == kind)
        .filter(|(_, event)| index_of_step(event).is_some_and(|index| steps.contains(&index)))
        .map(|(position, _)| position)
        .collect()
}

fn two_branch_script(workspace: &Workspace) -> std::path::PathBuf {
    let nonce = nonce();
    workspace.write(
        "build.img",
        &format!(
            "let common = debian_slim(\"3.11\").run_commands([\"echo shared-{nonce}\"]);\n\
             #{{\n\
             \x20   left: common.run_commands([\"sleep 2 && echo left-{nonce}\"]),\n\
             \x20   right: common.run_commands([\"sleep 2 && echo right-{nonce}\"]),\n\
             }}\n"
        ),
    )
}

#[test]
fn independent_branches_build_at_the_same_time() {
    let _docker = docker_test();
    let workspace = Workspace::new();
    let script = two_branch_script(&workspace);

    let events = json_events(&script, &["--jobs", "2"]);

    assert_eq!(positions(&events, "step_started", "shared-").len(), 1);
    let left_started = positions(&events, "step_started", "left-")[0];
    let right_started = positions(&events, "step_started", "right-")[0];
    let left_finished = positions(&events, "step_finished", "left-")[0];
    let right_finished = positions(&events, "step_finished", "right-")[0];
    let first_finished = left_finished.min(right_finished);
    assert!(
        left_started < first_finished && right_started < first_finished,
        "both branches should start before either finishes: {events:#?}"
    );
}

#[test]
fn one_job_builds_one_step_at_a_time() {
    let _docker = docker_test();
    let workspace = Workspace::new();
    let script = two_branch_script(&workspace);

    let events = json_events(&script, &["--jobs", "1"]);

    let left = (
        positions(&events, "step_started", "left-")[0],
        positions(&events, "step_finished", "left-")[0],
    );
    let right = (
        positions(&events, "step_started", "right-")[0],
        positions(&events, "step_finished", "right-")[0],
    );
    assert!(
        left.1 < right.0 || right.1 < left.0,
        "the branches should not overlap: {events:#?}"
    );
}

#[test]
fn jobs_must_be_at_least_one() {
    let workspace = Workspace::new();
    let script = workspace.write("build.img", "debian_slim(\"3.11\")\n");
    let result = run(imgscript().args(["run", "--jobs", "0"]).arg(&script));
    assert_eq!(result.code, 2, "{}", result.stderr);
    assert!(result.stderr.contains("--jobs"), "{}", result.stderr);
}
