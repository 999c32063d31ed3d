use super::*;
use crate::policy::named;
use crate::trail::PrincipalKind;
use crate::usage::ActionUsage;

pub(super) const NOW: i64 = 1_795_000_000_000; // 2026-11-18
const ROLE: &str = "arn:aws:iam::123456789012:role/app-orders";

/// The defaults with a 14-day observation window, at NOW.
pub(super) fn settings() -> Settings {
    crate::benchgen::bench_settings(NOW)
}

/// Usage with each action used `days_ago` days before NOW on the given resources.
pub(super) fn usage(actions: &[(&str, i64, &[&str])]) -> PrincipalUsage {
    let mut usage = PrincipalUsage::new(PrincipalKind::Role);
    for (action, days_ago, resources) in actions {
        let t = NOW - days_ago * DAY_MS;
        let mut u = ActionUsage::default();
        u.counts.add(t, t, 3);
        for r in *resources {
            u.resources.insert((*r).to_owned(), t);
        }
        u.sample_event_id = Some(format!("evt-{action}"));
        usage.actions.insert((*action).to_owned(), u);
    }
    usage
}

fn role(inline: &[(&str, &str)], managed: &[(&str, bool, &str)]) -> RolePolicies {
    RolePolicies {
        role_arn: ROLE.to_owned(),
        role_name: "app-orders".to_owned(),
        inline: inline
            .iter()
            .map(|(name, doc)| InlinePolicy {
                name: (*name).to_owned(),
                document: (*doc).into(),
            })
            .collect(),
        managed: managed
            .iter()
            .map(|(arn, aws, doc)| ManagedPolicy {
                arn: (*arn).to_owned(),
                name: arn.rsplit('/').next().unwrap_or_default().to_owned(),
                aws_managed: *aws,
                version: "v1".to_owned(),
                document: (*doc).into(),
            })
            .collect(),
        boundary: None,
    }
}

fn plan_for(current: &RolePolicies, usage: &PrincipalUsage, settings: &Settings) -> RolePlan {
    propose(
        current,
        &Evidence {
            usage: Some(usage),
            ..Evidence::default()
        },
        settings,
        Catalog::embedded(),
    )
}

fn decide(plan: &RolePlan, action: &str, resource: &str) -> Decision {
    let docs = plan.proposed_documents().expect("documents parse");
    let context = Context::partial();
    evaluate(
        &named(&docs),
        &[],
        &Request {
            action,
            resource,
            principal: None,
            context: &context,
        },
    )
    .decision
}

const BROAD: &str = r#"{"Version":"2012-10-17","Statement":[
  {"Effect":"Allow","Action":["s3:*","sqs:*"],"Resource":"*"},
  {"Effect":"Allow","Action":"dynamodb:*","Resource":"arn:aws:dynamodb:us-east-1:123456789012:table/orders",
   "Condition":{"StringEquals":{"aws:RequestedRegion":"us-east-1"}}},
  {"Sid":"Guard","Effect":"Deny","Action":"s3:DeleteBucket","Resource":"*"}]}"#;

#[test]
fn keeps_exactly_the_used_actions_and_every_deny_and_condition() {
    let current = role(&[("app", BROAD)], &[]);
    let used = usage(&[
        ("s3:GetObject", 3, &["arn:aws:s3:::orders/a.json"]),
        ("s3:PutObject", 20, &["arn:aws:s3:::orders/b.json"]),
        (
            "dynamodb:GetItem",
            1,
            &["arn:aws:dynamodb:us-east-1:123456789012:table/orders"],
        ),
        ("sqs:SendMessage", 200, &[]), // outside the 90-day look-back
    ]);
    let plan = plan_for(&current, &used, &settings());
    assert_eq!(plan.status, RoleStatus::Changes, "{:?}", plan.error);
    assert_eq!(plan.proposal.put_inline.len(), 1);
    let doc = &plan.proposal.put_inline[0].document;
    let expected: serde_json::Value = serde_json::from_str(
        r#"{"Version":"2012-10-17","Statement":[
          {"Effect":"Allow","Action":["s3:GetObject","s3:PutObject"],"Resource":"*"},
          {"Effect":"Allow","Action":"dynamodb:GetItem","Resource":"arn:aws:dynamodb:us-east-1:123456789012:table/orders",
           "Condition":{"StringEquals":{"aws:RequestedRegion":"us-east-1"}}},
          {"Sid":"Guard","Effect":"Deny","Action":"s3:DeleteBucket","Resource":"*"}]}"#,
    )
    .expect("json");
    assert_eq!(doc.to_value(), expected, "{}", doc.to_pretty());
    let kept: Vec<&str> = plan.kept.iter().map(|k| k.action.as_str()).collect();
    assert_eq!(kept, ["dynamodb:GetItem", "s3:GetObject", "s3:PutObject"]);
    let get = &plan.kept[1];
    assert_eq!(get.count, Some(3));
    assert_eq!(get.sample_event_id.as_deref(), Some("evt-s3:GetObject"));
    // Whole services that go are one entry each; evidence says why.
    let sqs = plan
        .removed
        .iter()
        .find(|r| r.action == "sqs:*")
        .expect("sqs:* removed as a whole");
    assert!(sqs.actions > 10);
    assert!(sqs.evidence.starts_with("not seen in 90 days of trail"));
    assert!(plan.risks.iter().any(|r| r.contains("Write action")));
    assert!(
        plan.risks
            .iter()
            .any(|r| r.contains("Permissions management action")),
        "{:?}",
        plan.risks
    );
    assert!(plan.risks.iter().any(|r| r.contains("wildcard `s3:*`")));
    assert_eq!(
        decide(&plan, "sqs:SendMessage", "*"),
        Decision::ImplicitlyDenied
    );
    assert_eq!(
        decide(&plan, "s3:GetObject", "arn:aws:s3:::orders/a.json"),
        Decision::Allowed
    );
}

#[test]
fn the_same_inputs_give_the_same_plan() {
    let current = role(&[("app", BROAD)], &[]);
    let used = usage(&[("s3:PutObject", 2, &[]), ("s3:GetObject", 3, &[])]);
    let a = serde_json::to_string(&plan_for(&current, &used, &settings())).expect("json");
    let b = serde_json::to_string(&plan_for(&current, &used, &settings())).expect("json");
    assert_eq!(a, b);
}

#[test]
fn aws_managed_policies_become_a_smaller_inline_policy() {
    let read_only = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["s3:Get*","s3:List*","ec2:Describe*"],"Resource":"*"}]}"#;
    let current = role(
        &[],
        &[(
            "arn:aws:iam::aws:policy/AmazonS3ReadOnlyAccess",
            true,
            read_only,
        )],
    );
    let used = usage(&[("s3:GetObject", 1, &[]), ("s3:ListBucket", 30, &[])]);
    let plan = plan_for(&current, &used, &settings());
    assert_eq!(plan.status, RoleStatus::Changes);
    assert_eq!(
        plan.proposal.detach,
        ["arn:aws:iam::aws:policy/AmazonS3ReadOnlyAccess"]
    );
    assert_eq!(
        plan.proposal.put_inline[0].name,
        "whittle-AmazonS3ReadOnlyAccess"
    );
    assert_eq!(
        plan.proposal.put_inline[0].document.statements()[0].action,
        Some(OneOrMany::Many(vec![
            "s3:GetObject".to_owned(),
            "s3:ListBucket".to_owned()
        ]))
    );
}

#[test]
fn a_fully_used_policy_is_left_alone() {
    let exact = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["s3:GetObject","s3:PutObject"],"Resource":"*"}]}"#;
    let current = role(&[("app", exact)], &[]);
    let used = usage(&[("s3:GetObject", 20, &[]), ("s3:PutObject", 2, &[])]);
    let plan = plan_for(&current, &used, &settings());
    assert_eq!(plan.status, RoleStatus::NoChange);
    assert!(plan.proposal.is_empty());
    assert!(plan.removed.is_empty());
}

#[test]
fn briefly_observed_roles_are_reported_not_shrunk() {
    let current = role(&[("app", BROAD)], &[]);
    let used = usage(&[("s3:GetObject", 3, &[])]);
    let plan = plan_for(&current, &used, &settings());
    assert_eq!(plan.status, RoleStatus::NotShrunk);
    assert_eq!(plan.observed_days, 3);
    assert!(plan.proposal.is_empty());
    assert!(!plan.removed.is_empty(), "what would go is still reported");
    assert!(
        plan.risks
            .iter()
            .any(|r| r.contains("min_observation_days"))
    );

    let unseen = propose(
        &current,
        &Evidence::default(),
        &settings(),
        Catalog::embedded(),
    );
    assert_eq!(unseen.status, RoleStatus::NotShrunk);
    assert!(
        unseen
            .risks
            .iter()
            .any(|r| r.contains("no CloudTrail usage"))
    );
}

#[test]
fn unobservable_keep_list_needed_and_last_accessed_actions_stay_with_their_reason() {
    let doc = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["iam:PassRole","kms:Decrypt","sns:Publish","sns:Subscribe","ses:SendEmail","s3:GetObject","logs:PutLogEvents"],"Resource":"*"}]}"#;
    let current = role(&[("app", doc)], &[]);
    let used = usage(&[("s3:GetObject", 30, &[])]);
    let mut settings = settings();
    settings.keep = vec!["sns:Pub*".to_owned()];
    let last_accessed = [ServiceLastAccessed {
        namespace: "ses".to_owned(),
        last_authenticated_ms: Some(NOW - 5 * DAY_MS),
        actions: vec![("ses:SendEmail".to_owned(), NOW - 5 * DAY_MS)],
    }];
    let needed = ["SNS:subscribe".to_owned()];
    let plan = propose(
        &current,
        &Evidence {
            usage: Some(&used),
            last_accessed: &last_accessed,
            needed: &needed,
            ..Evidence::default()
        },
        &settings,
        Catalog::embedded(),
    );
    let reason = |action: &str| {
        plan.kept
            .iter()
            .find(|k| k.action == action)
            .map(|k| k.reason)
    };
    assert_eq!(reason("s3:GetObject"), Some(KeepReason::Used));
    assert_eq!(reason("iam:PassRole"), Some(KeepReason::Unobservable));
    assert_eq!(reason("kms:Decrypt"), Some(KeepReason::Unobservable));
    assert_eq!(reason("logs:PutLogEvents"), Some(KeepReason::Unobservable));
    assert_eq!(reason("sns:Publish"), Some(KeepReason::KeepList));
    assert_eq!(reason("sns:Subscribe"), Some(KeepReason::Needed));
    assert_eq!(reason("ses:SendEmail"), Some(KeepReason::LastAccessed));
    assert_eq!(plan.status, RoleStatus::NoChange);

    settings.keep_unobservable = false;
    settings.keep.clear();
    let plan = plan_for(&current, &used, &settings);
    let removed: Vec<String> = plan.removed.iter().map(|r| r.action).collect();
    assert!(removed.contains(&"iam:PassRole".to_owned()), "{removed:?}");
}

#[test]
fn service_level_last_accessed_keeps_the_service_unless_the_trail_explains_it() {
    let doc = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["sqs:SendMessage","sqs:DeleteMessage","s3:GetObject","s3:PutObject"],"Resource":"*"}]}"#;
    let current = role(&[("app", doc)], &[]);
    let used = usage(&[("s3:GetObject", 30, &[])]);
    let last_accessed = [
        ServiceLastAccessed {
            namespace: "sqs".to_owned(),
            last_authenticated_ms: Some(NOW - DAY_MS),
            actions: Vec::new(),
        },
        ServiceLastAccessed {
            namespace: "s3".to_owned(),
            last_authenticated_ms: Some(NOW - DAY_MS),
            actions: Vec::new(),
        },
    ];
    let plan = propose(
        &current,
        &Evidence {
            usage: Some(&used),
            last_accessed: &last_accessed,
            ..Evidence::default()
        },
        &settings(),
        Catalog::embedded(),
    );
    let kept: Vec<&str> = plan.kept.iter().map(|k| k.action.as_str()).collect();
    assert_eq!(
        kept,
        ["s3:GetObject", "sqs:DeleteMessage", "sqs:SendMessage"]
    );
}

#[test]
fn scope_resources_narrows_star_to_observed_arns() {
    let current = role(&[("app", BROAD)], &[]);
    let used = usage(&[
        (
            "s3:GetObject",
            30,
            &["arn:aws:s3:::orders/a.json", "arn:aws:s3:::orders/b.json"],
        ),
        ("s3:ListAllMyBuckets", 30, &[]),
    ]);
    let mut settings = settings();
    settings.scope_resources = true;
    let plan = plan_for(&current, &used, &settings);
    // Statements are sorted by resource set: `*` first.
    let statements = plan.proposal.put_inline[0].document.statements().to_vec();
    assert_eq!(
        statements[1].resource,
        Some(OneOrMany::Many(vec![
            "arn:aws:s3:::orders/a.json".to_owned(),
            "arn:aws:s3:::orders/b.json".to_owned()
        ]))
    );
    // No resource seen: the action stays on `*`.
    assert_eq!(
        statements[0].action,
        Some(OneOrMany::One("s3:ListAllMyBuckets".to_owned()))
    );
    assert_eq!(statements[0].resource, Some(OneOrMany::One("*".to_owned())));
    assert_eq!(
        decide(&plan, "s3:GetObject", "arn:aws:s3:::orders/c.json"),
        Decision::ImplicitlyDenied
    );
}

/// An action used on resources of another account is kept like any used action, and says
/// which account's resource policy the use depends on; same-account and account-less ARNs
/// (S3 buckets) add nothing.
#[test]
fn cross_account_use_is_kept_with_the_resources_account() {
    let current = role(&[("app", BROAD)], &[]);
    let used = usage(&[
        ("s3:GetObject", 3, &["arn:aws:s3:::orders/a.json"]),
        (
            "sqs:SendMessage",
            3,
            &[
                "arn:aws:sqs:us-east-1:222222222222:shared-events",
                "arn:aws:sqs:us-east-1:333333333333:audit",
                &format!(
                    "arn:aws:sqs:us-east-1:{}:orders",
                    ROLE.split(':').nth(4).unwrap_or_default()
                ),
            ],
        ),
    ]);
    let plan = plan_for(&current, &used, &settings());
    let note = |action: &str| {
        plan.kept
            .iter()
            .find(|k| k.action == action)
            .map(|k| k.note.clone())
            .unwrap_or_else(|| panic!("{action} kept: {:#?}", plan.kept))
    };
    assert_eq!(
        note("sqs:SendMessage"),
        "used on resources in account 222222222222, 333333333333 (cross-account: the resource's policy allows it too)"
    );
    assert_eq!(note("s3:GetObject"), "");
}

#[test]
fn oversized_proposals_are_compacted_with_proven_wildcards() {
    let catalog = Catalog::embedded();
    let ec2: Vec<String> = catalog
        .expand("ec2:*")
        .into_iter()
        .map(|id| catalog.action(id).name.clone())
        .collect();
    // Used: every ec2 action but one Describe and one Create (so neither `ec2:*` nor those
    // verbs may become wildcards).
    let unused = ["ec2:DescribeInstances", "ec2:CreateVpc"];
    let used_names: Vec<&str> = ec2
        .iter()
        .map(String::as_str)
        .filter(|a| !unused.contains(a))
        .collect();
    let used = usage(
        &used_names
            .iter()
            .map(|a| (*a, 20_i64, &[][..]))
            .collect::<Vec<_>>(),
    );
    let current = role(
        &[(
            "app",
            r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"ec2:*","Resource":"*"}}"#,
        )],
        &[],
    );
    let plan = plan_for(&current, &used, &settings());
    assert_eq!(plan.status, RoleStatus::Changes, "{:?}", plan.error);
    assert!(plan.inline_size <= INLINE_ROLE_POLICY_LIMIT);
    assert!(plan.notes.iter().any(|n| n.contains("compacted")));
    for action in &used_names {
        assert_eq!(decide(&plan, action, "*"), Decision::Allowed, "{action}");
    }
    for action in unused {
        assert_eq!(
            decide(&plan, action, "*"),
            Decision::ImplicitlyDenied,
            "{action}"
        );
    }
}

#[test]
fn a_bad_policy_is_an_error_naming_the_role_and_policy() {
    let current = role(
        &[(
            "broken",
            r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"s3:*","Resource":"bucket"}}"#,
        )],
        &[],
    );
    let plan = plan_for(&current, &usage(&[("s3:GetObject", 30, &[])]), &settings());
    assert_eq!(plan.status, RoleStatus::Error);
    let error = plan.error.expect("error");
    assert!(error.contains("inline broken"), "{error}");
    assert!(error.contains("`bucket` is not an ARN"), "{error}");
}

#[test]
fn deny_only_policies_and_boundaries_stay() {
    let current = RolePolicies {
        boundary: Some(ManagedPolicy {
            arn: "arn:aws:iam::123456789012:policy/boundary".to_owned(),
            name: "boundary".to_owned(),
            aws_managed: false,
            version: "v1".to_owned(),
            document: r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"*","Resource":"*"}}"#.into(),
        }),
        ..role(
            &[
                ("app", BROAD),
                (
                    "guard",
                    r#"{"Version":"2012-10-17","Statement":{"Effect":"Deny","Action":"s3:PutObject","Resource":"arn:aws:s3:::prod/*"}}"#,
                ),
            ],
            &[],
        )
    };
    let plan = plan_for(&current, &usage(&[("s3:PutObject", 30, &[])]), &settings());
    assert_eq!(plan.status, RoleStatus::Changes);
    assert!(plan.proposal.delete_inline.is_empty());
    assert_eq!(plan.proposal.put_inline.len(), 1, "guard is unchanged");
    assert_eq!(
        decide(&plan, "s3:PutObject", "arn:aws:s3:::prod/k"),
        Decision::ExplicitlyDenied
    );
}

#[test]
fn same_as_compares_parsed_documents() {
    let a = role(&[("app", BROAD)], &[]);
    let mut b = a.clone();
    b.inline[0].document = PolicyDocument::parse(BROAD)
        .expect("parses")
        .to_pretty()
        .into();
    assert!(a.same_as(&b));
    b.inline[0].document = BROAD.replace("sqs:*", "sns:*").into();
    assert!(!a.same_as(&b));
}

#[test]
fn plans_render_in_every_format() {
    let doc = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["s3:*","sqs:*"],"Resource":"arn:aws:s3:::home/${aws:username}/*"}]}"#;
    let current = role(
        &[("app", doc)],
        &[(
            "arn:aws:iam::aws:policy/AmazonSQSFullAccess",
            true,
            r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"sqs:*","Resource":"*"}]}"#,
        )],
    );
    let used = usage(&[("s3:GetObject", 30, &[]), ("sqs:SendMessage", 20, &[])]);
    let plan = Plan {
        schema: PLAN_SCHEMA,
        id: "p-test".to_owned(),
        created_at: "2026-11-18T00:00:00Z".to_owned(),
        catalog: "test".to_owned(),
        lookback_days: 90,
        status: PlanStatus::Proposed,
        accounts: Vec::new(),
        roles: vec![plan_for(&current, &used, &settings())],
    };
    assert!(plan.has_changes());
    let text = render::text(&plan, false);
    assert!(
        text.contains("role arn:aws:iam::123456789012:role/app-orders: 2 action(s) kept"),
        "{text}"
    );
    let line = |sign: &str, end: &str| {
        text.lines()
            .any(|l| l.starts_with(sign) && l.trim_end().ends_with(end))
    };
    assert!(line("  -", "\"s3:*\","), "{text}");
    assert!(line("  +", "\"s3:GetObject\","), "{text}");
    assert!(
        text.contains("  - s3: 1"),
        "a summary line per service: {text}"
    );
    assert!(text.contains("--- arn:aws:iam::aws:policy/AmazonSQSFullAccess (detached)"));
    assert!(!text.contains('\x1b'));
    assert!(render::text(&plan, true).contains("\x1b[31m"));

    let markdown = render::markdown(&plan);
    assert!(
        markdown.contains("| `sqs:SendMessage` | used |"),
        "{markdown}"
    );
    assert!(markdown.contains("```diff"));
    // The summary table comes first, one row per role; removals are counted per service.
    let summary = markdown.find("| role | status |").expect("a summary table");
    assert!(summary < markdown.find("### `").expect("a role section"));
    assert!(
        markdown.contains("| `app-orders` | changes | 2 |"),
        "{markdown}"
    );
    assert!(markdown.contains("| removed from | actions | by access level |"));

    // A plan too big for one comment splits into parts under the budget, never mid-section,
    // the summary (every role's row) in the first.
    let mut big = plan.clone();
    big.roles = (0..2000)
        .map(|i| {
            let mut role = plan.roles[0].clone();
            role.role_arn = format!("arn:aws:iam::123456789012:role/app-{i:04}");
            role
        })
        .collect();
    let parts = render::markdown_parts(&big, render::GITHUB_COMMENT_LIMIT);
    assert!(parts.len() > 1);
    for (i, part) in parts.iter().enumerate() {
        assert!(
            part.len() <= render::GITHUB_COMMENT_LIMIT,
            "part {} has {} bytes",
            i + 1,
            part.len()
        );
        assert!(part.contains(&format!("part {} of {}", i + 1, parts.len())));
        assert_eq!(
            part.matches("<details>").count(),
            part.matches("</details>").count(),
            "part {} cuts a section",
            i + 1
        );
    }
    assert!(
        parts[0].contains("| role | status |"),
        "the summary opens part 1"
    );
    assert!(parts[0].contains("more role(s), each in its section below"));
    let sections: usize = parts
        .iter()
        .map(|p| p.lines().filter(|l| l.starts_with("### `")).count())
        .sum();
    assert_eq!(sections, 2000, "every role's section, once");

    let terraform = render::terraform(&plan);
    assert!(terraform.contains("resource \"aws_iam_role_policy\" \"app_orders__app\""));
    assert!(terraform.contains("home/$${aws:username}/*"), "{terraform}");
    assert!(terraform.contains(
        "# remove the aws_iam_role_policy_attachment of arn:aws:iam::aws:policy/AmazonSQSFullAccess"
    ));

    let cloudformation = render::cloudformation(&plan);
    assert!(cloudformation.contains("AppOrdersAppPolicy:\n    Type: AWS::IAM::RolePolicy"));
    assert!(cloudformation.contains("home/${aws:username}/*"));

    let serverless = render::serverless(&plan);
    assert!(
        serverless.contains("iamRoleStatements:\n  - {"),
        "{serverless}"
    );
    assert!(serverless.contains("\"sqs:SendMessage\""));

    // A stored plan reads back equal.
    let json = serde_json::to_string(&plan).expect("serializes");
    let back: Plan = serde_json::from_str(&json).expect("reads back");
    assert_eq!(back, plan);
}

/// What the organization's SCPs close to the role's account is not kept for lack of
/// evidence (keep-list, unobservable): it could never be used. A conditional deny, or a
/// deny on some resources only, closes nothing.
#[test]
fn what_the_scps_close_is_not_kept_without_evidence() {
    let current = role(
        &[(
            "app",
            r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["s3:GetObject","iam:PassRole","kms:Decrypt","kms:GenerateDataKey","ssm:GetParameter"],"Resource":"*"}]}"#,
        )],
        &[],
    );
    let used = usage(&[("s3:GetObject", 30, &["arn:aws:s3:::orders/a.json"])]);
    let root = PolicyDocument::parse(
        r#"{"Version":"2012-10-17","Statement":[{"Sid":"FullAWSAccess","Effect":"Allow","Action":"*","Resource":"*"},{"Sid":"NoPassRole","Effect":"Deny","Action":"iam:PassRole","Resource":"*"},{"Sid":"OnlyEncrypted","Effect":"Deny","Action":"kms:GenerateDataKey","Resource":"*","Condition":{"Bool":{"aws:SecureTransport":"false"}}}]}"#,
    )
    .expect("root SCP");
    let ou = PolicyDocument::parse(
        r#"{"Version":"2012-10-17","Statement":[{"Sid":"Workloads","Effect":"Allow","Action":["s3:*","kms:*","iam:*"],"Resource":"*"}]}"#,
    )
    .expect("OU SCP");
    let levels = vec![
        vec![NamedPolicy {
            name: "root.json",
            document: &root,
        }],
        vec![NamedPolicy {
            name: "ou.json",
            document: &ou,
        }],
    ];
    let mut settings = settings();
    settings.keep = vec!["ssm:GetParameter".to_owned()];
    let propose_with = |organization: &[Vec<NamedPolicy<'_>>]| {
        propose(
            &current,
            &Evidence {
                usage: Some(&used),
                organization,
                ..Evidence::default()
            },
            &settings,
            Catalog::embedded(),
        )
    };
    let kept =
        |plan: &RolePlan| -> Vec<String> { plan.kept.iter().map(|k| k.action.clone()).collect() };

    let without = propose_with(&[]);
    assert_eq!(
        kept(&without),
        [
            "iam:PassRole",
            "kms:Decrypt",
            "kms:GenerateDataKey",
            "s3:GetObject",
            "ssm:GetParameter"
        ]
    );

    let with = propose_with(&levels);
    assert_eq!(
        kept(&with),
        ["kms:Decrypt", "kms:GenerateDataKey", "s3:GetObject"]
    );
    assert!(
        with.notes.contains(&"`iam:PassRole` is not kept (unobservable): SCP root.json statement 1 (Sid NoPassRole) denies iam:PassRole everywhere, so it grants nothing".to_owned()),
        "{:#?}",
        with.notes
    );
    assert!(
        with.notes.contains(&"`ssm:GetParameter` is not kept ([planner] keep `ssm:GetParameter`): no SCP at level 2 of 2 (ou.json) allows ssm:GetParameter, so it grants nothing".to_owned()),
        "{:#?}",
        with.notes
    );
    assert!(
        with.removed.iter().any(|r| r.action == "iam:PassRole"),
        "{:#?}",
        with.removed
    );
    assert_eq!(
        decide(&with, "iam:PassRole", "arn:aws:iam::123456789012:role/x"),
        Decision::ImplicitlyDenied
    );
}

/// The bench's roles (every shape, several seeds) with evidence of every kind give the same
/// plans planned alone and many at once (through one cache, on every core).
#[test]
fn roles_planned_together_are_planned_as_each_alone() {
    use crate::benchgen::bench_roles;
    let catalog = Catalog::embedded();
    let mut settings = settings();
    settings.keep = vec!["ssm:GetParameter*".to_owned()];
    for (seed, scope) in [(1, false), (2, true), (3, false)] {
        settings.scope_resources = scope;
        let roles = bench_roles(catalog, 12, NOW, seed);
        let last_accessed = vec![
            ServiceLastAccessed {
                namespace: "sqs".to_owned(),
                last_authenticated_ms: Some(NOW - 3 * DAY_MS),
                actions: Vec::new(),
            },
            ServiceLastAccessed {
                namespace: "ec2".to_owned(),
                last_authenticated_ms: None,
                actions: vec![("ec2:DescribeInstances".to_owned(), NOW - DAY_MS)],
            },
        ];
        let needed = vec!["s3:PutObject".to_owned(), "iam:GetRole".to_owned()];
        let evidence: Vec<Evidence<'_>> = roles
            .iter()
            .enumerate()
            .map(|(i, r)| Evidence {
                usage: (i % 4 != 3).then_some(&r.usage),
                last_accessed: if i % 2 == 0 { &last_accessed } else { &[] },
                needed: &needed,
                organization: &[],
            })
            .collect();
        let inputs: Vec<RoleInput<'_>> = roles
            .iter()
            .zip(&evidence)
            .map(|(r, e)| RoleInput {
                current: &r.policies,
                evidence: *e,
            })
            .collect();
        let together = plan_roles(&inputs, &settings, catalog);
        assert_eq!(together.len(), roles.len());
        for (input, plan) in inputs.iter().zip(&together) {
            let alone = propose(input.current, &input.evidence, &settings, catalog);
            assert_eq!(plan, &alone, "{}", input.current.role_arn);
        }
    }
}

/// A plan stored (schema 2) and read back is the same plan, field by field and as JSON,
/// while each shared document, removed set's action names and risk sentence is kept once.
#[test]
fn a_stored_plan_reads_back_the_same_and_shares_what_roles_have_in_common() {
    use crate::benchgen::{BenchRole, bench_roles};
    use stored::StoredPlan;
    let catalog = Catalog::embedded();
    let roles = bench_roles(catalog, 30, NOW, 5);
    let inputs: Vec<RoleInput<'_>> = roles.iter().map(BenchRole::input).collect();
    let mut planned = plan_roles(&inputs, &settings(), catalog);
    // A role as an older plan holds it (its removed actions listed) and a failed one.
    planned[0].removed = planned[0].removed.to_vec().into();
    planned.push(RolePlan::failed(&roles[1].policies, "no access".to_owned()));
    let plan = Plan {
        schema: PLAN_SCHEMA,
        id: "plan-1".to_owned(),
        created_at: "2026-11-18T00:00:00Z".to_owned(),
        catalog: catalog.version.to_string(),
        lookback_days: 90,
        status: PlanStatus::Proposed,
        accounts: Vec::new(),
        roles: planned,
    };
    let stored = StoredPlan::from_plan(&plan);
    // Three shapes: two inline documents and the managed one.
    assert_eq!(stored.documents.len(), 3);
    let text = serde_json::to_string(&stored).expect("JSON");
    let back: StoredPlan = serde_json::from_str(&text).expect("parses");
    let read = back.into_plan().expect("a plan");
    assert_eq!(read, plan);
    assert_eq!(
        serde_json::to_value(&read).expect("JSON"),
        serde_json::to_value(&plan).expect("JSON")
    );
    assert_eq!(
        render::text(&read, false),
        render::text(&plan, false),
        "renders the same"
    );
    assert!(stored.actions.is_some() && !stored.sets.is_empty());
    // A plan removing few actions lists them and carries no action table.
    let small = Plan {
        roles: plan.roles[1..2].to_vec(),
        ..plan.clone()
    };
    let stored_small = StoredPlan::from_plan(&small);
    assert!(stored_small.actions.is_none() && stored_small.sets.is_empty());
    assert_eq!(stored_small.into_plan().expect("a plan"), small);
    let full = serde_json::to_string(&plan).expect("JSON").len();
    assert!(
        text.len() * 10 < full,
        "stored {} bytes, schema 1 {full} bytes",
        text.len()
    );
}
