//! Local files on their way into images: archives streamed to the engine,
//! read errors while streaming, and the stat cache behind context digests.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::Stdio;

use common::*;
use sha2::{Digest, Sha256};

/// Writes `size` bytes that differ from file to file, without a random
/// number generator.
fn write_data_file(path: &Path, seed: u64, size: usize) {
    let mut content = Vec::with_capacity(size + 32);
    let mut block = Sha256::digest(seed.to_le_bytes());
    while content.len() < size {
        content.extend_from_slice(&block);
        block = Sha256::digest(block);
    }
    content.truncate(size);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, content).unwrap();
}

/// Returns `sha256sum`-style lines for every file under `root`, sorted by
/// path, with paths relative to `root`.
fn sha256_listing(root: &Path) -> String {
    let mut lines = Vec::new();
    let mut folders = vec![root.to_path_buf()];
    while let Some(folder) = folders.pop() {
        for item in std::fs::read_dir(&folder).unwrap() {
            let path = item.unwrap().path();
            if path.is_dir() {
                folders.push(path);
                continue;
            }
            let digest = hex::encode(Sha256::digest(std::fs::read(&path).unwrap()));
            let relative = path.strip_prefix(root).unwrap().display().to_string();
            lines.push(format!("{digest}  ./{relative}"));
        }
    }
    lines.sort_by(|a, b| a[66..].cmp(&b[66..]));
    lines.join("\n")
}

/// Returns the cache key of every step, from `imgscript plan --format json`.
fn plan_keys(script: &Path, cache_folder: &Path) -> Vec<String> {
    let result = run(imgscript()
        .args(["plan", "--format", "json"])
        .arg(script)
        .env("IMGSCRIPT_CACHE_DIR", cache_folder));
    assert_eq!(result.code, 0, "imgscript plan failed:\n{}", result.stderr);
    let plan: serde_json::Value = serde_json::from_str(&result.stdout).unwrap();
    plan["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|step| step["cache_key"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// Starts `imgscript run SCRIPT`, waits until the step whose description
/// contains `step` starts building, calls `meanwhile`, and returns the run.
fn run_changing_files_during(script: &Path, step: &str, meanwhile: impl FnOnce()) -> Run {
    let mut child = imgscript()
        .arg("run")
        .arg(script)
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("imgscript starts");
    let mut stderr = BufReader::new(child.stderr.take().unwrap());

    let mut seen = String::new();
    loop {
        let mut line = String::new();
        let read = stderr.read_line(&mut line).unwrap();
        seen.push_str(&line);
        assert!(read > 0, "the step never started:\n{seen}");
        if line.contains(step) && line.contains("(building") {
            break;
        }
    }
    meanwhile();

    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stderr, &mut rest).unwrap();
    let output = child.wait_with_output().unwrap();
    Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: seen + &rest,
    }
}

/// Replaces a regular file by a folder of the same name. Opening the
/// folder still works, and reading it fails, so the failure comes after
/// the archive has started.
fn replace_file_by_folder(path: &Path) {
    std::fs::remove_file(path).unwrap();
    std::fs::create_dir(path).unwrap();
}

/// Returns the containers that still exist from the image cached for `key`.
fn containers_from_cached_step(key: &str) -> String {
    let image = docker(&[
        "images",
        "--quiet",
        "--no-trunc",
        "--filter",
        &format!("label=dev.imgscript.key={key}"),
    ]);
    assert!(!image.is_empty(), "the step of key {key} was not cached");
    docker(&[
        "ps",
        "--all",
        "--quiet",
        "--filter",
        &format!("ancestor={image}"),
    ])
}

#[test]
fn large_context_arrives_intact() {
    let _docker = docker_test();
    let workspace = Workspace::new();
    let data = workspace.path().join("data");
    // Three files of 6 MiB and 300 small ones, so the stream takes many
    // chunks and files cross chunk boundaries.
    for index in 0..3 {
        write_data_file(&data.join(format!("big/{index}.bin")), index, 6 << 20);
    }
    for index in 0..300 {
        let size = 100 + (index as usize * 37) % 5000;
        write_data_file(&data.join(format!("small/{index}.txt")), 1000 + index, size);
    }
    let script = workspace.write(
        "build.img",
        &format!(
            "debian_slim(\"3.11\")\n    .env(#{{ NONCE: \"{}\" }})\n    .add_local_dir(\"./data\", \"/data\", #{{ copy: true }})\n",
            nonce()
        ),
    );

    let built = build(
        &script,
        &[
            "--",
            "sh",
            "-c",
            "cd /data && find . -type f | sort | xargs sha256sum",
        ],
    );

    assert_eq!(built.stdout.trim(), sha256_listing(&data));
}

#[test]
fn file_replaced_during_copy_is_named() {
    let _docker = docker_test();
    let workspace = Workspace::new();
    let data = workspace.path().join("data");
    write_data_file(&data.join("a.bin"), 1, 2 << 20);
    write_data_file(&data.join("b.bin"), 2, 2 << 20);
    let script = workspace.write(
        "build.img",
        &format!(
            "debian_slim(\"3.11\")\n    .run_commands([\"echo {} && sleep 3\"])\n    .add_local_dir(\"./data\", \"/data\", #{{ copy: true }})\n",
            nonce()
        ),
    );
    let keys = plan_keys(&script, &workspace.path().join("plan-cache"));

    let result = run_changing_files_during(&script, "run_commands", || {
        replace_file_by_folder(&data.join("b.bin"))
    });

    assert_eq!(result.code, 1, "{}", result.stderr);
    let named = format!("failed to read {}", data.join("b.bin").display());
    assert!(result.stderr.contains(&named), "{}", result.stderr);
    assert!(
        result.stderr.contains("Is a directory"),
        "{}",
        result.stderr
    );
    assert!(
        !result.stderr.contains("Docker Engine request failed"),
        "{}",
        result.stderr
    );
    assert_eq!(containers_from_cached_step(&keys[1]), "");
}

#[test]
fn file_replaced_during_dockerfile_context_is_named() {
    let _docker = docker_test();
    let workspace = Workspace::new();
    let context = workspace.path().join("context");
    write_data_file(&context.join("a.bin"), 3, 2 << 20);
    write_data_file(&context.join("b.bin"), 4, 2 << 20);
    let script = workspace.write(
        "build.img",
        &format!(
            "debian_slim(\"3.11\")\n    .run_commands([\"echo {} && sleep 3\"])\n    .dockerfile_commands([\"COPY . /context\"], #{{ context_dir: \"./context\" }})\n",
            nonce()
        ),
    );

    let result = run_changing_files_during(&script, "run_commands", || {
        replace_file_by_folder(&context.join("b.bin"))
    });

    assert_eq!(result.code, 1, "{}", result.stderr);
    let named = format!("failed to read {}", context.join("b.bin").display());
    assert!(result.stderr.contains(&named), "{}", result.stderr);
    assert!(
        !result.stderr.contains("Docker Engine request failed"),
        "{}",
        result.stderr
    );
}

#[test]
fn stat_cache_keeps_plan_keys() {
    let _docker = docker_test();
    let workspace = Workspace::new();
    let data = workspace.path().join("data");
    for index in 0..50 {
        write_data_file(&data.join(format!("{index}.txt")), index, 1000);
    }
    let script = workspace.write(
        "build.img",
        "debian_slim(\"3.11\").add_local_dir(\"./data\", \"/data\", #{ copy: true })\n",
    );
    let cache_folder = workspace.path().join("cache");

    let cold = plan_keys(&script, &cache_folder);
    let stat_caches: Vec<_> = std::fs::read_dir(cache_folder.join("stat-cache"))
        .unwrap()
        .map(|item| item.unwrap().path())
        .collect();
    let warm = plan_keys(&script, &cache_folder);
    std::fs::write(&stat_caches[0], "damaged").unwrap();
    let after_damage = plan_keys(&script, &cache_folder);
    write_data_file(&data.join("7.txt"), 700, 1000);
    let after_change = plan_keys(&script, &cache_folder);

    assert_eq!(stat_caches.len(), 1, "{stat_caches:?}");
    assert_eq!(warm, cold);
    assert_eq!(after_damage, cold);
    assert_ne!(after_change[1], cold[1], "a changed file kept the key");
}
