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
    /// A double-quoted string's value (`\"` and `\\` unescaped); `None`
    /// for anything else, a quote left unescaped inside included.
    fn quoted(s: &str) -> Option<String> {
        let inner = s.trim().strip_prefix('"')?.strip_suffix('"')?;
        let mut value = String::with_capacity(inner.len());
        let mut chars = inner.chars();
        while let Some(c) = chars.next() {
            match c {
                '\\' => value.push(chars.next()?),
                '"' => return None,
                c => value.push(c),
            }
        }
        Some(value)
    }
    let unsupported = |what: String| {
        Err(format!(
            "Failed to create boolean expression evaluator: unsupported {what} \
             (the in-process registry supports a subset of bexpr: terms joined by `and`)"
        ))
    };
    // The terms, split at each `and` outside quotes. Only conjunctions are
    // evaluated (an `or` or a `not` is refused), and grouping does not
    // change a conjunction: parentheses outside quotes are dropped, so
    // `"v2" in Service.Tags and (Service.Meta.zone == "eu")`, as the watch
    // combines a tag with a filter, reads as the two terms.
    let mut parts = vec![String::new()];
    let mut word = String::new();
    let mut in_quotes = false;
    let mut chars = expr.chars().peekable();
    while let Some(c) = chars.next() {
        let part = parts.last_mut().expect("one at least");
        if in_quotes {
            part.push(c);
            match c {
                '\\' => part.extend(chars.next()),
                '"' => in_quotes = false,
                _ => {}
            }
            continue;
        }
        match c {
            '"' => in_quotes = true,
            '`' => return unsupported("raw string (backticks)".into()),
            _ => {}
        }
        if c.is_alphanumeric() || c == '.' || c == '_' || c == '-' {
            word.push(c);
        } else {
            word.clear();
        }
        let ends_word = !chars
            .peek()
            .is_some_and(|n| n.is_alphanumeric() || *n == '.' || *n == '_' || *n == '-');
        if ends_word && !word.is_empty() {
            if word.eq_ignore_ascii_case("or") || word.eq_ignore_ascii_case("not") {
                return unsupported(format!("operator {word:?}"));
            }
            if word == "and" {
                // Drop the `an` already pushed, and start the next term.
                part.truncate(part.len() - 2);
                parts.push(String::new());
                word.clear();
                continue;
            }
        }
        if c != '(' && c != ')' {
            part.push(c);
        }
    }
    let mut terms = Vec::new();
    for part in &parts {
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
        let terms =
            parse_filter(r#"Service.ID == "a or not b" and "x and y" in Service.Tags"#).unwrap();
        assert!(
            matches!(&terms[..], [Term::Id(id), Term::HasTag(t)] if id == "a or not b" && t == "x and y")
        );
    }

    #[test]
    fn an_escaped_quote_stays_inside_its_value() {
        let terms = parse_filter(r#""a\"b" in Service.Tags"#).unwrap();
        assert!(matches!(&terms[..], [Term::HasTag(t)] if t == "a\"b"));
        // An `or` after an escaped quote is still outside the quotes.
        let expr = r#""a\"b" in Service.Tags and Service.ID == "x" or Service.ID == "y""#;
        assert!(parse_filter(expr).is_err());
    }

    #[test]
    fn raw_strings_and_unescaped_inner_quotes_are_refused() {
        for expr in [
            "`v2` in Service.Tags",
            r#"Service.ID == "a" AND Service.ID == "b""#,
        ] {
            assert!(parse_filter(expr).is_err(), "{expr}");
        }
    }
}
