//! The script functions that make secrets: `secret`, `secret_from_dotenv`,
//! `secret_from_env` and `secret_from_map`.

use std::collections::BTreeMap;

use rhai::{Dynamic, Engine, EvalAltResult, ImmutableString, Map, NativeCallContext};

use super::api::{local_path, Builders};
use super::options::{friendly_type, string_list};
use super::CallError;
use crate::secret::{Secret, SecretError};

type SecretResult = Result<Secret, Box<EvalAltResult>>;

pub(super) fn register(engine: &mut Engine, builders: &Builders) {
    engine.register_type_with_name::<Secret>("Secret");

    engine.register_fn(
        "secret",
        |context: NativeCallContext, name: ImmutableString| -> SecretResult {
            Secret::named(&name).map_err(|error| raise(&context, error))
        },
    );

    let dotenv_builders = builders.clone();
    engine.register_fn(
        "secret_from_dotenv",
        move |context: NativeCallContext, path: ImmutableString| -> SecretResult {
            let site = dotenv_builders.call_site(&context, "secret_from_dotenv");
            Secret::from_dotenv(&local_path(&site, &path), &path)
                .map_err(|error| raise(&context, error))
        },
    );

    engine.register_fn(
        "secret_from_env",
        |context: NativeCallContext, names: Dynamic| -> SecretResult {
            let names = string_list(&names).ok_or_else(|| {
                CallError::new(format!(
                    "secret_from_env takes variable names as a string or an array of strings, found {}",
                    friendly_type(names.type_name())
                ))
                .with_label("wrong argument type")
                .into_rhai(context.call_position())
            })?;
            Secret::from_env(&names).map_err(|error| raise(&context, error))
        },
    );

    engine.register_fn(
        "secret_from_map",
        |context: NativeCallContext, map: Map| -> SecretResult {
            let mut vars = BTreeMap::new();
            for (name, value) in map {
                if !value.is_string() {
                    return Err(CallError::new(format!(
                        "secret variable {name} must be a string, found {}",
                        friendly_type(value.type_name())
                    ))
                    .with_label("wrong value type")
                    .into_rhai(context.call_position()));
                }
                vars.insert(name.to_string(), value.to_string());
            }
            Secret::from_map(vars).map_err(|error| raise(&context, error))
        },
    );
}

fn raise(context: &NativeCallContext, error: SecretError) -> Box<EvalAltResult> {
    let help = match &error {
        SecretError::NotFound { name, path } => Some(format!(
            "create {} with one NAME=value line per variable, readable only by you (chmod 600); {name:?} is the file's name without .env",
            path.display()
        )),
        SecretError::TooOpen { path, .. } => Some(format!("run `chmod 600 {}`", path.display())),
        SecretError::MissingVariable { name } => Some(format!("export {name} before running imgscript")),
        SecretError::DotenvNotFound { .. } => {
            Some("relative paths are resolved against the script's folder, not the working directory".to_string())
        }
        _ => None,
    };
    let call_error = CallError::new(error.to_string()).with_label("secret not available");
    let call_error = match help {
        Some(help) => call_error.with_help(help),
        None => call_error,
    };
    call_error.into_rhai(context.call_position())
}
