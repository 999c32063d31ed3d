//! AWS Organizations, read-only: the chain from an account up to the organization's root and
//! the service control policies attached at each level.
//!
//! Organizations answers only in the management account or an account delegated to
//! administer its policies; the engine names which configured account asks
//! (`[planner] organization_from`).

use aws_sdk_organizations::types::{ParentType, PolicyType};
use whittle_engine::ports::{AwsResult, OrgParent, OrgPolicySummary};

use super::Aws;
use super::errors::{failed, other};

impl Aws {
    fn organizations(&self, account: &str) -> AwsResult<aws_sdk_organizations::Client> {
        Ok(aws_sdk_organizations::Client::new(self.sdk(account)?))
    }

    /// The parent of an account or OU. AWS documents that a child has exactly one parent in
    /// the current release of Organizations, so the first (only) entry is it.
    pub async fn org_parent(&self, account: &str, child_id: &str) -> AwsResult<OrgParent> {
        let what = format!("organizations:ListParents of {child_id}");
        let out = self
            .organizations(account)?
            .list_parents()
            .child_id(child_id)
            .send()
            .await
            .map_err(|e| failed(&e, &what, self.endpoint()))?;
        let parent = out
            .parents()
            .first()
            .ok_or_else(|| other(format!("{what}: the answer names no parent")))?;
        Ok(OrgParent {
            id: parent
                .id()
                .ok_or_else(|| other(format!("{what}: a parent without an id")))?
                .to_owned(),
            is_root: parent.r#type() == Some(&ParentType::Root),
        })
    }

    /// The SCPs attached directly to a target (root, OU or account), every page.
    pub async fn org_scps_for_target(
        &self,
        account: &str,
        target_id: &str,
    ) -> AwsResult<Vec<OrgPolicySummary>> {
        let what = format!("organizations:ListPoliciesForTarget of {target_id}");
        let mut pages = self
            .organizations(account)?
            .list_policies_for_target()
            .target_id(target_id)
            .filter(PolicyType::ServiceControlPolicy)
            .into_paginator()
            .send();
        let mut policies = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| failed(&e, &what, self.endpoint()))?;
            for policy in page.policies() {
                let id = policy
                    .id()
                    .ok_or_else(|| other(format!("{what}: a policy without an id")))?;
                policies.push(OrgPolicySummary {
                    id: id.to_owned(),
                    name: policy.name().unwrap_or(id).to_owned(),
                });
            }
        }
        Ok(policies)
    }

    /// A policy's document as text (`Policy.Content`, plain JSON: unlike IAM, Organizations
    /// does not URL-encode it).
    pub async fn org_policy_content(&self, account: &str, policy_id: &str) -> AwsResult<String> {
        let what = format!("organizations:DescribePolicy {policy_id}");
        let out = self
            .organizations(account)?
            .describe_policy()
            .policy_id(policy_id)
            .send()
            .await
            .map_err(|e| failed(&e, &what, self.endpoint()))?;
        out.policy()
            .and_then(|p| p.content())
            .map(str::to_owned)
            .ok_or_else(|| other(format!("{what}: the answer has no content")))
    }
}
