//! Image config JSON as the builder writes it, and the `docker load`
//! archive that turns it into an image without sending layer bytes.
//!
//! The daemon accepts an archive that contains only `manifest.json` and a
//! config whose `rootfs` lists layers it already has. The loaded image's id
//! is the SHA-256 of the config bytes, so the same config always gives the
//! same image id.

use std::collections::BTreeMap;

use bollard::models::{ImageHistoryResponseItem, ImageInspect};
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

/// Label that marks an image as the cached result of a cache key.
pub const KEY_LABEL: &str = "dev.imgscript.key";
/// Label holding the SHA-256 of the image's layer list, so an image built on
/// top of a cached one (which inherits its labels) is not taken for it.
pub const LAYERS_LABEL: &str = "dev.imgscript.layers";

/// Label with the number of history entries of a cached step image. An
/// image that `docker build` makes on top of it inherits the label but has
/// more entries, even when it adds no layer (a `LABEL` line, say).
pub const HISTORY_LABEL: &str = "dev.imgscript.history";
/// History comment of the steps that add a layer, so the layer count can be
/// read from the history when the layer is empty.
const LAYER_COMMENT: &str = "imgscript layer";

/// A full image config (the JSON whose digest is the image id).
#[derive(Debug, Clone)]
pub struct ImageConfig {
    document: Map<String, Value>,
}

impl ImageConfig {
    /// Rebuilds the config of an existing image from its inspect output and
    /// history.
    pub fn from_inspect(inspect: &ImageInspect, history: &[ImageHistoryResponseItem]) -> Self {
        let diff_ids = inspect
            .root_fs
            .as_ref()
            .and_then(|root_fs| root_fs.layers.clone())
            .unwrap_or_default();

        let mut document = Map::new();
        document.insert(
            "architecture".into(),
            json!(inspect
                .architecture
                .clone()
                .unwrap_or_else(|| "amd64".into())),
        );
        document.insert(
            "os".into(),
            json!(inspect.os.clone().unwrap_or_else(|| "linux".into())),
        );
        if let Some(variant) = inspect
            .variant
            .as_ref()
            .filter(|variant| !variant.is_empty())
        {
            document.insert("variant".into(), json!(variant));
        }
        if let Some(author) = inspect.author.as_ref().filter(|author| !author.is_empty()) {
            document.insert("author".into(), json!(author));
        }
        if let Some(created) = &inspect.created {
            document.insert("created".into(), json!(created));
        }
        let config = inspect
            .config
            .as_ref()
            .map(|config| serde_json::to_value(config).expect("an image config serializes"))
            .unwrap_or_else(|| json!({}));
        document.insert("config".into(), config);
        document.insert(
            "rootfs".into(),
            json!({ "type": "layers", "diff_ids": diff_ids }),
        );
        document.insert(
            "history".into(),
            Value::Array(history_entries(history, diff_ids.len())),
        );

        ImageConfig { document }
    }

    fn config(&mut self) -> &mut Map<String, Value> {
        let config = self.document.entry("config").or_insert_with(|| json!({}));
        if !config.is_object() {
            *config = json!({});
        }
        config.as_object_mut().expect("config was made an object")
    }

    fn config_value(&self, key: &str) -> Option<&Value> {
        self.document
            .get("config")?
            .get(key)
            .filter(|value| !value.is_null())
    }

    pub fn env(&self) -> Vec<String> {
        string_array(self.config_value("Env"))
    }

    pub fn working_dir(&self) -> Option<String> {
        self.config_value("WorkingDir")
            .and_then(Value::as_str)
            .filter(|dir| !dir.is_empty())
            .map(str::to_string)
    }

    pub fn entrypoint(&self) -> Vec<String> {
        string_array(self.config_value("Entrypoint"))
    }

    pub fn cmd(&self) -> Vec<String> {
        string_array(self.config_value("Cmd"))
    }

    pub fn labels(&self) -> BTreeMap<String, String> {
        self.config_value("Labels")
            .and_then(Value::as_object)
            .map(|labels| {
                labels
                    .iter()
                    .filter_map(|(name, value)| Some((name.clone(), value.as_str()?.to_string())))
                    .collect()
            })
            .unwrap_or_default()
    }

    pub fn diff_ids(&self) -> Vec<String> {
        string_array(
            self.document
                .get("rootfs")
                .and_then(|rootfs| rootfs.get("diff_ids")),
        )
    }

    /// Sets variables, replacing those of the same name in place and
    /// appending new ones, as Docker's `ENV` does. As there, `$NAME` and
    /// `${NAME}` in a value expand to the variable's value before this step
    /// (empty when unset), and `\$` is a literal `$`.
    pub fn set_env(&mut self, vars: &BTreeMap<String, String>) {
        let mut env = self.env();
        let before: BTreeMap<String, String> = env
            .iter()
            .filter_map(|entry| entry.split_once('='))
            .map(|(name, value)| (name.to_string(), value.to_string()))
            .collect();
        for (name, value) in vars {
            let entry = format!("{name}={}", expand_variables(value, &before));
            let prefix = format!("{name}=");
            match env
                .iter_mut()
                .find(|existing| existing.starts_with(&prefix) || *existing == name)
            {
                Some(existing) => *existing = entry,
                None => env.push(entry),
            }
        }
        self.config().insert("Env".into(), json!(env));
    }

    pub fn set_working_dir(&mut self, path: &str) {
        self.config().insert("WorkingDir".into(), json!(path));
    }

    /// Sets the entrypoint and, as Docker's `ENTRYPOINT` does, clears a
    /// `Cmd` that came from the parent image. The key is removed rather than
    /// set to null, because the engine drops null keys when it stores a
    /// config. A config rebuilt from the store must match one written here,
    /// or a cached build would deliver a different image id.
    pub fn set_entrypoint(&mut self, args: &[String]) {
        let config = self.config();
        config.insert("Entrypoint".into(), json!(args));
        config.remove("Cmd");
    }

    pub fn set_cmd(&mut self, args: &[String]) {
        self.config().insert("Cmd".into(), json!(args));
    }

    pub fn set_user(&mut self, user: &str) {
        self.config().insert("User".into(), json!(user));
    }

    pub fn set_shell(&mut self, args: &[String]) {
        self.config().insert("Shell".into(), json!(args));
    }

    /// Replaces the imgscript labels with the given cache key and a digest
    /// of the current layer list.
    pub fn mark_cached(&mut self, key: &str) {
        let layers = layers_digest(&self.diff_ids());
        let history_entries = self
            .document
            .get("history")
            .and_then(Value::as_array)
            .map_or(0, Vec::len);
        self.without_cache_labels_in_place();
        let config = self.config();
        let labels = config.entry("Labels").or_insert_with(|| json!({}));
        if !labels.is_object() {
            *labels = json!({});
        }
        let labels = labels.as_object_mut().expect("labels were made an object");
        labels.insert(KEY_LABEL.into(), json!(key));
        labels.insert(LAYERS_LABEL.into(), json!(layers));
        labels.insert(HISTORY_LABEL.into(), json!(history_entries.to_string()));
    }

    /// Returns this config with the imgscript labels removed: the config of
    /// the image handed to the user.
    pub fn without_cache_labels(&self) -> Self {
        let mut config = self.clone();
        config.without_cache_labels_in_place();
        config
    }

    fn without_cache_labels_in_place(&mut self) {
        let config = self.config();
        let Some(labels) = config.get_mut("Labels").and_then(Value::as_object_mut) else {
            return;
        };
        labels.retain(|name, _| !name.starts_with("dev.imgscript."));
        if labels.is_empty() {
            config.insert("Labels".into(), Value::Null);
        }
    }

    /// Appends a layer with its history entry.
    pub fn push_layer(&mut self, diff_id: &str, created_by: &str) {
        let rootfs = self
            .document
            .entry("rootfs")
            .or_insert_with(|| json!({ "type": "layers" }));
        let mut diff_ids = string_array(rootfs.get("diff_ids"));
        diff_ids.push(diff_id.to_string());
        rootfs["diff_ids"] = json!(diff_ids);
        self.push_history(created_by, false);
    }

    /// Appends a history entry for a step that added no layer.
    pub fn push_config_history(&mut self, created_by: &str) {
        self.push_history(created_by, true);
    }

    fn push_history(&mut self, created_by: &str, empty_layer: bool) {
        let now = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
        self.document.insert("created".into(), json!(now));
        let mut entry = json!({ "created": now, "created_by": created_by });
        if empty_layer {
            entry["empty_layer"] = json!(true);
        } else {
            entry["comment"] = json!(LAYER_COMMENT);
        }
        let history = self.document.entry("history").or_insert_with(|| json!([]));
        if let Some(entries) = history.as_array_mut() {
            entries.push(entry);
        }
    }

    /// Serializes the config with sorted keys, so equal configs give equal
    /// bytes and equal image ids.
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(&self.document).expect("an image config serializes")
    }

    /// Returns the id `docker load` gives this config: `sha256:` and the
    /// digest of its bytes.
    pub fn image_id(&self) -> String {
        format!("sha256:{}", hex::encode(Sha256::digest(self.to_bytes())))
    }

    /// Builds the `docker load` archive: the config and a manifest whose
    /// layer entries name files that are absent, which the daemon accepts
    /// because it already has every layer.
    pub fn load_archive(&self) -> Vec<u8> {
        let bytes = self.to_bytes();
        let digest = hex::encode(Sha256::digest(&bytes));
        let config_name = format!("{digest}.json");
        let layers: Vec<String> = self
            .diff_ids()
            .iter()
            .map(|diff_id| format!("{}/layer.tar", diff_id.trim_start_matches("sha256:")))
            .collect();
        let manifest = json!([{ "Config": config_name, "RepoTags": null, "Layers": layers }]);
        let manifest = serde_json::to_vec(&manifest).expect("a manifest serializes");

        let mut archive = tar::Builder::new(Vec::new());
        for (name, content) in [(config_name.as_str(), &bytes), ("manifest.json", &manifest)] {
            let mut header = tar::Header::new_gnu();
            header.set_size(content.len() as u64);
            header.set_mode(0o644);
            header.set_mtime(crate::context::ARCHIVE_MTIME);
            header.set_entry_type(tar::EntryType::Regular);
            archive
                .append_data(&mut header, name, content.as_slice())
                .expect("writing to memory cannot fail");
        }
        archive.into_inner().expect("writing to memory cannot fail")
    }
}

/// Expands `$NAME` and `${NAME}` from `env`; `\$` stays a literal `$`.
fn expand_variables(value: &str, env: &BTreeMap<String, String>) -> String {
    let is_name_char = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let mut expanded = String::new();
    let mut rest = value;
    while let Some(index) = rest.find(['$', '\\']) {
        expanded.push_str(&rest[..index]);
        let tail = &rest[index..];
        if let Some(after) = tail.strip_prefix("\\$") {
            expanded.push('$');
            rest = after;
        } else if let Some(after) = tail.strip_prefix("${").filter(|after| after.contains('}')) {
            let end = after.find('}').expect("checked above");
            expanded.push_str(env.get(&after[..end]).map_or("", String::as_str));
            rest = &after[end + 1..];
        } else if tail.starts_with('$')
            && tail[1..].starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        {
            let name_length = tail[1..]
                .find(|c: char| !is_name_char(c))
                .unwrap_or(tail.len() - 1);
            expanded.push_str(
                env.get(&tail[1..1 + name_length])
                    .map_or("", String::as_str),
            );
            rest = &tail[1 + name_length..];
        } else {
            expanded.push_str(&tail[..1]);
            rest = &tail[1..];
        }
    }
    expanded.push_str(rest);
    expanded
}

/// Returns the SHA-256 of a layer list, as stored in [`LAYERS_LABEL`].
pub fn layers_digest(diff_ids: &[String]) -> String {
    hex::encode(Sha256::digest(diff_ids.join("\n").as_bytes()))
}

fn string_array(value: Option<&Value>) -> Vec<String> {
    value
        .and_then(Value::as_array)
        .map(|items| {
            items
                .iter()
                .filter_map(|item| item.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// Turns the history endpoint's entries (newest first, sizes but no
/// `empty_layer` flags) back into config history entries. An entry adds a
/// layer when its size is not zero or imgscript marked it. If that count
/// still falls short of the layer count, the newest zero-size entries are
/// taken as layers, so that the history has one layer entry per layer, as
/// `docker history` pairs them.
fn history_entries(history: &[ImageHistoryResponseItem], layer_count: usize) -> Vec<Value> {
    let oldest_first: Vec<&ImageHistoryResponseItem> = history.iter().rev().collect();
    let mut adds_layer: Vec<bool> = oldest_first
        .iter()
        .map(|item| item.size > 0 || item.comment == LAYER_COMMENT)
        .collect();

    let mut missing = layer_count.saturating_sub(adds_layer.iter().filter(|adds| **adds).count());
    for adds in adds_layer.iter_mut().rev() {
        if missing == 0 {
            break;
        }
        if !*adds {
            *adds = true;
            missing -= 1;
        }
    }

    oldest_first
        .iter()
        .zip(adds_layer)
        .map(|(item, adds)| {
            let created =
                std::time::UNIX_EPOCH + std::time::Duration::from_secs(item.created.max(0) as u64);
            let mut entry = json!({
                "created": humantime::format_rfc3339_seconds(created).to_string(),
                "created_by": item.created_by,
            });
            if !item.comment.is_empty() {
                entry["comment"] = json!(item.comment);
            }
            if !adds {
                entry["empty_layer"] = json!(true);
            }
            entry
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn history_item(size: i64, comment: &str) -> ImageHistoryResponseItem {
        ImageHistoryResponseItem {
            id: "<missing>".into(),
            created: 0,
            created_by: "step".into(),
            tags: Vec::new(),
            size,
            comment: comment.into(),
        }
    }

    fn empty_flags(entries: &[Value]) -> Vec<bool> {
        entries
            .iter()
            .map(|entry| entry.get("empty_layer").is_some())
            .collect()
    }

    #[test]
    fn history_marks_layers_by_size_and_comment() {
        // Newest first, as the history endpoint returns them.
        let history = [
            history_item(0, LAYER_COMMENT),
            history_item(0, ""),
            history_item(10, ""),
        ];
        assert_eq!(
            empty_flags(&history_entries(&history, 2)),
            [false, true, false]
        );
    }

    #[test]
    fn history_fills_missing_layers_from_newest() {
        let history = [
            history_item(0, ""),
            history_item(0, ""),
            history_item(10, ""),
        ];
        assert_eq!(
            empty_flags(&history_entries(&history, 2)),
            [false, true, false]
        );
    }

    #[test]
    fn env_replaces_in_place_and_appends() {
        let mut config = ImageConfig {
            document: serde_json::from_value(json!({ "config": { "Env": ["PATH=/bin", "A=1"] } }))
                .unwrap(),
        };
        config.set_env(&BTreeMap::from([
            ("A".to_string(), "2".to_string()),
            ("B".to_string(), "3".to_string()),
        ]));
        assert_eq!(config.env(), ["PATH=/bin", "A=2", "B=3"]);
    }

    #[test]
    fn env_values_expand_earlier_variables() {
        let env = BTreeMap::from([
            ("PATH".to_string(), "/usr/bin:/bin".to_string()),
            ("HOME".to_string(), "/root".to_string()),
        ]);
        let cases = [
            ("/venv/bin:$PATH", "/venv/bin:/usr/bin:/bin"),
            ("${HOME}/.local", "/root/.local"),
            ("$UNSET-x", "-x"),
            ("price \\$5", "price $5"),
            ("100%$", "100%$"),
            ("a\\b", "a\\b"),
            ("${PATH", "${PATH"),
        ];
        for (value, expected) in cases {
            assert_eq!(expand_variables(value, &env), expected, "{value}");
        }
    }

    #[test]
    fn cache_labels_come_off_the_delivered_config() {
        let mut config = ImageConfig {
            document: serde_json::from_value(
                json!({ "config": { "Labels": null }, "rootfs": { "diff_ids": ["sha256:a"] } }),
            )
            .unwrap(),
        };
        config.mark_cached("k");
        assert_eq!(
            config.labels().get(KEY_LABEL).map(String::as_str),
            Some("k")
        );
        let delivered = config.without_cache_labels();
        assert!(delivered.labels().is_empty());
        assert_eq!(delivered.config_value("Labels"), None);
    }

    #[test]
    fn image_id_is_stable() {
        let config = ImageConfig {
            document: serde_json::from_value(json!({ "b": 1, "a": 2 })).unwrap(),
        };
        assert_eq!(config.image_id(), config.clone().image_id());
        assert_eq!(config.to_bytes(), br#"{"a":2,"b":1}"#);
    }
}
