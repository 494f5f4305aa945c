//! Registration of the builder functions a script can call, and what they
//! share. The builders live by kind in `bases`, `run_steps`,
//! `config_steps`, `files` and `secrets`.
//!
//! Each function has a form without options and one with an options map as
//! its last argument. Arguments that take packages or commands are
//! registered as `Dynamic` so that a wrong type gets a message from
//! [`options`](super::options) instead of Rhai's generic "function not
//! found".

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rhai::{Engine, EvalAltResult, ImmutableString, NativeCallContext};

use super::modules::Sources;
use super::options::Options;
use super::CallError;
use crate::context::{ContextError, LocalContext};
use crate::image::{CallSite, CopyStep, Image, Layer, LocalMount, RunStep, ScriptSource, Step};
use crate::render::PipOptions;
use crate::staged_files::StagedFiles;

pub(super) type BuilderResult = Result<Image, Box<EvalAltResult>>;

/// Names of every builder function, for "did you mean" suggestions.
pub fn builder_names() -> impl Iterator<Item = &'static str> {
    crate::api_description::builders()
        .iter()
        .map(|builder| builder.name)
}

pub fn usage(name: &str) -> Option<&'static str> {
    crate::api_description::builder(name).map(|builder| builder.usage)
}

/// The script that builders are called from.
#[derive(Clone)]
pub(super) struct Builders {
    script: Arc<ScriptSource>,
    /// The script and its modules, to find the text a call is in.
    sources: Arc<Sources>,
}

impl Builders {
    pub(super) fn call_site(&self, context: &NativeCallContext, function: &str) -> CallSite {
        let position = context.call_position();
        let script = context
            .call_source()
            .and_then(|name| self.sources.get(name))
            .unwrap_or_else(|| Arc::clone(&self.script));
        CallSite {
            script,
            line: position.line().unwrap_or(1),
            column: position.position().unwrap_or(1),
            function: function.to_string(),
        }
    }
}

/// Resolves a local path from a script against the script's folder.
pub(super) fn local_path(site: &CallSite, written: &str) -> PathBuf {
    let path = Path::new(written);
    let base = if path.is_absolute() {
        PathBuf::new()
    } else {
        site.script.folder.clone()
    };
    // Drop `.` components so messages show `/project/src`, not `/project/./src`.
    base.join(
        path.components()
            .filter(|part| *part != std::path::Component::CurDir)
            .collect::<PathBuf>(),
    )
}

/// Registers a builder with and without a trailing options map. `$body`
/// receives the call site, the arguments and the checked [`Options`].
macro_rules! register {
    ($engine:expr, $builders:expr, $name:literal,
     |$site:ident, $options:ident $(, $arg:ident : $ty:ty)*| $body:expr) => {{
        let builders = $builders.clone();
        $engine.register_fn($name, move |context: NativeCallContext $(, $arg: $ty)*| -> BuilderResult {
            let $site = builders.call_site(&context, $name);
            let $options = Options::none($name);
            #[allow(clippy::redundant_closure_call)]
            (|| -> Result<Image, CallError> { $body })().map_err(|error| error.into_rhai(context.call_position()))
        });
        let builders = $builders.clone();
        $engine.register_fn($name, move |context: NativeCallContext $(, $arg: $ty)*, options: Map| -> BuilderResult {
            let $site = builders.call_site(&context, $name);
            #[allow(clippy::redundant_closure_call)]
            (|| -> Result<Image, CallError> {
                let allowed = crate::api_description::option_names($name);
                let $options = Options::parse($name, options, &allowed)?;
                $body
            })().map_err(|error| error.into_rhai(context.call_position()))
        });
    }};
}

pub fn register(engine: &mut Engine, script: Arc<ScriptSource>, sources: Arc<Sources>) {
    engine.register_type_with_name::<Image>("Image");
    let builders = Builders { script, sources };

    super::bases::register_bases(engine, &builders);
    super::run_steps::register_run_steps(engine, &builders);
    super::config_steps::register_config_steps(engine, &builders);
    super::files::register_local_files(engine, &builders);
    super::secrets::register(engine, &builders);
    super::files::register_copy_from(engine, &builders);
    super::bases::register_from_dockerfile(engine, &builders);
    super::run_steps::register_dockerfile_commands(engine, &builders);

    engine.register_fn(
        "tag",
        |context: NativeCallContext, image: Image, name: ImmutableString| -> BuilderResult {
            check_tag(&name).map_err(|error| error.into_rhai(context.call_position()))?;
            Ok(Image {
                tag: Some(name.to_string()),
                ..image
            })
        },
    );
}

pub(super) fn check_reference(reference: &str) -> Result<(), CallError> {
    if reference.is_empty() || reference.chars().any(char::is_whitespace) {
        return Err(CallError::new(format!("invalid image reference {reference:?}"))
            .with_label("invalid reference")
            .with_help("write a reference such as \"python:3.11-slim-bookworm\" or \"127.0.0.1:5000/team/app@sha256:…\""));
    }
    Ok(())
}

pub(super) fn check_tag(name: &str) -> Result<(), CallError> {
    crate::reference::validate_tag(name).map_err(|reason| {
        CallError::new(format!("invalid image name {name:?}: {reason}"))
            .with_label("invalid image name")
            .with_help("write a name such as \"myapp:latest\" or \"127.0.0.1:5000/team/app:v1\"")
    })
}

/// Rejects a step that runs commands or bakes files on top of an image with
/// `copy: false` files, because that step would not see them.
/// Checks a path inside the image: absolute, and without `..`, which the
/// engine refuses in an archive and which would hide where files go.
pub(super) fn check_image_path(role: &str, path: &str) -> Result<(), CallError> {
    if !path.starts_with('/') {
        return Err(
            CallError::new(format!("{role} must be absolute, found {path:?}"))
                .with_label("relative path in the image")
                .with_help(format!(
                    "write it from the root, such as \"/{}\"",
                    path.trim_start_matches("./")
                )),
        );
    }
    if path.split('/').any(|part| part == "..") {
        return Err(
            CallError::new(format!("{role} must not contain `..`, found {path:?}"))
                .with_label("`..` in a path in the image")
                .with_help("write the path from the root, without `..`"),
        );
    }
    Ok(())
}

pub(super) fn check_no_attached_files(image: &Image, function: &str) -> Result<(), CallError> {
    let Some(mount) = image.mounts.first() else {
        return Ok(());
    };
    Err(CallError::new(format!(
        "{function} cannot come after {} (line {}), which attaches {} only when a container starts",
        mount.call.function,
        mount.call.line,
        mount.context.display_source(),
    ))
    .with_label("this step would not see the attached files")
    .with_help(format!(
        "pass #{{ copy: true }} to {} on line {} so the files are baked into a layer, or move this step before it",
        mount.call.function, mount.call.line
    )))
}

pub(super) fn child(image: &Image, call: CallSite, step: Step, force_build: bool) -> Image {
    Image {
        layer: Arc::new(Layer {
            parent: Some(Arc::clone(&image.layer)),
            step,
            call,
            force_build,
        }),
        mounts: Arc::clone(&image.mounts),
        tag: None,
    }
}

pub(super) fn run_step(
    image: &Image,
    site: CallSite,
    summary: String,
    commands: Vec<String>,
    options: &Options,
) -> Result<Image, CallError> {
    run_step_with_files(image, site, summary, commands, None, None, options)
}

pub(super) fn run_step_with_files(
    image: &Image,
    site: CallSite,
    summary: String,
    commands: Vec<String>,
    staged_files: Option<Arc<StagedFiles>>,
    shown_commands: Option<Vec<String>>,
    options: &Options,
) -> Result<Image, CallError> {
    check_no_attached_files(image, &site.function)?;
    let force_build = options.bool("force_build")?;
    Ok(child(
        image,
        site,
        Step::Run(RunStep {
            summary,
            commands,
            secrets: options.secrets("secrets")?,
            gpu: options.gpu("gpu")?,
            staged_files,
            timeout_seconds: options.seconds("timeout")?,
            shown_commands,
            python_build: None,
        }),
        force_build,
    ))
}

/// Resolves a local file path from the script and checks that the file
/// exists; `what` names it in the message.
pub(super) fn existing_local_file(
    site: &CallSite,
    written: &str,
    what: &str,
) -> Result<PathBuf, CallError> {
    let path = local_path(site, written);
    if path.is_file() {
        return Ok(path);
    }
    Err(CallError::new(format!("{what} {} does not exist", path.display()))
        .with_label("local path not found")
        .with_help("relative paths are resolved against the script's folder, not the working directory"))
}

/// Collects files a step mounts while it runs; `main` names them in the
/// message when one cannot be read.
pub(super) fn stage_files(
    files: &std::collections::BTreeSet<PathBuf>,
    main: &Path,
) -> Result<Arc<StagedFiles>, CallError> {
    StagedFiles::new(files).map(Arc::new).map_err(|error| {
        CallError::new(format!("failed to read {}: {error}", main.display()))
            .with_label("unreadable file")
    })
}

pub(super) fn pip_options(options: &Options) -> Result<PipOptions, CallError> {
    let find_links = options.string("find_links")?;
    if let Some(location) = find_links
        .as_deref()
        .filter(|location| !location.starts_with('/') && !location.contains("://"))
    {
        return Err(CallError::new(format!(
            "find_links {location:?} is read inside the build container, where relative paths mean nothing"
        ))
        .with_label("relative find_links")
        .with_help(format!(
            "bake the folder in first, such as .add_local_dir({location:?}, \"/wheels\", #{{ copy: true }}), and pass find_links: \"/wheels\""
        )));
    }
    Ok(PipOptions {
        index_url: options.string("index_url")?,
        extra_index_url: options.string("extra_index_url")?,
        find_links,
        pre: options.bool("pre")?,
        extra_options: options.string("extra_options")?,
    })
}

pub(super) fn add_local(
    image: &Image,
    site: CallSite,
    context: LocalContext,
    destination: String,
    options: &Options,
) -> Result<Image, CallError> {
    check_image_path("the path in the image", &destination)?;
    let context = Arc::new(context);

    if options.bool("copy")? {
        check_no_attached_files(image, &site.function)?;
        let force_build = options.bool("force_build")?;
        return Ok(child(
            image,
            site,
            Step::Copy(CopyStep {
                context,
                destination,
            }),
            force_build,
        ));
    }

    let mut mounts = (*image.mounts).clone();
    mounts.push(LocalMount {
        context,
        destination,
        call: site,
    });
    Ok(Image {
        layer: Arc::clone(&image.layer),
        mounts: Arc::new(mounts),
        tag: None,
    })
}

pub(super) fn context_error(error: ContextError) -> CallError {
    let label = match &error {
        ContextError::Missing { .. } => "local path not found",
        ContextError::ExpectedFile { .. } | ContextError::ExpectedDir { .. } => {
            "wrong kind of path"
        }
        ContextError::InvalidPattern { .. } => "invalid ignore pattern",
        ContextError::Io { .. } => "unreadable local path",
    };
    let help = match &error {
        ContextError::Missing { .. } => Some(
            "relative paths are resolved against the script's folder, not the working directory",
        ),
        _ => None,
    };
    let call_error = CallError::new(error.to_string()).with_label(label);
    match help {
        Some(help) => call_error.with_help(help),
        None => call_error,
    }
}
