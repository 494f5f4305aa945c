//! micromamba() and micromamba_install. No registry this machine reaches
//! ships a micromamba binary, so these tests cover the plan, the checks and
//! the step's error on an image without micromamba. The golden tests in
//! src/render.rs fix the commands.

mod common;

use common::*;

#[test]
fn micromamba_plans_base_path_and_python() {
    let workspace = Workspace::new();
    workspace.write("environment.yml", "dependencies:\n  - numpy\n");
    let script = workspace.write(
        "build.img",
        r#"micromamba("3.11")
    .micromamba_install(["scipy", "numpy"], #{ channels: ["conda-forge"] })
    .micromamba_install([], #{ spec_file: "./environment.yml" })"#,
    );
    let result = run(imgscript().arg("check").arg(&script).env("NO_COLOR", "1"));
    assert_eq!(result.code, 0, "{}", result.stderr);

    let _docker = docker_test();
    let plan = run(imgscript().arg("plan").arg(&script).env("NO_COLOR", "1"));
    assert_eq!(plan.code, 0, "{}", plan.stderr);
    let shown = format!("{}{}", plan.stdout, plan.stderr);
    for line in [
        "mambaorg/micromamba:2.0.5",
        "env PATH",
        "micromamba python=3.11",
        "micromamba_install scipy numpy",
        "micromamba_install --file ./environment.yml",
    ] {
        assert!(shown.contains(line), "no {line:?} in:\n{shown}");
    }
}

#[test]
fn micromamba_install_without_micromamba_names_the_gap() {
    let _docker = docker_test();
    let workspace = Workspace::new();
    let script = workspace.write(
        "build.img",
        &format!(
            "debian_slim(\"3.11\").env(#{{ NONCE: \"{}\" }}).micromamba_install([\"numpy\"])\n",
            nonce()
        ),
    );
    let result = run(imgscript().arg("run").arg(&script).env("NO_COLOR", "1"));
    assert_eq!(result.code, 1, "{}", result.stderr);
    assert!(
        result.stderr.contains(
            "this step needs micromamba, which the image lacks; start the image with micromamba()"
        ),
        "{}",
        result.stderr
    );
}

#[test]
fn micromamba_install_checks_its_arguments() {
    let workspace = Workspace::new();
    let check = |body: &str| {
        let script = workspace.write("build.img", body);
        run(imgscript().arg("check").arg(&script).env("NO_COLOR", "1"))
    };

    let nothing = check(r#"micromamba().micromamba_install([])"#);
    assert_eq!(nothing.code, 1, "{}", nothing.stderr);

    let missing = check(r#"micromamba().micromamba_install([], #{ spec_file: "./absent.yml" })"#);
    assert_eq!(missing.code, 1, "{}", missing.stderr);
    assert!(missing.stderr.contains("absent.yml"), "{}", missing.stderr);

    let version = check(r#"micromamba(3.11)"#);
    assert_eq!(version.code, 1, "{}", version.stderr);
    assert!(
        version.stderr.contains("invalid Python version"),
        "{}",
        version.stderr
    );
}
