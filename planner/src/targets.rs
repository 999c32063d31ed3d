//! Which roles whittle may touch.
//!
//! A role is a *target* when it matches the configured ARN patterns (any of them) and every
//! configured tag selector, and is not *protected*. Protected always wins: service-linked
//! roles (AWS owns them and refuses edits), whittle's own role (shrinking it could lock
//! whittle out mid-trial), and the configured protected patterns. An empty selector selects
//! nothing: whittle never manages every role of an account by default.

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;

/// A glob over ARNs: `*` matches any run of characters (also `/` and `:`), `?` exactly one.
/// Matching is case-sensitive, like ARN matching in IAM policies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArnPattern {
    pattern: String,
}

/// Why a string is not an ARN pattern.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ArnPatternError {
    #[error("ARN pattern `{0}` must start with `arn:` (for example `arn:aws:iam::*:role/app-*`)")]
    NotAnArn(String),
    #[error(
        "ARN pattern `{0}` must have at least 6 `:`-separated parts (arn:partition:service:region:account:resource)"
    )]
    TooFewParts(String),
}

impl ArnPattern {
    pub fn new(pattern: &str) -> Result<ArnPattern, ArnPatternError> {
        if !pattern.starts_with("arn:") {
            return Err(ArnPatternError::NotAnArn(pattern.to_owned()));
        }
        if pattern.splitn(6, ':').count() < 6 {
            return Err(ArnPatternError::TooFewParts(pattern.to_owned()));
        }
        Ok(ArnPattern {
            pattern: pattern.to_owned(),
        })
    }

    pub fn as_str(&self) -> &str {
        &self.pattern
    }

    pub fn matches(&self, arn: &str) -> bool {
        crate::policy::pattern::glob_bytes(self.pattern.as_bytes(), arn.as_bytes(), false)
    }
}

impl fmt::Display for ArnPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.pattern)
    }
}

/// What the selector needs to know about a role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleSummary {
    pub arn: String,
    /// The role's IAM path, e.g. `/` or `/aws-service-role/lambda.amazonaws.com/`.
    pub path: String,
    pub tags: BTreeMap<String, String>,
}

/// The verdict for one role.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "selection", content = "reason", rename_all = "kebab-case")]
pub enum Selection {
    /// whittle may manage this role.
    Target,
    /// The role matches the selector but must never be touched.
    Protected(String),
    /// The role is outside the configured targets.
    NotSelected,
}

/// The configured target selector.
#[derive(Debug, Clone, Default)]
pub struct TargetSelector {
    /// A role must match at least one of these (when any are set).
    pub arn_patterns: Vec<ArnPattern>,
    /// A role must carry every one of these tags; the value `*` accepts any value.
    pub tags: BTreeMap<String, String>,
    /// Roles matching any of these are never touched.
    pub protected_patterns: Vec<ArnPattern>,
}

impl TargetSelector {
    /// True when the selector would select no role at all, whatever the account holds.
    pub fn is_empty(&self) -> bool {
        self.arn_patterns.is_empty() && self.tags.is_empty()
    }

    /// Classifies `role`. `own_role_arn` is the role whittle runs as, if it runs as one.
    pub fn classify(&self, role: &RoleSummary, own_role_arn: Option<&str>) -> Selection {
        if self.is_empty() {
            return Selection::NotSelected;
        }
        let by_arn =
            self.arn_patterns.is_empty() || self.arn_patterns.iter().any(|p| p.matches(&role.arn));
        let by_tags = self.tags.iter().all(|(key, wanted)| {
            role.tags
                .get(key)
                .is_some_and(|value| wanted == "*" || value == wanted)
        });
        if !(by_arn && by_tags) {
            return Selection::NotSelected;
        }
        if role.path.starts_with("/aws-service-role/")
            || role.arn.contains(":role/aws-service-role/")
        {
            return Selection::Protected("service-linked role (owned by AWS)".to_owned());
        }
        if own_role_arn.is_some_and(|own| own == role.arn) {
            return Selection::Protected("whittle's own role".to_owned());
        }
        if let Some(pattern) = self
            .protected_patterns
            .iter()
            .find(|p| p.matches(&role.arn))
        {
            return Selection::Protected(format!("matches protected pattern `{pattern}`"));
        }
        Selection::Target
    }
}

/// The role's name from its ARN (`arn:aws:iam::1:role/path/name` -> `name`).
pub fn role_name(role_arn: &str) -> &str {
    role_arn.rsplit('/').next().unwrap_or(role_arn)
}

/// The role ARN behind a caller identity: `arn:aws:sts::A:assumed-role/NAME/SESSION` becomes
/// `arn:aws:iam::A:role/NAME`. Roles with a path appear in the assumed-role ARN by name only,
/// so the result is matched by name, not by path.
pub fn role_arn_of_caller(caller_arn: &str) -> Option<String> {
    let mut parts = caller_arn.splitn(6, ':');
    let (arn, partition, service, _region, account, resource) = (
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
    );
    if arn != "arn" || service != "sts" {
        return None;
    }
    let name = resource.strip_prefix("assumed-role/")?.split('/').next()?;
    Some(format!("arn:{partition}:iam::{account}:role/{name}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn role(arn: &str, tags: &[(&str, &str)]) -> RoleSummary {
        RoleSummary {
            arn: arn.to_owned(),
            path: "/".to_owned(),
            tags: tags
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    fn pattern(p: &str) -> ArnPattern {
        ArnPattern::new(p).expect("valid pattern")
    }

    #[test]
    fn glob_cases() {
        let cases: &[(&str, &str, bool)] = &[
            (
                "arn:aws:iam::*:role/app-*",
                "arn:aws:iam::123456789012:role/app-orders",
                true,
            ),
            (
                "arn:aws:iam::*:role/app-*",
                "arn:aws:iam::123456789012:role/web-orders",
                false,
            ),
            (
                "arn:aws:iam::*:role/*",
                "arn:aws:iam::123456789012:role/team/app",
                true,
            ),
            (
                "arn:aws:iam::12345678901?:role/x",
                "arn:aws:iam::123456789012:role/x",
                true,
            ),
            (
                "arn:aws:iam::12345678901?:role/x",
                "arn:aws:iam::1234567890123:role/x",
                false,
            ),
            (
                "arn:aws:iam::*:role/a*b*c",
                "arn:aws:iam::1:role/aXbYbZc",
                true,
            ),
            (
                "arn:aws:iam::*:role/a*b*c",
                "arn:aws:iam::1:role/aXbYbZ",
                false,
            ),
            ("arn:aws:iam::*:role/App", "arn:aws:iam::1:role/app", false),
            (
                "arn:aws:iam::*:role/app",
                "arn:aws:iam::1:role/app-x",
                false,
            ),
            ("arn:aws:iam::*:role/**", "arn:aws:iam::1:role/", true),
        ];
        for (p, arn, want) in cases {
            assert_eq!(pattern(p).matches(arn), *want, "{p} vs {arn}");
        }
    }

    #[test]
    fn rejects_non_arn_patterns() {
        assert!(matches!(
            ArnPattern::new("role/app-*"),
            Err(ArnPatternError::NotAnArn(_))
        ));
        assert!(matches!(
            ArnPattern::new("arn:aws:iam"),
            Err(ArnPatternError::TooFewParts(_))
        ));
    }

    #[test]
    fn selects_by_arn_and_tags_together() {
        let selector = TargetSelector {
            arn_patterns: vec![pattern("arn:aws:iam::*:role/app-*")],
            tags: [
                ("whittle:managed".to_owned(), "true".to_owned()),
                ("team".to_owned(), "*".to_owned()),
            ]
            .into(),
            protected_patterns: vec![],
        };
        let both = role(
            "arn:aws:iam::1:role/app-a",
            &[("whittle:managed", "true"), ("team", "pay")],
        );
        let wrong_value = role(
            "arn:aws:iam::1:role/app-a",
            &[("whittle:managed", "false"), ("team", "pay")],
        );
        let missing_tag = role("arn:aws:iam::1:role/app-a", &[("whittle:managed", "true")]);
        let wrong_arn = role(
            "arn:aws:iam::1:role/web-a",
            &[("whittle:managed", "true"), ("team", "pay")],
        );
        assert_eq!(selector.classify(&both, None), Selection::Target);
        assert_eq!(
            selector.classify(&wrong_value, None),
            Selection::NotSelected
        );
        assert_eq!(
            selector.classify(&missing_tag, None),
            Selection::NotSelected
        );
        assert_eq!(selector.classify(&wrong_arn, None), Selection::NotSelected);
    }

    #[test]
    fn protected_wins_over_selection() {
        let selector = TargetSelector {
            arn_patterns: vec![pattern("arn:aws:iam::*:role/*")],
            tags: BTreeMap::new(),
            protected_patterns: vec![pattern("arn:aws:iam::*:role/break-glass*")],
        };
        let mut service_linked = role(
            "arn:aws:iam::1:role/aws-service-role/lambda.amazonaws.com/AWSServiceRoleForLambda",
            &[],
        );
        service_linked.path = "/aws-service-role/lambda.amazonaws.com/".to_owned();
        assert!(
            matches!(selector.classify(&service_linked, None), Selection::Protected(r) if r.contains("service-linked"))
        );
        let own = role("arn:aws:iam::1:role/whittle", &[]);
        assert!(
            matches!(selector.classify(&own, Some("arn:aws:iam::1:role/whittle")), Selection::Protected(r) if r.contains("own role"))
        );
        let glass = role("arn:aws:iam::1:role/break-glass-admin", &[]);
        assert!(
            matches!(selector.classify(&glass, None), Selection::Protected(r) if r.contains("break-glass*"))
        );
        assert_eq!(
            selector.classify(&role("arn:aws:iam::1:role/app", &[]), None),
            Selection::Target
        );
    }

    #[test]
    fn empty_selector_selects_nothing() {
        let selector = TargetSelector::default();
        assert!(selector.is_empty());
        assert_eq!(
            selector.classify(&role("arn:aws:iam::1:role/app", &[]), None),
            Selection::NotSelected
        );
    }

    #[test]
    fn role_arn_from_assumed_role_caller() {
        assert_eq!(
            role_arn_of_caller("arn:aws:sts::123456789012:assumed-role/whittle/session-1")
                .as_deref(),
            Some("arn:aws:iam::123456789012:role/whittle")
        );
        assert_eq!(
            role_arn_of_caller("arn:aws-cn:sts::1:assumed-role/r/s").as_deref(),
            Some("arn:aws-cn:iam::1:role/r")
        );
        assert_eq!(
            role_arn_of_caller("arn:aws:iam::123456789012:user/alice"),
            None
        );
        assert_eq!(role_arn_of_caller("arn:aws:iam::123456789012:root"), None);
    }
}
