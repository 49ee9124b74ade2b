//! "Did you mean" suggestions for misspelt names (Jaro similarity >= 0.7, like clap).

/// The closest candidate to `name`, if any is similar enough.
pub fn did_you_mean<'a, I, S>(name: &str, candidates: I) -> Option<String>
where
    I: IntoIterator<Item = S>,
    S: AsRef<str> + 'a,
{
    let mut best: Option<(f64, String)> = None;
    for c in candidates {
        let c = c.as_ref();
        let score = strsim::jaro(&name.to_lowercase(), &c.to_lowercase());
        if score >= 0.7 && best.as_ref().is_none_or(|(b, _)| score > *b) {
            best = Some((score, c.to_string()));
        }
    }
    best.map(|(_, c)| c)
}

/// `"; did you mean `x`?"` or an empty string.
pub fn hint<'a, I, S>(name: &str, candidates: I) -> Option<String>
where
    I: IntoIterator<Item = S>,
    S: AsRef<str> + 'a,
{
    did_you_mean(name, candidates).map(|c| format!("did you mean `{c}`?"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_close_names_only() {
        assert_eq!(
            did_you_mean("Dilaton", ["Dilation", "Erosion"]).as_deref(),
            Some("Dilation")
        );
        assert_eq!(
            did_you_mean("kernal", ["kernel", "radius_mm"]).as_deref(),
            Some("kernel")
        );
        assert_eq!(did_you_mean("zzz", ["Dilation", "Erosion"]), None);
    }
}
