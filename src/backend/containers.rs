//! Container operations: build steps run and committed, files copied in
//! and out, and the containers `imgscript run -- CMD` starts.

use std::collections::{HashMap, VecDeque};

use bollard::container::LogOutput;
use bollard::errors::Error as BollardError;
use bollard::models::{ContainerCreateBody, DeviceRequest, HostConfig};
use bollard::query_parameters::{
    AttachContainerOptionsBuilder, ContainerArchiveInfoOptionsBuilder,
    DownloadFromContainerOptionsBuilder, UploadToContainerOptionsBuilder,
};
use futures_util::StreamExt;

use super::{docker_message, Commit, Docker, TarArchive, OUTPUT_TAIL_LINES};
use crate::diagnostics::{Error, GpuUnavailable};
use crate::gpu::GpuRequest;
use crate::python_build::ARCHIVE_PATH as PYTHON_ARCHIVE_PATH;
use crate::secret::SECRETS_PATH;
use crate::staged_files::STAGED_FILES_PATH;
use std::path::{Path, PathBuf};

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
        if let Some(archive) = step.python_archive {
            binds.push(format!("{}:{PYTHON_ARCHIVE_PATH}:ro", archive.display()));
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
    /// A Python build archive, mounted at [`PYTHON_ARCHIVE_PATH`].
    pub python_archive: Option<&'a Path>,
    pub gpu: Option<&'a GpuRequest>,
    /// How long the commands may run before the step fails.
    pub timeout: Option<std::time::Duration>,
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
    Committed(Commit),
    Failed(CommandFailure),
    /// The commands ran longer than the step's timeout and were stopped.
    TimedOut {
        limit: std::time::Duration,
        output_tail: Vec<String>,
    },
}

impl Docker {
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
        self.remove_container_later(&container);
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
    pub(super) async fn wait(&self, container: &str) -> Result<i64, Error> {
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
    pub async fn copy_step<A: Into<TarArchive>>(
        &self,
        parent: &str,
        destination: &str,
        make_archive: impl FnOnce(bool) -> Result<A, Error>,
    ) -> Result<Commit, Error> {
        let container = self.create_idle_container(parent).await?;
        let result = async {
            let destination_is_folder = self.is_folder_in(&container, destination).await?;
            let archive = make_archive(destination_is_folder)?;
            self.upload_archive(&container, archive.into()).await?;
            self.commit_layer(&container).await
        }
        .await;
        self.remove_container_later(&container);
        result
    }

    /// Unpacks `archive` at `/` in a container. An error of a streamed
    /// archive's writer (a file it failed to read, say) wins over the
    /// engine's, since it is why the engine saw the archive break off.
    async fn upload_archive(&self, container: &str, archive: TarArchive) -> Result<(), Error> {
        let options = UploadToContainerOptionsBuilder::default().path("/").build();
        let (body, writer) = archive.into_body(bollard::body_full, |chunks| {
            bollard::body_try_stream(chunks)
        });

        let uploaded = self
            .client
            .upload_to_container(container, Some(options), body)
            .await;

        writer.finish().await?;
        uploaded.map_err(|error| Error::docker("copying local files into a build container", error))
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
