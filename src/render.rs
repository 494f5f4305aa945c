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
    format!(
        "{REQUIRE_PYTHON}if command -v uv >/dev/null 2>&1; then uv=uv; \
         else python -m pip install --quiet --no-cache-dir --disable-pip-version-check --root-user-action=ignore \
         --target {TEMPORARY_UV_DIR}{} uv && uv={TEMPORARY_UV_DIR}/bin/uv || exit $?; fi; \
         \"$uv\" pip install --python \"$(command -v python)\" --no-cache{} {}; \
         status=$?; rm -rf {TEMPORARY_UV_DIR}; exit $status",
        index_flags(options),
        pip_flags(options),
        sorted_packages(packages)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|item| item.to_string()).collect()
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
    fn package_names_are_quoted() {
        let command = pip_install(&strings(&["a; rm -rf /"]), &PipOptions::default());
        assert!(command.ends_with("'a; rm -rf /'"), "{command}");
    }
}
