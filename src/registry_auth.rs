//! Credentials for pulling base images from private registries, found as
//! the docker CLI finds them: a secret given in the script, else the
//! `auths`, `credHelpers` and `credsStore` of the docker config file
//! (`$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`).

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use base64::Engine as _;
use bollard::auth::DockerCredentials;
use serde::Deserialize;
use tracing::debug;

use crate::reference::registry_of;
use crate::secret::Secret;

/// The key Docker Hub's credentials are stored under in docker config files.
const DOCKER_HUB_KEY: &str = "https://index.docker.io/v1/";

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("secret {secret} has no {name}; a registry secret holds REGISTRY_USERNAME and REGISTRY_PASSWORD")]
    MissingVariable { secret: String, name: &'static str },

    #[error("invalid docker config file {}: {reason}", path.display())]
    InvalidConfig { path: PathBuf, reason: String },

    #[error(transparent)]
    Ecr(#[from] crate::ecr::EcrError),

    #[error("credential helper docker-credential-{helper} failed for {registry}: {reason}")]
    HelperFailed {
        helper: String,
        registry: String,
        reason: String,
    },
}

/// The source of the credentials for pulling a base image.
#[derive(Debug, Clone)]
pub enum RegistryAuth {
    /// The docker config file, as the docker CLI reads it; no credentials
    /// where it names none for the registry.
    DockerConfig,
    /// REGISTRY_USERNAME and REGISTRY_PASSWORD of a secret.
    Secret(Secret),
    /// A token from Amazon ECR, asked for with the AWS keys of a secret.
    AwsEcr(Secret),
}

/// Returns the credentials for pulling `reference`, or `None` to pull
/// without any. For ECR this blocks on a call to the AWS API.
pub fn credentials_for(
    reference: &str,
    auth: &RegistryAuth,
) -> Result<Option<DockerCredentials>, AuthError> {
    let registry = registry_of(reference);
    match auth {
        RegistryAuth::DockerConfig => from_docker_config(&registry),
        RegistryAuth::Secret(secret) => from_secret(secret, registry).map(Some),
        RegistryAuth::AwsEcr(secret) => {
            Ok(Some(crate::ecr::registry_credentials(reference, secret)?))
        }
    }
}

fn from_secret(secret: &Secret, registry: String) -> Result<DockerCredentials, AuthError> {
    let variable = |name: &'static str| {
        secret
            .get(name)
            .map(str::to_string)
            .ok_or_else(|| AuthError::MissingVariable {
                secret: secret.name.clone(),
                name,
            })
    };
    Ok(DockerCredentials {
        username: Some(variable("REGISTRY_USERNAME")?),
        password: Some(variable("REGISTRY_PASSWORD")?),
        serveraddress: Some(registry),
        ..DockerCredentials::default()
    })
}

#[derive(Default, Deserialize)]
struct DockerConfig {
    #[serde(default)]
    auths: std::collections::HashMap<String, AuthEntry>,
    #[serde(default, rename = "credHelpers")]
    cred_helpers: std::collections::HashMap<String, String>,
    #[serde(default, rename = "credsStore")]
    creds_store: Option<String>,
}

#[derive(Default, Deserialize)]
struct AuthEntry {
    auth: Option<String>,
    username: Option<String>,
    password: Option<String>,
    identitytoken: Option<String>,
}

fn config_path() -> Option<PathBuf> {
    let folder = std::env::var_os("DOCKER_CONFIG")
        .filter(|value| !value.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".docker")))?;
    Some(folder.join("config.json"))
}

fn from_docker_config(registry: &str) -> Result<Option<DockerCredentials>, AuthError> {
    let Some(path) = config_path().filter(|path| path.is_file()) else {
        return Ok(None);
    };
    let invalid = |reason: String| AuthError::InvalidConfig {
        path: path.clone(),
        reason,
    };
    let text = std::fs::read_to_string(&path).map_err(|error| invalid(error.to_string()))?;
    let config: DockerConfig =
        serde_json::from_str(&text).map_err(|error| invalid(error.to_string()))?;
    let keys = config_keys(registry);

    let helper = keys
        .iter()
        .find_map(|key| config.cred_helpers.get(key))
        .or(config.creds_store.as_ref());
    if let Some(helper) = helper {
        debug!(%registry, %helper, "asking a docker credential helper");
        return from_helper(helper, &keys[0]);
    }

    let Some(entry) = keys.iter().find_map(|key| config.auths.get(key)) else {
        return Ok(None);
    };
    debug!(%registry, path = %path.display(), "using credentials from the docker config file");
    if let Some(token) = &entry.identitytoken {
        return Ok(Some(DockerCredentials {
            identitytoken: Some(token.clone()),
            serveraddress: Some(keys[0].clone()),
            ..DockerCredentials::default()
        }));
    }
    let (username, password) = match (&entry.username, &entry.password, &entry.auth) {
        (Some(username), Some(password), _) => (username.clone(), password.clone()),
        (_, _, Some(auth)) => {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(auth.trim())
                .map_err(|error| {
                    invalid(format!("the auth of {registry} is not base64: {error}"))
                })?;
            let decoded = String::from_utf8_lossy(&decoded).into_owned();
            let (username, password) = decoded
                .split_once(':')
                .ok_or_else(|| invalid(format!("the auth of {registry} is not user:password")))?;
            (username.to_string(), password.to_string())
        }
        _ => return Ok(None),
    };
    Ok(Some(DockerCredentials {
        username: Some(username),
        password: Some(password),
        serveraddress: Some(keys[0].clone()),
        ..DockerCredentials::default()
    }))
}

/// Returns the keys a registry's entry may have in a docker config file,
/// the one the docker CLI writes first.
fn config_keys(registry: &str) -> Vec<String> {
    if registry == "docker.io" {
        return vec![
            DOCKER_HUB_KEY.to_string(),
            "docker.io".to_string(),
            "index.docker.io".to_string(),
        ];
    }
    vec![
        registry.to_string(),
        format!("https://{registry}"),
        format!("http://{registry}"),
    ]
}

#[derive(Deserialize)]
struct HelperReply {
    #[serde(rename = "Username")]
    username: String,
    #[serde(rename = "Secret")]
    secret: String,
}

/// Runs `docker-credential-<helper> get` with the registry on stdin, as the
/// docker CLI does.
fn from_helper(helper: &str, server: &str) -> Result<Option<DockerCredentials>, AuthError> {
    let failed = |reason: String| AuthError::HelperFailed {
        helper: helper.to_string(),
        registry: server.to_string(),
        reason,
    };
    let program = format!("docker-credential-{helper}");
    let mut child = Command::new(&program)
        .arg("get")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|error| failed(format!("cannot run {program}: {error}")))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(server.as_bytes())
            .map_err(|error| failed(error.to_string()))?;
    }
    let output = child
        .wait_with_output()
        .map_err(|error| failed(error.to_string()))?;
    if !output.status.success() {
        let message = String::from_utf8_lossy(&output.stdout).trim().to_string();
        // Helpers report a registry they hold nothing for this way.
        if message.contains("credentials not found") {
            return Ok(None);
        }
        return Err(failed(message));
    }
    let reply: HelperReply =
        serde_json::from_slice(&output.stdout).map_err(|error| failed(error.to_string()))?;
    let credentials = if reply.username == "<token>" {
        DockerCredentials {
            identitytoken: Some(reply.secret),
            serveraddress: Some(server.to_string()),
            ..DockerCredentials::default()
        }
    } else {
        DockerCredentials {
            username: Some(reply.username),
            password: Some(reply.secret),
            serveraddress: Some(server.to_string()),
            ..DockerCredentials::default()
        }
    };
    Ok(Some(credentials))
}
