//! The data-driven evaluator tests: `testdata/conditions.txt` (one operator, one key) and
//! `testdata/evaluation.toml` (whole policies), both written from IAM's documentation.

use serde::Deserialize;

use super::document::{ConditionValue, PolicyDocument};
use super::eval::{Context, NamedPolicy, Request, Truth, condition_entry, evaluate};

const CONDITIONS: &str = include_str!("testdata/conditions.txt");
const EVALUATION: &str = include_str!("testdata/evaluation.toml");

#[test]
fn condition_operator_cases() {
    let mut failures = Vec::new();
    let mut count = 0;
    for (index, line) in CONDITIONS.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let fields: Vec<&str> = line.split(" | ").map(str::trim).collect();
        let [operator, key, values, context_values, expected] = fields.as_slice() else {
            panic!("conditions.txt:{}: expected 5 fields: {line}", index + 1);
        };
        let values: serde_json::Value = serde_json::from_str(values)
            .unwrap_or_else(|e| panic!("conditions.txt:{}: values: {e}", index + 1));
        let values: Vec<ConditionValue> = match values {
            serde_json::Value::Array(items) => items.into_iter().map(ConditionValue).collect(),
            one => vec![ConditionValue(one)],
        };
        let mut context = if *context_values == "?" {
            Context::partial()
        } else {
            Context::complete()
        };
        context.insert("aws:username", "alice");
        context.insert("aws:PrincipalTag/team", "blue");
        if !matches!(*context_values, "-" | "?") {
            let list: Vec<String> = serde_json::from_str(context_values)
                .unwrap_or_else(|e| panic!("conditions.txt:{}: context: {e}", index + 1));
            if list.is_empty() {
                context.set_empty(key);
            }
            for value in list {
                context.insert(key, &value);
            }
        }
        let expected = match *expected {
            "true" => Truth::True,
            "false" => Truth::False,
            "unknown" => Truth::Unknown,
            other => panic!("conditions.txt:{}: expected `{other}`", index + 1),
        };
        let got = condition_entry(operator, key, &values, &context, true);
        count += 1;
        if got != expected {
            failures.push(format!(
                "conditions.txt:{}: {line}\n    got {got:?}",
                index + 1
            ));
        }
    }
    assert!(count >= 200, "only {count} condition cases");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Cases {
    scenario: Vec<Scenario>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Scenario {
    name: String,
    identity: Vec<String>,
    #[serde(default)]
    boundary: Vec<String>,
    #[serde(default)]
    context: std::collections::BTreeMap<String, Vec<String>>,
    #[serde(default)]
    principal: Option<String>,
    #[serde(default)]
    partial: bool,
    checks: Vec<[String; 3]>,
}

#[test]
fn evaluation_scenarios() {
    let cases: Cases = toml::from_str(EVALUATION).expect("evaluation.toml parses");
    let mut failures = Vec::new();
    let mut count = 0;
    for scenario in &cases.scenario {
        let parse = |texts: &[String]| -> Vec<PolicyDocument> {
            texts
                .iter()
                .map(|t| {
                    PolicyDocument::parse(t)
                        .unwrap_or_else(|e| panic!("{}: policy: {e}", scenario.name))
                })
                .collect()
        };
        let identity = parse(&scenario.identity);
        let boundary = parse(&scenario.boundary);
        let names: Vec<String> = (0..identity.len().max(boundary.len()))
            .map(|i| format!("policy{i}"))
            .collect();
        let identity: Vec<NamedPolicy<'_>> = identity
            .iter()
            .zip(&names)
            .map(|(document, name)| NamedPolicy { name, document })
            .collect();
        let boundary: Vec<NamedPolicy<'_>> = boundary
            .iter()
            .zip(&names)
            .map(|(document, name)| NamedPolicy { name, document })
            .collect();
        let mut context = if scenario.partial {
            Context::partial()
        } else {
            Context::complete()
        };
        for (key, values) in &scenario.context {
            for value in values {
                context.insert(key, value);
            }
        }
        if let Some(principal) = &scenario.principal {
            context = context.with_principal(principal);
        }
        for [action, resource, expected] in &scenario.checks {
            count += 1;
            let evaluation = evaluate(
                &identity,
                &boundary,
                &Request {
                    action,
                    resource,
                    principal: scenario.principal.as_deref(),
                    context: &context,
                },
            );
            if evaluation.decision.to_string() != *expected {
                failures.push(format!(
                    "{}: {action} on {resource}: expected {expected}, got {} ({})",
                    scenario.name, evaluation.decision, evaluation.reason
                ));
            }
        }
    }
    assert!(count >= 120, "only {count} evaluation checks");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Today's identity-and-boundary scenarios give the same decisions through the full
/// evaluator when the resource's side is left out (except those that put a resource policy
/// among the identity policies, which the full evaluator refuses to mix up).
#[test]
fn the_full_evaluator_agrees_on_identity_and_boundary_scenarios() {
    use super::layers::{AccessRequest, Policies, ResourcePolicies, decide};
    use super::principal::Caller;

    let cases: Cases = toml::from_str(EVALUATION).expect("evaluation.toml parses");
    let mut compared = 0;
    let mut failures = Vec::new();
    for scenario in &cases.scenario {
        let parse = |texts: &[String]| -> Vec<PolicyDocument> {
            texts
                .iter()
                .map(|t| PolicyDocument::parse(t).expect("parses"))
                .collect()
        };
        let identity = parse(&scenario.identity);
        if identity.iter().any(|d| d.check_identity_policy().is_err()) {
            continue;
        }
        let boundary = parse(&scenario.boundary);
        let name = |i: usize| format!("policy{i}");
        let names: Vec<String> = (0..identity.len().max(boundary.len())).map(name).collect();
        fn named<'a>(docs: &'a [PolicyDocument], names: &'a [String]) -> Vec<NamedPolicy<'a>> {
            docs.iter()
                .zip(names)
                .map(|(document, name)| NamedPolicy { name, document })
                .collect()
        }
        let mut context = if scenario.partial {
            Context::partial()
        } else {
            Context::complete()
        };
        for (key, values) in &scenario.context {
            for value in values {
                context.insert(key, value);
            }
        }
        let caller = Caller::parse_optional(scenario.principal.as_deref()).expect("principal");
        if let Some(principal) = &scenario.principal {
            context = context.with_principal(principal);
        }
        let old_identity = named(&identity, &names);
        let old_boundary = named(&boundary, &names);
        let policies = Policies {
            identity: named(&identity, &names),
            boundary: named(&boundary, &names),
            resource: ResourcePolicies::NotConsidered,
            ..Policies::default()
        };
        for [action, resource, _] in &scenario.checks {
            compared += 1;
            let old = evaluate(
                &old_identity,
                &old_boundary,
                &Request {
                    action,
                    resource,
                    principal: scenario.principal.as_deref(),
                    context: &context,
                },
            );
            let new = decide(
                &policies,
                &AccessRequest {
                    action,
                    resource,
                    caller: &caller,
                    resource_account: None,
                    context: &context,
                },
            );
            if old.decision != new.decision {
                failures.push(format!(
                    "{}: {action} on {resource}: {} before, {} now ({})",
                    scenario.name, old.decision, new.decision, new.reason
                ));
            }
        }
    }
    assert!(compared >= 100, "only {compared} compared");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn the_deciding_statement_is_named() {
    let document = PolicyDocument::parse(
        r#"{"Version":"2012-10-17","Statement":[{"Sid":"Read","Effect":"Allow","Action":"s3:Get*","Resource":"*"},{"Sid":"Guard","Effect":"Deny","Action":"s3:GetObject","Resource":"arn:aws:s3:::secret/*"}]}"#,
    )
    .expect("parses");
    let policies = [NamedPolicy {
        name: "app.json",
        document: &document,
    }];
    let context = Context::complete();
    let ask = |resource: &'static str| {
        evaluate(
            &policies,
            &[],
            &Request {
                action: "s3:GetObject",
                resource,
                principal: None,
                context: &context,
            },
        )
    };
    let denied = ask("arn:aws:s3:::secret/k");
    assert_eq!(denied.deciding[0].sid.as_deref(), Some("Guard"));
    assert_eq!(denied.deciding[0].index, 1);
    assert_eq!(
        denied.reason,
        "explicitly denied by app.json statement 1 (Sid Guard)"
    );
    let allowed = ask("arn:aws:s3:::public/k");
    assert_eq!(allowed.deciding[0].sid.as_deref(), Some("Read"));
    assert_eq!(allowed.reason, "allowed by app.json statement 0 (Sid Read)");
}

/// `testdata/layers.toml`: whole requests through every layer, written from AWS's
/// evaluation-logic pages and examples; each scenario cites the page it comes from.
mod layers {
    use std::collections::BTreeMap;

    use serde::Deserialize;

    use crate::policy::document::{PolicyDocument, PolicyKind};
    use crate::policy::eval::{Context, NamedPolicy};
    use crate::policy::layers::{AccessRequest, Policies, ResourcePolicies, decide};
    use crate::policy::principal::Caller;

    const LAYERS: &str = include_str!("testdata/layers.toml");

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Cases {
        scenario: Vec<Scenario>,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Scenario {
        name: String,
        /// The AWS documentation page the scenario is written from.
        source: String,
        #[serde(default)]
        principal: Option<String>,
        #[serde(default)]
        resource_account: Option<String>,
        #[serde(default)]
        identity: Vec<String>,
        #[serde(default)]
        boundary: Vec<String>,
        #[serde(default)]
        session: Vec<String>,
        /// The resource's policies; absent, the resource has none.
        #[serde(default)]
        resource: Vec<String>,
        /// True: the resource's policies are left out (the planner's question).
        #[serde(default)]
        resource_not_considered: bool,
        /// One list of policies per level, from the organization root to the account.
        #[serde(default)]
        scp: Vec<Vec<String>>,
        #[serde(default)]
        rcp: Vec<Vec<String>>,
        #[serde(default)]
        context: BTreeMap<String, Vec<String>>,
        #[serde(default)]
        partial: bool,
        /// [action, resource, decision, deciding layer or "-"].
        checks: Vec<[String; 4]>,
    }

    fn parse(
        scenario: &str,
        what: &str,
        texts: &[String],
        kind: Option<PolicyKind>,
    ) -> Vec<PolicyDocument> {
        texts
            .iter()
            .map(|text| {
                let doc = PolicyDocument::parse(text)
                    .unwrap_or_else(|e| panic!("{scenario}: {what} policy: {e}"));
                match kind {
                    Some(kind) => doc.check_kind(kind),
                    None => doc.check_identity_policy(),
                }
                .unwrap_or_else(|e| panic!("{scenario}: {what} policy: {e}"));
                doc
            })
            .collect()
    }

    fn named<'a>(docs: &'a [PolicyDocument], names: &'a [String]) -> Vec<NamedPolicy<'a>> {
        docs.iter()
            .zip(names)
            .map(|(document, name)| NamedPolicy { name, document })
            .collect()
    }

    fn labels(prefix: &str, count: usize) -> Vec<String> {
        (0..count).map(|i| format!("{prefix}{i}")).collect()
    }

    #[test]
    fn layered_scenarios_from_the_aws_documentation() {
        let cases: Cases = toml::from_str(LAYERS).expect("layers.toml parses");
        let mut failures = Vec::new();
        let mut count = 0;
        for scenario in &cases.scenario {
            let name = scenario.name.as_str();
            assert!(
                scenario.source.starts_with("https://docs.aws.amazon.com/"),
                "{name}: the source must be an AWS documentation page"
            );
            let identity = parse(name, "identity", &scenario.identity, None);
            let boundary = parse(name, "boundary", &scenario.boundary, None);
            let session = parse(name, "session", &scenario.session, None);
            let resource = parse(
                name,
                "resource",
                &scenario.resource,
                Some(PolicyKind::Resource),
            );
            let scp: Vec<Vec<PolicyDocument>> = scenario
                .scp
                .iter()
                .map(|level| parse(name, "scp", level, Some(PolicyKind::ServiceControl)))
                .collect();
            let rcp: Vec<Vec<PolicyDocument>> = scenario
                .rcp
                .iter()
                .map(|level| parse(name, "rcp", level, Some(PolicyKind::ResourceControl)))
                .collect();
            let identity_names = labels("identity", identity.len());
            let boundary_names = labels("boundary", boundary.len());
            let session_names = labels("session", session.len());
            let resource_names = labels("resource", resource.len());
            let scp_names: Vec<Vec<String>> = scp
                .iter()
                .enumerate()
                .map(|(level, docs)| labels(&format!("scp{level}."), docs.len()))
                .collect();
            let rcp_names: Vec<Vec<String>> = rcp
                .iter()
                .enumerate()
                .map(|(level, docs)| labels(&format!("rcp{level}."), docs.len()))
                .collect();
            let policies = Policies {
                identity: named(&identity, &identity_names),
                boundary: named(&boundary, &boundary_names),
                session: named(&session, &session_names),
                resource: if scenario.resource_not_considered {
                    ResourcePolicies::NotConsidered
                } else {
                    ResourcePolicies::Known(named(&resource, &resource_names))
                },
                scp: scp
                    .iter()
                    .zip(&scp_names)
                    .map(|(docs, names)| named(docs, names))
                    .collect(),
                rcp: rcp
                    .iter()
                    .zip(&rcp_names)
                    .map(|(docs, names)| named(docs, names))
                    .collect(),
            };
            let caller = Caller::parse_optional(scenario.principal.as_deref())
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            for [action, resource, expected, layer] in &scenario.checks {
                count += 1;
                let mut context = if scenario.partial {
                    Context::partial()
                } else {
                    Context::complete()
                };
                for (key, values) in &scenario.context {
                    for value in values {
                        context.insert(key, value);
                    }
                }
                context = context.with_caller(&caller);
                let resource_account = crate::policy::rules::resource_account(resource)
                    .or(scenario.resource_account.as_deref());
                if let Some(account) = resource_account.or(caller.account()) {
                    context = context.with_resource_account(account);
                }
                let evaluation = decide(
                    &policies,
                    &AccessRequest {
                        action,
                        resource,
                        caller: &caller,
                        resource_account: scenario.resource_account.as_deref(),
                        context: &context,
                    },
                );
                let got_layer = evaluation
                    .layer
                    .map_or_else(|| "-".to_owned(), |l| l.to_string());
                if evaluation.decision.to_string() != *expected || got_layer != *layer {
                    failures.push(format!(
                        "{name}: {action} on {resource}: expected {expected} ({layer}), got {} ({got_layer}): {}",
                        evaluation.decision, evaluation.reason
                    ));
                }
                // Every decision names what decided it: a statement, or AWS's own rule.
                let named = !evaluation.deciding.is_empty()
                    || !evaluation.undecided.is_empty()
                    || evaluation.decision.to_string() == "ImplicitlyDenied"
                    || got_layer == "aws"
                    || evaluation.reason.contains("root user");
                if !named {
                    failures.push(format!(
                        "{name}: {action} on {resource}: no deciding statement named"
                    ));
                }
            }
        }
        assert!(count >= 300, "only {count} layered checks");
        assert!(
            failures.is_empty(),
            "{} failures:\n{}",
            failures.len(),
            failures.join("\n")
        );
    }
}
