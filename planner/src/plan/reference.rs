//! The planner as it was before documents were cached and action sets became bitsets
//! (commit be02c2c): the reference [`propose`] that the tests compare the optimised one with,
//! role by role and field by field, on the bench's roles and the unit tests' cases.

use std::collections::{BTreeMap, BTreeSet};

use super::{
    DAY_MS, Evidence, INLINE_ROLE_POLICY_LIMIT, KeepReason, KeptAction, Proposal, ProposedInline,
    RemovedAction, RolePlan, RolePolicies, RoleStatus, Settings, UNOBSERVABLE, compact_statement,
    cross_account_note, inline_name_for, service_of,
};
use crate::catalog::{AccessLevel, Catalog};
use crate::policy::{
    Context, Decision, Effect, OneOrMany, PolicyDocument, Request, Statement, evaluate, named,
    organization_closes,
};
use crate::trail::format_time;
use crate::usage::PrincipalUsage;

fn parse(text: &str, name: &str) -> Result<PolicyDocument, String> {
    PolicyDocument::from_iam(text).map_err(|e| format!("policy {name}: {e}"))
}

/// The current identity policies of a role and its boundary, parsed.
struct Parsed {
    identity: Vec<(String, PolicyDocument)>,
    boundary: Option<(String, PolicyDocument)>,
}

fn parse_current(current: &RolePolicies) -> Result<Parsed, String> {
    let mut identity = Vec::new();
    for inline in &current.inline {
        let doc = parse(&inline.document, &format!("inline {}", inline.name))?;
        identity.push((format!("inline {}", inline.name), doc));
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

/// The catalog actions an Allow statement grants.
fn granted_by(statement: &Statement, catalog: &Catalog) -> BTreeSet<String> {
    let expand = |patterns: &OneOrMany<String>| -> BTreeSet<String> {
        patterns
            .iter()
            .flat_map(|p| catalog.expand(p))
            .map(|id| catalog.action(id).name.clone())
            .collect()
    };
    match (&statement.action, &statement.not_action) {
        (Some(actions), _) => expand(actions),
        (None, Some(not)) => {
            let excluded = expand(not);
            catalog
                .actions()
                .iter()
                .map(|a| a.name.clone())
                .filter(|a| !excluded.contains(a))
                .collect()
        }
        (None, None) => BTreeSet::new(),
    }
}

/// Plans one role, as whittle did before the plan cache and action bitsets.
pub fn propose(
    current: &RolePolicies,
    evidence: &Evidence<'_>,
    settings: &Settings,
    catalog: &Catalog,
) -> RolePlan {
    let parsed = match parse_current(current) {
        Ok(parsed) => parsed,
        Err(error) => return RolePlan::failed(current, error),
    };
    let cutoff_ms = settings.now_ms - i64::from(settings.lookback_days) * DAY_MS;
    let cutoff_day = u32::try_from(cutoff_ms.div_euclid(DAY_MS)).unwrap_or(0);

    // Everything the current identity policies grant (Allow statements, expanded).
    let mut granted = BTreeSet::new();
    let mut notes = Vec::new();
    for (name, doc) in &parsed.identity {
        for statement in doc.statements() {
            if statement.effect == Effect::Allow {
                granted.extend(granted_by(statement, catalog));
                for action in statement.action.iter().flat_map(OneOrMany::iter) {
                    if !action.contains(['*', '?']) && catalog.lookup(action).is_none() {
                        notes.push(format!(
                            "{name} grants `{action}`, which is not in the IAM action catalog ({}): whittle cannot see it used, so it stays only where {name} is left as written",
                            catalog.version
                        ));
                    }
                }
            }
        }
    }

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
            if !granted.contains(action) {
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
            {
                let name = &catalog.action(id).name;
                if granted.contains(name) {
                    keep(
                        &mut kept,
                        name,
                        KeepReason::LastAccessed,
                        format!("IAM last accessed {}", format_time(*last)),
                    );
                }
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
            for action in granted.iter().filter(|a| a.starts_with(&prefix)) {
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
    for action in evidence.needed {
        if let Some(id) = catalog.lookup(action) {
            let name = &catalog.action(id).name;
            if granted.contains(name) {
                keep(
                    &mut kept,
                    name,
                    KeepReason::Needed,
                    "recorded as needed by a failed trial".to_owned(),
                );
            }
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
            if granted.contains(name)
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
            if granted.contains(*action)
                && !kept.contains_key(*action)
                && !closed(action, "unobservable")
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

    // The observation window.
    let observed = evidence.usage.and_then(PrincipalUsage::observed);
    let observed_days = observed.map_or(0, |(first, _)| {
        u32::try_from((settings.now_ms - first).max(0) / DAY_MS).unwrap_or(u32::MAX)
    });

    // Removed: granted but not kept, summarised per service when a whole service goes.
    let removed = removed_actions(&granted, &kept, catalog, settings, evidence);
    let mut risks = risk_notes(&removed, &parsed);

    let mut plan = RolePlan {
        role_arn: current.role_arn.clone(),
        status: RoleStatus::NoChange,
        error: None,
        read_at: None,
        observed_days,
        current: current.clone(),
        proposal: Proposal::default(),
        kept: kept.values().cloned().collect(),
        removed: removed.into(),
        risks: Vec::new(),
        notes,
        inline_size: 0,
        split: None,
    };
    if observed.is_none() || observed_days < settings.min_observation_days {
        plan.status = RoleStatus::NotShrunk;
        risks.push(match observed {
            None => "no CloudTrail usage recorded for this role: not shrunk (mine its trail first)".to_owned(),
            Some(_) => format!(
                "observed for {observed_days} day(s), fewer than [planner] min_observation_days = {}: not shrunk",
                settings.min_observation_days
            ),
        });
        plan.risks = risks.into_iter().map(Into::into).collect();
        plan.inline_size = current_inline_size(&parsed);
        return plan;
    }
    plan.risks = risks.into_iter().map(Into::into).collect();

    // Narrow every identity policy.
    let usage_resources = |action: &str| -> Option<Vec<String>> {
        let use_ = evidence.usage?.actions.get(action)?;
        (!use_.resources_truncated && !use_.resources.is_empty())
            .then(|| use_.resources.keys().cloned().collect())
    };
    let kept_names: BTreeSet<String> = kept.keys().cloned().collect();
    let mut proposal = Proposal::default();
    for inline in &current.inline {
        let name = format!("inline {}", inline.name);
        let Some((_, doc)) = parsed.identity.iter().find(|(n, _)| *n == name) else {
            continue;
        };
        match narrow(doc, &kept_names, settings, catalog, &usage_resources) {
            Some(narrowed) if narrowed == *doc => {}
            Some(narrowed) => proposal.put_inline.push(ProposedInline {
                name: inline.name.clone(),
                document: narrowed,
            }),
            None => proposal.delete_inline.push(inline.name.clone()),
        }
    }
    for managed in &current.managed {
        let Some((_, doc)) = parsed.identity.iter().find(|(n, _)| *n == managed.arn) else {
            continue;
        };
        match narrow(doc, &kept_names, settings, catalog, &usage_resources) {
            Some(narrowed) if narrowed == *doc => {}
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
    if let Err(error) = fit_size(&mut plan, catalog) {
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

/// The narrowed document, or None when nothing of it stays.
fn narrow(
    doc: &PolicyDocument,
    kept: &BTreeSet<String>,
    settings: &Settings,
    catalog: &Catalog,
    usage_resources: &dyn Fn(&str) -> Option<Vec<String>>,
) -> Option<PolicyDocument> {
    let mut pool: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut in_place = Vec::new();
    // True while nothing this document grants is dropped or re-scoped: it is then kept as
    // written rather than re-grouped, so a fully used policy is no change at all.
    let mut untouched = true;
    // Every Deny stays, even in a policy whose allows all go: it may guard what another
    // policy allows.
    let mut denies = Vec::new();
    for statement in doc.statements() {
        if statement.effect == Effect::Deny {
            denies.push(statement.clone());
            continue;
        }
        let granted = granted_by(statement, catalog);
        let stays: Vec<String> = granted.intersection(kept).cloned().collect();
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

fn removed_actions(
    granted: &BTreeSet<String>,
    kept: &BTreeMap<String, KeptAction>,
    catalog: &Catalog,
    settings: &Settings,
    evidence: &Evidence<'_>,
) -> Vec<RemovedAction> {
    let mut by_service: BTreeMap<&str, Vec<&String>> = BTreeMap::new();
    let mut granted_per_service: BTreeMap<&str, usize> = BTreeMap::new();
    for action in granted {
        *granted_per_service.entry(service_of(action)).or_default() += 1;
        if !kept.contains_key(action) {
            by_service
                .entry(service_of(action))
                .or_default()
                .push(action);
        }
    }
    let last_accessed = |service: &str| -> String {
        match evidence
            .last_accessed
            .iter()
            .find(|s| s.namespace == service)
            .and_then(|s| s.last_authenticated_ms)
        {
            Some(ms) => format!("service last accessed {}", format_time(ms)),
            None if evidence.last_accessed.is_empty() => "last accessed: no data".to_owned(),
            None => "last accessed: never".to_owned(),
        }
    };
    let window = format!("not seen in {} days of trail", settings.lookback_days);
    let mut out = Vec::new();
    for (service, actions) in by_service {
        let all_of_service = catalog.service_actions(service).len();
        let granted_of_service = granted_per_service.get(service).copied().unwrap_or(0);
        if actions.len() > 1
            && actions.len() == all_of_service
            && granted_of_service == actions.len()
        {
            let levels: BTreeSet<String> = actions
                .iter()
                .filter_map(|a| catalog.lookup(a))
                .map(|id| catalog.action(id).level.to_string())
                .collect();
            out.push(RemovedAction {
                action: format!("{service}:*"),
                actions: actions.len(),
                access_level: levels.into_iter().collect::<Vec<_>>().join(", "),
                evidence: format!("{window}; {}", last_accessed(service)),
            });
            continue;
        }
        for action in actions {
            out.push(RemovedAction {
                action: action.clone(),
                actions: 1,
                access_level: catalog
                    .lookup(action)
                    .map(|id| catalog.action(id).level.to_string())
                    .unwrap_or_default(),
                evidence: format!("{window}; {}", last_accessed(service)),
            });
        }
    }
    out
}

fn risk_notes(removed: &[RemovedAction], parsed: &Parsed) -> Vec<String> {
    let mut risks = Vec::new();
    let count_level = |level: &str| -> usize {
        removed
            .iter()
            .filter(|r| r.access_level.split(", ").any(|l| l == level))
            .map(|r| r.actions)
            .sum()
    };
    let writes = count_level("Write");
    if writes > 0 {
        risks.push(format!("removes {writes} Write action(s)"));
    }
    let permissions = count_level(&AccessLevel::Permissions.to_string());
    if permissions > 0 {
        risks.push(format!(
            "removes {permissions} {} action(s)",
            AccessLevel::Permissions
        ));
    }
    for (name, doc) in &parsed.identity {
        for statement in doc.statements() {
            if statement.effect != Effect::Allow {
                continue;
            }
            for action in statement.action.iter().flat_map(OneOrMany::iter) {
                if action.contains(['*', '?']) && !removed.is_empty() {
                    risks.push(format!(
                        "replaces the wildcard `{action}` of {name} with explicit actions"
                    ));
                }
            }
            if statement.not_action.is_some() && !removed.is_empty() {
                risks.push(format!(
                    "replaces a NotAction statement of {name} with explicit actions"
                ));
            }
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
        .map(|(_, doc)| doc.to_compact().len())
        .sum()
}

/// Meets IAM's inline size limit by compacting action lists into wildcards that match only
/// kept actions (proved against the catalog), or fails naming the size.
fn fit_size(plan: &mut RolePlan, catalog: &Catalog) -> Result<(), String> {
    let size = |plan: &RolePlan| -> Result<usize, String> {
        Ok(plan
            .proposed_documents()?
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
    let proposed = plan.proposed_documents()?;
    let boundary = named(parsed.boundary.as_slice());
    let before = named(&parsed.identity);
    let after = named(&proposed);
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
