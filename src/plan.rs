//! The planner: a cache key for every layer and, for each, whether a cached
//! image can be reused or the step must be built, and why.

use std::collections::HashMap;
use std::sync::Arc;

use crate::backend::Docker;
use crate::cache_key::layer_key;
use crate::diagnostics::Error;
use crate::image::{BaseImage, Image, Layer, Step};

/// Why a step must be built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// No image in the local store holds this step's cache key: the step is
    /// new, or an input of it changed.
    NotCached,
    /// `force_build` on the step or IMGSCRIPT_FORCE_BUILD=1.
    Forced,
    /// A step before it is built, or forced.
    ParentRebuilt,
    /// The base image is not in the local store.
    BaseMissing,
}

impl Reason {
    pub fn describe(self) -> &'static str {
        match self {
            Reason::NotCached => "no cached layer for this step (new or changed)",
            Reason::Forced => "forced",
            Reason::ParentRebuilt => "an earlier step is rebuilt",
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
    /// Older images that hold this step's key and that a rebuild replaces.
    pub fn stale_images(&self) -> &[String] {
        match (&self.status, &self.layer.step) {
            (Status::Build(_), step) if !matches!(step, Step::Base(_)) => &self.candidates,
            _ => &[],
        }
    }
}

impl Plan {
    /// Plans the given images against the images in Docker's store.
    /// `force_all` forces every step, as IMGSCRIPT_FORCE_BUILD=1 does.
    pub async fn new(
        docker: &Docker,
        targets: Vec<(Option<String>, Image)>,
        force_all: bool,
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

        plan.compute_keys(docker).await?;
        plan.find_candidates(docker).await?;
        plan.settle(docker, force_all).await?;
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
                    self.steps.push(PlannedStep {
                        layer: Arc::clone(&link),
                        parent,
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

    /// Resolves base images in the local store and computes every key that
    /// does not depend on a missing base.
    async fn compute_keys(&mut self, docker: &Docker) -> Result<(), Error> {
        for index in 0..self.steps.len() {
            let layer = Arc::clone(&self.steps[index].layer);
            let key = match (&layer.step, self.steps[index].parent) {
                (Step::Base(base), _) => match docker.inspect(base.reference()).await? {
                    Some(inspect) => {
                        let image_id = inspect.id.unwrap_or_default();
                        tracing::debug!(reference = base.reference(), %image_id, "base image found");
                        self.steps[index].candidates = vec![image_id.clone()];
                        Some(layer_key(&layer, None, Some(&image_id)))
                    }
                    None if matches!(base, BaseImage::Id(_)) => {
                        return Err(Error::ImageIdNotFound {
                            reference: base.reference().to_string(),
                        })
                    }
                    None => None,
                },
                (_, Some(parent)) => self.steps[parent]
                    .key
                    .as_deref()
                    .map(|parent_key| layer_key(&layer, Some(parent_key), None)),
                (_, None) => unreachable!("only base steps have no parent"),
            };
            self.steps[index].key = key;
        }
        Ok(())
    }

    async fn find_candidates(&mut self, docker: &Docker) -> Result<(), Error> {
        let needs_lookup = self
            .steps
            .iter()
            .any(|step| !matches!(step.layer.step, Step::Base(_)));
        if !needs_lookup {
            return Ok(());
        }
        let mut cached = docker.cached_images().await?;
        for step in &mut self.steps {
            if matches!(step.layer.step, Step::Base(_)) {
                continue;
            }
            if let Some(key) = &step.key {
                step.candidates = cached.remove(key).unwrap_or_default();
            }
        }
        Ok(())
    }

    /// Sets every status, checking the cached images that the build would
    /// actually use. A check that fails drops that image and plans again.
    async fn settle(&mut self, docker: &Docker, force_all: bool) -> Result<(), Error> {
        loop {
            self.assign_statuses(force_all);

            let Some(index) = self.next_unverified() else {
                return Ok(());
            };
            let key = self.steps[index].key.clone().unwrap_or_default();
            let candidate = self.steps[index].candidates[0].clone();
            let genuine = matches!(self.steps[index].layer.step, Step::Base(_))
                || docker.verify_cached(&candidate, &key).await?.is_some();
            if genuine {
                self.steps[index].verified = true;
                self.steps[index].candidates.truncate(1);
            } else {
                tracing::debug!(image_id = %candidate, %key, "cached image does not match its key; skipping it");
                self.steps[index].candidates.remove(0);
            }
        }
    }

    fn assign_statuses(&mut self, force_all: bool) {
        let forced = |step: &PlannedStep| force_all || step.layer.force_build;
        let is_base = |step: &PlannedStep| matches!(step.layer.step, Step::Base(_));

        // Steps come parents first, so a parent's status is final here.
        for index in 0..self.steps.len() {
            let step = &self.steps[index];
            // A forced base is not rebuilt, but the steps after it are.
            let parent_rebuilds = step.parent.is_some_and(|parent| {
                let parent = &self.steps[parent];
                matches!(parent.status, Status::Build(_)) || (is_base(parent) && forced(parent))
            });

            let status = match step.candidates.first() {
                Some(image_id) if is_base(step) => Status::Cached {
                    image_id: image_id.clone(),
                },
                None if is_base(step) => Status::Build(Reason::BaseMissing),
                _ if forced(step) => Status::Build(Reason::Forced),
                _ if parent_rebuilds => Status::Build(Reason::ParentRebuilt),
                Some(image_id) => Status::Cached {
                    image_id: image_id.clone(),
                },
                None => Status::Build(Reason::NotCached),
            };
            self.steps[index].status = status;
        }
    }

    /// Returns a cached step whose image the build will use and that has
    /// not been checked yet: a target, or the parent of a step to build.
    fn next_unverified(&self) -> Option<usize> {
        let used_by_build = self.steps.iter().filter_map(|step| match step.status {
            Status::Build(_) => step.parent,
            Status::Cached { .. } => None,
        });
        let targets = self.targets.iter().map(|target| target.step);
        used_by_build.chain(targets).find(|&index| {
            matches!(self.steps[index].status, Status::Cached { .. }) && !self.steps[index].verified
        })
    }

    /// Number of steps that will be built.
    pub fn steps_to_build(&self) -> usize {
        self.steps
            .iter()
            .filter(|step| {
                matches!(step.status, Status::Build(_)) && !matches!(step.layer.step, Step::Base(_))
            })
            .count()
    }
}
