//! The service control policies above an account, read through AWS Organizations
//! (`[planner] organization_from`): the chain from the account up to the organization's
//! root, and the SCPs attached at each level.
//!
//! AWS evaluates SCPs level by level from the root down to the account: every level must
//! allow a request, and a Deny at any level wins (IAM User Guide, "Service control policies",
//! "SCP evaluation"). So the levels are kept apart, root first — the shape
//! `whittle_planner::policy::organization_closes` takes.
//!
//! Resource control policies are not read: an RCP limits what may be done to the resources
//! *in* an account, and a role may act on resources in any account, so an RCP never proves
//! that an action can never succeed for the role — which is all the planner asks.

use std::collections::HashMap;

use anyhow::Context;
use whittle_planner::policy::{PolicyDocument, PolicyKind};

use crate::Engine;
use crate::ports::{AwsErrorKind, Ports};

/// An organization's depth is bounded: an account sits under at most five levels of OUs
/// below the root (Organizations quotas, "Maximum nesting of OUs in a root": 5). A longer
/// chain means the answers are inconsistent; the walk stops rather than loop.
const MAX_LEVELS: usize = 7;

/// One level's SCPs: (a name that says which policy on which target, document).
pub type Level = Vec<(String, PolicyDocument)>;

/// Reads SCP chains through one account's credentials, describing each distinct policy once
/// however many accounts and levels it is attached to.
#[derive(Debug)]
pub struct OrganizationReader<'a, P> {
    engine: &'a Engine<P>,
    /// The configured account whose credentials may read the organization.
    via: &'a str,
    /// Policy id -> its parsed document.
    documents: HashMap<String, PolicyDocument>,
}

impl<'a, P: Ports> OrganizationReader<'a, P> {
    pub fn new(engine: &'a Engine<P>, via: &'a str) -> Self {
        OrganizationReader {
            engine,
            via,
            documents: HashMap::new(),
        }
    }

    /// The SCP levels of an account (its 12-digit id), from the organization's root down to
    /// the account itself.
    pub async fn scp_levels(&mut self, account_id: &str) -> anyhow::Result<Vec<Level>> {
        let ports = &*self.engine.ports;
        let mut levels = Vec::new();
        let mut target = account_id.to_owned();
        loop {
            levels.push(self.level(&target).await?);
            if levels.len() > MAX_LEVELS {
                anyhow::bail!(
                    "the organization chain of account {account_id} is deeper than {MAX_LEVELS} levels (read through `{}`): Organizations' answers are inconsistent",
                    self.via
                );
            }
            if target.starts_with("r-") {
                break;
            }
            let parent = ports
                .org_parent(self.via, &target)
                .await
                .map_err(|e| hint(e, self.via))?;
            target = parent.id;
        }
        levels.reverse();
        Ok(levels)
    }

    async fn level(&mut self, target: &str) -> anyhow::Result<Level> {
        let ports = &*self.engine.ports;
        let attached = ports
            .org_scps_for_target(self.via, target)
            .await
            .map_err(|e| hint(e, self.via))?;
        let mut level = Vec::with_capacity(attached.len());
        for policy in attached {
            let name = format!("`{}` ({}) on {target}", policy.name, policy.id);
            if !self.documents.contains_key(&policy.id) {
                let text = ports
                    .org_policy_content(self.via, &policy.id)
                    .await
                    .map_err(|e| hint(e, self.via))?;
                let document = PolicyDocument::from_iam(&text)
                    .and_then(|d| d.check_kind(PolicyKind::ServiceControl).map(|()| d))
                    .with_context(|| format!("SCP {name} is not a valid service control policy"))?;
                self.documents.insert(policy.id.clone(), document);
            }
            level.push((name, self.documents[&policy.id].clone()));
        }
        Ok(level)
    }
}

/// An Organizations error, with what the reading account needs when it was refused.
fn hint(error: crate::ports::AwsError, via: &str) -> anyhow::Error {
    if error.kind == AwsErrorKind::AccessDenied {
        anyhow::anyhow!(
            "{error}: [planner] organization_from = \"{via}\" needs an account that may call organizations:ListParents, ListPoliciesForTarget and DescribePolicy (the management account or a delegated administrator)"
        )
    } else {
        anyhow::anyhow!("{error}")
    }
}
