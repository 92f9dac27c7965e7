//! The subset of bexpr `filter` expressions the registry evaluates; any
//! other expression is a 400, never a wrong answer.

use super::state::Instance;

#[derive(Debug)]
pub(super) enum Term {
    HasTag(String),
    Meta(String, String),
    Id(String),
    Name(String),
    CheckStatus(String),
}

pub(super) fn parse_filter(expr: &str) -> Result<Vec<Term>, String> {
    fn quoted(s: &str) -> Option<String> {
        let s = s.trim();
        s.strip_prefix('"')
            .and_then(|s| s.strip_suffix('"'))
            .map(str::to_string)
    }
    // Only conjunctions are evaluated (an `or` or a `not` is refused
    // below), and grouping does not change a conjunction: parentheses
    // outside quotes are dropped, so `"v2" in Service.Tags and
    // (Service.Meta.zone == "eu")`, as the watch combines a tag with a
    // filter, reads as the two terms.
    let mut ungrouped = String::with_capacity(expr.len());
    // The words outside quotes, to find an `or` or a `not`.
    let mut bare = String::with_capacity(expr.len());
    let mut quoted_text = false;
    for c in expr.chars() {
        match c {
            '"' => {
                quoted_text = !quoted_text;
                ungrouped.push(c);
                bare.push(' ');
            }
            '(' | ')' if !quoted_text => bare.push(' '),
            _ => {
                ungrouped.push(c);
                if !quoted_text {
                    bare.push(c);
                }
            }
        }
    }
    if let Some(word) = bare
        .split_whitespace()
        .find(|w| w.eq_ignore_ascii_case("or") || w.eq_ignore_ascii_case("not"))
    {
        return Err(format!(
            "Failed to create boolean expression evaluator: unsupported operator {word:?} \
             (the in-process registry supports a subset of bexpr: terms joined by `and`)"
        ));
    }
    let mut terms = Vec::new();
    for part in ungrouped.split(" and ") {
        let part = part.trim();
        let term = if let Some((v, field)) = part.split_once(" in ") {
            match (quoted(v), field.trim()) {
                (Some(v), "Service.Tags") => Some(Term::HasTag(v)),
                _ => None,
            }
        } else if let Some((field, v)) = part.split_once(" contains ") {
            match (field.trim(), quoted(v)) {
                ("Service.Tags", Some(v)) => Some(Term::HasTag(v)),
                _ => None,
            }
        } else if let Some((field, v)) = part.split_once("==") {
            let (field, v) = (field.trim(), quoted(v));
            match (field, v) {
                ("Service.ID", Some(v)) => Some(Term::Id(v)),
                ("Service.Service", Some(v)) => Some(Term::Name(v)),
                ("Checks.Status", Some(v)) => Some(Term::CheckStatus(v)),
                (f, Some(v)) if f.starts_with("Service.Meta.") => {
                    Some(Term::Meta(f["Service.Meta.".len()..].to_string(), v))
                }
                _ => None,
            }
        } else {
            None
        };
        match term {
            Some(t) => terms.push(t),
            None => {
                return Err(format!(
                    "Failed to create boolean expression evaluator: unsupported expression {part:?} \
                     (the in-process registry supports a subset of bexpr)"
                ));
            }
        }
    }
    Ok(terms)
}

pub(super) fn matches(i: &Instance, terms: &[Term]) -> bool {
    terms.iter().all(|t| match t {
        Term::HasTag(v) => i.tags.iter().any(|x| x == v),
        Term::Meta(k, v) => i.meta.get(k) == Some(v),
        Term::Id(v) => &i.id == v,
        Term::Name(v) => &i.name == v,
        Term::CheckStatus(v) => i.checks.iter().any(|c| c.status.as_str() == v),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grouped_terms_read_as_the_terms() {
        let terms = parse_filter(r#""v2" in Service.Tags and (Service.ID == "b (1)")"#).unwrap();
        assert!(
            matches!(&terms[..], [Term::HasTag(t), Term::Id(id)] if t == "v2" && id == "b (1)")
        );
    }

    #[test]
    fn an_or_or_a_not_is_refused_not_misread() {
        for expr in [
            r#"Service.ID == "a" or Service.ID == "b""#,
            r#"not "v2" in Service.Tags"#,
        ] {
            assert!(parse_filter(expr).is_err(), "{expr}");
        }
        // Inside quotes they are values.
        assert!(parse_filter(r#"Service.ID == "a or not b""#).is_ok());
    }
}
