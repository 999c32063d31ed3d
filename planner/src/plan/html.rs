//! The HTML report (`whittle plan --format html`): one self-contained file a reviewer opens
//! in a browser, offline. The page is a shell; its stylesheet and script (`report.css`,
//! `report.js`) are inlined, and the plan travels as JSON in a
//! `<script type="application/json">` element that the script reads and renders: a summary
//! table (sortable, filterable by account, risk and service, a bar per role of granted, used
//! and kept actions) whose rows are built as they scroll into view, and each role's evidence
//! and policy diff built only when the role is expanded.
//!
//! The embedded data is compact rather than the plan's JSON: a 2,000-role plan carries the
//! same AWS-managed document, the same groups of removed actions and the same evidence
//! sentences thousands of times, so documents, groups, services and sentences are stored
//! once in tables and referred to by index; removed actions are named up to
//! [`NAMES_PER_GROUP`] per service and evidence, and each policy change is the pair of
//! documents before and after (the script computes the line diff of the one role being
//! expanded).
//!
//! A role that several Lambda functions share carries its split proposal: per function its
//! new role, what it keeps (with the reason) and what it loses compared with the shared
//! role, what stays on the shared role, the notes, and the split's Terraform,
//! CloudFormation and serverless.yml, which the script shows in tabs.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;

use serde::Serialize;

use super::render::{changes, is_risky};
use super::{AccountRead, KeepReason, Plan, RolePlan};

const CSS: &str = include_str!("report.css");
const JS: &str = include_str!("report.js");

/// Removed actions named per service and evidence; the rest are counted, as in the Markdown
/// (`whittle plan show ID --format json` lists them all). Without a bound, a 2,000-role plan
/// of wildcard grants embeds millions of names.
const NAMES_PER_GROUP: usize = 24;

/// Strings stored once, referred to by their index.
#[derive(Default, Serialize)]
#[serde(transparent)]
struct Table {
    items: Vec<String>,
    #[serde(skip)]
    index: HashMap<String, usize>,
}

impl Table {
    fn add(&mut self, text: &str) -> usize {
        if let Some(&i) = self.index.get(text) {
            return i;
        }
        self.items.push(text.to_owned());
        self.index.insert(text.to_owned(), self.items.len() - 1);
        self.items.len() - 1
    }
}

/// What the script reads: see `report.js` for how each field is used.
#[derive(Serialize)]
struct Data<'a> {
    plan: Head<'a>,
    /// Service prefixes (`s3`), referred to by kept actions and removed groups.
    services: Table,
    /// Access levels, keep reasons, evidence, notes and risks.
    text: Table,
    /// Policy documents, pretty-printed, and the IaC of split proposals.
    docs: Table,
    /// Removed actions of one service with one evidence, each group as JSON
    /// `[service, evidence, [[access level, actions]...], [names...], names not listed]`:
    /// roles of one shape share most of their groups.
    groups: Table,
    /// Lists of risks or of notes, as JSON arrays of `text` indexes: roles under one
    /// managed policy share theirs.
    lists: Table,
    roles: Vec<Role<'a>>,
}

#[derive(Serialize)]
struct Head<'a> {
    id: &'a str,
    created_at: &'a str,
    catalog: &'a str,
    lookback_days: u32,
    status: &'static str,
    accounts: &'a [AccountRead],
}

#[derive(Serialize)]
struct Role<'a> {
    arn: &'a str,
    /// The account id of the role's ARN.
    account: &'a str,
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a str>,
    observed_days: u32,
    /// Catalog actions the role is granted now: kept plus removed.
    granted: usize,
    /// Kept because CloudTrail saw them called.
    used: usize,
    kept: usize,
    removed: usize,
    /// Removed actions of access level Write or Permissions management.
    risky: usize,
    /// Indexes into `lists`, and how many each list has (the summary counts them).
    risks: usize,
    notes: usize,
    flags: usize,
    /// Kept actions: `[service, name, reason, count, last seen, sample event id, note,
    /// resources]` (service, reason and note as indexes; absent values null).
    k: Vec<Kept<'a>>,
    /// Removed actions: indexes into `groups`.
    r: Vec<usize>,
    /// Policy changes: `[title, document before, document after]` (null: none).
    c: Vec<(String, Option<usize>, Option<usize>)>,
    /// The split proposal, when functions share the role.
    #[serde(skip_serializing_if = "Option::is_none")]
    s: Option<Split<'a>>,
}

/// A split proposal as the page shows it.
#[derive(Serialize)]
struct Split<'a> {
    /// Per function `[function, function ARN, role name, the name it would have had (null
    /// when it has it), kept, loses]`; kept as `[service, name, reason]` (service and reason
    /// as indexes), loses as action names.
    f: Vec<SplitFunction<'a>>,
    /// What stays on the shared role.
    keeps: &'a [String],
    /// Index into `lists`.
    notes: usize,
    /// Terraform, CloudFormation and serverless.yml: indexes into `docs`.
    iac: [usize; 3],
}

type SplitFunction<'a> = (
    &'a str,
    &'a str,
    &'a str,
    Option<&'a str>,
    Vec<(usize, &'a str, usize)>,
    &'a [String],
);

type Kept<'a> = (
    usize,
    &'a str,
    usize,
    Option<u64>,
    Option<&'a str>,
    Option<&'a str>,
    Option<usize>,
    &'a [String],
);

/// The tables the roles refer to.
#[derive(Default)]
struct Tables {
    services: Table,
    text: Table,
    docs: Table,
    groups: Table,
    lists: Table,
}

impl Tables {
    fn list(&mut self, items: &[impl AsRef<str>]) -> usize {
        let indexes: Vec<usize> = items.iter().map(|i| self.text.add(i.as_ref())).collect();
        let json = serde_json::to_string(&indexes).unwrap_or_default();
        self.lists.add(&json)
    }
}

fn split_action(action: &str) -> (&str, &str) {
    action.split_once(':').unwrap_or((action, ""))
}

/// The account id in a role ARN (`arn:aws:iam::123456789012:role/x`).
fn account_of(arn: &str) -> &str {
    arn.split(':').nth(4).unwrap_or_default()
}

/// Removed actions by (evidence, service): actions per access level, and their names.
type Grouped<'a> = BTreeMap<(&'a str, &'a str), (BTreeMap<&'a str, usize>, Vec<&'a str>)>;

fn role<'a>(role: &'a RolePlan, tables: &mut Tables) -> Role<'a> {
    let k = role
        .kept
        .iter()
        .map(|kept| {
            let (service, name) = split_action(&kept.action);
            (
                tables.services.add(service),
                name,
                tables.text.add(kept.reason.as_str()),
                kept.count,
                kept.last_seen.as_deref(),
                kept.sample_event_id.as_deref(),
                (!kept.note.is_empty()).then(|| tables.text.add(&kept.note)),
                kept.resources.as_slice(),
            )
        })
        .collect();
    // Removed actions grouped by evidence, then service (the order the Markdown lists them
    // in), each group's access levels counted and its first names kept.
    let entries: Vec<_> = role.removed.entries().collect();
    let mut grouped: Grouped = BTreeMap::new();
    for removed in &entries {
        let (service, name) = split_action(&removed.action);
        let (levels, names) = grouped.entry((removed.evidence, service)).or_default();
        *levels.entry(removed.access_level).or_default() += removed.actions;
        names.push(name);
    }
    let r = grouped
        .into_iter()
        .map(|((evidence, service), (levels, names))| {
            let group = (
                tables.services.add(service),
                tables.text.add(evidence),
                levels
                    .into_iter()
                    .map(|(level, n)| (tables.text.add(level), n))
                    .collect::<Vec<_>>(),
                names.iter().take(NAMES_PER_GROUP).collect::<Vec<_>>(),
                names.len().saturating_sub(NAMES_PER_GROUP),
            );
            let json = serde_json::to_string(&group).unwrap_or_default();
            tables.groups.add(&json)
        })
        .collect();
    let c = changes(role)
        .into_iter()
        .map(|change| {
            (
                change.title,
                change.before.as_deref().map(|d| tables.docs.add(d)),
                change.after.as_deref().map(|d| tables.docs.add(d)),
            )
        })
        .collect();
    let s = role.split.as_ref().map(|split| Split {
        f: split
            .functions
            .iter()
            .map(|f| {
                (
                    f.function.as_str(),
                    f.function_arn.as_str(),
                    f.role_name.as_str(),
                    f.full_role_name.as_deref(),
                    f.kept
                        .iter()
                        .map(|k| {
                            let (service, name) = split_action(&k.action);
                            (
                                tables.services.add(service),
                                name,
                                tables.text.add(k.reason.as_str()),
                            )
                        })
                        .collect(),
                    f.loses.as_slice(),
                )
            })
            .collect(),
        keeps: &split.shared_keeps,
        notes: tables.list(&split.notes),
        iac: [
            tables
                .docs
                .add(&split.terraform(crate::targets::role_name(&role.role_arn))),
            tables.docs.add(&split.cloudformation()),
            tables.docs.add(&split.serverless()),
        ],
    });
    let removed = role.removed.actions();
    Role {
        arn: &role.role_arn,
        account: account_of(&role.role_arn),
        status: role.status.as_str(),
        error: role.error.as_deref(),
        observed_days: role.observed_days,
        granted: role.kept.len() + removed,
        used: role
            .kept
            .iter()
            .filter(|k| k.reason == KeepReason::Used)
            .count(),
        kept: role.kept.len(),
        removed,
        risky: entries
            .iter()
            .filter(|r| is_risky(r.access_level))
            .map(|r| r.actions)
            .sum(),
        risks: tables.list(&role.risks),
        notes: tables.list(&role.notes),
        flags: role.risks.len() + role.notes.len() + usize::from(role.error.is_some()),
        k,
        r,
        c,
        s,
    }
}

/// The plan's data as the page embeds it: JSON in which every `<` is written `\u003c`, so
/// that no text of a policy (a `</script>` in a condition value) can end the script element
/// it sits in, nor open a comment; JSON parsers read the escape back as `<`.
fn embedded_json(plan: &Plan) -> String {
    let mut tables = Tables::default();
    let roles = plan.roles.iter().map(|r| role(r, &mut tables)).collect();
    let Tables {
        services,
        text,
        docs,
        groups,
        lists,
    } = tables;
    let data = Data {
        plan: Head {
            id: &plan.id,
            created_at: &plan.created_at,
            catalog: &plan.catalog,
            lookback_days: plan.lookback_days,
            status: plan.status.as_str(),
            accounts: &plan.accounts,
        },
        services,
        text,
        docs,
        groups,
        lists,
        roles,
    };
    // Serializing plain strings, numbers and sequences cannot fail.
    let json = serde_json::to_string(&data).unwrap_or_else(|_| "null".to_owned());
    json.replace('<', "\\u003c")
}

fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The report: one HTML file with no external assets. The icon link is an empty data URL so
/// that a browser does not ask the server it was opened from for `/favicon.ico`.
pub fn html(plan: &Plan) -> String {
    let mut out = String::new();
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <link rel=\"icon\" href=\"data:,\">\n<title>whittle plan {}</title>\n\
         <style>\n{CSS}</style>\n</head>\n<body>\n\
         <noscript>This report needs JavaScript; `whittle plan show {} --format markdown` \
         renders the same plan as text.</noscript>\n<div id=\"app\"></div>\n\
         <script type=\"application/json\" id=\"plan-data\">{}</script>\n\
         <script>\n{JS}</script>\n</body>\n</html>\n",
        escape(&plan.id),
        escape(&plan.id),
        embedded_json(plan)
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{
        InlinePolicy, KeptAction, PLAN_SCHEMA, PlanStatus, Proposal, RemovedAction, RolePolicies,
        RoleStatus,
    };

    fn plan_with_document(document: &str) -> Plan {
        Plan {
            schema: PLAN_SCHEMA,
            id: "p-<html>".to_owned(),
            created_at: "2026-11-18T00:00:00Z".to_owned(),
            catalog: "test".to_owned(),
            lookback_days: 90,
            status: PlanStatus::Proposed,
            accounts: Vec::new(),
            roles: vec![RolePlan {
                role_arn: "arn:aws:iam::123456789012:role/app".to_owned(),
                status: RoleStatus::Changes,
                error: None,
                read_at: None,
                observed_days: 30,
                current: RolePolicies {
                    role_arn: "arn:aws:iam::123456789012:role/app".to_owned(),
                    role_name: "app".to_owned(),
                    inline: vec![InlinePolicy {
                        name: "app".to_owned(),
                        document: document.into(),
                    }],
                    managed: Vec::new(),
                    boundary: None,
                },
                proposal: Proposal {
                    delete_inline: vec!["app".to_owned()],
                    ..Proposal::default()
                },
                kept: vec![KeptAction {
                    action: "s3:GetObject".to_owned(),
                    reason: KeepReason::Used,
                    count: Some(3),
                    last_seen: Some("2026-11-01T00:00:00Z".to_owned()),
                    sample_event_id: None,
                    resources: Vec::new(),
                    note: String::new(),
                }],
                removed: vec![RemovedAction {
                    action: "iam:PassRole".to_owned(),
                    actions: 1,
                    access_level: "Write".to_owned(),
                    evidence: "not used in 90 days".to_owned(),
                }]
                .into(),
                risks: vec!["removes 1 Write action(s)".into()],
                notes: Vec::new(),
                inline_size: 0,
                split: None,
            }],
        }
    }

    /// An entry of a table of JSON texts (`groups`, `lists`), decoded.
    fn entry(
        data: &serde_json::Value,
        table: &str,
        index: &serde_json::Value,
    ) -> serde_json::Value {
        let index = index.as_u64().expect("an index") as usize;
        let text = data[table][index].as_str().expect("a JSON text");
        serde_json::from_str(text).expect("JSON")
    }

    /// The JSON between the data element's tags.
    fn data_of(page: &str) -> serde_json::Value {
        let open = r#"<script type="application/json" id="plan-data">"#;
        let start = page.find(open).expect("the data element") + open.len();
        let end = start + page[start..].find("</script>").expect("its end");
        serde_json::from_str(&page[start..end]).expect("the data is JSON")
    }

    #[test]
    fn a_policy_cannot_close_the_data_script_element() {
        let hostile = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:GetObject","Resource":"*","Condition":{"StringEquals":{"aws:UserAgent":"</script><script>alert(1)</script><!--"}}}]}"#;
        let page = html(&plan_with_document(hostile));
        // Two script elements: the data and the code; the policy's tag is not a third.
        assert_eq!(page.matches("<script").count(), 2, "{page}");
        assert_eq!(page.matches("</script>").count(), 2);
        assert!(!page.contains("<!--"));
        // The policy text reads back whole from the data.
        let data = data_of(&page);
        let docs = data["docs"].as_array().expect("documents");
        assert!(
            docs.iter().any(|d| d
                .as_str()
                .is_some_and(|d| d.contains("</script><script>alert(1)"))),
            "{docs:?}"
        );
        assert!(page.contains("<title>whittle plan p-&lt;html&gt;</title>"));
    }

    #[test]
    fn the_page_is_self_contained_and_carries_the_roles_counts() {
        let doc = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["s3:GetObject","iam:PassRole"],"Resource":"*"}]}"#;
        let page = html(&plan_with_document(doc));
        for external in ["src=", "href=\"http", "@import", "url("] {
            assert!(!page.contains(external), "{external} in the page");
        }
        assert!(page.contains(CSS) && page.contains(JS));
        let data = data_of(&page);
        let role = &data["roles"][0];
        assert_eq!(role["account"], "123456789012");
        assert_eq!(
            (
                &role["granted"],
                &role["used"],
                &role["kept"],
                &role["removed"]
            ),
            (&2.into(), &1.into(), &1.into(), &1.into())
        );
        assert_eq!(role["risky"], 1);
        // Removed groups and kept entries name their service through the tables.
        let index = |v: &serde_json::Value| v.as_u64().expect("an index") as usize;
        let services = &data["services"];
        let group = entry(&data, "groups", &role["r"][0]);
        assert_eq!(services[index(&group[0])], "iam");
        assert_eq!(data["text"][index(&group[1])], "not used in 90 days");
        assert_eq!(data["text"][index(&group[2][0][0])], "Write");
        assert_eq!(group[3], serde_json::json!(["PassRole"]));
        assert_eq!(services[index(&role["k"][0][0])], "s3");
        let risks = entry(&data, "lists", &role["risks"]);
        assert_eq!(data["text"][index(&risks[0])], "removes 1 Write action(s)");
        assert_eq!(role["flags"], 1);
        // The deleted policy: its document before, nothing after.
        assert_eq!(role["c"][0][0], "inline app (deleted)");
        assert!(role["c"][0][2].is_null());
    }

    #[test]
    fn what_roles_share_is_embedded_once_and_long_groups_are_counted() {
        let doc = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:*","Resource":"*"}]}"#;
        let mut plan = plan_with_document(doc);
        plan.roles[0].removed = (0..30)
            .map(|i| RemovedAction {
                action: format!("ec2:Describe{i}"),
                actions: 1,
                access_level: "List".to_owned(),
                evidence: "not used in 90 days".to_owned(),
            })
            .collect::<Vec<_>>()
            .into();
        let mut other = plan.roles[0].clone();
        other.role_arn = "arn:aws:iam::210987654321:role/other".to_owned();
        plan.roles.push(other);
        let data = data_of(&html(&plan));
        assert_eq!(data["docs"].as_array().map(Vec::len), Some(1));
        assert_eq!(data["groups"].as_array().map(Vec::len), Some(1));
        assert_eq!(data["roles"][0]["r"], data["roles"][1]["r"]);
        assert_eq!(data["roles"][0]["risks"], data["roles"][1]["risks"]);
        assert_eq!(data["roles"][1]["account"], "210987654321");
        let group = entry(&data, "groups", &0.into());
        assert_eq!(group[2][0][1], 30, "every removed action counted");
        assert_eq!(group[3].as_array().map(Vec::len), Some(NAMES_PER_GROUP));
        assert_eq!(group[4], 30 - NAMES_PER_GROUP);
    }

    #[test]
    fn a_split_travels_with_its_functions_notes_and_iac() {
        use crate::plan::ProposedInline;
        use crate::plan::split::{FunctionRole, SplitProposal};
        let doc = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["s3:GetObject","iam:PassRole"],"Resource":"*"}]}"#;
        let mut plan = plan_with_document(doc);
        let kept = plan.roles[0].kept.clone();
        let function = |name: &str, full: Option<&str>| {
            FunctionRole {
            function: name.to_owned(),
            function_arn: format!("arn:aws:lambda:us-east-1:123456789012:function:{name}"),
            revision: None,
            role_name: format!("app-{name}"),
            full_role_name: full.map(str::to_owned),
            inline: vec![ProposedInline {
                name: "app".to_owned(),
                document: crate::policy::PolicyDocument::parse(
                    r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:GetObject","Resource":"*"}]}"#,
                )
                .expect("a document"),
            }],
            managed: Vec::new(),
            boundary: None,
            kept: kept.clone(),
            loses: vec!["sqs:SendMessage".to_owned()],
        }
        };
        plan.roles[0].split = Some(SplitProposal {
            functions: vec![
                function("read", None),
                function("write", Some("app-write-long")),
            ],
            shared_keeps: vec!["kms:ListKeys".to_owned()],
            notes: vec!["the role of write is named app-write".to_owned()],
        });
        let data = data_of(&html(&plan));
        let split = &data["roles"][0]["s"];
        let index = |v: &serde_json::Value| v.as_u64().expect("an index") as usize;
        assert_eq!(split["f"].as_array().map(Vec::len), Some(2));
        let write = &split["f"][1];
        assert_eq!(
            (&write[0], &write[2], &write[3]),
            (
                &"write".into(),
                &"app-write".into(),
                &"app-write-long".into()
            )
        );
        assert!(split["f"][0][3].is_null());
        assert_eq!(data["services"][index(&write[4][0][0])], "s3");
        assert_eq!(write[4][0][1], "GetObject");
        assert_eq!(data["text"][index(&write[4][0][2])], "used");
        assert_eq!(write[5], serde_json::json!(["sqs:SendMessage"]));
        assert_eq!(split["keeps"], serde_json::json!(["kms:ListKeys"]));
        let notes = entry(&data, "lists", &split["notes"]);
        assert_eq!(
            data["text"][index(&notes[0])],
            "the role of write is named app-write"
        );
        let iac: Vec<&str> = (0..3)
            .map(|i| {
                data["docs"][index(&split["iac"][i])]
                    .as_str()
                    .expect("text")
            })
            .collect();
        assert!(
            iac[0].contains("resource \"aws_iam_role\" \"app_write\""),
            "{}",
            iac[0]
        );
        assert!(
            iac[1].contains("AppWriteRole:\n    Type: AWS::IAM::Role"),
            "{}",
            iac[1]
        );
        assert!(
            iac[2].contains("iamRoleStatementsName: app-write"),
            "{}",
            iac[2]
        );
        // A role without a split carries none.
        let data = data_of(&html(&plan_with_document(doc)));
        assert!(data["roles"][0].get("s").is_none());
    }
}
