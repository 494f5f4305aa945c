//! Faults during a build: imgscript killed at any point. These tests take
//! minutes, so they are ignored by `cargo test` and run by tests/long.sh.

mod common;

use std::process::Stdio;
use std::time::{Duration, Instant};

use common::*;

/// Returns a delay in [0, limit), different on every call.
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
            // Forced: the containers of killed runs still use some layers.
            docker(&["rmi", "--force", "--no-prune", image]);
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

    // A killed run cannot remove its containers, so the next run that
    // builds a step removes them. One more build sweeps the last kill.
    remove_cached_layers(&script, &cache);
    build(&script, &[]);
    let left: Vec<String> = all_containers()
        .into_iter()
        .filter(|container| !containers_before.contains(container))
        .collect();
    assert!(left.is_empty(), "killed runs left containers: {left:?}");
}

/// Stops dockerd and starts it again as tests/setup.sh does, waiting until
/// it responds.
fn restart_dockerd() {
    let stopped = std::process::Command::new("pkill")
        .args(["-TERM", "-x", "dockerd"])
        .status()
        .unwrap();
    assert!(stopped.success(), "no dockerd to stop");
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::process::Command::new("pgrep")
        .args(["-x", "dockerd"])
        .output()
        .unwrap()
        .status
        .success()
    {
        assert!(Instant::now() < deadline, "dockerd did not stop");
        std::thread::sleep(Duration::from_millis(200));
    }

    // Through a shell, so that the daemon outlives this test as it
    // outlives tests/setup.sh.
    let started = std::process::Command::new("sh")
        .args([
            "-c",
            "nohup dockerd >>/var/log/imgscript-dockerd.log 2>&1 &",
        ])
        .status()
        .unwrap();
    assert!(started.success());
    while !std::process::Command::new("docker")
        .arg("info")
        .output()
        .unwrap()
        .status
        .success()
    {
        assert!(Instant::now() < deadline, "dockerd did not start again");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
#[ignore = "restarts the Docker daemon; run by tests/long.sh"]
fn daemon_restart_mid_build_fails_clearly_then_recovers() {
    let _docker = docker_test();
    let workspace = Workspace::new();
    let script = workspace.write(
        "build.img",
        &format!(
            "debian_slim(\"3.11\").run_commands([\"echo {}\", \"sleep 30\"])\n",
            nonce()
        ),
    );
    let containers_before = all_containers();
    let child = imgscript()
        .arg("run")
        .arg(&script)
        .env("NO_COLOR", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while all_containers().len() == containers_before.len() {
        assert!(Instant::now() < deadline, "no build container appeared");
        std::thread::sleep(Duration::from_millis(100));
    }

    restart_dockerd();
    let failed = Run::from(child.wait_with_output().unwrap());

    assert_eq!(failed.code, 1, "{}", failed.stderr);
    assert!(
        failed.stderr.contains("Docker"),
        "the error should name the Docker daemon: {}",
        failed.stderr
    );
    assert!(!failed.stderr.contains("panicked"), "{}", failed.stderr);
    let again = run(imgscript().arg("run").arg(&script));
    assert_eq!(again.code, 0, "{}", again.stderr);
    for container in all_containers() {
        if !containers_before.contains(&container) {
            let _ = std::process::Command::new("docker")
                .args(["rm", "-f", &container])
                .output();
        }
    }
}

#[test]
#[ignore = "runs 8 builds at once; run by tests/long.sh"]
fn eight_concurrent_runs_build_each_shared_layer_once() {
    let _docker = docker_test();
    let workspace = Workspace::new();
    let nonce = nonce();
    // Every script shares the first two steps; pairs share the third.
    let scripts: Vec<std::path::PathBuf> = (0..8)
        .map(|number| {
            workspace.write(
                &format!("build-{number}.img"),
                &format!(
                    "debian_slim(\"3.11\")\n    .run_commands([\"echo shared {nonce} > /shared && sleep 2\"])\n    .env(#{{ SHARED: \"1\" }})\n    .run_commands([\"echo pair-{} >> /shared\"])\n    .run_commands([\"echo own-{number} >> /shared\"])\n",
                    number / 2
                ),
            )
        })
        .collect();

    let children: Vec<_> = scripts
        .iter()
        .map(|script| {
            imgscript()
                .args(["run", "--progress", "json"])
                .arg(script)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let results: Vec<Run> = children
        .into_iter()
        .map(|child| Run::from(child.wait_with_output().unwrap()))
        .collect();

    let mut started: std::collections::HashMap<String, usize> = Default::default();
    for (number, result) in results.iter().enumerate() {
        assert_eq!(result.code, 0, "run {number}: {}", result.stderr);
        let content = docker(&["run", "--rm", &image_id(result), "cat", "/shared"]);
        assert_eq!(
            content,
            format!("shared {nonce}\npair-{}\nown-{number}", number / 2)
        );
        for line in result.stderr.lines() {
            let event: serde_json::Value = serde_json::from_str(line).unwrap();
            if event["event"] == "step_started" {
                *started
                    .entry(event["step"].as_str().unwrap().to_string())
                    .or_default() += 1;
            }
        }
    }
    assert_eq!(started.len(), 1 + 1 + 4 + 8, "{started:#?}");
    for (step, count) in &started {
        assert_eq!(*count, 1, "{step} was built {count} times");
    }
}

/// A second Docker daemon whose data root is a small tmpfs, so that a
/// test can fill its disk without touching the main daemon's. Stopped and
/// unmounted on drop.
struct SmallDaemon {
    workspace: Workspace,
    host: String,
    bridge: String,
    daemon: std::process::Child,
}

/// Runs `ip ARGS…` and requires success.
fn ip(args: &[&str]) {
    let status = std::process::Command::new("ip")
        .args(args)
        .status()
        .unwrap();
    assert!(status.success(), "ip {args:?} failed");
}

impl SmallDaemon {
    /// Starts the daemon on a tmpfs of `megabytes` and loads the base image
    /// into it from the main daemon.
    fn start(megabytes: u32) -> SmallDaemon {
        let workspace = Workspace::new();
        let disk = workspace.path().join("disk");
        std::fs::create_dir(&disk).unwrap();
        let mounted = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={megabytes}m"), "tmpfs"])
            .arg(&disk)
            .status()
            .unwrap();
        assert!(
            mounted.success(),
            "cannot mount a tmpfs (this test needs root)"
        );

        // A bridge of its own: given none, dockerd deletes docker0, which
        // the main daemon uses.
        let bridge = format!("imgscript{}", std::process::id() % 100_000);
        ip(&["link", "add", "name", &bridge, "type", "bridge"]);
        ip(&["addr", "add", "172.31.254.1/24", "dev", &bridge]);
        ip(&["link", "set", &bridge, "up"]);

        let socket = workspace.path().join("docker.sock");
        let host = format!("unix://{}", socket.display());
        let log = std::fs::File::create(workspace.path().join("dockerd.log")).unwrap();
        let daemon = std::process::Command::new("dockerd")
            .arg("--data-root")
            .arg(disk.join("docker"))
            .arg("--exec-root")
            .arg(workspace.path().join("exec"))
            .arg("--pidfile")
            .arg(workspace.path().join("dockerd.pid"))
            .args(["-H", &host, "--bridge", &bridge])
            .args(["--iptables=false", "--ip-masq=false"])
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let small = SmallDaemon {
            workspace,
            host,
            bridge,
            daemon,
        };
        small.wait_until_up();
        small.load_base_image();
        small
    }

    fn wait_until_up(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !self
            .docker_command(&["info"])
            .output()
            .unwrap()
            .status
            .success()
        {
            assert!(Instant::now() < deadline, "the small dockerd did not start");
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn load_base_image(&self) {
        let mut save = std::process::Command::new("docker")
            .args(["save", BASE_IMAGE])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let loaded = self
            .docker_command(&["load", "--quiet"])
            .stdin(save.stdout.take().unwrap())
            .output()
            .unwrap();
        assert!(save.wait().unwrap().success());
        assert!(
            loaded.status.success(),
            "{}",
            String::from_utf8_lossy(&loaded.stderr)
        );
    }

    fn docker_command(&self, args: &[&str]) -> std::process::Command {
        let mut command = std::process::Command::new("docker");
        command.args(["-H", &self.host]).args(args);
        command
    }

    fn docker(&self, args: &[&str]) -> String {
        let output = self.docker_command(args).output().unwrap();
        assert!(output.status.success(), "docker {args:?} failed");
        String::from_utf8_lossy(&output.stdout).trim().to_string()
    }

    /// Returns an imgscript command talking to this daemon, with its own
    /// cache folder.
    fn imgscript(&self) -> std::process::Command {
        let mut command = imgscript();
        command
            .env("DOCKER_HOST", &self.host)
            .env("IMGSCRIPT_CACHE_DIR", self.workspace.path().join("cache"))
            .env("NO_COLOR", "1");
        command
    }

    /// Bytes free on the daemon's disk.
    fn free_bytes(&self) -> u64 {
        let output = std::process::Command::new("df")
            .args(["--block-size=1", "--output=avail"])
            .arg(self.workspace.path().join("disk"))
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&output.stdout);
        text.lines().last().unwrap().trim().parse().unwrap()
    }
}

impl Drop for SmallDaemon {
    fn drop(&mut self) {
        // SIGTERM, so that the daemon stops its containerd and unmounts
        // its layers before the disk goes.
        let _ = std::process::Command::new("kill")
            .arg(self.daemon.id().to_string())
            .status();
        let _ = self.daemon.wait();
        let _ = std::process::Command::new("umount")
            .arg("--lazy")
            .arg(self.workspace.path().join("disk"))
            .status();
        let _ = std::process::Command::new("ip")
            .args(["link", "delete", &self.bridge])
            .status();
    }
}

#[test]
#[ignore = "starts a second Docker daemon on a small disk; run by tests/long.sh"]
fn full_disk_fails_clearly_and_caches_nothing() {
    let _docker = docker_test();
    let daemon = SmallDaemon::start(400);
    let free_megabytes = daemon.free_bytes() / (1 << 20);
    let workspace = Workspace::new();

    // A file that fits on the disk once but not twice: the command
    // succeeds and the commit, which copies the container's changes into
    // a layer, runs out of space.
    let too_big_to_commit = workspace.write(
        "commit.img",
        &format!(
            "debian_slim(\"3.11\")\n    .run_commands([\"echo {} > /small\"])\n    .run_commands([\"head -c {}M /dev/zero > /big\"])\n",
            nonce(),
            free_megabytes * 3 / 5
        ),
    );
    // A file larger than the disk: the command itself fails.
    let too_big_to_write = workspace.write(
        "write.img",
        &format!(
            "debian_slim(\"3.11\")\n    .run_commands([\"echo {} > /small\"])\n    .run_commands([\"head -c {}M /dev/zero > /big\"])\n",
            nonce(),
            free_megabytes * 2
        ),
    );

    for script in [&too_big_to_commit, &too_big_to_write] {
        let failed = run(daemon.imgscript().arg("run").arg(script));

        assert_eq!(failed.code, 1, "{}", failed.stderr);
        assert!(
            failed.stderr.contains("the disk ran out of space"),
            "the error should say that the disk ran out of space: {}",
            failed.stderr
        );
        assert!(!failed.stderr.contains("panicked"), "{}", failed.stderr);
        assert!(
            failed.stderr.contains("steps: 1 built, 1 cached, 1 failed"),
            "{}",
            failed.stderr
        );

        // The step before is cached; the failed one is not, in the index
        // or in the daemon's store.
        let plan = run(daemon
            .imgscript()
            .args(["plan", "--format", "json"])
            .arg(script));
        assert_eq!(plan.code, 0, "{}", plan.stderr);
        let plan: serde_json::Value = serde_json::from_str(&plan.stdout).unwrap();
        let steps = plan["steps"].as_array().unwrap();
        assert_eq!(steps[1]["state"], "cached", "{plan:#}");
        assert_eq!(steps[2]["state"], "build", "{plan:#}");
        let failed_key = steps[2]["cache_key"].as_str().unwrap();
        let label = format!("label=dev.imgscript.key={failed_key}");
        assert_eq!(daemon.docker(&["images", "-q", "--filter", &label]), "");
        let listed = run(daemon.imgscript().args(["cache", "ls", "--format", "json"]));
        assert!(!listed.stdout.contains(failed_key), "{}", listed.stdout);
        assert_eq!(
            daemon.docker(&["ps", "-aq"]),
            "",
            "a build container was left"
        );
    }
}
