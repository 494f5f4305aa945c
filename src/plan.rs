//! The planner: a cache key for every layer and, for each, whether a cached
//! image can be reused or the step must be built, and why.

use std::collections::HashMap;
use std::sync::Arc;

use crate::backend::Docker;
use crate::cache_index::CacheIndex;
use crate::cache_key::layer_key;
use crate::diagnostics::Error;
use crate::image::{BaseImage, Image, Layer, Step};
use crate::progress::Progress;
use crate::reference::registry_of;
use crate::registry_auth::credentials_for;

/// The reason a step must be built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// No image in the local store carries this step's cache key, because the
    /// step is new or an input of it changed.
    NotCached,
    /// `force_build` on the step or IMGSCRIPT_FORCE_BUILD=1.
    Forced,
    /// A step before it is built.
    ParentRebuilt,
    /// The image a `copy_from` step copies out of is built.
    SourceRebuilt,
    /// `force_build` on the base image: the base itself is used from the
    /// local store, and every step after it rebuilds.
    BaseForced,
    /// The base image is not in the local store.
    BaseMissing,
}

impl Reason {
    pub fn describe(self) -> &'static str {
        match self {
            Reason::NotCached => "no cached layer for this step (new or changed)",
            Reason::Forced => "forced",
            Reason::ParentRebuilt => "an earlier step is rebuilt",
            Reason::SourceRebuilt => "the image it copies from is rebuilt",
            Reason::BaseForced => "force_build on the base image",
            Reason::BaseMissing => "base image not in the local store; it will be pulled",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    Cached { image_id: String },
    Build(Reason),
}

/// One layer of the DAG with its key and status.
#[derive(Debug)]
pub struct PlannedStep {
    pub layer: Arc<Layer>,
    pub parent: Option<usize>,
    /// The step whose image `copy_from` copies out of.
    pub source: Option<usize>,
    /// Set by `force_build: true` on this step or on an identical step that
    /// was merged into it.
    force_build: bool,
    /// Unknown while the base image below it is missing.
    pub key: Option<String>,
    pub status: Status,
    /// Cached images holding this step's key, newest first.
    candidates: Vec<String>,
    /// True once the cached image has been checked against its key.
    verified: bool,
}

/// An image to deliver: the step it ends at, and its name in a map target.
#[derive(Debug)]
pub struct PlannedTarget {
    pub name: Option<String>,
    pub step: usize,
    pub image: Image,
}

#[derive(Debug)]
pub struct Plan {
    /// Steps in dependency order: every parent before its children.
    pub steps: Vec<PlannedStep>,
    pub targets: Vec<PlannedTarget>,
}

impl PlannedStep {
    /// The steps whose images this step reads: its parent and, for
    /// `copy_from`, its source.
    pub fn dependencies(&self) -> impl Iterator<Item = usize> {
        self.parent.into_iter().chain(self.source)
    }

    /// Older images that hold this step's key and that a rebuild replaces.
    pub fn stale_images(&self) -> &[String] {
        match (&self.status, &self.layer.step) {
            (Status::Build(_), step) if !matches!(step, Step::Base(_)) => &self.candidates,
            _ => &[],
        }
    }
}

/// How a plan treats base images and forced steps.
pub struct PlanOptions<'a> {
    /// Forces every step, as IMGSCRIPT_FORCE_BUILD=1 does.
    pub force_all: bool,
    /// Set when planning a build: base images missing from the local store
    /// are pulled, and each pull and each long hashing of local files is
    /// reported here. With `None`, a missing base is planned as "to pull".
    pub progress: Option<&'a dyn Progress>,
}

/// The questions that settling a plan from the candidates at hand left open.
struct Settled {
    /// A cached image failed its check, so the index held a stale entry.
    candidate_failed: bool,
    /// Some step is planned as not cached.
    uncached: bool,
}

impl Plan {
    /// Plans the given images against the images in Docker's store. Cached
    /// images are found through the local cache index first, and by listing
    /// every cached image only when the index cannot settle the plan.
    pub async fn new(
        docker: &Docker,
        cache_index: &CacheIndex,
        targets: Vec<(Option<String>, Image)>,
        options: PlanOptions<'_>,
    ) -> Result<Self, Error> {
        let mut plan = Plan {
            steps: Vec::new(),
            targets: Vec::new(),
        };
        let mut index_of: HashMap<*const Layer, usize> = HashMap::new();
        for (name, image) in targets {
            let step = plan.add_chain(&image.layer, &mut index_of);
            plan.targets.push(PlannedTarget { name, step, image });
        }

        plan.compute_keys(docker, options.progress).await?;
        plan.merge_identical_steps();

        plan.add_indexed_candidates(cache_index);
        let settled = plan.settle(docker, cache_index, options.force_all).await?;
        let must_list =
            settled.candidate_failed || (settled.uncached && !cache_index.is_complete());
        if must_list {
            tracing::debug!("the cache index missed; listing cached images");
            plan.add_listed_candidates(docker, cache_index).await?;
            plan.settle(docker, cache_index, options.force_all).await?;
        }
        Ok(plan)
    }

    fn add_chain(
        &mut self,
        layer: &Arc<Layer>,
        index_of: &mut HashMap<*const Layer, usize>,
    ) -> usize {
        let mut parent = None;
        for link in layer.chain() {
            let pointer = Arc::as_ptr(&link);
            let index = match index_of.get(&pointer) {
                Some(index) => *index,
                None => {
                    // A copy_from source comes before the step, so every
                    // step follows all the steps it reads.
                    let source = match &link.step {
                        Step::CopyFrom(copy) => Some(self.add_chain(&copy.source, index_of)),
                        _ => None,
                    };
                    self.steps.push(PlannedStep {
                        layer: Arc::clone(&link),
                        parent,
                        source,
                        force_build: link.force_build,
                        key: None,
                        status: Status::Build(Reason::NotCached),
                        candidates: Vec::new(),
                        verified: false,
                    });
                    index_of.insert(pointer, self.steps.len() - 1);
                    self.steps.len() - 1
                }
            };
            parent = Some(index);
        }
        parent.expect("a chain has at least its base")
    }

    /// Resolves base images in the local store, pulling missing ones when
    /// `progress` is set, and computes every key that does not depend on a
    /// missing base.
    async fn compute_keys(
        &mut self,
        docker: &Docker,
        progress: Option<&dyn Progress>,
    ) -> Result<(), Error> {
        for index in 0..self.steps.len() {
            let layer = Arc::clone(&self.steps[index].layer);
            if let Some(progress) = progress {
                hash_reporting_progress(&layer, progress);
            }
            let key = match (&layer.step, self.steps[index].parent) {
                (Step::Base(base), _) => match resolve_base(docker, base, progress).await? {
                    Some(image_id) => {
                        tracing::debug!(reference = base.reference(), %image_id, "base image found");
                        self.steps[index].candidates = vec![image_id.clone()];
                        Some(layer_key(&layer, None, Some(&image_id)))
                    }
                    None => None,
                },
                (Step::CopyFrom(_), Some(parent)) => {
                    let source = self.steps[index]
                        .source
                        .expect("copy_from steps have a source");
                    match (&self.steps[parent].key, &self.steps[source].key) {
                        (Some(parent_key), Some(source_key)) => {
                            Some(layer_key(&layer, Some(parent_key), Some(source_key)))
                        }
                        _ => None,
                    }
                }
                (_, Some(parent)) => self.steps[parent]
                    .key
                    .as_deref()
                    .map(|parent_key| layer_key(&layer, Some(parent_key), None)),
                (Step::Dockerfile(_), None) => Some(layer_key(&layer, None, None)),
                (_, None) => unreachable!("only base and Dockerfile steps have no parent"),
            };
            self.steps[index].key = key;
        }
        Ok(())
    }

    /// Merges steps with the same cache key into the first of them, so a
    /// layer that two targets declare apart (by calling one function twice,
    /// say) is planned and built once.
    fn merge_identical_steps(&mut self) {
        let mut first_with_key: HashMap<String, usize> = HashMap::new();
        let mut new_index = Vec::with_capacity(self.steps.len());
        let mut merged: Vec<PlannedStep> = Vec::with_capacity(self.steps.len());

        for mut step in std::mem::take(&mut self.steps) {
            if let Some(&existing) = step.key.as_ref().and_then(|key| first_with_key.get(key)) {
                merged[existing].force_build |= step.force_build;
                new_index.push(existing);
                continue;
            }
            step.parent = step.parent.map(|parent| new_index[parent]);
            step.source = step.source.map(|source| new_index[source]);
            if let Some(key) = &step.key {
                first_with_key.insert(key.clone(), merged.len());
            }
            new_index.push(merged.len());
            merged.push(step);
        }

        self.steps = merged;
        for target in &mut self.targets {
            target.step = new_index[target.step];
        }
    }

    fn add_indexed_candidates(&mut self, cache_index: &CacheIndex) {
        for step in self.steps.iter_mut().filter(|step| !is_base(step)) {
            if let Some(image_id) = step.key.as_deref().and_then(|key| cache_index.lookup(key)) {
                step.candidates = vec![image_id];
            }
        }
    }

    /// Adds the images that carry each step's key label, newest first, after
    /// any candidate the index gave. Steps the index did not know get an
    /// entry, so the next run finds them there; entries are checked before
    /// use, so recording one unchecked costs at most a listing later.
    async fn add_listed_candidates(
        &mut self,
        docker: &Docker,
        cache_index: &CacheIndex,
    ) -> Result<(), Error> {
        let listed = docker.cached_image_summaries().await?;
        cache_index.record_listing(&listed);
        let mut cached = crate::backend::image_ids_by_key(listed);
        for step in self.steps.iter_mut().filter(|step| !is_base(step)) {
            let Some(key) = step.key.as_deref() else {
                continue;
            };
            let Some(listed) = cached.remove(key) else {
                continue;
            };
            if step.candidates.is_empty() {
                cache_index.record(key, &listed[0]);
            }
            for image_id in listed {
                if !step.candidates.contains(&image_id) {
                    step.candidates.push(image_id);
                }
            }
        }
        Ok(())
    }

    /// Sets every status, checking the cached images that the build would
    /// use. A check that fails drops that image and plans again. Reports
    /// whether a step may still have a cached image that the candidates
    /// lack: one whose candidate failed, or one planned as not cached.
    async fn settle(
        &mut self,
        docker: &Docker,
        cache_index: &CacheIndex,
        force_all: bool,
    ) -> Result<Settled, Error> {
        let mut candidate_failed = false;
        loop {
            self.assign_statuses(force_all);

            let Some(index) = self.next_unverified() else {
                let uncached = self
                    .steps
                    .iter()
                    .any(|step| step.status == Status::Build(Reason::NotCached));
                return Ok(Settled {
                    candidate_failed,
                    uncached,
                });
            };
            let step = &mut self.steps[index];
            let key = step.key.clone().unwrap_or_default();
            let candidate = step.candidates[0].clone();
            let genuine = is_base(step) || docker.verify_cached(&candidate, &key).await?.is_some();
            if genuine {
                step.verified = true;
                step.candidates.truncate(1);
                if !is_base(step) {
                    cache_index.record(&key, &candidate);
                }
            } else {
                tracing::debug!(image_id = %candidate, %key, "cached image does not match its key; skipping it");
                step.candidates.remove(0);
                candidate_failed = true;
            }
        }
    }

    fn assign_statuses(&mut self, force_all: bool) {
        let forced = |step: &PlannedStep| force_all || step.force_build;

        // Steps come parents first, so a parent's status is final here.
        for index in 0..self.steps.len() {
            let step = &self.steps[index];
            let builds = |dependency: Option<usize>| {
                dependency.is_some_and(|index| matches!(self.steps[index].status, Status::Build(_)))
            };
            let parent_rebuilds = builds(step.parent);
            let source_rebuilds = builds(step.source);
            // A forced base is not pulled again, but the steps after it rebuild.
            let base_forced = step.dependencies().any(|dependency| {
                is_base(&self.steps[dependency]) && forced(&self.steps[dependency])
            });

            let status = match step.candidates.first() {
                Some(image_id) if is_base(step) => Status::Cached {
                    image_id: image_id.clone(),
                },
                None if is_base(step) => Status::Build(Reason::BaseMissing),
                _ if forced(step) => Status::Build(Reason::Forced),
                _ if parent_rebuilds => Status::Build(Reason::ParentRebuilt),
                _ if source_rebuilds => Status::Build(Reason::SourceRebuilt),
                _ if base_forced => Status::Build(Reason::BaseForced),
                Some(image_id) => Status::Cached {
                    image_id: image_id.clone(),
                },
                None => Status::Build(Reason::NotCached),
            };
            self.steps[index].status = status;
        }
    }

    /// Returns a cached step whose image the build will use and that has
    /// not been checked yet: a target, or a dependency of a step to build.
    fn next_unverified(&self) -> Option<usize> {
        let used_by_build = self
            .steps
            .iter()
            .filter(|step| matches!(step.status, Status::Build(_)))
            .flat_map(PlannedStep::dependencies);
        let targets = self.targets.iter().map(|target| target.step);
        used_by_build.chain(targets).find(|&index| {
            matches!(self.steps[index].status, Status::Cached { .. }) && !self.steps[index].verified
        })
    }

    /// Returns the keys of the cached steps, bases excepted.
    pub fn cached_keys(&self) -> impl Iterator<Item = &str> {
        self.steps
            .iter()
            .filter(|step| matches!(step.status, Status::Cached { .. }) && !is_base(step))
            .filter_map(|step| step.key.as_deref())
    }

    /// Number of steps that will be built.
    pub fn steps_to_build(&self) -> usize {
        self.steps
            .iter()
            .filter(|step| matches!(step.status, Status::Build(_)) && !is_base(step))
            .count()
    }
}

/// Local folders with at least this many entries report their hashing.
const REPORTED_HASHING_ENTRIES: usize = 1000;

/// Hashes the local files `layer` reads, when there are many and they are
/// not hashed yet, with a report before and after.
fn hash_reporting_progress(layer: &Layer, progress: &dyn Progress) {
    let context = match &layer.step {
        Step::Copy(copy) => Some(&copy.context),
        Step::Dockerfile(dockerfile) => Some(&dockerfile.context),
        Step::DockerfileCommands(commands) => commands.context.as_ref(),
        _ => None,
    };
    let Some(context) = context else { return };
    if context.entries.len() < REPORTED_HASHING_ENTRIES || context.is_hashed() {
        return;
    }
    let name = context.display_source();
    let files = context
        .entries
        .iter()
        .filter(|entry| matches!(entry.kind, crate::context::EntryKind::File))
        .count();
    progress.hashing(name, files);
    let started = std::time::Instant::now();
    context.digest();
    progress.hashed(name, started.elapsed());
}

fn is_base(step: &PlannedStep) -> bool {
    matches!(step.layer.step, Step::Base(_))
}

/// Returns the local image id of a base, pulling it first where allowed.
async fn resolve_base(
    docker: &Docker,
    base: &BaseImage,
    progress: Option<&dyn Progress>,
) -> Result<Option<String>, Error> {
    if let Some(inspect) = docker.inspect(base.reference()).await? {
        return Ok(inspect.id);
    }
    match (base, progress) {
        (BaseImage::Id(id), _) => Err(Error::ImageIdNotFound {
            reference: id.clone(),
        }),
        (BaseImage::Registry { .. }, None) => Ok(None),
        (BaseImage::Registry { reference, auth }, Some(progress)) => {
            progress.pulling(reference);
            let unavailable = |reason: String| Error::BaseImageUnavailable {
                reference: reference.clone(),
                registry: registry_of(reference),
                reason,
            };
            let (owned_reference, owned_auth) = (reference.clone(), auth.clone());
            let credentials =
                tokio::task::spawn_blocking(move || credentials_for(&owned_reference, &owned_auth))
                    .await
                    .map_err(|error| unavailable(error.to_string()))?
                    .map_err(|error| unavailable(error.to_string()))?;
            let started = std::time::Instant::now();
            let mut on_bytes =
                |downloaded, total| progress.pull_bytes(reference, downloaded, total);
            docker.pull(reference, credentials, &mut on_bytes).await?;
            progress.pulled(reference, started.elapsed());
            let pulled = docker.inspect(reference).await?;
            Ok(pulled.and_then(|inspect| inspect.id))
        }
    }
}
