//! `imgscript cache ls` and `imgscript cache prune`: the cached layers that
//! imgscript keeps in Docker's image store.
//!
//! A layer's last use is the time a run last planned it as cached or built
//! it, which the cache index keeps as the modification time of the layer's
//! entry. Docker itself does not record when an image was last used. A
//! layer the index does not know yet counts as last used when it was
//! created.

use std::collections::HashSet;
use std::time::{Duration, SystemTime};

use crate::backend::{CachedImage, Docker};
use crate::cache_index::CacheIndex;
use crate::diagnostics::Error;

/// One cached layer and when it was last used.
#[derive(Debug, Clone)]
pub struct CachedLayer {
    pub image: CachedImage,
    pub last_used: SystemTime,
}

/// Lists the cached layers in the store, most recently used first.
pub async fn list(docker: &Docker, index: &CacheIndex) -> Result<Vec<CachedLayer>, Error> {
    let now = SystemTime::now();
    let mut layers: Vec<CachedLayer> = docker
        .cached_image_summaries()
        .await?
        .into_iter()
        .map(|image| {
            let last_used = index.last_used(&image.key).unwrap_or_else(|| {
                index.record_seen(&image);
                index.last_used(&image.key).unwrap_or(now)
            });
            CachedLayer { image, last_used }
        })
        .collect();
    layers.sort_by_key(|layer| std::cmp::Reverse(layer.last_used));
    Ok(layers)
}

/// Returns "1 cached layer" or "N cached layers".
fn layers(count: usize) -> String {
    let noun = if count == 1 { "layer" } else { "layers" };
    format!("{count} cached {noun}")
}

/// The rules that pick the layers a prune removes.
#[derive(Debug, Clone, Copy, Default)]
pub struct PruneRules {
    /// Remove only layers unused for longer than this.
    pub older_than: Option<Duration>,
    /// Keep the most recently used layers whose sizes add up to at most
    /// this many bytes, and remove the rest. A layer's size counts its
    /// whole image, the base image included, so this keeps fewer layers
    /// than the disk they take would allow.
    pub keep_storage: Option<u64>,
}

/// Picks the layers to remove from `layers`, most recently used first.
/// Tagged layers are never picked: someone named them. Without rules,
/// every untagged layer is picked.
pub fn select(layers: &[CachedLayer], rules: PruneRules, now: SystemTime) -> Vec<&CachedLayer> {
    let untagged = layers.iter().filter(|layer| layer.image.tags.is_empty());
    let mut kept_bytes = 0u64;
    let mut selected = Vec::new();
    for layer in untagged {
        let age = now.duration_since(layer.last_used).unwrap_or_default();
        let old_enough = rules.older_than.is_none_or(|limit| age > limit);
        let within_storage = rules
            .keep_storage
            .is_some_and(|limit| kept_bytes + layer.image.size <= limit);
        let kept_by_storage = rules.keep_storage.is_some() && within_storage;
        if old_enough && !kept_by_storage {
            selected.push(layer);
        } else {
            kept_bytes += layer.image.size;
        }
    }
    selected
}

/// The layers a prune removed, and those the engine refused to remove.
#[derive(Debug, Default)]
pub struct Pruned {
    pub removed: Vec<CachedLayer>,
    pub refused: Vec<(CachedLayer, String)>,
    /// Selected layers that imgscript cannot prove it made, and so kept.
    pub unproven: usize,
}

/// Removes the layers `rules` select. Each is first checked to be a layer
/// imgscript made, since an image built on a cached layer inherits its
/// labels. Images that fail the check are left alone, among them layers
/// made before imgscript labelled the length of their history.
pub async fn prune(
    docker: &Docker,
    index: &CacheIndex,
    rules: PruneRules,
    dry_run: bool,
) -> Result<Pruned, Error> {
    let layers = list(docker, index).await?;
    let mut pruned = Pruned::default();
    let mut removable = Vec::new();
    for layer in select(&layers, rules, SystemTime::now()) {
        let image = &layer.image;
        if docker
            .made_by_imgscript(&image.image_id, &image.key)
            .await?
        {
            removable.push(layer);
        } else {
            tracing::debug!(image = %image.image_id, "not proven an imgscript layer; kept");
            pruned.unproven += 1;
        }
    }

    let (removable, parents) = keep_parents_of_kept(&layers, removable);
    for layer in parents {
        let reason = "an image that stays was committed from it".to_string();
        pruned.refused.push((layer.clone(), reason));
    }
    for layer in removable {
        let image = &layer.image;
        if dry_run {
            pruned.removed.push(layer.clone());
            continue;
        }
        match docker.remove_image(&image.image_id).await {
            Ok(()) => pruned.removed.push(layer.clone()),
            Err(reason) => pruned.refused.push((
                layer.clone(),
                format!("the engine refused to remove it: {reason}"),
            )),
        }
    }
    Ok(pruned)
}

/// Splits `removable` into the layers to remove, children before their
/// parents, and those to keep because a cached image that stays names them
/// as its parent, which the engine would refuse. The split is the same in a
/// dry run and a real one. Images without imgscript's labels are not
/// listed, so one of them that names a layer as its parent still makes the
/// engine refuse.
fn keep_parents_of_kept<'a>(
    layers: &[CachedLayer],
    removable: Vec<&'a CachedLayer>,
) -> (Vec<&'a CachedLayer>, Vec<&'a CachedLayer>) {
    let mut removing: HashSet<&str> = removable
        .iter()
        .map(|layer| layer.image.image_id.as_str())
        .collect();
    // Keeping a layer keeps its parent too, so repeat until nothing moves.
    loop {
        let kept_parents: HashSet<&str> = layers
            .iter()
            .filter(|layer| !removing.contains(layer.image.image_id.as_str()))
            .map(|layer| layer.image.parent.as_str())
            .collect();
        let before = removing.len();
        removing.retain(|id| !kept_parents.contains(id));
        if removing.len() == before {
            break;
        }
    }

    let (mut remove, keep): (Vec<_>, Vec<_>) = removable
        .into_iter()
        .partition(|layer| removing.contains(layer.image.image_id.as_str()));
    // A child is always newer than its parent.
    remove.sort_by_key(|layer| std::cmp::Reverse(layer.image.created));
    (remove, keep)
}

/// Prints the cached layers as a table, or as JSON for tools.
pub async fn ls_command(json: bool) -> Result<std::process::ExitCode, Error> {
    let docker = Docker::connect().await?;
    let index = CacheIndex::for_daemon(&crate::backend::daemon_address());
    let layers = list(&docker, &index).await?;
    let now = SystemTime::now();

    let text = if json {
        let entries: Vec<serde_json::Value> = layers
            .iter()
            .map(|layer| {
                serde_json::json!({
                    "cache_key": layer.image.key,
                    "image_id": layer.image.image_id,
                    "size": layer.image.size,
                    "created": layer.image.created,
                    "last_used": unix_seconds(layer.last_used),
                    "tags": layer.image.tags,
                })
            })
            .collect();
        format!("{:#}\n", serde_json::Value::from(entries))
    } else {
        table(&layers, now)
    };
    crate::cli::write_stdout(&text);
    Ok(std::process::ExitCode::SUCCESS)
}

fn table(layers: &[CachedLayer], now: SystemTime) -> String {
    use std::fmt::Write as _;

    let mut out = format!(
        "{:<14}{:<14}{:>10}  {:<16}{:<16}TAGS\n",
        "CACHE KEY", "IMAGE ID", "SIZE", "CREATED", "LAST USED"
    );
    for layer in layers {
        let image = &layer.image;
        let created = SystemTime::UNIX_EPOCH + Duration::from_secs(image.created.max(0) as u64);
        let _ = writeln!(
            out,
            "{:<14}{:<14}{:>10}  {:<16}{:<16}{}",
            &image.key[..image.key.len().min(12)],
            short_id(&image.image_id),
            human_bytes(image.size),
            ago(now, created),
            ago(now, layer.last_used),
            image.tags.join(", ")
        );
    }
    let _ = writeln!(
        out,
        "{} cached layers; a size counts the whole image, its base included",
        layers.len()
    );
    out
}

/// Removes the layers `rules` select and reports what went and what stayed.
pub async fn prune_command(
    rules: PruneRules,
    dry_run: bool,
) -> Result<std::process::ExitCode, Error> {
    let docker = Docker::connect().await?;
    let index = CacheIndex::for_daemon(&crate::backend::daemon_address());
    let pruned = prune(&docker, &index, rules, dry_run).await?;

    // Written at once, and a closed stderr (`| head`) ignored: the prune
    // itself is done by now.
    let report = report(&pruned, dry_run);
    let _ = std::io::Write::write_all(&mut std::io::stderr().lock(), report.as_bytes());
    Ok(std::process::ExitCode::SUCCESS)
}

/// Says what a prune removed (or would remove) and what it kept.
fn report(pruned: &Pruned, dry_run: bool) -> String {
    use std::fmt::Write as _;

    let verb = if dry_run { "would remove" } else { "removed" };
    let mut out = String::new();
    for layer in &pruned.removed {
        let _ = writeln!(
            out,
            "{verb} {} (cache key {})",
            short_id(&layer.image.image_id),
            &layer.image.key[..layer.image.key.len().min(12)]
        );
    }
    for (layer, reason) in &pruned.refused {
        let _ = writeln!(out, "kept {}: {reason}", short_id(&layer.image.image_id));
    }
    if pruned.unproven > 0 {
        let _ = writeln!(
            out,
            "kept {} that imgscript cannot prove it made: images built on a cached layer, or layers of an imgscript older than the history label",
            layers(pruned.unproven)
        );
    }
    let bytes: u64 = pruned.removed.iter().map(|layer| layer.image.size).sum();
    let images = if pruned.removed.len() == 1 {
        "its image takes"
    } else {
        "their images add up to"
    };
    let _ = writeln!(
        out,
        "{verb} {} ({images} {}, shared layers counted each time)",
        layers(pruned.removed.len()),
        human_bytes(bytes)
    );
    out
}

fn human_bytes(bytes: u64) -> String {
    bytesize::ByteSize::b(bytes).display().si().to_string()
}

fn short_id(image_id: &str) -> &str {
    let hex = image_id.strip_prefix("sha256:").unwrap_or(image_id);
    &hex[..hex.len().min(12)]
}

fn unix_seconds(time: SystemTime) -> u64 {
    time.duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
}

/// Says how long before `now` a time was, in its largest whole unit.
fn ago(now: SystemTime, then: SystemTime) -> String {
    let seconds = now.duration_since(then).unwrap_or_default().as_secs();
    let (count, unit) = match seconds {
        0..60 => return "just now".to_string(),
        60..3600 => (seconds / 60, "minute"),
        3600..86_400 => (seconds / 3600, "hour"),
        _ => (seconds / 86_400, "day"),
    };
    let plural = if count == 1 { "" } else { "s" };
    format!("{count} {unit}{plural} ago")
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: Duration = Duration::from_secs(3600);

    fn layer(name: &str, size: u64, hours_ago: u32, tagged: bool) -> CachedLayer {
        let now = SystemTime::UNIX_EPOCH + HOUR * 1000;
        CachedLayer {
            image: CachedImage {
                key: name.to_string(),
                image_id: format!("sha256:{name}"),
                size,
                created: 0,
                tags: if tagged {
                    vec![format!("{name}:latest")]
                } else {
                    Vec::new()
                },
                parent: String::new(),
            },
            last_used: now - HOUR * hours_ago,
        }
    }

    fn selected(layers: &[CachedLayer], rules: PruneRules) -> Vec<&str> {
        let now = SystemTime::UNIX_EPOCH + HOUR * 1000;
        select(layers, rules, now)
            .into_iter()
            .map(|layer| layer.image.key.as_str())
            .collect()
    }

    /// Makes a chain base <- middle <- top <- leaf, created in that order.
    fn chain() -> Vec<CachedLayer> {
        let mut layers = Vec::new();
        let mut parent = String::new();
        for (created, name) in ["base", "middle", "top", "leaf"].into_iter().enumerate() {
            let mut layer = layer(name, 10, 48, false);
            layer.image.created = created as i64;
            layer.image.parent = std::mem::take(&mut parent);
            parent = layer.image.image_id.clone();
            layers.push(layer);
        }
        layers
    }

    fn keys(layers: &[&CachedLayer]) -> Vec<String> {
        layers.iter().map(|layer| layer.image.key.clone()).collect()
    }

    #[test]
    fn prune_keeps_parents_of_kept_layers() {
        let layers = chain();
        // The leaf stays (say it is recent), so the whole chain above it
        // stays too.
        let removable: Vec<&CachedLayer> = layers[..3].iter().collect();
        let (remove, keep) = keep_parents_of_kept(&layers, removable);
        assert!(remove.is_empty(), "{:?}", keys(&remove));
        assert_eq!(keys(&keep), ["base", "middle", "top"]);

        let removable: Vec<&CachedLayer> = layers.iter().collect();
        let (remove, keep) = keep_parents_of_kept(&layers, removable);
        assert_eq!(keys(&remove), ["leaf", "top", "middle", "base"]);
        assert!(keep.is_empty());
    }

    #[test]
    fn without_rules_every_untagged_layer_goes() {
        let layers = [layer("a", 10, 1, false), layer("b", 10, 2, true)];
        assert_eq!(selected(&layers, PruneRules::default()), ["a"]);
    }

    #[test]
    fn older_than_keeps_recent_layers() {
        let layers = [layer("new", 10, 1, false), layer("old", 10, 48, false)];
        let rules = PruneRules {
            older_than: Some(24 * HOUR),
            ..PruneRules::default()
        };
        assert_eq!(selected(&layers, rules), ["old"]);
    }

    #[test]
    fn keep_storage_keeps_most_recent_layers_that_fit() {
        let layers = [
            layer("a", 40, 1, false),
            layer("b", 40, 2, false),
            layer("c", 40, 3, false),
        ];
        let rules = PruneRules {
            keep_storage: Some(100),
            ..PruneRules::default()
        };
        assert_eq!(selected(&layers, rules), ["c"]);
    }

    #[test]
    fn both_rules_remove_only_old_layers_beyond_storage() {
        let layers = [
            layer("a", 40, 1, false),
            layer("b", 40, 30, false),
            layer("c", 40, 40, false),
        ];
        let rules = PruneRules {
            older_than: Some(24 * HOUR),
            keep_storage: Some(50),
        };
        assert_eq!(selected(&layers, rules), ["b", "c"]);
    }
}
