//! Proposals: from a role's current policies and the evidence of what it uses, a tightened
//! set of policies, checked with the evaluator before anyone sees it.
//!
//! The rules (DESIGN.md, "Planning"):
//! - keep what is used: mined actions in the look-back window, actions IAM's last-accessed
//!   data saw used, the configured keep-list, actions trials recorded as *needed*, and —
//!   unless configured otherwise — permissions CloudTrail cannot show (`iam:PassRole`, KMS
//!   calls AWS makes on the caller's behalf, the Lambda runtime's logging); but not what the
//!   organization's SCPs close to the role's account (`Evidence::organization`): a kept
//!   permission that can never be used only widens the policy;
//! - never add: a kept action keeps at most the resources and conditions it had;
//! - keep every `Deny` statement verbatim, and every `Condition` on the statements that stay;
//! - explicit action lists, grouped by identical resource sets, sorted: the same inputs give
//!   the same document, byte for byte;
//! - inline policies are narrowed in place; an attached managed policy that loses actions is
//!   detached and its remainder becomes an inline policy (AWS-managed policies cannot be
//!   edited, and a customer-managed one may be shared with roles outside the plan);
//! - IAM's size limit (10,240 characters for all of a role's inline policies, whitespace
//!   not counted) is met by compacting action lists into wildcards the catalog proves match
//!   only kept actions;
//! - **the proposal never denies what the role was seen doing**: every used action on every
//!   observed resource is evaluated against the current and the proposed policies, and a
//!   role whose proposal would turn an allow into a deny gets an error, not a plan.

pub mod cache;
pub mod diff;
pub mod html;
pub mod removed;
pub mod render;
pub mod split;
pub mod stored;
pub mod summary;

use std::collections::{BTreeMap, BTreeSet};

use std::sync::Arc;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::catalog::{AccessLevel, ActionId, ActionSet, Catalog, SetMinus};
use crate::policy::rules::resource_account;
use crate::policy::{
    Context, Decision, Effect, NamedPolicy, OneOrMany, PolicyDocument, Request, Statement,
    evaluate, organization_closes,
};
use crate::trail::format_time;
use crate::usage::{PrincipalUsage, ServiceLastAccessed};
use cache::Expanded;
pub use cache::PlanCache;
pub use removed::{Removed, RemovedEvidence, RemovedRef};

/// The JSON schema version of plans (`docs/plan-schema.md`).
pub const PLAN_SCHEMA: u32 = 1;
/// IAM's limit on the total size of a role's inline policies, whitespace not counted.
pub const INLINE_ROLE_POLICY_LIMIT: usize = 10_240;
/// The prefix of inline policies whittle creates from detached managed policies.
pub const INLINE_FROM_MANAGED_PREFIX: &str = "whittle-";

const DAY_MS: i64 = 86_400_000;

/// Permissions CloudTrail cannot show being used by the role itself, with why.
pub const UNOBSERVABLE: &[(&str, &str)] = &[
    (
        "iam:PassRole",
        "checked when the role hands a role to a service; CloudTrail records no PassRole event",
    ),
    (
        "kms:Decrypt",
        "used by S3, SSM and Secrets Manager on the caller's behalf when it reads encrypted data",
    ),
    (
        "kms:GenerateDataKey",
        "used by S3, SSM and Secrets Manager on the caller's behalf when it writes encrypted data",
    ),
    (
        "kms:Encrypt",
        "used by AWS services on the caller's behalf when it writes encrypted data",
    ),
    (
        "logs:CreateLogGroup",
        "used by the Lambda runtime for the function's logs; CloudTrail does not record it",
    ),
    (
        "logs:CreateLogStream",
        "used by the Lambda runtime for the function's logs; CloudTrail does not record it",
    ),
    (
        "logs:PutLogEvents",
        "used by the Lambda runtime for the function's logs; a data event CloudTrail does not record",
    ),
    (
        "xray:PutTraceSegments",
        "used by the Lambda runtime when tracing is on; CloudTrail does not record it",
    ),
    (
        "xray:PutTelemetryRecords",
        "used by the Lambda runtime when tracing is on; CloudTrail does not record it",
    ),
];

/// An inline policy as IAM holds it (the document URL-decoded, otherwise as returned).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InlinePolicy {
    pub name: String,
    /// Shared text: a plan of thousands of roles holds each distinct document once.
    pub document: Arc<str>,
}

/// An attached managed policy (or the permissions boundary), its default version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManagedPolicy {
    pub arn: String,
    pub name: String,
    pub aws_managed: bool,
    pub version: String,
    /// Shared text: the same managed policy on thousands of roles is held once.
    pub document: Arc<str>,
}

/// Everything that grants or limits a role's permissions, as read from IAM.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RolePolicies {
    pub role_arn: String,
    pub role_name: String,
    pub inline: Vec<InlinePolicy>,
    pub managed: Vec<ManagedPolicy>,
    pub boundary: Option<ManagedPolicy>,
}

impl RolePolicies {
    /// Whether `other` grants the same: the same policies with equal documents compared as
    /// parsed JSON (IAM re-formats documents, so text is never compared).
    pub fn same_as(&self, other: &RolePolicies) -> bool {
        fn json(text: &str) -> Option<serde_json::Value> {
            PolicyDocument::from_iam(text).ok().map(|d| d.to_value())
        }
        let inline = |p: &RolePolicies| -> BTreeMap<String, Option<serde_json::Value>> {
            p.inline
                .iter()
                .map(|i| (i.name.clone(), json(&i.document)))
                .collect()
        };
        let managed = |p: &RolePolicies| -> BTreeMap<String, Option<serde_json::Value>> {
            p.managed
                .iter()
                .map(|m| (m.arn.clone(), json(&m.document)))
                .collect()
        };
        let boundary = |p: &RolePolicies| {
            p.boundary
                .as_ref()
                .map(|b| (b.arn.clone(), json(&b.document)))
        };
        inline(self) == inline(other)
            && managed(self) == managed(other)
            && boundary(self) == boundary(other)
    }
}

/// What the planner knows of a role's use of its permissions.
#[derive(Debug, Clone, Copy, Default)]
pub struct Evidence<'a> {
    pub usage: Option<&'a PrincipalUsage>,
    pub last_accessed: &'a [ServiceLastAccessed],
    /// Actions failed trials recorded as needed.
    pub needed: &'a [String],
    /// The SCPs of the role's account, one list per level from the organization root down
    /// (`[planner.organization_policies]`); empty when not configured.
    pub organization: &'a [Vec<NamedPolicy<'a>>],
}

/// The `[planner]` settings, and the time of planning.
#[derive(Debug, Clone)]
pub struct Settings {
    pub lookback_days: u32,
    pub min_observation_days: u32,
    pub scope_resources: bool,
    /// Action patterns always kept when granted.
    pub keep: Vec<String>,
    pub keep_unobservable: bool,
    pub now_ms: i64,
}

/// Why an action stays.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum KeepReason {
    Used,
    LastAccessed,
    Needed,
    KeepList,
    Unobservable,
}

impl KeepReason {
    /// The name JSON uses.
    pub fn as_str(self) -> &'static str {
        match self {
            KeepReason::Used => "used",
            KeepReason::LastAccessed => "last-accessed",
            KeepReason::Needed => "needed",
            KeepReason::KeepList => "keep-list",
            KeepReason::Unobservable => "unobservable",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeptAction {
    pub action: String,
    pub reason: KeepReason,
    /// Calls in the look-back window (mined actions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_seen: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sample_event_id: Option<String>,
    /// The resources it was seen on (mined actions), at most 32.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resources: Vec<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub note: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemovedAction {
    /// An action, or `service:*` when every granted action of a service goes.
    pub action: String,
    /// How many catalog actions the entry stands for.
    pub actions: usize,
    pub access_level: String,
    pub evidence: String,
}

/// A policy whittle would write.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProposedInline {
    pub name: String,
    pub document: PolicyDocument,
}

/// The changes to one role.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Proposal {
    /// Inline policies to create or overwrite.
    pub put_inline: Vec<ProposedInline>,
    /// Inline policies to delete.
    pub delete_inline: Vec<String>,
    /// Managed policies (ARNs) to detach.
    pub detach: Vec<String>,
}

impl Proposal {
    pub fn is_empty(&self) -> bool {
        self.put_inline.is_empty() && self.delete_inline.is_empty() && self.detach.is_empty()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RoleStatus {
    /// The proposal changes the role.
    Changes,
    /// Every granted action is kept.
    NoChange,
    /// Reported only: observed too briefly to shrink.
    NotShrunk,
    /// The role could not be planned (see `error`).
    Error,
}

impl RoleStatus {
    /// The name JSON uses.
    pub fn as_str(self) -> &'static str {
        match self {
            RoleStatus::Changes => "changes",
            RoleStatus::NoChange => "no-change",
            RoleStatus::NotShrunk => "not-shrunk",
            RoleStatus::Error => "error",
        }
    }
}

/// Where a plan is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PlanStatus {
    /// Made, not applied anywhere.
    Proposed,
    /// A trial in staging passed; `whittle apply` needs no `--force`.
    Trialled,
    /// Applied (see the apply records for which roles).
    Applied,
}

impl PlanStatus {
    /// The name JSON uses.
    pub fn as_str(self) -> &'static str {
        match self {
            PlanStatus::Proposed => "proposed",
            PlanStatus::Trialled => "trialled",
            PlanStatus::Applied => "applied",
        }
    }
}

/// A stored plan: what `whittle plan` proposed, for every role it looked at.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    pub schema: u32,
    pub id: String,
    pub created_at: String,
    /// The IAM action catalog the plan was made with.
    pub catalog: String,
    pub lookback_days: u32,
    pub status: PlanStatus,
    /// How each account was read, when the plan read whole accounts (absent in plans of
    /// named roles, and in plans made before whittle read accounts whole).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub accounts: Vec<AccountRead>,
    pub roles: Vec<RolePlan>,
}

/// How one configured account was read for a plan: one snapshot of the account, or why not.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountRead {
    /// The account's name in the configuration.
    pub account: String,
    /// When its snapshot was read (RFC 3339, UTC); absent when the read failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_at: Option<String>,
    /// Why the account could not be read; none of its roles is in the plan.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Plan {
    /// Whether any role would change, or a shared role would be split among its functions.
    pub fn has_changes(&self) -> bool {
        self.roles
            .iter()
            .any(|r| r.status == RoleStatus::Changes || r.split.is_some())
    }
}

/// The plan for one role.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RolePlan {
    pub role_arn: String,
    pub status: RoleStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// When the role's policies (`current`) were read from IAM (RFC 3339, UTC): its
    /// account's snapshot, or the role's own read. Absent in plans made before it was
    /// recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_at: Option<String>,
    /// Days between the first event of the role in the usage store and the plan.
    pub observed_days: u32,
    pub current: RolePolicies,
    pub proposal: Proposal,
    pub kept: Vec<KeptAction>,
    /// Listed in JSON as `RemovedAction`s; see [`Removed`].
    pub removed: Removed,
    /// What a reviewer should look at twice (shared text: the same policy attached to
    /// thousands of roles gives each the same sentences).
    pub risks: Vec<Arc<str>>,
    pub notes: Vec<String>,
    /// The size of the role's inline policies after the change, whitespace not counted.
    pub inline_size: usize,
    /// One role per function, when several Lambda functions share this role.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub split: Option<split::SplitProposal>,
}

impl RolePlan {
    /// How many roles' permissions putting this plan in place changes: the role's own when
    /// its policies change, and one per function its split gives a role of its own. What
    /// `[planner] max_roles_per_apply` and `[targets] max_roles_per_run` count.
    pub fn roles_changed(&self) -> usize {
        usize::from(self.status == RoleStatus::Changes)
            + self.split.as_ref().map_or(0, |split| split.functions.len())
    }

    fn failed(current: &RolePolicies, error: String) -> RolePlan {
        RolePlan {
            role_arn: current.role_arn.clone(),
            status: RoleStatus::Error,
            error: Some(error),
            read_at: None,
            observed_days: 0,
            current: current.clone(),
            proposal: Proposal::default(),
            kept: Vec::new(),
            removed: Removed::default(),
            risks: Vec::new(),
            notes: Vec::new(),
            inline_size: 0,
            split: None,
        }
    }

    /// The current inline policies the proposal neither deletes nor overwrites.
    fn untouched_inline(&self) -> impl Iterator<Item = &InlinePolicy> {
        self.current.inline.iter().filter(|inline| {
            !self.proposal.delete_inline.contains(&inline.name)
                && !self
                    .proposal
                    .put_inline
                    .iter()
                    .any(|p| p.name == inline.name)
        })
    }

    /// The managed policies the proposal leaves attached.
    fn attached_managed(&self) -> impl Iterator<Item = &ManagedPolicy> {
        self.current
            .managed
            .iter()
            .filter(|m| !self.proposal.detach.contains(&m.arn))
    }

    /// The role's policies after the proposal, named as output shows them.
    pub fn proposed_documents(&self) -> Result<Vec<(String, PolicyDocument)>, String> {
        let mut out = Vec::new();
        for inline in self.untouched_inline() {
            out.push((
                format!("inline {}", inline.name),
                parse(&inline.document, &inline.name)?,
            ));
        }
        for put in &self.proposal.put_inline {
            out.push((format!("inline {}", put.name), put.document.clone()));
        }
        for managed in self.attached_managed() {
            out.push((managed.arn.clone(), parse(&managed.document, &managed.arn)?));
        }
        Ok(out)
    }
}

/// The note of an action used on resources in other accounts than the role's: a
/// cross-account call succeeds only when the resource's own policy allows it too, so the
/// reviewer learns which account's policy the role's use depends on. Resources whose ARN
/// names no account (S3 buckets) say nothing either way.
fn cross_account_note(role_arn: &str, resources: &[String]) -> String {
    let own = resource_account(role_arn);
    let others: BTreeSet<&str> = resources
        .iter()
        .filter_map(|r| resource_account(r))
        .filter(|a| Some(*a) != own)
        .collect();
    if others.is_empty() {
        return String::new();
    }
    format!(
        "used on resources in account {} (cross-account: the resource's policy allows it too)",
        others.into_iter().collect::<Vec<_>>().join(", ")
    )
}

fn parse(text: &str, name: &str) -> Result<PolicyDocument, String> {
    PolicyDocument::from_iam(text).map_err(|e| format!("policy {name}: {e}"))
}

/// The current identity policies of a role and its boundary, parsed and expanded (shared
/// with every role of the plan that has the same documents).
struct Parsed {
    identity: Vec<(String, Arc<Expanded>)>,
    boundary: Option<(String, Arc<Expanded>)>,
}

impl Parsed {
    fn named(&self) -> Vec<NamedPolicy<'_>> {
        self.identity
            .iter()
            .map(|(name, e)| NamedPolicy {
                name,
                document: &e.document,
            })
            .collect()
    }

    fn document(&self, name: &str) -> Option<&Arc<Expanded>> {
        self.identity
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, e)| e)
    }
}

fn parse_current(current: &RolePolicies, cache: &PlanCache<'_>) -> Result<Parsed, String> {
    let parse = |text: &str, name: &str| {
        cache
            .document(text)
            .map_err(|e| format!("policy {name}: {e}"))
    };
    let mut identity = Vec::new();
    for inline in &current.inline {
        let name = format!("inline {}", inline.name);
        let doc = parse(&inline.document, &name)?;
        identity.push((name, doc));
    }
    for managed in &current.managed {
        identity.push((managed.arn.clone(), parse(&managed.document, &managed.arn)?));
    }
    let boundary = match &current.boundary {
        Some(b) => Some((
            b.arn.clone(),
            parse(&b.document, &format!("boundary {}", b.arn))?,
        )),
        None => None,
    };
    Ok(Parsed { identity, boundary })
}

/// One role to plan with [`plan_roles`].
#[derive(Debug, Clone, Copy)]
pub struct RoleInput<'a> {
    pub current: &'a RolePolicies,
    pub evidence: Evidence<'a>,
}

/// Plans many roles on every thread of the current rayon pool, sharing each distinct
/// document's parse and expansion through one [`PlanCache`]; the plans come back in the
/// order of `roles`, each the same as [`propose`] would make.
pub fn plan_roles(
    roles: &[RoleInput<'_>],
    settings: &Settings,
    catalog: &Catalog,
) -> Vec<RolePlan> {
    plan_roles_cached(roles, settings, &PlanCache::new(catalog))
}

/// [`plan_roles`] through a cache the caller keeps, so that roles planned a batch at a time
/// (their evidence read a batch at a time) still expand each document once.
pub fn plan_roles_cached(
    roles: &[RoleInput<'_>],
    settings: &Settings,
    cache: &PlanCache<'_>,
) -> Vec<RolePlan> {
    roles
        .par_iter()
        .map(|role| propose_cached(role.current, &role.evidence, settings, cache))
        .collect()
}

/// Plans one role.
pub fn propose(
    current: &RolePolicies,
    evidence: &Evidence<'_>,
    settings: &Settings,
    catalog: &Catalog,
) -> RolePlan {
    propose_cached(current, evidence, settings, &PlanCache::new(catalog))
}

/// Plans one role, with documents parsed and expanded through `cache`.
pub fn propose_cached(
    current: &RolePolicies,
    evidence: &Evidence<'_>,
    settings: &Settings,
    cache: &PlanCache<'_>,
) -> RolePlan {
    let catalog = cache.catalog();
    let parsed = match parse_current(current, cache) {
        Ok(parsed) => parsed,
        Err(error) => return RolePlan::failed(current, error),
    };
    let cutoff_ms = settings.now_ms - i64::from(settings.lookback_days) * DAY_MS;
    let cutoff_day = u32::try_from(cutoff_ms.div_euclid(DAY_MS)).unwrap_or(0);

    // Everything the current identity policies grant (Allow statements, expanded).
    // A role with one policy shares its document's set with every other role that has it.
    let granted: Arc<ActionSet> = match parsed.identity.as_slice() {
        [(_, only)] => only.granted.clone(),
        all => {
            let mut union = catalog.empty_set();
            for (_, expanded) in all {
                union.union_with(&expanded.granted);
            }
            Arc::new(union)
        }
    };
    let mut notes = Vec::new();
    for (name, expanded) in &parsed.identity {
        for action in &expanded.unknown {
            notes.push(format!(
                "{name} grants `{action}`, which is not in the IAM action catalog ({}): whittle cannot see it used, so it stays only where {name} is left as written",
                catalog.version
            ));
        }
    }
    // Whether the action, spelled as the catalog spells it, is granted.
    let is_granted = |action: &str| -> bool {
        catalog
            .lookup(action)
            .is_some_and(|id| granted.contains(id) && catalog.action(id).name == action)
    };

    // What stays, and why (the first reason found wins, in the order of KeepReason).
    let mut kept: BTreeMap<String, KeptAction> = BTreeMap::new();
    fn keep<'k>(
        kept: &'k mut BTreeMap<String, KeptAction>,
        action: &str,
        reason: KeepReason,
        note: String,
    ) -> &'k mut KeptAction {
        kept.entry(action.to_owned()).or_insert_with(|| KeptAction {
            action: action.to_owned(),
            reason,
            count: None,
            last_seen: None,
            sample_event_id: None,
            resources: Vec::new(),
            note,
        })
    }
    let mut used_services = BTreeSet::new();
    if let Some(usage) = evidence.usage {
        for (action, use_) in &usage.actions {
            let Some((count, _, last)) = use_.counts.since(cutoff_day) else {
                continue;
            };
            used_services.insert(service_of(action).to_owned());
            if !is_granted(action) {
                notes.push(format!(
                    "`{action}` was used but no identity policy of the role grants it (allowed by a resource policy, or granted since); nothing is added"
                ));
                continue;
            }
            let k = keep(&mut kept, action, KeepReason::Used, String::new());
            k.count = Some(count);
            k.last_seen = Some(format_time(last));
            k.sample_event_id.clone_from(&use_.sample_event_id);
            k.resources = use_.resources.keys().cloned().collect();
            k.note = cross_account_note(&current.role_arn, &k.resources);
        }
    }
    for service in evidence.last_accessed {
        for (action, last) in &service.actions {
            if *last >= cutoff_ms
                && let Some(id) = catalog.lookup(action)
                && granted.contains(id)
            {
                keep(
                    &mut kept,
                    &catalog.action(id).name,
                    KeepReason::LastAccessed,
                    format!("IAM last accessed {}", format_time(*last)),
                );
            }
        }
        // Service-level data only: IAM saw the service used but not which action. If the
        // trail explains it (an action of that service was mined), that is enough;
        // otherwise every granted action of the service stays.
        if service.actions.is_empty()
            && service
                .last_authenticated_ms
                .is_some_and(|last| last >= cutoff_ms)
            && !used_services.contains(&service.namespace)
        {
            let prefix = format!("{}:", service.namespace);
            let last = service
                .last_authenticated_ms
                .map(format_time)
                .unwrap_or_default();
            for &id in catalog.service_actions(&service.namespace) {
                let action = &catalog.action(id).name;
                if granted.contains(id) && action.starts_with(&prefix) {
                    keep(
                        &mut kept,
                        action,
                        KeepReason::LastAccessed,
                        format!(
                            "IAM last accessed the service {} at {last} without action detail, and the trail shows none of its actions",
                            service.namespace
                        ),
                    );
                }
            }
        }
    }
    for action in evidence.needed {
        if let Some(id) = catalog.lookup(action)
            && granted.contains(id)
        {
            keep(
                &mut kept,
                &catalog.action(id).name,
                KeepReason::Needed,
                "recorded as needed by a failed trial".to_owned(),
            );
        }
    }
    // An action kept without evidence of use that the organization's SCPs close grants
    // nothing: it is not kept, and the plan says so.
    let mut closed = |action: &str, why: &str| -> bool {
        match organization_closes(evidence.organization, action) {
            Some(reason) => {
                notes.push(format!(
                    "`{action}` is not kept ({why}): {reason}, so it grants nothing"
                ));
                true
            }
            None => false,
        }
    };
    for pattern in &settings.keep {
        for id in catalog.expand(pattern) {
            let name = &catalog.action(id).name;
            if granted.contains(id)
                && !kept.contains_key(name)
                && !closed(name, &format!("[planner] keep `{pattern}`"))
            {
                keep(
                    &mut kept,
                    name,
                    KeepReason::KeepList,
                    format!("[planner] keep `{pattern}`"),
                );
            }
        }
    }
    if settings.keep_unobservable {
        for (action, why) in UNOBSERVABLE {
            if is_granted(action) && !kept.contains_key(*action) && !closed(action, "unobservable")
            {
                keep(
                    &mut kept,
                    action,
                    KeepReason::Unobservable,
                    (*why).to_owned(),
                );
            }
        }
    }
    // Every kept action is a granted catalog action, spelled as the catalog spells it.
    let kept_ids: Vec<(ActionId, String)> = kept
        .keys()
        .filter_map(|name| catalog.lookup(name).map(|id| (id, name.clone())))
        .collect();

    // The observation window.
    let observed = evidence.usage.and_then(PrincipalUsage::observed);
    let observed_days = observed.map_or(0, |(first, _)| {
        u32::try_from((settings.now_ms - first).max(0) / DAY_MS).unwrap_or(u32::MAX)
    });

    // Removed: granted but not kept, summarised per service when a whole service goes.
    let removed_set = SetMinus::new(granted, kept_ids.iter().map(|(id, _)| *id).collect());
    let removed = removed_actions(removed_set, catalog, settings, evidence);
    let mut risks = risk_notes(&removed, &parsed, cache);

    let mut plan = RolePlan {
        role_arn: current.role_arn.clone(),
        status: RoleStatus::NoChange,
        error: None,
        read_at: None,
        observed_days,
        current: current.clone(),
        proposal: Proposal::default(),
        kept: kept.into_values().collect(),
        removed,
        risks: Vec::new(),
        notes,
        inline_size: 0,
        split: None,
    };
    if observed.is_none() || observed_days < settings.min_observation_days {
        plan.status = RoleStatus::NotShrunk;
        risks.push(match observed {
            None => "no CloudTrail usage recorded for this role: not shrunk (mine its trail first)".into(),
            Some(_) => format!(
                "observed for {observed_days} day(s), fewer than [planner] min_observation_days = {}: not shrunk",
                settings.min_observation_days
            )
            .into(),
        });
        plan.risks = risks;
        plan.inline_size = current_inline_size(&parsed);
        return plan;
    }
    plan.risks = risks;

    // Narrow every identity policy.
    let usage_resources = |action: &str| -> Option<Vec<String>> {
        let use_ = evidence.usage?.actions.get(action)?;
        (!use_.resources_truncated && !use_.resources.is_empty())
            .then(|| use_.resources.keys().cloned().collect())
    };
    let mut proposal = Proposal::default();
    for inline in &current.inline {
        let Some(expanded) = parsed.document(&format!("inline {}", inline.name)) else {
            continue;
        };
        match narrow(expanded, &kept_ids, settings, catalog, &usage_resources) {
            Some(narrowed) if narrowed == expanded.document => {}
            Some(narrowed) => proposal.put_inline.push(ProposedInline {
                name: inline.name.clone(),
                document: narrowed,
            }),
            None => proposal.delete_inline.push(inline.name.clone()),
        }
    }
    for managed in &current.managed {
        let Some(expanded) = parsed.document(&managed.arn) else {
            continue;
        };
        match narrow(expanded, &kept_ids, settings, catalog, &usage_resources) {
            Some(narrowed) if narrowed == expanded.document => {}
            narrowed => {
                proposal.detach.push(managed.arn.clone());
                if let Some(document) = narrowed {
                    proposal.put_inline.push(ProposedInline {
                        name: inline_name_for(&managed.name, current),
                        document,
                    });
                }
            }
        }
    }
    plan.proposal = proposal;

    // IAM's size limit, then the safety check.
    if let Err(error) = fit_size(&mut plan, &parsed, catalog) {
        return RolePlan::failed(current, error);
    }
    if let Err(error) = check_never_denies_used(&plan, &parsed, evidence, cutoff_day) {
        return RolePlan::failed(current, error);
    }
    plan.status = if plan.proposal.is_empty() {
        RoleStatus::NoChange
    } else {
        RoleStatus::Changes
    };
    plan
}

fn service_of(action: &str) -> &str {
    action.split_once(':').map_or(action, |(s, _)| s)
}

/// `whittle-<managed policy name>`, unique among the role's inline policies, within IAM's
/// 128-character limit on policy names.
fn inline_name_for(managed_name: &str, current: &RolePolicies) -> String {
    let mut name: String = format!("{INLINE_FROM_MANAGED_PREFIX}{managed_name}")
        .chars()
        .take(128)
        .collect();
    let mut n = 2;
    while current.inline.iter().any(|i| i.name == name) {
        let suffix = format!("-{n}");
        name = format!("{INLINE_FROM_MANAGED_PREFIX}{managed_name}")
            .chars()
            .take(128 - suffix.len())
            .collect::<String>()
            + &suffix;
        n += 1;
    }
    name
}

/// The narrowed document, or None when nothing of it stays. `kept` is sorted by name.
fn narrow(
    expanded: &Expanded,
    kept: &[(ActionId, String)],
    settings: &Settings,
    catalog: &Catalog,
    usage_resources: &dyn Fn(&str) -> Option<Vec<String>>,
) -> Option<PolicyDocument> {
    let doc = &expanded.document;
    let mut pool: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut in_place = Vec::new();
    // True while nothing this document grants is dropped or re-scoped: it is then kept as
    // written rather than re-grouped, so a fully used policy is no change at all.
    let mut untouched = true;
    // Every Deny stays, even in a policy whose allows all go: it may guard what another
    // policy allows.
    let mut denies = Vec::new();
    for (statement, granted) in doc.statements().iter().zip(&expanded.grants) {
        if statement.effect == Effect::Deny {
            denies.push(statement.clone());
            continue;
        }
        let stays: Vec<String> = kept
            .iter()
            .filter(|(id, _)| granted.contains(*id))
            .map(|(_, name)| name.clone())
            .collect();
        untouched &= stays.len() == granted.len();
        if stays.is_empty() {
            continue;
        }
        match (
            &statement.resource,
            &statement.condition,
            &statement.principal,
        ) {
            (Some(resources), None, None) => {
                for action in stays {
                    pool.entry(action)
                        .or_default()
                        .extend(resources.iter().cloned());
                }
            }
            // A condition, NotResource or principal stays with its statement.
            _ => {
                let mut narrowed = statement.clone();
                narrowed.action = Some(OneOrMany::from_vec(stays));
                narrowed.not_action = None;
                in_place.push(narrowed);
            }
        }
    }
    let mut groups: BTreeMap<BTreeSet<String>, Vec<String>> = BTreeMap::new();
    for (action, mut resources) in pool {
        if resources.contains("*") {
            resources = BTreeSet::from(["*".to_owned()]);
            let scopable = catalog
                .lookup(&action)
                .is_some_and(|id| !catalog.action(id).resource_types.is_empty());
            if settings.scope_resources
                && scopable
                && let Some(observed) = usage_resources(&action)
            {
                resources = observed.into_iter().collect();
                untouched = false;
            }
        }
        groups.entry(resources).or_default().push(action);
    }
    if untouched {
        return Some(doc.clone());
    }
    let mut statements: Vec<Statement> = groups
        .into_iter()
        .map(|(resources, actions)| Statement::allow(actions, resources.into_iter().collect()))
        .collect();
    statements.extend(in_place);
    statements.extend(denies);
    if statements.is_empty() {
        return None;
    }
    Some(PolicyDocument {
        version: Some(
            doc.version
                .clone()
                .unwrap_or_else(|| crate::policy::document::VERSION_2012.to_owned()),
        ),
        id: doc.id.clone(),
        statement: OneOrMany::Many(statements),
    })
}

/// Granted but not kept: the set, with the evidence per service a reviewer reads with
/// each removed action.
fn removed_actions(
    removed: SetMinus,
    catalog: &Catalog,
    settings: &Settings,
    evidence: &Evidence<'_>,
) -> Removed {
    let window = format!("not seen in {} days of trail", settings.lookback_days);
    let default = if evidence.last_accessed.is_empty() {
        format!("{window}; last accessed: no data")
    } else {
        format!("{window}; last accessed: never")
    };
    // The first record of a service decides, as a lookup by namespace finds it.
    let mut seen = BTreeSet::new();
    let mut by_service = BTreeMap::new();
    for service in evidence.last_accessed {
        if seen.insert(service.namespace.as_str())
            && let Some(ms) = service.last_authenticated_ms
        {
            by_service.insert(
                service.namespace.clone(),
                format!("{window}; service last accessed {}", format_time(ms)),
            );
        }
    }
    Removed::from_set(
        catalog.table(),
        removed,
        Arc::new(RemovedEvidence {
            default,
            by_service,
        }),
    )
}

fn risk_notes(removed: &Removed, parsed: &Parsed, cache: &PlanCache<'_>) -> Vec<Arc<str>> {
    let mut risks: Vec<Arc<str>> = Vec::new();
    let writes = removed.count_level(AccessLevel::Write);
    if writes > 0 {
        risks.push(format!("removes {writes} Write action(s)").into());
    }
    let permissions = removed.count_level(AccessLevel::Permissions);
    if permissions > 0 {
        risks.push(
            format!(
                "removes {permissions} {} action(s)",
                AccessLevel::Permissions
            )
            .into(),
        );
    }
    if !removed.is_empty() {
        for (name, expanded) in &parsed.identity {
            risks.extend(cache.wildcard_risks(name, expanded).iter().cloned());
        }
    }
    risks.dedup();
    risks
}

fn current_inline_size(parsed: &Parsed) -> usize {
    parsed
        .identity
        .iter()
        .filter(|(name, _)| name.starts_with("inline "))
        .map(|(_, expanded)| expanded.document.to_compact().len())
        .sum()
}

/// The role's policies after the proposal, as [`RolePlan::proposed_documents`] names them,
/// the unchanged ones taken from `parsed` rather than parsed again.
fn proposed_named<'p>(plan: &'p RolePlan, parsed: &'p Parsed) -> Vec<(String, &'p PolicyDocument)> {
    let mut out = Vec::new();
    for inline in plan.untouched_inline() {
        let name = format!("inline {}", inline.name);
        if let Some(expanded) = parsed.document(&name) {
            out.push((name, &expanded.document));
        }
    }
    for put in &plan.proposal.put_inline {
        out.push((format!("inline {}", put.name), &put.document));
    }
    for managed in plan.attached_managed() {
        if let Some(expanded) = parsed.document(&managed.arn) {
            out.push((managed.arn.clone(), &expanded.document));
        }
    }
    out
}

/// Meets IAM's inline size limit by compacting action lists into wildcards that match only
/// kept actions (proved against the catalog), or fails naming the size.
fn fit_size(plan: &mut RolePlan, parsed: &Parsed, catalog: &Catalog) -> Result<(), String> {
    let size = |plan: &RolePlan| -> Result<usize, String> {
        Ok(proposed_named(plan, parsed)
            .iter()
            .filter(|(name, _)| name.starts_with("inline "))
            .map(|(_, doc)| doc.to_compact().len())
            .sum())
    };
    plan.inline_size = size(plan)?;
    if plan.inline_size <= INLINE_ROLE_POLICY_LIMIT {
        return Ok(());
    }
    let before = plan.inline_size;
    for put in &mut plan.proposal.put_inline {
        let statements: Vec<Statement> = put
            .document
            .statements()
            .iter()
            .map(|s| compact_statement(s, catalog))
            .collect();
        put.document.statement = OneOrMany::Many(statements);
    }
    plan.inline_size = size(plan)?;
    if plan.inline_size > INLINE_ROLE_POLICY_LIMIT {
        return Err(format!(
            "the proposal needs {} characters of inline policy even with its action lists compacted (IAM allows {INLINE_ROLE_POLICY_LIMIT} per role); split the role's permissions into managed policies by hand",
            plan.inline_size
        ));
    }
    plan.notes.push(format!(
        "action lists compacted into wildcards that match only kept actions (as of catalog {}) to fit IAM's {INLINE_ROLE_POLICY_LIMIT}-character inline limit: {before} -> {} characters",
        catalog.version, plan.inline_size
    ));
    Ok(())
}

/// Replaces each action by the shortest `service:Prefix*` whose matches in the catalog are
/// all in the statement already (a wildcard matching one action stays that action), and a
/// whole service by `service:*`. Names sorted case-insensitively make every prefix a range.
fn compact_statement(statement: &Statement, catalog: &Catalog) -> Statement {
    let Some(actions) = &statement.action else {
        return statement.clone();
    };
    if statement.effect == Effect::Deny {
        return statement.clone();
    }
    let listed: BTreeSet<String> = actions.iter().map(|a| a.to_ascii_lowercase()).collect();
    let mut by_service: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for action in catalog.actions() {
        let lower = action.name.to_ascii_lowercase();
        by_service
            .entry(service_of(&lower).to_owned())
            .or_default()
            .push(lower);
    }
    for names in by_service.values_mut() {
        names.sort();
    }
    let mut out: BTreeSet<String> = BTreeSet::new();
    for action in actions.iter() {
        let lower = action.to_ascii_lowercase();
        let service = service_of(action);
        let Some(names) = by_service.get(service_of(&lower)) else {
            out.insert(action.clone());
            continue;
        };
        let covered = |prefix: &str| -> usize {
            let start = names.partition_point(|n| n.as_str() < prefix);
            let range = names[start..]
                .iter()
                .take_while(|n| n.starts_with(prefix))
                .collect::<Vec<_>>();
            if range.iter().all(|n| listed.contains(*n)) {
                range.len()
            } else {
                0
            }
        };
        let head = service.len() + 1;
        let shortest = (head..=lower.len())
            .filter(|&end| lower.is_char_boundary(end))
            .find(|&end| covered(&lower[..end]) > 0);
        match shortest {
            Some(end) if end == head => {
                out.insert(format!("{service}:*"));
            }
            Some(end) if covered(&lower[..end]) > 1 => {
                // Keep the catalog's spelling of the prefix for readability.
                out.insert(format!("{}*", &action[..end]));
            }
            _ => {
                out.insert(action.clone());
            }
        }
    }
    let mut compacted = statement.clone();
    compacted.action = Some(OneOrMany::from_vec(out.into_iter().collect()));
    compacted
}

/// The safety net: every used action on every observed resource must be decided at least
/// as favourably by the proposal as by the current policies.
fn check_never_denies_used(
    plan: &RolePlan,
    parsed: &Parsed,
    evidence: &Evidence<'_>,
    cutoff_day: u32,
) -> Result<(), String> {
    let Some(usage) = evidence.usage else {
        return Ok(());
    };
    let proposed = proposed_named(plan, parsed);
    let boundary: Vec<NamedPolicy<'_>> = parsed
        .boundary
        .iter()
        .map(|(name, e)| NamedPolicy {
            name,
            document: &e.document,
        })
        .collect();
    let before = parsed.named();
    let after: Vec<NamedPolicy<'_>> = proposed
        .iter()
        .map(|(name, document)| NamedPolicy { name, document })
        .collect();
    let context = Context::partial();
    for (action, use_) in &usage.actions {
        if use_.counts.since(cutoff_day).is_none() {
            continue;
        }
        let resources: Vec<&str> = if use_.resources.is_empty() {
            vec!["*"]
        } else {
            use_.resources.keys().map(String::as_str).collect()
        };
        for resource in resources {
            let request = Request {
                action,
                resource,
                principal: Some(&plan.role_arn),
                context: &context,
            };
            let was = evaluate(&before, &boundary, &request).decision;
            let now = evaluate(&after, &boundary, &request).decision;
            let worse = match was {
                Decision::Allowed => now != Decision::Allowed,
                Decision::DependsOnCondition => {
                    matches!(now, Decision::ImplicitlyDenied | Decision::ExplicitlyDenied)
                }
                _ => false,
            };
            if worse {
                return Err(format!(
                    "safety check failed: the proposal would turn {was} into {now} for {action} on {resource}, which the role was seen using; no plan is made for this role (please report this)"
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
