//! IAM policy documents: parsed strictly, serialized back in the same shape.
//!
//! The grammar is IAM's (`reference_policies_grammar`): `Statement` is one object or an
//! array; `Action`, `Resource`, principal and condition values are a string or an array of
//! strings. The shape is kept (a one-string `Action` stays a string), so a document that is
//! parsed and written again compares equal to the original as parsed JSON. Anything IAM would
//! reject as an element — an unknown key, a wrong type, an action without a service prefix, a
//! resource that is neither `*` nor an ARN — is an error naming the element's path.

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;
use serde_json::Value;

/// A string or a list of them (or of condition values), kept in the shape it was written in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum OneOrMany<T> {
    One(T),
    Many(Vec<T>),
}

impl<T> OneOrMany<T> {
    pub fn as_slice(&self) -> &[T] {
        match self {
            OneOrMany::One(one) => std::slice::from_ref(one),
            OneOrMany::Many(many) => many,
        }
    }

    pub fn iter(&self) -> std::slice::Iter<'_, T> {
        self.as_slice().iter()
    }

    /// A one-element list collapses to the single form, as people write it.
    pub fn from_vec(mut items: Vec<T>) -> OneOrMany<T> {
        if items.len() == 1 {
            OneOrMany::One(items.remove(0))
        } else {
            OneOrMany::Many(items)
        }
    }
}

/// `Allow` or `Deny` (IAM spells them with a capital and nothing else).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Effect {
    Allow,
    Deny,
}

impl fmt::Display for Effect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Effect::Allow => "Allow",
            Effect::Deny => "Deny",
        })
    }
}

/// `Principal` / `NotPrincipal`: `"*"` or a map such as `{"AWS": [...], "Service": "..."}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum Principal {
    /// `"*"`: everyone.
    Any(String),
    Map(BTreeMap<String, OneOrMany<String>>),
}

/// One condition value: IAM accepts strings, booleans and numbers and compares their text.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(transparent)]
pub struct ConditionValue(pub Value);

impl ConditionValue {
    /// The value as IAM compares it: a string as is, `true`/`false`, a number's decimal text.
    pub fn text(&self) -> String {
        match &self.0 {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        }
    }
}

/// `Condition`: operator -> condition key -> values.
pub type ConditionBlock = BTreeMap<String, BTreeMap<String, OneOrMany<ConditionValue>>>;

/// One statement, its elements in the order IAM's console writes them.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Statement {
    #[serde(rename = "Sid", skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
    #[serde(rename = "Effect")]
    pub effect: Effect,
    #[serde(rename = "Principal", skip_serializing_if = "Option::is_none")]
    pub principal: Option<Principal>,
    #[serde(rename = "NotPrincipal", skip_serializing_if = "Option::is_none")]
    pub not_principal: Option<Principal>,
    #[serde(rename = "Action", skip_serializing_if = "Option::is_none")]
    pub action: Option<OneOrMany<String>>,
    #[serde(rename = "NotAction", skip_serializing_if = "Option::is_none")]
    pub not_action: Option<OneOrMany<String>>,
    #[serde(rename = "Resource", skip_serializing_if = "Option::is_none")]
    pub resource: Option<OneOrMany<String>>,
    #[serde(rename = "NotResource", skip_serializing_if = "Option::is_none")]
    pub not_resource: Option<OneOrMany<String>>,
    #[serde(rename = "Condition", skip_serializing_if = "Option::is_none")]
    pub condition: Option<ConditionBlock>,
}

impl Statement {
    /// An `Allow` of `actions` on `resources`, with no other element.
    pub fn allow(actions: Vec<String>, resources: Vec<String>) -> Statement {
        Statement {
            sid: None,
            effect: Effect::Allow,
            principal: None,
            not_principal: None,
            action: Some(OneOrMany::from_vec(actions)),
            not_action: None,
            resource: Some(OneOrMany::from_vec(resources)),
            not_resource: None,
            condition: None,
        }
    }
}

/// A whole policy document.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PolicyDocument {
    #[serde(rename = "Version", skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    #[serde(rename = "Id", skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(rename = "Statement")]
    pub statement: OneOrMany<Statement>,
}

/// Why a document is not a valid policy.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    #[error("not JSON: {0}")]
    NotJson(String),
    #[error("{path}: {message}")]
    Invalid { path: String, message: String },
}

fn invalid(path: &str, message: impl Into<String>) -> PolicyError {
    PolicyError::Invalid {
        path: path.to_owned(),
        message: message.into(),
    }
}

/// The current policy language version; policy variables work only in it.
pub const VERSION_2012: &str = "2012-10-17";

const OPERATORS: &[&str] = &[
    "StringEquals",
    "StringNotEquals",
    "StringEqualsIgnoreCase",
    "StringNotEqualsIgnoreCase",
    "StringLike",
    "StringNotLike",
    "NumericEquals",
    "NumericNotEquals",
    "NumericLessThan",
    "NumericLessThanEquals",
    "NumericGreaterThan",
    "NumericGreaterThanEquals",
    "DateEquals",
    "DateNotEquals",
    "DateLessThan",
    "DateLessThanEquals",
    "DateGreaterThan",
    "DateGreaterThanEquals",
    "Bool",
    "BinaryEquals",
    "IpAddress",
    "NotIpAddress",
    "ArnEquals",
    "ArnNotEquals",
    "ArnLike",
    "ArnNotLike",
    "Null",
];

/// Splits `ForAllValues:StringLikeIfExists` into (qualifier, base operator, if-exists), or
/// None for an operator IAM does not know.
pub fn split_operator(operator: &str) -> Option<(Option<&str>, &str, bool)> {
    let (qualifier, rest) = match operator.split_once(':') {
        Some((q @ ("ForAllValues" | "ForAnyValue"), rest)) => (Some(q), rest),
        Some(_) => return None,
        None => (None, operator),
    };
    let (base, if_exists) = match rest.strip_suffix("IfExists") {
        Some(base) if base != "Null" => (base, true),
        Some(_) => return None,
        None => (rest, false),
    };
    OPERATORS
        .contains(&base)
        .then_some((qualifier, base, if_exists))
}

/// Stored plans hold documents as JSON; reading one back applies the same checks.
impl<'de> serde::Deserialize<'de> for PolicyDocument {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(deserializer)?;
        PolicyDocument::from_value(&value).map_err(serde::de::Error::custom)
    }
}

impl PolicyDocument {
    /// Parses a document as written in a file or sent to IAM.
    pub fn parse(text: &str) -> Result<PolicyDocument, PolicyError> {
        let value: Value = serde_json::from_str(text).map_err(|e| {
            PolicyError::NotJson(format!("{e} (line {}, column {})", e.line(), e.column()))
        })?;
        Self::from_value(&value)
    }

    /// Parses a document as the IAM API returns it: URL-encoded (RFC 3986) JSON. Some
    /// implementations (moto's GetPolicyVersion) return it decoded, so plain JSON is accepted
    /// too; a URL-encoded document never starts with `{`, so there is no ambiguity.
    pub fn from_iam(text: &str) -> Result<PolicyDocument, PolicyError> {
        let trimmed = text.trim_start();
        if trimmed.starts_with('{') {
            return Self::parse(trimmed);
        }
        let decoded = percent_encoding::percent_decode_str(trimmed)
            .decode_utf8()
            .map_err(|e| PolicyError::NotJson(format!("URL-encoded text is not UTF-8: {e}")))?;
        Self::parse(&decoded)
    }

    pub fn from_value(value: &Value) -> Result<PolicyDocument, PolicyError> {
        let object = value
            .as_object()
            .ok_or_else(|| invalid("(document)", "a policy must be a JSON object"))?;
        let mut version = None;
        let mut id = None;
        let mut statement = None;
        for (key, value) in object {
            match key.as_str() {
                "Version" => {
                    let v = string(value, "Version")?;
                    if v != VERSION_2012 && v != "2008-10-17" {
                        return Err(invalid(
                            "Version",
                            format!("`{v}` is not a policy language version (use \"2012-10-17\")"),
                        ));
                    }
                    version = Some(v);
                }
                "Id" => id = Some(string(value, "Id")?),
                "Statement" => {
                    statement = Some(match value {
                        Value::Array(items) => OneOrMany::Many(
                            items
                                .iter()
                                .enumerate()
                                .map(|(i, s)| parse_statement(s, &format!("Statement[{i}]")))
                                .collect::<Result<_, _>>()?,
                        ),
                        other => OneOrMany::One(parse_statement(other, "Statement")?),
                    })
                }
                other => {
                    return Err(invalid(
                        other,
                        "unknown element (a policy has Version, Id and Statement)",
                    ));
                }
            }
        }
        let statement =
            statement.ok_or_else(|| invalid("Statement", "missing (a policy needs statements)"))?;
        Ok(PolicyDocument {
            version,
            id,
            statement,
        })
    }

    pub fn statements(&self) -> &[Statement] {
        self.statement.as_slice()
    }

    /// Policy variables (`${aws:username}`) are resolved only in version 2012-10-17
    /// documents; in older ones (or without a Version) they are literal text.
    pub fn resolves_variables(&self) -> bool {
        self.version.as_deref() == Some(VERSION_2012)
    }

    /// The document as JSON text, pretty-printed.
    pub fn to_pretty(&self) -> String {
        // Serializing plain data to a String cannot fail.
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// The document as compact JSON text, as IAM counts its size (without whitespace).
    pub fn to_compact(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    pub fn to_value(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }

    /// Checks what IAM requires of an identity-based policy (and of a permissions
    /// boundary): every statement names actions and resources, and none names a principal.
    pub fn check_identity_policy(&self) -> Result<(), PolicyError> {
        for (i, s) in self.statements().iter().enumerate() {
            let path = format!("Statement[{i}]");
            if s.principal.is_some() || s.not_principal.is_some() {
                return Err(invalid(
                    &path,
                    "an identity-based policy cannot name a Principal",
                ));
            }
            if s.resource.is_none() && s.not_resource.is_none() {
                return Err(invalid(&path, "needs Resource or NotResource"));
            }
        }
        Ok(())
    }
}

/// The kind of policy a document is checked as, for the elements IAM allows in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyKind {
    /// A resource-based policy (bucket, key, queue policy) or a role's trust policy.
    Resource,
    /// An Organizations service control policy.
    ServiceControl,
    /// An Organizations resource control policy.
    ResourceControl,
}

impl PolicyDocument {
    /// Checks what AWS requires of a policy of `kind`: a resource-based policy names whom
    /// each statement is about (`Principal`, or `NotPrincipal` in a Deny); an SCP names no
    /// principal (it applies to the account's principals); an RCP's principal is `"*"`
    /// (AWS Organizations User Guide, "SCP syntax" and "RCP syntax").
    pub fn check_kind(&self, kind: PolicyKind) -> Result<(), PolicyError> {
        for (i, s) in self.statements().iter().enumerate() {
            let path = format!("Statement[{i}]");
            match kind {
                PolicyKind::Resource => {
                    if s.principal.is_none() && s.not_principal.is_none() {
                        return Err(invalid(
                            &path,
                            "a resource-based policy statement needs Principal (or NotPrincipal in a Deny)",
                        ));
                    }
                    if s.not_principal.is_some() && s.effect == Effect::Allow {
                        return Err(invalid(
                            &path,
                            "NotPrincipal works only with \"Effect\": \"Deny\"",
                        ));
                    }
                }
                PolicyKind::ServiceControl => {
                    if s.principal.is_some() || s.not_principal.is_some() {
                        return Err(invalid(&path, "an SCP cannot name a Principal"));
                    }
                }
                PolicyKind::ResourceControl => {
                    if s.not_principal.is_some() {
                        return Err(invalid(&path, "an RCP cannot use NotPrincipal"));
                    }
                    let any = match &s.principal {
                        None | Some(Principal::Any(_)) => true,
                        Some(Principal::Map(map)) => {
                            map.len() == 1
                                && map
                                    .get("AWS")
                                    .is_some_and(|ids| ids.iter().all(|id| id == "*"))
                        }
                    };
                    if !any {
                        return Err(invalid(&path, "an RCP's Principal can only be \"*\""));
                    }
                }
            }
        }
        Ok(())
    }
}

fn string(value: &Value, path: &str) -> Result<String, PolicyError> {
    value
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| invalid(path, "must be a string"))
}

fn strings(value: &Value, path: &str) -> Result<OneOrMany<String>, PolicyError> {
    match value {
        Value::String(s) => Ok(OneOrMany::One(s.clone())),
        Value::Array(items) => Ok(OneOrMany::Many(
            items
                .iter()
                .enumerate()
                .map(|(i, v)| string(v, &format!("{path}[{i}]")))
                .collect::<Result<_, _>>()?,
        )),
        _ => Err(invalid(path, "must be a string or an array of strings")),
    }
}

fn parse_statement(value: &Value, path: &str) -> Result<Statement, PolicyError> {
    let object = value
        .as_object()
        .ok_or_else(|| invalid(path, "a statement must be a JSON object"))?;
    let mut statement = Statement {
        sid: None,
        effect: Effect::Allow,
        principal: None,
        not_principal: None,
        action: None,
        not_action: None,
        resource: None,
        not_resource: None,
        condition: None,
    };
    let mut effect = None;
    for (key, value) in object {
        let at = format!("{path}.{key}");
        match key.as_str() {
            "Sid" => statement.sid = Some(string(value, &at)?),
            "Effect" => {
                effect = Some(match value.as_str() {
                    Some("Allow") => Effect::Allow,
                    Some("Deny") => Effect::Deny,
                    _ => return Err(invalid(&at, "must be \"Allow\" or \"Deny\"")),
                })
            }
            "Principal" => statement.principal = Some(parse_principal(value, &at)?),
            "NotPrincipal" => statement.not_principal = Some(parse_principal(value, &at)?),
            "Action" => statement.action = Some(parse_actions(value, &at)?),
            "NotAction" => statement.not_action = Some(parse_actions(value, &at)?),
            "Resource" => statement.resource = Some(parse_resources(value, &at)?),
            "NotResource" => statement.not_resource = Some(parse_resources(value, &at)?),
            "Condition" => statement.condition = Some(parse_condition(value, &at)?),
            _ => {
                return Err(invalid(
                    &at,
                    "unknown element (a statement has Sid, Effect, Principal, NotPrincipal, Action, NotAction, Resource, NotResource, Condition)",
                ));
            }
        }
    }
    statement.effect = effect.ok_or_else(|| invalid(path, "missing Effect"))?;
    match (&statement.action, &statement.not_action) {
        (None, None) => return Err(invalid(path, "needs Action or NotAction")),
        (Some(_), Some(_)) => return Err(invalid(path, "has both Action and NotAction")),
        _ => {}
    }
    if statement.resource.is_some() && statement.not_resource.is_some() {
        return Err(invalid(path, "has both Resource and NotResource"));
    }
    if statement.principal.is_some() && statement.not_principal.is_some() {
        return Err(invalid(path, "has both Principal and NotPrincipal"));
    }
    Ok(statement)
}

fn parse_actions(value: &Value, path: &str) -> Result<OneOrMany<String>, PolicyError> {
    let actions = strings(value, path)?;
    for action in actions.iter() {
        if action == "*" {
            continue;
        }
        let well_formed = action.split_once(':').is_some_and(|(service, name)| {
            !service.is_empty()
                && !name.is_empty()
                && service
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !name.contains(':')
        });
        if !well_formed {
            return Err(invalid(
                path,
                format!(
                    "`{action}` is not an action (write `service:Action`, e.g. `s3:GetObject`)"
                ),
            ));
        }
    }
    Ok(actions)
}

fn parse_resources(value: &Value, path: &str) -> Result<OneOrMany<String>, PolicyError> {
    let resources = strings(value, path)?;
    for resource in resources.iter() {
        if resource == "*" {
            continue;
        }
        // An incomplete ARN (`arn:aws:sqs`) is valid: AWS completes it with `*` in every
        // missing field ("IAM ARNs"), which the evaluator does when it matches. Only the
        // partition and, when present, the service must be named.
        let parts: Vec<&str> = resource.splitn(6, ':').collect();
        let named = |i: usize| parts.get(i).is_none_or(|part| !part.is_empty());
        if parts[0] != "arn" || parts.len() < 2 || !named(1) || !named(2) {
            return Err(invalid(
                path,
                format!(
                    "`{resource}` is not an ARN (write `*` or `arn:PARTITION:SERVICE:REGION:ACCOUNT:RESOURCE`)"
                ),
            ));
        }
    }
    Ok(resources)
}

fn parse_principal(value: &Value, path: &str) -> Result<Principal, PolicyError> {
    match value {
        Value::String(s) if s == "*" => Ok(Principal::Any(s.clone())),
        Value::Object(map) => {
            let mut out = BTreeMap::new();
            for (kind, ids) in map {
                if !matches!(
                    kind.as_str(),
                    "AWS" | "Service" | "Federated" | "CanonicalUser"
                ) {
                    return Err(invalid(
                        &format!("{path}.{kind}"),
                        "unknown principal type (AWS, Service, Federated or CanonicalUser)",
                    ));
                }
                out.insert(kind.clone(), strings(ids, &format!("{path}.{kind}"))?);
            }
            Ok(Principal::Map(out))
        }
        _ => Err(invalid(
            path,
            "must be \"*\" or an object such as {\"AWS\": \"arn:...\"}",
        )),
    }
}

fn parse_condition(value: &Value, path: &str) -> Result<ConditionBlock, PolicyError> {
    let object = value.as_object().ok_or_else(|| {
        invalid(
            path,
            "must be an object of operators, e.g. {\"StringEquals\": {...}}",
        )
    })?;
    let mut block = ConditionBlock::new();
    for (operator, keys) in object {
        let at = format!("{path}.{operator}");
        if split_operator(operator).is_none() {
            return Err(invalid(&at, "unknown condition operator"));
        }
        let keys = keys.as_object().ok_or_else(|| {
            invalid(
                &at,
                "must be an object of condition keys, e.g. {\"aws:SourceIp\": \"10.0.0.0/8\"}",
            )
        })?;
        let mut entries = BTreeMap::new();
        for (key, values) in keys {
            let at = format!("{at}.{key}");
            let scalar = |v: &Value, at: &str| match v {
                Value::String(_) | Value::Bool(_) | Value::Number(_) => {
                    Ok(ConditionValue(v.clone()))
                }
                _ => Err(invalid(
                    at,
                    "a condition value is a string, number or boolean",
                )),
            };
            let base = split_operator(operator).map_or("", |(_, base, _)| base);
            let checked = |v: &Value, at: &str| {
                let value = scalar(v, at)?;
                check_value(base, &value.0, at)?;
                Ok(value)
            };
            let values = match values {
                Value::Array(items) => OneOrMany::Many(
                    items
                        .iter()
                        .enumerate()
                        .map(|(i, v)| checked(v, &format!("{at}[{i}]")))
                        .collect::<Result<_, _>>()?,
                ),
                other => OneOrMany::One(checked(other, &at)?),
            };
            entries.insert(key.clone(), values);
        }
        block.insert(operator.clone(), entries);
    }
    Ok(block)
}

/// Refuses a condition value its operator cannot read, as IAM's policy validation does: a
/// numeric operator needs a finite number, an IP operator an address or CIDR range. A value
/// with a policy variable (`${...}`) is only known at request time.
fn check_value(base_operator: &str, value: &Value, at: &str) -> Result<(), PolicyError> {
    let text = match value {
        Value::String(s) if s.contains("${") => return Ok(()),
        Value::String(s) => s.trim().to_owned(),
        other => other.to_string(),
    };
    match base_operator {
        "NumericEquals"
        | "NumericNotEquals"
        | "NumericLessThan"
        | "NumericLessThanEquals"
        | "NumericGreaterThan"
        | "NumericGreaterThanEquals" => match (value, text.parse::<f64>()) {
            (Value::String(_) | Value::Number(_), Ok(n)) if n.is_finite() => Ok(()),
            _ => Err(invalid(at, format!("`{text}` is not a number"))),
        },
        "IpAddress" | "NotIpAddress" => {
            let ip = matches!(value, Value::String(_))
                && (text.parse::<ipnet::IpNet>().is_ok()
                    || text.parse::<std::net::IpAddr>().is_ok());
            if ip {
                Ok(())
            } else {
                Err(invalid(
                    at,
                    format!("`{text}` is not an IP address or CIDR range"),
                ))
            }
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(text: &str) {
        let doc = PolicyDocument::parse(text).expect("parses");
        let original: Value = serde_json::from_str(text).expect("json");
        assert_eq!(doc.to_value(), original, "round trip of {text}");
        assert_eq!(
            PolicyDocument::parse(&doc.to_pretty()).expect("reparses"),
            doc
        );
    }

    #[test]
    fn documents_keep_their_shape() {
        round_trip(
            r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"s3:GetObject","Resource":"*"}}"#,
        );
        round_trip(
            r#"{"Version":"2012-10-17","Id":"x","Statement":[{"Sid":"A","Effect":"Deny","NotAction":["iam:*","sts:*"],"NotResource":["arn:aws:iam::1:role/a"],"Condition":{"Bool":{"aws:SecureTransport":false},"NumericLessThan":{"s3:max-keys":[10,"20"]},"ForAnyValue:StringLike":{"aws:TagKeys":["a*"]}}}]}"#,
        );
        round_trip(
            r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":["arn:aws:iam::1:root","2"],"Service":"lambda.amazonaws.com"},"Action":"sts:AssumeRole"},{"Effect":"Allow","Principal":"*","Action":"s3:GetObject","Resource":"arn:aws:s3:::b/*"}]}"#,
        );
    }

    #[test]
    fn url_encoded_documents_from_iam() {
        let encoded = "%7B%22Version%22%3A%222012-10-17%22%2C%22Statement%22%3A%5B%7B%22Effect%22%3A%22Allow%22%2C%22Action%22%3A%22s3%3AGetObject%22%2C%22Resource%22%3A%22arn%3Aaws%3As3%3A%3A%3Ab%2Fa%20b%22%7D%5D%7D";
        let doc = PolicyDocument::from_iam(encoded).expect("decodes");
        assert_eq!(
            doc.statements()[0].resource,
            Some(OneOrMany::One("arn:aws:s3:::b/a b".to_owned()))
        );
        let plain = PolicyDocument::from_iam(&doc.to_pretty()).expect("plain JSON too");
        assert_eq!(plain, doc);
    }

    #[test]
    fn errors_name_the_element() {
        let cases = [
            ("{", "not JSON"),
            ("[]", "(document): a policy must be a JSON object"),
            (r#"{"Statement":[],"Foo":1}"#, "Foo: unknown element"),
            (
                r#"{"Version":"2020-01-01","Statement":[]}"#,
                "Version: `2020-01-01`",
            ),
            (r#"{"Version":"2012-10-17"}"#, "Statement: missing"),
            (
                r#"{"Statement":[{"Effect":"Allow","Action":"s3:GetObject","Resorce":"*"}]}"#,
                "Statement[0].Resorce: unknown element",
            ),
            (
                r#"{"Statement":[{"Effect":"allow","Action":"s3:GetObject","Resource":"*"}]}"#,
                "Statement[0].Effect: must be \"Allow\" or \"Deny\"",
            ),
            (
                r#"{"Statement":[{"Effect":"Allow","Resource":"*"}]}"#,
                "Statement[0]: needs Action or NotAction",
            ),
            (
                r#"{"Statement":[{"Effect":"Allow","Action":"s3GetObject","Resource":"*"}]}"#,
                "`s3GetObject` is not an action",
            ),
            (
                r#"{"Statement":[{"Effect":"Allow","Action":["s3:GetObject",3],"Resource":"*"}]}"#,
                "Statement[0].Action[1]: must be a string",
            ),
            (
                r#"{"Statement":{"Effect":"Allow","Action":"s3:GetObject","Resource":"aws:s3:::bucket"}}"#,
                "`aws:s3:::bucket` is not an ARN",
            ),
            (
                r#"{"Statement":{"Effect":"Allow","Action":"s3:GetObject","Resource":"arn::s3:::bucket"}}"#,
                "`arn::s3:::bucket` is not an ARN",
            ),
            (
                r#"{"Statement":{"Effect":"Allow","Action":"s3:GetObject","Resource":"*","Condition":{"StringEqualz":{"a":"b"}}}}"#,
                "Statement.Condition.StringEqualz: unknown condition operator",
            ),
            (
                r#"{"Statement":{"Effect":"Allow","Action":"s3:GetObject","Resource":"*","Condition":{"NullIfExists":{"a":"true"}}}}"#,
                "unknown condition operator",
            ),
            (
                r#"{"Statement":{"Effect":"Allow","Action":"s3:GetObject","Resource":"*","Condition":{"StringEquals":{"a":{"b":1}}}}}"#,
                "a condition value is a string, number or boolean",
            ),
            (
                r#"{"Statement":{"Effect":"Allow","Principal":{"User":"x"},"Action":"s3:GetObject"}}"#,
                "unknown principal type",
            ),
            // IAM refuses condition values its operator cannot read.
            (
                r#"{"Statement":{"Effect":"Allow","Action":"s3:ListBucket","Resource":"*","Condition":{"NumericLessThan":{"s3:max-keys":"1e400"}}}}"#,
                "Statement.Condition.NumericLessThan.s3:max-keys: `1e400` is not a number",
            ),
            (
                r#"{"Statement":{"Effect":"Allow","Action":"s3:ListBucket","Resource":"*","Condition":{"NumericEqualsIfExists":{"s3:max-keys":["10","ten"]}}}}"#,
                "Statement.Condition.NumericEqualsIfExists.s3:max-keys[1]: `ten` is not a number",
            ),
            (
                r#"{"Statement":{"Effect":"Allow","Action":"s3:GetObject","Resource":"*","Condition":{"IpAddress":{"aws:SourceIp":"999.1.1.1/99"}}}}"#,
                "Statement.Condition.IpAddress.aws:SourceIp: `999.1.1.1/99` is not an IP address or CIDR range",
            ),
            (
                r#"{"Statement":{"Effect":"Allow","Action":"s3:GetObject","Resource":"*","Condition":{"ForAnyValue:NotIpAddress":{"aws:SourceIp":["10.0.0.0/8",true]}}}}"#,
                "not an IP address or CIDR range",
            ),
        ];
        for (text, expected) in cases {
            let error = PolicyDocument::parse(text).expect_err(text).to_string();
            assert!(error.contains(expected), "{text}: {error}");
        }
    }

    #[test]
    fn identity_policies_name_no_principal_and_need_resources() {
        let trust = PolicyDocument::parse(
            r#"{"Statement":{"Effect":"Allow","Principal":{"Service":"lambda.amazonaws.com"},"Action":"sts:AssumeRole"}}"#,
        )
        .expect("a trust policy parses");
        assert!(trust.check_identity_policy().is_err());
        let no_resource =
            PolicyDocument::parse(r#"{"Statement":{"Effect":"Allow","Action":"s3:*"}}"#)
                .expect("parses");
        assert!(
            no_resource
                .check_identity_policy()
                .expect_err("no resource")
                .to_string()
                .contains("needs Resource")
        );
    }

    #[test]
    fn policy_kinds_check_their_principals() {
        let check = |text: &str, kind| {
            PolicyDocument::parse(text)
                .expect("parses")
                .check_kind(kind)
                .map_err(|e| e.to_string())
        };
        let bucket = r#"{"Statement":{"Effect":"Allow","Principal":{"AWS":"111122223333"},"Action":"s3:GetObject","Resource":"arn:aws:s3:::b/*"}}"#;
        assert_eq!(check(bucket, PolicyKind::Resource), Ok(()));
        assert!(
            check(bucket, PolicyKind::ServiceControl)
                .expect_err("principal")
                .contains("an SCP cannot name a Principal")
        );
        assert!(
            check(bucket, PolicyKind::ResourceControl)
                .expect_err("principal")
                .contains("can only be")
        );
        let anyone =
            r#"{"Statement":{"Effect":"Deny","Principal":"*","Action":"s3:*","Resource":"*"}}"#;
        assert_eq!(check(anyone, PolicyKind::ResourceControl), Ok(()));
        let plain = r#"{"Statement":{"Effect":"Allow","Action":"*","Resource":"*"}}"#;
        assert_eq!(check(plain, PolicyKind::ServiceControl), Ok(()));
        assert!(
            check(plain, PolicyKind::Resource)
                .expect_err("no principal")
                .contains("needs Principal")
        );
        let allow_not = r#"{"Statement":{"Effect":"Allow","NotPrincipal":{"AWS":"111122223333"},"Action":"s3:*","Resource":"*"}}"#;
        assert!(
            check(allow_not, PolicyKind::Resource)
                .expect_err("NotPrincipal allow")
                .contains("only with")
        );
    }

    #[test]
    fn incomplete_arns_are_resources() {
        round_trip(
            r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"sqs:SendMessage","Resource":["arn:aws:sqs","arn:aws:sns:us-east-1","arn:aws"]}}"#,
        );
    }

    #[test]
    fn operators_split_into_qualifier_base_and_if_exists() {
        assert_eq!(
            split_operator("ForAllValues:StringLikeIfExists"),
            Some((Some("ForAllValues"), "StringLike", true))
        );
        assert_eq!(split_operator("Null"), Some((None, "Null", false)));
        assert_eq!(split_operator("NullIfExists"), None);
        assert_eq!(split_operator("ForSomeValues:StringLike"), None);
        assert_eq!(split_operator("stringequals"), None);
    }
}

/// Property tests: any text parses or fails cleanly, and a document written back reads as
/// the same document in the same shape.
#[cfg(test)]
mod proptests {
    use proptest::prelude::*;
    use serde_json::json;

    use super::*;

    fn config(cases: u32) -> ProptestConfig {
        ProptestConfig {
            cases,
            failure_persistence: None,
            ..ProptestConfig::default()
        }
    }

    /// Any JSON value, with the policy language's words among its keys and strings so that
    /// the parser gets past its first checks.
    fn any_json() -> impl Strategy<Value = Value> {
        let word = prop::sample::select(vec![
            "Version",
            "Id",
            "Statement",
            "Sid",
            "Effect",
            "Allow",
            "Deny",
            "Action",
            "NotAction",
            "Resource",
            "NotResource",
            "Principal",
            "NotPrincipal",
            "Condition",
            "AWS",
            "Service",
            "StringEquals",
            "ForAnyValue:StringLike",
            "NumericLessThan",
            "IpAddress",
            "BoolIfExists",
            "NullIfExists",
            "2012-10-17",
            "2008-10-17",
            "*",
            "s3:GetObject",
            "s3:",
            ":x",
            "arn:aws:s3:::b/*",
            "arn:aws",
            "10.0.0.0/8",
            "1e400",
            "${aws:username}",
            "",
        ])
        .prop_map(str::to_owned);
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(|n| json!(n)),
            any::<f64>().prop_map(|f| json!(f)),
            word.clone().prop_map(Value::String),
            ".{0,12}".prop_map(Value::String),
        ];
        leaf.prop_recursive(5, 48, 6, move |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
                prop::collection::vec((word.clone(), inner), 0..6)
                    .prop_map(|entries| Value::Object(entries.into_iter().collect())),
            ]
        })
    }

    fn one_or_many<S: Strategy<Value = String> + Clone>(item: S) -> impl Strategy<Value = Value> {
        prop_oneof![
            item.clone().prop_map(Value::String),
            prop::collection::vec(item, 1..4)
                .prop_map(|items| Value::Array(items.into_iter().map(Value::String).collect())),
        ]
    }

    /// A valid identity-policy document, as a JSON value.
    fn valid_document() -> impl Strategy<Value = Value> {
        let action = prop_oneof![
            Just("*".to_owned()),
            ("[a-z][a-z0-9-]{0,10}", "[A-Za-z*?]{1,16}").prop_map(|(s, n)| format!("{s}:{n}")),
        ];
        let resource = prop_oneof![
            Just("*".to_owned()),
            (
                "[a-z0-9-]{1,8}",
                "[a-z0-9-]{1,8}",
                "[a-z0-9-]{0,9}",
                "[0-9]{0,12}",
                "[a-zA-Z0-9/*:_-]{0,20}"
            )
                .prop_map(|(p, s, r, a, rest)| format!("arn:{p}:{s}:{r}:{a}:{rest}")),
        ];
        let condition_value = prop_oneof![
            "[a-zA-Z0-9:/*${}]{0,12}".prop_map(Value::String),
            any::<bool>().prop_map(Value::Bool),
        ];
        let numeric = prop_oneof![
            any::<i32>().prop_map(|n| json!(n)),
            any::<i32>().prop_map(|n| json!(n.to_string())),
        ];
        let condition = prop::collection::btree_map(
            prop::sample::select(vec![
                "StringEquals",
                "StringLike",
                "ForAnyValue:StringLike",
                "ForAllValues:StringEqualsIfExists",
                "ArnLike",
                "Bool",
                "Null",
            ]),
            prop::collection::btree_map(
                "[a-z]{1,6}:[A-Za-z]{1,10}",
                prop_oneof![
                    condition_value.clone(),
                    prop::collection::vec(condition_value, 1..3).prop_map(Value::Array),
                ],
                1..3,
            ),
            0..3,
        );
        let numeric_condition =
            prop::option::of(prop::collection::vec(numeric, 1..3).prop_map(Value::Array));
        let statement = (
            prop::option::of("[A-Za-z0-9]{1,10}"),
            any::<bool>(),
            any::<bool>(),
            one_or_many(action),
            prop::option::of((any::<bool>(), one_or_many(resource))),
            condition,
            numeric_condition,
        )
            .prop_map(
                |(sid, allow, not_action, actions, resources, condition, numeric)| {
                    let mut s = serde_json::Map::new();
                    if let Some(sid) = sid {
                        s.insert("Sid".into(), json!(sid));
                    }
                    s.insert("Effect".into(), json!(if allow { "Allow" } else { "Deny" }));
                    s.insert(
                        if not_action { "NotAction" } else { "Action" }.into(),
                        actions,
                    );
                    if let Some((not_resource, resources)) = resources {
                        s.insert(
                            if not_resource {
                                "NotResource"
                            } else {
                                "Resource"
                            }
                            .into(),
                            resources,
                        );
                    }
                    let mut block: serde_json::Map<String, Value> = condition
                        .into_iter()
                        .map(|(op, keys)| (op.to_owned(), json!(keys)))
                        .collect();
                    if let Some(values) = numeric {
                        block.insert("NumericLessThan".into(), json!({ "s3:max-keys": values }));
                    }
                    if !block.is_empty() {
                        s.insert("Condition".into(), Value::Object(block));
                    }
                    Value::Object(s)
                },
            )
            .boxed();
        (
            prop::option::of(prop::sample::select(vec![VERSION_2012, "2008-10-17"])),
            prop::option::of("[a-z0-9-]{1,10}"),
            prop_oneof![
                statement.clone(),
                prop::collection::vec(statement, 0..4).prop_map(Value::Array),
            ],
        )
            .prop_map(|(version, id, statement)| {
                let mut doc = serde_json::Map::new();
                if let Some(v) = version {
                    doc.insert("Version".into(), json!(v));
                }
                if let Some(id) = id {
                    doc.insert("Id".into(), json!(id));
                }
                doc.insert("Statement".into(), statement);
                Value::Object(doc)
            })
    }

    /// Parsed again from its own text, a document is the same document.
    fn assert_round_trips(doc: &PolicyDocument) -> Result<(), TestCaseError> {
        let compact = PolicyDocument::parse(&doc.to_compact());
        prop_assert_eq!(compact.as_ref(), Ok(doc));
        let pretty = PolicyDocument::parse(&doc.to_pretty());
        prop_assert_eq!(pretty.as_ref(), Ok(doc));
        prop_assert_eq!(
            &PolicyDocument::from_value(&doc.to_value()),
            &Ok(doc.clone())
        );
        Ok(())
    }

    proptest! {
        #![proptest_config(config(512))]

        #[test]
        fn any_text_parses_or_fails_cleanly(text in ".{0,200}") {
            let _ = PolicyDocument::parse(&text);
            let _ = PolicyDocument::from_iam(&text);
        }

        #[test]
        fn json_ish_text_parses_or_fails_cleanly(
            parts in prop::collection::vec(
                prop::sample::select(vec![
                    "{", "}", "[", "]", ",", ":", "\"", "\\", "\"Statement\"", "\"Effect\"",
                    "\"Allow\"", "\"Action\"", "\"s3:Get*\"", "\"Resource\"", "\"*\"",
                    "\"Condition\"", "\"NumericEquals\"", "1e999", "-0", "null", "%7B", "%22",
                    "%", " ",
                ]),
                0..60,
            ),
        ) {
            let text = parts.concat();
            let _ = PolicyDocument::parse(&text);
            let _ = PolicyDocument::from_iam(&text);
        }

        #[test]
        fn any_json_value_parses_or_fails_cleanly_and_what_parses_round_trips(value in any_json()) {
            if let Ok(doc) = PolicyDocument::from_value(&value) {
                assert_round_trips(&doc)?;
                let _ = doc.check_identity_policy();
            }
            let _ = PolicyDocument::parse(&value.to_string());
        }
    }

    proptest! {
        #![proptest_config(config(256))]

        #[test]
        fn valid_documents_round_trip_in_their_shape(value in valid_document()) {
            let text = value.to_string();
            let doc = PolicyDocument::parse(&text);
            prop_assert!(doc.is_ok(), "{} does not parse: {:?}", text, doc);
            let doc = doc.unwrap_or_else(|_| unreachable!());
            // Written back in the shape it was written in: one string stays a string.
            prop_assert_eq!(doc.to_value(), value);
            assert_round_trips(&doc)?;
            // And as IAM returns it, URL-encoded.
            let encoded = percent_encoding::utf8_percent_encode(
                &doc.to_compact(),
                percent_encoding::NON_ALPHANUMERIC,
            )
            .to_string();
            prop_assert_eq!(PolicyDocument::from_iam(&encoded), Ok(doc));
        }
    }
}
