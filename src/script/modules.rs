//! `import` for scripts: files relative to the importing script, and the
//! standard library modules of `stdlib/`, which are built into the binary.
//!
//! Every loaded file is kept in a [`Sources`] registry under the name Rhai
//! gives it as its source, so that builder calls inside a module and errors
//! raised there point at the module's own text.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rhai::module_resolvers::ModuleResolver;
use rhai::{Engine, EvalAltResult, Module, Position, Scope, Shared};

/// A loaded module, shared between the scripts that import it.
type SharedModule = Shared<Module>;

use super::{limits, CallError};
use crate::image::ScriptSource;
use crate::suggest::did_you_mean;

/// Standard library modules: the name a script imports, and the text.
const STDLIB: &[(&str, &str)] = &[
    ("apt", include_str!("../../stdlib/apt.img")),
    ("node", include_str!("../../stdlib/node.img")),
    ("python", include_str!("../../stdlib/python.img")),
    ("users", include_str!("../../stdlib/users.img")),
];

/// Returns the names of the standard library modules.
pub fn stdlib_names() -> impl Iterator<Item = &'static str> {
    STDLIB.iter().map(|(name, _)| *name)
}

/// Returns the text of a standard library module.
pub fn stdlib_text(name: &str) -> Option<&'static str> {
    STDLIB
        .iter()
        .find(|(known, _)| *known == name)
        .map(|(_, text)| *text)
}

/// The script and every module it loaded, by source name.
#[derive(Default)]
pub struct Sources {
    by_name: Mutex<HashMap<String, Arc<ScriptSource>>>,
}

impl Sources {
    /// Returns how many scripts are loaded: the main one and its modules.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn insert(&self, name: String, source: Arc<ScriptSource>) {
        self.lock().insert(name, source);
    }

    pub fn get(&self, name: &str) -> Option<Arc<ScriptSource>> {
        self.lock().get(name).cloned()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<ScriptSource>>> {
        self.by_name
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Returns the source name Rhai records for a script file.
pub fn source_name(path: &Path) -> String {
    path.display().to_string()
}

/// Resolves `import` paths and evaluates each module once.
pub struct ScriptModules {
    sources: Arc<Sources>,
    /// Folder of the main script, for imports whose importer is unknown.
    main_folder: PathBuf,
    loaded: Mutex<HashMap<String, SharedModule>>,
    loading: Mutex<HashSet<String>>,
}

impl ScriptModules {
    pub fn new(sources: Arc<Sources>, main_folder: PathBuf) -> Self {
        ScriptModules {
            sources,
            main_folder,
            loaded: Mutex::default(),
            loading: Mutex::default(),
        }
    }

    /// Finds the module's text and the name it is loaded under.
    fn locate(
        &self,
        importer: Option<&str>,
        path: &str,
        position: Position,
    ) -> Result<ScriptSource, Box<EvalAltResult>> {
        let not_found = |detail: String| {
            CallError::new(format!("module {path:?} not found: {detail}"))
                .with_label("imported here")
                .with_help("import files with a path relative to the importing script, such as \"./common\" for common.img beside it")
                .into_rhai(position)
        };

        let is_file = path.starts_with("./") || path.starts_with("../") || path.starts_with('/');
        if !is_file {
            let text = stdlib_text(path).ok_or_else(|| {
                let names: Vec<&str> = stdlib_names().collect();
                let close = did_you_mean(path, names.iter().copied())
                    .map(|name| format!("; did you mean {name:?}?"))
                    .unwrap_or_default();
                not_found(format!(
                    "it is not a standard library module (they are: {}){close}",
                    names.join(", ")
                ))
            })?;
            return Ok(ScriptSource {
                path: PathBuf::from(format!("stdlib/{path}.img")),
                folder: self.main_folder.clone(),
                text: text.to_string(),
            });
        }

        let folder = importer
            .and_then(|name| self.sources.get(name))
            .map_or_else(|| self.main_folder.clone(), |source| source.folder.clone());
        // Drop `.` components so names read `/project/lib/common.img`.
        let relative: PathBuf = path.split('/').filter(|part| *part != ".").collect();
        let written = if path.starts_with('/') {
            Path::new("/").join(relative)
        } else {
            folder.join(relative)
        };
        // Only scripts: a path to any other file, such as /etc/passwd,
        // must not be read and shown in an error.
        let is_script = |path: &Path| {
            path.extension()
                .is_some_and(|extension| extension == "img" || extension == "rhai")
        };
        let candidates = if is_script(&written) {
            vec![written.clone()]
        } else {
            vec![
                PathBuf::from(format!("{}.img", written.display())),
                PathBuf::from(format!("{}.rhai", written.display())),
            ]
        };
        let file = candidates
            .iter()
            .find(|candidate| candidate.is_file())
            .ok_or_else(|| {
                let names: Vec<String> = candidates
                    .iter()
                    .map(|candidate| candidate.display().to_string())
                    .collect();
                not_found(format!("there is no file {}", names.join(" or ")))
            })?;
        let text = std::fs::read_to_string(file)
            .map_err(|error| not_found(format!("failed to read {}: {error}", file.display())))?;
        // Messages show the module as the user would type its path.
        let shown = std::env::current_dir()
            .ok()
            .and_then(|current| file.strip_prefix(current).ok().map(Path::to_path_buf))
            .unwrap_or_else(|| file.clone());
        Ok(ScriptSource {
            path: shown,
            folder: file.parent().map(Path::to_path_buf).unwrap_or_default(),
            text,
        })
    }
}

impl ModuleResolver for ScriptModules {
    fn resolve(
        &self,
        engine: &Engine,
        importer: Option<&str>,
        path: &str,
        position: Position,
    ) -> Result<SharedModule, Box<EvalAltResult>> {
        let module_source = self.locate(importer, path, position)?;
        let name = source_name(&module_source.path);
        if let Some(module) = self
            .loaded
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get(&name)
        {
            return Ok(module.clone());
        }
        if !self
            .loading
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .insert(name.clone())
        {
            return Err(CallError::new(format!(
                "module {path:?} imports itself, directly or through other modules"
            ))
            .with_label("circular import")
            .into_rhai(position));
        }

        // The main script is a source too, so the modules are one fewer.
        if self.sources.len() > limits::MAX_MODULES {
            self.loading
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .remove(&name);
            return Err(EvalAltResult::ErrorTooManyModules(position).into());
        }
        let module_source = Arc::new(module_source);
        self.sources
            .insert(name.clone(), Arc::clone(&module_source));
        let in_module = |error: Box<EvalAltResult>| {
            Box::new(EvalAltResult::ErrorInModule(name.clone(), error, position))
        };
        let result = engine
            .compile(&module_source.text)
            .map_err(|error| in_module(error.into()))
            .and_then(|mut ast| {
                ast.set_source(name.as_str());
                Module::eval_ast_as_new(Scope::new(), &ast, engine).map_err(in_module)
            });

        self.loading
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .remove(&name);
        let module: SharedModule = result?.into();
        self.loaded
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .insert(name, module.clone());
        Ok(module)
    }
}
