//! Builders of steps that change only the image config: `env`, `workdir`,
//! `user`, `entrypoint`, `cmd` and `shell`.

use std::collections::BTreeMap;

use rhai::{Dynamic, Engine, ImmutableString, Map, NativeCallContext};

use super::api::{child, BuilderResult, Builders};
use super::options::{argv, Options};
use super::CallError;
use crate::image::{CallSite, ConfigChange, Image, Step};

pub(super) fn register_config_steps(engine: &mut Engine, builders: &Builders) {
    register!(
        engine,
        builders,
        "env",
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
        |site, options, image: Image, args: Dynamic| {
            let args = argv("entrypoint", &args)?;
            config_step(&image, site, ConfigChange::Entrypoint(args), &options)
        }
    );
    register!(
        engine,
        builders,
        "cmd",
        |site, options, image: Image, args: Dynamic| {
            let args = argv("cmd", &args)?;
            config_step(&image, site, ConfigChange::Cmd(args), &options)
        }
    );
    register!(
        engine,
        builders,
        "shell",
        |site, options, image: Image, args: Dynamic| {
            let args = argv("shell", &args)?;
            config_step(&image, site, ConfigChange::Shell(args), &options)
        }
    );
    register!(
        engine,
        builders,
        "user",
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
