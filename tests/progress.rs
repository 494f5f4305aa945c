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
fn json_progress_reports_a_failed_step() {
    let _docker = docker_test();
    let workspace = Workspace::new();
    let script = workspace.write(
        "build.img",
        &format!(
            "debian_slim(\"3.11\")\n    .run_commands([\"echo failing-{}\", \"exit 3\"])\n    .env(#{{ AFTER: \"1\" }})\n",
            nonce()
        ),
    );
    let result = run(imgscript().args(["run", "--progress", "json"]).arg(&script));
    assert_eq!(result.code, 1, "{}", result.stderr);

    // The stream stays JSON to its end, the error included.
    let events: Vec<serde_json::Value> = result
        .stderr
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|_| panic!("not JSON: {line}")))
        .collect();
    let failed = events
        .iter()
        .find(|event| event["event"] == "step_failed")
        .unwrap_or_else(|| panic!("no step_failed event: {}", result.stderr));
    assert!(failed["location"]
        .as_str()
        .unwrap()
        .ends_with("build.img:2:6"));
    assert!(
        failed["error"]
            .as_str()
            .unwrap()
            .contains("exited with code 3"),
        "{failed}"
    );
    let [.., summary, error] = events.as_slice() else {
        panic!("too few events: {}", result.stderr)
    };
    assert_eq!(summary["event"], "summary", "{}", result.stderr);
    assert_eq!(summary["failed"], 1);
    assert_eq!(summary["built"], 0);
    assert_eq!(error["event"], "error");
    assert_eq!(error["exit_code"], 1);
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("exited with code 3"),
        "{error}"
    );
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

/// Snapshots progress output, with what differs between runs replaced:
/// the workspace folder, the nonce and durations.
fn assert_progress_snapshot(name: &str, text: &str, workspace: &Workspace, nonce: &str) {
    let folder = workspace.path().display().to_string();
    insta::with_settings!({filters => vec![
        (folder.as_str(), "DIR"),
        (nonce, "NONCE"),
        (r"\d+\.\d+s", "N.Ns"),
        (r#""seconds":[0-9.e-]+"#, r#""seconds":N"#),
    ]}, {
        insta::assert_snapshot!(name, text);
    });
}

fn two_step_script(workspace: &Workspace, nonce: &str) -> std::path::PathBuf {
    workspace.write(
        "build.img",
        &format!(
            "debian_slim(\"3.11\")\n    .run_commands([\"echo first {nonce}\", \"echo second\"])\n    .env(#{{ A: \"1\" }})\n"
        ),
    )
}

#[test]
fn plain_progress_snapshot() {
    let _docker = docker_test();
    let workspace = Workspace::new();
    let nonce = nonce();
    let script = two_step_script(&workspace, &nonce);

    let result = run(imgscript()
        .args(["run", "--progress", "plain"])
        .arg(&script));

    assert_eq!(result.code, 0, "{}", result.stderr);
    assert_progress_snapshot("plain", &result.stderr, &workspace, &nonce);
}

#[test]
fn json_progress_snapshot() {
    let _docker = docker_test();
    let workspace = Workspace::new();
    let nonce = nonce();
    let script = two_step_script(&workspace, &nonce);

    let result = run(imgscript().args(["run", "--progress", "json"]).arg(&script));

    assert_eq!(result.code, 0, "{}", result.stderr);
    assert_progress_snapshot("json", &result.stderr, &workspace, &nonce);
}

#[test]
fn terminal_gets_a_live_view_that_ends_with_a_summary() {
    use expectrl::Session;

    let _docker = docker_test();
    let workspace = Workspace::new();
    let nonce = nonce();
    let script = two_step_script(&workspace, &nonce);
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_imgscript"));
    command
        .arg("run")
        .arg(&script)
        .env("NO_COLOR", "1")
        .env("TERM", "xterm");

    let mut session = Session::spawn(command).expect("imgscript starts in a pty");
    session.set_expect_timeout(Some(std::time::Duration::from_secs(120)));
    let mut screen = Vec::new();
    std::io::Read::read_to_end(&mut session, &mut screen).ok();
    let screen = String::from_utf8_lossy(&screen);

    assert!(screen.contains("1 cached step"), "{screen}");
    assert!(
        screen.contains("✓ [") && screen.contains("run_commands"),
        "{screen}"
    );
    assert!(screen.contains("steps: 2 built, 1 cached, in "), "{screen}");
    assert!(
        !screen.contains("(building:"),
        "a terminal should not get the plain lines: {screen}"
    );
}
