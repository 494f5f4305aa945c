//! The description of the script API: every builder function, its
//! parameters, its options and what it does. It is the one source that the
//! engine's option checks, the REPL's `:help` and completion, and
//! `imgscript api --json` read, so none of them can fall out of step with
//! the others.

use serde::Serialize;

/// The kind of a builder: what it is called on, and what it returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// A global function that starts an image.
    Constructor,
    /// A method of an image that returns a new image.
    Method,
    /// A global function that returns a secret.
    Secret,
}

#[derive(Debug, Serialize)]
pub struct Param {
    pub name: &'static str,
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// Whether the function has a form without this parameter.
    pub optional: bool,
}

#[derive(Debug, Serialize)]
pub struct OptionKey {
    pub name: &'static str,
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// The value when the option is not given, as a script writes it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub default: Option<&'static str>,
    pub description: &'static str,
}

#[derive(Debug, Serialize)]
pub struct Builder {
    pub name: &'static str,
    pub kind: Kind,
    pub params: &'static [Param],
    pub options: &'static [OptionKey],
    /// An example call, for messages about wrong arguments.
    pub usage: &'static str,
    pub description: &'static str,
}

impl Builder {
    /// Returns the signature as a script calls it, such as
    /// `image.apt_install(packages [, options])`.
    pub fn signature(&self) -> String {
        let mut params: Vec<String> = self
            .params
            .iter()
            .map(|param| match param.optional {
                true => format!("[{}]", param.name),
                false => param.name.to_string(),
            })
            .collect();
        if !self.options.is_empty() {
            params.push("[options]".to_string());
        }
        let receiver = match self.kind {
            Kind::Method => "image.",
            Kind::Constructor | Kind::Secret => "",
        };
        format!("{receiver}{}({})", self.name, params.join(", "))
    }
}

/// Returns every builder, constructors first.
pub fn builders() -> &'static [Builder] {
    BUILDERS
}

/// Returns the builder called `name`.
pub fn builder(name: &str) -> Option<&'static Builder> {
    BUILDERS.iter().find(|builder| builder.name == name)
}

/// Returns the option keys that `name` accepts; none for an unknown name.
pub fn option_names(name: &str) -> Vec<&'static str> {
    builder(name)
        .map(|builder| builder.options.iter().map(|option| option.name).collect())
        .unwrap_or_default()
}

const fn param(name: &'static str, kind: &'static str) -> Param {
    Param {
        name,
        kind,
        optional: false,
    }
}

const fn optional_param(name: &'static str, kind: &'static str) -> Param {
    Param {
        name,
        kind,
        optional: true,
    }
}

const FORCE_BUILD: OptionKey = OptionKey {
    name: "force_build",
    kind: "bool",
    default: Some("false"),
    description: "Rebuild this step and every step after it, even when cached.",
};
const SECRETS: OptionKey = OptionKey {
    name: "secrets",
    kind: "Secret or array of Secret",
    default: None,
    description: "Secrets whose variables the step's commands see as environment variables; nothing of them enters a layer, the image config, a cache key or the output.",
};
const GPU: OptionKey = OptionKey {
    name: "gpu",
    kind: "string",
    default: None,
    description: "GPUs the step's container gets: \"any\", a model such as \"H100\", or \"A100:2\" for a count.",
};
const INDEX_URL: OptionKey = OptionKey {
    name: "index_url",
    kind: "string",
    default: None,
    description: "The package index to install from instead of PyPI.",
};
const EXTRA_INDEX_URL: OptionKey = OptionKey {
    name: "extra_index_url",
    kind: "string",
    default: None,
    description: "A package index to search besides the main one.",
};
const FIND_LINKS: OptionKey = OptionKey {
    name: "find_links",
    kind: "string",
    default: None,
    description: "An absolute folder in the image, or a URL, to look for wheels in.",
};
const PRE: OptionKey = OptionKey {
    name: "pre",
    kind: "bool",
    default: Some("false"),
    description: "Allow pre-release versions.",
};
const EXTRA_OPTIONS: OptionKey = OptionKey {
    name: "extra_options",
    kind: "string",
    default: None,
    description: "More flags for the installer, split by the shell.",
};
const SECRET: OptionKey = OptionKey {
    name: "secret",
    kind: "Secret",
    default: None,
    description: "Credentials for the registry: REGISTRY_USERNAME and REGISTRY_PASSWORD.",
};
const ADD_PYTHON: OptionKey = OptionKey {
    name: "add_python",
    kind: "string",
    default: None,
    description:
        "A Python version, such as \"3.12\", to unpack into /usr/local of an image without Python.",
};
const COPY: OptionKey = OptionKey {
    name: "copy",
    kind: "bool",
    default: Some("false"),
    description: "Bake the files into a layer; without it they are attached when a container starts with `imgscript run FILE -- CMD`.",
};
const IGNORE: OptionKey = OptionKey {
    name: "ignore",
    kind: "array of strings",
    default: None,
    description: "gitignore-style patterns of files to leave out.",
};
const CONTEXT_DIR: OptionKey = OptionKey {
    name: "context_dir",
    kind: "string",
    default: None,
    description: "The local folder that COPY and ADD read from.",
};
const BUILD_ARGS: OptionKey = OptionKey {
    name: "build_args",
    kind: "map of strings",
    default: None,
    description: "Values of the Dockerfile's ARG instructions.",
};

const PIP_OPTIONS: &[OptionKey] = &[
    INDEX_URL,
    EXTRA_INDEX_URL,
    FIND_LINKS,
    PRE,
    EXTRA_OPTIONS,
    SECRETS,
    GPU,
    FORCE_BUILD,
];

const BUILDERS: &[Builder] = &[
    Builder {
        name: "debian_slim",
        kind: Kind::Constructor,
        params: &[optional_param("python_version", "string")],
        options: &[FORCE_BUILD],
        usage: "`debian_slim()` or `debian_slim(\"3.11\")`, with an optional options map",
        description: "Starts from python:<version>-slim-bookworm, Debian with that Python; 3.12 when no version is given.",
    },
    Builder {
        name: "micromamba",
        kind: Kind::Constructor,
        params: &[optional_param("python_version", "string")],
        options: &[FORCE_BUILD],
        usage: "`micromamba()` or `micromamba(\"3.11\")`, with an optional options map",
        description: "Starts from micromamba's image with its base environment /opt/conda first on PATH, and installs Python (3.12 when no version is given) and pip into it from conda-forge.",
    },
    Builder {
        name: "from_registry",
        kind: Kind::Constructor,
        params: &[param("reference", "string")],
        options: &[SECRET, ADD_PYTHON, FORCE_BUILD],
        usage: "`from_registry(\"name:tag\")`, with an optional options map",
        description: "Starts from any image reference, used from the local store when present and pulled otherwise, with the credentials of the secret or of the docker config file.",
    },
    Builder {
        name: "from_aws_ecr",
        kind: Kind::Constructor,
        params: &[param("reference", "string")],
        options: &[
            OptionKey {
                name: "secret",
                kind: "Secret",
                default: None,
                description: "AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and optionally AWS_SESSION_TOKEN and AWS_REGION.",
            },
            ADD_PYTHON,
            FORCE_BUILD,
        ],
        usage: "`from_aws_ecr(\"123456789012.dkr.ecr.eu-west-1.amazonaws.com/app:v1\", #{ secret: secret(\"aws\") })`",
        description: "Starts from an image in Amazon ECR, pulled with a registry token that ECR gives for the secret's AWS keys.",
    },
    Builder {
        name: "from_dockerfile",
        kind: Kind::Constructor,
        params: &[param("path", "string")],
        options: &[
            OptionKey {
                name: "context_dir",
                kind: "string",
                default: Some("the Dockerfile's folder"),
                description: "The local folder the build context is made of.",
            },
            BUILD_ARGS,
            OptionKey {
                name: "ignore",
                kind: "array of strings",
                default: Some("the .dockerignore that Docker would use"),
                description: "Patterns of context files to leave out, instead of a .dockerignore file.",
            },
            ADD_PYTHON,
            FORCE_BUILD,
        ],
        usage: "`from_dockerfile(\"./Dockerfile\")`, with an optional options map",
        description: "Starts from an image that the engine builds from a local Dockerfile and its context.",
    },
    Builder {
        name: "from_id",
        kind: Kind::Constructor,
        params: &[param("id", "string")],
        options: &[FORCE_BUILD],
        usage: "`from_id(\"sha256:…\")`, with an optional options map",
        description: "Starts from an image already in the local store, named by its id.",
    },
    Builder {
        name: "apt_install",
        kind: Kind::Method,
        params: &[param("packages", "string or array of strings")],
        options: &[
            OptionKey {
                name: "install_recommends",
                kind: "bool",
                default: Some("false"),
                description: "Install the packages' recommended packages too.",
            },
            SECRETS,
            GPU,
            FORCE_BUILD,
        ],
        usage: "`image.apt_install([\"git\", \"curl\"])`, with an optional options map",
        description: "Installs Debian packages with apt-get, without prompts, and removes apt's lists in the same layer.",
    },
    Builder {
        name: "pip_install",
        kind: Kind::Method,
        params: &[param("packages", "string or array of strings")],
        options: PIP_OPTIONS,
        usage: "`image.pip_install([\"requests==2.32.3\"])`, with an optional options map",
        description: "Installs Python packages with pip into the image's python, keeping no download cache.",
    },
    Builder {
        name: "uv_pip_install",
        kind: Kind::Method,
        params: &[param("packages", "string or array of strings")],
        options: PIP_OPTIONS,
        usage: "`image.uv_pip_install([\"requests==2.32.3\"])`, with an optional options map",
        description: "Installs Python packages with uv into the image's python; a temporary uv is brought in where the image has none.",
    },
    Builder {
        name: "pip_install_from_requirements",
        kind: Kind::Method,
        params: &[param("path", "string")],
        options: PIP_OPTIONS,
        usage: "`image.pip_install_from_requirements(\"./requirements.txt\")`, with an optional options map",
        description: "Installs a local requirements file, and the files it includes with -r and -c, which are mounted for the step only.",
    },
    Builder {
        name: "pip_install_from_pyproject",
        kind: Kind::Method,
        params: &[param("path", "string")],
        options: &[
            OptionKey {
                name: "optional_dependencies",
                kind: "array of strings",
                default: None,
                description: "Groups of [project.optional-dependencies] to install too.",
            },
            INDEX_URL,
            EXTRA_INDEX_URL,
            FIND_LINKS,
            PRE,
            EXTRA_OPTIONS,
            SECRETS,
            GPU,
            FORCE_BUILD,
        ],
        usage: "`image.pip_install_from_pyproject(\"./pyproject.toml\")`, with an optional options map",
        description: "Installs the [project] dependencies of a local pyproject.toml with pip, without the project itself.",
    },
    Builder {
        name: "poetry_install_from_file",
        kind: Kind::Method,
        params: &[param("path", "string")],
        options: &[
            OptionKey {
                name: "lockfile",
                kind: "string",
                default: Some("poetry.lock beside the file"),
                description: "The local poetry.lock to install from.",
            },
            OptionKey {
                name: "ignore_lockfile",
                kind: "bool",
                default: Some("false"),
                description: "Resolve at build time instead of installing from a lock file.",
            },
            OptionKey {
                name: "with",
                kind: "array of strings",
                default: None,
                description: "Optional dependency groups to install too; written \"with\" in quotes, since with is a reserved word.",
            },
            OptionKey {
                name: "with_",
                kind: "array of strings",
                default: None,
                description: "Optional dependency groups to install too.",
            },
            OptionKey {
                name: "without",
                kind: "array of strings",
                default: None,
                description: "Dependency groups to leave out.",
            },
            OptionKey {
                name: "only",
                kind: "array of strings",
                default: None,
                description: "The only dependency groups to install.",
            },
            OptionKey {
                name: "poetry_version",
                kind: "string",
                default: Some("the newest"),
                description: "The version of the temporary poetry, where the image has none.",
            },
            INDEX_URL,
            EXTRA_INDEX_URL,
            FIND_LINKS,
            OptionKey {
                name: "extra_options",
                kind: "string",
                default: None,
                description: "More flags for poetry install, split by the shell.",
            },
            SECRETS,
            GPU,
            FORCE_BUILD,
        ],
        usage: "`image.poetry_install_from_file(\"./pyproject.toml\")`, with an optional options map",
        description: "Installs a poetry project's locked dependencies into the image's python with poetry install --no-root.",
    },
    Builder {
        name: "uv_sync",
        kind: Kind::Method,
        params: &[],
        options: &[
            OptionKey {
                name: "uv_project_dir",
                kind: "string",
                default: Some("\".\""),
                description: "The local folder that contains the project's pyproject.toml.",
            },
            OptionKey {
                name: "extras",
                kind: "array of strings",
                default: None,
                description: "Optional dependency groups to install too.",
            },
            OptionKey {
                name: "groups",
                kind: "array of strings",
                default: None,
                description: "Dependency groups to install too.",
            },
            OptionKey {
                name: "frozen",
                kind: "bool",
                default: Some("true"),
                description: "Install exactly the versions in uv.lock, without checking that it is current.",
            },
            OptionKey {
                name: "extra_options",
                kind: "string",
                default: None,
                description: "More flags for uv sync, split by the shell.",
            },
            SECRETS,
            GPU,
            FORCE_BUILD,
        ],
        usage: "`image.uv_sync(#{ uv_project_dir: \"./\" })`",
        description: "Installs a uv project's dependencies, from uv.lock when there is one, into the image's python, without the project itself.",
    },
    Builder {
        name: "micromamba_install",
        kind: Kind::Method,
        params: &[param("packages", "string or array of strings")],
        options: &[
            OptionKey {
                name: "channels",
                kind: "array of strings",
                default: None,
                description: "Conda channels to install from, such as \"conda-forge\".",
            },
            OptionKey {
                name: "spec_file",
                kind: "string",
                default: None,
                description: "A local environment.yml or package list, mounted for the step only.",
            },
            SECRETS,
            GPU,
            FORCE_BUILD,
        ],
        usage: "`image.micromamba_install([\"numpy\"], #{ channels: [\"conda-forge\"] })`",
        description: "Installs conda packages into the base environment of a micromamba() image and cleans micromamba's cache.",
    },
    Builder {
        name: "run_function",
        kind: Kind::Method,
        params: &[param("file", "string"), param("function", "string")],
        options: &[
            OptionKey {
                name: "args",
                kind: "array",
                default: None,
                description: "Positional arguments, passed as JSON values.",
            },
            OptionKey {
                name: "kwargs",
                kind: "map",
                default: None,
                description: "Keyword arguments, passed as JSON values.",
            },
            SECRETS,
            GPU,
            OptionKey {
                name: "timeout",
                kind: "integer",
                default: None,
                description: "Seconds the function may run before the step fails.",
            },
            FORCE_BUILD,
        ],
        usage: "`image.run_function(\"./download.py\", \"download_weights\")`, with an optional options map",
        description: "Calls a Python function from a local file inside the image at build time, such as one that downloads model weights.",
    },
    Builder {
        name: "run_commands",
        kind: Kind::Method,
        params: &[param("commands", "string or array of strings")],
        options: &[SECRETS, GPU, FORCE_BUILD],
        usage: "`image.run_commands([\"echo hello\"])`, with an optional options map",
        description: "Runs shell commands in order, each with /bin/sh -c, in one layer; the step fails at the first command that fails.",
    },
    Builder {
        name: "dockerfile_commands",
        kind: Kind::Method,
        params: &[param("lines", "string or array of strings")],
        options: &[CONTEXT_DIR, BUILD_ARGS, FORCE_BUILD],
        usage: "`image.dockerfile_commands([\"RUN echo hello\"])`, with an optional options map",
        description: "Applies Dockerfile instructions to the image with the engine's builder; FROM and COPY --from are not allowed.",
    },
    Builder {
        name: "env",
        kind: Kind::Method,
        params: &[param("variables", "map")],
        options: &[FORCE_BUILD],
        usage: "`image.env(#{ NAME: \"value\" })`, with an optional options map",
        description: "Sets environment variables in the image config; $NAME in a value expands to the variable's current value.",
    },
    Builder {
        name: "workdir",
        kind: Kind::Method,
        params: &[param("path", "string")],
        options: &[FORCE_BUILD],
        usage: "`image.workdir(\"/app\")`, with an optional options map",
        description: "Sets the working directory of later steps and containers.",
    },
    Builder {
        name: "user",
        kind: Kind::Method,
        params: &[param("name", "string")],
        options: &[FORCE_BUILD],
        usage: "`image.user(\"app\")`, with an optional options map",
        description: "Sets the user that later steps and containers run as.",
    },
    Builder {
        name: "entrypoint",
        kind: Kind::Method,
        params: &[param("args", "array of strings")],
        options: &[FORCE_BUILD],
        usage: "`image.entrypoint([\"python\"])`, with an optional options map",
        description: "Sets the image's entrypoint, clearing a cmd inherited from the base, as a Dockerfile does.",
    },
    Builder {
        name: "cmd",
        kind: Kind::Method,
        params: &[param("args", "array of strings")],
        options: &[FORCE_BUILD],
        usage: "`image.cmd([\"python\", \"main.py\"])`, with an optional options map",
        description: "Sets the image's default command.",
    },
    Builder {
        name: "shell",
        kind: Kind::Method,
        params: &[param("args", "array of strings")],
        options: &[FORCE_BUILD],
        usage: "`image.shell([\"/bin/bash\", \"-c\"])`, with an optional options map",
        description: "Sets the shell of the image config, for tools that run shell-form commands with it.",
    },
    Builder {
        name: "add_local_file",
        kind: Kind::Method,
        params: &[param("local_path", "string"), param("remote_path", "string")],
        options: &[COPY, FORCE_BUILD],
        usage: "`image.add_local_file(\"./config.toml\", \"/etc/app/config.toml\")`, with an optional options map",
        description: "Adds a local file at an absolute path in the image; a remote path ending in / keeps the file's name.",
    },
    Builder {
        name: "add_local_dir",
        kind: Kind::Method,
        params: &[param("local_path", "string"), param("remote_path", "string")],
        options: &[COPY, IGNORE, FORCE_BUILD],
        usage: "`image.add_local_dir(\"./src\", \"/app\")`, with an optional options map",
        description: "Adds a local folder at an absolute path in the image, honouring a .dockerignore in the folder.",
    },
    Builder {
        name: "add_local_python_source",
        kind: Kind::Method,
        params: &[param("modules", "string or array of strings")],
        options: &[COPY, IGNORE, FORCE_BUILD],
        usage: "`image.add_local_python_source([\"mypackage\"])`, with an optional options map",
        description: "Finds Python modules as python would from the script's folder and adds their Python files under /root.",
    },
    Builder {
        name: "copy_from",
        kind: Kind::Method,
        params: &[
            param("image", "Image"),
            param("source_path", "string"),
            param("destination_path", "string"),
        ],
        options: &[FORCE_BUILD],
        usage: "`image.copy_from(builder, \"/src/dist\", \"/app/dist\")`, with an optional options map",
        description: "Copies a path out of another image of the script into a new layer, for multi-stage builds.",
    },
    Builder {
        name: "tag",
        kind: Kind::Method,
        params: &[param("name", "string")],
        options: &[],
        usage: "`image.tag(\"myapp:latest\")`",
        description: "Names the image that the build produces.",
    },
    Builder {
        name: "secret",
        kind: Kind::Secret,
        params: &[param("name", "string")],
        options: &[],
        usage: "`secret(\"name\")`, which reads ~/.config/imgscript/secrets/name.env",
        description: "A secret read from ~/.config/imgscript/secrets/<name>.env, NAME=value lines in a file only you can read.",
    },
    Builder {
        name: "secret_from_dotenv",
        kind: Kind::Secret,
        params: &[param("path", "string")],
        options: &[],
        usage: "`secret_from_dotenv(\"./.env\")`",
        description: "A secret read from a local .env file.",
    },
    Builder {
        name: "secret_from_env",
        kind: Kind::Secret,
        params: &[param("names", "string or array of strings")],
        options: &[],
        usage: "`secret_from_env([\"HF_TOKEN\"])`",
        description: "A secret made of variables of imgscript's own environment.",
    },
    Builder {
        name: "secret_from_map",
        kind: Kind::Secret,
        params: &[param("variables", "map")],
        options: &[],
        usage: "`secret_from_map(#{ TOKEN: \"value\" })`",
        description: "A secret made of values written in the script.",
    },
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_show_optional_parts() {
        assert_eq!(
            builder("debian_slim").unwrap().signature(),
            "debian_slim([python_version], [options])"
        );
        assert_eq!(
            builder("copy_from").unwrap().signature(),
            "image.copy_from(image, source_path, destination_path, [options])"
        );
        assert_eq!(builder("tag").unwrap().signature(), "image.tag(name)");
    }

    #[test]
    fn names_are_unique() {
        let mut names: Vec<&str> = builders().iter().map(|builder| builder.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), builders().len());
    }
}
