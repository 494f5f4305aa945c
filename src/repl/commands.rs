//! The REPL's `:` commands. Those that build run the same planner and
//! executor as `imgscript run`, and Ctrl-C stops them, removes their
//! containers and returns to the prompt.

use std::path::PathBuf;
use std::sync::Arc;

use super::helper::COMMANDS;
use super::{report, Repl};
use crate::api_description::{self, Kind};
use crate::backend::{daemon_address, BuildEnvironment, Docker};
use crate::cache_index::CacheIndex;
use crate::cli::{interrupted, mount_binds, print_delivered, print_plan};
use crate::diagnostics::Error;
use crate::execute::{Delivered, Executor};
use crate::image::{Image, ScriptSource};
use crate::plan::{Plan, PlanOptions};
use crate::progress::PlainProgress;
use crate::script::Target;

#[derive(PartialEq, Eq)]
pub(super) enum Next {
    Prompt,
    Quit,
}

impl Repl {
    /// Runs the command typed after `:`.
    pub(super) fn command(&mut self, text: &str) -> Next {
        let (name, argument) = match text.split_once(char::is_whitespace) {
            Some((name, rest)) => (name, rest.trim()),
            None => (text, ""),
        };
        let result = match name {
            "quit" | "q" | "exit" => return Next::Quit,
            "help" | "h" => {
                help(argument);
                Ok(())
            }
            "build" => self.build_command(argument),
            "plan" => self.plan_command(argument),
            "run" => self.run_command(argument),
            "ls" => self.ls_command(argument),
            "shell" => self.shell_command(argument),
            "save" => self.save(argument),
            "load" => self.load_command(argument),
            _ => Err(Error::Usage {
                message: format!("unknown command :{name}"),
                help: match crate::suggest::did_you_mean(
                    name,
                    COMMANDS.iter().map(|(name, _)| *name),
                ) {
                    Some(close) => format!("did you mean :{close}? :help lists the commands"),
                    None => ":help lists the commands".into(),
                },
            }),
        };
        if let Err(error) = result {
            self.failed = true;
            report(error);
        }
        Next::Prompt
    }

    /// Evaluates the expression of a command into the images it names.
    fn images_of(
        &mut self,
        command: &str,
        expression: &str,
    ) -> Result<Vec<(Option<String>, Image)>, Error> {
        if expression.is_empty() {
            return Err(Error::Usage {
                message: format!(":{command} needs an expression, such as a variable holding an image"),
                help: format!("write :{command} app, or :{command} debian_slim(\"3.11\").apt_install([\"git\"])"),
            });
        }
        self.count += 1;
        let source = Arc::new(ScriptSource {
            path: PathBuf::from(format!("entry-{}", self.count)),
            folder: self.session.folder().to_path_buf(),
            text: expression.to_string(),
        });
        let value = self.session.eval(source).map_err(Error::from)?;
        let target = if let Some(image) = value.clone().try_cast::<Image>() {
            Target::Single(image)
        } else if let Some(map) = value.clone().try_cast::<rhai::Map>() {
            let mut images = std::collections::BTreeMap::new();
            for (name, value) in map {
                if let Some(image) = value.try_cast::<Image>() {
                    images.insert(name.to_string(), image);
                }
            }
            Target::Named(images)
        } else {
            return Err(Error::Usage {
                message: format!("`{expression}` is not an image"),
                help: format!(":{command} takes an image, or a map of names to images"),
            });
        };
        target.select(None).map_err(|message| Error::Usage {
            message,
            help: String::new(),
        })
    }

    /// Builds `images`, printing progress, and returns the delivered ids.
    /// Ctrl-C stops the build and removes its containers.
    fn build(
        &self,
        images: Vec<(Option<String>, Image)>,
    ) -> Result<(Docker, Vec<Delivered>), Error> {
        self.runtime.block_on(async {
            let docker = Docker::connect().await?;
            let cache_index = CacheIndex::for_daemon(&daemon_address());
            let environment = BuildEnvironment::from_host(None);
            let work = async {
                let progress = PlainProgress::default();
                let options = PlanOptions {
                    force_all: false,
                    progress: Some(&progress),
                };
                let plan = Plan::new(&docker, &cache_index, images, options).await?;
                Executor::new(&docker, &cache_index, &environment, &progress)
                    .run(&plan, None)
                    .await
            };
            let result = tokio::select! {
                result = work => result,
                signal = interrupted() => Err(Error::Interrupted { signal }),
            };
            match result {
                Ok(delivered) => Ok((docker, delivered)),
                Err(error) => {
                    docker.clean_up().await;
                    Err(error)
                }
            }
        })
    }

    fn build_command(&mut self, expression: &str) -> Result<(), Error> {
        let images = self.images_of("build", expression)?;
        let (_, delivered) = self.build(images)?;
        print_delivered(&delivered, &mut std::io::stdout());
        Ok(())
    }

    fn plan_command(&mut self, expression: &str) -> Result<(), Error> {
        let images = self.images_of("plan", expression)?;
        let plan = self.runtime.block_on(async {
            let docker = Docker::connect().await?;
            let cache_index = CacheIndex::for_daemon(&daemon_address());
            let options = PlanOptions {
                force_all: false,
                progress: None,
            };
            Plan::new(&docker, &cache_index, images, options).await
        })?;
        print_plan(&plan);
        Ok(())
    }

    /// Builds the one image `expression` names and runs `command` in a
    /// container of it, with its `copy: false` files attached.
    fn run_in_container(
        &mut self,
        name: &str,
        expression: &str,
        command: Vec<String>,
        interactive: bool,
    ) -> Result<(), Error> {
        let mut images = self.images_of(name, expression)?;
        if images.len() != 1 {
            return Err(Error::Usage {
                message: format!(
                    ":{name} needs a single image, but `{expression}` names {}",
                    images.len()
                ),
                help: "pick one entry of the map".into(),
            });
        }
        let image = images[0].1.clone();
        let (docker, delivered) = self.build(std::mem::take(&mut images))?;
        let image_id = delivered[0].image_id.clone();
        let status = self.runtime.block_on(async {
            let (binds, _staging) = mount_binds(&docker, &image_id, &image).await?;
            let run = async {
                match interactive {
                    true => docker.run_interactive(&image_id, &command, binds).await,
                    false => docker.run_container(&image_id, &command, binds).await,
                }
            };
            tokio::select! {
                status = run => status,
                signal = interrupted() => {
                    docker.clean_up().await;
                    Err(Error::Interrupted { signal })
                }
            }
        })?;
        if status != 0 {
            eprintln!("(exit status {status})");
        }
        Ok(())
    }

    fn run_command(&mut self, argument: &str) -> Result<(), Error> {
        let Some((expression, command)) = split_command(argument) else {
            return Err(Error::Usage {
                message: ":run needs an image and a command, separated by --".into(),
                help: "write :run app -- python -c 'print(1)'".into(),
            });
        };
        let command = shlex::split(command).ok_or_else(|| Error::Usage {
            message: format!("cannot split the command {command:?} into words"),
            help: "check its quotes".into(),
        })?;
        self.run_in_container("run", expression.trim(), command, false)
    }

    fn ls_command(&mut self, argument: &str) -> Result<(), Error> {
        let (expression, path) = match argument.rsplit_once(char::is_whitespace) {
            Some((expression, path)) if path.starts_with('/') => (expression.trim(), path),
            _ => (argument, "/"),
        };
        let command = ["ls", "-la", "--", path].map(String::from).to_vec();
        self.run_in_container("ls", expression, command, false)
    }

    fn shell_command(&mut self, expression: &str) -> Result<(), Error> {
        if !self.interactive {
            return Err(Error::Usage {
                message: ":shell needs a terminal, and this session reads from a pipe".into(),
                help: "use :run EXPR -- CMD to run a command instead".into(),
            });
        }
        let shell = "if command -v bash >/dev/null 2>&1; then exec bash; else exec sh; fi";
        let command = ["/bin/sh", "-c", shell].map(String::from).to_vec();
        self.run_in_container("shell", expression, command, true)
    }

    fn load_command(&mut self, argument: &str) -> Result<(), Error> {
        if argument.is_empty() {
            return Err(Error::Usage {
                message: ":load needs a script file".into(),
                help: "write :load build.img".into(),
            });
        }
        let path = self.session.folder().join(argument);
        self.load(&path)?;
        eprintln!("loaded {}", path.display());
        Ok(())
    }

    /// Writes the entries that worked as a script that ends with the last
    /// image. It does not replace a file that it did not write itself.
    fn save(&mut self, argument: &str) -> Result<(), Error> {
        if argument.is_empty() {
            return Err(Error::Usage {
                message: ":save needs a file name".into(),
                help: "write :save build.img".into(),
            });
        }
        let path = self.session.folder().join(argument);
        if path.exists() && !self.saved.contains(&path) {
            return Err(Error::Usage {
                message: format!("{} already exists", path.display()),
                help: "choose another name, or move the file away first".into(),
            });
        }

        let (text, count) = self.saved_script()?;
        std::fs::write(&path, text).map_err(|error| Error::Usage {
            message: format!("cannot write {}: {error}", path.display()),
            help: "check that the folder exists and that you may write to it".into(),
        })?;

        if path.parent() != Some(self.session.folder()) {
            eprintln!(
                "note: relative paths in {} resolve against its own folder, not {}",
                path.display(),
                self.session.folder().display()
            );
        }
        eprintln!("saved {count} entries to {}", path.display());
        self.saved.push(path);
        Ok(())
    }

    /// Joins the entries into a script, and returns it with the number of
    /// entries it holds. A function defined again later is kept once, in
    /// its last form, since a script may not define it twice.
    fn saved_script(&self) -> Result<(String, usize), Error> {
        let kept: Vec<&str> = self
            .entries
            .iter()
            .enumerate()
            .filter(|(index, entry)| !entry.is_superseded(&self.entries[index + 1..]))
            .map(|(_, entry)| entry.text.trim_end())
            .collect();

        // Rhai needs a `;` between statements, except after a block.
        let ends_statement = |text: &str| text.ends_with(';') || text.ends_with('}');
        let mut text = String::new();
        for (index, entry) in kept.iter().enumerate() {
            text.push_str(entry);
            let is_last = index + 1 == kept.len();
            if !is_last && !ends_statement(entry) {
                text.push(';');
            }
            text.push('\n');
        }

        if !self.last_entry_is_image {
            let Some(variable) = &self.last_image_variable else {
                return Err(Error::Usage {
                    message: "no entry has made an image yet, so there is nothing to save".into(),
                    help: "start with an entry such as let app = debian_slim(\"3.11\")".into(),
                });
            };
            if !ends_statement(text.trim_end()) {
                text.insert(text.trim_end().len(), ';');
            }
            text.push_str(variable);
            text.push('\n');
        }
        Ok((text, kept.len()))
    }
}

/// Splits `EXPR -- CMD` at the first ` -- ` outside a string literal.
fn split_command(argument: &str) -> Option<(&str, &str)> {
    let mut quote: Option<char> = None;
    let mut escaped = false;
    for (index, c) in argument.char_indices() {
        match quote {
            Some(_) if escaped => escaped = false,
            Some(_) if c == '\\' => escaped = true,
            Some(open) if c == open => quote = None,
            Some(_) => {}
            None if c == '"' || c == '`' => quote = Some(c),
            None if argument[index..].starts_with(" -- ") => {
                return Some((&argument[..index], &argument[index + 4..]));
            }
            None => {}
        }
    }
    None
}

/// Prints the commands and builders, or what one builder does.
fn help(name: &str) {
    if name.is_empty() {
        println!("Commands:");
        for (_, line) in COMMANDS {
            println!("  {line}");
        }
        for (title, kind) in [
            ("Images start with", Kind::Constructor),
            ("Image methods", Kind::Method),
            ("Secrets", Kind::Secret),
        ] {
            let names: Vec<&str> = api_description::builders()
                .iter()
                .filter(|builder| builder.kind == kind)
                .map(|builder| builder.name)
                .collect();
            println!("{title}: {}", names.join(", "));
        }
        println!("Type :help NAME for one of them.");
        return;
    }
    let name = name.trim_start_matches(':').trim_start_matches('.');
    if let Some((_, line)) = COMMANDS.iter().find(|(command, _)| *command == name) {
        println!("{line}");
        return;
    }
    let Some(builder) = api_description::builder(name) else {
        let close = crate::suggest::did_you_mean(name, crate::script::builder_names());
        match close {
            Some(close) => eprintln!("no builder named {name}; did you mean {close}?"),
            None => eprintln!("no builder named {name}; :help lists them"),
        }
        return;
    };
    println!("{}", builder.signature());
    println!("  {}", builder.description);
    for param in builder.params {
        println!("  {}: {}", param.name, param.kind);
    }
    if !builder.options.is_empty() {
        println!("Options:");
        for option in builder.options {
            let default = option
                .default
                .map(|default| format!(", default {default}"))
                .unwrap_or_default();
            println!(
                "  {} ({}{default}): {}",
                option.name, option.kind, option.description
            );
        }
    }
}
