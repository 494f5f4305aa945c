//! Faults during a build: imgscript killed at any point. These tests take
//! minutes, so they are ignored by `cargo test` and run by tests/long.sh.

mod common;

use std::process::Stdio;
use std::time::{Duration, Instant};

use common::*;

/// A delay in [0, limit), different on every call.
fn random_delay(limit: Duration) -> Duration {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as u128;
    // The low bits of the clock, scrambled by a multiply.
    let scrambled = (nanos * 6_364_136_223_846_793_005) >> 7;
    Duration::from_nanos((scrambled % limit.as_nanos()) as u64)
}

/// Removes the cached layers of every step of `script` after its base.
fn remove_cached_layers(script: &std::path::Path, cache: &std::path::Path) {
    let plan = run(imgscript()
        .args(["plan", "--format", "json"])
        .arg(script)
        .env("IMGSCRIPT_CACHE_DIR", cache));
    assert_eq!(plan.code, 0, "{}", plan.stderr);
    let plan: serde_json::Value = serde_json::from_str(&plan.stdout).unwrap();
    for step in &plan["steps"].as_array().unwrap()[1..] {
        let label = format!(
            "label=dev.imgscript.key={}",
            step["cache_key"].as_str().unwrap()
        );
        for image in docker(&["images", "-q", "--no-trunc", "--filter", &label]).lines() {
            docker(&["rmi", "--no-prune", image]);
        }
    }
}

#[test]
#[ignore = "kills 30 builds at random points; run by tests/long.sh"]
fn sigkill_at_random_points_leaves_no_broken_layer() {
    let _docker = docker_test();
    let workspace = Workspace::new();
    let nonce = nonce();
    workspace.write("files/a.txt", &format!("a {nonce}\n"));
    workspace.write("files/b.txt", "b\n");
    let script = workspace.write(
        "build.img",
        &format!(
            r#"debian_slim("3.11")
    .run_commands(["echo one {nonce} > /out"])
    .env(#{{ STEP: "two" }})
    .add_local_dir("./files", "/files", #{{ copy: true }})
    .run_commands(["cat /files/a.txt >> /out", "echo $STEP >> /out"])
    .workdir("/files")
    .run_commands(["cat b.txt >> /out", "sleep 0.3"])
    .run_commands(["echo five >> /out"])
"#
        ),
    );
    let expected = format!("one {nonce}\na {nonce}\ntwo\nb\nfive");
    let containers_before = all_containers();
    let cache = workspace.path().join("cache");

    let runs = 30;
    for round in 0..runs {
        let mut child = imgscript()
            .arg("run")
            .arg(&script)
            .env("IMGSCRIPT_CACHE_DIR", &cache)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let started = Instant::now();
        std::thread::sleep(random_delay(Duration::from_secs(4)));
        child.kill().unwrap();
        child.wait().unwrap();

        // The next run finishes the build from whatever the killed one left.
        let finished = run(imgscript()
            .arg("run")
            .arg(&script)
            .env("IMGSCRIPT_CACHE_DIR", &cache));
        assert_eq!(
            finished.code,
            0,
            "round {round}, killed after {:?}:\n{}",
            started.elapsed(),
            finished.stderr
        );
        let out = docker(&["run", "--rm", &image_id(&finished), "cat", "/out"]);
        assert_eq!(out, expected, "round {round}");

        // Start the next round from a cold cache for the later steps, so
        // kills land in every step and not only in the first one.
        if round % 3 == 2 {
            remove_cached_layers(&script, &cache);
        }
    }

    // A killed run cannot remove its containers; take them away here.
    for container in all_containers() {
        if !containers_before.contains(&container) {
            let _ = std::process::Command::new("docker")
                .args(["rm", "-f", &container])
                .output();
        }
    }
}
