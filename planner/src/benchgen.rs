//! Seeded roles of the shapes seen in real accounts, for the planning benchmark
//! (`cargo bench -p whittle-planner --bench plan`) and the plan fixtures of the report tests.
//! Not used by whittle itself.
//!
//! Three shapes, in equal numbers:
//! - [`Shape::ServiceWildcards`]: `s3:*`, `dynamodb:*`, `sqs:*` plus a Deny, 10 actions used;
//! - [`Shape::Admin`]: `Action: "*"`, 30 actions used across services;
//! - [`Shape::ReadOnlyManaged`]: an AWS-managed policy shaped like ReadOnlyAccess
//!   (`svc:Describe*`, `svc:Get*`, `svc:List*` for every service, ~1,200 patterns), 20 actions
//!   used. Every role of this shape carries the same document, as 2,000 roles attached to
//!   one AWS-managed policy do.
//!
//! [`bench_shared_role`] makes a role that several Lambda functions share, with each
//! function's own use as mining keeps it, for the split proposal's report fixtures.

use std::collections::BTreeSet;

use crate::catalog::Catalog;
use crate::plan::{Evidence, InlinePolicy, ManagedPolicy, RoleInput, RolePolicies, Settings};
use crate::trail::PrincipalKind;
use crate::usage::{ActionUsage, PrincipalUsage};

const DAY_MS: i64 = 86_400_000;

/// A role's shape: what it is granted and how much of it it uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Shape {
    ServiceWildcards,
    Admin,
    ReadOnlyManaged,
}

impl Shape {
    pub const ALL: [Shape; 3] = [
        Shape::ServiceWildcards,
        Shape::Admin,
        Shape::ReadOnlyManaged,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Shape::ServiceWildcards => "service wildcards",
            Shape::Admin => "admin",
            Shape::ReadOnlyManaged => "read-only managed",
        }
    }

    fn used(self) -> usize {
        match self {
            Shape::ServiceWildcards => 10,
            Shape::Admin => 30,
            Shape::ReadOnlyManaged => 20,
        }
    }
}

/// One generated role: its policies and what the trail showed it using.
#[derive(Debug, Clone)]
pub struct BenchRole {
    pub shape: Shape,
    pub policies: RolePolicies,
    pub usage: PrincipalUsage,
}

impl BenchRole {
    /// The role as the planner takes it: its policies, with its mined usage as the only
    /// evidence.
    pub fn input(&self) -> RoleInput<'_> {
        RoleInput {
            current: &self.policies,
            evidence: Evidence {
                usage: Some(&self.usage),
                ..Evidence::default()
            },
        }
    }
}

/// The settings generated roles are planned with where a test or bench stores them as
/// `whittle plan` would: the defaults, but a 14-day observation window (the uses fall 15 to
/// 95 days back), at `now_ms`.
pub fn bench_settings(now_ms: i64) -> Settings {
    Settings {
        lookback_days: 90,
        min_observation_days: 14,
        scope_resources: false,
        keep: Vec::new(),
        keep_unobservable: true,
        now_ms,
    }
}

/// `roles` roles (rounded down to a multiple of three), the shapes in equal numbers, in
/// shape order; the same `seed` gives the same roles. Uses fall between 15 and 95 days before
/// `now_ms`.
pub fn bench_roles(catalog: &Catalog, roles: usize, now_ms: i64, seed: u64) -> Vec<BenchRole> {
    let mut rng = seed | 1;
    let mut next = move || {
        // xorshift64*: seeded, reproducible.
        rng ^= rng >> 12;
        rng ^= rng << 25;
        rng ^= rng >> 27;
        rng.wrapping_mul(0x2545_F491_4F6C_DD1D)
    };
    let all: Vec<&str> = catalog.actions().iter().map(|a| a.name.as_str()).collect();
    let services: BTreeSet<&str> = all.iter().filter_map(|a| a.split(':').next()).collect();
    let read_only = serde_json::json!({"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Resource": "*",
        "Action": services.iter().flat_map(|s| ["Describe*", "Get*", "List*"].map(|v| format!("{s}:{v}"))).collect::<Vec<_>>(),
    }]})
    .to_string();
    let mut out = Vec::with_capacity(roles);
    for shape in Shape::ALL {
        let (document, pool): (&str, Vec<&str>) = match shape {
            Shape::ServiceWildcards => (
                r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["s3:*","dynamodb:*","sqs:*"],"Resource":"*"},{"Effect":"Deny","Action":"s3:DeleteBucket","Resource":"*"}]}"#,
                all.iter()
                    .copied()
                    .filter(|a| {
                        a.starts_with("s3:") || a.starts_with("dynamodb:") || a.starts_with("sqs:")
                    })
                    .collect(),
            ),
            Shape::Admin => (
                r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"*","Resource":"*"}]}"#,
                all.clone(),
            ),
            Shape::ReadOnlyManaged => (
                &read_only,
                all.iter()
                    .copied()
                    .filter(|a| {
                        let name = a.split(':').nth(1).unwrap_or_default();
                        name.starts_with("Describe")
                            || name.starts_with("Get")
                            || name.starts_with("List")
                    })
                    .collect(),
            ),
        };
        let shared: std::sync::Arc<str> = document.into();
        for i in 0..roles / Shape::ALL.len() {
            let arn = format!("arn:aws:iam::123456789012:role/bench-{}-{i}", shape.label())
                .replace(' ', "-");
            let mut usage = PrincipalUsage::new(PrincipalKind::Role);
            for _ in 0..shape.used() {
                let action = pool[(next() % pool.len() as u64) as usize];
                let t = now_ms - ((next() % 80) as i64 + 15) * DAY_MS;
                let mut u = ActionUsage::default();
                u.counts.add(t, t, 1 + next() % 100);
                u.sample_event_id = Some(format!("{:016x}", next()));
                usage.actions.insert(action.to_owned(), u);
            }
            let managed = shape == Shape::ReadOnlyManaged;
            let policies = RolePolicies {
                role_name: arn.rsplit('/').next().unwrap_or_default().to_owned(),
                role_arn: arn,
                inline: if managed {
                    Vec::new()
                } else {
                    // Each role's inline policy is its own text, as IAM returns it per role.
                    vec![InlinePolicy {
                        name: "app".to_owned(),
                        document: document.into(),
                    }]
                },
                managed: if managed {
                    vec![ManagedPolicy {
                        arn: "arn:aws:iam::aws:policy/ReadOnlyAccess".to_owned(),
                        name: "ReadOnlyAccess".to_owned(),
                        aws_managed: true,
                        version: "v1".to_owned(),
                        // One text for every role, as an account snapshot holds a managed
                        // policy once.
                        document: shared.clone(),
                    }]
                } else {
                    Vec::new()
                },
                boundary: None,
            };
            out.push(BenchRole {
                shape,
                policies,
                usage,
            });
        }
    }
    out
}

/// A role that several Lambda functions share, as mining keeps it: what each function's
/// session used (`by_session`), and an EC2 instance's calls pooled as another session's.
#[derive(Debug, Clone)]
pub struct BenchSharedRole {
    pub policies: RolePolicies,
    pub usage: PrincipalUsage,
    /// The functions, `(name, ARN)`, as discovery lists them with the role.
    pub functions: Vec<(String, String)>,
}

/// The role `role_name` of account 123456789012 shared by `functions` (function names) and
/// an EC2 instance: it is granted `s3:*`, `dynamodb:*` and `sqs:*` (and a Deny), each function
/// uses two to four of a dozen of those actions, the instance `sqs:ReceiveMessage`; uses fall
/// between 15 and 60 days before `now_ms`. The same `seed` gives the same role.
pub fn bench_shared_role(
    role_name: &str,
    functions: &[&str],
    now_ms: i64,
    seed: u64,
) -> BenchSharedRole {
    const POOL: [&str; 12] = [
        "s3:GetObject",
        "s3:PutObject",
        "s3:ListBucket",
        "s3:DeleteObject",
        "dynamodb:GetItem",
        "dynamodb:PutItem",
        "dynamodb:Query",
        "dynamodb:UpdateItem",
        "dynamodb:DeleteItem",
        "sqs:SendMessage",
        "sqs:DeleteMessage",
        "sqs:GetQueueAttributes",
    ];
    let mut rng = seed | 1;
    let mut next = move || {
        rng ^= rng >> 12;
        rng ^= rng << 25;
        rng ^= rng >> 27;
        rng.wrapping_mul(0x2545_F491_4F6C_DD1D)
    };
    let used = |next: &mut dyn FnMut() -> u64, action: &str| {
        let t = now_ms - ((next() % 45) as i64 + 15) * DAY_MS;
        let mut u = ActionUsage::default();
        u.counts.add(t - 10 * DAY_MS, t, 1 + next() % 500);
        u.sample_event_id = Some(format!("{:016x}", next()));
        (action.to_owned(), u)
    };
    let mut usage = PrincipalUsage::new(PrincipalKind::Role);
    let mut listed = Vec::with_capacity(functions.len());
    for name in functions {
        let count = 2 + (next() % 3) as usize;
        let mut session = std::collections::BTreeMap::new();
        while session.len() < count {
            let pick = POOL[(next() % POOL.len() as u64) as usize];
            let (action, u) = used(&mut next, pick);
            session.insert(action, u);
        }
        let mut one = PrincipalUsage::new(PrincipalKind::Role);
        one.actions = session.clone();
        usage.merge(&one);
        usage.by_session.insert((*name).to_owned(), session);
        usage
            .sessions
            .insert((*name).to_owned(), now_ms - 15 * DAY_MS);
        listed.push((
            (*name).to_owned(),
            format!("arn:aws:lambda:us-east-1:123456789012:function:{name}"),
        ));
    }
    let instance = "i-0123456789abcdef0";
    let (action, u) = used(&mut next, "sqs:ReceiveMessage");
    let mut one = PrincipalUsage::new(PrincipalKind::Role);
    one.actions.insert(action.clone(), u.clone());
    usage.merge(&one);
    usage.other_sessions.insert(action, u);
    usage
        .sessions
        .insert(instance.to_owned(), now_ms - 15 * DAY_MS);
    BenchSharedRole {
        policies: RolePolicies {
            role_arn: format!("arn:aws:iam::123456789012:role/{role_name}"),
            role_name: role_name.to_owned(),
            inline: vec![InlinePolicy {
                name: "service".to_owned(),
                document: r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["s3:*","dynamodb:*","sqs:*"],"Resource":"*"},{"Effect":"Deny","Action":"dynamodb:DeleteTable","Resource":"*"}]}"#.into(),
            }],
            managed: Vec::new(),
            boundary: None,
        },
        usage,
        functions: listed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_roles_in_equal_numbers_per_shape() {
        let catalog = Catalog::embedded();
        let a = bench_roles(catalog, 30, 0, 7);
        let b = bench_roles(catalog, 30, 0, 7);
        assert_eq!(a.len(), 30);
        for shape in Shape::ALL {
            assert_eq!(a.iter().filter(|r| r.shape == shape).count(), 10);
        }
        let used = |roles: &[BenchRole]| -> Vec<Vec<String>> {
            roles
                .iter()
                .map(|r| r.usage.actions.keys().cloned().collect())
                .collect()
        };
        assert_eq!(used(&a), used(&b));
        assert_ne!(used(&a), used(&bench_roles(catalog, 30, 0, 8)));
    }

    #[test]
    fn a_shared_roles_functions_each_have_their_own_use_and_the_same_seed_gives_the_same() {
        let a = bench_shared_role("svc", &["svc-a", "svc-b", "svc-c"], 0, 7);
        assert_eq!(a.functions.len(), 3);
        assert_eq!(a.usage.by_session.len(), 3);
        assert!(
            a.usage
                .by_session
                .values()
                .all(|s| (2..=4).contains(&s.len()))
        );
        assert_eq!(
            a.usage.other_sessions.keys().collect::<Vec<_>>(),
            ["sqs:ReceiveMessage"]
        );
        let b = bench_shared_role("svc", &["svc-a", "svc-b", "svc-c"], 0, 7);
        assert_eq!(a.usage, b.usage);
    }
}
