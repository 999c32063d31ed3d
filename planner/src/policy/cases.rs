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
