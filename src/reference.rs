//! Image references: splitting them into registry, repository and tag, and
//! checking names given to `tag(...)` and `--tag` against the grammar of
//! Docker's reference package (an optional registry host and port,
//! lowercase path components, and an optional tag).

/// Checks `name` (`[host[:port]/]path[:tag]`) and returns what is wrong
/// with it.
pub fn validate_tag(name: &str) -> Result<(), String> {
    if name.contains('@') {
        return Err("a tag cannot hold a digest (`@sha256:…`)".into());
    }
    let (repository, tag) = split_tag(name);
    if let Some(tag) = tag {
        validate_tag_part(tag)?;
    }
    if repository.len() > 255 {
        return Err("the repository name is longer than 255 characters".into());
    }

    let mut components: Vec<&str> = repository.split('/').collect();
    if components.len() > 1 && is_host(components[0]) {
        validate_host(components.remove(0))?;
    }
    for component in components {
        validate_path_component(component)?;
    }
    Ok(())
}

/// Splits `name:tag` into repository and tag. A colon inside a registry
/// host's port is not a tag.
pub fn split_tag(name: &str) -> (&str, Option<&str>) {
    match name.rsplit_once(':') {
        Some((repository, tag)) if !tag.contains('/') => (repository, Some(tag)),
        _ => (name, None),
    }
}

/// Returns the registry a reference is pulled from: its first component when
/// that is a host, else Docker Hub.
pub fn registry_of(reference: &str) -> String {
    match reference.split_once('/') {
        Some((first, _)) if is_host(first) => first.to_string(),
        _ => "docker.io".to_string(),
    }
}

fn is_host(component: &str) -> bool {
    component.contains('.') || component.contains(':') || component == "localhost"
}

fn validate_host(host: &str) -> Result<(), String> {
    let (name, port) = match host.split_once(':') {
        Some((name, port)) => (name, Some(port)),
        None => (host, None),
    };
    let label_ok = |label: &str| {
        !label.is_empty()
            && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            && !label.starts_with('-')
            && !label.ends_with('-')
    };
    if !name.split('.').all(label_ok) {
        return Err(format!("invalid registry host {host:?}"));
    }
    if port.is_some_and(|port| port.is_empty() || !port.chars().all(|c| c.is_ascii_digit())) {
        return Err(format!("invalid port in registry host {host:?}"));
    }
    Ok(())
}

/// Checks a path component: lowercase letters and digits, separated by one
/// `.`, one or two `_`, or any number of `-`.
fn validate_path_component(component: &str) -> Result<(), String> {
    let invalid = || {
        Err(format!(
            "invalid repository name component {component:?}: use lowercase letters and digits, separated by '.', '_' or '-'"
        ))
    };
    let is_alphanumeric = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    if component.is_empty()
        || !component.starts_with(is_alphanumeric)
        || !component.ends_with(is_alphanumeric)
    {
        return invalid();
    }

    let mut separator = String::new();
    for c in component.chars() {
        if is_alphanumeric(c) {
            let valid_separator = separator.is_empty()
                || separator == "."
                || separator == "_"
                || separator == "__"
                || separator.chars().all(|s| s == '-');
            if !valid_separator {
                return invalid();
            }
            separator.clear();
        } else if matches!(c, '.' | '_' | '-') {
            separator.push(c);
        } else {
            return invalid();
        }
    }
    Ok(())
}

fn validate_tag_part(tag: &str) -> Result<(), String> {
    let valid = !tag.is_empty()
        && tag.len() <= 128
        && tag.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_')
        && tag
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if valid {
        Ok(())
    } else {
        Err(format!(
            "invalid tag {tag:?}: use up to 128 letters, digits, '_', '.' and '-', not starting with '.' or '-'"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_tag_ignores_port_colon() {
        let cases = [
            ("myapp:latest", ("myapp", Some("latest"))),
            ("myapp", ("myapp", None)),
            (
                "127.0.0.1:5000/team/app:v1",
                ("127.0.0.1:5000/team/app", Some("v1")),
            ),
            ("127.0.0.1:5000/team/app", ("127.0.0.1:5000/team/app", None)),
        ];
        for (name, expected) in cases {
            assert_eq!(split_tag(name), expected, "{name}");
        }
    }

    #[test]
    fn registry_is_host_component() {
        let cases = [
            ("python:3.11", "docker.io"),
            ("library/python", "docker.io"),
            ("127.0.0.1:5000/app:v1", "127.0.0.1:5000"),
            ("localhost/app", "localhost"),
            ("registry.example/app", "registry.example"),
        ];
        for (reference, expected) in cases {
            assert_eq!(registry_of(reference), expected, "{reference}");
        }
    }

    #[test]
    fn valid_names() {
        for name in [
            "myapp",
            "myapp:latest",
            "team/my-app:v1.2_3",
            "a__b/c--d",
            "127.0.0.1:5000/team/app:v1",
            "localhost/app",
            "registry.example.com/app",
        ] {
            assert_eq!(validate_tag(name), Ok(()), "{name}");
        }
    }

    #[test]
    fn invalid_names() {
        for name in [
            "MyApp:latest",
            "app:1:2",
            "Bad Tag",
            "app@sha256:abc",
            "app:",
            "app:.hidden",
            "-app",
            "app_",
            "a___b",
            "team//app",
            "127.0.0.1:port/app",
        ] {
            assert!(validate_tag(name).is_err(), "{name} was accepted");
        }
    }
}
