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
