//! Wildcard patterns with policy variables, as IAM matches actions, ARNs and strings.
//!
//! A pattern is expanded into tokens before matching, so that text that came from a
//! variable (`${aws:username}`) or an escape (`${*}`, `${?}`, `${$}`) is matched literally
//! while the policy's own `*` and `?` stay wildcards.

use super::eval::{Context, Truth};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Tok {
    Lit(char),
    /// `*`: any run of characters.
    Any,
    /// `?`: exactly one character.
    One,
}

/// Expands `pattern`: variables are resolved from `context` when `variables` is set (only
/// version 2012-10-17 documents have them); `wildcards` says whether `*`/`?` are wildcards.
/// A variable the context lacks (with no default) matches nothing with a complete context
/// (`Err`); with a partial one it could be anything, so it becomes a `*` and the result is
/// marked `unresolved`: a match is then only `Unknown`, while a mismatch elsewhere in the
/// pattern is still a sure `False`.
pub(crate) fn expand(
    pattern: &str,
    context: &Context,
    variables: bool,
    wildcards: bool,
) -> Result<Expanded, ()> {
    let mut out = Vec::with_capacity(pattern.len());
    let mut unresolved = false;
    let mut rest = pattern;
    while !rest.is_empty() {
        if variables
            && let Some(after) = rest.strip_prefix("${")
            && let Some(end) = after.find('}')
        {
            let inner = &after[..end];
            rest = &after[end + 1..];
            match inner {
                "*" => out.push(Tok::Lit('*')),
                "?" => out.push(Tok::Lit('?')),
                "$" => out.push(Tok::Lit('$')),
                _ => {
                    let (key, default) = match inner.split_once(',') {
                        Some((key, default)) => {
                            let default = default.trim();
                            let default = default
                                .strip_prefix('\'')
                                .and_then(|d| d.strip_suffix('\''))
                                .unwrap_or(default);
                            (key.trim(), Some(default))
                        }
                        None => (inner.trim(), None),
                    };
                    // A multi-valued key cannot be a variable; IAM leaves it unresolved.
                    let value = match context.get(key) {
                        Some([one]) => Some(one.as_str()),
                        Some(_) => None,
                        None if !context.complete && default.is_none() => {
                            unresolved = true;
                            out.push(Tok::Any);
                            continue;
                        }
                        None => default,
                    };
                    match value {
                        Some(value) => out.extend(value.chars().map(Tok::Lit)),
                        None => return Err(()),
                    }
                }
            }
            continue;
        }
        let mut chars = rest.chars();
        let Some(c) = chars.next() else { break };
        out.push(match c {
            '*' if wildcards => Tok::Any,
            '?' if wildcards => Tok::One,
            c => Tok::Lit(c),
        });
        rest = chars.as_str();
    }
    Ok(Expanded {
        tokens: out,
        unresolved,
    })
}

/// A pattern with its variables substituted.
#[derive(Debug, Clone)]
pub(crate) struct Expanded {
    pub tokens: Vec<Tok>,
    /// A variable was unknown and stands as `*` in `tokens`.
    pub unresolved: bool,
}

impl Expanded {
    /// Matches `text`: `True`, `False`, or `Unknown` when it matched only thanks to an
    /// unknown variable.
    pub fn matches(&self, text: &str, fold: bool) -> Truth {
        match (matches(&self.tokens, text, fold), self.unresolved) {
            (false, _) => Truth::False,
            (true, false) => Truth::True,
            (true, true) => Truth::Unknown,
        }
    }
}

/// Expands and matches in one step; an unresolvable pattern matches nothing.
pub(crate) fn expand_matches(
    pattern: &str,
    text: &str,
    context: &Context,
    variables: bool,
    wildcards: bool,
    fold: bool,
) -> Truth {
    match expand(pattern, context, variables, wildcards) {
        Ok(expanded) => expanded.matches(text, fold),
        Err(()) => Truth::False,
    }
}

/// Iterative matching with single-star backtracking; `fold` compares case-insensitively.
pub(crate) fn matches(pattern: &[Tok], text: &str, fold: bool) -> bool {
    let text: Vec<char> = text.chars().collect();
    let eq = |a: char, b: char| {
        if fold {
            a.to_lowercase().eq(b.to_lowercase())
        } else {
            a == b
        }
    };
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some(Tok::Any) => {
                star = Some((p, t));
                p += 1;
            }
            Some(Tok::One) => {
                p += 1;
                t += 1;
            }
            Some(Tok::Lit(c)) if eq(*c, text[t]) => {
                p += 1;
                t += 1;
            }
            _ => match star {
                Some((star_p, star_t)) => {
                    p = star_p + 1;
                    t = star_t + 1;
                    star = Some((star_p, star_t + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|tok| *tok == Tok::Any)
}

/// Matches an action pattern (`s3:Get*`, `*`) case-insensitively, as IAM does. Action names
/// are ASCII, so this works on bytes without allocating: the planner calls it for every
/// pattern of a policy against every action of a service.
pub fn action_matches(pattern: &str, action: &str) -> bool {
    glob_bytes(pattern.as_bytes(), action.as_bytes(), true)
}

/// Iterative glob matching on bytes (`*` any run, `?` one byte) with single-star
/// backtracking, optionally folding ASCII case; linear in practice, no recursion.
pub(crate) fn glob_bytes(pattern: &[u8], text: &[u8], fold: bool) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some(b'*') => {
                star = Some((p, t));
                p += 1;
            }
            Some(&c) if c == b'?' || c == text[t] || (fold && c.eq_ignore_ascii_case(&text[t])) => {
                p += 1;
                t += 1;
            }
            _ => match star {
                Some((star_p, star_t)) => {
                    p = star_p + 1;
                    t = star_t + 1;
                    star = Some((star_p, star_t + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

/// Matches an ARN pattern against an ARN the way IAM does for `Resource` and the `Arn*`
/// operators: `*` alone matches anything; otherwise the six `:`-separated parts are matched
/// one by one (the last, the resource, may itself contain `:`), each with its own wildcards.
pub(crate) fn arn_matches(pattern: &str, arn: &str, context: &Context, variables: bool) -> Truth {
    if pattern == "*" {
        return Truth::True;
    }
    let pattern_parts: Vec<&str> = pattern.splitn(6, ':').collect();
    let arn_parts: Vec<&str> = arn.splitn(6, ':').collect();
    if pattern_parts.len() != 6 || arn_parts.len() != 6 {
        // Not an ARN on one side (a request on `*`, a malformed pattern): no match.
        return Truth::False;
    }
    let mut result = Truth::True;
    for (p, a) in pattern_parts.iter().zip(&arn_parts) {
        result = result.and(expand_matches(p, a, context, variables, true, false));
        if result == Truth::False {
            break;
        }
    }
    result
}

/// Matches a `Resource` / `NotResource` pattern against the request's resource. An
/// incomplete ARN (fewer than six fields, such as `arn:aws:sqs`) is completed with `*` in
/// every missing field first, as AWS does ("IAM ARNs": incomplete ARNs in identity-based
/// policies): `arn:aws:sqs` is `arn:aws:sqs:*:*:*`, every queue everywhere.
pub(crate) fn resource_matches(
    pattern: &str,
    arn: &str,
    context: &Context,
    variables: bool,
) -> Truth {
    let fields = pattern.splitn(6, ':').count();
    if pattern.starts_with("arn:") && fields < 6 {
        let completed = format!("{pattern}{}", ":*".repeat(6 - fields));
        return arn_matches(&completed, arn, context, variables);
    }
    arn_matches(pattern, arn, context, variables)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(pairs: &[(&str, &str)]) -> Context {
        let mut c = Context::complete();
        for (k, v) in pairs {
            c.insert(k, v);
        }
        c
    }

    #[test]
    fn actions_match_case_insensitively_with_wildcards() {
        assert!(action_matches("s3:Get*", "S3:getobject"));
        assert!(action_matches("*", "iam:PassRole"));
        assert!(action_matches("s3:?etObject", "s3:GetObject"));
        assert!(action_matches("ec2:*Instances", "ec2:DescribeInstances"));
        assert!(!action_matches("s3:Get*", "s3:PutObject"));
        assert!(!action_matches("s3:GetObject", "s3:GetObjectAcl"));
        assert!(!action_matches("s3*", "sqs:SendMessage"));
    }

    #[test]
    fn arns_match_part_by_part() {
        let c = ctx(&[("aws:username", "alice"), ("aws:odd", "a*b")]);
        let m = |p: &str, a: &str| arn_matches(p, a, &c, true);
        assert_eq!(
            m("arn:aws:s3:::bucket/*", "arn:aws:s3:::bucket/a/b:c"),
            Truth::True
        );
        assert_eq!(
            m("arn:aws:s3:::bucket/*", "arn:aws:s3:::bucket2/a"),
            Truth::False
        );
        assert_eq!(
            m("arn:aws:iam::*:role/app-*", "arn:aws:iam::1:role/app-x"),
            Truth::True
        );
        // `*` in one part never spills into the next part.
        assert_eq!(
            m("arn:aws:*:::role/x", "arn:aws:iam::1:role/x"),
            Truth::False
        );
        assert_eq!(
            m(
                "arn:aws:s3:::home/${aws:username}/*",
                "arn:aws:s3:::home/alice/f"
            ),
            Truth::True
        );
        assert_eq!(
            m(
                "arn:aws:s3:::home/${aws:username}/*",
                "arn:aws:s3:::home/bob/f"
            ),
            Truth::False
        );
        // A variable's value is literal, and ${*} is a literal star.
        assert_eq!(
            m("arn:aws:s3:::b/${aws:odd}", "arn:aws:s3:::b/axxb"),
            Truth::False
        );
        assert_eq!(
            m("arn:aws:s3:::b/${aws:odd}", "arn:aws:s3:::b/a*b"),
            Truth::True
        );
        assert_eq!(m("arn:aws:s3:::b/${*}", "arn:aws:s3:::b/x"), Truth::False);
        // Unresolved: false with a complete context, unknown with a partial one.
        assert_eq!(
            m("arn:aws:s3:::b/${aws:userid}", "arn:aws:s3:::b/x"),
            Truth::False
        );
        assert_eq!(
            m("arn:aws:s3:::b/${aws:userid, 'x'}", "arn:aws:s3:::b/x"),
            Truth::True
        );
        let partial = Context::partial();
        assert_eq!(
            arn_matches(
                "arn:aws:s3:::b/${aws:userid}",
                "arn:aws:s3:::b/x",
                &partial,
                true
            ),
            Truth::Unknown
        );
        // Without variables (version 2008-10-17) the text is literal.
        assert_eq!(
            arn_matches(
                "arn:aws:s3:::b/${aws:username}",
                "arn:aws:s3:::b/${aws:username}",
                &c,
                false
            ),
            Truth::True
        );
        assert_eq!(m("*", "anything"), Truth::True);
        assert_eq!(m("arn:aws:s3:::b", "*"), Truth::False);
    }

    #[test]
    fn incomplete_resource_arns_are_completed_with_wildcards() {
        let c = ctx(&[]);
        let r = |p: &str, a: &str| resource_matches(p, a, &c, true);
        assert_eq!(
            r("arn:aws:sqs", "arn:aws:sqs:eu-west-1:111122223333:q"),
            Truth::True
        );
        assert_eq!(
            r("arn:aws:sqs", "arn:aws:sns:eu-west-1:111122223333:t"),
            Truth::False
        );
        assert_eq!(
            r(
                "arn:aws:sqs:eu-west-1",
                "arn:aws:sqs:eu-west-1:111122223333:q"
            ),
            Truth::True
        );
        assert_eq!(
            r(
                "arn:aws:sqs:eu-west-1",
                "arn:aws:sqs:us-east-1:111122223333:q"
            ),
            Truth::False
        );
        assert_eq!(r("arn:aws:s3", "arn:aws:s3:::bucket/a:b"), Truth::True);
        // A complete ARN is matched as it is, and the request's own ARN is never padded.
        assert_eq!(
            r("arn:aws:sqs:*:*:q", "arn:aws:sqs:eu-west-1:1:q"),
            Truth::True
        );
        assert_eq!(r("arn:aws:sqs:*:*:*", "arn:aws:sqs"), Truth::False);
        // Only `Resource` is completed: an ARN condition compares as written.
        assert_eq!(
            m_cond("arn:aws:sqs", "arn:aws:sqs:eu-west-1:1:q"),
            Truth::False
        );
    }

    fn m_cond(pattern: &str, arn: &str) -> Truth {
        arn_matches(pattern, arn, &ctx(&[]), true)
    }
}
