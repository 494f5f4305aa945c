//! Cache keys: a versioned, canonical encoding of a step and its inputs,
//! hashed with SHA-256.
//!
//! Every field is written as a tag, a length and the bytes, so no two
//! different steps can encode to the same byte string. The encoding never
//! relies on `Hash`, `Debug` or map iteration order. Changing how any step is
//! encoded must bump [`ENCODING_VERSION`], which invalidates every cached
//! layer on purpose.

use sha2::{Digest, Sha256};

use crate::image::{BaseImage, ConfigChange, Layer, Step};

/// Written first into every key and context digest.
pub const ENCODING_VERSION: &str = "imgscript-cache-key-v1";

/// A canonical byte encoding that feeds SHA-256 as it is written.
pub struct KeyEncoder {
    hasher: Sha256,
}

impl KeyEncoder {
    pub fn new(domain: &str) -> Self {
        let mut encoder = KeyEncoder {
            hasher: Sha256::new(),
        };
        encoder.field("version", ENCODING_VERSION.as_bytes());
        encoder.field("domain", domain.as_bytes());
        encoder
    }

    /// Writes one tagged, length-prefixed field.
    pub fn field(&mut self, tag: &str, value: &[u8]) -> &mut Self {
        for part in [tag.as_bytes(), value] {
            self.hasher.update((part.len() as u64).to_be_bytes());
            self.hasher.update(part);
        }
        self
    }

    pub fn text(&mut self, tag: &str, value: &str) -> &mut Self {
        self.field(tag, value.as_bytes())
    }

    /// Writes a list as its length followed by each item, so `["a b"]` and
    /// `["a", "b"]` differ.
    pub fn list(&mut self, tag: &str, items: &[String]) -> &mut Self {
        self.field(tag, &(items.len() as u64).to_be_bytes());
        for item in items {
            self.text("item", item);
        }
        self
    }

    pub fn finish(self) -> String {
        hex::encode(self.hasher.finalize())
    }
}

/// Computes the cache key of `layer`, given its parent's key and the key of
/// what else it reads: for a base image, the id its reference resolved to in
/// the local store, and for `copy_from`, the source image's cache key.
pub fn layer_key(layer: &Layer, parent_key: Option<&str>, input_key: Option<&str>) -> String {
    let mut encoder = KeyEncoder::new("layer");
    encoder.text("parent", parent_key.unwrap_or(""));

    match &layer.step {
        Step::Base(base) => {
            let (kind, reference) = match base {
                BaseImage::Registry { reference, .. } => ("registry", reference),
                BaseImage::Id(id) => ("id", id),
            };
            encoder.text("base", kind).text("reference", reference);
            encoder.text("image-id", input_key.unwrap_or(""));
        }
        Step::Run(run) => {
            encoder.text("step", "run").list("commands", &run.commands);
            if let Some(seconds) = run.timeout_seconds {
                encoder.field("timeout", &seconds.to_be_bytes());
            }
            if let Some(files) = &run.staged_files {
                encoder.text("staged-files", &files.digest);
            }
            if let Some(build) = &run.python_build {
                encoder.text("python-build", &build.file_name());
            }
            if let Some(gpu) = &run.gpu {
                encoder.text("gpu", &gpu.to_string());
            }
            // Only names: changing a secret's value never rebuilds a step.
            if !run.secrets.is_empty() {
                let names: Vec<String> = run
                    .secrets
                    .iter()
                    .map(|secret| secret.name.clone())
                    .collect();
                encoder.list("secrets", &names);
            }
        }
        Step::Config(change) => encode_config_change(&mut encoder, change),
        Step::Dockerfile(dockerfile) => {
            encoder
                .text("step", "dockerfile")
                .text("dockerfile", &dockerfile.text)
                .text("context", dockerfile.context.digest());
            for (name, value) in &dockerfile.build_args {
                encoder.text("build-arg", name).text("value", value);
            }
        }
        Step::DockerfileCommands(commands) => {
            encoder
                .text("step", "dockerfile-commands")
                .list("lines", &commands.lines);
            let context = commands
                .context
                .as_ref()
                .map_or("", |context| context.digest());
            encoder.text("context", context);
            for (name, value) in &commands.build_args {
                encoder.text("build-arg", name).text("value", value);
            }
        }
        Step::CopyFrom(copy) => {
            encoder
                .text("step", "copy-from")
                .text("source", input_key.unwrap_or(""))
                .text("source-path", &copy.source_path)
                .text("destination", &copy.destination);
        }
        Step::Copy(copy) => {
            encoder
                .text("step", "copy")
                .text("destination", &copy.destination)
                .text("context", copy.context.digest());
        }
    }
    encoder.finish()
}

fn encode_config_change(encoder: &mut KeyEncoder, change: &ConfigChange) {
    encoder.text("step", "config");
    match change {
        ConfigChange::Env(vars) => {
            encoder.text("change", "env");
            // BTreeMap iterates in key order, which keeps this canonical.
            for (name, value) in vars {
                encoder.text("name", name).text("value", value);
            }
        }
        ConfigChange::Workdir(path) => {
            encoder.text("change", "workdir").text("path", path);
        }
        ConfigChange::Entrypoint(args) => {
            encoder.text("change", "entrypoint").list("args", args);
        }
        ConfigChange::Cmd(args) => {
            encoder.text("change", "cmd").list("args", args);
        }
        ConfigChange::Shell(args) => {
            encoder.text("change", "shell").list("args", args);
        }
        ConfigChange::User(user) => {
            encoder.text("change", "user").text("user", user);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key_of(fields: &[(&str, &str)]) -> String {
        let mut encoder = KeyEncoder::new("test");
        for (tag, value) in fields {
            encoder.text(tag, value);
        }
        encoder.finish()
    }

    #[test]
    fn field_boundaries_change_the_key() {
        let cases = [
            (vec![("a", "bc")], vec![("ab", "c")]),
            (vec![("a", "b"), ("c", "")], vec![("a", "bc")]),
            (vec![("x", "1")], vec![("x", "2")]),
        ];
        for (left, right) in cases {
            assert_ne!(key_of(&left), key_of(&right), "{left:?} vs {right:?}");
        }
    }

    #[test]
    fn list_items_are_not_joined() {
        let mut one = KeyEncoder::new("test");
        one.list("commands", &["echo a b".to_string()]);
        let mut two = KeyEncoder::new("test");
        two.list("commands", &["echo a".to_string(), "b".to_string()]);
        assert_ne!(one.finish(), two.finish());
    }

    #[test]
    fn key_is_stable_hex_sha256() {
        let key = key_of(&[("step", "run")]);
        assert_eq!(key.len(), 64);
        assert_eq!(key, key_of(&[("step", "run")]));
    }
}
