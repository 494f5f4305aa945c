//! Argument and option-map checks for builder functions, with messages that
//! name the function, the option and the type that was expected.

use std::collections::BTreeMap;

use rhai::{Dynamic, Map};

use super::CallError;
use crate::gpu::GpuRequest;
use crate::secret::Secret;
use crate::suggest::did_you_mean;

/// The options map of one call, checked against the keys that function
/// accepts.
pub struct Options {
    function: &'static str,
    map: Map,
}

impl Options {
    /// Checks that every key of `map` is one of `allowed`.
    pub fn parse(function: &'static str, map: Map, allowed: &[&str]) -> Result<Self, CallError> {
        for key in map.keys() {
            if !allowed.contains(&key.as_str()) {
                let help = match did_you_mean(key, allowed.iter().copied()) {
                    Some(name) => format!("did you mean `{name}`?"),
                    None => format!("{function} accepts: {}", allowed.join(", ")),
                };
                return Err(
                    CallError::new(format!("unknown option `{key}` for {function}"))
                        .with_label("unknown option")
                        .with_help(help),
                );
            }
        }
        Ok(Options { function, map })
    }

    pub fn none(function: &'static str) -> Self {
        Options {
            function,
            map: Map::new(),
        }
    }

    fn type_error(&self, key: &str, expected: &str, found: &Dynamic) -> CallError {
        CallError::new(format!(
            "option `{key}` of {} must be {expected}, found {}",
            self.function,
            friendly_type(found.type_name())
        ))
        .with_label("wrong option type")
    }

    pub fn bool(&self, key: &str) -> Result<bool, CallError> {
        match self.map.get(key) {
            None => Ok(false),
            Some(value) => value
                .as_bool()
                .map_err(|_| self.type_error(key, "a bool", value)),
        }
    }

    pub fn string(&self, key: &str) -> Result<Option<String>, CallError> {
        match self.map.get(key) {
            None => Ok(None),
            Some(value) if value.is_string() => Ok(Some(value.to_string())),
            Some(value) => Err(self.type_error(key, "a string", value)),
        }
    }

    /// Accepts a GPU request such as "any", "H100" or "A100:2".
    pub fn gpu(&self, key: &str) -> Result<Option<GpuRequest>, CallError> {
        let Some(text) = self.string(key)? else {
            return Ok(None);
        };
        GpuRequest::parse(&text).map(Some).map_err(|reason| {
            CallError::new(format!(
                "invalid option `{key}` of {}: {reason}",
                self.function
            ))
            .with_label("invalid GPU request")
        })
    }

    /// Accepts a whole number of seconds from 1 up.
    pub fn seconds(&self, key: &str) -> Result<Option<u64>, CallError> {
        match self.map.get(key) {
            None => Ok(None),
            Some(value) => match value.as_int() {
                Ok(seconds) if seconds > 0 => Ok(Some(seconds as u64)),
                _ => Err(self.type_error(key, "a positive whole number of seconds", value)),
            },
        }
    }

    /// Converts an option to JSON, or returns `default` when it is absent.
    pub fn json(
        &self,
        key: &str,
        default: serde_json::Value,
    ) -> Result<serde_json::Value, CallError> {
        match self.map.get(key) {
            None => Ok(default),
            Some(value) => serde_json::to_value(value).map_err(|error| {
                CallError::new(format!(
                    "option `{key}` of {} cannot be passed to Python: {error}",
                    self.function
                ))
                .with_label("wrong option type")
            }),
        }
    }

    pub fn contains(&self, key: &str) -> bool {
        self.map.contains_key(key)
    }

    /// Accepts a map of names to strings, numbers or bools, which become
    /// strings.
    pub fn string_map(&self, key: &str) -> Result<BTreeMap<String, String>, CallError> {
        let Some(value) = self.map.get(key) else {
            return Ok(BTreeMap::new());
        };
        let expected = "a map of names to strings, such as #{ VERSION: \"1.2\" }";
        let Some(map) = value.read_lock::<rhai::Map>().map(|map| map.clone()) else {
            return Err(self.type_error(key, expected, value));
        };
        let mut strings = BTreeMap::new();
        for (name, item) in map {
            if !(item.is_string() || item.is_int() || item.is_float() || item.is_bool()) {
                return Err(self.type_error(key, expected, &item));
            }
            strings.insert(name.to_string(), item.to_string());
        }
        Ok(strings)
    }

    /// Accepts one secret or an array of secrets.
    pub fn secrets(&self, key: &str) -> Result<Vec<Secret>, CallError> {
        let Some(value) = self.map.get(key) else {
            return Ok(Vec::new());
        };
        let expected = "a secret or an array of secrets, such as [secret(\"hf-token\")]";
        if let Some(secret) = value.clone().try_cast::<Secret>() {
            return Ok(vec![secret]);
        }
        let Some(items) = value.read_lock::<rhai::Array>().map(|array| array.clone()) else {
            return Err(self.type_error(key, expected, value));
        };
        items
            .into_iter()
            .map(|item| {
                let found = item.clone();
                item.try_cast::<Secret>()
                    .ok_or_else(|| self.type_error(key, expected, &found))
            })
            .collect()
    }

    pub fn strings(&self, key: &str) -> Result<Vec<String>, CallError> {
        match self.map.get(key) {
            None => Ok(Vec::new()),
            Some(value) => string_list(value)
                .ok_or_else(|| self.type_error(key, "a string or an array of strings", value)),
        }
    }
}

/// Accepts one string or an array of strings.
pub fn string_list(value: &Dynamic) -> Option<Vec<String>> {
    if value.is_string() {
        return Some(vec![value.to_string()]);
    }
    let array = value.read_lock::<rhai::Array>()?;
    array
        .iter()
        .map(|item| item.is_string().then(|| item.to_string()))
        .collect()
}

/// Checks an argument that takes one string or an array of strings, and
/// rejects an empty list.
pub fn required_list(
    function: &str,
    what: &str,
    value: &Dynamic,
) -> Result<Vec<String>, CallError> {
    let items = string_list(value).ok_or_else(|| {
        CallError::new(format!(
            "{function} takes {what} as a string or an array of strings, found {}",
            friendly_type(value.type_name())
        ))
        .with_label("wrong argument type")
    })?;
    if items.is_empty() {
        return Err(
            CallError::new(format!("{function} needs at least one of {what}"))
                .with_label("empty list"),
        );
    }
    Ok(items)
}

/// Checks an argument that must be an array of strings (an argv).
pub fn argv(function: &str, value: &Dynamic) -> Result<Vec<String>, CallError> {
    let is_array = value.is_array();
    match string_list(value) {
        Some(items) if is_array => Ok(items),
        _ => Err(CallError::new(format!(
            "{function} takes an array of strings, such as [\"python\", \"main.py\"], found {}",
            friendly_type(value.type_name())
        ))
        .with_label("wrong argument type")),
    }
}

/// Names a Rhai type as a script author would.
pub fn friendly_type(rhai_type: &str) -> String {
    let name = match rhai_type {
        "()" => "nothing (a statement ending in `;` returns no value)",
        "i64" | "INT" => "an integer",
        "f64" | "FLOAT" => "a number",
        "bool" => "a bool",
        "char" => "a character",
        "string" | "ImmutableString" => "a string",
        "array" => "an array",
        "map" => "a map",
        "imgscript::image::Image" | "Image" => "an Image",
        "imgscript::secret::Secret" | "Secret" => "a Secret",
        other => other,
    };
    name.to_string()
}
