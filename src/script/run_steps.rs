//! Builders of steps that run commands: package installs, `run_commands`,
//! `run_function` and `dockerfile_commands`.

use std::path::Path;
use std::sync::Arc;

use rhai::{Dynamic, Engine, ImmutableString, Map, NativeCallContext};

use super::api::{
    check_no_attached_files, child, context_error, existing_local_file, local_path, pip_options,
    run_step, run_step_with_files, stage_files, BuilderResult, Builders,
};
use super::options::{self, required_list, Options};
use super::CallError;
use crate::context::LocalContext;
use crate::image::{DockerfileCommandsStep, Image, Step};

use crate::render;

/// Reads and parses a pyproject.toml.
fn read_pyproject(path: &Path) -> Result<toml::Table, CallError> {
    let text = std::fs::read_to_string(path).map_err(|error| {
        CallError::new(format!("failed to read {}: {error}", path.display()))
            .with_label("unreadable pyproject.toml")
            .with_help("relative paths are resolved against the script's folder, not the working directory")
    })?;
    text.parse().map_err(|error| {
        CallError::new(format!("invalid TOML in {}: {error}", path.display()))
            .with_label("invalid pyproject.toml")
    })
}

/// Reads `[project] dependencies` of a pyproject.toml, plus the named
/// groups of `[project.optional-dependencies]`.
fn pyproject_dependencies(path: &Path, groups: &[String]) -> Result<Vec<String>, CallError> {
    let document = read_pyproject(path)?;
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

/// Lists the functions a Python file defines at its top level, and checks
/// whether `function` occurs in it at all, so that a misspelt
/// `run_function` name fails the check rather than the build. A name the
/// file imports or assigns counts, since it may well be a function.
fn python_functions(path: &Path, function: &str) -> Result<(Vec<String>, bool), CallError> {
    let text = std::fs::read_to_string(path).map_err(|error| {
        CallError::new(format!("failed to read {}: {error}", path.display()))
            .with_label("unreadable Python file")
    })?;
    let mentioned = text
        .split(|c: char| !(c.is_alphanumeric() || c == '_'))
        .any(|word| word == function);
    let defined = text
        .lines()
        .filter_map(|line| {
            let definition = line
                .strip_prefix("def ")
                .or_else(|| line.strip_prefix("async def "))?;
            let name: String = definition
                .trim_start()
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            (!name.is_empty()).then_some(name)
        })
        .collect();
    Ok((defined, mentioned))
}

/// Names the dependency groups a poetry project declares: `main`, each
/// `[tool.poetry.group.NAME]` and each `[dependency-groups]` entry.
fn poetry_groups(pyproject: &Path) -> Result<Vec<String>, CallError> {
    let document = read_pyproject(pyproject)?;
    let poetry = document
        .get("tool")
        .and_then(|tool| tool.get("poetry"))
        .and_then(toml::Value::as_table);
    if poetry.is_none() && !document.contains_key("project") {
        return Err(CallError::new(format!(
            "{} is not a poetry project: it has neither [tool.poetry] nor [project]",
            pyproject.display()
        ))
        .with_label("not a poetry project"));
    }

    let mut groups = vec!["main".to_string()];
    let tables = [
        poetry.and_then(|poetry| poetry.get("group")),
        document.get("dependency-groups"),
    ];
    for table in tables
        .into_iter()
        .flatten()
        .filter_map(toml::Value::as_table)
    {
        groups.extend(table.keys().cloned());
    }
    Ok(groups)
}

/// Reads the groups to install besides `main`. `with` is a reserved word
/// in Rhai, so the option is written `with_`, as in Modal, or quoted.
fn poetry_with(options: &Options) -> Result<Vec<String>, CallError> {
    if options.contains("with") && options.contains("with_") {
        return Err(
            CallError::new("poetry_install_from_file takes `with_` or \"with\", not both")
                .with_label("option given twice"),
        );
    }
    let mut groups = options.strings("with")?;
    groups.extend(options.strings("with_")?);
    Ok(groups)
}

/// Finds the lock file of a poetry project: the `lockfile` option, or
/// `poetry.lock` beside `pyproject.toml`.
fn poetry_lockfile(
    site: &crate::image::CallSite,
    pyproject: &Path,
    written: Option<String>,
) -> Result<std::path::PathBuf, CallError> {
    if let Some(written) = written {
        return existing_local_file(site, &written, "poetry lock file");
    }
    let beside = pyproject.with_file_name("poetry.lock");
    if beside.is_file() {
        return Ok(beside);
    }
    Err(CallError::new(format!("{} has no poetry.lock beside it", pyproject.display()))
        .with_label("no lock file")
        .with_help("run `poetry lock` next to pyproject.toml, pass #{ lockfile: \"./path/poetry.lock\" }, or pass #{ ignore_lockfile: true } to resolve at build time"))
}

pub(super) fn register_run_steps(engine: &mut Engine, builders: &Builders) {
    register!(
        engine,
        builders,
        "uv_sync",
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
        "poetry_install_from_file",
        |site, options, image: Image, path: ImmutableString| {
            let pyproject = existing_local_file(&site, &path, "pyproject.toml")?;
            let known_groups = poetry_groups(&pyproject)?;
            let poetry_options = render::PoetryOptions {
                with: poetry_with(&options)?,
                without: options.strings("without")?,
                only: options.strings("only")?,
                poetry_version: options.string("poetry_version")?,
                index: pip_options(&options)?,
                extra_options: options.string("extra_options")?,
            };
            for group in poetry_options
                .with
                .iter()
                .chain(&poetry_options.without)
                .chain(&poetry_options.only)
            {
                if !known_groups.contains(group) {
                    return Err(CallError::new(format!(
                        "{} has no dependency group {group:?} (it has: {})",
                        pyproject.display(),
                        known_groups.join(", ")
                    ))
                    .with_label("unknown group"));
                }
            }

            let lockfile = if options.bool("ignore_lockfile")? {
                None
            } else {
                Some(poetry_lockfile(
                    &site,
                    &pyproject,
                    options.string("lockfile")?,
                )?)
            };
            let files = std::collections::BTreeSet::from_iter(
                [Some(pyproject.clone()), lockfile.clone()]
                    .into_iter()
                    .flatten(),
            );
            let staged = stage_files(&files, &pyproject)?;
            let command = render::poetry_install(
                &staged.container_path(&pyproject),
                lockfile
                    .as_deref()
                    .map(|lockfile| staged.container_path(lockfile))
                    .as_deref(),
                &poetry_options,
            );
            run_step_with_files(
                &image,
                site,
                format!("poetry_install_from_file {path}"),
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
            let (defined, mentioned) = python_functions(&path, &function)?;
            if !mentioned {
                let help = match crate::suggest::did_you_mean(
                    &function,
                    defined.iter().map(String::as_str),
                ) {
                    Some(close) => format!("did you mean `{close}`?"),
                    None if defined.is_empty() => {
                        format!("{file} defines no function at its top level")
                    }
                    None => format!("{file} defines: {}", defined.join(", ")),
                };
                return Err(
                    CallError::new(format!("{file} defines no function `{function}`"))
                        .with_label("no such function")
                        .with_help(help),
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
        "micromamba_install",
        |site, options, image: Image, packages: Dynamic| {
            let packages = match options::string_list(&packages) {
                Some(packages) if packages.is_empty() && options.contains("spec_file") => packages,
                _ => required_list("micromamba_install", "packages", &packages)?,
            };
            let channels = options.strings("channels")?;
            let mut summary = std::iter::once("micromamba_install")
                .chain(packages.iter().map(String::as_str))
                .collect::<Vec<_>>()
                .join(" ");
            let Some(written) = options.string("spec_file")? else {
                let command = render::micromamba_install(&packages, &channels, None);
                return run_step(&image, site, summary, vec![command], &options);
            };

            let spec_file = existing_local_file(&site, &written, "spec file")?;
            let staged = stage_files(
                &std::collections::BTreeSet::from([spec_file.clone()]),
                &spec_file,
            )?;
            let command = render::micromamba_install(
                &packages,
                &channels,
                Some(&staged.container_path(&spec_file)),
            );
            summary.push_str(&format!(" --file {written}"));
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
        "apt_install",
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
        |site, options, image: Image, commands: Dynamic| {
            let commands = required_list("run_commands", "commands", &commands)?;
            // Each command runs in its own shell, so the summary lists them apart.
            let summary = format!("run_commands {commands:?}");
            run_step(&image, site, summary, commands, &options)
        }
    );
}

pub(super) fn register_dockerfile_commands(engine: &mut Engine, builders: &Builders) {
    register!(
        engine,
        builders,
        "dockerfile_commands",
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
