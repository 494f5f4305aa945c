//! Builders that start an image: `debian_slim`, `micromamba`,
//! `from_registry`, `from_aws_ecr`, `from_id` and `from_dockerfile`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rhai::{Dynamic, Engine, ImmutableString, Map, NativeCallContext};

use super::api::{
    check_reference, child, context_error, local_path, run_step, BuilderResult, Builders,
};
use super::options::Options;
use super::CallError;
use crate::context::LocalContext;
use crate::image::{
    BaseImage, CallSite, ConfigChange, DockerfileStep, Image, Layer, RunStep, Step,
};
use crate::python_build::PythonBuild;
use crate::registry_auth::RegistryAuth;

pub(super) fn register_bases(engine: &mut Engine, builders: &Builders) {
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
        |site, options, reference: ImmutableString| {
            check_reference(&reference)?;
            let secret = options.secrets("secret")?;
            if secret.len() > 1 {
                return Err(CallError::new("from_registry takes one secret, holding REGISTRY_USERNAME and REGISTRY_PASSWORD")
                    .with_label("more than one secret"));
            }
            let base_image = BaseImage::Registry {
                reference: reference.to_string(),
                auth: secret
                    .into_iter()
                    .next()
                    .map_or(RegistryAuth::DockerConfig, RegistryAuth::Secret),
            };
            let image = base(site.clone(), base_image, options.bool("force_build")?);
            with_added_python(image, site, &options)
        }
    );
    let default_micromamba = builders.clone();
    engine.register_fn(
        "micromamba",
        move |context: NativeCallContext| -> BuilderResult {
            let site = default_micromamba.call_site(&context, "micromamba");
            micromamba_image(site, "3.12", &Options::none("micromamba"))
                .map_err(|error| error.into_rhai(context.call_position()))
        },
    );
    register!(
        engine,
        builders,
        "micromamba",
        |site, options, version: Dynamic| {
            let version = python_version(&version)?;
            micromamba_image(site, &version, &options)
        }
    );
    register!(
        engine,
        builders,
        "from_aws_ecr",
        |site, options, reference: ImmutableString| {
            check_reference(&reference)?;
            let mut secrets = options.secrets("secret")?;
            if secrets.len() != 1 {
                return Err(CallError::new("from_aws_ecr takes one secret, holding AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and AWS_REGION")
                    .with_label("needs one secret")
                    .with_help("write from_aws_ecr(\"123456789012.dkr.ecr.eu-west-1.amazonaws.com/app:v1\", #{ secret: secret(\"aws\") })"));
            }
            let base_image = BaseImage::Registry {
                reference: reference.to_string(),
                auth: RegistryAuth::AwsEcr(secrets.remove(0)),
            };
            let image = base(site.clone(), base_image, options.bool("force_build")?);
            with_added_python(image, site, &options)
        }
    );
    register!(
        engine,
        builders,
        "from_id",
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

/// The image `micromamba()` starts from: micromamba at /bin/micromamba and
/// an empty base environment at /opt/conda, owned by the image's user,
/// `mambauser`.
const MICROMAMBA_IMAGE: &str = "mambaorg/micromamba:2.0.5";

/// Starts from micromamba's image, puts its base environment first on
/// PATH (the image activates it only through its own entrypoint and
/// Dockerfile shell, which imgscript's steps do not use), and installs
/// Python and pip into it from conda-forge.
fn micromamba_image(site: CallSite, version: &str, options: &Options) -> Result<Image, CallError> {
    let registry = BaseImage::Registry {
        reference: MICROMAMBA_IMAGE.to_string(),
        auth: RegistryAuth::DockerConfig,
    };
    let image = base(site.clone(), registry, options.bool("force_build")?);
    let path = ConfigChange::Env(std::collections::BTreeMap::from([(
        "PATH".to_string(),
        "/opt/conda/bin:$PATH".to_string(),
    )]));
    let image = child(&image, site.clone(), Step::Config(path), false);
    let packages = [format!("python={version}"), "pip".to_string()];
    let command = crate::render::micromamba_install(&packages, &["conda-forge".to_string()], None);
    run_step(
        &image,
        site,
        format!("micromamba python={version}"),
        vec![command],
        &Options::none("micromamba"),
    )
}

fn debian_slim_reference(version: &str) -> BaseImage {
    BaseImage::Registry {
        reference: format!("python:{version}-slim-bookworm"),
        auth: RegistryAuth::DockerConfig,
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

pub(super) fn register_from_dockerfile(engine: &mut Engine, builders: &Builders) {
    register!(
        engine,
        builders,
        "from_dockerfile",
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
                    call: site.clone(),
                    force_build: options.bool("force_build")?,
                }),
                mounts: Arc::new(Vec::new()),
                tag: None,
            })
            .and_then(|image| with_added_python(image, site, &options))
        }
    );
}

/// Adds the step of the `add_python` option, when given: a Python build of
/// that version unpacked into `/usr/local`, failing where the image already
/// has another Python.
fn with_added_python(image: Image, site: CallSite, options: &Options) -> Result<Image, CallError> {
    let Some(version) = options.string("add_python")? else {
        return Ok(image);
    };
    let Some(build) = PythonBuild::for_version(&version) else {
        return Err(
            CallError::new(format!("add_python has no build of Python {version:?}"))
                .with_label("unknown Python version")
                .with_help(format!(
                    "choose one of {}",
                    PythonBuild::versions().collect::<Vec<_>>().join(", ")
                )),
        );
    };
    let step = RunStep {
        summary: format!("add_python {version}"),
        commands: vec![crate::render::add_python(&build.version)],
        secrets: Vec::new(),
        gpu: None,
        staged_files: None,
        timeout_seconds: None,
        shown_commands: Some(vec![format!(
            "unpack Python {} into /usr/local",
            build.full_version
        )]),
        python_build: Some(build),
    };
    Ok(child(&image, site, Step::Run(step), false))
}
