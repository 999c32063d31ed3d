//! An organization's roles in the emulator: the accounts test (`it::accounts`) and the
//! planning-memory bench (`benches/plan_memory.rs`) seed the same roles, at 2,000 and 10,000.

use serde_json::{Value, json};

use crate::Emulator;

/// A small AWS-managed policy (the emulator's seed loads it into each account).
pub const AWS_MANAGED: &str = "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole";

/// A policy allowing `actions` on every resource.
pub fn allow(actions: &[&str]) -> String {
    json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": actions, "Resource": "*"}]})
        .to_string()
}

/// The actions role `i`'s inline policy allows (four kinds, in turn).
pub fn inline_actions(i: usize) -> &'static [&'static str] {
    match i % 4 {
        0 => &["dynamodb:GetItem", "dynamodb:Query", "dynamodb:DeleteTable"],
        1 => &["sqs:SendMessage", "sqs:ReceiveMessage", "sqs:DeleteQueue"],
        2 => &["sns:Publish", "kms:Decrypt"],
        _ => &["ssm:GetParameter", "secretsmanager:GetSecretValue"],
    }
}

/// The name of target role `i` (`arn:aws:iam::ID:role/NAME` in each seeded account).
pub fn role_name(i: usize) -> String {
    format!("scale-app-{i:04}")
}

/// Seeds `roles` target roles (and one that is not a target) in each account (ids) in one
/// request each: an inline policy per role, two shared customer-managed policies, an
/// AWS-managed one on every other role, and a boundary on every tenth role. Panics when the
/// emulator does not take them.
pub fn seed(emulator: &Emulator, account_ids: &[&str], roles: usize) {
    for id in account_ids {
        let policy = |name: &str| format!("arn:aws:iam::{id}:policy/{name}");
        let mut seeded: Vec<Value> = (0..roles)
            .map(|i| {
                let mut managed = vec![policy("scale-read")];
                if i % 3 == 0 {
                    managed.push(policy("scale-write"));
                }
                if i % 2 == 0 {
                    managed.push(AWS_MANAGED.to_owned());
                }
                json!({
                    "name": role_name(i),
                    "tags": {"whittle:managed": "true", "team": format!("t{}", i % 7)},
                    "inline": {"own": allow(inline_actions(i))},
                    "managed": managed,
                    "boundary": (i % 10 == 0).then(|| policy("scale-fence")),
                })
            })
            .collect();
        seeded.push(json!({"name": "scale-untagged", "inline": {"x": allow(&["s3:*"])}}));
        let answer = emulator.post_json(
            "/whittle-emulator/seed-iam",
            &json!({
                "account": id,
                "policies": [
                    {"name": "scale-read", "document": allow(&["s3:GetObject", "s3:ListBucket"])},
                    {"name": "scale-write", "document": allow(&["s3:PutObject", "s3:DeleteObject"])},
                    {"name": "scale-fence", "document": allow(&["s3:*", "dynamodb:*", "sqs:*", "sns:*", "kms:*", "ssm:*", "secretsmanager:*", "logs:*"])},
                ],
                "roles": seeded,
            }),
        );
        assert_eq!(answer["roles"], roles + 1, "{answer}");
    }
}
