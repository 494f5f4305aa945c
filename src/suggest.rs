//! "Did you mean" suggestions from edit distance.

/// Returns the candidate closest to `name`, if one is close enough to be a
/// likely typo: at most a third of the name's length, and at least one edit.
pub fn did_you_mean<'a>(
    name: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    let limit = (name.chars().count() / 3).max(1);
    candidates
        .into_iter()
        .map(|candidate| (strsim::damerau_levenshtein(name, candidate), candidate))
        .filter(|(distance, _)| *distance <= limit)
        .min_by_key(|(distance, candidate)| (*distance, *candidate))
        .map(|(_, candidate)| candidate)
}

#[cfg(test)]
mod tests {
    use super::did_you_mean;

    #[test]
    fn suggestions() {
        let names = ["apt_install", "pip_install", "uv_pip_install", "env", "cmd"];
        let cases = [
            ("apt_instal", Some("apt_install")),
            ("pip_instal", Some("pip_install")),
            ("uv_pip_instal", Some("uv_pip_install")),
            ("evn", Some("env")),
            ("docker_build", None),
        ];
        for (name, expected) in cases {
            assert_eq!(did_you_mean(name, names), expected, "{name}");
        }
    }
}
