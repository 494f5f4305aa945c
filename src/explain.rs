//! Explained plans: for every step to build, what changed since the step
//! was last built.
//!
//! A cache key is a hash, so a miss alone cannot tell which input differs.
//! After building a step, the executor therefore records the step's input
//! manifest next to its key: each named input (a command, an option, an
//! environment variable) and the digest of each local file it read. To
//! explain a miss, the planner finds the manifest of the last build of the
//! same step (the same call in the script, on the same parent when
//! possible) and compares the two.
//!
//! Manifests live in the cache folder. They are small, local and safe to
//! lose: a missing or unreadable one only makes an explanation vaguer.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tracing::debug;

use crate::context::LocalContext;
use crate::image::{BaseImage, ConfigChange, Layer, Step};
use crate::plan::{Plan, PlannedStep, Reason, Status};

/// Maximum length of an input value an explanation quotes; longer ones
/// are only named.
const QUOTED_VALUE_LIMIT: usize = 100;

/// Maximum number of paths an explanation lists per kind of file change.
const LISTED_PATHS_LIMIT: usize = 10;

/// The inputs a step read when it was built.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InputManifest {
    /// The builder function, such as `apt_install`.
    pub function: String,
    /// The parent's cache key; empty for a base or a Dockerfile.
    pub parent: String,
    /// Each input by name, such as `command 1` or `env PATH`.
    pub inputs: BTreeMap<String, String>,
    /// Each local file by path, with its digest.
    pub files: BTreeMap<String, String>,
}

impl InputManifest {
    /// Describes the inputs of `layer`, whose parent has `parent_key` and
    /// which reads `input_key` (the image id of a base, the source key of a
    /// `copy_from`).
    pub fn of(layer: &Layer, parent_key: Option<&str>, input_key: Option<&str>) -> Self {
        let mut manifest = InputManifest {
            function: layer.call.function.clone(),
            parent: parent_key.unwrap_or_default().to_string(),
            inputs: BTreeMap::new(),
            files: BTreeMap::new(),
        };
        manifest.add_step(&layer.step, input_key.unwrap_or_default());
        manifest
    }

    /// Describes the inputs of step `index` of a plan.
    pub fn of_planned(plan: &Plan, index: usize) -> Self {
        let step = &plan.steps[index];
        let parent_key = step
            .parent
            .and_then(|parent| plan.steps[parent].key.as_deref());
        let input_key = match (&step.status, step.source) {
            (_, Some(source)) => plan.steps[source].key.as_deref(),
            (Status::Cached { image_id }, None) if step.parent.is_none() => Some(image_id.as_str()),
            _ => None,
        };
        InputManifest::of(&step.layer, parent_key, input_key)
    }

    fn input(&mut self, name: impl Into<String>, value: impl Into<String>) {
        self.inputs.insert(name.into(), value.into());
    }

    fn numbered(&mut self, name: &str, values: &[String]) {
        for (number, value) in values.iter().enumerate() {
            self.input(format!("{name} {}", number + 1), value.clone());
        }
    }

    fn add_step(&mut self, step: &Step, input_key: &str) {
        match step {
            Step::Base(base) => {
                let reference = match base {
                    BaseImage::Registry { reference, .. } | BaseImage::Id(reference) => reference,
                };
                self.input("reference", reference.clone());
                self.input("image id", input_key);
            }
            Step::Run(run) => {
                self.numbered("command", &run.commands);
                if let Some(seconds) = run.timeout_seconds {
                    self.input("timeout", format!("{seconds}s"));
                }
                if let Some(build) = &run.python_build {
                    self.input("python build", build.file_name());
                }
                if let Some(gpu) = &run.gpu {
                    self.input("gpu", gpu.to_string());
                }
                for secret in &run.secrets {
                    // Only the name: a secret's value is never recorded.
                    self.input(format!("secret {}", secret.name), "");
                }
                if let Some(staged) = &run.staged_files {
                    for (path, digest) in staged.file_digests() {
                        self.files.insert(path, digest);
                    }
                }
            }
            Step::Config(change) => self.add_config_change(change),
            Step::Copy(copy) => {
                self.input("destination", copy.destination.clone());
                self.add_context(&copy.context);
            }
            Step::CopyFrom(copy) => {
                self.input("source image", input_key);
                self.input("source path", copy.source_path.clone());
                self.input("destination", copy.destination.clone());
            }
            Step::Dockerfile(dockerfile) => {
                self.numbered("Dockerfile line", &lines_of(&dockerfile.text));
                for (name, value) in &dockerfile.build_args {
                    self.input(format!("build arg {name}"), value.clone());
                }
                self.add_context(&dockerfile.context);
            }
            Step::DockerfileCommands(commands) => {
                self.numbered("line", &commands.lines);
                for (name, value) in &commands.build_args {
                    self.input(format!("build arg {name}"), value.clone());
                }
                if let Some(context) = &commands.context {
                    self.add_context(context);
                }
            }
        }
    }

    fn add_config_change(&mut self, change: &ConfigChange) {
        match change {
            ConfigChange::Env(vars) => {
                for (name, value) in vars {
                    self.input(format!("env {name}"), value.clone());
                }
            }
            ConfigChange::Workdir(path) => self.input("workdir", path.clone()),
            ConfigChange::Entrypoint(args) => self.input("entrypoint", format!("{args:?}")),
            ConfigChange::Cmd(args) => self.input("cmd", format!("{args:?}")),
            ConfigChange::Shell(args) => self.input("shell", format!("{args:?}")),
            ConfigChange::User(user) => self.input("user", user.clone()),
        }
    }

    fn add_context(&mut self, context: &LocalContext) {
        for (path, digest) in context.entry_digests() {
            self.files.insert(path, digest);
        }
    }
}

fn lines_of(text: &str) -> Vec<String> {
    text.lines().map(str::to_string).collect()
}

/// The reason one step of a plan builds, with the changes behind it where
/// they are known.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Explanation {
    /// The planner's reason, as [`Reason::describe`] words it.
    pub reason: String,
    /// The differences from the last build of the step, one line each.
    pub changes: Vec<String>,
}

/// One difference between a step's last build and now.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Change {
    InputChanged {
        name: String,
        before: String,
        after: String,
    },
    InputAdded {
        name: String,
        value: String,
    },
    InputRemoved {
        name: String,
    },
    FilesAdded(Vec<String>),
    FilesRemoved(Vec<String>),
    FilesModified(Vec<String>),
}

impl std::fmt::Display for Change {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Change::InputChanged {
                name,
                before,
                after,
            } => match (quotable(before), quotable(after)) {
                (true, true) => write!(formatter, "{name} changed: {before:?} -> {after:?}"),
                _ => write!(formatter, "{name} changed"),
            },
            Change::InputAdded { name, value } if quotable(value) && !value.is_empty() => {
                write!(formatter, "{name} added: {value:?}")
            }
            Change::InputAdded { name, .. } => write!(formatter, "{name} added"),
            Change::InputRemoved { name } => write!(formatter, "{name} removed"),
            Change::FilesAdded(paths) => write!(formatter, "files added: {}", list(paths)),
            Change::FilesRemoved(paths) => write!(formatter, "files removed: {}", list(paths)),
            Change::FilesModified(paths) => write!(formatter, "files modified: {}", list(paths)),
        }
    }
}

fn quotable(value: &str) -> bool {
    value.len() <= QUOTED_VALUE_LIMIT && !value.contains('\n')
}

/// Lists the first paths, and how many more there are.
fn list(paths: &[String]) -> String {
    let shown: Vec<&str> = paths
        .iter()
        .take(LISTED_PATHS_LIMIT)
        .map(String::as_str)
        .collect();
    match paths.len().saturating_sub(LISTED_PATHS_LIMIT) {
        0 => shown.join(", "),
        more => format!("{} and {more} more", shown.join(", ")),
    }
}

/// Compares the manifest of a step's last build with the current one.
fn compare(before: &InputManifest, after: &InputManifest) -> Vec<Change> {
    let mut changes = Vec::new();
    for (name, value) in &after.inputs {
        match before.inputs.get(name) {
            Some(old) if old == value => {}
            Some(old) => changes.push(Change::InputChanged {
                name: name.clone(),
                before: old.clone(),
                after: value.clone(),
            }),
            None => changes.push(Change::InputAdded {
                name: name.clone(),
                value: value.clone(),
            }),
        }
    }
    for name in before.inputs.keys() {
        if !after.inputs.contains_key(name) {
            changes.push(Change::InputRemoved { name: name.clone() });
        }
    }

    let paths_where = |from: &InputManifest, to: &InputManifest| -> Vec<String> {
        from.files
            .keys()
            .filter(|path| !to.files.contains_key(*path))
            .cloned()
            .collect()
    };
    let added = paths_where(after, before);
    let removed = paths_where(before, after);
    let modified: Vec<String> = after
        .files
        .iter()
        .filter(|(path, digest)| before.files.get(*path).is_some_and(|old| old != *digest))
        .map(|(path, _)| path.clone())
        .collect();
    for (paths, change) in [
        (added, Change::FilesAdded as fn(Vec<String>) -> Change),
        (removed, Change::FilesRemoved),
        (modified, Change::FilesModified),
    ] {
        if !paths.is_empty() {
            changes.push(change(paths));
        }
    }
    changes
}

/// The manifests of built steps, under the cache folder: one file per
/// cache key, and for each script call the key of its last build, once per
/// parent and once for any parent.
pub struct ManifestStore {
    /// `None` when no cache folder can be found, which turns the store off.
    folder: Option<PathBuf>,
}

impl ManifestStore {
    pub fn open() -> Self {
        ManifestStore {
            folder: crate::cache_index::cache_folder().map(|folder| folder.join("manifests")),
        }
    }

    /// Records the manifest of a step just built under `key`. Failures are
    /// logged and otherwise ignored: they only make explanations vaguer.
    pub fn record(&self, step: &PlannedStep, key: &str, manifest: &InputManifest) {
        let Some(folder) = &self.folder else { return };
        let location = absolute_location(step);
        let manifest_path = folder.join(key);
        if let Err(error) = write_manifest(&manifest_path, manifest) {
            debug!(path = %manifest_path.display(), %error, "failed to record an input manifest");
        }
        for path in [
            self.last_build_path(&location, Some(&manifest.parent)),
            self.last_build_path(&location, None),
        ] {
            if let Err(error) = write_atomically(&path, |file| file.write_all(key.as_bytes())) {
                debug!(path = %path.display(), %error, "failed to record an input manifest");
            }
        }
    }

    /// Records the manifest of a step that is never built, such as a base
    /// image, so that a later plan can name what it was.
    pub fn record_unbuilt(&self, key: &str, manifest: &InputManifest) {
        let Some(folder) = &self.folder else { return };
        let path = folder.join(key);
        if path.exists() {
            return;
        }
        if let Err(error) = write_manifest(&path, manifest) {
            debug!(path = %path.display(), %error, "failed to record an input manifest");
        }
    }

    fn load(&self, key: &str) -> Option<InputManifest> {
        let folder = self.folder.as_ref()?;
        let file = fs::File::open(folder.join(key)).ok()?;
        serde_json::from_reader(std::io::BufReader::new(file)).ok()
    }

    /// Returns the key of the last build of the call at `location`, on
    /// `parent` or, with `None`, on any parent.
    fn last_build(&self, location: &str, parent: Option<&str>) -> Option<String> {
        let text = fs::read_to_string(self.last_build_path(location, parent)).ok()?;
        Some(text.trim().to_string())
    }

    fn last_build_path(&self, location: &str, parent: Option<&str>) -> PathBuf {
        let mut hasher = Sha256::new();
        hasher.update(location.as_bytes());
        hasher.update([0]);
        hasher.update(parent.unwrap_or("any parent").as_bytes());
        let name = hex::encode(&hasher.finalize()[..16]);
        self.folder
            .clone()
            .unwrap_or_default()
            .join("last-build")
            .join(name)
    }
}

/// Writes `manifest` as JSON, streamed: the manifest of a folder of
/// 100,000 files is megabytes long.
fn write_manifest(path: &std::path::Path, manifest: &InputManifest) -> std::io::Result<()> {
    write_atomically(path, |file| {
        let mut writer = std::io::BufWriter::new(file);
        serde_json::to_writer(&mut writer, manifest)?;
        writer.flush()
    })
}

/// Writes a file through a temporary file and a rename, so a reader never
/// sees half of it.
fn write_atomically(
    path: &std::path::Path,
    write: impl FnOnce(&mut fs::File) -> std::io::Result<()>,
) -> std::io::Result<()> {
    let folder = path.parent().expect("store paths have a folder");
    fs::create_dir_all(folder)?;
    let mut file = tempfile::NamedTempFile::new_in(folder)?;
    write(file.as_file_mut())?;
    file.persist(path).map_err(|error| error.error)?;
    Ok(())
}

/// Explains every step of `plan` that builds; `None` for the others.
pub fn explain(plan: &Plan, store: &ManifestStore) -> Vec<Option<Explanation>> {
    (0..plan.steps.len())
        .map(|index| explain_step(plan, index, store))
        .collect()
}

fn explain_step(plan: &Plan, index: usize, store: &ManifestStore) -> Option<Explanation> {
    let step = &plan.steps[index];
    let Status::Build(reason) = step.status else {
        return None;
    };
    let changes = match reason {
        Reason::NotCached => changes_since_last_build(plan, index, store),
        Reason::ParentRebuilt => step
            .parent
            .map(|parent| vec![format!("the step at {} builds", location_of(plan, parent))])
            .unwrap_or_default(),
        Reason::SourceRebuilt => step
            .source
            .map(|source| vec![format!("the step at {} builds", location_of(plan, source))])
            .unwrap_or_default(),
        Reason::Forced | Reason::BaseForced | Reason::BaseMissing => Vec::new(),
    };
    Some(Explanation {
        reason: reason.describe().to_string(),
        changes,
    })
}

/// Returns the call's location with the script's absolute path, so that two
/// projects' `build.img` never share records.
fn absolute_location(step: &PlannedStep) -> String {
    let call = &step.layer.call;
    let path = std::path::absolute(&call.script.path).unwrap_or_else(|_| call.script.path.clone());
    format!("{}:{}:{}", path.display(), call.line, call.column)
}

fn location_of(plan: &Plan, index: usize) -> String {
    plan.steps[index].layer.call.location()
}

/// Compares a step that is not cached with the last build of the same call.
fn changes_since_last_build(plan: &Plan, index: usize, store: &ManifestStore) -> Vec<String> {
    let step = &plan.steps[index];
    let current = InputManifest::of_planned(plan, index);
    let location = absolute_location(step);
    let Some(key) = step.key.as_deref() else {
        return Vec::new();
    };

    let on_same_parent = store.last_build(&location, Some(&current.parent));
    let last_key = on_same_parent.or_else(|| store.last_build(&location, None));
    let Some(last_key) = last_key else {
        return vec!["no earlier build of this step is recorded".to_string()];
    };
    if last_key == key {
        return vec!["its cached layer was removed from the image store".to_string()];
    }
    let Some(last) = store.load(&last_key) else {
        return vec!["the record of its last build is missing".to_string()];
    };

    let mut changes: Vec<String> = Vec::new();
    if last.parent != current.parent {
        changes.push(parent_change(plan, index, &last, store));
    }
    changes.extend(compare(&last, &current).iter().map(Change::to_string));
    if changes.is_empty() {
        changes.push("it was last built by an imgscript with another cache encoding".to_string());
    }
    changes
}

/// Says how the step before differs from the one the step was last built
/// on, naming the image ids where that step is a base image.
fn parent_change(plan: &Plan, index: usize, last: &InputManifest, store: &ManifestStore) -> String {
    let parent = plan.steps[index]
        .parent
        .expect("only steps with a parent get here");
    let layer = &plan.steps[parent].layer;
    let (Step::Base(base), Status::Cached { image_id }) = (&layer.step, &plan.steps[parent].status)
    else {
        return format!("the step before it changed: {}", location_of(plan, parent));
    };
    let earlier_id = store
        .load(&last.parent)
        .and_then(|manifest| manifest.inputs.get("image id").cloned());
    match earlier_id {
        Some(earlier) => format!(
            "base image {} changed: {} -> {}",
            base.reference(),
            short_id(&earlier),
            short_id(image_id)
        ),
        None => format!(
            "base image {} is now {}",
            base.reference(),
            short_id(image_id)
        ),
    }
}

fn short_id(image_id: &str) -> &str {
    let hex = image_id.strip_prefix("sha256:").unwrap_or(image_id);
    &hex[..hex.len().min(12)]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(inputs: &[(&str, &str)], files: &[(&str, &str)]) -> InputManifest {
        InputManifest {
            function: "run_commands".to_string(),
            parent: "parent".to_string(),
            inputs: inputs
                .iter()
                .map(|(name, value)| (name.to_string(), value.to_string()))
                .collect(),
            files: files
                .iter()
                .map(|(path, digest)| (path.to_string(), digest.to_string()))
                .collect(),
        }
    }

    fn described(changes: Vec<Change>) -> Vec<String> {
        changes.iter().map(Change::to_string).collect()
    }

    #[test]
    fn names_changed_added_and_removed_inputs() {
        let before = manifest(&[("command 1", "echo a"), ("gpu", "any")], &[]);
        let after = manifest(&[("command 1", "echo b"), ("timeout", "60s")], &[]);
        assert_eq!(
            described(compare(&before, &after)),
            [
                "command 1 changed: \"echo a\" -> \"echo b\"",
                "timeout added: \"60s\"",
                "gpu removed",
            ]
        );
    }

    #[test]
    fn names_added_removed_and_modified_files() {
        let before = manifest(&[], &[("a.txt", "1"), ("b.txt", "2"), ("c.txt", "3")]);
        let after = manifest(&[], &[("a.txt", "1"), ("b.txt", "20"), ("d.txt", "4")]);
        assert_eq!(
            described(compare(&before, &after)),
            [
                "files added: d.txt",
                "files removed: c.txt",
                "files modified: b.txt",
            ]
        );
    }

    #[test]
    fn long_values_are_named_not_quoted() {
        let long = "x".repeat(QUOTED_VALUE_LIMIT + 1);
        let before = manifest(&[("command 1", "echo a")], &[]);
        let after = manifest(&[("command 1", &long)], &[]);
        assert_eq!(described(compare(&before, &after)), ["command 1 changed"]);
    }

    #[test]
    fn long_path_lists_are_cut() {
        let paths: Vec<String> = (0..12).map(|number| format!("f{number:02}")).collect();
        assert_eq!(
            list(&paths),
            "f00, f01, f02, f03, f04, f05, f06, f07, f08, f09 and 2 more"
        );
    }
}
