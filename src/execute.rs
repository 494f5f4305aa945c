//! The executor: builds the steps a [`Plan`] marks, parents first, and
//! delivers each target as an image without imgscript's cache labels.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use futures_util::stream::{FuturesUnordered, StreamExt};

use crate::backend::{
    relocate_archive, BuildEnvironment, Docker, ImageConfig, StepContainer, StepOutcome,
    StreamedTar,
};
use crate::build_lock;
use crate::cache_index::CacheIndex;
use crate::context::{ContextError, ContextKind, LocalContext};
use crate::diagnostics::{DockerfileFailed, Error, StepFailed, StepTimedOut};
use crate::explain::{InputManifest, ManifestStore};
use crate::image::{ConfigChange, CopyStep, DockerfileStep, Layer, Step};
use crate::plan::{Plan, PlannedTarget, Reason, Status};
use crate::progress::{Progress, StepInfo};
use crate::python_build::PythonBuild;
use crate::secret::{write_secret_file, SecretFile};

/// A built or cached step: its image id and, once read, its config.
#[derive(Clone)]
struct StepImage {
    id: String,
    config: Option<ImageConfig>,
}

/// An image handed to the user.
#[derive(Debug, Clone)]
pub struct Delivered {
    pub name: Option<String>,
    pub image_id: String,
    pub tag: Option<String>,
}

pub struct Executor<'a> {
    docker: &'a Docker,
    cache_index: &'a CacheIndex,
    environment: &'a BuildEnvironment,
    progress: &'a dyn Progress,
    manifests: ManifestStore,
    jobs: usize,
}

/// Returns the number of steps built at once unless `--jobs` sets it: one per
/// CPU.
pub fn default_jobs() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

impl<'a> Executor<'a> {
    pub fn new(
        docker: &'a Docker,
        cache_index: &'a CacheIndex,
        environment: &'a BuildEnvironment,
        progress: &'a dyn Progress,
    ) -> Self {
        Executor {
            docker,
            cache_index,
            environment,
            progress,
            manifests: ManifestStore::open(),
            jobs: default_jobs(),
        }
    }

    /// Sets how many steps may build at the same time; at least one.
    pub fn jobs(mut self, jobs: usize) -> Self {
        self.jobs = jobs.max(1);
        self
    }

    /// Builds every step the plan marks and returns the delivered targets.
    /// `tag_override` replaces the script's tag of a single target.
    pub async fn run(
        &self,
        plan: &Plan,
        tag_override: Option<&str>,
    ) -> Result<Vec<Delivered>, Error> {
        // Only a run that builds: the listings would double a no-op run's
        // time, and leftovers wait well enough for the next build.
        if plan.steps_to_build() > 0 {
            self.docker.remove_leftovers_of_ended_runs().await;
        }
        let delivered = match self.build_all(plan).await {
            Ok(mut images) => self.deliver_all(plan, &mut images, tag_override).await,
            Err(error) => Err(error),
        };
        // Removing build containers overlaps the later steps; a run ends
        // only once they are gone.
        self.docker.finish_removals().await;
        delivered
    }

    async fn deliver_all(
        &self,
        plan: &Plan,
        images: &mut StepImages,
        tag_override: Option<&str>,
    ) -> Result<Vec<Delivered>, Error> {
        let mut delivered = Vec::new();
        for target in &plan.targets {
            let image = images.images[target.step]
                .as_mut()
                .expect("targets are always built or cached");
            delivered.push(self.deliver(target, image, tag_override).await?);
        }
        Ok(delivered)
    }

    /// Builds the steps to build, each as soon as the steps it reads are
    /// done, at most `jobs` at a time, and returns the image of every step
    /// the build or a target uses. On the first failure the steps still
    /// running are dropped; the caller removes their containers.
    async fn build_all(&self, plan: &Plan) -> Result<StepImages, Error> {
        let mut images = StepImages::new(plan);
        let mut schedule = Schedule::new(plan);

        for (index, step) in plan.steps.iter().enumerate() {
            if let Status::Cached { image_id } = &step.status {
                self.progress.step_cached(&StepInfo::of(plan, index));
                if let (Step::Base(_), Some(key)) = (&step.layer.step, &step.key) {
                    let manifest = InputManifest::of_planned(plan, index);
                    self.manifests.record_unbuilt(key, &manifest);
                }
                images.insert(
                    index,
                    StepImage {
                        id: image_id.clone(),
                        config: None,
                    },
                );
            }
        }

        let mut running = FuturesUnordered::new();
        loop {
            while running.len() < self.jobs {
                let Some(index) = schedule.next_ready() else {
                    break;
                };
                let step = &plan.steps[index];
                let parent = step.parent.and_then(|parent| images.read(parent));
                let source_id = step
                    .source
                    .and_then(|source| images.read(source).map(|image| image.id));
                let building = self.build_planned(plan, index, parent, source_id);
                running.push(async move { (index, building.await) });
            }

            let Some((index, built)) = running.next().await else {
                break;
            };
            images.insert(index, built?);
            schedule.finished(index);
        }
        Ok(images)
    }

    /// Builds step `index` of the plan, unless another process built it
    /// since the plan was made.
    async fn build_planned(
        &self,
        plan: &Plan,
        index: usize,
        parent: Option<StepImage>,
        source_id: Option<String>,
    ) -> Result<StepImage, Error> {
        let step = &plan.steps[index];
        let info = StepInfo::of(plan, index);
        let Status::Build(reason) = &step.status else {
            unreachable!("only steps to build are scheduled")
        };
        let key = step
            .key
            .as_deref()
            .expect("bases are pulled before building");

        // Another process may have built this step since the plan was
        // made, or be building it now. A forced step is rebuilt all the
        // same.
        let _lock = self.lock_key(key, &info).await?;
        let reusable = !is_forced(plan, index);
        if let Some(id) = self.built_meanwhile(key, reusable).await? {
            self.progress.step_cached(&info);
            return Ok(StepImage { id, config: None });
        }

        self.progress.step_started(&info, reason.describe());
        let started = Instant::now();
        let built = self
            .build_step(&info, &step.layer, key, parent, source_id.as_deref())
            .await
            .inspect_err(|error| {
                self.progress
                    .step_failed(&info, started.elapsed(), &error.to_string())
            })?;
        self.cache_index.record(key, &built.id);
        self.manifests
            .record(step, key, &InputManifest::of_planned(plan, index));
        self.docker.remove_stale(step.stale_images()).await;
        self.progress.step_finished(&info, started.elapsed());
        Ok(built)
    }

    /// Loads a target's image without cache labels and tags it.
    async fn deliver(
        &self,
        target: &PlannedTarget,
        image: &mut StepImage,
        tag_override: Option<&str>,
    ) -> Result<Delivered, Error> {
        let config = self.config_of(image).await?.without_cache_labels();
        let image_id = self.docker.load(&config).await?;

        let tag = tag_override
            .map(str::to_string)
            .or_else(|| target.image.tag.clone());
        if let Some(tag) = &tag {
            let current = self
                .docker
                .inspect(tag)
                .await?
                .and_then(|inspect| inspect.id);
            if current.as_deref() != Some(image_id.as_str()) {
                self.docker.tag(&image_id, tag).await?;
            }
        }
        Ok(Delivered {
            name: target.name.clone(),
            image_id,
            tag,
        })
    }

    async fn config_of<'i>(&self, image: &'i mut StepImage) -> Result<&'i ImageConfig, Error> {
        if image.config.is_none() {
            let inspect =
                self.docker
                    .inspect(&image.id)
                    .await?
                    .ok_or_else(|| Error::ImageIdNotFound {
                        reference: image.id.clone(),
                    })?;
            image.config = Some(self.docker.image_config(&inspect).await?);
        }
        Ok(image.config.as_ref().expect("config was just read"))
    }

    async fn build_step(
        &self,
        info: &StepInfo,
        layer: &Arc<Layer>,
        key: &str,
        parent: Option<StepImage>,
        source_id: Option<&str>,
    ) -> Result<StepImage, Error> {
        if let Step::Dockerfile(dockerfile) = &layer.step {
            return self.build_dockerfile(info, layer, dockerfile, key).await;
        }
        let mut parent = parent.expect("only base and Dockerfile steps have no parent");
        let parent_id = parent.id.clone();
        if let Step::DockerfileCommands(commands) = &layer.step {
            let dockerfile = DockerfileStep {
                path: PathBuf::new(),
                written_as: "dockerfile_commands".to_string(),
                text: format!("FROM {parent_id}\n{}\n", commands.lines.join("\n")),
                context: commands
                    .context
                    .clone()
                    .unwrap_or_else(|| Arc::new(LocalContext::empty())),
                build_args: commands.build_args.clone(),
            };
            return self.build_dockerfile(info, layer, &dockerfile, key).await;
        }
        let mut config = self.config_of(&mut parent).await?.clone();
        let created_by = format!("imgscript: {}", layer.describe());

        let commit = match &layer.step {
            Step::Base(_) | Step::Dockerfile(_) | Step::DockerfileCommands(_) => {
                unreachable!("handled above")
            }
            Step::CopyFrom(copy) => {
                let source_id = source_id.expect("copy_from sources are built before the step");
                let exported = self
                    .docker
                    .export_path(source_id, &copy.source_path)
                    .await?;
                let relocate = |destination_is_folder| {
                    relocate_archive(
                        &exported,
                        &copy.source_path,
                        &copy.destination,
                        destination_is_folder,
                    )
                    .map_err(|error| {
                        Error::docker(
                            format!("copying {} out of its image", copy.source_path),
                            error,
                        )
                    })
                };
                let commit = self
                    .docker
                    .copy_step(&parent_id, &copy.destination, relocate)
                    .await?;
                add_committed_layer(&mut config, &commit.layers, &created_by);
                Some(commit)
            }
            Step::Config(change) => {
                apply_config_change(&mut config, change);
                config.push_config_history(&created_by);
                None
            }
            Step::Run(run) => {
                let progress = self.progress;
                let mut output = |line: &str| progress.step_output(info, line);
                let secret_file = match run.secrets.is_empty() {
                    true => None,
                    false => {
                        Some(
                            write_secret_file(&run.secrets).map_err(|error| Error::Read {
                                path: std::env::temp_dir(),
                                reason: format!("failed to write a secret file: {error}"),
                            })?,
                        )
                    }
                };
                let secret_path = secret_file.as_ref().map(SecretFile::path);
                let staged_folder = match &run.staged_files {
                    Some(files) => Some(files.stage().map_err(|error| Error::Read {
                        path: files.root.clone(),
                        reason: error.to_string(),
                    })?),
                    None => None,
                };
                let python_archive = match &run.python_build {
                    Some(build) => Some(fetch_python(build, info, self.progress).await?),
                    None => None,
                };
                match self
                    .docker
                    .run_step(
                        &parent_id,
                        &StepContainer {
                            commands: &run.commands,
                            secret_file: secret_path.as_deref(),
                            staged_folder: staged_folder.as_ref().map(tempfile::TempDir::path),
                            python_archive: python_archive.as_deref(),
                            gpu: run.gpu.as_ref(),
                            timeout: run.timeout_seconds.map(std::time::Duration::from_secs),
                        },
                        self.environment,
                        &mut output,
                    )
                    .await
                    .map_err(|error| match error {
                        Error::GpuUnavailable(mut gpu) => {
                            gpu.source_code = Some(layer.call.named_source());
                            gpu.span = Some(layer.call.span());
                            Error::GpuUnavailable(gpu)
                        }
                        other => other,
                    })? {
                    StepOutcome::Committed(commit) => {
                        add_committed_layer(&mut config, &commit.layers, &created_by);
                        Some(commit)
                    }
                    StepOutcome::Failed(failure) => {
                        let command = run.shown_command(failure.index);
                        let output_tail = failure.output_tail.join("\n");
                        return Err(Box::new(StepFailed {
                            function: layer.call.function.clone(),
                            command,
                            exit_code: failure.exit_code,
                            help: StepFailed::help_for(&output_tail),
                            output_tail,
                            source_code: layer.call.named_source(),
                            span: layer.call.span(),
                        })
                        .into());
                    }
                    StepOutcome::TimedOut { limit, output_tail } => {
                        return Err(Box::new(StepTimedOut {
                            function: layer.call.function.clone(),
                            seconds: limit.as_secs(),
                            help: format!(
                                "the last lines of its output:\n{}",
                                output_tail.join("\n")
                            ),
                            source_code: layer.call.named_source(),
                            span: layer.call.span(),
                        })
                        .into());
                    }
                }
            }
            Step::Copy(copy) => {
                let pack = |destination_is_folder| pack_local_files(copy, destination_is_folder);
                let commit = self
                    .docker
                    .copy_step(&parent_id, &copy.destination, pack)
                    .await?;
                add_committed_layer(&mut config, &commit.layers, &created_by);
                Some(commit)
            }
        };

        config.mark_cached(key);
        let id = self.docker.load(&config).await?;
        if let Some(commit) = &commit {
            self.docker.discard_commit(commit).await;
        }
        Ok(StepImage {
            id,
            config: Some(config),
        })
    }
}

impl Executor<'_> {
    /// Builds a Dockerfile with the engine's build endpoint, then loads the
    /// result's config with the step's cache labels, as every step image
    /// gets, and drops the image the build made.
    async fn build_dockerfile(
        &self,
        info: &StepInfo,
        layer: &Layer,
        dockerfile: &DockerfileStep,
        key: &str,
    ) -> Result<StepImage, Error> {
        let (archive, dockerfile_name) =
            dockerfile_archive(dockerfile).map_err(|error| Error::Read {
                path: dockerfile.context.source.clone(),
                reason: error.to_string(),
            })?;

        let progress = self.progress;
        let mut output = |line: &str| progress.step_output(info, line);
        let built = match self
            .docker
            .build_dockerfile(
                archive,
                &dockerfile_name,
                &dockerfile.build_args,
                &mut output,
            )
            .await?
        {
            Ok(image_id) => image_id,
            Err(failure) => {
                return Err(Box::new(DockerfileFailed {
                    message: failure.message,
                    help: format!(
                        "the last lines of its output:\n{}",
                        failure.output_tail.join("\n")
                    ),
                    source_code: layer.call.named_source(),
                    span: layer.call.span(),
                })
                .into())
            }
        };

        let inspect = self
            .docker
            .inspect(&built)
            .await?
            .ok_or_else(|| Error::ImageIdNotFound {
                reference: built.clone(),
            })?;
        let mut config = self.docker.image_config(&inspect).await?;
        config.mark_cached(key);
        let id = self.docker.load(&config).await?;
        self.docker.remove_stale(std::slice::from_ref(&built)).await;
        Ok(StepImage {
            id,
            config: Some(config),
        })
    }
}

/// Name a Dockerfile from outside its context gets inside the build archive.
const ADDED_DOCKERFILE_NAME: &str = ".dockerfile.imgscript";

impl Executor<'_> {
    /// Takes the lock that keeps other imgscript processes from building
    /// the step of `key` at the same time, saying so when it must wait.
    async fn lock_key(&self, key: &str, info: &StepInfo) -> Result<build_lock::KeyLock, Error> {
        let acquired = build_lock::acquire(key)
            .await
            .map_err(|error| Error::Read {
                path: PathBuf::from("the cache folder's locks"),
                reason: format!("failed to lock a cache key: {error}"),
            })?;
        match acquired {
            build_lock::Acquired::Free(lock) => Ok(lock),
            build_lock::Acquired::AfterWaiting(lock) => {
                self.progress.step_output(
                    info,
                    "waited for another imgscript process that built this step",
                );
                Ok(lock)
            }
        }
    }

    /// Returns the image of `key` when another process recorded one after
    /// this run's plan was made, checked against its labels.
    async fn built_meanwhile(&self, key: &str, reusable: bool) -> Result<Option<String>, Error> {
        if !reusable {
            return Ok(None);
        }
        let Some(image_id) = self.cache_index.lookup(key) else {
            return Ok(None);
        };
        let verified = self.docker.verify_cached(&image_id, key).await?;
        Ok(verified.map(|_| image_id))
    }
}

/// Checks whether step `index` rebuilds because it, or a step it depends on, is
/// forced.
fn is_forced(plan: &Plan, index: usize) -> bool {
    let step = &plan.steps[index];
    let forced_here = matches!(
        step.status,
        Status::Build(Reason::Forced | Reason::BaseForced)
    );
    forced_here
        || step
            .dependencies()
            .any(|dependency| is_forced(plan, dependency))
}

/// Returns the local path of a Python build archive, downloading it on a
/// blocking thread when the download cache lacks it.
async fn fetch_python(
    build: &PythonBuild,
    info: &StepInfo,
    progress: &dyn Progress,
) -> Result<PathBuf, Error> {
    progress.step_output(
        info,
        &format!(
            "using Python {} ({})",
            build.full_version,
            build.file_name()
        ),
    );
    let build = build.clone();
    match tokio::task::spawn_blocking(move || build.fetch()).await {
        Ok(fetched) => Ok(fetched?),
        // The download thread only ends without a result when it panicked.
        Err(error) => std::panic::resume_unwind(error.into_panic()),
    }
}

/// Packs a Dockerfile's context into an archive that is written while the
/// engine reads it, and returns it with the Dockerfile's name in it. A
/// Dockerfile inside its context is used where it is. One from outside is
/// added under [`ADDED_DOCKERFILE_NAME`] and listed in the archive's
/// `.dockerignore`, so the daemon drops it from the context after reading it
/// and `COPY .` does not copy it, as the docker CLI does.
fn dockerfile_archive(dockerfile: &DockerfileStep) -> Result<(StreamedTar, String), ContextError> {
    let context = Arc::clone(&dockerfile.context);
    let inside = dockerfile
        .path
        .strip_prefix(&context.source)
        .ok()
        .map(|relative| relative.to_string_lossy().into_owned())
        .filter(|relative| {
            context
                .entries
                .iter()
                .any(|entry| entry.relative == *relative)
        });
    if let Some(relative) = inside {
        let archive = StreamedTar::spawn(move |archive| {
            context
                .append_to_archive(archive, "/")
                .map_err(|error| packing_error(&context.source, error))
        });
        return Ok((archive, relative));
    }

    let ignore_text = dockerignore_with_added_dockerfile(&context)?;
    let dockerfile_text = dockerfile.text.clone();
    let archive = StreamedTar::spawn(move |archive| {
        context
            .append_entries_to_archive(archive, "/", |entry| entry.relative != ".dockerignore")
            .map_err(|error| packing_error(&context.source, error))?;
        append_file(archive, ADDED_DOCKERFILE_NAME, &dockerfile_text)
            .and_then(|()| append_file(archive, ".dockerignore", &ignore_text))
            .map_err(|error| Error::docker("streaming a Dockerfile's context", error))
    });
    Ok((archive, ADDED_DOCKERFILE_NAME.to_string()))
}

/// Returns the context's `.dockerignore` with a line that leaves out the
/// Dockerfile added under [`ADDED_DOCKERFILE_NAME`].
fn dockerignore_with_added_dockerfile(context: &LocalContext) -> Result<String, ContextError> {
    let dockerignore = context
        .entries
        .iter()
        .find(|entry| entry.relative == ".dockerignore");
    let mut ignore_text = match dockerignore {
        Some(entry) => {
            let path = context.path_of(entry);
            std::fs::read_to_string(&path).map_err(|source| ContextError::Io { path, source })?
        }
        None => String::new(),
    };
    if !ignore_text.is_empty() && !ignore_text.ends_with('\n') {
        ignore_text.push('\n');
    }
    ignore_text.push_str(ADDED_DOCKERFILE_NAME);
    ignore_text.push('\n');
    Ok(ignore_text)
}

fn append_file<W: std::io::Write>(
    archive: &mut tar::Builder<W>,
    name: &str,
    text: &str,
) -> std::io::Result<()> {
    let mut header = tar::Header::new_gnu();
    header.set_size(text.len() as u64);
    header.set_mode(0o644);
    header.set_mtime(crate::context::ARCHIVE_MTIME);
    header.set_entry_type(tar::EntryType::Regular);
    archive.append_data(&mut header, name, text.as_bytes())
}

/// Turns a failure to read a local file while packing into an error that
/// names the file. `context_root` names the context for the other kinds.
fn packing_error(context_root: &std::path::Path, error: ContextError) -> Error {
    match error {
        ContextError::Io { path, source } => Error::Read {
            path,
            reason: source.to_string(),
        },
        other => Error::Read {
            path: context_root.to_path_buf(),
            reason: other.to_string(),
        },
    }
}

/// The order steps to build start in: a step is ready once every step it
/// reads is done, and ready steps start in plan order.
struct Schedule {
    /// Per step, how many of the steps it reads are still to build.
    waiting_on: Vec<usize>,
    /// Per step, the steps to build that read it.
    readers: Vec<Vec<usize>>,
    ready: BTreeSet<usize>,
}

impl Schedule {
    fn new(plan: &Plan) -> Self {
        let builds = |index: usize| matches!(plan.steps[index].status, Status::Build(_));
        let mut schedule = Schedule {
            waiting_on: vec![0; plan.steps.len()],
            readers: vec![Vec::new(); plan.steps.len()],
            ready: BTreeSet::new(),
        };
        for (index, step) in plan
            .steps
            .iter()
            .enumerate()
            .filter(|(index, _)| builds(*index))
        {
            for dependency in step.dependencies().filter(|&dependency| builds(dependency)) {
                schedule.waiting_on[index] += 1;
                schedule.readers[dependency].push(index);
            }
            if schedule.waiting_on[index] == 0 {
                schedule.ready.insert(index);
            }
        }
        schedule
    }

    /// Takes the first step that may start now.
    fn next_ready(&mut self) -> Option<usize> {
        self.ready.pop_first()
    }

    /// Records that step `index` is done, readying the steps that waited
    /// only for it.
    fn finished(&mut self, index: usize) {
        for reader in std::mem::take(&mut self.readers[index]) {
            self.waiting_on[reader] -= 1;
            if self.waiting_on[reader] == 0 {
                self.ready.insert(reader);
            }
        }
    }
}

/// The images of the steps a build uses: every step to build, the images
/// it reads, and the targets. Other cached steps are skipped without a
/// Docker call. An image is dropped once the last step that reads it has
/// started. In a long chain each image config (env, history) is longer
/// than the one before, so keeping them all grows with the square of the
/// chain's length.
struct StepImages {
    images: Vec<Option<StepImage>>,
    /// Per step, the steps to build that have yet to read its image, plus
    /// one when a target delivers it.
    uses: Vec<usize>,
}

impl StepImages {
    fn new(plan: &Plan) -> Self {
        let mut uses = vec![0; plan.steps.len()];
        for target in &plan.targets {
            uses[target.step] += 1;
        }
        for step in &plan.steps {
            if matches!(step.status, Status::Build(_)) {
                for dependency in step.dependencies() {
                    uses[dependency] += 1;
                }
            }
        }
        StepImages {
            images: vec![None; plan.steps.len()],
            uses,
        }
    }

    /// Keeps the image of step `index`, if anything will read it.
    fn insert(&mut self, index: usize, image: StepImage) {
        if self.uses[index] > 0 {
            self.images[index] = Some(image);
        }
    }

    /// Returns the image of step `index` for one reader, dropping it when
    /// that is the last.
    fn read(&mut self, index: usize) -> Option<StepImage> {
        self.uses[index] = self.uses[index].saturating_sub(1);
        if self.uses[index] == 0 {
            self.images[index].take()
        } else {
            self.images[index].clone()
        }
    }
}

/// Packs the files of a copy step into an archive that is written while
/// the engine reads it. A single file goes inside the destination when that
/// is an existing folder, as Docker's `COPY` does.
fn pack_local_files(copy: &CopyStep, destination_is_folder: bool) -> Result<StreamedTar, Error> {
    let destination = match (copy.context.kind, destination_is_folder) {
        (ContextKind::File, true) => {
            let name = copy
                .context
                .source
                .file_name()
                .unwrap_or_default()
                .to_string_lossy();
            format!("{}/{name}", copy.destination.trim_end_matches('/'))
        }
        _ => copy.destination.clone(),
    };
    let context = Arc::clone(&copy.context);
    Ok(StreamedTar::spawn(move |archive| {
        context
            .append_to_archive(archive, &destination)
            .map_err(|error| packing_error(&context.source, error))
    }))
}

/// Records a committed step in the config: a new layer when the commit
/// added one, else a history entry for an empty layer.
fn add_committed_layer(config: &mut ImageConfig, committed_layers: &[String], created_by: &str) {
    match committed_layers.last() {
        Some(diff_id) if committed_layers.len() > config.diff_ids().len() => {
            config.push_layer(diff_id, created_by)
        }
        _ => config.push_config_history(created_by),
    }
}

fn apply_config_change(config: &mut ImageConfig, change: &ConfigChange) {
    match change {
        ConfigChange::Env(vars) => config.set_env(vars),
        ConfigChange::Workdir(path) => {
            // A relative path continues from the current one, as Docker's WORKDIR does.
            let base = config.working_dir().unwrap_or_else(|| "/".to_string());
            let resolved = std::path::Path::new(&base).join(path);
            config.set_working_dir(&resolved.to_string_lossy());
        }
        ConfigChange::Entrypoint(args) => config.set_entrypoint(args),
        ConfigChange::Cmd(args) => config.set_cmd(args),
        ConfigChange::Shell(args) => config.set_shell(args),
        ConfigChange::User(user) => config.set_user(user),
    }
}
