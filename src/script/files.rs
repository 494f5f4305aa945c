//! Builders that add files: local files and folders, local Python
//! packages, and paths copied out of another image of the script.

use std::path::PathBuf;
use std::sync::Arc;

use rhai::{Dynamic, Engine, ImmutableString, Map, NativeCallContext};

use super::api::{
    add_local, check_image_path, check_no_attached_files, child, context_error, local_path,
    BuilderResult, Builders,
};
use super::options::{required_list, Options};
use super::CallError;
use crate::context::LocalContext;
use crate::image::{CallSite, CopyFromStep, Image, Step};

pub(super) fn register_local_files(engine: &mut Engine, builders: &Builders) {
    register!(
        engine,
        builders,
        "add_local_python_source",
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

pub(super) fn register_copy_from(engine: &mut Engine, builders: &Builders) {
    register!(
        engine,
        builders,
        "copy_from",
        |site,
         options,
         image: Image,
         source: Image,
         source_path: ImmutableString,
         destination: ImmutableString| {
            check_image_path("the source path of copy_from", &source_path)?;
            check_image_path("the destination of copy_from", &destination)?;
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
