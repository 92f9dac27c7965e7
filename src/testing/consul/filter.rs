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
    let mut terms = Vec::new();
    for part in expr.split(" and ") {
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
