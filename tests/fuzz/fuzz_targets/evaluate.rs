//! Evaluates any text as a script, then does what planning does without
//! Docker: cache keys, input manifests and descriptions of every layer.
//! Any input may fail, but none may panic.

#![no_main]

use std::path::Path;
use std::sync::Arc;

use imgscript::cache_key::layer_key;
use imgscript::explain::InputManifest;
use imgscript::image::Layer;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = imgscript::script::is_incomplete(text);
    let path = Path::new("/nonexistent/fuzz/build.img");
    let Ok(target) = imgscript::script::evaluate_text(path, text.to_string()) else {
        return;
    };
    let Ok(images) = target.select(None) else {
        return;
    };
    for (_, image) in images {
        plan_offline(&image.layer);
    }
});

/// Computes the key, manifest and description of each layer from the base
/// up, as the planner does once base images are resolved.
fn plan_offline(layer: &Arc<Layer>) {
    let mut parent_key: Option<String> = None;
    for link in layer.chain() {
        let input_key = match &link.step {
            imgscript::image::Step::CopyFrom(copy) => {
                plan_offline(&copy.source);
                Some("source".to_string())
            }
            imgscript::image::Step::Base(_) => Some("sha256:base".to_string()),
            _ => None,
        };
        let key = layer_key(&link, parent_key.as_deref(), input_key.as_deref());
        let _ = InputManifest::of(&link, parent_key.as_deref(), input_key.as_deref());
        let _ = link.describe();
        parent_key = Some(key);
    }
}
