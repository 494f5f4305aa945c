//! Image operations: finding, pulling, loading, tagging and building
//! images, and reading their configs.

use std::collections::{HashMap, VecDeque};

use bollard::auth::DockerCredentials;
use bollard::errors::Error as BollardError;
use bollard::models::{BuildInfo, ImageInspect};
use bollard::query_parameters::{
    BuildImageOptionsBuilder, CreateImageOptionsBuilder, ImportImageOptionsBuilder,
    ListImagesOptionsBuilder, RemoveImageOptionsBuilder, TagImageOptionsBuilder,
};
use futures_util::StreamExt;
use tracing::{debug, trace};

use super::image_config::{layers_digest, HISTORY_LABEL, KEY_LABEL, LAYERS_LABEL};
use super::{docker_message, Docker, ImageConfig, TarArchive, OUTPUT_TAIL_LINES};
use crate::diagnostics::Error;
use crate::reference::{registry_of, split_tag};

/// An image that carries a cache key label. The label alone does not prove
/// that imgscript made it: see [`Docker::verify_cached`].
#[derive(Debug, Clone)]
pub struct CachedImage {
    pub key: String,
    pub image_id: String,
    /// Bytes of all its layers, the base image's included. The engine's
    /// API 1.41 cannot tell the bytes that removing it alone would free.
    pub size: u64,
    /// Seconds since the Unix epoch.
    pub created: i64,
    pub tags: Vec<String>,
    /// The image it was committed from, or empty. The engine refuses to
    /// remove an image that another one names as its parent.
    pub parent: String,
}

/// The message of a failed Dockerfile build and its last output lines.
#[derive(Debug)]
pub struct BuildFailure {
    pub message: String,
    pub output_tail: Vec<String>,
}

impl Docker {
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
    /// `on_bytes` receives the bytes downloaded so far and the total of the
    /// layers the engine has announced, as they change.
    pub async fn pull(
        &self,
        reference: &str,
        credentials: Option<DockerCredentials>,
        on_bytes: &mut (dyn FnMut(u64, u64) + Send),
    ) -> Result<(), Error> {
        debug!(%reference, "pulling base image");
        let options = CreateImageOptionsBuilder::default()
            .from_image(reference)
            .build();
        let mut progress = self.client.create_image(Some(options), None, credentials);
        let mut layers: HashMap<String, (u64, u64)> = HashMap::new();
        while let Some(item) = progress.next().await {
            let info = item.map_err(|error| Error::BaseImageUnavailable {
                reference: reference.to_string(),
                registry: registry_of(reference),
                reason: docker_message(&error),
            })?;
            let (Some(layer), Some(detail)) = (info.id, info.progress_detail) else {
                continue;
            };
            if info.status.as_deref() != Some("Downloading") {
                continue;
            }
            let as_bytes = |value: Option<i64>| value.map_or(0, |value| value.max(0) as u64);
            layers.insert(layer, (as_bytes(detail.current), as_bytes(detail.total)));
            let (done, total) = layers.values().fold((0, 0), |(done, total), layer| {
                (done + layer.0, total + layer.1)
            });
            on_bytes(done, total);
        }
        Ok(())
    }

    /// Lists every image carrying a cache key label, with its size, tags
    /// and creation time.
    pub async fn cached_image_summaries(&self) -> Result<Vec<CachedImage>, Error> {
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
        let cached = images
            .into_iter()
            .filter_map(|image| {
                let key = image.labels.get(KEY_LABEL)?.clone();
                let tags = image
                    .repo_tags
                    .into_iter()
                    .filter(|tag| tag != "<none>:<none>")
                    .collect();
                Some(CachedImage {
                    key,
                    image_id: image.id,
                    size: image.size.max(0) as u64,
                    created: image.created,
                    tags,
                    parent: image.parent_id,
                })
            })
            .collect();
        Ok(cached)
    }

    /// Checks that `image_id` is a cached step image imgscript made for
    /// `key`, as [`Docker::verify_cached`] does, and also that no later
    /// step of another builder extended it: its history is as long as it
    /// was when imgscript made it. Images made before imgscript recorded
    /// that length fail the check.
    pub async fn made_by_imgscript(&self, image_id: &str, key: &str) -> Result<bool, Error> {
        let Some(inspect) = self.verify_cached(image_id, key).await? else {
            return Ok(false);
        };
        let recorded = inspect
            .config
            .as_ref()
            .and_then(|config| config.labels.as_ref())
            .and_then(|labels| labels.get(HISTORY_LABEL))
            .and_then(|count| count.parse::<usize>().ok());
        let Some(recorded) = recorded else {
            return Ok(false);
        };
        let history = self.client.image_history(image_id).await.map_err(|error| {
            Error::docker(format!("reading the history of image {image_id}"), error)
        })?;
        Ok(history.len() == recorded)
    }

    /// Removes an image without pruning its untagged parents. Reports the
    /// engine's reason when it refuses, such as a container using it.
    pub async fn remove_image(&self, image_id: &str) -> Result<(), String> {
        let options = RemoveImageOptionsBuilder::default().noprune(true).build();
        self.client
            .remove_image(image_id, Some(options), None)
            .await
            .map(|_| ())
            .map_err(|error| docker_message(&error))
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

    /// Builds the Dockerfile named `dockerfile` inside the context
    /// `archive` with the engine's classic builder, which removes its
    /// intermediate containers whatever the outcome. Returns the built
    /// image's id, or the failure the build reported. An error of a
    /// streamed archive's writer wins over the engine's, since it is why
    /// the engine saw the context break off.
    pub async fn build_dockerfile(
        &self,
        archive: impl Into<TarArchive>,
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
        let (body, writer) = archive.into().into_body(bollard::body_full, |chunks| {
            bollard::body_try_stream(chunks)
        });

        let stream = self.client.build_image(options, None, Some(body));
        let built = read_build_output(stream, output).await;

        writer.finish().await?;
        built
    }
}

/// Reads a build's progress to its end, passing each line of output to
/// `output`, and returns the built image's id or the failure the build
/// reported.
async fn read_build_output(
    stream: impl futures_util::Stream<Item = Result<BuildInfo, BollardError>>,
    output: &mut (dyn FnMut(&str) + Send),
) -> Result<Result<String, BuildFailure>, Error> {
    let mut stream = std::pin::pin!(stream);
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

/// Groups listed cached images by key: key to image ids, newest first, so
/// that after a forced rebuild the new image wins.
pub fn image_ids_by_key(mut images: Vec<CachedImage>) -> HashMap<String, Vec<String>> {
    images.sort_by_key(|image| std::cmp::Reverse(image.created));
    let mut by_key: HashMap<String, Vec<String>> = HashMap::new();
    for image in images {
        by_key.entry(image.key).or_default().push(image.image_id);
    }
    by_key
}
