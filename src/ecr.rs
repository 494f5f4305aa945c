//! Pull credentials for Amazon ECR. ECR takes no long-lived password: a
//! signed `GetAuthorizationToken` call with the AWS keys of a secret
//! returns a token, valid for hours, that decodes to the user name and
//! password of a registry login.

use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
use aws_sigv4::sign::v4;
use base64::Engine as _;
use bollard::auth::DockerCredentials;
use serde::Deserialize;
use tracing::debug;

use crate::reference::registry_of;
use crate::secret::Secret;

const TARGET: &str = "AmazonEC2ContainerRegistry_V20150921.GetAuthorizationToken";

#[derive(Debug, thiserror::Error)]
pub enum EcrError {
    #[error("secret {secret} has no {name}; an ECR secret holds AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and AWS_REGION")]
    MissingVariable { secret: String, name: &'static str },

    #[error("no AWS region: the secret {secret} has no AWS_REGION, and {registry} is not an ECR host that names one")]
    NoRegion { secret: String, registry: String },

    #[error("invalid ECR endpoint {endpoint:?}: {reason}")]
    InvalidEndpoint { endpoint: String, reason: String },

    #[error("ECR at {endpoint} did not answer: {reason}")]
    Unreachable { endpoint: String, reason: String },

    #[error("ECR at {endpoint} refused the token request ({status}): {message}")]
    Refused {
        endpoint: String,
        status: u16,
        message: String,
    },

    #[error("ECR at {endpoint} sent an unreadable token: {reason}")]
    InvalidToken { endpoint: String, reason: String },
}

/// The part of ECR's response that carries the token.
#[derive(Deserialize)]
struct TokenReply {
    #[serde(rename = "authorizationData")]
    authorization_data: Vec<AuthorizationData>,
}

#[derive(Deserialize)]
struct AuthorizationData {
    #[serde(rename = "authorizationToken")]
    authorization_token: String,
}

/// ECR's error body, `{"__type": "...", "message": "..."}`.
#[derive(Deserialize)]
struct ErrorReply {
    #[serde(rename = "__type")]
    kind: Option<String>,
    message: Option<String>,
    #[serde(rename = "Message")]
    capitalized_message: Option<String>,
}

/// Asks ECR for a token with the keys of `secret` and returns it as the
/// credentials for pulling `reference`. This blocks on the network.
pub fn registry_credentials(
    reference: &str,
    secret: &Secret,
) -> Result<DockerCredentials, EcrError> {
    let registry = registry_of(reference);
    let variable = |name: &'static str| {
        secret
            .get(name)
            .filter(|value| !value.is_empty())
            .ok_or_else(|| EcrError::MissingVariable {
                secret: secret.name.clone(),
                name,
            })
    };
    let access_key = variable("AWS_ACCESS_KEY_ID")?;
    let secret_key = variable("AWS_SECRET_ACCESS_KEY")?;
    let session_token = secret.get("AWS_SESSION_TOKEN").map(str::to_string);
    let region = region(secret, &registry)?;
    let endpoint = endpoint(secret, &region);

    let credentials = Credentials::new(access_key, secret_key, session_token, None, "imgscript");
    let token = authorization_token(&endpoint, &region, credentials)?;
    let (username, password) = decode_token(&token).map_err(|reason| EcrError::InvalidToken {
        endpoint: endpoint.clone(),
        reason,
    })?;
    debug!(%registry, %endpoint, "got a registry token from ECR");
    Ok(DockerCredentials {
        username: Some(username),
        password: Some(password),
        serveraddress: Some(registry),
        ..DockerCredentials::default()
    })
}

/// Returns the secret's region, else the one in an ECR host name such as
/// `123456789012.dkr.ecr.eu-west-1.amazonaws.com`.
fn region(secret: &Secret, registry: &str) -> Result<String, EcrError> {
    let named = ["AWS_REGION", "AWS_DEFAULT_REGION"]
        .into_iter()
        .find_map(|name| secret.get(name).filter(|value| !value.is_empty()));
    if let Some(region) = named {
        return Ok(region.to_string());
    }
    let labels: Vec<&str> = registry.split('.').collect();
    match labels.as_slice() {
        [_, "dkr", "ecr", region, "amazonaws", ..] => Ok(region.to_string()),
        _ => Err(EcrError::NoRegion {
            secret: secret.name.clone(),
            registry: registry.to_string(),
        }),
    }
}

/// Returns the API endpoint: `AWS_ENDPOINT_URL_ECR` or `AWS_ENDPOINT_URL` from the
/// secret, else from imgscript's environment, as the AWS tools read them;
/// else the region's public endpoint.
fn endpoint(secret: &Secret, region: &str) -> String {
    ["AWS_ENDPOINT_URL_ECR", "AWS_ENDPOINT_URL"]
        .into_iter()
        .find_map(|name| {
            secret
                .get(name)
                .map(str::to_string)
                .or_else(|| std::env::var(name).ok())
                .filter(|value| !value.is_empty())
        })
        .map(|endpoint| endpoint.trim_end_matches('/').to_string())
        .unwrap_or_else(|| format!("https://api.ecr.{region}.amazonaws.com"))
}

/// Sends the signed `GetAuthorizationToken` call and returns the token.
fn authorization_token(
    endpoint: &str,
    region: &str,
    credentials: Credentials,
) -> Result<String, EcrError> {
    let invalid = |reason: String| EcrError::InvalidEndpoint {
        endpoint: endpoint.to_string(),
        reason,
    };
    let body = b"{}".to_vec();
    let mut request = ureq::http::Request::post(format!("{endpoint}/"))
        .header("content-type", "application/x-amz-json-1.1")
        .header("x-amz-target", TARGET)
        .body(body.clone())
        .map_err(|error| invalid(error.to_string()))?;

    let identity = credentials.into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name("ecr")
        .time(SystemTime::now())
        .settings(SigningSettings::default())
        .build()
        .map_err(|error| invalid(error.to_string()))?
        .into();
    let headers = request
        .headers()
        .iter()
        .map(|(name, value)| (name.as_str(), value.to_str().unwrap_or_default()));
    let signable = SignableRequest::new(
        "POST",
        request.uri().to_string(),
        headers,
        SignableBody::Bytes(&body),
    )
    .map_err(|error| invalid(error.to_string()))?;
    let (instructions, _signature) = sign(signable, &params)
        .map_err(|error| invalid(error.to_string()))?
        .into_parts();
    instructions.apply_to_request_http1x(&mut request);

    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(60)))
        .http_status_as_error(false)
        .proxy(ureq::Proxy::try_from_env())
        .build()
        .into();
    let mut response = agent.run(request).map_err(|error| EcrError::Unreachable {
        endpoint: endpoint.to_string(),
        reason: error.to_string(),
    })?;
    let status = response.status().as_u16();
    let text = response
        .body_mut()
        .read_to_string()
        .map_err(|error| EcrError::Unreachable {
            endpoint: endpoint.to_string(),
            reason: error.to_string(),
        })?;
    if status != 200 {
        return Err(EcrError::Refused {
            endpoint: endpoint.to_string(),
            status,
            message: error_message(&text),
        });
    }
    let reply: TokenReply =
        serde_json::from_str(&text).map_err(|error| EcrError::InvalidToken {
            endpoint: endpoint.to_string(),
            reason: error.to_string(),
        })?;
    reply
        .authorization_data
        .into_iter()
        .next()
        .map(|data| data.authorization_token)
        .ok_or_else(|| EcrError::InvalidToken {
            endpoint: endpoint.to_string(),
            reason: "the answer holds no authorization data".to_string(),
        })
}

/// Names the error in an ECR error body, or shows the start of the body.
fn error_message(body: &str) -> String {
    let Ok(reply) = serde_json::from_str::<ErrorReply>(body) else {
        return body.chars().take(200).collect();
    };
    let kind = reply
        .kind
        .map(|kind| kind.rsplit('#').next().unwrap_or_default().to_string());
    let message = reply.message.or(reply.capitalized_message);
    match (kind, message) {
        (Some(kind), Some(message)) => format!("{kind}: {message}"),
        (Some(text), None) | (None, Some(text)) => text,
        (None, None) => body.chars().take(200).collect(),
    }
}

/// Splits a token, base64 of `user:password`, into its two parts.
fn decode_token(token: &str) -> Result<(String, String), String> {
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(token.trim())
        .map_err(|error| format!("not base64: {error}"))?;
    let decoded = String::from_utf8(decoded).map_err(|_| "not UTF-8".to_string())?;
    let (username, password) = decoded
        .split_once(':')
        .ok_or_else(|| "not user:password".to_string())?;
    Ok((username.to_string(), password.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn region_comes_from_an_ecr_host() {
        let secret = Secret::from_map(Default::default()).unwrap();
        let host = "123456789012.dkr.ecr.eu-west-1.amazonaws.com";
        assert_eq!(region(&secret, host).unwrap(), "eu-west-1");
        assert!(matches!(
            region(&secret, "127.0.0.1:5000"),
            Err(EcrError::NoRegion { .. })
        ));
    }

    #[test]
    fn token_decodes_to_user_and_password() {
        let token = base64::engine::general_purpose::STANDARD.encode("AWS:pass:word");
        assert_eq!(
            decode_token(&token).unwrap(),
            ("AWS".to_string(), "pass:word".to_string())
        );
        assert!(decode_token("%%%").is_err());
    }

    #[test]
    fn error_body_names_the_error() {
        let body = r#"{"__type":"com.amazon#UnrecognizedClientException","message":"The security token is invalid."}"#;
        assert_eq!(
            error_message(body),
            "UnrecognizedClientException: The security token is invalid."
        );
    }
}
