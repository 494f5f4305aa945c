//! `from_dockerfile`: Dockerfiles built by the engine, keyed by the
//! Dockerfile, its build args and its context after ignore rules.

mod common;

use common::*;

/// Writes a Dockerfile project: a context with a source file, an ignored
/// file and a `.dockerignore`.
fn dockerfile_project(workspace: &Workspace, nonce: &str) {
    workspace.write("ctx/src/app.txt", "app one\n");
    workspace.write("ctx/notes.md", "ignored by .dockerignore\n");
    workspace.write("ctx/.dockerignore", "notes.md\n");
    workspace.write(
        "ctx/Dockerfile",
        &format!(
            "FROM python:3.11-slim-bookworm\nARG GREETING=hi\nCOPY src/ /app/\nRUN echo \"$GREETING {nonce}\" > /app/greeting\nENV MODE=docker\nCMD [\"cat\", \"/app/greeting\"]\n"
        ),
    );
}

#[test]
fn dockerfile_builds_and_caches() {
    let _docker = docker_test();
    let workspace = Workspace::new();
    let nonce = nonce();
    dockerfile_project(&workspace, &nonce);
    let script = workspace.write(
        "build.img",
        "from_dockerfile(\"./ctx/Dockerfile\", #{ build_args: #{ GREETING: \"bonjour\" } })\n    .env(#{ AFTER: \"1\" })\n",
    );

    let first = build(&script, &[]);
    let id = image_id(&first);
    let shown = docker(&[
        "run",
        "--rm",
        &id,
        "sh",
        "-c",
        "cat /app/greeting; ls -A /app; echo $MODE $AFTER",
    ]);
    assert_eq!(
        shown,
        format!("bonjour {nonce}\napp.txt\ngreeting\ndocker 1")
    );
    assert_eq!(
        inspect(&id, "{{json .Config.Cmd}}"),
        r#"["cat","/app/greeting"]"#
    );
    assert_eq!(inspect(&id, "{{json .Config.Labels}}"), "null");

    let containers_before = all_containers();
    let since = daemon_time();
    let second = build(&script, &[]);
    let until = daemon_time();
    assert_eq!(image_id(&second), id);
    assert_eq!(events_between(&since, &until), Vec::<String>::new());
    assert_eq!(all_containers(), containers_before);

    // A file the .dockerignore leaves out changes nothing.
    workspace.write("ctx/notes.md", "edited\n");
    assert_eq!(image_id(&build(&script, &[])), id);

    // A context file, a build arg or the Dockerfile text rebuilds.
    workspace.write("ctx/src/app.txt", "app two\n");
    let edited = build(&script, &[]);
    assert!(
        edited
            .stderr
            .contains("from_dockerfile ./ctx/Dockerfile (building"),
        "{}",
        edited.stderr
    );
    assert_ne!(image_id(&edited), id);
    let content = docker(&["run", "--rm", &image_id(&edited), "cat", "/app/app.txt"]);
    assert_eq!(content, "app two");

    workspace.write(
        "build.img",
        "from_dockerfile(\"./ctx/Dockerfile\", #{ build_args: #{ GREETING: \"hallo\" } })\n    .env(#{ AFTER: \"1\" })\n",
    );
    let with_arg = build(&script, &[]);
    let greeting = docker(&["run", "--rm", &image_id(&with_arg)]);
    assert_eq!(greeting, format!("hallo {nonce}"));
}

#[test]
fn dockerfile_ignore_file_order_and_option() {
    let _docker = docker_test();
    let workspace = Workspace::new();
    let nonce = nonce();
    workspace.write(
        "docker/app.Dockerfile",
        &format!("FROM python:3.11-slim-bookworm\nCOPY . /ctx/\nRUN echo {nonce}\n"),
    );
    workspace.write("docker/app.Dockerfile.dockerignore", "b.txt\n");
    workspace.write("context/.dockerignore", "a.txt\n");
    workspace.write("context/a.txt", "a\n");
    workspace.write("context/b.txt", "b\n");

    // <Dockerfile>.dockerignore wins over the context's .dockerignore.
    let script = workspace.write(
        "build.img",
        "from_dockerfile(\"./docker/app.Dockerfile\", #{ context_dir: \"./context\" })\n",
    );
    let listing = docker(&[
        "run",
        "--rm",
        &image_id(&build(&script, &[])),
        "ls",
        "-A",
        "/ctx",
    ]);
    assert_eq!(listing, ".dockerignore\na.txt");

    // The ignore option replaces every ignore file.
    workspace.write(
        "build.img",
        "from_dockerfile(\"./docker/app.Dockerfile\", #{ context_dir: \"./context\", ignore: [\"*.txt\"] })\n",
    );
    let listing = docker(&[
        "run",
        "--rm",
        &image_id(&build(&script, &[])),
        "ls",
        "-A",
        "/ctx",
    ]);
    assert_eq!(listing, ".dockerignore");
}

#[test]
fn dockerfile_missing_copy_sources_listed() {
    let workspace = Workspace::new();
    workspace.write("ctx/present.txt", "x\n");
    workspace.write("ctx/secret.txt", "x\n");
    workspace.write("ctx/.dockerignore", "secret.txt\n");
    workspace.write(
        "ctx/Dockerfile",
        "FROM python:3.11-slim-bookworm\nCOPY present.txt secret.txt /x/\nCOPY missing/ /y/\nCOPY --from=other /etc /z\n",
    );
    let script = workspace.write("build.img", "from_dockerfile(\"./ctx/Dockerfile\")\n");
    let result = run(imgscript().arg("check").arg(&script).env("NO_COLOR", "1"));
    assert_eq!(result.code, 1, "{}", result.stderr);
    assert!(
        result
            .stderr
            .contains("the Dockerfile copies secret.txt, missing/ that the build context"),
        "{}",
        result.stderr
    );
}

#[test]
fn dockerfile_failure_shows_output() {
    let _docker = docker_test();
    let workspace = Workspace::new();
    workspace.write(
        "Dockerfile",
        &format!(
            "FROM python:3.11-slim-bookworm\nRUN echo {} && echo boom && exit 4\n",
            nonce()
        ),
    );
    let script = workspace.write("build.img", "from_dockerfile(\"./Dockerfile\")\n");
    let containers_before = all_containers();
    let result = run(imgscript().arg("run").arg(&script).env("NO_COLOR", "1"));
    assert_eq!(result.code, 1, "{}", result.stderr);
    assert!(
        result.stderr.contains("Dockerfile build failed:"),
        "{}",
        result.stderr
    );
    assert!(
        result.stderr.contains("returned a non-zero code: 4"),
        "{}",
        result.stderr
    );
    assert!(
        result.stderr.contains("this Dockerfile failed to build"),
        "{}",
        result.stderr
    );
    assert_eq!(all_containers(), containers_before);
}
