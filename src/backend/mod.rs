//! The Docker Engine backend: every call imgscript makes to the daemon.
//!
//! Step images are made in two moves. A container runs the step (or receives
//! an archive, for baked files) and is committed, which yields the new
//! layer. Then the builder loads a config it wrote itself on top of that
//! layer, so the image contains exactly the declared config and nothing of the
//! build container (its proxy variables, mounts or labels). The committed
//! image is removed again.

pub mod image_config;

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};

use bollard::auth::DockerCredentials;
use bollard::container::LogOutput;
use bollard::errors::Error as BollardError;
use bollard::models::{ContainerCreateBody, DeviceRequest, HostConfig, ImageInspect};
use bollard::query_parameters::{
    AttachContainerOptionsBuilder, BuildImageOptionsBuilder, CommitContainerOptionsBuilder,
    ContainerArchiveInfoOptionsBuilder, CreateImageOptionsBuilder,
    DownloadFromContainerOptionsBuilder, ImportImageOptionsBuilder, ListImagesOptionsBuilder,
    RemoveContainerOptionsBuilder, RemoveImageOptionsBuilder, TagImageOptionsBuilder,
    UploadToContainerOptionsBuilder,
};
use futures_util::StreamExt;
use tracing::{debug, trace};

use crate::diagnostics::{Error, GpuUnavailable};
use crate::gpu::GpuRequest;
use crate::reference::{registry_of, split_tag};
use crate::secret::SECRETS_PATH;
use crate::staged_files::STAGED_FILES_PATH;
pub use image_config::ImageConfig;
use image_config::{layers_digest, KEY_LABEL, LAYERS_LABEL};
use std::path::{Path, PathBuf};

/// The default address when DOCKER_HOST is unset.
const DEFAULT_SOCKET: &str = "unix:///var/run/docker.sock";

/// Prefix of the line the step driver writes when a command fails.
const FAILURE_MARKER: &str = "::imgscript-command-failed::";

/// Runs each argument with `/bin/sh -c`, in order, and stops at the first
/// failure with a marker line naming the command's index and exit code.
/// It first sources the step's secret file, when one is mounted at
/// [`SECRETS_PATH`], so the commands see the secrets as exported variables.
const STEP_DRIVER: &str = r#"if [ -f /run/imgscript-secrets.env ]; then . /run/imgscript-secrets.env; fi
n=0
for command do
  n=$((n + 1))
  /bin/sh -c "$command" || { status=$?; printf '%s %s %s\n' '::imgscript-command-failed::' "$n" "$status" >&2; exit "$status"; }
done"#;

/// Lines of step output kept for the message of a failed step.
const OUTPUT_TAIL_LINES: usize = 20;

/// Path of the CA bundle in build containers. `/run` is a tmpfs during the
/// step, so the mount point leaves nothing in the layer.
const CA_BUNDLE_PATH: &str = "/run/imgscript-ca-bundle.crt";

/// Host settings given to build containers that never enter a layer, the
/// image config or a cache key.
#[derive(Debug, Clone, Default)]
pub struct BuildEnvironment {
    /// `NAME=value` pairs of the host's proxy variables.
    pub proxy_env: Vec<String>,
    /// A CA bundle on the host, mounted read-only.
    pub ca_bundle: Option<std::path::PathBuf>,
}

impl BuildEnvironment {
    /// Takes HTTP(S)_PROXY and NO_PROXY, in either case, from this process's
    /// environment.
    pub fn from_host(ca_bundle: Option<std::path::PathBuf>) -> Self {
        let names = [
            "HTTP_PROXY",
            "HTTPS_PROXY",
            "NO_PROXY",
            "http_proxy",
            "https_proxy",
            "no_proxy",
        ];
        let proxy_env = names
            .iter()
            .filter_map(|name| {
                std::env::var(name)
                    .ok()
                    .map(|value| format!("{name}={value}"))
            })
            .collect();
        BuildEnvironment {
            proxy_env,
            ca_bundle,
        }
    }

    fn container_env(&self) -> Vec<String> {
        let mut env = self.proxy_env.clone();
        if self.ca_bundle.is_some() {
            for name in [
                "SSL_CERT_FILE",
                "PIP_CERT",
                "REQUESTS_CA_BUNDLE",
                "CURL_CA_BUNDLE",
            ] {
                env.push(format!("{name}={CA_BUNDLE_PATH}"));
            }
        }
        env
    }

    /// Mounts the CA bundle, the step's secret file and its staged files
    /// read-only, under a tmpfs at `/run` so their mount points stay out of
    /// the layer.
    fn host_config(&self, step: &StepContainer<'_>) -> HostConfig {
        let mut binds = Vec::new();
        if let Some(bundle) = &self.ca_bundle {
            binds.push(format!("{}:{CA_BUNDLE_PATH}:ro", bundle.display()));
        }
        if let Some(file) = step.secret_file {
            binds.push(format!("{}:{SECRETS_PATH}:ro", file.display()));
        }
        if let Some(folder) = step.staged_folder {
            binds.push(format!("{}:{STAGED_FILES_PATH}:ro", folder.display()));
        }
        if binds.is_empty() {
            return HostConfig::default();
        }
        HostConfig {
            binds: Some(binds),
            tmpfs: Some(HashMap::from([("/run".to_string(), String::new())])),
            ..HostConfig::default()
        }
    }
}

/// What a build step's container runs, and what it gets besides the image.
pub struct StepContainer<'a> {
    pub commands: &'a [String],
    /// A file of `export` lines that the commands source first.
    pub secret_file: Option<&'a Path>,
    /// A folder of files the commands read, mounted at [`STAGED_FILES_PATH`].
    pub staged_folder: Option<&'a Path>,
    pub gpu: Option<&'a GpuRequest>,
    /// How long the commands may run before the step fails.
    pub timeout: Option<std::time::Duration>,
}

/// The message of a failed Dockerfile build and its last output lines.
#[derive(Debug)]
pub struct BuildFailure {
    pub message: String,
    pub output_tail: Vec<String>,
}

/// The failed command of a step, its exit code and its last output lines.
#[derive(Debug)]
pub struct CommandFailure {
    /// Zero-based index of the command that failed.
    pub index: usize,
    pub exit_code: i64,
    pub output_tail: Vec<String>,
}

pub enum StepOutcome {
    /// The committed image's layer list (diff ids).
    Committed(Vec<String>),
    Failed(CommandFailure),
    /// The commands ran longer than the step's timeout and were stopped.
    TimedOut {
        limit: std::time::Duration,
        output_tail: Vec<String>,
    },
}

/// A connection to one Docker Engine, and what it created that must not
/// outlive the run.
#[derive(Clone)]
pub struct Docker {
    client: bollard::Docker,
    leftovers: Arc<Mutex<Leftovers>>,
}

/// Containers that still exist, and committed images whose layer has not
/// been handed to a loaded image yet.
#[derive(Default)]
struct Leftovers {
    containers: HashSet<String>,
    commits: Vec<String>,
}

pub fn daemon_address() -> String {
    std::env::var("DOCKER_HOST").unwrap_or_else(|_| DEFAULT_SOCKET.to_string())
}

impl Docker {
    /// Connects to DOCKER_HOST, or the default socket, and agrees on an API
    /// version.
    pub async fn connect() -> Result<Self, Error> {
        let address = daemon_address();
        let unavailable = |error: BollardError| Error::DockerUnavailable {
            address: address.clone(),
            reason: error.to_string(),
        };
        debug!(%address, "connecting to the Docker daemon");
        let client = bollard::Docker::connect_with_defaults().map_err(unavailable)?;
        let client = client.negotiate_version().await.map_err(unavailable)?;
        Ok(Docker {
            client,
            leftovers: Arc::default(),
        })
    }

    /// Returns the image a reference or id names in the local store.
    pub async fn inspect(&self, reference: &str) -> Result<Option<ImageInspect>, Error> {
        match self.client.inspect_image(reference).await {
            Ok(inspect) => Ok(Some(inspect)),
            Err(BollardError::DockerResponseServerError {
                status_code: 404, ..
            }) => Ok(None),
            Err(error) => Err(Error::docker(
                format!("inspecting image {reference}"),
                error,
            )),
        }
    }

    /// Pulls `reference`, reporting which registry failed and why.
    pub async fn pull(
        &self,
        reference: &str,
        credentials: Option<DockerCredentials>,
    ) -> Result<(), Error> {
        debug!(%reference, "pulling base image");
        let options = CreateImageOptionsBuilder::default()
            .from_image(reference)
            .build();
        let mut progress = self.client.create_image(Some(options), None, credentials);
        while let Some(item) = progress.next().await {
            if let Err(error) = item {
                return Err(Error::BaseImageUnavailable {
                    reference: reference.to_string(),
                    registry: registry_of(reference),
                    reason: docker_message(&error),
                });
            }
        }
        Ok(())
    }

    /// Lists every image carrying a cache key label: key to image ids,
    /// newest first.
    pub async fn cached_images(&self) -> Result<HashMap<String, Vec<String>>, Error> {
        let filters = HashMap::from([("label", vec![KEY_LABEL])]);
        let options = ListImagesOptionsBuilder::default()
            .all(true)
            .filters(&filters)
            .build();
        let images = self
            .client
            .list_images(Some(options))
            .await
            .map_err(|error| Error::docker("listing cached images", error))?;

        // Newest first: after a forced rebuild, the new image wins.
        let mut images = images;
        images.sort_by_key(|image| std::cmp::Reverse(image.created));
        let mut by_key: HashMap<String, Vec<String>> = HashMap::new();
        for image in images {
            if let Some(key) = image.labels.get(KEY_LABEL) {
                by_key.entry(key.clone()).or_default().push(image.id);
            }
        }
        Ok(by_key)
    }

    /// Returns the image if it really is the cached result of `key`: its
    /// key label matches and its layer list is the one recorded when it was
    /// made. An image built on top of a cached one inherits the labels but
    /// not the layer list.
    pub async fn verify_cached(
        &self,
        image_id: &str,
        key: &str,
    ) -> Result<Option<ImageInspect>, Error> {
        let Some(inspect) = self.inspect(image_id).await? else {
            return Ok(None);
        };
        let labels = inspect
            .config
            .as_ref()
            .and_then(|config| config.labels.as_ref());
        let diff_ids = inspect
            .root_fs
            .as_ref()
            .and_then(|root_fs| root_fs.layers.clone())
            .unwrap_or_default();
        let genuine = labels.is_some_and(|labels| {
            labels.get(KEY_LABEL).map(String::as_str) == Some(key)
                && labels.get(LAYERS_LABEL) == Some(&layers_digest(&diff_ids))
        });
        debug!(%image_id, %key, genuine, "checked cached image");
        Ok(genuine.then_some(inspect))
    }

    /// Rebuilds the full config of an image in the local store.
    pub async fn image_config(&self, inspect: &ImageInspect) -> Result<ImageConfig, Error> {
        let id = inspect.id.clone().unwrap_or_default();
        let history =
            self.client.image_history(&id).await.map_err(|error| {
                Error::docker(format!("reading the history of image {id}"), error)
            })?;
        Ok(ImageConfig::from_inspect(inspect, &history))
    }

    /// Loads `config` as an image unless an image with its id exists, and
    /// returns the id.
    pub async fn load(&self, config: &ImageConfig) -> Result<String, Error> {
        let id = config.image_id();
        if self.inspect(&id).await?.is_some() {
            return Ok(id);
        }
        trace!(config = %String::from_utf8_lossy(&config.to_bytes()), "loading image config");
        let archive = bytes::Bytes::from(config.load_archive());
        let options = ImportImageOptionsBuilder::default().quiet(true).build();
        let mut stream = self
            .client
            .import_image(options, bollard::body_full(archive), None);
        while let Some(item) = stream.next().await {
            item.map_err(|error| Error::docker(format!("loading image {id}"), error))?;
        }
        Ok(id)
    }

    pub async fn tag(&self, image_id: &str, name: &str) -> Result<(), Error> {
        let (repository, tag) = split_tag(name);
        let tag = tag.unwrap_or("latest");
        let options = TagImageOptionsBuilder::default()
            .repo(repository)
            .tag(tag)
            .build();
        self.client
            .tag_image(image_id, Some(options))
            .await
            .map_err(|error| Error::docker(format!("tagging image {image_id} as {name}"), error))
    }

    /// Runs the step's commands in a container from `parent` and commits
    /// the result. Each line of output goes to `output` as it arrives.
    pub async fn run_step(
        &self,
        parent: &str,
        step: &StepContainer<'_>,
        environment: &BuildEnvironment,
        output: &mut (dyn FnMut(&str) + Send),
    ) -> Result<StepOutcome, Error> {
        let mut cmd = vec![
            "/bin/sh".to_string(),
            "-c".to_string(),
            STEP_DRIVER.to_string(),
            "imgscript-step".to_string(),
        ];
        cmd.extend(step.commands.iter().cloned());
        let mut host_config = environment.host_config(step);
        if let Some(gpu) = step.gpu {
            host_config.device_requests = Some(vec![DeviceRequest {
                count: Some(i64::from(gpu.count)),
                capabilities: Some(vec![vec!["gpu".to_string()]]),
                ..DeviceRequest::default()
            }]);
        }
        let body = ContainerCreateBody {
            image: Some(parent.to_string()),
            entrypoint: Some(Vec::new()),
            cmd: Some(cmd),
            env: Some(environment.container_env()),
            host_config: Some(host_config),
            ..ContainerCreateBody::default()
        };
        let container = self.create_container(body).await?;
        let outcome = self.run_and_commit(&container, step, output).await;
        self.remove_container(&container).await;
        outcome
    }

    async fn run_and_commit(
        &self,
        container: &str,
        step: &StepContainer<'_>,
        output: &mut (dyn FnMut(&str) + Send),
    ) -> Result<StepOutcome, Error> {
        let mut logs = self.attach_output(container).await?;
        self.client
            .start_container(
                container,
                None::<bollard::query_parameters::StartContainerOptions>,
            )
            .await
            .map_err(|error| match step.gpu {
                Some(request)
                    if docker_message(&error).contains("could not select device driver") =>
                {
                    Error::GpuUnavailable(Box::new(GpuUnavailable {
                        request: request.to_string(),
                        reason: docker_message(&error),
                        source_code: None,
                        span: None,
                    }))
                }
                _ => Error::docker("starting a build container", error),
            })?;

        let mut tail = VecDeque::with_capacity(OUTPUT_TAIL_LINES);
        let mut failure_marker = None;
        let reading = read_step_output(&mut logs, output, &mut tail, &mut failure_marker);
        match step.timeout {
            None => reading.await?,
            Some(limit) => {
                if tokio::time::timeout(limit, reading).await.is_err() {
                    return Ok(StepOutcome::TimedOut {
                        limit,
                        output_tail: tail.into_iter().collect(),
                    });
                }
            }
        }

        let exit_code = self.wait(container).await?;
        if exit_code != 0 {
            let index = failure_marker.map_or(0, |(index, _)| index);
            return Ok(StepOutcome::Failed(CommandFailure {
                index,
                exit_code,
                output_tail: tail.into_iter().collect(),
            }));
        }
        self.commit_layer(container)
            .await
            .map(StepOutcome::Committed)
    }

    /// Attaches to a created container's stdout and stderr, to be called
    /// before it starts. Unlike following its logs, an attached stream ends
    /// only after the last output, a final line without a newline included.
    async fn attach_output(
        &self,
        container: &str,
    ) -> Result<
        std::pin::Pin<Box<dyn futures_util::Stream<Item = Result<LogOutput, BollardError>> + Send>>,
        Error,
    > {
        let options = AttachContainerOptionsBuilder::default()
            .stream(true)
            .stdout(true)
            .stderr(true)
            .build();
        let attached = self
            .client
            .attach_container(container, Some(options))
            .await
            .map_err(|error| Error::docker("attaching to a container's output", error))?;
        Ok(attached.output)
    }

    /// Waits for a started container and returns its exit code.
    async fn wait(&self, container: &str) -> Result<i64, Error> {
        let mut wait = self.client.wait_container(
            container,
            None::<bollard::query_parameters::WaitContainerOptions>,
        );
        let mut exit_code = 0;
        while let Some(item) = wait.next().await {
            match item {
                Ok(response) => exit_code = response.status_code,
                // bollard reports a non-zero exit as an error value.
                Err(BollardError::DockerContainerWaitError { code, .. }) => exit_code = code,
                Err(error) => return Err(Error::docker("waiting for a build container", error)),
            }
        }
        Ok(exit_code)
    }

    /// Unpacks an archive into a container from `parent` that is never
    /// started, so the image needs no shell, and commits the result.
    /// `make_archive` receives whether `destination` is a folder in the
    /// parent image (following symlinks), since Docker's `COPY` places a
    /// file inside an existing folder rather than over it.
    pub async fn copy_step(
        &self,
        parent: &str,
        destination: &str,
        make_archive: impl FnOnce(bool) -> Result<Vec<u8>, Error>,
    ) -> Result<Vec<String>, Error> {
        let container = self.create_idle_container(parent).await?;
        let result = async {
            let destination_is_folder = self.is_folder_in(&container, destination).await?;
            let archive = make_archive(destination_is_folder)?;
            let options = UploadToContainerOptionsBuilder::default().path("/").build();
            self.client
                .upload_to_container(
                    &container,
                    Some(options),
                    bollard::body_full(archive.into()),
                )
                .await
                .map_err(|error| {
                    Error::docker("copying local files into a build container", error)
                })?;
            self.commit_layer(&container).await
        }
        .await;
        self.remove_container(&container).await;
        result
    }

    /// Returns whether `path` is a folder in `image`.
    pub async fn is_folder(&self, image: &str, path: &str) -> Result<bool, Error> {
        let container = self.create_idle_container(image).await?;
        let result = self.is_folder_in(&container, path).await;
        self.remove_container(&container).await;
        result
    }

    /// Creates a container that is never started, to read or write its
    /// file system.
    async fn create_idle_container(&self, image: &str) -> Result<String, Error> {
        let body = ContainerCreateBody {
            image: Some(image.to_string()),
            entrypoint: Some(Vec::new()),
            cmd: Some(vec!["imgscript-never-started".to_string()]),
            ..ContainerCreateBody::default()
        };
        self.create_container(body).await
    }

    /// Returns whether `path` is a folder in a container's file system,
    /// following up to eight symlinks.
    async fn is_folder_in(&self, container: &str, path: &str) -> Result<bool, Error> {
        /// Go's `os.ModeDir`, as the daemon reports file modes.
        const MODE_DIR: u32 = 1 << 31;
        let mut path = path.trim_end_matches('/').to_string();
        for _ in 0..8 {
            if path.is_empty() {
                return Ok(true);
            }
            let options = ContainerArchiveInfoOptionsBuilder::default()
                .path(&path)
                .build();
            let stat = match self
                .client
                .get_container_archive_info(container, Some(options))
                .await
            {
                Ok(stat) => stat,
                Err(BollardError::DockerResponseServerError {
                    status_code: 404, ..
                }) => return Ok(false),
                Err(error) => {
                    return Err(Error::docker(
                        format!("reading {path} in a build container"),
                        error,
                    ))
                }
            };
            if stat.file_mode & MODE_DIR != 0 {
                return Ok(true);
            }
            if stat.link_target.is_empty() {
                return Ok(false);
            }
            path = if stat.link_target.starts_with('/') {
                stat.link_target
            } else {
                let parent = Path::new(&path).parent().unwrap_or(Path::new("/"));
                parent.join(&stat.link_target).display().to_string()
            };
        }
        Ok(false)
    }

    /// Builds the Dockerfile named `dockerfile` inside the context
    /// `archive` with the engine's classic builder, which removes its
    /// intermediate containers whatever the outcome. Returns the built
    /// image's id, or the failure the build reported.
    pub async fn build_dockerfile(
        &self,
        archive: Vec<u8>,
        dockerfile: &str,
        build_args: &std::collections::BTreeMap<String, String>,
        output: &mut (dyn FnMut(&str) + Send),
    ) -> Result<Result<String, BuildFailure>, Error> {
        let build_args: HashMap<&str, &str> = build_args
            .iter()
            .map(|(name, value)| (name.as_str(), value.as_str()))
            .collect();
        let options = BuildImageOptionsBuilder::default()
            .dockerfile(dockerfile)
            .buildargs(&build_args)
            .rm(true)
            .forcerm(true)
            .build();
        let mut stream =
            self.client
                .build_image(options, None, Some(bollard::body_full(archive.into())));

        let mut tail = VecDeque::with_capacity(OUTPUT_TAIL_LINES);
        let mut image_id = None;
        while let Some(item) = stream.next().await {
            let info = match item {
                Ok(info) => info,
                Err(BollardError::DockerStreamError { error }) => {
                    return Ok(Err(BuildFailure {
                        message: error.trim().to_string(),
                        output_tail: tail.into_iter().collect(),
                    }))
                }
                Err(error) => return Err(Error::docker("building a Dockerfile", error)),
            };
            if let Some(text) = &info.stream {
                for line in text.lines().filter(|line| !line.trim().is_empty()) {
                    if tail.len() == OUTPUT_TAIL_LINES {
                        tail.pop_front();
                    }
                    tail.push_back(line.to_string());
                    output(line);
                }
            }
            if let Some(id) = info.aux.and_then(|aux| aux.id) {
                image_id = Some(id);
            }
        }
        image_id
            .map(Ok)
            .ok_or_else(|| Error::docker("building a Dockerfile", "the build reported no image id"))
    }

    /// Reads `source_path` out of `image` as the tar archive Docker
    /// returns, whose entries start with the path's last component.
    pub async fn export_path(&self, image: &str, source_path: &str) -> Result<Vec<u8>, Error> {
        let container = self.create_idle_container(image).await?;
        let result = async {
            let options = DownloadFromContainerOptionsBuilder::default()
                .path(source_path)
                .build();
            let mut stream = self
                .client
                .download_from_container(&container, Some(options));
            let mut archive = Vec::new();
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(|error| match error {
                    BollardError::DockerResponseServerError {
                        status_code: 404, ..
                    } => Error::docker(
                        format!("copying {source_path} out of image {image}"),
                        format!("{source_path} does not exist in that image"),
                    ),
                    other => {
                        Error::docker(format!("copying {source_path} out of image {image}"), other)
                    }
                })?;
                archive.extend_from_slice(&chunk);
            }
            Ok(archive)
        }
        .await;
        self.remove_container(&container).await;
        result
    }

    /// Commits a container and returns the committed image's layer list.
    /// The committed image is kept only until [`Docker::discard_commits`]
    /// runs. A container that changed nothing gets no new layer: Docker
    /// leaves an empty diff out of the list.
    async fn commit_layer(&self, container: &str) -> Result<Vec<String>, Error> {
        let options = CommitContainerOptionsBuilder::default()
            .container(container)
            .build();
        let committed = self
            .client
            .commit_container(options, bollard::models::ContainerConfig::default())
            .await
            .map_err(|error| Error::docker("committing a build container", error))?;
        let inspect = self.inspect(&committed.id).await?.ok_or_else(|| {
            Error::docker(
                "reading a committed layer",
                "the committed image disappeared",
            )
        })?;
        let layers = inspect
            .root_fs
            .and_then(|root_fs| root_fs.layers)
            .unwrap_or_default();
        self.leftovers().commits.push(committed.id);
        Ok(layers)
    }

    fn leftovers(&self) -> std::sync::MutexGuard<'_, Leftovers> {
        self.leftovers
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    async fn create_container(&self, body: ContainerCreateBody) -> Result<String, Error> {
        let created = self
            .client
            .create_container(None, body)
            .await
            .map_err(|error| Error::docker("creating a build container", error))?;
        self.leftovers().containers.insert(created.id.clone());
        Ok(created.id)
    }

    async fn remove_container(&self, id: &str) {
        let options = RemoveContainerOptionsBuilder::default()
            .force(true)
            .v(true)
            .build();
        if let Err(error) = self.client.remove_container(id, Some(options)).await {
            tracing::warn!(container = %id, %error, "failed to remove a build container");
        }
        self.leftovers().containers.remove(id);
    }

    /// Removes the images that commits left, once the loaded images hold
    /// their layers.
    pub async fn discard_commits(&self) {
        let commits = std::mem::take(&mut self.leftovers().commits);
        for id in commits {
            // noprune: a committed image's parent is an untagged cached image
            // that pruning would delete.
            let options = RemoveImageOptionsBuilder::default().noprune(true).build();
            if let Err(error) = self.client.remove_image(&id, Some(options), None).await {
                tracing::warn!(image = %id, %error, "failed to remove a committed build image");
            }
        }
    }

    /// Removes cached images that a rebuild of their step replaced. Failures
    /// (an image in use by a container, say) only cost disk space.
    pub async fn remove_stale(&self, image_ids: &[String]) {
        for id in image_ids {
            let options = RemoveImageOptionsBuilder::default().noprune(true).build();
            if let Err(error) = self.client.remove_image(id, Some(options), None).await {
                debug!(image = %id, %error, "kept a replaced cached image");
            }
        }
    }

    /// Removes every container this connection created that still exists,
    /// and the committed images not yet discarded. Called on Ctrl-C.
    pub async fn clean_up(&self) {
        let containers: Vec<String> = self.leftovers().containers.iter().cloned().collect();
        for container in containers {
            self.remove_container(&container).await;
        }
        self.discard_commits().await;
    }

    /// Starts a container from `image` with `binds`, streams its output to
    /// this process's stdout and stderr, and returns its exit code.
    pub async fn run_container(
        &self,
        image: &str,
        command: &[String],
        binds: Vec<String>,
    ) -> Result<i64, Error> {
        use std::io::Write;

        let body = ContainerCreateBody {
            image: Some(image.to_string()),
            cmd: (!command.is_empty()).then(|| command.to_vec()),
            host_config: Some(HostConfig {
                binds: Some(binds),
                ..HostConfig::default()
            }),
            ..ContainerCreateBody::default()
        };
        let container = self.create_container(body).await?;
        let result = async {
            let mut logs = self.attach_output(&container).await?;
            self.client
                .start_container(
                    &container,
                    None::<bollard::query_parameters::StartContainerOptions>,
                )
                .await
                .map_err(|error| start_error(image, command, error))?;
            while let Some(chunk) = logs.next().await {
                match chunk.map_err(|error| Error::docker("reading container output", error))? {
                    LogOutput::StdErr { message } => {
                        let _ = std::io::stderr().write_all(&message);
                    }
                    LogOutput::StdOut { message } | LogOutput::Console { message } => {
                        let _ = std::io::stdout().write_all(&message);
                    }
                    LogOutput::StdIn { .. } => {}
                }
            }
            let _ = std::io::stdout().flush();
            self.wait(&container).await
        }
        .await;
        self.remove_container(&container).await;
        result
    }
}

/// Tells a command that cannot be started (exit status 127 when it is not
/// found, 126 when it is not executable, as `docker run` gives) from other
/// failures to start a container.
fn start_error(image: &str, command: &[String], error: BollardError) -> Error {
    let message = docker_message(&error);
    let program = command
        .first()
        .cloned()
        .unwrap_or_else(|| "the image's command".to_string());
    let status = if message.contains("executable file not found")
        || message.contains("no such file or directory")
    {
        Some(127)
    } else if message.contains("permission denied") {
        Some(126)
    } else {
        None
    };
    match status {
        Some(status) => Error::CommandNotStarted {
            program,
            status,
            reason: message,
        },
        None => Error::docker(format!("starting a container from {image}"), error),
    }
}

/// Rewrites the archive Docker returns for `source_path` (whose entries
/// start with the path's last component) so its entries land where Docker's
/// `COPY --from` puts them: a folder's contents at `destination`; a file at
/// `destination`, or inside it when it ends in `/` or is an existing folder.
pub fn relocate_archive(
    archive: &[u8],
    source_path: &str,
    destination: &str,
    destination_is_folder: bool,
) -> std::io::Result<Vec<u8>> {
    let source_name = source_path
        .trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap_or_default();
    let source_is_folder = tar::Archive::new(archive)
        .entries()?
        .next()
        .transpose()?
        .is_some_and(|entry| entry.header().entry_type().is_dir());
    let folder = destination.trim_start_matches('/').trim_end_matches('/');
    let into_folder = destination.ends_with('/') || destination_is_folder;
    let root = match (source_is_folder, into_folder, folder.is_empty()) {
        (false, true, true) => source_name.to_string(),
        (false, true, false) => format!("{folder}/{source_name}"),
        _ => folder.to_string(),
    };
    let relocate = |name: &Path| -> PathBuf {
        match name.strip_prefix(source_name) {
            Ok(rest) if rest.as_os_str().is_empty() => PathBuf::from(&root),
            Ok(rest) => Path::new(&root).join(rest),
            Err(_) => Path::new(&root).join(name),
        }
    };

    let mut input = tar::Archive::new(archive);
    let mut output = tar::Builder::new(Vec::new());
    for entry in input.entries()? {
        let mut entry = entry?;
        let path = relocate(&entry.path()?);
        if path.as_os_str().is_empty() {
            // The source folder itself, copied onto `/`.
            continue;
        }
        let mut header = entry.header().clone();
        if header.entry_type().is_hard_link() {
            let target = entry
                .link_name()?
                .map(|link| relocate(&link))
                .unwrap_or_default();
            output.append_link(&mut header, &path, target)?;
        } else if header.entry_type().is_symlink() {
            let target = entry
                .link_name()?
                .map(|link| link.into_owned())
                .unwrap_or_default();
            output.append_link(&mut header, &path, target)?;
        } else {
            output.append_data(&mut header, &path, &mut entry)?;
        }
    }
    output.into_inner()
}

/// Reads a step's output to its end, passing each line to `output` and
/// keeping the last lines and the failure marker.
async fn read_step_output(
    logs: &mut std::pin::Pin<
        Box<dyn futures_util::Stream<Item = Result<LogOutput, BollardError>> + Send>,
    >,
    output: &mut (dyn FnMut(&str) + Send),
    tail: &mut VecDeque<String>,
    failure_marker: &mut Option<(usize, i64)>,
) -> Result<(), Error> {
    // One buffer per stream: a partial line on stdout must not join a line
    // on stderr, since the two arrive in no fixed order.
    let mut pending = [String::new(), String::new()];
    while let Some(chunk) = logs.next().await {
        let chunk = chunk.map_err(|error| Error::docker("reading build output", error))?;
        let (stream, bytes) = match &chunk {
            LogOutput::StdOut { message } | LogOutput::Console { message } => (0, message),
            LogOutput::StdErr { message } => (1, message),
            LogOutput::StdIn { .. } => continue,
        };
        let buffer = &mut pending[stream];
        buffer.push_str(&String::from_utf8_lossy(bytes));
        while let Some(newline) = buffer.find('\n') {
            let line: String = buffer.drain(..=newline).collect();
            handle_output_line(
                line.trim_end_matches(['\n', '\r']),
                output,
                tail,
                failure_marker,
            );
        }
    }
    for rest in pending.iter().filter(|rest| !rest.is_empty()) {
        handle_output_line(rest, output, tail, failure_marker);
    }
    Ok(())
}

fn handle_output_line(
    line: &str,
    output: &mut (dyn FnMut(&str) + Send),
    tail: &mut VecDeque<String>,
    failure_marker: &mut Option<(usize, i64)>,
) {
    // The marker may follow output that did not end in a newline.
    if let Some((before, rest)) = line.split_once(FAILURE_MARKER) {
        if !before.is_empty() {
            handle_output_line(before, output, tail, failure_marker);
        }
        let mut numbers = rest
            .split_whitespace()
            .filter_map(|word| word.parse::<i64>().ok());
        if let (Some(position), Some(status)) = (numbers.next(), numbers.next()) {
            *failure_marker = Some(((position.max(1) - 1) as usize, status));
        }
        return;
    }
    if tail.len() == OUTPUT_TAIL_LINES {
        tail.pop_front();
    }
    tail.push_back(line.to_string());
    output(line);
}

/// Returns the daemon's own message for an error, without bollard's wrapper.
fn docker_message(error: &BollardError) -> String {
    match error {
        BollardError::DockerResponseServerError { message, .. } => message.clone(),
        BollardError::DockerStreamError { error } => error.clone(),
        other => other.to_string(),
    }
}
