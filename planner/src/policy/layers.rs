//! The whole evaluation logic of AWS's "Policy evaluation logic" documentation: every
//! policy layer, both accounts of a cross-account request, and the rules AWS applies to
//! everyone (`reference_policies_evaluation-logic_policy-eval-denyallow`,
//! `reference_policies_evaluation-logic-cross-account`).
//!
//! 1. Operations that need no permission are allowed; modifications of resources AWS owns
//!    are refused. No policy changes either.
//! 2. An explicit `Deny` in any layer that applies wins: SCPs, RCPs, the resource's
//!    policy, identity policies, the permissions boundary, session policies.
//! 3. RCPs (of the resource's account, for the services they cover) and SCPs (of the
//!    principal's account) must each allow at every level from the organization root down
//!    to the account.
//! 4. Then a grant. Within one account, the identity policies (capped by the boundary and
//!    session policies) or the resource's policy may grant; how far the resource's policy
//!    reaches depends on whom it names ([`Named`]): the caller itself grants on its own, the
//!    role behind a session only within the session's boundary and session policies, the
//!    account only delegates to identity policies. A role's trust policy and a KMS key
//!    policy must allow even within the account. Across accounts, both sides must allow:
//!    the principal's policies and the resource's policy.
//!
//! Conditions stay three-valued as in [`super::eval`]: the decision is computed as one
//! formula over the layers' truths, so an unknown condition yields `DependsOnCondition` only
//! when it can change the answer.

use super::document::{Effect, Statement};
use super::eval::{
    Context, Decision, Evaluation, Layer, NamedPolicy, Request, StatementRef, Truth,
    statement_matches,
};
use super::pattern::action_matches;
use super::principal::{Caller, Named, not_principal_spares, principal_names};
use super::rules::{
    RequiredPolicy, aws_owned_refusal, needs_no_permission, rcps_cover, resource_account,
};

/// The resource's own policies, or the fact that they are left out.
#[derive(Debug, Clone, Default)]
pub enum ResourcePolicies<'a> {
    /// Not part of the question: the answer is the principal's side alone, as if the
    /// resource's side allowed (the planner asks what a role's own policies allow).
    #[default]
    NotConsidered,
    /// The resource's policies; none means the resource has no resource-based policy.
    Known(Vec<NamedPolicy<'a>>),
}

/// Every policy that may apply to a request. An empty list is a layer that is absent: no
/// boundary, no session policy, an account outside any organization.
#[derive(Debug, Clone, Default)]
pub struct Policies<'a> {
    /// The principal's identity-based policies (a user's include its groups').
    pub identity: Vec<NamedPolicy<'a>>,
    /// The principal's permissions boundary.
    pub boundary: Vec<NamedPolicy<'a>>,
    /// The session policies of a role or federated user session.
    pub session: Vec<NamedPolicy<'a>>,
    /// The resource's policy (bucket, key, queue policy; a role's trust policy).
    pub resource: ResourcePolicies<'a>,
    /// The principal's SCPs, one list per level from the organization root to its account.
    pub scp: Vec<Vec<NamedPolicy<'a>>>,
    /// The resource's RCPs, one list per level from the organization root to its account.
    pub rcp: Vec<Vec<NamedPolicy<'a>>>,
}

/// One request, with who makes it and where the resource lives.
#[derive(Debug, Clone, Copy)]
pub struct AccessRequest<'a> {
    /// `service:Action`, any case.
    pub action: &'a str,
    /// The resource ARN, or `*` for actions without resource-level permissions.
    pub resource: &'a str,
    pub caller: &'a Caller,
    /// The resource's account when its ARN names none (an S3 bucket); the ARN's account
    /// wins. Unknown, the resource is taken to be in the principal's account.
    pub resource_account: Option<&'a str>,
    pub context: &'a Context,
}

impl Context {
    /// Sets the keys IAM derives from the caller when they are not set: `aws:PrincipalArn`
    /// (a session's role), `aws:PrincipalAccount`, `aws:username` of an IAM user,
    /// `aws:PrincipalIsAWSService` and `aws:PrincipalServiceName`.
    pub fn with_caller(mut self, caller: &Caller) -> Context {
        let mut derived: Vec<(&str, String)> = Vec::new();
        if let Some(arn) = caller.principal_arn() {
            derived.push(("aws:PrincipalArn", arn));
        }
        if let Some(account) = caller.account() {
            derived.push(("aws:PrincipalAccount", account.to_owned()));
        }
        if let Caller::User { name, .. } = caller {
            derived.push(("aws:username", name.clone()));
        }
        match caller {
            Caller::Service(name) => {
                derived.push(("aws:PrincipalIsAWSService", "true".to_owned()));
                derived.push(("aws:PrincipalServiceName", name.clone()));
            }
            Caller::WebIdentity(_) => {}
            _ => derived.push(("aws:PrincipalIsAWSService", "false".to_owned())),
        }
        for (key, value) in derived {
            if self.get(key).is_none() {
                self.insert(key, &value);
            }
        }
        self
    }

    /// Sets `aws:ResourceAccount` when it is not set.
    pub fn with_resource_account(mut self, account: &str) -> Context {
        if self.get("aws:ResourceAccount").is_none() {
            self.insert("aws:ResourceAccount", account);
        }
        self
    }
}

/// Statements of one kind found to apply: surely, or depending on unknown conditions.
#[derive(Debug, Default)]
struct Found {
    sure: Vec<StatementRef>,
    unsure: Vec<StatementRef>,
}

impl Found {
    fn add(&mut self, truth: Truth, at: StatementRef) {
        match truth {
            Truth::True => self.sure.push(at),
            Truth::Unknown => self.unsure.push(at),
            Truth::False => {}
        }
    }

    fn truth(&self) -> Truth {
        if !self.sure.is_empty() {
            Truth::True
        } else if !self.unsure.is_empty() {
            Truth::Unknown
        } else {
            Truth::False
        }
    }
}

/// What one layer's statements say about the request.
#[derive(Debug, Default)]
struct Scan {
    deny: Found,
    /// Allows, by how strongly their principal names the caller; layers without principals
    /// name the principal they are attached to, [`Named::Caller`].
    allow_caller: Found,
    allow_role: Found,
    allow_account: Found,
}

impl Scan {
    fn of(
        policies: &[NamedPolicy<'_>],
        layer: Layer,
        request: &Request<'_>,
        caller: &Caller,
        has_boundary: bool,
    ) -> Scan {
        let mut scan = Scan::default();
        for policy in policies {
            for (index, statement) in policy.document.statements().iter().enumerate() {
                let (named, applies) = applies_to(statement, policy, request, caller, has_boundary);
                if applies == Truth::False {
                    continue;
                }
                let at = StatementRef::new(policy, index, statement, layer);
                match (statement.effect, named) {
                    (Effect::Deny, _) => scan.deny.add(applies, at),
                    (Effect::Allow, Named::Caller) => scan.allow_caller.add(applies, at),
                    (Effect::Allow, Named::Role) => scan.allow_role.add(applies, at),
                    (Effect::Allow, Named::Account) => scan.allow_account.add(applies, at),
                    (Effect::Allow, Named::No) => {}
                }
            }
        }
        scan
    }

    /// Whether any statement allows, whoever it names (for layers without principals).
    fn allows(&self) -> Truth {
        self.allow_caller
            .truth()
            .or(self.allow_role.truth())
            .or(self.allow_account.truth())
    }

    fn all_allows(&self) -> impl Iterator<Item = &Found> {
        [&self.allow_caller, &self.allow_role, &self.allow_account].into_iter()
    }
}

/// Whether `statement` applies to the request and how strongly it names the caller.
fn applies_to(
    statement: &Statement,
    policy: &NamedPolicy<'_>,
    request: &Request<'_>,
    caller: &Caller,
    has_boundary: bool,
) -> (Named, Truth) {
    let (named, spared) = match (&statement.principal, &statement.not_principal) {
        (Some(principal), _) => (principal_names(principal, caller), Truth::False),
        (None, Some(principal)) => (
            Named::Caller,
            not_principal_spares(principal, caller, has_boundary),
        ),
        // A statement without principal elements is about the principal (or, in an SCP,
        // the account) the policy is attached to.
        (None, None) => (Named::Caller, Truth::False),
    };
    if named == Named::No || spared == Truth::True {
        return (named, Truth::False);
    }
    let matches = statement_matches(statement, policy.document, request);
    (named, matches.and(spared.negate()))
}

/// An organization policy type's levels, from the root down to the account.
struct Levels {
    deny: Found,
    /// Each level's allows.
    levels: Vec<(String, Found)>,
}

impl Levels {
    fn of(
        levels: &[Vec<NamedPolicy<'_>>],
        layer: Layer,
        request: &Request<'_>,
        caller: &Caller,
    ) -> Levels {
        let mut deny = Found::default();
        let mut out = Vec::new();
        for level in levels {
            let scan = Scan::of(level, layer, request, caller, false);
            deny.sure.extend(scan.deny.sure);
            deny.unsure.extend(scan.deny.unsure);
            let mut allow = Found::default();
            for found in [scan.allow_caller, scan.allow_role, scan.allow_account] {
                allow.sure.extend(found.sure);
                allow.unsure.extend(found.unsure);
            }
            let names: Vec<&str> = level.iter().map(|p| p.name).collect();
            out.push((names.join(", "), allow));
        }
        Levels { deny, levels: out }
    }

    /// Every level allows.
    fn allows(&self) -> Truth {
        Truth::all(self.levels.iter().map(|(_, found)| found.truth()))
    }

    /// The first level that allows nothing: its position from 1 and its policies' names.
    fn first_closed(&self) -> Option<(usize, &str)> {
        self.levels
            .iter()
            .position(|(_, found)| found.truth() == Truth::False)
            .map(|i| (i + 1, self.levels[i].0.as_str()))
    }
}

/// Which part of the grant formula applies to the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Grant {
    /// A service or identity provider's user: only the resource's policy can let it in.
    NonAccount,
    /// The resource's policy is left out: the principal's side decides.
    PrincipalSide,
    /// Principal and resource in different accounts: both sides must allow.
    CrossAccount,
    /// One account, where the resource's policy must allow (trust and key policies).
    SameAccountRequired(RequiredPolicy),
    /// One account, where identity policies or the resource's policy may grant.
    SameAccount,
}

/// Decides `request` against every layer of `policies` as AWS does.
pub fn decide(policies: &Policies<'_>, request: &AccessRequest<'_>) -> Evaluation {
    let caller = request.caller;
    let what = format!("{} on {}", request.action, request.resource);
    if let Some(why) = needs_no_permission(request.action) {
        return verdict(
            Decision::Allowed,
            Some(Layer::Aws),
            Vec::new(),
            why.to_owned(),
        );
    }
    if let Some(why) = aws_owned_refusal(request.action, request.resource) {
        return verdict(
            Decision::ExplicitlyDenied,
            Some(Layer::Aws),
            Vec::new(),
            why,
        );
    }

    let mut notes = Vec::new();
    let caller_arn = caller_arn(caller);
    let plain = Request {
        action: request.action,
        resource: request.resource,
        principal: caller_arn.as_deref(),
        context: request.context,
    };

    // Which layers apply to this caller and this action.
    let account_principal = caller.is_account_principal();
    let is_root = matches!(caller, Caller::Root { .. });
    let mut ignore = |given: bool, note: String| {
        if given {
            notes.push(note);
        }
    };
    let identity_applies = account_principal && !is_root;
    ignore(
        !identity_applies && !policies.identity.is_empty(),
        format!("identity-based policies do not apply to {caller}: left out"),
    );
    let boundary_applies = identity_applies && !policies.boundary.is_empty();
    ignore(
        !identity_applies && !policies.boundary.is_empty(),
        format!("a permissions boundary does not apply to {caller}: left out"),
    );
    let session_applies =
        identity_applies && !matches!(caller, Caller::User { .. }) && !policies.session.is_empty();
    ignore(
        !session_applies && !policies.session.is_empty(),
        format!(
            "session policies apply to role and federated user sessions, not to {caller}: left out"
        ),
    );
    let scp_applies = account_principal && !caller.is_service_linked();
    ignore(
        !scp_applies && !policies.scp.is_empty(),
        format!(
            "SCPs restrict principals of member accounts, except service-linked roles: they do not apply to {caller}"
        ),
    );
    let rcp_applies = rcps_cover(request.action) && !caller.is_service_linked();
    ignore(
        !rcp_applies && !policies.rcp.is_empty(),
        if caller.is_service_linked() {
            format!("RCPs do not restrict service-linked roles: they do not apply to {caller}")
        } else {
            format!(
                "RCPs cover only some services (S3, STS, KMS, SQS, Secrets Manager, ECR, OpenSearch Serverless, CloudWatch Logs, Cognito): they do not apply to {}",
                request.action
            )
        },
    );

    // The accounts on both sides. A request on `*` (an action without resource-level
    // permissions) stays in the principal's account.
    let resource_account = match request.resource {
        "*" => None,
        arn => resource_account(arn).or(request.resource_account),
    };
    let principal_account = caller.account();
    let arn_names_no_account = request
        .resource
        .split(':')
        .nth(4)
        .is_some_and(str::is_empty);
    if resource_account.is_none()
        && arn_names_no_account
        && let Some(account) = principal_account
    {
        notes.push(format!(
            "the resource's ARN names no account: it is taken to be the principal's, {account}"
        ));
    }
    let cross_account = matches!(
        (principal_account, resource_account),
        (Some(p), Some(r)) if p != r
    );
    let required = RequiredPolicy::of(request.action, request.resource);
    let resource_policies = match &policies.resource {
        ResourcePolicies::Known(list) => Some(list.as_slice()),
        ResourcePolicies::NotConsidered => None,
    };
    let grant = match (
        account_principal,
        resource_policies,
        cross_account,
        required,
    ) {
        (false, _, _, _) => Grant::NonAccount,
        (true, None, _, _) => Grant::PrincipalSide,
        (true, Some(_), true, _) => Grant::CrossAccount,
        (true, Some(_), false, Some(required)) => Grant::SameAccountRequired(required),
        (true, Some(_), false, None) => Grant::SameAccount,
    };
    if grant == Grant::PrincipalSide && (cross_account || required.is_some()) {
        notes.push(match required {
            Some(required) => format!(
                "the {} must allow this request too; it is not considered",
                required.name()
            ),
            None => "the resource is in another account, whose resource-based policy must allow this request too; it is not considered".to_owned(),
        });
    }

    // What each layer says.
    let none: &[NamedPolicy<'_>] = &[];
    let has_boundary = boundary_applies;
    let identity = Scan::of(
        if identity_applies {
            &policies.identity
        } else {
            none
        },
        Layer::Identity,
        &plain,
        caller,
        has_boundary,
    );
    let boundary = Scan::of(
        if boundary_applies {
            &policies.boundary
        } else {
            none
        },
        Layer::Boundary,
        &plain,
        caller,
        has_boundary,
    );
    let session = Scan::of(
        if session_applies {
            &policies.session
        } else {
            none
        },
        Layer::Session,
        &plain,
        caller,
        has_boundary,
    );
    let resource = Scan::of(
        resource_policies.unwrap_or_default(),
        Layer::Resource,
        &plain,
        caller,
        has_boundary,
    );
    let scp = Levels::of(
        if scp_applies { &policies.scp[..] } else { &[] },
        Layer::Scp,
        &plain,
        caller,
    );
    let rcp = Levels::of(
        if rcp_applies { &policies.rcp[..] } else { &[] },
        Layer::Rcp,
        &plain,
        caller,
    );

    // 1. An explicit deny anywhere, in the order AWS's flow chart looks.
    let denies = [
        &rcp.deny,
        &scp.deny,
        &resource.deny,
        &identity.deny,
        &boundary.deny,
        &session.deny,
    ];
    let sure_denies: Vec<StatementRef> = denies.iter().flat_map(|d| d.sure.clone()).collect();
    if let Some(first) = sure_denies.first() {
        let layer = first.layer;
        let reason = format!("explicitly denied by {}", join(&sure_denies));
        let mut evaluation = verdict(Decision::ExplicitlyDenied, Some(layer), sure_denies, reason);
        evaluation.notes = notes;
        return evaluation;
    }
    let denied = Truth::any(denies.iter().map(|d| d.truth()));

    // 2. The principal's side: identity policies capped by the boundary and the session.
    let i = if is_root {
        Truth::True
    } else {
        identity.allows()
    };
    let b = if has_boundary {
        boundary.allows()
    } else {
        Truth::True
    };
    let federated = matches!(caller, Caller::FederatedUser { .. });
    let s = if session_applies {
        session.allows()
    } else {
        // "If there is no session policy, the code checks whether the principal is a role
        // session. If the principal is a role session, then the request is Allowed.
        // Otherwise, the request is implicitly denied": a federated user session without
        // session policies has no permissions of its own.
        Truth::from(!federated)
    };
    let principal_side = i.and(b).and(s);
    let (rc, rr, ra) = (
        resource.allow_caller.truth(),
        resource.allow_role.truth(),
        resource.allow_account.truth(),
    );

    // 3. The grant, by the formula that fits the request.
    let granted = match grant {
        Grant::NonAccount => match resource_policies {
            Some(_) => rc,
            None => Truth::True,
        },
        Grant::PrincipalSide => principal_side,
        Grant::CrossAccount => principal_side.and(rc.or(rr).or(ra)),
        Grant::SameAccountRequired(_) => rc.or(rr.and(b).and(s)).or(ra.and(principal_side)),
        Grant::SameAccount => rc.or(rr.and(b).and(s)).or(principal_side),
    };
    if grant == Grant::NonAccount && resource_policies.is_none() {
        notes.push(format!(
            "only a resource-based policy can let {caller} in, and it is not considered"
        ));
    }
    let rcp_ok = rcp.allows();
    let scp_ok = scp.allows();
    let allowed = denied.negate().and(rcp_ok).and(scp_ok).and(granted);

    let mut evaluation = match allowed {
        Truth::True => {
            // The path that granted: the resource's policy naming the caller, the role with
            // the session's limits, or the principal's own policies.
            let mut deciding: Vec<StatementRef> = Vec::new();
            let mut parts: Vec<String> = Vec::new();
            let principal_refs = |deciding: &mut Vec<StatementRef>| {
                deciding.extend(identity.all_allows().flat_map(|f| f.sure.clone()));
                deciding.extend(boundary.all_allows().flat_map(|f| f.sure.clone()));
                deciding.extend(session.all_allows().flat_map(|f| f.sure.clone()));
            };
            let limits_refs = |deciding: &mut Vec<StatementRef>| {
                deciding.extend(boundary.all_allows().flat_map(|f| f.sure.clone()));
                deciding.extend(session.all_allows().flat_map(|f| f.sure.clone()));
            };
            let layer = match grant {
                Grant::NonAccount => {
                    deciding.extend(resource.allow_caller.sure.clone());
                    Layer::Resource
                }
                Grant::PrincipalSide => {
                    principal_refs(&mut deciding);
                    Layer::Identity
                }
                Grant::CrossAccount => {
                    principal_refs(&mut deciding);
                    let by = [
                        &resource.allow_caller,
                        &resource.allow_role,
                        &resource.allow_account,
                    ]
                    .into_iter()
                    .find(|f| f.truth() == Truth::True);
                    deciding.extend(by.map(|f| f.sure.clone()).unwrap_or_default());
                    Layer::Resource
                }
                Grant::SameAccount | Grant::SameAccountRequired(_) => {
                    if rc == Truth::True {
                        deciding.extend(resource.allow_caller.sure.clone());
                        Layer::Resource
                    } else if rr.and(b).and(s) == Truth::True {
                        deciding.extend(resource.allow_role.sure.clone());
                        limits_refs(&mut deciding);
                        Layer::Resource
                    } else {
                        if matches!(grant, Grant::SameAccountRequired(_)) {
                            deciding.extend(resource.allow_account.sure.clone());
                        }
                        principal_refs(&mut deciding);
                        Layer::Identity
                    }
                }
            };
            if is_root && layer == Layer::Identity {
                parts.push("the root user's full access to its account".to_owned());
            }
            for (_, found) in rcp.levels.iter().chain(&scp.levels) {
                deciding.extend(found.sure.first().cloned());
            }
            if !deciding.is_empty() {
                parts.push(join(&deciding));
            }
            let reason = format!("allowed by {}", parts.join(" and "));
            verdict(Decision::Allowed, Some(layer), deciding, reason)
        }
        Truth::False => {
            let (layer, reason) = if rcp_ok == Truth::False {
                let (level, names) = rcp.first_closed().unwrap_or((0, ""));
                (
                    Layer::Rcp,
                    format!(
                        "no RCP statement at level {level} of {} ({names}) allows {what}: every level from the organization root to the resource's account must allow it",
                        rcp.levels.len()
                    ),
                )
            } else if scp_ok == Truth::False {
                let (level, names) = scp.first_closed().unwrap_or((0, ""));
                (
                    Layer::Scp,
                    format!(
                        "no SCP statement at level {level} of {} ({names}) allows {what}: every level from the organization root to the principal's account must allow it",
                        scp.levels.len()
                    ),
                )
            } else {
                let facts = Facts {
                    what: &what,
                    caller,
                    i,
                    b,
                    s,
                    rr,
                    ra,
                    federated,
                    resource_given: resource_policies.is_some_and(|list| !list.is_empty()),
                    principal_account,
                    resource_account,
                };
                facts.denial(grant)
            };
            verdict(Decision::ImplicitlyDenied, Some(layer), Vec::new(), reason)
        }
        Truth::Unknown => {
            let mut undecided: Vec<StatementRef> =
                denies.iter().flat_map(|d| d.unsure.clone()).collect();
            let unknown = |truth: Truth, found: &Found, out: &mut Vec<StatementRef>| {
                if truth == Truth::Unknown {
                    out.extend(found.unsure.iter().cloned());
                }
            };
            if rcp_ok == Truth::Unknown {
                for (_, found) in &rcp.levels {
                    unknown(found.truth(), found, &mut undecided);
                }
            }
            if scp_ok == Truth::Unknown {
                for (_, found) in &scp.levels {
                    unknown(found.truth(), found, &mut undecided);
                }
            }
            if granted == Truth::Unknown {
                for scan in [&resource, &identity, &boundary, &session] {
                    for found in scan.all_allows() {
                        unknown(found.truth(), found, &mut undecided);
                    }
                }
            }
            let reason = format!(
                "{what} depends on conditions the context does not decide: {}",
                undecided
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            let mut evaluation = verdict(Decision::DependsOnCondition, None, Vec::new(), reason);
            evaluation.undecided = undecided;
            evaluation
        }
    };
    evaluation.notes = notes;
    evaluation
}

/// What an implicit denial is explained with.
struct Facts<'a> {
    what: &'a str,
    caller: &'a Caller,
    i: Truth,
    b: Truth,
    s: Truth,
    rr: Truth,
    ra: Truth,
    federated: bool,
    resource_given: bool,
    principal_account: Option<&'a str>,
    resource_account: Option<&'a str>,
}

impl Facts<'_> {
    /// The layer that denied a request no grant allowed, and why, in a sentence.
    fn denial(&self, grant: Grant) -> (Layer, String) {
        let what = self.what;
        let caller = self.caller;
        let no_resource_statement = if self.resource_given {
            format!("no statement of the resource-based policy allows {caller} {what}")
        } else {
            "the resource has no resource-based policy".to_owned()
        };
        match grant {
            Grant::NonAccount => (
                Layer::Resource,
                format!(
                    "only the resource's policy can let {caller} in, and {no_resource_statement}"
                ),
            ),
            Grant::PrincipalSide => self.principal_side(),
            Grant::CrossAccount => {
                if self.i.and(self.b).and(self.s) == Truth::False {
                    return self.principal_side();
                }
                (
                    Layer::Resource,
                    format!(
                        "the resource is in account {}, not the principal's {}: cross-account access needs the resource's policy to allow it too, and {no_resource_statement}",
                        self.resource_account.unwrap_or("?"),
                        self.principal_account.unwrap_or("?"),
                    ),
                )
            }
            Grant::SameAccountRequired(required) => {
                if self.rr == Truth::False && self.ra == Truth::False {
                    let why = if self.resource_given {
                        format!("no statement of it names {caller}")
                    } else {
                        format!("no {} was given", required.name())
                    };
                    return (
                        Layer::Resource,
                        format!(
                            "{what} needs the {} to allow it, even within the account (identity policies alone cannot), and {why}",
                            required.name()
                        ),
                    );
                }
                // The policy names the role: only the boundary or the session can have cut
                // the grant. It names the account: the identity policies must allow.
                if self.rr != Truth::False {
                    return self.limits();
                }
                self.principal_side()
            }
            Grant::SameAccount => {
                // The role named by the resource's policy, or the identity policies,
                // granted: the boundary or the session cut it.
                if self.rr != Truth::False && self.i == Truth::False {
                    return self.limits();
                }
                if self.i == Truth::False && self.resource_given {
                    return (
                        Layer::Identity,
                        format!(
                            "no identity-policy statement allows {what}, and no statement of the resource-based policy allows {caller} it"
                        ),
                    );
                }
                self.principal_side()
            }
        }
    }

    /// Why the principal's own policies do not allow the request.
    fn principal_side(&self) -> (Layer, String) {
        if self.i == Truth::False {
            return (
                Layer::Identity,
                format!("no identity-policy statement allows {}", self.what),
            );
        }
        self.limits()
    }

    /// Why the boundary or the session policies cap the request.
    fn limits(&self) -> (Layer, String) {
        let what = self.what;
        if self.b == Truth::False {
            (
                Layer::Boundary,
                format!("the permissions boundary does not allow {what}"),
            )
        } else if self.federated && self.s == Truth::False {
            (
                Layer::Session,
                format!(
                    "a federated user session has only the permissions its session policies allow, and none allows {what}"
                ),
            )
        } else {
            (
                Layer::Session,
                format!("no session policy statement allows {what}"),
            )
        }
    }
}

/// The caller's ARN for the simple principal matching of [`Request`].
fn caller_arn(caller: &Caller) -> Option<String> {
    match caller {
        Caller::Unnamed => None,
        Caller::Root { partition, account } => Some(format!("arn:{partition}:iam::{account}:root")),
        Caller::User { arn, .. }
        | Caller::Role { arn, .. }
        | Caller::RoleSession { arn, .. }
        | Caller::FederatedUser { arn, .. } => Some(arn.clone()),
        Caller::Service(name) | Caller::WebIdentity(name) => Some(name.clone()),
    }
}

fn join(refs: &[StatementRef]) -> String {
    refs.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(" and ")
}

fn verdict(
    decision: Decision,
    layer: Option<Layer>,
    deciding: Vec<StatementRef>,
    reason: String,
) -> Evaluation {
    Evaluation {
        decision,
        layer,
        deciding,
        undecided: Vec::new(),
        reason,
        notes: Vec::new(),
    }
}

/// Whether the SCP `levels` (root first) close `action` to every request, and why: a level
/// none of whose Allow statements names the action (whatever their resources and
/// conditions), or a Deny naming it on every resource (`"Resource": "*"`) without a
/// condition. The planner asks this of an action it would keep without evidence of use (the
/// keep-list, permissions CloudTrail cannot show): one the organization closes grants
/// nothing, so keeping it only widens the policy. Anything less certain is not closed.
pub fn organization_closes(levels: &[Vec<NamedPolicy<'_>>], action: &str) -> Option<String> {
    let names = |statement: &Statement| match (&statement.action, &statement.not_action) {
        (Some(list), _) => list.iter().any(|p| action_matches(p, action)),
        (None, Some(list)) => !list.iter().any(|p| action_matches(p, action)),
        (None, None) => false,
    };
    for (level, policies) in levels.iter().enumerate() {
        for policy in policies {
            for (index, statement) in policy.document.statements().iter().enumerate() {
                let everywhere = statement.not_resource.is_none()
                    && statement
                        .resource
                        .as_ref()
                        .is_none_or(|list| list.iter().any(|r| r == "*"));
                if statement.effect == Effect::Deny
                    && statement.condition.is_none()
                    && everywhere
                    && names(statement)
                {
                    let at = StatementRef::new(policy, index, statement, Layer::Scp);
                    return Some(format!("{at} denies {action} everywhere"));
                }
            }
        }
        let allowed = policies.iter().any(|policy| {
            policy
                .document
                .statements()
                .iter()
                .any(|s| s.effect == Effect::Allow && names(s))
        });
        if !allowed {
            let names: Vec<&str> = policies.iter().map(|p| p.name).collect();
            return Some(format!(
                "no SCP at level {} of {} ({}) allows {action}",
                level + 1,
                levels.len(),
                names.join(", ")
            ));
        }
    }
    None
}
