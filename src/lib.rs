//! imgscript builds container images from Rhai scripts on a Docker Engine.
//!
//! The modules follow one run: [`script`] evaluates a script into the layer
//! DAG of [`image`]; [`cache_key`] and [`plan`] decide what is cached;
//! [`execute`] builds the rest through [`backend`]; [`cli`] drives it all.

pub mod api_description;
pub mod backend;
pub mod build_lock;
pub mod cache;
pub mod cache_index;
pub mod cache_key;
pub mod cli;
pub mod context;
pub mod diagnostics;
pub mod dockerfile;
pub mod ecr;
pub mod execute;
pub mod explain;
pub mod gpu;
pub mod graph;
pub mod image;
pub mod lsp;
pub mod plan;
pub mod progress;
pub mod python_build;
pub mod reference;
pub mod registry_auth;
pub mod render;
pub mod repl;
pub mod script;
pub mod secret;
pub mod staged_files;
pub mod suggest;
