//! The policy evaluator: IAM's evaluation logic for identity-based policies and a
//! permissions boundary (`reference_policies_evaluation-logic`).
//!
//! 1. An explicit `Deny` in any policy that applies to the request wins.
//! 2. Otherwise the request is allowed only if an identity policy allows it **and**, when
//!    the principal has a permissions boundary, the boundary allows it too.
//! 3. Otherwise it is implicitly denied.
//!
//! Conditions are three-valued. With a *complete* context (`whittle policy eval`, like
//! `simulate-custom-policy`), a key missing from the context is treated as IAM treats a
//! missing key. With a *partial* context (the planner, which cannot know a future request's
//! source IP or tags), a condition on a key it does not know is `Unknown`, and so may be the
//! decision: `DependsOnCondition`, never assumed either way.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;

use serde::Serialize;

use super::document::{
    ConditionBlock, ConditionValue, Effect, PolicyDocument, Principal, Statement, split_operator,
};
use super::pattern::{action_matches, arn_matches, expand_matches, resource_matches};

/// A three-valued truth, for conditions whose keys the caller may not know.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Truth {
    True,
    False,
    Unknown,
}

impl From<bool> for Truth {
    fn from(b: bool) -> Truth {
        if b { Truth::True } else { Truth::False }
    }
}

impl Truth {
    pub fn and(self, other: Truth) -> Truth {
        match (self, other) {
            (Truth::False, _) | (_, Truth::False) => Truth::False,
            (Truth::True, Truth::True) => Truth::True,
            _ => Truth::Unknown,
        }
    }

    pub fn or(self, other: Truth) -> Truth {
        match (self, other) {
            (Truth::True, _) | (_, Truth::True) => Truth::True,
            (Truth::False, Truth::False) => Truth::False,
            _ => Truth::Unknown,
        }
    }

    pub fn negate(self) -> Truth {
        match self {
            Truth::True => Truth::False,
            Truth::False => Truth::True,
            Truth::Unknown => Truth::Unknown,
        }
    }

    pub(crate) fn any(items: impl IntoIterator<Item = Truth>) -> Truth {
        items.into_iter().fold(Truth::False, Truth::or)
    }

    pub(crate) fn all(items: impl IntoIterator<Item = Truth>) -> Truth {
        items.into_iter().fold(Truth::True, Truth::and)
    }
}

/// The request context: condition keys (case-insensitive) and their values; a key given
/// several values is multi-valued.
#[derive(Debug, Clone, Default)]
pub struct Context {
    values: BTreeMap<String, Vec<String>>,
    /// True: a key not given is absent (IAM's rules for missing keys apply). False: a key
    /// not given is unknown.
    pub complete: bool,
}

impl Context {
    pub fn complete() -> Context {
        Context {
            values: BTreeMap::new(),
            complete: true,
        }
    }

    pub fn partial() -> Context {
        Context {
            values: BTreeMap::new(),
            complete: false,
        }
    }

    /// Adds a value to `key` (a second value makes the key multi-valued).
    pub fn insert(&mut self, key: &str, value: &str) {
        self.values
            .entry(key.to_ascii_lowercase())
            .or_default()
            .push(value.to_owned());
    }

    /// Makes `key` present with no values (an empty multivalued key, such as `aws:TagKeys`
    /// of a request without tags).
    pub fn set_empty(&mut self, key: &str) {
        self.values.entry(key.to_ascii_lowercase()).or_default();
    }

    pub fn get(&self, key: &str) -> Option<&[String]> {
        self.values
            .get(&key.to_ascii_lowercase())
            .map(Vec::as_slice)
    }

    /// Sets the keys IAM derives from the calling principal's ARN when they are not set:
    /// `aws:PrincipalArn`, `aws:PrincipalAccount`, and for an IAM user `aws:username`.
    pub fn with_principal(mut self, arn: &str) -> Context {
        let parts: Vec<&str> = arn.splitn(6, ':').collect();
        let mut derived = vec![("aws:PrincipalArn", arn.to_owned())];
        if let [_, _, _, _, account, resource] = parts.as_slice() {
            derived.push(("aws:PrincipalAccount", (*account).to_owned()));
            if let Some(user) = resource.strip_prefix("user/") {
                derived.push((
                    "aws:username",
                    user.rsplit('/').next().unwrap_or(user).to_owned(),
                ));
            }
        }
        for (key, value) in derived {
            if self.get(key).is_none() {
                self.insert(key, &value);
            }
        }
        self
    }
}

/// One request to decide.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// `service:Action`, any case.
    pub action: &'a str,
    /// The resource ARN, or `*` for actions without resource-level permissions.
    pub resource: &'a str,
    /// The calling principal's ARN, matched against `Principal` in resource policies.
    pub principal: Option<&'a str>,
    pub context: &'a Context,
}

/// A policy with the name output should call it by (a file name, a policy name or ARN).
#[derive(Debug, Clone, Copy)]
pub struct NamedPolicy<'a> {
    pub name: &'a str,
    pub document: &'a PolicyDocument,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Decision {
    Allowed,
    ImplicitlyDenied,
    ExplicitlyDenied,
    /// The answer turns on condition keys the context does not have.
    DependsOnCondition,
}

impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Decision::Allowed => "Allowed",
            Decision::ImplicitlyDenied => "ImplicitlyDenied",
            Decision::ExplicitlyDenied => "ExplicitlyDenied",
            Decision::DependsOnCondition => "DependsOnCondition",
        })
    }
}

/// The kind of policy a statement sits in, and so the part it plays in a decision
/// (`reference_policies_evaluation-logic_policy-eval-denyallow`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Layer {
    /// An Organizations resource control policy of the resource's account: it never grants,
    /// and every level from the root to the account must allow.
    Rcp,
    /// An Organizations service control policy of the principal's account: the same, for
    /// the principal.
    Scp,
    /// The resource's own policy (a bucket or key policy, a role's trust policy).
    Resource,
    /// The principal's identity-based policies.
    Identity,
    /// The principal's permissions boundary: it never grants, it caps identity policies.
    Boundary,
    /// The session policies passed when the session was created.
    Session,
    /// A rule AWS applies whatever the policies say (an operation that needs no
    /// permission, a resource AWS owns).
    Aws,
}

impl Layer {
    /// The name people use for the layer, in sentences.
    pub fn describe(self) -> &'static str {
        match self {
            Layer::Rcp => "resource control policy (RCP)",
            Layer::Scp => "service control policy (SCP)",
            Layer::Resource => "resource-based policy",
            Layer::Identity => "identity-based policy",
            Layer::Boundary => "permissions boundary",
            Layer::Session => "session policy",
            Layer::Aws => "AWS rule",
        }
    }
}

impl fmt::Display for Layer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Layer::Rcp => "rcp",
            Layer::Scp => "scp",
            Layer::Resource => "resource",
            Layer::Identity => "identity",
            Layer::Boundary => "boundary",
            Layer::Session => "session",
            Layer::Aws => "aws",
        })
    }
}

/// A statement, located.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StatementRef {
    pub policy: String,
    /// The statement's position in its policy, from 0.
    pub index: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
    pub effect: String,
    /// True when the statement is in the permissions boundary (kept beside `layer` for
    /// readers of the first JSON shape).
    pub boundary: bool,
    /// The kind of policy the statement is in.
    pub layer: Layer,
}

impl StatementRef {
    pub(crate) fn new(
        policy: &NamedPolicy<'_>,
        index: usize,
        statement: &Statement,
        layer: Layer,
    ) -> StatementRef {
        StatementRef {
            policy: policy.name.to_owned(),
            index,
            sid: statement.sid.clone(),
            effect: statement.effect.to_string(),
            boundary: layer == Layer::Boundary,
            layer,
        }
    }
}

impl fmt::Display for StatementRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.layer {
            // Identity policies are the common case and read best by their name alone.
            Layer::Identity => {}
            Layer::Boundary => f.write_str("boundary ")?,
            Layer::Session => f.write_str("session policy ")?,
            Layer::Resource => f.write_str("resource policy ")?,
            Layer::Scp => f.write_str("SCP ")?,
            Layer::Rcp => f.write_str("RCP ")?,
            Layer::Aws => f.write_str("AWS ")?,
        }
        write!(f, "{} statement {}", self.policy, self.index)?;
        if let Some(sid) = &self.sid {
            write!(f, " (Sid {sid})")?;
        }
        Ok(())
    }
}

/// Names documents held as `(name, document)` pairs for [`evaluate`].
pub fn named(docs: &[(String, PolicyDocument)]) -> Vec<NamedPolicy<'_>> {
    docs.iter()
        .map(|(name, document)| NamedPolicy { name, document })
        .collect()
}

/// The answer and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Evaluation {
    pub decision: Decision,
    /// The layer that decided: the one that denied (explicitly, or by allowing nothing), or
    /// the one that granted an allowed request. None when conditions left it undecided.
    pub layer: Option<Layer>,
    /// The statements that decided: the explicit Deny, or the Allow(s) that allowed.
    pub deciding: Vec<StatementRef>,
    /// Statements that would change the answer but whose conditions could not be decided.
    pub undecided: Vec<StatementRef>,
    /// One sentence for a person.
    pub reason: String,
    /// What the evaluation assumed or left out (a resource account taken to be the
    /// principal's, SCPs that do not apply to a service-linked role, ...).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

/// Decides `request` against `identity` policies and, when not empty, the permissions
/// `boundary`.
pub fn evaluate(
    identity: &[NamedPolicy<'_>],
    boundary: &[NamedPolicy<'_>],
    request: &Request<'_>,
) -> Evaluation {
    let mut deny_unknown = Vec::new();
    let mut identity_allow = (Vec::new(), Vec::new());
    let mut boundary_allow = (Vec::new(), Vec::new());
    let sets = [(identity, false), (boundary, true)];
    for (policies, is_boundary) in sets {
        for policy in policies {
            for (index, statement) in policy.document.statements().iter().enumerate() {
                let applies = statement_applies(statement, policy.document, request);
                if applies == Truth::False {
                    continue;
                }
                let layer = if is_boundary {
                    Layer::Boundary
                } else {
                    Layer::Identity
                };
                let at = StatementRef::new(policy, index, statement, layer);
                match (statement.effect, applies) {
                    (Effect::Deny, Truth::True) => {
                        let reason = format!("explicitly denied by {at}");
                        return Evaluation {
                            decision: Decision::ExplicitlyDenied,
                            layer: Some(layer),
                            deciding: vec![at],
                            undecided: Vec::new(),
                            reason,
                            notes: Vec::new(),
                        };
                    }
                    (Effect::Deny, _) => deny_unknown.push(at),
                    (Effect::Allow, truth) => {
                        let (sure, unsure) = if is_boundary {
                            &mut boundary_allow
                        } else {
                            &mut identity_allow
                        };
                        if truth == Truth::True {
                            sure.push(at);
                        } else {
                            unsure.push(at);
                        }
                    }
                }
            }
        }
    }
    let has_boundary = !boundary.is_empty();
    let verdict = |(sure, unsure): &(Vec<StatementRef>, Vec<StatementRef>)| {
        if !sure.is_empty() {
            Truth::True
        } else if !unsure.is_empty() {
            Truth::Unknown
        } else {
            Truth::False
        }
    };
    let by_identity = verdict(&identity_allow);
    let by_boundary = if has_boundary {
        verdict(&boundary_allow)
    } else {
        Truth::True
    };
    let what = format!("{} on {}", request.action, request.resource);
    if by_identity == Truth::False {
        return Evaluation {
            decision: Decision::ImplicitlyDenied,
            layer: Some(Layer::Identity),
            deciding: Vec::new(),
            undecided: Vec::new(),
            reason: format!("no identity-policy statement allows {what}"),
            notes: Vec::new(),
        };
    }
    if by_boundary == Truth::False {
        return Evaluation {
            decision: Decision::ImplicitlyDenied,
            layer: Some(Layer::Boundary),
            deciding: Vec::new(),
            undecided: Vec::new(),
            reason: format!("the permissions boundary does not allow {what}"),
            notes: Vec::new(),
        };
    }
    let denied = if deny_unknown.is_empty() {
        Truth::False
    } else {
        Truth::Unknown
    };
    if by_identity.and(by_boundary).and(denied.negate()) == Truth::True {
        let mut deciding = identity_allow.0;
        deciding.extend(boundary_allow.0);
        let reason = format!(
            "allowed by {}",
            deciding
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(" and ")
        );
        return Evaluation {
            decision: Decision::Allowed,
            layer: Some(Layer::Identity),
            deciding,
            undecided: Vec::new(),
            reason,
            notes: Vec::new(),
        };
    }
    let mut undecided = deny_unknown;
    if by_identity == Truth::Unknown {
        undecided.extend(identity_allow.1);
    }
    if by_boundary == Truth::Unknown {
        undecided.extend(boundary_allow.1);
    }
    let reason = format!(
        "{what} depends on conditions the context does not decide: {}",
        undecided
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    );
    Evaluation {
        decision: Decision::DependsOnCondition,
        layer: None,
        deciding: Vec::new(),
        undecided,
        reason,
        notes: Vec::new(),
    }
}

/// Whether `statement` applies to `request` (its effect aside), matching `Principal` and
/// `NotPrincipal` the simple way: the caller's ARN, its account, or `*`.
pub fn statement_applies(
    statement: &Statement,
    document: &PolicyDocument,
    request: &Request<'_>,
) -> Truth {
    if let Some(principal) = &statement.principal
        && !principal_matches(principal, request.principal)
    {
        return Truth::False;
    }
    if let Some(principal) = &statement.not_principal
        && principal_matches(principal, request.principal)
    {
        return Truth::False;
    }
    statement_matches(statement, document, request)
}

/// Whether `statement`'s action, resource and condition match `request`; its principal
/// elements are the caller's to judge.
pub(crate) fn statement_matches(
    statement: &Statement,
    document: &PolicyDocument,
    request: &Request<'_>,
) -> Truth {
    let variables = document.resolves_variables();
    let action = match (&statement.action, &statement.not_action) {
        (Some(list), _) => list.iter().any(|p| action_matches(p, request.action)),
        (None, Some(list)) => !list.iter().any(|p| action_matches(p, request.action)),
        (None, None) => false,
    };
    if !action {
        return Truth::False;
    }
    let resource = match (&statement.resource, &statement.not_resource) {
        (Some(list), _) => Truth::any(
            list.iter()
                .map(|p| resource_matches(p, request.resource, request.context, variables)),
        ),
        (None, Some(list)) => Truth::any(
            list.iter()
                .map(|p| resource_matches(p, request.resource, request.context, variables)),
        )
        .negate(),
        // Resource-less statements (trust policies) apply to the resource they sit on.
        (None, None) => Truth::True,
    };
    if resource == Truth::False {
        return Truth::False;
    }
    match &statement.condition {
        Some(block) => resource.and(condition_holds(block, request.context, variables)),
        None => resource,
    }
}

/// Resource-policy principal matching: `*`, an exact ARN, or the account (id or root ARN)
/// the caller belongs to, which in IAM delegates to that account's own policies.
fn principal_matches(principal: &Principal, caller: Option<&str>) -> bool {
    let ids = match principal {
        Principal::Any(_) => return true,
        Principal::Map(map) => map,
    };
    let Some(caller) = caller else {
        return false;
    };
    let caller_account = caller.split(':').nth(4).unwrap_or_default();
    ids.iter().any(|(kind, values)| {
        values.iter().any(|value| {
            value == "*"
                || value == caller
                || (kind == "AWS"
                    && !caller_account.is_empty()
                    && (value == caller_account
                        || *value == format!("arn:aws:iam::{caller_account}:root")))
        })
    })
}

/// Whether a whole `Condition` block holds: every operator, every key in it (AND).
pub fn condition_holds(block: &ConditionBlock, context: &Context, variables: bool) -> Truth {
    let mut result = Truth::True;
    for (operator, keys) in block {
        for (key, values) in keys {
            result = result.and(condition_entry(
                operator,
                key,
                values.as_slice(),
                context,
                variables,
            ));
            if result == Truth::False {
                return result;
            }
        }
    }
    result
}

/// One operator applied to one key: the rules of `reference_policies_elements_condition_operators`
/// and of the set operators for multivalued keys.
pub fn condition_entry(
    operator: &str,
    key: &str,
    policy_values: &[ConditionValue],
    context: &Context,
    variables: bool,
) -> Truth {
    // The document parser admits only operators split_operator knows.
    let Some((qualifier, base, if_exists)) = split_operator(operator) else {
        return Truth::False;
    };
    let present = context.get(key);
    if base == "Null" {
        return match present {
            None if !context.complete => Truth::Unknown,
            _ => {
                let absent = present.is_none_or(<[String]>::is_empty);
                Truth::any(
                    policy_values
                        .iter()
                        .map(|v| Truth::from(v.text().eq_ignore_ascii_case("true") == absent)),
                )
            }
        };
    }
    let (positive, negated) = match base {
        "StringNotEquals" => ("StringEquals", true),
        "StringNotEqualsIgnoreCase" => ("StringEqualsIgnoreCase", true),
        "StringNotLike" => ("StringLike", true),
        "NumericNotEquals" => ("NumericEquals", true),
        "DateNotEquals" => ("DateEquals", true),
        "NotIpAddress" => ("IpAddress", true),
        "ArnNotEquals" => ("ArnEquals", true),
        "ArnNotLike" => ("ArnLike", true),
        other => (other, false),
    };
    let Some(values) = present else {
        if !context.complete {
            return Truth::Unknown;
        }
        // A missing key: ...IfExists passes; ForAllValues is vacuously true; ForAnyValue has
        // nothing to match; a plain negated operator is true, a plain positive one false.
        return Truth::from(if if_exists {
            true
        } else {
            match qualifier {
                Some("ForAllValues") => true,
                Some(_) => false,
                None => negated,
            }
        });
    };
    // Does one context value match any of the policy's values (under the positive form)?
    let one = |value: &String| {
        Truth::any(
            policy_values
                .iter()
                .map(|p| compare(positive, value, p, context, variables)),
        )
    };
    match qualifier {
        Some("ForAllValues") => Truth::all(values.iter().map(|v| {
            let m = one(v);
            if negated { m.negate() } else { m }
        })),
        Some(_) => Truth::any(values.iter().map(|v| {
            let m = one(v);
            if negated { m.negate() } else { m }
        })),
        None => {
            let m = Truth::any(values.iter().map(one));
            if negated { m.negate() } else { m }
        }
    }
}

fn compare(
    operator: &str,
    context_value: &str,
    policy_value: &ConditionValue,
    context: &Context,
    variables: bool,
) -> Truth {
    let policy_text = policy_value.text();
    let string = |wildcards: bool, fold: bool| {
        expand_matches(
            &policy_text,
            context_value,
            context,
            variables,
            wildcards,
            fold,
        )
    };
    match operator {
        // Without wildcards, a pattern of literals matches exactly its own text.
        "StringEquals" => string(false, false),
        "StringEqualsIgnoreCase" => string(false, true),
        "StringLike" => string(true, false),
        "ArnEquals" | "ArnLike" => arn_matches(&policy_text, context_value, context, variables),
        "NumericEquals"
        | "NumericLessThan"
        | "NumericLessThanEquals"
        | "NumericGreaterThan"
        | "NumericGreaterThanEquals" => {
            match (
                context_value.trim().parse::<f64>(),
                policy_text.trim().parse::<f64>(),
            ) {
                (Ok(c), Ok(p)) => Truth::from(ordered(operator, c.partial_cmp(&p))),
                _ => Truth::False,
            }
        }
        "DateEquals"
        | "DateLessThan"
        | "DateLessThanEquals"
        | "DateGreaterThan"
        | "DateGreaterThanEquals" => match (parse_date(context_value), parse_date(&policy_text)) {
            (Some(c), Some(p)) => Truth::from(ordered(operator, Some(c.cmp(&p)))),
            _ => Truth::False,
        },
        "Bool" => Truth::from(context_value.eq_ignore_ascii_case(policy_text.trim())),
        // IAM compares the base64 text of binary values byte for byte.
        "BinaryEquals" => Truth::from(context_value == policy_text),
        "IpAddress" => Truth::from(ip_in(context_value, &policy_text)),
        _ => Truth::False,
    }
}

fn ordered(operator: &str, ordering: Option<std::cmp::Ordering>) -> bool {
    use std::cmp::Ordering::{Equal, Greater, Less};
    let Some(ordering) = ordering else {
        return false;
    };
    if operator.ends_with("LessThanEquals") {
        ordering != Greater
    } else if operator.ends_with("LessThan") {
        ordering == Less
    } else if operator.ends_with("GreaterThanEquals") {
        ordering != Less
    } else if operator.ends_with("GreaterThan") {
        ordering == Greater
    } else {
        ordering == Equal
    }
}

/// A date as IAM accepts one: ISO 8601 (`2026-01-01T00:00:00Z`, a date alone) or epoch
/// seconds. Returned in milliseconds.
fn parse_date(text: &str) -> Option<i64> {
    let text = text.trim();
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return text.parse::<i64>().ok()?.checked_mul(1000);
    }
    if text.len() == 10 {
        return crate::trail::parse_time(&format!("{text}T00:00:00Z"));
    }
    crate::trail::parse_time(text)
}

/// Whether `ip` lies in `range` (a CIDR block, or one address).
fn ip_in(ip: &str, range: &str) -> bool {
    let Ok(ip) = ip.trim().parse::<IpAddr>() else {
        return false;
    };
    let range = range.trim();
    if let Ok(net) = range.parse::<ipnet::IpNet>() {
        return net.contains(&ip);
    }
    range.parse::<IpAddr>().is_ok_and(|single| single == ip)
}
