//! The shell commands that package-installing steps run.
//!
//! These strings enter cache keys, so a change here rebuilds the layers of
//! every script that uses the step. The tests pin the exact text.

/// Options shared by `pip_install` and `uv_pip_install`.
#[derive(Debug, Clone, Default)]
pub struct PipOptions {
    pub index_url: Option<String>,
    pub extra_index_url: Option<String>,
    pub find_links: Option<String>,
    pub pre: bool,
    /// Passed to the installer as written, split by the shell.
    pub extra_options: Option<String>,
}

/// Folder a temporary uv is installed into when the image has none. It is
/// removed in the same command, so it never reaches the layer.
const TEMPORARY_UV_DIR: &str = "/tmp/imgscript-uv";

pub fn quote(word: &str) -> String {
    shlex::try_quote(word)
        .map(|quoted| quoted.into_owned())
        .unwrap_or_else(|_| format!("'{}'", word.replace('\0', "")))
}

/// Quotes packages in sorted order without repeats, so reordering a list
/// in a script changes neither the command nor the cache key.
fn sorted_packages(packages: &[String]) -> String {
    let mut sorted: Vec<String> = packages.to_vec();
    sorted.sort();
    sorted.dedup();
    quote_all(&sorted)
}

/// Stops a Python step at once, with a message naming the cause, when the
/// image has no `python` on PATH.
pub const REQUIRE_PYTHON: &str = "command -v python >/dev/null 2>&1 || { echo 'imgscript: this step installs into the image'\\''s python, but no python is on PATH' >&2; exit 127; }; ";

fn quote_all(words: &[String]) -> String {
    words
        .iter()
        .map(|word| quote(word))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Renders an apt install that cannot stop at a prompt and leaves no package
/// lists behind.
pub fn apt_install(packages: &[String], install_recommends: bool) -> String {
    let recommends = if install_recommends {
        ""
    } else {
        " --no-install-recommends"
    };
    format!(
        "apt-get update -q \
         && DEBIAN_FRONTEND=noninteractive apt-get install -y -q{recommends} \
         -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold {} \
         && rm -rf /var/lib/apt/lists/*",
        sorted_packages(packages)
    )
}

fn pip_flags(options: &PipOptions) -> String {
    let mut flags = index_flags(options);
    if options.pre {
        flags.push_str(" --pre");
    }
    if let Some(extra) = &options.extra_options {
        flags.push(' ');
        flags.push_str(extra);
    }
    flags
}

/// Renders the flags that name where packages come from. The temporary uv is
/// fetched with them too, so a mirror-only site needs no other index.
fn index_flags(options: &PipOptions) -> String {
    let mut flags = String::new();
    for (flag, value) in [
        ("--index-url", &options.index_url),
        ("--extra-index-url", &options.extra_index_url),
        ("--find-links", &options.find_links),
    ] {
        if let Some(value) = value {
            flags.push_str(&format!(" {flag} {}", quote(value)));
        }
    }
    flags
}

/// Renders a pip install into the image's `python` that keeps no download
/// cache.
pub fn pip_install(packages: &[String], options: &PipOptions) -> String {
    format!(
        "{REQUIRE_PYTHON}python -m pip install --no-cache-dir --disable-pip-version-check --root-user-action=ignore{} {}",
        pip_flags(options),
        sorted_packages(packages)
    )
}

/// Renders a pip install of a requirements file at `path` in the
/// container.
pub fn pip_install_requirements(path: &str, options: &PipOptions) -> String {
    format!(
        "{REQUIRE_PYTHON}python -m pip install --no-cache-dir --disable-pip-version-check --root-user-action=ignore{} -r {}",
        pip_flags(options),
        quote(path)
    )
}

/// Loads the file given as the first argument as a module and calls the
/// named function with the JSON-encoded `args` and `kwargs` of the third.
const RUN_FUNCTION_PROGRAM: &str = "import importlib.util, json, sys
path, name, call = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
spec = importlib.util.spec_from_file_location('imgscript_build_function', path)
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
getattr(module, name)(*call['args'], **call['kwargs'])";

/// Renders a call of `function` from the Python file at `path` in the
/// container, with `call` holding its arguments as JSON.
pub fn run_function(path: &str, function: &str, call: &str) -> String {
    format!(
        "{REQUIRE_PYTHON}python -c {} {} {} {}",
        quote(RUN_FUNCTION_PROGRAM),
        quote(path),
        quote(function),
        quote(call)
    )
}

/// Renders a uv install into the image's `python`. Where the image has no
/// `uv`, one is installed with pip into a temporary folder and removed again
/// whether the install succeeds or fails.
pub fn uv_pip_install(packages: &[String], options: &PipOptions) -> String {
    let install = format!(
        "\"$uv\" pip install --python \"$(command -v python)\" --no-cache{} {}",
        pip_flags(options),
        sorted_packages(packages)
    );
    with_uv(&index_flags(options), &install, "")
}

/// Options of `uv_sync`.
#[derive(Debug, Clone, Default)]
pub struct UvSyncOptions {
    pub extras: Vec<String>,
    pub groups: Vec<String>,
    /// Install exactly what `uv.lock` says, without checking it is current.
    /// Only meaningful when the project has a `uv.lock`.
    pub frozen: bool,
    /// Passed to `uv sync` as written, split by the shell.
    pub extra_options: Option<String>,
}

/// Folder in the container that a uv project is copied to, since `uv sync`
/// may write its lock file and the staged files are read-only.
const UV_PROJECT_COPY: &str = "/tmp/imgscript-uv-project";

/// Renders a `uv sync` of the project staged at `project` into the image's
/// `python` (its prefix, which is the virtual environment where one is
/// active), leaving packages the project does not name in place.
pub fn uv_sync(project: &str, options: &UvSyncOptions) -> String {
    let mut flags = String::from(" --no-install-project --inexact --no-cache");
    if options.frozen {
        flags.push_str(" --frozen");
    }
    for extra in &options.extras {
        flags.push_str(&format!(" --extra {}", quote(extra)));
    }
    for group in &options.groups {
        flags.push_str(&format!(" --group {}", quote(group)));
    }
    if let Some(extra) = &options.extra_options {
        flags.push(' ');
        flags.push_str(extra);
    }
    let sync = format!(
        "rm -rf {UV_PROJECT_COPY} && cp -R {} {UV_PROJECT_COPY} && \
         UV_PROJECT_ENVIRONMENT=\"$(python -c 'import sys; print(sys.prefix)')\" \
         \"$uv\" sync --project {UV_PROJECT_COPY}{flags}",
        quote(project)
    );
    with_uv("", &sync, UV_PROJECT_COPY)
}

/// Wraps `body` so that it runs with `$uv` set to the image's uv or to a
/// temporary one installed with pip (fetched with `index_flags`), and
/// removes the temporary uv and `also_remove` whatever the outcome.
fn with_uv(index_flags: &str, body: &str, also_remove: &str) -> String {
    let cleanup = if also_remove.is_empty() {
        TEMPORARY_UV_DIR.to_string()
    } else {
        format!("{TEMPORARY_UV_DIR} {also_remove}")
    };
    format!(
        "{REQUIRE_PYTHON}if command -v uv >/dev/null 2>&1; then uv=uv; \
         else python -m pip install --quiet --no-cache-dir --disable-pip-version-check --root-user-action=ignore \
         --target {TEMPORARY_UV_DIR}{index_flags} uv && uv={TEMPORARY_UV_DIR}/bin/uv || exit $?; fi; \
         {body}; status=$?; rm -rf {cleanup}; exit $status"
    )
}

/// Renders a micromamba install into the image's base environment, with
/// `spec_file` (a path in the container) naming more packages, and cleans
/// micromamba's package cache in the same layer.
pub fn micromamba_install(
    packages: &[String],
    channels: &[String],
    spec_file: Option<&str>,
) -> String {
    let mut install = String::from(
        "command -v micromamba >/dev/null 2>&1 || { echo 'imgscript: this step needs micromamba, which the image lacks; start the image with micromamba()' >&2; exit 127; }; \
         micromamba install --name base --yes",
    );
    for channel in channels {
        install.push_str(&format!(" --channel {}", quote(channel)));
    }
    if let Some(spec_file) = spec_file {
        install.push_str(&format!(" --file {}", quote(spec_file)));
    }
    if !packages.is_empty() {
        install.push(' ');
        install.push_str(&sorted_packages(packages));
    }
    format!("{install} && micromamba clean --all --yes")
}

/// Renders the unpacking of the Python build mounted at
/// [`crate::python_build::ARCHIVE_PATH`] into `/usr/local`. An image whose
/// `python3` is already `version` is left as it is. One with another Python
/// fails the step, because two would compete for `python3` on PATH.
pub fn add_python(version: &str) -> String {
    let archive = crate::python_build::ARCHIVE_PATH;
    format!(
        "if command -v python3 >/dev/null 2>&1; then \
         found=$(python3 -c 'import sys; print(\"%d.%d\" % sys.version_info[:2])' 2>/dev/null); \
         if [ \"$found\" = {version} ]; then echo 'imgscript: the image already has Python {version}'; exit 0; fi; \
         echo \"imgscript: add_python {version}: the image already has Python $found at $(command -v python3); \
         start from an image without Python, or drop the option\" >&2; exit 1; fi; \
         command -v tar >/dev/null 2>&1 && command -v gzip >/dev/null 2>&1 || \
         {{ echo 'imgscript: add_python needs tar and gzip in the image' >&2; exit 127; }}; \
         tar -xzf {archive} -C /usr/local --strip-components=1 --no-same-owner && \
         {{ [ -e /usr/local/bin/python ] || ln -s python3 /usr/local/bin/python; }} && python3 --version"
    )
}

/// Options of `poetry_install_from_file`.
#[derive(Debug, Clone, Default)]
pub struct PoetryOptions {
    pub with: Vec<String>,
    pub without: Vec<String>,
    pub only: Vec<String>,
    /// A pip version specifier for the temporary poetry, such as `2.1.3`
    /// or `>=2,<3`; the newest release when unset.
    pub poetry_version: Option<String>,
    /// The package index of the temporary poetry. Only the index flags count.
    pub index: PipOptions,
    /// Passed to `poetry install` as written, split by the shell.
    pub extra_options: Option<String>,
}

/// Folder a temporary poetry is installed into when the image has none.
const TEMPORARY_POETRY_DIR: &str = "/tmp/imgscript-poetry";

/// Folder the poetry project is assembled in, since poetry reads
/// `pyproject.toml` and `poetry.lock` from one folder.
const POETRY_PROJECT_COPY: &str = "/tmp/imgscript-poetry-project";

/// Renders a `poetry install --no-root` of the project staged at
/// `pyproject` (and `lockfile`, when there is one) into the image's
/// `python`: its prefix, which is the virtual environment where one is
/// active. The image's `poetry` is used where it has one; otherwise one is
/// installed with pip into a temporary folder. Poetry's cache and the
/// temporary files are removed whatever the outcome.
pub fn poetry_install(pyproject: &str, lockfile: Option<&str>, options: &PoetryOptions) -> String {
    let requirement = match &options.poetry_version {
        Some(version) if version.starts_with(|c: char| c.is_ascii_digit()) => {
            format!("poetry=={version}")
        }
        Some(version) => format!("poetry{version}"),
        None => "poetry".to_string(),
    };
    let mut copy = format!(
        "rm -rf {POETRY_PROJECT_COPY} && mkdir -p {POETRY_PROJECT_COPY} && cp {} {POETRY_PROJECT_COPY}/pyproject.toml",
        quote(pyproject)
    );
    if let Some(lockfile) = lockfile {
        copy.push_str(&format!(
            " && cp {} {POETRY_PROJECT_COPY}/poetry.lock",
            quote(lockfile)
        ));
    }
    let mut flags = String::from(" --no-root --no-interaction");
    for (flag, groups) in [
        ("--with", &options.with),
        ("--without", &options.without),
        ("--only", &options.only),
    ] {
        if !groups.is_empty() {
            flags.push_str(&format!(" {flag} {}", quote(&groups.join(","))));
        }
    }
    if let Some(extra) = &options.extra_options {
        flags.push(' ');
        flags.push_str(extra);
    }
    // The temporary poetry runs without its folder on PYTHONPATH, which
    // poetry would pass on to the environment it inspects and so mistake
    // its own dependencies for the image's.
    let run_temporary = format!(
        "import sys; sys.path.insert(0, '{TEMPORARY_POETRY_DIR}'); \
         from poetry.console.application import main; sys.exit(main())"
    );
    format!(
        "{REQUIRE_PYTHON}if command -v poetry >/dev/null 2>&1; then poetry() {{ command poetry \"$@\"; }}; \
         else python -m pip install --quiet --no-cache-dir --disable-pip-version-check --root-user-action=ignore \
         --target {TEMPORARY_POETRY_DIR}{} {} || exit $?; poetry() {{ python -c {} \"$@\"; }}; fi; \
         {copy} && cd {POETRY_PROJECT_COPY} && \
         VIRTUAL_ENV=\"$(python -c 'import sys; print(sys.prefix)')\" POETRY_VIRTUALENVS_CREATE=false \
         POETRY_CACHE_DIR={TEMPORARY_POETRY_DIR}-cache poetry install{flags}; status=$?; \
         cd / && rm -rf {TEMPORARY_POETRY_DIR} {TEMPORARY_POETRY_DIR}-cache {POETRY_PROJECT_COPY}; exit $status",
        index_flags(&options.index),
        quote(&requirement),
        quote(&run_temporary),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|item| item.to_string()).collect()
    }

    #[test]
    fn micromamba_install_command() {
        insta::assert_snapshot!(micromamba_install(&strings(&["numpy=2", "python=3.11"]), &strings(&["conda-forge", "bioconda"]), Some("/run/imgscript-files/environment.yml")), @r#"command -v micromamba >/dev/null 2>&1 || { echo 'imgscript: this step needs micromamba, which the image lacks; start the image with micromamba()' >&2; exit 127; }; micromamba install --name base --yes --channel conda-forge --channel bioconda --file /run/imgscript-files/environment.yml 'numpy=2' 'python=3.11' && micromamba clean --all --yes"#);
    }

    #[test]
    fn add_python_command() {
        insta::assert_snapshot!(add_python("3.11"), @r#"if command -v python3 >/dev/null 2>&1; then found=$(python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null); if [ "$found" = 3.11 ]; then echo 'imgscript: the image already has Python 3.11'; exit 0; fi; echo "imgscript: add_python 3.11: the image already has Python $found at $(command -v python3); start from an image without Python, or drop the option" >&2; exit 1; fi; command -v tar >/dev/null 2>&1 && command -v gzip >/dev/null 2>&1 || { echo 'imgscript: add_python needs tar and gzip in the image' >&2; exit 127; }; tar -xzf /run/imgscript-python.tar.gz -C /usr/local --strip-components=1 --no-same-owner && { [ -e /usr/local/bin/python ] || ln -s python3 /usr/local/bin/python; } && python3 --version"#);
    }

    #[test]
    fn poetry_install_command() {
        let options = PoetryOptions {
            with: strings(&["dev", "docs"]),
            only: strings(&["main"]),
            poetry_version: Some("2.1.3".into()),
            ..PoetryOptions::default()
        };
        insta::assert_snapshot!(poetry_install("/run/imgscript-files/pyproject.toml", Some("/run/imgscript-files/poetry.lock"), &options), @r#"command -v python >/dev/null 2>&1 || { echo 'imgscript: this step installs into the image'\''s python, but no python is on PATH' >&2; exit 127; }; if command -v poetry >/dev/null 2>&1; then poetry() { command poetry "$@"; }; else python -m pip install --quiet --no-cache-dir --disable-pip-version-check --root-user-action=ignore --target /tmp/imgscript-poetry 'poetry==2.1.3' || exit $?; poetry() { python -c "import sys; sys.path.insert(0, '/tmp/imgscript-poetry'); from poetry.console.application import main; sys.exit(main())" "$@"; }; fi; rm -rf /tmp/imgscript-poetry-project && mkdir -p /tmp/imgscript-poetry-project && cp /run/imgscript-files/pyproject.toml /tmp/imgscript-poetry-project/pyproject.toml && cp /run/imgscript-files/poetry.lock /tmp/imgscript-poetry-project/poetry.lock && cd /tmp/imgscript-poetry-project && VIRTUAL_ENV="$(python -c 'import sys; print(sys.prefix)')" POETRY_VIRTUALENVS_CREATE=false POETRY_CACHE_DIR=/tmp/imgscript-poetry-cache poetry install --no-root --no-interaction --with 'dev,docs' --only main; status=$?; cd / && rm -rf /tmp/imgscript-poetry /tmp/imgscript-poetry-cache /tmp/imgscript-poetry-project; exit $status"#);
    }

    #[test]
    fn apt_install_command() {
        insta::assert_snapshot!(apt_install(&strings(&["git", "curl"]), false), @"apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold curl git && rm -rf /var/lib/apt/lists/*");
    }

    #[test]
    fn apt_install_with_recommends() {
        insta::assert_snapshot!(apt_install(&strings(&["vim"]), true), @"apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold vim && rm -rf /var/lib/apt/lists/*");
    }

    #[test]
    fn pip_install_command() {
        let options = PipOptions {
            index_url: Some("http://127.0.0.1:8080/simple".into()),
            pre: true,
            extra_options: Some("--no-deps".into()),
            ..PipOptions::default()
        };
        insta::assert_snapshot!(pip_install(&strings(&["requests==2.32.3", "numpy>=2"]), &options), @r#"command -v python >/dev/null 2>&1 || { echo 'imgscript: this step installs into the image'\''s python, but no python is on PATH' >&2; exit 127; }; python -m pip install --no-cache-dir --disable-pip-version-check --root-user-action=ignore --index-url http://127.0.0.1:8080/simple --pre --no-deps 'numpy>=2' 'requests==2.32.3'"#);
    }

    #[test]
    fn uv_pip_install_command() {
        insta::assert_snapshot!(uv_pip_install(&strings(&["six"]), &PipOptions::default()), @r#"command -v python >/dev/null 2>&1 || { echo 'imgscript: this step installs into the image'\''s python, but no python is on PATH' >&2; exit 127; }; if command -v uv >/dev/null 2>&1; then uv=uv; else python -m pip install --quiet --no-cache-dir --disable-pip-version-check --root-user-action=ignore --target /tmp/imgscript-uv uv && uv=/tmp/imgscript-uv/bin/uv || exit $?; fi; "$uv" pip install --python "$(command -v python)" --no-cache six; status=$?; rm -rf /tmp/imgscript-uv; exit $status"#);
    }

    #[test]
    fn temporary_uv_comes_from_the_same_index() {
        let options = PipOptions {
            index_url: Some("http://127.0.0.1:8080/simple".into()),
            ..PipOptions::default()
        };
        let command = uv_pip_install(&strings(&["six"]), &options);
        assert!(
            command
                .contains("--target /tmp/imgscript-uv --index-url http://127.0.0.1:8080/simple uv"),
            "{command}"
        );
        assert!(
            command.contains("--no-cache --index-url http://127.0.0.1:8080/simple six"),
            "{command}"
        );
    }

    #[test]
    fn package_order_does_not_matter() {
        let options = PipOptions::default();
        assert_eq!(
            pip_install(&strings(&["b", "a", "b"]), &options),
            pip_install(&strings(&["a", "b"]), &options)
        );
        assert_eq!(
            uv_pip_install(&strings(&["b", "a"]), &options),
            uv_pip_install(&strings(&["a", "b"]), &options)
        );
        assert_eq!(
            apt_install(&strings(&["git", "curl"]), false),
            apt_install(&strings(&["curl", "git"]), false)
        );
    }

    #[test]
    fn uv_sync_command() {
        let options = UvSyncOptions {
            extras: strings(&["gpu"]),
            groups: strings(&["dev"]),
            frozen: true,
            extra_options: Some("--no-index".into()),
        };
        insta::assert_snapshot!(uv_sync("/run/imgscript-files", &options), @r#"command -v python >/dev/null 2>&1 || { echo 'imgscript: this step installs into the image'\''s python, but no python is on PATH' >&2; exit 127; }; if command -v uv >/dev/null 2>&1; then uv=uv; else python -m pip install --quiet --no-cache-dir --disable-pip-version-check --root-user-action=ignore --target /tmp/imgscript-uv uv && uv=/tmp/imgscript-uv/bin/uv || exit $?; fi; rm -rf /tmp/imgscript-uv-project && cp -R /run/imgscript-files /tmp/imgscript-uv-project && UV_PROJECT_ENVIRONMENT="$(python -c 'import sys; print(sys.prefix)')" "$uv" sync --project /tmp/imgscript-uv-project --no-install-project --inexact --no-cache --frozen --extra gpu --group dev --no-index; status=$?; rm -rf /tmp/imgscript-uv /tmp/imgscript-uv-project; exit $status"#);
    }

    #[test]
    fn package_names_are_quoted() {
        let command = pip_install(&strings(&["a; rm -rf /"]), &PipOptions::default());
        assert!(command.ends_with("'a; rm -rf /'"), "{command}");
    }
}
