//! The lazy layer DAG that a script builds.
//!
//! Every builder call returns a new [`Image`] that points at its parent
//! through a shared pointer, so cloning an image or chaining a thousand steps
//! stays cheap. Nothing here talks to Docker: the planner and the executor
//! walk these nodes later.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use crate::context::LocalContext;
use crate::gpu::GpuRequest;
use crate::registry_auth::RegistryAuth;
use crate::secret::Secret;
use crate::staged_files::StagedFiles;

/// Location of the call that declared a step: the script, and the 1-based
/// line and column of the call.
#[derive(Debug, Clone)]
pub struct CallSite {
    pub script: Arc<ScriptSource>,
    pub line: usize,
    pub column: usize,
    /// The builder function that made the step, such as `apt_install`.
    pub function: String,
}

/// A script file and its text, shared by every call site in it.
#[derive(Debug)]
pub struct ScriptSource {
    pub path: PathBuf,
    /// Absolute folder of the script, which relative local paths in it
    /// resolve against.
    pub folder: PathBuf,
    pub text: String,
}

impl CallSite {
    /// Returns `file:line:column` for progress lines and plans.
    pub fn location(&self) -> String {
        format!(
            "{}:{}:{}",
            self.script.path.display(),
            self.line,
            self.column
        )
    }
}

/// An image value in a script: a layer node plus what is attached to it
/// without entering any layer.
#[derive(Debug, Clone)]
pub struct Image {
    pub layer: Arc<Layer>,
    /// Local files attached read-only when a container starts from this
    /// image (`copy: false`). They never enter a layer or a cache key.
    pub mounts: Arc<Vec<LocalMount>>,
    /// The name given by `tag(...)`.
    pub tag: Option<String>,
}

/// One node of the DAG: a step applied to a parent layer, or a base image.
#[derive(Debug)]
pub struct Layer {
    pub parent: Option<Arc<Layer>>,
    pub step: Step,
    pub call: CallSite,
    /// Set by the `force_build: true` option of the step.
    pub force_build: bool,
}

/// A step as the script declared it.
#[derive(Debug, Clone)]
pub enum Step {
    /// A base image from the local store, pulled when missing.
    Base(BaseImage),
    /// Shell commands run in order in one container, each with `/bin/sh -c`.
    Run(RunStep),
    /// A change to the image config; starts no container.
    Config(ConfigChange),
    /// Local files baked into a layer (`copy: true`).
    Copy(CopyStep),
    /// A path copied out of another image of the script (multi-stage builds).
    CopyFrom(CopyFromStep),
    /// An image built from a Dockerfile by the engine's build endpoint; like
    /// a base, it has no parent.
    Dockerfile(DockerfileStep),
    /// Dockerfile instructions applied to the parent image by the engine's
    /// build endpoint.
    DockerfileCommands(DockerfileCommandsStep),
}

#[derive(Debug, Clone)]
pub enum BaseImage {
    Registry {
        /// A reference such as `python:3.11-slim-bookworm` or
        /// `127.0.0.1:5000/team/app@sha256:…`.
        reference: String,
        /// The source of the credentials for pulling it.
        auth: RegistryAuth,
    },
    /// An image id of the local store.
    Id(String),
}

impl BaseImage {
    pub fn reference(&self) -> &str {
        match self {
            BaseImage::Registry { reference, .. } | BaseImage::Id(reference) => reference,
        }
    }
}

#[derive(Debug, Clone)]
pub struct RunStep {
    /// A short human summary for progress lines, such as `apt_install git curl`.
    pub summary: String,
    pub commands: Vec<String>,
    /// Secrets the commands see as environment variables.
    pub secrets: Vec<Secret>,
    /// GPUs the step's container gets.
    pub gpu: Option<GpuRequest>,
    /// Local files the commands read while they run, kept out of the layer.
    pub staged_files: Option<Arc<StagedFiles>>,
    /// How long the commands may run before the step fails.
    pub timeout_seconds: Option<u64>,
    /// What messages show for each command, where the command itself is
    /// generated and long (`run_function`'s Python loader, say).
    pub shown_commands: Option<Vec<String>>,
    /// A Python build the commands unpack, mounted at
    /// [`crate::python_build::ARCHIVE_PATH`] (the `add_python` option).
    pub python_build: Option<crate::python_build::PythonBuild>,
}

impl RunStep {
    /// Returns command `index` as messages show it: the shown form where
    /// there is one, else the command without the generated python check.
    pub fn shown_command(&self, index: usize) -> String {
        if let Some(shown) = self
            .shown_commands
            .as_ref()
            .and_then(|shown| shown.get(index))
        {
            return shown.clone();
        }
        let command = self
            .commands
            .get(index)
            .map(String::as_str)
            .unwrap_or_default();
        command
            .strip_prefix(crate::render::REQUIRE_PYTHON)
            .unwrap_or(command)
            .to_string()
    }
}

#[derive(Debug, Clone)]
pub enum ConfigChange {
    /// Variables added to (or replacing those in) the image's `Env`.
    Env(BTreeMap<String, String>),
    Workdir(String),
    Entrypoint(Vec<String>),
    Cmd(Vec<String>),
    /// The shell that the image's shell-form commands run with.
    Shell(Vec<String>),
    /// The user (name or uid, with an optional group) that later steps and
    /// containers run as.
    User(String),
}

#[derive(Debug, Clone)]
pub struct CopyStep {
    pub context: Arc<LocalContext>,
    /// Absolute path in the image that the context's root is placed at.
    pub destination: String,
}

#[derive(Debug, Clone)]
pub struct DockerfileStep {
    /// Absolute path of the Dockerfile on this machine.
    pub path: PathBuf,
    /// The path as written in the script, for messages.
    pub written_as: String,
    pub text: String,
    /// The build context, after its ignore rules.
    pub context: Arc<LocalContext>,
    pub build_args: BTreeMap<String, String>,
}

#[derive(Debug, Clone)]
pub struct DockerfileCommandsStep {
    pub lines: Vec<String>,
    /// The build context that `COPY` and `ADD` read, after its ignore rules.
    pub context: Option<Arc<LocalContext>>,
    pub build_args: BTreeMap<String, String>,
}

#[derive(Debug, Clone)]
pub struct CopyFromStep {
    /// The last layer of the image the path is copied from.
    pub source: Arc<Layer>,
    /// Absolute path in the source image.
    pub source_path: String,
    /// Absolute path in this image; one ending in `/` receives the source
    /// under its own name.
    pub destination: String,
}

/// A local file or folder bind-mounted read-only into containers started
/// from an image.
#[derive(Debug, Clone)]
pub struct LocalMount {
    pub context: Arc<LocalContext>,
    pub destination: String,
    pub call: CallSite,
}

impl Layer {
    /// Iterates from this layer up to its base.
    pub fn ancestry(self: &Arc<Self>) -> impl Iterator<Item = &Arc<Layer>> {
        std::iter::successors(Some(self), |layer| layer.parent.as_ref())
    }

    /// Returns the layers from the base down to this one.
    pub fn chain(self: &Arc<Self>) -> Vec<Arc<Layer>> {
        let mut chain: Vec<Arc<Layer>> = self.ancestry().cloned().collect();
        chain.reverse();
        chain
    }

    /// Returns one line describing the step, for plans and progress.
    pub fn describe(&self) -> String {
        match &self.step {
            Step::Base(base) => format!("{} {}", self.call.function, base.reference()),
            Step::Run(run) => run.summary.clone(),
            Step::Config(change) => match change {
                ConfigChange::Env(vars) => {
                    let names: Vec<&str> = vars.keys().map(String::as_str).collect();
                    format!("env {}", names.join(" "))
                }
                ConfigChange::Workdir(path) => format!("workdir {path}"),
                ConfigChange::Entrypoint(args) => format!("entrypoint {args:?}"),
                ConfigChange::Cmd(args) => format!("cmd {args:?}"),
                ConfigChange::Shell(args) => format!("shell {args:?}"),
                ConfigChange::User(user) => format!("user {user}"),
            },
            Step::Copy(copy) => format!(
                "{} {} -> {}",
                self.call.function,
                copy.context.display_source(),
                copy.destination
            ),
            Step::Dockerfile(dockerfile) => format!("from_dockerfile {}", dockerfile.written_as),
            Step::DockerfileCommands(commands) => {
                format!("dockerfile_commands {:?}", commands.lines)
            }
            Step::CopyFrom(copy) => format!(
                "copy_from {} (image of {}) -> {}",
                copy.source_path,
                copy.source.call.location(),
                copy.destination
            ),
        }
    }
}
