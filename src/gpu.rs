//! GPU requests for build steps, written as Modal writes them: `"any"`,
//! `"H100"`, `"A100:2"`.
//!
//! Docker Engine can only be asked for a number of GPUs with the `gpu`
//! capability, not for a model, so the model name serves the cache key and
//! the messages while the engine gets the count.

use std::fmt;

/// GPU models a request may name, in the spelling Modal uses.
const MODELS: &[&str] = &[
    "any",
    "T4",
    "L4",
    "A10G",
    "A100",
    "A100-40GB",
    "A100-80GB",
    "L40S",
    "H100",
    "H200",
    "B200",
];

/// The most GPUs one step may request.
const MAX_COUNT: u32 = 8;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GpuRequest {
    /// The model as listed in [`MODELS`].
    pub model: String,
    pub count: u32,
}

impl fmt::Display for GpuRequest {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{}:{}", self.model, self.count)
    }
}

impl GpuRequest {
    /// Parses `MODEL` or `MODEL:COUNT`; the model is matched without regard
    /// to case.
    pub fn parse(text: &str) -> Result<Self, String> {
        let (model, count) = match text.split_once(':') {
            Some((model, count)) => (model, Some(count)),
            None => (text, None),
        };
        let model = MODELS
            .iter()
            .find(|known| known.eq_ignore_ascii_case(model.trim()))
            .ok_or_else(|| format!("unknown GPU {model:?}; use one of {}", MODELS.join(", ")))?;
        let count = match count {
            None => 1,
            Some(count) => count
                .trim()
                .parse::<u32>()
                .ok()
                .filter(|count| (1..=MAX_COUNT).contains(count))
                .ok_or_else(|| {
                    format!("invalid GPU count {count:?}; use a number from 1 to {MAX_COUNT}")
                })?,
        };
        Ok(GpuRequest {
            model: model.to_string(),
            count,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::GpuRequest;

    #[test]
    fn requests_parse() {
        let cases = [
            ("any", "any", 1),
            ("h100", "H100", 1),
            ("A100:2", "A100", 2),
            ("a100-80gb:8", "A100-80GB", 8),
        ];
        for (text, model, count) in cases {
            let request = GpuRequest::parse(text).unwrap();
            assert_eq!(
                (request.model.as_str(), request.count),
                (model, count),
                "{text}"
            );
        }
    }

    #[test]
    fn invalid_requests() {
        for text in ["", "V100", "A100:0", "A100:9", "A100:two", "H100:"] {
            assert!(GpuRequest::parse(text).is_err(), "{text} was accepted");
        }
    }
}
