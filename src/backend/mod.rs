//! The Docker Engine backend: every call imgscript makes to the daemon.
//!
//! Step images are made in two moves. A container runs the step (or receives
//! an archive, for baked files) and is committed, which yields the new
//! layer. Then the builder loads a config it wrote itself on top of that
//! layer, so the image contains exactly the declared config and nothing of the
//! build container (its proxy variables, mounts or labels). The committed
//! image is removed again.

mod containers;
pub mod image_config;
mod images;
mod tar_stream;
mod terminal;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use bollard::errors::Error as BollardError;
use bollard::models::ContainerCreateBody;
use bollard::query_parameters::{
    CommitContainerOptionsBuilder, ListContainersOptionsBuilder, ListImagesOptionsBuilder,
    RemoveContainerOptionsBuilder, RemoveImageOptionsBuilder,
};
use tracing::debug;

use crate::diagnostics::Error;
pub use containers::{
    relocate_archive, BuildEnvironment, CommandFailure, StepContainer, StepOutcome,
};
pub use image_config::ImageConfig;
pub use images::{image_ids_by_key, BuildFailure, CachedImage};
pub use tar_stream::{ArchiveWriter, ChunkStream, ChunkWriter, StreamedTar, TarArchive};

/// Lines of step output kept for the message of a failed step.
const OUTPUT_TAIL_LINES: usize = 20;

/// The default address when DOCKER_HOST is unset.
const DEFAULT_SOCKET: &str = "unix:///var/run/docker.sock";

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
    commits: HashSet<String>,
    /// Container removals still running in the background.
    removals: Vec<tokio::task::JoinHandle<()>>,
}

/// A committed build container: the image the commit made, and its layer
/// list (diff ids).
pub struct Commit {
    pub image: String,
    pub layers: Vec<String>,
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

    /// Commits a container. The committed image is kept only until
    /// [`Docker::discard_commit`] runs, once the step's own image holds its
    /// layer. A container that changed nothing gets no new layer: Docker
    /// leaves an empty diff out of the list.
    async fn commit_layer(&self, container: &str) -> Result<Commit, Error> {
        let options = CommitContainerOptionsBuilder::default()
            .container(container)
            .build();
        let committed = self
            .client
            .commit_container(options, bollard::models::ContainerConfig::default())
            .await
            .map_err(|error| Error::docker("committing a build container", error))?;
        self.leftovers().commits.insert(committed.id.clone());

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
        Ok(Commit {
            image: committed.id,
            layers,
        })
    }

    fn leftovers(&self) -> std::sync::MutexGuard<'_, Leftovers> {
        self.leftovers
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    async fn create_container(&self, mut body: ContainerCreateBody) -> Result<String, Error> {
        body.labels
            .get_or_insert_with(Default::default)
            .insert(RUN_LABEL.to_string(), this_run());
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

    /// Removes a container in the background, so the next step need not
    /// wait: removing a container that wrote many files takes a second or
    /// more. [`Docker::finish_removals`] waits for every such removal.
    fn remove_container_later(&self, id: &str) {
        let docker = self.clone();
        let id = id.to_string();
        let removal = tokio::spawn(async move { docker.remove_container(&id).await });
        self.leftovers().removals.push(removal);
    }

    /// Waits for the container removals that run in the background.
    pub async fn finish_removals(&self) {
        let removals = std::mem::take(&mut self.leftovers().removals);
        for removal in removals {
            let _ = removal.await;
        }
    }

    /// Removes the image a commit made, once a loaded image contains its layer.
    pub async fn discard_commit(&self, commit: &Commit) {
        self.remove_commit(&commit.image).await;
    }

    async fn remove_commit(&self, id: &str) {
        // noprune: a committed image's parent is an untagged cached image
        // that pruning would delete.
        let options = RemoveImageOptionsBuilder::default().noprune(true).build();
        if let Err(error) = self.client.remove_image(id, Some(options), None).await {
            tracing::warn!(image = %id, %error, "failed to remove a committed build image");
        }
        self.leftovers().commits.remove(id);
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
    /// Removes the containers that runs on this machine left when they
    /// were killed (SIGKILL gives no chance to clean up), and the images
    /// committed from them, which inherit the containers' labels. A run
    /// counts as ended when no process has its pid. A pid that another
    /// process took keeps the run's leftovers until that process ends.
    /// Failures are logged, never returned.
    pub async fn remove_leftovers_of_ended_runs(&self) {
        let filters = HashMap::from([("label", vec![RUN_LABEL])]);
        let containers = self
            .client
            .list_containers(Some(
                ListContainersOptionsBuilder::default()
                    .all(true)
                    .filters(&filters)
                    .build(),
            ))
            .await;
        match containers {
            Ok(containers) => {
                for container in containers {
                    let (Some(id), Some(labels)) = (container.id, container.labels) else {
                        continue;
                    };
                    if labels.get(RUN_LABEL).is_some_and(|run| has_ended(run)) {
                        debug!(container = %id, "removing a container of an ended run");
                        self.remove_container_later(&id);
                    }
                }
            }
            Err(error) => debug!(%error, "failed to list the containers of ended runs"),
        }

        let images = self
            .client
            .list_images(Some(
                ListImagesOptionsBuilder::default()
                    .all(true)
                    .filters(&filters)
                    .build(),
            ))
            .await;
        match images {
            Ok(images) => {
                for image in images {
                    if image
                        .labels
                        .get(RUN_LABEL)
                        .is_some_and(|run| has_ended(run))
                    {
                        debug!(image = %image.id, "removing an image committed by an ended run");
                        self.remove_commit(&image.id).await;
                    }
                }
            }
            Err(error) => debug!(%error, "failed to list the images of ended runs"),
        }
    }

    pub async fn clean_up(&self) {
        self.finish_removals().await;
        let containers: Vec<String> = self.leftovers().containers.iter().cloned().collect();
        for container in containers {
            self.remove_container(&container).await;
        }
        let commits: Vec<String> = self.leftovers().commits.iter().cloned().collect();
        for commit in commits {
            self.remove_commit(&commit).await;
        }
    }
}

/// The label on every container imgscript creates: the run that made it,
/// as `<host name>:<pid>`.
pub const RUN_LABEL: &str = "dev.imgscript.run";

/// Returns this run's [`RUN_LABEL`] value.
fn this_run() -> String {
    format!("{}:{}", host_name(), std::process::id())
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|name| name.trim().to_string())
        .unwrap_or_default()
}

/// Checks whether the run that a [`RUN_LABEL`] value names ran on this
/// machine and has no process any more. Runs on other machines that share
/// the daemon are never judged ended.
fn has_ended(run: &str) -> bool {
    let Some((host, pid)) = run.rsplit_once(':') else {
        return false;
    };
    let Ok(pid) = pid.parse::<u32>() else {
        return false;
    };
    host == host_name() && !std::path::Path::new(&format!("/proc/{pid}")).exists()
}

/// Returns the daemon's own message for an error, without bollard's wrapper.
fn docker_message(error: &BollardError) -> String {
    match error {
        BollardError::DockerResponseServerError { message, .. } => message.clone(),
        BollardError::DockerStreamError { error } => error.clone(),
        other => other.to_string(),
    }
}
