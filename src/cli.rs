//! The command line: `imgscript run`, `check`, `plan`, `repl`, `api` and
//! `lsp`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

use crate::backend::{daemon_address, BuildEnvironment, Docker};
use crate::cache_index::CacheIndex;
use crate::context::ContextKind;
use crate::diagnostics::Error;
use crate::execute::{Delivered, Executor};
use crate::explain::{explain, ManifestStore};
use crate::image::Image;
use crate::plan::{Plan, PlanOptions, Reason, Status};
use crate::script::{self, Target};

#[derive(Parser)]
#[command(
    name = "imgscript",
    version,
    about = "Build container images from Rhai scripts on a Docker Engine"
)]
struct Cli {
    /// Log decisions (cache hits and misses, base images, the socket) to
    /// stderr; RUST_LOG overrides the filter.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Build the script's target and print the image id; with `-- CMD`,
    /// run CMD in a container from it.
    Run {
        /// The `.img` script.
        file: PathBuf,
        /// Build only this entry of a script that ends with a map of images.
        #[arg(long)]
        target: Option<String>,
        /// Tag the built image with this name, replacing the script's tag.
        #[arg(long)]
        tag: Option<String>,
        /// Rebuild every step, as IMGSCRIPT_FORCE_BUILD=1 does.
        #[arg(long)]
        force_build: bool,
        /// Print the plan on stderr before building, with why each step
        /// builds, as `imgscript plan` shows it.
        #[arg(long)]
        explain: bool,
        /// How to report progress on stderr: plain lines, or one JSON object
        /// per event for tools.
        #[arg(long, value_enum, default_value = "auto")]
        progress: crate::progress::ProgressMode,
        /// How many steps may build at the same time [default: the number
        /// of CPUs].
        #[arg(short, long, env = "IMGSCRIPT_JOBS", value_name = "N",
              value_parser = clap::value_parser!(u16).range(1..))]
        jobs: Option<u16>,
        /// CA bundle mounted read-only into build containers, for builds
        /// behind a TLS-intercepting proxy.
        #[arg(long, env = "IMGSCRIPT_CA_BUNDLE", value_name = "PATH")]
        ca_bundle: Option<PathBuf>,
        /// Command to run in a container from the built image.
        #[arg(last = true, value_name = "CMD")]
        command: Vec<String>,
    },
    /// Evaluate the script and report errors; build nothing.
    Check {
        /// The `.img` script.
        file: PathBuf,
    },
    /// Print the layer DAG, each step marked cached, to build or to pull,
    /// as Graphviz DOT or a Mermaid flowchart.
    Graph {
        /// The `.img` script.
        file: PathBuf,
        /// Draw only this entry of a script that ends with a map of images.
        #[arg(long)]
        target: Option<String>,
        /// Graphviz DOT, or a Mermaid flowchart for Markdown pages.
        #[arg(long, value_enum, default_value = "dot")]
        format: crate::graph::GraphFormat,
    },
    /// Build an image an entry at a time, and look inside it; with FILE,
    /// the script's variables are in scope.
    Repl {
        /// A script to evaluate first.
        file: Option<PathBuf>,
    },
    /// Describe every builder function, method and option key; the REPL's
    /// help and the editor support read the same description.
    Api {
        /// Print JSON for tools instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Serve the Language Server Protocol on stdin and stdout, for editors.
    Lsp,
    /// List or remove the cached layers imgscript keeps in Docker's image
    /// store.
    Cache {
        #[command(subcommand)]
        command: CacheCommand,
    },
    /// Show each layer with its script location, whether it is cached, and
    /// why it would be built.
    Plan {
        /// The `.img` script.
        file: PathBuf,
        /// Plan only this entry of a script that ends with a map of images.
        #[arg(long)]
        target: Option<String>,
        /// Plan as if every step were forced.
        #[arg(long)]
        force_build: bool,
        /// Print lines for people, or one JSON document for tools.
        #[arg(long, value_enum, default_value = "text")]
        format: PlanFormat,
    },
}

#[derive(Subcommand)]
enum CacheCommand {
    /// List the cached layers with their size, creation and last use, most
    /// recently used first.
    Ls {
        /// Print a table for people, or one JSON document for tools.
        #[arg(long, value_enum, default_value = "text")]
        format: PlanFormat,
    },
    /// Remove cached layers that no tag names. Layers already in a
    /// delivered image stay in that image.
    Prune {
        /// Remove only layers unused for longer than this, such as 30m,
        /// 12h or 7days.
        #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
        older_than: Option<humantime::Duration>,
        /// Keep the most recently used layers up to this size, such as
        /// 500MB or 10GiB, and remove the rest.
        #[arg(long, value_name = "SIZE", value_parser = parse_size)]
        keep_storage: Option<bytesize::ByteSize>,
        /// List what would be removed, and remove nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum PlanFormat {
    Text,
    Json,
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.verbose);
    init_diagnostics();
    // A JSON progress stream stays JSON to its end, the error included.
    let json_errors = matches!(
        cli.command,
        Command::Run {
            progress: crate::progress::ProgressMode::Json,
            ..
        }
    );

    let result = match cli.command {
        Command::Check { file } => check(&file),
        Command::Repl { file } => crate::repl::run(file),
        Command::Api { json } => api(json),
        Command::Lsp => crate::lsp::serve(),
        command => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .map_err(|error| Error::docker("starting the async runtime", error))
            .and_then(|runtime| runtime.block_on(run_command(command))),
    };

    match result {
        Ok(code) => code,
        Err(error) => {
            let code = error.exit_code();
            if json_errors {
                eprintln!("{}", error_event(&error));
            } else {
                eprintln!("{:?}", miette::Report::new(error));
            }
            ExitCode::from(code)
        }
    }
}

/// Returns the JSON progress event of the error that ended a run.
fn error_event(error: &Error) -> serde_json::Value {
    use miette::Diagnostic;

    serde_json::json!({
        "event": "error",
        "message": error.to_string(),
        "help": error.help().map(|help| help.to_string()),
        "exit_code": error.exit_code(),
    })
}

fn init_logging(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "imgscript=debug",
        _ => "imgscript=trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

/// Wraps diagnostics at the terminal's width, and not at all when stderr is
/// a file or pipe, so addresses and paths in logs stay whole.
fn init_diagnostics() {
    use std::io::IsTerminal;

    let terminal = std::io::stderr().is_terminal();
    let _ = miette::set_hook(Box::new(move |_| {
        let options = miette::MietteHandlerOpts::new();
        let options = if terminal {
            options
        } else {
            options.wrap_lines(false)
        };
        Box::new(options.build())
    }));
}

fn check(file: &Path) -> Result<ExitCode, Error> {
    let target = script::evaluate_file(file)?;
    let count = match &target {
        Target::Single(_) => "1 image".to_string(),
        Target::Named(images) => format!("{} images", images.len()),
    };
    eprintln!("{}: ok ({count})", file.display());
    Ok(ExitCode::SUCCESS)
}

async fn run_command(command: Command) -> Result<ExitCode, Error> {
    match command {
        Command::Run {
            file,
            target,
            tag,
            force_build,
            explain,
            progress,
            jobs,
            ca_bundle,
            command,
        } => {
            let force_all = force_build || force_from_env()?;
            let request = RunRequest {
                target: target.as_deref(),
                tag: tag.as_deref(),
                force_all,
                explain,
                progress,
                jobs: jobs.map_or_else(crate::execute::default_jobs, usize::from),
                ca_bundle,
                command,
            };
            run(&file, request).await
        }
        Command::Plan {
            file,
            target,
            force_build,
            format,
        } => {
            let force_all = force_build || force_from_env()?;
            plan(&file, target.as_deref(), force_all, format).await
        }
        Command::Check { file } => check(&file),
        Command::Repl { file } => crate::repl::run(file),
        Command::Api { json } => api(json),
        Command::Lsp => crate::lsp::serve(),
        Command::Graph {
            file,
            target,
            format,
        } => graph(&file, target.as_deref(), format).await,
        Command::Cache {
            command: CacheCommand::Ls { format },
        } => crate::cache::ls_command(format == PlanFormat::Json).await,
        Command::Cache {
            command:
                CacheCommand::Prune {
                    older_than,
                    keep_storage,
                    dry_run,
                },
        } => {
            let rules = crate::cache::PruneRules {
                older_than: older_than.map(Into::into),
                keep_storage: keep_storage.map(|size| size.as_u64()),
            };
            crate::cache::prune_command(rules, dry_run).await
        }
    }
}

async fn graph(
    file: &Path,
    target: Option<&str>,
    format: crate::graph::GraphFormat,
) -> Result<ExitCode, Error> {
    let targets = select_targets(file, target)?;
    let docker = Docker::connect().await?;
    let cache_index = CacheIndex::for_daemon(&daemon_address());
    let options = PlanOptions {
        force_all: force_from_env()?,
        progress: None,
    };
    let plan = Plan::new(&docker, &cache_index, targets, options).await?;
    write_stdout(&crate::graph::render(&plan, format));
    Ok(ExitCode::SUCCESS)
}

fn api(json: bool) -> Result<ExitCode, Error> {
    use std::io::Write;

    // Writes fail quietly when the reader goes away, as with `| head`.
    let mut out = std::io::stdout().lock();
    if json {
        let description = serde_json::json!({
            "version": 1,
            "builders": crate::api_description::builders(),
            "stdlib_modules": crate::script::stdlib_names().collect::<Vec<_>>(),
        });
        let text = serde_json::to_string_pretty(&description).expect("the description serializes");
        let _ = writeln!(out, "{text}");
        return Ok(ExitCode::SUCCESS);
    }
    for builder in crate::api_description::builders() {
        let _ = writeln!(out, "{}\n    {}", builder.signature(), builder.description);
    }
    Ok(ExitCode::SUCCESS)
}

/// Reads IMGSCRIPT_FORCE_BUILD: 1, true, yes or on force every step; unset,
/// empty, 0, false, no or off do not; any other value is a usage error.
fn force_from_env() -> Result<bool, Error> {
    let Ok(value) = std::env::var("IMGSCRIPT_FORCE_BUILD") else {
        return Ok(false);
    };
    match value.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "" | "0" | "false" | "no" | "off" => Ok(false),
        _ => Err(Error::Usage {
            message: format!("invalid IMGSCRIPT_FORCE_BUILD value {value:?}"),
            help: "set it to 1 to rebuild every step, or 0 (or unset it) to use the cache".into(),
        }),
    }
}

fn select_targets(
    file: &Path,
    target: Option<&str>,
) -> Result<Vec<(Option<String>, Image)>, Error> {
    let evaluated = script::evaluate_file(file)?;
    let help = match &evaluated {
        Target::Single(_) => "a script that ends with a single image is built without --target",
        Target::Named(_) => "pass --target with one of the names in the script's final map",
    };
    evaluated.select(target).map_err(|message| Error::Usage {
        message,
        help: help.into(),
    })
}

/// The options of an `imgscript run` request, besides the script.
struct RunRequest<'a> {
    target: Option<&'a str>,
    tag: Option<&'a str>,
    force_all: bool,
    explain: bool,
    progress: crate::progress::ProgressMode,
    jobs: usize,
    ca_bundle: Option<PathBuf>,
    command: Vec<String>,
}

async fn run(file: &Path, request: RunRequest<'_>) -> Result<ExitCode, Error> {
    let RunRequest {
        target,
        tag,
        force_all,
        explain,
        progress,
        jobs,
        ca_bundle,
        command,
    } = request;
    let progress_mode = progress;
    let progress = progress.reporter();
    let started = std::time::Instant::now();
    if let Some(tag) = tag {
        crate::reference::validate_tag(tag).map_err(|reason| Error::Usage {
            message: format!("invalid --tag {tag:?}: {reason}"),
            help: "write a name such as myapp:latest or 127.0.0.1:5000/team/app:v1".into(),
        })?;
    }
    let targets = select_targets(file, target)?;
    if targets.len() > 1 {
        let needs_one = match (tag.is_some(), command.is_empty()) {
            (true, true) => Some("--tag needs"),
            (false, false) => Some("`-- CMD` needs"),
            (true, false) => Some("--tag and `-- CMD` need"),
            (false, true) => None,
        };
        if let Some(needs_one) = needs_one {
            return Err(Error::Usage {
                message: format!(
                    "{needs_one} a single image, but the script builds {}",
                    targets.len()
                ),
                help: "pick one with --target NAME".into(),
            });
        }
    }
    if let Some(bundle) = &ca_bundle {
        if !bundle.is_file() {
            return Err(Error::Usage {
                message: format!(
                    "CA bundle {} does not exist or is not a file",
                    bundle.display()
                ),
                help: "pass the path of a PEM file, such as /etc/ssl/certs/ca-certificates.crt"
                    .into(),
            });
        }
    }

    let docker = Docker::connect().await?;
    let cache_index = CacheIndex::for_daemon(&daemon_address());
    let environment = BuildEnvironment::from_host(
        ca_bundle.map(|path| std::path::absolute(&path).unwrap_or(path)),
    );

    let work = async {
        let options = PlanOptions {
            force_all,
            progress: Some(progress.as_ref()),
        };
        let plan = Plan::new(&docker, &cache_index, targets, options).await?;
        cache_index.touch(plan.cached_keys());
        match (explain, progress_mode) {
            (false, _) => {}
            // The JSON stream stays one object per line.
            (true, crate::progress::ProgressMode::Json) => {
                let mut event = plan_json(&plan);
                event["event"] = serde_json::json!("plan");
                eprintln!("{event}");
            }
            (true, _) => {
                eprint!("{}", render_plan(&plan));
                eprintln!("{}", plan_summary(&plan));
            }
        }
        let delivered = Executor::new(&docker, &cache_index, &environment, progress.as_ref())
            .jobs(jobs)
            .run(&plan, tag)
            .await?;
        progress.summary(started.elapsed());

        // With a command, stdout belongs to the container.
        if command.is_empty() {
            print_delivered(&delivered, &mut std::io::stdout());
            note_attached_files(&plan);
            return Ok(ExitCode::SUCCESS);
        }
        print_delivered(&delivered, &mut std::io::stderr());
        let image = &plan.targets[0].image;
        let (binds, _staging) = mount_binds(&docker, &delivered[0].image_id, image).await?;
        let status = docker
            .run_container(&delivered[0].image_id, &command, binds)
            .await?;
        Ok(ExitCode::from(status.clamp(0, 255) as u8))
    };

    tokio::select! {
        result = work => {
            if result.is_err() {
                docker.clean_up().await;
                progress.summary(started.elapsed());
            }
            result
        }
        signal = interrupted() => {
            docker.clean_up().await;
            progress.stopped(signal);
            progress.summary(started.elapsed());
            Err(Error::Interrupted { signal })
        }
    }
}

/// Parses a duration such as `30m`, `12h` or `7days`.
fn parse_duration(text: &str) -> Result<humantime::Duration, String> {
    text.parse().map_err(|_| {
        format!("{text:?} is not a duration; write a number and a unit, such as 30m, 12h or 7days")
    })
}

/// Parses a size such as `500MB` or `10GiB`.
/// A number alone is refused, not read as bytes: `--keep-storage 20`
/// would otherwise remove nearly every layer.
fn parse_size(text: &str) -> Result<bytesize::ByteSize, String> {
    let has_unit = text.trim().chars().last().is_some_and(char::is_alphabetic);
    has_unit
        .then(|| text.parse().ok())
        .flatten()
        .ok_or_else(|| {
            format!("{text:?} is not a size; write a number and a unit, such as 500MB or 10GiB")
        })
}

/// Waits for Ctrl-C (SIGINT), SIGTERM (what `timeout`, CI runners and
/// service managers send) or SIGHUP (the terminal closed), and returns its
/// number.
pub(crate) async fn interrupted() -> i32 {
    use tokio::signal::unix::{signal, SignalKind};

    let (Ok(mut terminate), Ok(mut hangup)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::hangup()),
    ) else {
        let _ = tokio::signal::ctrl_c().await;
        return 2;
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => 2,
        _ = terminate.recv() => 15,
        _ = hangup.recv() => 1,
    }
}

/// Warns that files added with `copy: false` are not in the delivered
/// images, which `docker run` or a push would otherwise reveal much later.
fn note_attached_files(plan: &Plan) {
    let attached: usize = plan
        .targets
        .iter()
        .map(|target| target.image.mounts.len())
        .sum();
    if attached > 0 {
        eprintln!(
            "note: {attached} local path{} added with copy: false {} not in the image; \
             `imgscript run FILE -- CMD` attaches {}, and copy: true bakes {} in",
            if attached == 1 { "" } else { "s" },
            if attached == 1 { "is" } else { "are" },
            if attached == 1 { "it" } else { "them" },
            if attached == 1 { "it" } else { "them" },
        );
    }
}

pub(crate) fn print_delivered(delivered: &[Delivered], out: &mut dyn std::io::Write) {
    for image in delivered {
        let mut line = String::new();
        if let Some(name) = &image.name {
            line.push_str(&format!("{name} "));
        }
        line.push_str(&image.image_id);
        if let Some(tag) = &image.tag {
            line.push_str(&format!(" {tag}"));
        }
        let _ = writeln!(out, "{line}");
    }
}

/// Returns the bind mounts for an image's `copy: false` files. A folder
/// whose ignore rules leave files out is mirrored into a temporary folder
/// of hard links (copies across file systems), returned so it lives as long
/// as the container. A file whose destination is a folder in the image is
/// mounted inside it, as a baked file would be.
pub(crate) async fn mount_binds(
    docker: &Docker,
    image_id: &str,
    image: &Image,
) -> Result<(Vec<String>, Vec<tempfile::TempDir>), Error> {
    let mut binds = Vec::new();
    let mut staging = Vec::new();
    for mount in image.mounts.iter() {
        let context = &mount.context;
        let mut destination = mount.destination.clone();
        if context.kind == ContextKind::File && docker.is_folder(image_id, &destination).await? {
            let name = context
                .source
                .file_name()
                .unwrap_or_default()
                .to_string_lossy();
            destination = format!("{}/{name}", destination.trim_end_matches('/'));
        }
        let source = if context.kind == ContextKind::Dir && context.excludes_any {
            let folder = stage_context(context)?;
            let path = folder.path().to_path_buf();
            staging.push(folder);
            path
        } else {
            context.source.clone()
        };
        binds.push(format!("{}:{destination}:ro", source.display()));
    }
    Ok((binds, staging))
}

fn stage_context(context: &crate::context::LocalContext) -> Result<tempfile::TempDir, Error> {
    use crate::context::EntryKind;

    let io_error = |path: &Path, error: std::io::Error| Error::Read {
        path: path.to_path_buf(),
        reason: error.to_string(),
    };
    let folder = tempfile::Builder::new()
        .prefix("imgscript-mount-")
        .tempdir()
        .map_err(|error| io_error(Path::new("/tmp"), error))?;

    for entry in context
        .entries
        .iter()
        .filter(|entry| !entry.relative.is_empty())
    {
        let target = folder.path().join(&entry.relative);
        let source = context.path_of(entry);
        let result = match &entry.kind {
            EntryKind::Dir => std::fs::create_dir_all(&target),
            EntryKind::Symlink { target: link } => std::os::unix::fs::symlink(link, &target),
            EntryKind::File => std::fs::hard_link(&source, &target)
                .or_else(|_| std::fs::copy(&source, &target).map(|_| ())),
        };
        result.map_err(|error| io_error(&source, error))?;
    }
    Ok(folder)
}

async fn plan(
    file: &Path,
    target: Option<&str>,
    force_all: bool,
    format: PlanFormat,
) -> Result<ExitCode, Error> {
    let targets = select_targets(file, target)?;
    let docker = Docker::connect().await?;
    let cache_index = CacheIndex::for_daemon(&daemon_address());
    let options = PlanOptions {
        force_all,
        progress: None,
    };
    let plan = Plan::new(&docker, &cache_index, targets, options).await?;
    match format {
        PlanFormat::Text => print_plan(&plan),
        PlanFormat::Json => write_stdout(&format!("{:#}\n", plan_json(&plan))),
    }
    Ok(ExitCode::SUCCESS)
}

/// Writes `text` to stdout, dropping it quietly when the reader has gone,
/// as with `| head`.
pub(crate) fn write_stdout(text: &str) {
    use std::io::Write;

    let _ = std::io::stdout().lock().write_all(text.as_bytes());
}

/// Renders the plan as JSON: each step with its location, state and reason, the
/// steps it depends on, and the targets.
fn plan_json(plan: &Plan) -> serde_json::Value {
    let explanations = explain(plan, &ManifestStore::open());
    let steps: Vec<serde_json::Value> = plan
        .steps
        .iter()
        .enumerate()
        .map(|(index, step)| {
            let changes = explanations[index]
                .as_ref()
                .map(|explanation| explanation.changes.clone())
                .unwrap_or_default();
            let (state, reason) = match &step.status {
                Status::Cached { .. } => ("cached", None),
                Status::Build(Reason::BaseMissing) => ("pull", Some(Reason::BaseMissing)),
                Status::Build(reason) => ("build", Some(*reason)),
            };
            serde_json::json!({
                "index": index,
                "step": step.layer.describe(),
                "location": step.layer.call.location(),
                "cache_key": step.key,
                "state": state,
                "reason": reason.map(Reason::describe),
                "changes": changes,
                "parent": step.parent,
                "copy_from": step.source,
            })
        })
        .collect();
    let targets: Vec<serde_json::Value> = plan
        .targets
        .iter()
        .map(|target| {
            serde_json::json!({
                "name": target.name,
                "step": target.step,
                "tag": target.image.tag,
            })
        })
        .collect();
    serde_json::json!({
        "steps": steps,
        "targets": targets,
        "to_build": plan.steps_to_build(),
    })
}

/// Prints each step of `plan` with its location and status on stdout, the
/// targets and attached files after them, and a summary on stderr.
pub(crate) fn print_plan(plan: &Plan) {
    // Written at once, and quietly dropped when the reader has gone.
    let _ = std::io::Write::write_all(&mut std::io::stdout(), render_plan(plan).as_bytes());
    eprintln!("{}", plan_summary(plan));
}

/// Renders each step with its location and status, and under each step to
/// build, why it builds; then the targets and attached files.
fn render_plan(plan: &Plan) -> String {
    use std::fmt::Write as _;

    let explanations = explain(plan, &ManifestStore::open());
    let mut out = String::new();
    for (step, explanation) in plan.steps.iter().zip(&explanations) {
        let status = match &step.status {
            Status::Cached { .. } => "cached".to_string(),
            Status::Build(Reason::BaseMissing) => "to pull: not in the local store".to_string(),
            Status::Build(reason) => format!("to build: {}", reason.describe()),
        };
        let _ = writeln!(
            out,
            "{}  {}  [{status}]",
            step.layer.call.location(),
            step.layer.describe()
        );
        let changes = explanation
            .iter()
            .flat_map(|explanation| &explanation.changes);
        let count = changes.clone().count();
        for (number, change) in changes.enumerate() {
            let branch = if number + 1 == count {
                "└─"
            } else {
                "├─"
            };
            let _ = writeln!(out, "    {branch} {change}");
        }
    }
    for target in &plan.targets {
        let name = target.name.as_deref().unwrap_or("image");
        let tag = target
            .image
            .tag
            .as_deref()
            .map(|tag| format!(" tagged {tag}"))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "target {name}: {}{tag}",
            plan.steps[target.step].layer.call.location()
        );
    }
    for target in &plan.targets {
        for mount in target.image.mounts.iter() {
            let _ = writeln!(
                out,
                "{}  attached when a container starts: {} -> {}",
                mount.call.location(),
                mount.context.display_source(),
                mount.destination
            );
        }
    }
    out
}

/// Counts the steps to build and the base images to pull.
fn plan_summary(plan: &Plan) -> String {
    let missing_bases = plan
        .steps
        .iter()
        .filter(|step| step.status == Status::Build(Reason::BaseMissing))
        .count();
    let mut summary = format!(
        "{} of {} steps to build",
        plan.steps_to_build(),
        plan.steps.len()
    );
    match missing_bases {
        0 => {}
        1 => summary.push_str(", 1 base image to pull"),
        count => summary.push_str(&format!(", {count} base images to pull")),
    }
    summary
}
