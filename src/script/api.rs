//! The builder functions a script can call.
//!
//! Each function has a form without options and one with an options map as
//! its last argument. Arguments that take packages or commands are
//! registered as `Dynamic` so that a wrong type gets a message from
//! [`options`](super::options) instead of Rhai's generic "function not
//! found".

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rhai::{Dynamic, Engine, EvalAltResult, ImmutableString, Map, NativeCallContext};

use super::modules::Sources;
use super::options::{argv, required_list, Options};
use super::CallError;
use crate::context::{ContextError, LocalContext};
use crate::image::{
    BaseImage, CallSite, ConfigChange, CopyFromStep, CopyStep, DockerfileCommandsStep,
    DockerfileStep, Image, Layer, LocalMount, RunStep, ScriptSource, Step,
};
use crate::render::{self, PipOptions};
use crate::staged_files::StagedFiles;

type BuilderResult = Result<Image, Box<EvalAltResult>>;

/// Usage of each builder, for "wrong arguments" messages.
const USAGE: &[(&str, &str)] = &[
    ("debian_slim", "`debian_slim()` or `debian_slim(\"3.11\")`, with an optional options map"),
    ("from_registry", "`from_registry(\"name:tag\")`, with an optional options map"),
    ("from_dockerfile", "`from_dockerfile(\"./Dockerfile\")`, with an optional options map"),
    ("from_id", "`from_id(\"sha256:…\")`, with an optional options map"),
    ("apt_install", "`image.apt_install([\"git\", \"curl\"])`, with an optional options map"),
    ("pip_install", "`image.pip_install([\"requests==2.32.3\"])`, with an optional options map"),
    ("uv_pip_install", "`image.uv_pip_install([\"requests==2.32.3\"])`, with an optional options map"),
    ("pip_install_from_requirements", "`image.pip_install_from_requirements(\"./requirements.txt\")`, with an optional options map"),
    ("pip_install_from_pyproject", "`image.pip_install_from_pyproject(\"./pyproject.toml\")`, with an optional options map"),
    ("run_function", "`image.run_function(\"./download.py\", \"download_weights\")`, with an optional options map"),
    ("uv_sync", "`image.uv_sync(#{ uv_project_dir: \"./\" })`"),
    ("run_commands", "`image.run_commands([\"echo hello\"])`, with an optional options map"),
    ("env", "`image.env(#{ NAME: \"value\" })`, with an optional options map"),
    ("workdir", "`image.workdir(\"/app\")`, with an optional options map"),
    ("entrypoint", "`image.entrypoint([\"python\"])`, with an optional options map"),
    ("cmd", "`image.cmd([\"python\", \"main.py\"])`, with an optional options map"),
    ("add_local_file", "`image.add_local_file(\"./config.toml\", \"/etc/app/config.toml\")`, with an optional options map"),
    ("add_local_dir", "`image.add_local_dir(\"./src\", \"/app\")`, with an optional options map"),
    ("user", "`image.user(\"app\")`, with an optional options map"),
    ("copy_from", "`image.copy_from(builder, \"/src/dist\", \"/app/dist\")`, with an optional options map"),
    ("add_local_python_source", "`image.add_local_python_source([\"mypackage\"])`, with an optional options map"),
    ("dockerfile_commands", "`image.dockerfile_commands([\"RUN echo hello\"])`, with an optional options map"),
    ("shell", "`image.shell([\"/bin/bash\", \"-c\"])`, with an optional options map"),
    ("tag", "`image.tag(\"myapp:latest\")`"),
    ("secret", "`secret(\"name\")`, which reads ~/.config/imgscript/secrets/name.env"),
    ("secret_from_dotenv", "`secret_from_dotenv(\"./.env\")`"),
    ("secret_from_env", "`secret_from_env([\"HF_TOKEN\"])`"),
    ("secret_from_map", "`secret_from_map(#{ TOKEN: \"value\" })`"),
];

/// Names of every builder function, for "did you mean" suggestions.
pub fn builder_names() -> impl Iterator<Item = &'static str> {
    USAGE.iter().map(|(name, _)| *name)
}

pub fn usage(name: &str) -> Option<&'static str> {
    USAGE
        .iter()
        .find(|(known, _)| *known == name)
        .map(|(_, usage)| *usage)
}

const PIP_OPTIONS: &[&str] = &[
    "index_url",
    "extra_index_url",
    "find_links",
    "pre",
    "extra_options",
    "secrets",
    "gpu",
    "force_build",
];

const PYPROJECT_OPTIONS: &[&str] = &[
    "optional_dependencies",
    "index_url",
    "extra_index_url",
    "find_links",
    "pre",
    "extra_options",
    "secrets",
    "gpu",
    "force_build",
];

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
    ($engine:expr, $builders:expr, $name:literal, $allowed:expr,
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
                let $options = Options::parse($name, options, $allowed)?;
                $body
            })().map_err(|error| error.into_rhai(context.call_position()))
        });
    }};
}

pub fn register(engine: &mut Engine, script: Arc<ScriptSource>, sources: Arc<Sources>) {
    engine.register_type_with_name::<Image>("Image");
    let builders = Builders { script, sources };

    register_bases(engine, &builders);
    register_run_steps(engine, &builders);
    register_config_steps(engine, &builders);
    register_local_files(engine, &builders);
    super::secrets::register(engine, &builders);
    register_copy_from(engine, &builders);
    register_from_dockerfile(engine, &builders);
    register_dockerfile_commands(engine, &builders);

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

fn register_bases(engine: &mut Engine, builders: &Builders) {
    let default_slim = builders.clone();
    engine.register_fn(
        "debian_slim",
        move |context: NativeCallContext| -> BuilderResult {
            let site = default_slim.call_site(&context, "debian_slim");
            Ok(base(site, debian_slim_reference("3.12"), false))
        },
    );
    register!(
        engine,
        builders,
        "debian_slim",
        &["force_build"],
        |site, options, version: Dynamic| {
            let version = python_version(&version)?;
            Ok(base(
                site,
                debian_slim_reference(&version),
                options.bool("force_build")?,
            ))
        }
    );
    register!(
        engine,
        builders,
        "from_registry",
        &["secret", "force_build"],
        |site, options, reference: ImmutableString| {
            check_reference(&reference)?;
            let secret = options.secrets("secret")?;
            if secret.len() > 1 {
                return Err(CallError::new("from_registry takes one secret, holding REGISTRY_USERNAME and REGISTRY_PASSWORD")
                    .with_label("more than one secret"));
            }
            let base_image = BaseImage::Registry {
                reference: reference.to_string(),
                secret: secret.into_iter().next(),
            };
            Ok(base(site, base_image, options.bool("force_build")?))
        }
    );
    register!(
        engine,
        builders,
        "from_id",
        &["force_build"],
        |site, options, id: ImmutableString| {
            if id.trim().is_empty() {
                return Err(
                    CallError::new("from_id needs an image id, such as \"sha256:…\"")
                        .with_label("empty id"),
                );
            }
            Ok(base(
                site,
                BaseImage::Id(id.to_string()),
                options.bool("force_build")?,
            ))
        }
    );
}

fn debian_slim_reference(version: &str) -> BaseImage {
    BaseImage::Registry {
        reference: format!("python:{version}-slim-bookworm"),
        secret: None,
    }
}

fn base(call: CallSite, base: BaseImage, force_build: bool) -> Image {
    Image {
        layer: Arc::new(Layer {
            parent: None,
            step: Step::Base(base),
            call,
            force_build,
        }),
        mounts: Arc::new(Vec::new()),
        tag: None,
    }
}

/// Accepts versions of the form `3.N`.
fn python_version(value: &Dynamic) -> Result<String, CallError> {
    let invalid = |shown: String| {
        CallError::new(format!(
            "invalid Python version {shown}: expected a string of the form \"3.N\""
        ))
        .with_label("invalid Python version")
        .with_help("write the version as a string, such as debian_slim(\"3.11\")")
    };
    if !value.is_string() {
        return Err(invalid(format!(
            "{value} ({})",
            super::options::friendly_type(value.type_name())
        )));
    }
    let version = value.to_string();
    let valid = version
        .strip_prefix("3.")
        .is_some_and(|minor| !minor.is_empty() && minor.chars().all(|c| c.is_ascii_digit()));
    if valid {
        Ok(version)
    } else {
        Err(invalid(format!("{version:?}")))
    }
}

fn check_reference(reference: &str) -> Result<(), CallError> {
    if reference.is_empty() || reference.chars().any(char::is_whitespace) {
        return Err(CallError::new(format!("invalid image reference {reference:?}"))
            .with_label("invalid reference")
            .with_help("write a reference such as \"python:3.11-slim-bookworm\" or \"127.0.0.1:5000/team/app@sha256:…\""));
    }
    Ok(())
}

fn check_tag(name: &str) -> Result<(), CallError> {
    crate::reference::validate_tag(name).map_err(|reason| {
        CallError::new(format!("invalid image name {name:?}: {reason}"))
            .with_label("invalid image name")
            .with_help("write a name such as \"myapp:latest\" or \"127.0.0.1:5000/team/app:v1\"")
    })
}

/// Rejects a step that runs commands or bakes files on top of an image with
/// `copy: false` files, because that step would not see them.
fn check_no_attached_files(image: &Image, function: &str) -> Result<(), CallError> {
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

fn child(image: &Image, call: CallSite, step: Step, force_build: bool) -> Image {
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

fn run_step(
    image: &Image,
    site: CallSite,
    summary: String,
    commands: Vec<String>,
    options: &Options,
) -> Result<Image, CallError> {
    run_step_with_files(image, site, summary, commands, None, None, options)
}

fn run_step_with_files(
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
        }),
        force_build,
    ))
}

/// Resolves a local file path from the script and checks that the file
/// exists; `what` names it in the message.
fn existing_local_file(site: &CallSite, written: &str, what: &str) -> Result<PathBuf, CallError> {
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
fn stage_files(
    files: &std::collections::BTreeSet<PathBuf>,
    main: &Path,
) -> Result<Arc<StagedFiles>, CallError> {
    StagedFiles::new(files).map(Arc::new).map_err(|error| {
        CallError::new(format!("failed to read {}: {error}", main.display()))
            .with_label("unreadable file")
    })
}

/// Reads `[project] dependencies` of a pyproject.toml, plus the named
/// groups of `[project.optional-dependencies]`.
fn pyproject_dependencies(path: &Path, groups: &[String]) -> Result<Vec<String>, CallError> {
    let text = std::fs::read_to_string(path).map_err(|error| {
        CallError::new(format!("failed to read {}: {error}", path.display()))
            .with_label("unreadable pyproject.toml")
            .with_help("relative paths are resolved against the script's folder, not the working directory")
    })?;
    let document: toml::Table = text.parse().map_err(|error| {
        CallError::new(format!("invalid TOML in {}: {error}", path.display()))
            .with_label("invalid pyproject.toml")
    })?;
    let invalid = |what: &str| {
        CallError::new(format!("{} has no valid {what}", path.display()))
            .with_label("invalid pyproject.toml")
            .with_help("declare dependencies as a list of strings in the [project] table, as PEP 621 describes")
    };
    let project = document
        .get("project")
        .and_then(toml::Value::as_table)
        .ok_or_else(|| invalid("[project] table"))?;
    let strings = |value: Option<&toml::Value>, what: &str| -> Result<Vec<String>, CallError> {
        match value {
            None => Ok(Vec::new()),
            Some(value) => value
                .as_array()
                .and_then(|items| {
                    items
                        .iter()
                        .map(|item| item.as_str().map(str::to_string))
                        .collect()
                })
                .ok_or_else(|| invalid(what)),
        }
    };

    let mut packages = strings(project.get("dependencies"), "dependencies list")?;
    let optional = project
        .get("optional-dependencies")
        .and_then(toml::Value::as_table);
    for group in groups {
        let Some(group_value) = optional.and_then(|table| table.get(group)) else {
            let known: Vec<&String> = optional
                .map(|table| table.keys().collect())
                .unwrap_or_default();
            return Err(CallError::new(format!(
                "{} has no optional dependency group {group:?} (it has: {})",
                path.display(),
                known
                    .iter()
                    .map(|name| name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
            .with_label("unknown group"));
        };
        packages.extend(strings(Some(group_value), "optional-dependencies group")?);
    }
    Ok(packages)
}

fn pip_options(options: &Options) -> Result<PipOptions, CallError> {
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

fn register_run_steps(engine: &mut Engine, builders: &Builders) {
    register!(
        engine,
        builders,
        "uv_sync",
        &[
            "uv_project_dir",
            "extras",
            "groups",
            "frozen",
            "extra_options",
            "secrets",
            "gpu",
            "force_build"
        ],
        |site, options, image: Image| {
            let written = options
                .string("uv_project_dir")?
                .unwrap_or_else(|| ".".to_string());
            let project = local_path(&site, &written);
            let pyproject = project.join("pyproject.toml");
            if !pyproject.is_file() {
                return Err(CallError::new(format!("uv project {} has no pyproject.toml", project.display()))
                    .with_label("not a uv project")
                    .with_help("point uv_project_dir at the folder that holds pyproject.toml; relative paths start at the script's folder"));
            }
            let lock = project.join("uv.lock");
            let mut files = std::collections::BTreeSet::from([pyproject.clone()]);
            for optional in [lock.clone(), project.join(".python-version")] {
                if optional.is_file() {
                    files.insert(optional);
                }
            }
            let staged = stage_files(&files, &pyproject)?;

            let frozen = !options.contains("frozen") || options.bool("frozen")?;
            let sync_options = render::UvSyncOptions {
                extras: options.strings("extras")?,
                groups: options.strings("groups")?,
                frozen: frozen && lock.is_file(),
                extra_options: options.string("extra_options")?,
            };
            let command = render::uv_sync(crate::staged_files::STAGED_FILES_PATH, &sync_options);
            let summary = format!("uv_sync {written}");
            run_step_with_files(
                &image,
                site,
                summary,
                vec![command],
                Some(staged),
                None,
                &options,
            )
        }
    );
    register!(
        engine,
        builders,
        "run_function",
        &["args", "kwargs", "secrets", "gpu", "timeout", "force_build"],
        |site, options, image: Image, file: ImmutableString, function: ImmutableString| {
            let path = existing_local_file(&site, &file, "Python file")?;
            let is_identifier = function.starts_with(|c: char| c.is_alphabetic() || c == '_')
                && function.chars().all(|c| c.is_alphanumeric() || c == '_');
            if !is_identifier {
                return Err(
                    CallError::new(format!("invalid Python function name {function:?}"))
                        .with_label("invalid function name"),
                );
            }
            let args = options.json("args", serde_json::Value::Array(Vec::new()))?;
            let kwargs =
                options.json("kwargs", serde_json::Value::Object(serde_json::Map::new()))?;
            if !args.is_array() || !kwargs.is_object() {
                return Err(CallError::new(
                    "run_function takes `args` as an array and `kwargs` as a map",
                )
                .with_label("wrong option type"));
            }

            let staged = stage_files(&std::collections::BTreeSet::from([path.clone()]), &path)?;
            let call = serde_json::json!({ "args": args, "kwargs": kwargs }).to_string();
            let command = render::run_function(&staged.container_path(&path), &function, &call);
            let summary = format!("run_function {file} {function}");
            run_step_with_files(
                &image,
                site,
                summary,
                vec![command],
                Some(staged),
                Some(vec![format!("{function}(*args, **kwargs) from {file}")]),
                &options,
            )
        }
    );
    register!(
        engine,
        builders,
        "pip_install_from_requirements",
        PIP_OPTIONS,
        |site, options, image: Image, path: ImmutableString| {
            let requirements = existing_local_file(&site, &path, "requirements file")?;
            let files = crate::staged_files::requirements_with_includes(&requirements)
                .map_err(|reason| CallError::new(reason).with_label("invalid requirements file"))?;
            let staged = stage_files(&files, &requirements)?;
            let command = render::pip_install_requirements(
                &staged.container_path(&requirements),
                &pip_options(&options)?,
            );
            let summary = format!("pip_install_from_requirements {path}");
            run_step_with_files(
                &image,
                site,
                summary,
                vec![command],
                Some(staged),
                None,
                &options,
            )
        }
    );
    register!(
        engine,
        builders,
        "pip_install_from_pyproject",
        PYPROJECT_OPTIONS,
        |site, options, image: Image, path: ImmutableString| {
            let pyproject = local_path(&site, &path);
            let groups = options.strings("optional_dependencies")?;
            let packages = pyproject_dependencies(&pyproject, &groups)?;
            if packages.is_empty() {
                return Err(CallError::new(format!(
                    "{} declares no dependencies to install",
                    pyproject.display()
                ))
                .with_label("nothing to install"));
            }
            let command = render::pip_install(&packages, &pip_options(&options)?);
            run_step(
                &image,
                site,
                format!("pip_install_from_pyproject {path}"),
                vec![command],
                &options,
            )
        }
    );
    register!(
        engine,
        builders,
        "apt_install",
        &["install_recommends", "secrets", "gpu", "force_build"],
        |site, options, image: Image, packages: Dynamic| {
            let packages = required_list("apt_install", "packages", &packages)?;
            let command = render::apt_install(&packages, options.bool("install_recommends")?);
            run_step(
                &image,
                site,
                format!("apt_install {}", packages.join(" ")),
                vec![command],
                &options,
            )
        }
    );
    register!(
        engine,
        builders,
        "pip_install",
        PIP_OPTIONS,
        |site, options, image: Image, packages: Dynamic| {
            let packages = required_list("pip_install", "packages", &packages)?;
            let command = render::pip_install(&packages, &pip_options(&options)?);
            run_step(
                &image,
                site,
                format!("pip_install {}", packages.join(" ")),
                vec![command],
                &options,
            )
        }
    );
    register!(
        engine,
        builders,
        "uv_pip_install",
        PIP_OPTIONS,
        |site, options, image: Image, packages: Dynamic| {
            let packages = required_list("uv_pip_install", "packages", &packages)?;
            let command = render::uv_pip_install(&packages, &pip_options(&options)?);
            run_step(
                &image,
                site,
                format!("uv_pip_install {}", packages.join(" ")),
                vec![command],
                &options,
            )
        }
    );
    register!(
        engine,
        builders,
        "run_commands",
        &["secrets", "gpu", "force_build"],
        |site, options, image: Image, commands: Dynamic| {
            let commands = required_list("run_commands", "commands", &commands)?;
            // Each command runs in its own shell, so the summary lists them apart.
            let summary = format!("run_commands {commands:?}");
            run_step(&image, site, summary, commands, &options)
        }
    );
}

fn register_config_steps(engine: &mut Engine, builders: &Builders) {
    register!(
        engine,
        builders,
        "env",
        &["force_build"],
        |site, options, image: Image, vars: Map| {
            let mut env = BTreeMap::new();
            for (name, value) in vars {
                if name.is_empty() || name.contains('=') {
                    return Err(CallError::new(format!(
                        "invalid environment variable name {name:?}"
                    ))
                    .with_label("invalid name"));
                }
                let value = match value {
                    value if value.is_string() => value.to_string(),
                    value if value.is_int() || value.is_float() || value.is_bool() => {
                        value.to_string()
                    }
                    other => {
                        return Err(CallError::new(format!(
                            "environment variable {name} must be a string, found {}",
                            super::options::friendly_type(other.type_name())
                        ))
                        .with_label("wrong value type"))
                    }
                };
                env.insert(name.to_string(), value);
            }
            config_step(&image, site, ConfigChange::Env(env), &options)
        }
    );
    register!(
        engine,
        builders,
        "workdir",
        &["force_build"],
        |site, options, image: Image, path: ImmutableString| {
            if path.is_empty() {
                return Err(CallError::new("workdir needs a path").with_label("empty path"));
            }
            config_step(
                &image,
                site,
                ConfigChange::Workdir(path.to_string()),
                &options,
            )
        }
    );
    register!(
        engine,
        builders,
        "entrypoint",
        &["force_build"],
        |site, options, image: Image, args: Dynamic| {
            let args = argv("entrypoint", &args)?;
            config_step(&image, site, ConfigChange::Entrypoint(args), &options)
        }
    );
    register!(
        engine,
        builders,
        "cmd",
        &["force_build"],
        |site, options, image: Image, args: Dynamic| {
            let args = argv("cmd", &args)?;
            config_step(&image, site, ConfigChange::Cmd(args), &options)
        }
    );
    register!(
        engine,
        builders,
        "shell",
        &["force_build"],
        |site, options, image: Image, args: Dynamic| {
            let args = argv("shell", &args)?;
            config_step(&image, site, ConfigChange::Shell(args), &options)
        }
    );
    register!(
        engine,
        builders,
        "user",
        &["force_build"],
        |site, options, image: Image, user: ImmutableString| {
            if user.trim().is_empty() {
                return Err(CallError::new(
                    "user needs a user name or uid, such as \"app\" or \"1000:1000\"",
                )
                .with_label("empty user"));
            }
            config_step(&image, site, ConfigChange::User(user.to_string()), &options)
        }
    );
}

fn config_step(
    image: &Image,
    site: CallSite,
    change: ConfigChange,
    options: &Options,
) -> Result<Image, CallError> {
    let force_build = options.bool("force_build")?;
    Ok(child(image, site, Step::Config(change), force_build))
}

fn register_local_files(engine: &mut Engine, builders: &Builders) {
    register!(
        engine,
        builders,
        "add_local_python_source",
        &["copy", "ignore", "force_build"],
        |site, options, image: Image, modules: Dynamic| {
            let modules = required_list("add_local_python_source", "module names", &modules)?;
            let mut image = image;
            for module in &modules {
                let (context, destination) = python_source(&site, module, &options)?;
                image = add_local(&image, site.clone(), context, destination, &options)?;
            }
            Ok(image)
        }
    );
    register!(
        engine,
        builders,
        "add_local_file",
        &["copy", "force_build"],
        |site, options, image: Image, local: ImmutableString, remote: ImmutableString| {
            let source = local_path(&site, &local);
            let context = LocalContext::file(source, &local).map_err(context_error)?;
            let destination = if remote.ends_with('/') {
                let name = context
                    .source
                    .file_name()
                    .map(|name| name.to_string_lossy().into_owned())
                    .unwrap_or_default();
                format!("{remote}{name}")
            } else {
                remote.to_string()
            };
            add_local(&image, site, context, destination, &options)
        }
    );
    register!(
        engine,
        builders,
        "add_local_dir",
        &["copy", "ignore", "force_build"],
        |site, options, image: Image, local: ImmutableString, remote: ImmutableString| {
            let source = local_path(&site, &local);
            let patterns = options.strings("ignore")?;
            let context = LocalContext::dir(source, &local, &patterns).map_err(context_error)?;
            add_local(&image, site, context, remote.to_string(), &options)
        }
    );
}

/// Patterns that keep only Python files of a package.
const PYTHON_FILES_ONLY: &[&str] = &["*", "!*/", "!*.py", "__pycache__/"];

/// Finds `module` as Python would from `folder` (a package folder, else a
/// `.py` file) and returns its context and its path under `/root`.
fn python_source(
    site: &CallSite,
    module: &str,
    options: &Options,
) -> Result<(LocalContext, String), CallError> {
    let valid = !module.is_empty()
        && module.split('.').all(|part| {
            part.starts_with(|c: char| c.is_alphabetic() || c == '_')
                && part.chars().all(|c| c.is_alphanumeric() || c == '_')
        });
    if !valid {
        return Err(
            CallError::new(format!("invalid Python module name {module:?}"))
                .with_label("invalid module name")
                .with_help(
                    "write an importable name, such as \"mypackage\" or \"mypackage.tools\"",
                ),
        );
    }

    let relative: PathBuf = module.split('.').collect();
    let package = site.script.folder.join(&relative);
    let single = package.with_extension("py");
    let destination = format!("/root/{}", relative.display());

    if package.is_dir() {
        let patterns = if options.contains("ignore") {
            options.strings("ignore")?
        } else {
            PYTHON_FILES_ONLY
                .iter()
                .map(|pattern| pattern.to_string())
                .collect()
        };
        let context = LocalContext::dir(package, module, &patterns).map_err(context_error)?;
        return Ok((context, destination));
    }
    if single.is_file() {
        let context = LocalContext::file(single, module).map_err(context_error)?;
        return Ok((context, format!("{destination}.py")));
    }
    Err(CallError::new(format!(
        "Python module {module} not found: there is no folder {} and no file {}",
        package.display(),
        single.display()
    ))
    .with_label("module not found")
    .with_help("modules are found from the script's folder, as `python` would find them run there"))
}

fn add_local(
    image: &Image,
    site: CallSite,
    context: LocalContext,
    destination: String,
    options: &Options,
) -> Result<Image, CallError> {
    if !destination.starts_with('/') {
        return Err(CallError::new(format!(
            "the path in the image must be absolute, found {destination:?}"
        ))
        .with_label("relative path in the image")
        .with_help(format!(
            "write it from the root, such as \"/{}\"",
            destination.trim_start_matches("./")
        )));
    }
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

fn register_copy_from(engine: &mut Engine, builders: &Builders) {
    register!(
        engine,
        builders,
        "copy_from",
        &["force_build"],
        |site,
         options,
         image: Image,
         source: Image,
         source_path: ImmutableString,
         destination: ImmutableString| {
            for (what, path) in [("source path", &source_path), ("destination", &destination)] {
                if !path.starts_with('/') {
                    return Err(CallError::new(format!(
                        "the {what} of copy_from must be absolute, found {path:?}"
                    ))
                    .with_label("relative path")
                    .with_help(format!(
                        "write it from the root, such as \"/{}\"",
                        path.trim_start_matches("./")
                    )));
                }
            }
            check_no_attached_files(&image, "copy_from")?;
            let step = CopyFromStep {
                source: Arc::clone(&source.layer),
                source_path: source_path.to_string(),
                destination: destination.to_string(),
            };
            Ok(child(
                &image,
                site,
                Step::CopyFrom(step),
                options.bool("force_build")?,
            ))
        }
    );
}

fn register_from_dockerfile(engine: &mut Engine, builders: &Builders) {
    register!(
        engine,
        builders,
        "from_dockerfile",
        &["context_dir", "build_args", "ignore", "force_build"],
        |site, options, path: ImmutableString| {
            let dockerfile_path = local_path(&site, &path);
            let text = std::fs::read_to_string(&dockerfile_path).map_err(|error| {
                CallError::new(format!("failed to read Dockerfile {}: {error}", dockerfile_path.display()))
                    .with_label("unreadable Dockerfile")
                    .with_help("relative paths are resolved against the script's folder, not the working directory")
            })?;
            let dockerfile_folder = dockerfile_path
                .parent()
                .map(Path::to_path_buf)
                .unwrap_or_default();
            let (context_dir, context_written) = match options.string("context_dir")? {
                Some(written) => (local_path(&site, &written), written),
                None => (
                    dockerfile_folder.clone(),
                    dockerfile_folder.display().to_string(),
                ),
            };

            // Docker's order: <Dockerfile>.dockerignore, then one beside the
            // Dockerfile, then one in the context. An `ignore` option replaces them.
            let patterns = options.strings("ignore")?;
            let ignore_file = if options.contains("ignore") {
                None
            } else {
                let mut beside = dockerfile_path.clone().into_os_string();
                beside.push(".dockerignore");
                [
                    PathBuf::from(beside),
                    dockerfile_folder.join(".dockerignore"),
                    context_dir.join(".dockerignore"),
                ]
                .into_iter()
                .find(|candidate| candidate.is_file())
            };
            let context = LocalContext::dir_with_ignore_file(
                context_dir,
                &context_written,
                &patterns,
                ignore_file.as_deref(),
            )
            .map_err(context_error)?;

            let missing = crate::dockerfile::missing_sources(
                &crate::dockerfile::copy_sources(&text),
                &context,
            );
            if !missing.is_empty() {
                return Err(CallError::new(format!(
                    "the Dockerfile copies {} that the build context {} does not contain",
                    missing.join(", "),
                    context.source.display()
                ))
                .with_label("COPY sources missing")
                .with_help(
                    "check the paths, the context_dir option and the ignore rules (.dockerignore)",
                ));
            }

            let step = DockerfileStep {
                path: dockerfile_path,
                written_as: path.to_string(),
                text,
                context: Arc::new(context),
                build_args: options.string_map("build_args")?,
            };
            Ok(Image {
                layer: Arc::new(Layer {
                    parent: None,
                    step: Step::Dockerfile(step),
                    call: site,
                    force_build: options.bool("force_build")?,
                }),
                mounts: Arc::new(Vec::new()),
                tag: None,
            })
        }
    );
}

fn register_dockerfile_commands(engine: &mut Engine, builders: &Builders) {
    register!(
        engine,
        builders,
        "dockerfile_commands",
        &["context_dir", "build_args", "force_build"],
        |site, options, image: Image, lines: Dynamic| {
            let lines = required_list("dockerfile_commands", "Dockerfile instructions", &lines)?;
            check_no_attached_files(&image, "dockerfile_commands")?;
            let text = lines.join("\n");
            for instruction in crate::dockerfile::instructions(&text) {
                let keyword = instruction
                    .split_whitespace()
                    .next()
                    .unwrap_or_default()
                    .to_ascii_uppercase();
                if keyword == "FROM" {
                    return Err(CallError::new("dockerfile_commands cannot start a new stage with FROM")
                        .with_label("FROM is not allowed here")
                        .with_help("start another image with from_registry or debian_slim, and copy files out of it with copy_from"));
                }
                let copies_from_stage = (keyword == "COPY" || keyword == "ADD")
                    && instruction
                        .split_whitespace()
                        .any(|word| word.to_ascii_lowercase().starts_with("--from"));
                if copies_from_stage {
                    return Err(CallError::new("dockerfile_commands cannot COPY --from another stage")
                        .with_label("COPY --from is not allowed here")
                        .with_help("build the other image in the script and use image.copy_from(other, \"/src\", \"/dest\")"));
                }
            }

            let context = match options.string("context_dir")? {
                Some(written) => {
                    let folder = local_path(&site, &written);
                    Some(LocalContext::dir(folder, &written, &[]).map_err(context_error)?)
                }
                None => None,
            };
            let sources = crate::dockerfile::copy_sources(&text);
            let missing = match &context {
                Some(context) => crate::dockerfile::missing_sources(&sources, context),
                None => sources,
            };
            if !missing.is_empty() {
                let help = match &context {
                    Some(_) => "check the paths and the context folder's .dockerignore",
                    None => {
                        "pass #{ context_dir: \"./folder\" } with the folder these paths are in"
                    }
                };
                return Err(CallError::new(format!(
                    "the instructions copy {} that the build context does not contain",
                    missing.join(", ")
                ))
                .with_label("COPY sources missing")
                .with_help(help));
            }

            let step = DockerfileCommandsStep {
                lines,
                context: context.map(Arc::new),
                build_args: options.string_map("build_args")?,
            };
            Ok(child(
                &image,
                site,
                Step::DockerfileCommands(step),
                options.bool("force_build")?,
            ))
        }
    );
}

fn context_error(error: ContextError) -> CallError {
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
