//! Reading and changing a role's policies, and the workload a trial watches (Lambda,
//! CloudWatch).
//!
//! IAM returns policy documents URL-encoded (RFC 3986); they are decoded here and kept as
//! text, and the planner parses them (so a bad document is reported against its role and
//! policy, not as an AWS error). Managed policies are read at their default version, the
//! one IAM enforces. Deletes and detaches of something already gone succeed, so a journaled
//! step retried after a crash finishes.

use whittle_engine::ports::{
    AuthorizationPage, AwsError, AwsErrorKind, AwsResult, FunctionSummary, NewRole, RoleDefinition,
    RoleDetail, RoleSummary, SnapshotScope,
};
use whittle_planner::plan::{InlinePolicy, ManagedPolicy, RolePolicies};

use super::errors::{failed, kind, other};
use super::{Aws, done_if_gone};

use whittle_planner::targets::role_name;

fn decode(text: &str) -> String {
    percent_encoding::percent_decode_str(text)
        .decode_utf8()
        .map_or_else(|_| text.to_owned(), |t| t.into_owned())
}

impl Aws {
    fn iam(&self, account: &str) -> AwsResult<aws_sdk_iam::Client> {
        Ok(aws_sdk_iam::Client::new(self.sdk(account)?))
    }

    /// One role with its path and tags (GetRole returns the tags, ListRoles does not).
    pub async fn role_summary(&self, account: &str, role_arn: &str) -> AwsResult<RoleSummary> {
        let role = self.role_definition(account, role_arn).await?;
        Ok(RoleSummary {
            arn: role.arn,
            path: role.path,
            tags: role.tags,
        })
    }

    /// The role's path, trust policy (URL-decoded), tags and boundary.
    pub async fn role_definition(
        &self,
        account: &str,
        role_arn: &str,
    ) -> AwsResult<RoleDefinition> {
        let name = role_name(role_arn);
        let out = self
            .iam(account)?
            .get_role()
            .role_name(name)
            .send()
            .await
            .map_err(|e| failed(&e, &format!("iam:GetRole {name}"), self.endpoint()))?;
        let role = out
            .role()
            .ok_or_else(|| other(format!("iam:GetRole {name} returned no role")))?;
        Ok(RoleDefinition {
            arn: role.arn().to_owned(),
            path: role.path().to_owned(),
            trust_policy: decode(role.assume_role_policy_document().unwrap_or_default()),
            tags: role
                .tags()
                .iter()
                .map(|t| (t.key().to_owned(), t.value().to_owned()))
                .collect(),
            boundary: role
                .permissions_boundary()
                .and_then(|b| b.permissions_boundary_arn())
                .map(str::to_owned),
        })
    }

    /// Creates a role with its tags and boundary in one call (iam:CreateRole; the tags need
    /// iam:TagRole too). An existing role of the name is `AlreadyExists`.
    pub async fn create_role(&self, account: &str, role: &NewRole<'_>) -> AwsResult<String> {
        let tags = role
            .tags
            .iter()
            .map(|(key, value)| {
                aws_sdk_iam::types::Tag::builder()
                    .key(key)
                    .value(value)
                    .build()
                    .map_err(|e| other(format!("tag {key}: {e}")))
            })
            .collect::<AwsResult<Vec<_>>>()?;
        let out = self
            .iam(account)?
            .create_role()
            .role_name(role.name)
            .path(role.path)
            .assume_role_policy_document(role.trust_policy)
            .description(role.description)
            .set_tags(Some(tags))
            .set_permissions_boundary(role.boundary.map(str::to_owned))
            .send()
            .await
            .map_err(|e| {
                failed(
                    &e,
                    &format!("iam:CreateRole {}", role.name),
                    self.endpoint(),
                )
            })?;
        Ok(out.role().map(|r| r.arn().to_owned()).unwrap_or_default())
    }

    /// Deletes a role without policies; one already gone counts as deleted.
    pub async fn delete_role(&self, account: &str, role_arn: &str) -> AwsResult<()> {
        let name = role_name(role_arn);
        done_if_gone(
            self.iam(account)?
                .delete_role()
                .role_name(name)
                .send()
                .await,
            &format!("iam:DeleteRole {name}"),
            self.endpoint(),
        )
    }

    /// Everything that grants or limits the role's permissions.
    pub async fn role_policies(&self, account: &str, role_arn: &str) -> AwsResult<RolePolicies> {
        let iam = self.iam(account)?;
        let endpoint = self.endpoint();
        let name = role_name(role_arn);
        let what = |call: &str| format!("iam:{call} for role {name}");
        let role = iam
            .get_role()
            .role_name(name)
            .send()
            .await
            .map_err(|e| failed(&e, &what("GetRole"), endpoint))?;
        let boundary_arn = role
            .role()
            .and_then(|r| r.permissions_boundary())
            .and_then(|b| b.permissions_boundary_arn())
            .map(str::to_owned);

        let mut inline = Vec::new();
        let mut pages = iam
            .list_role_policies()
            .role_name(name)
            .into_paginator()
            .send();
        let mut names = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| failed(&e, &what("ListRolePolicies"), endpoint))?;
            names.extend(page.policy_names().iter().cloned());
        }
        for policy_name in names {
            let out = iam
                .get_role_policy()
                .role_name(name)
                .policy_name(&policy_name)
                .send()
                .await
                .map_err(|e| failed(&e, &what("GetRolePolicy"), endpoint))?;
            inline.push(InlinePolicy {
                name: policy_name,
                document: decode(out.policy_document()).into(),
            });
        }
        inline.sort_by(|a, b| a.name.cmp(&b.name));

        let mut attached = Vec::new();
        let mut pages = iam
            .list_attached_role_policies()
            .role_name(name)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| failed(&e, &what("ListAttachedRolePolicies"), endpoint))?;
            attached.extend(
                page.attached_policies()
                    .iter()
                    .filter_map(|p| p.policy_arn().map(str::to_owned)),
            );
        }
        let mut managed = Vec::new();
        for arn in attached {
            managed.push(self.managed_policy(account, &arn).await?);
        }
        managed.sort_by(|a, b| a.arn.cmp(&b.arn));
        let boundary = match boundary_arn {
            Some(arn) => Some(self.managed_policy(account, &arn).await?),
            None => None,
        };
        Ok(RolePolicies {
            role_arn: role_arn.to_owned(),
            role_name: name.to_owned(),
            inline,
            managed,
            boundary,
        })
    }

    /// One page of iam:GetAccountAuthorizationDetails: roles (with tags, inline policies, the
    /// attached policies' ARNs and the boundary's) and, for [`SnapshotScope::RolesAndPolicies`],
    /// the account's managed policies at their default versions.
    ///
    /// AWS (IAM API reference, GetAccountAuthorizationDetails): `Filter` takes `Role`,
    /// `LocalManagedPolicy` (customer-managed) and `AWSManagedPolicy`; `MaxItems` is 1 to
    /// 1,000 (default 100) and IAM may return fewer with `IsTruncated` set, so paging follows
    /// `IsTruncated`/`Marker` only; `PolicyVersionList` holds every version of a policy, the
    /// enforced one marked `IsDefaultVersion`; every document is URL-encoded (RFC 3986).
    pub async fn authorization_details(
        &self,
        account: &str,
        scope: SnapshotScope,
        marker: Option<String>,
    ) -> AwsResult<AuthorizationPage> {
        use aws_sdk_iam::types::EntityType;
        let mut request = self
            .iam(account)?
            .get_account_authorization_details()
            .filter(EntityType::Role)
            .max_items(1000)
            .set_marker(marker);
        if scope == SnapshotScope::RolesAndPolicies {
            request = request
                .filter(EntityType::LocalManagedPolicy)
                .filter(EntityType::AwsManagedPolicy);
        }
        let out = request
            .send()
            .await
            .map_err(|e| failed(&e, "iam:GetAccountAuthorizationDetails", self.endpoint()))?;
        let mut roles = Vec::new();
        for role in out.role_detail_list() {
            let Some(arn) = role.arn() else { continue };
            let mut inline: Vec<InlinePolicy> = role
                .role_policy_list()
                .iter()
                .map(|p| InlinePolicy {
                    name: p.policy_name().unwrap_or_default().to_owned(),
                    document: p.policy_document().map(decode).unwrap_or_default().into(),
                })
                .collect();
            inline.sort_by(|a, b| a.name.cmp(&b.name));
            roles.push(RoleDetail {
                summary: RoleSummary {
                    arn: arn.to_owned(),
                    path: role.path().unwrap_or("/").to_owned(),
                    tags: role
                        .tags()
                        .iter()
                        .map(|t| (t.key().to_owned(), t.value().to_owned()))
                        .collect(),
                },
                inline,
                attached: role
                    .attached_managed_policies()
                    .iter()
                    .filter_map(|p| p.policy_arn().map(str::to_owned))
                    .collect(),
                boundary: role
                    .permissions_boundary()
                    .and_then(|b| b.permissions_boundary_arn())
                    .map(str::to_owned),
            });
        }
        let mut policies = Vec::new();
        for policy in out.policies() {
            let Some(arn) = policy.arn() else { continue };
            let default = policy
                .policy_version_list()
                .iter()
                .find(|v| v.is_default_version());
            // A policy listed without its default version cannot be planned from this page;
            // leaving it out makes the engine read it on its own.
            let Some(default) = default else { continue };
            policies.push(ManagedPolicy {
                arn: arn.to_owned(),
                // The name is the ARN's last part (after the policy's path).
                name: policy
                    .policy_name()
                    .unwrap_or_else(|| arn.rsplit('/').next().unwrap_or_default())
                    .to_owned(),
                aws_managed: arn.contains(":iam::aws:policy/"),
                version: default.version_id().unwrap_or("v1").to_owned(),
                document: default.document().map(decode).unwrap_or_default().into(),
            });
        }
        Ok(AuthorizationPage {
            roles,
            policies,
            marker: if out.is_truncated() {
                out.marker().map(str::to_owned)
            } else {
                None
            },
        })
    }

    /// A managed policy at its default version.
    pub async fn managed_policy(&self, account: &str, arn: &str) -> AwsResult<ManagedPolicy> {
        let iam = self.iam(account)?;
        let endpoint = self.endpoint();
        let policy = iam
            .get_policy()
            .policy_arn(arn)
            .send()
            .await
            .map_err(|e| failed(&e, &format!("iam:GetPolicy {arn}"), endpoint))?;
        let policy = policy
            .policy()
            .ok_or_else(|| other(format!("iam:GetPolicy {arn} returned no policy")))?;
        let version = policy.default_version_id().unwrap_or("v1").to_owned();
        let out = iam
            .get_policy_version()
            .policy_arn(arn)
            .version_id(&version)
            .send()
            .await
            .map_err(|e| {
                failed(
                    &e,
                    &format!("iam:GetPolicyVersion {arn} {version}"),
                    endpoint,
                )
            })?;
        let document = out
            .policy_version()
            .and_then(|v| v.document())
            .map(decode)
            .unwrap_or_default();
        Ok(ManagedPolicy {
            arn: arn.to_owned(),
            name: policy.policy_name().unwrap_or_default().to_owned(),
            // AWS-managed policies live in the `aws` account namespace.
            aws_managed: arn.contains(":iam::aws:policy/"),
            version,
            document: document.into(),
        })
    }

    pub async fn put_role_policy(
        &self,
        account: &str,
        role_arn: &str,
        policy_name: &str,
        document: &str,
    ) -> AwsResult<()> {
        let name = role_name(role_arn);
        self.iam(account)?
            .put_role_policy()
            .role_name(name)
            .policy_name(policy_name)
            .policy_document(document)
            .send()
            .await
            .map_err(|e| {
                failed(
                    &e,
                    &format!("iam:PutRolePolicy {policy_name} on role {name}"),
                    self.endpoint(),
                )
            })?;
        Ok(())
    }

    /// Deletes an inline policy; one that is already gone counts as deleted (a retried step).
    pub async fn delete_role_policy(
        &self,
        account: &str,
        role_arn: &str,
        policy_name: &str,
    ) -> AwsResult<()> {
        let name = role_name(role_arn);
        done_if_gone(
            self.iam(account)?
                .delete_role_policy()
                .role_name(name)
                .policy_name(policy_name)
                .send()
                .await,
            &format!("iam:DeleteRolePolicy {policy_name} on role {name}"),
            self.endpoint(),
        )
    }

    /// Attaches a managed policy (idempotent in IAM).
    pub async fn attach_role_policy(
        &self,
        account: &str,
        role_arn: &str,
        policy_arn: &str,
    ) -> AwsResult<()> {
        let name = role_name(role_arn);
        self.iam(account)?
            .attach_role_policy()
            .role_name(name)
            .policy_arn(policy_arn)
            .send()
            .await
            .map_err(|e| {
                failed(
                    &e,
                    &format!("iam:AttachRolePolicy {policy_arn} to role {name}"),
                    self.endpoint(),
                )
            })?;
        Ok(())
    }

    /// Detaches a managed policy; one that is not attached counts as detached.
    pub async fn detach_role_policy(
        &self,
        account: &str,
        role_arn: &str,
        policy_arn: &str,
    ) -> AwsResult<()> {
        let name = role_name(role_arn);
        done_if_gone(
            self.iam(account)?
                .detach_role_policy()
                .role_name(name)
                .policy_arn(policy_arn)
                .send()
                .await,
            &format!("iam:DetachRolePolicy {policy_arn} from role {name}"),
            self.endpoint(),
        )
    }

    /// Creates a customer-managed policy; returns its ARN. An existing policy of that name
    /// (a retried step) is returned as is.
    pub async fn create_policy(
        &self,
        account: &str,
        name: &str,
        document: &str,
        description: &str,
    ) -> AwsResult<String> {
        let iam = self.iam(account)?;
        match iam
            .create_policy()
            .policy_name(name)
            .policy_document(document)
            .description(description)
            .send()
            .await
        {
            Ok(out) => Ok(out
                .policy()
                .and_then(|p| p.arn())
                .unwrap_or_default()
                .to_owned()),
            Err(e) if kind(&e) == AwsErrorKind::AlreadyExists => {
                let identity = self.caller_identity(account).await?;
                Ok(format!("arn:aws:iam::{}:policy/{name}", identity.account))
            }
            Err(e) => Err(failed(
                &e,
                &format!("iam:CreatePolicy {name}"),
                self.endpoint(),
            )),
        }
    }

    /// Deletes a customer-managed policy; one already gone counts as deleted.
    pub async fn delete_policy(&self, account: &str, arn: &str) -> AwsResult<()> {
        done_if_gone(
            self.iam(account)?
                .delete_policy()
                .policy_arn(arn)
                .send()
                .await,
            &format!("iam:DeletePolicy {arn}"),
            self.endpoint(),
        )
    }

    pub async fn put_role_permissions_boundary(
        &self,
        account: &str,
        role_arn: &str,
        policy_arn: &str,
    ) -> AwsResult<()> {
        let name = role_name(role_arn);
        self.iam(account)?
            .put_role_permissions_boundary()
            .role_name(name)
            .permissions_boundary(policy_arn)
            .send()
            .await
            .map_err(|e| {
                failed(
                    &e,
                    &format!("iam:PutRolePermissionsBoundary on role {name}"),
                    self.endpoint(),
                )
            })?;
        Ok(())
    }

    /// Removes the role's permissions boundary; a role without one counts as done.
    pub async fn delete_role_permissions_boundary(
        &self,
        account: &str,
        role_arn: &str,
    ) -> AwsResult<()> {
        let name = role_name(role_arn);
        done_if_gone(
            self.iam(account)?
                .delete_role_permissions_boundary()
                .role_name(name)
                .send()
                .await,
            &format!("iam:DeleteRolePermissionsBoundary on role {name}"),
            self.endpoint(),
        )
    }

    /// Every function of the account in the region of its SDK configuration.
    /// ListFunctions pages with `Marker` / `NextMarker` (at most 50 a page) and returns only
    /// the unpublished version of each function unless `FunctionVersion=ALL` is asked, which
    /// is what a function's current execution role is (Lambda API reference, ListFunctions).
    pub async fn list_functions(
        &self,
        account: &str,
    ) -> AwsResult<Vec<whittle_engine::ports::FunctionSummary>> {
        let lambda = aws_sdk_lambda::Client::new(self.sdk(account)?);
        let mut pages = lambda.list_functions().into_paginator().send();
        let mut out = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| failed(&e, "lambda:ListFunctions", self.endpoint()))?;
            for f in page.functions() {
                let (Some(name), Some(arn), Some(role)) =
                    (f.function_name(), f.function_arn(), f.role())
                else {
                    continue;
                };
                out.push(whittle_engine::ports::FunctionSummary {
                    name: name.to_owned(),
                    arn: arn.to_owned(),
                    role: role.to_owned(),
                    revision: f.revision_id().map(str::to_owned),
                });
            }
        }
        Ok(out)
    }

    /// One function's configuration: its role and `RevisionId`.
    pub async fn function_configuration(
        &self,
        account: &str,
        function: &str,
    ) -> AwsResult<FunctionSummary> {
        let lambda = aws_sdk_lambda::Client::new(self.sdk(account)?);
        let out = lambda
            .get_function_configuration()
            .function_name(function)
            .send()
            .await
            .map_err(|e| {
                failed(
                    &e,
                    &format!("lambda:GetFunctionConfiguration {function}"),
                    self.endpoint(),
                )
            })?;
        Ok(FunctionSummary {
            name: out.function_name().unwrap_or(function).to_owned(),
            arn: out.function_arn().unwrap_or_default().to_owned(),
            role: out.role().unwrap_or_default().to_owned(),
            revision: out.revision_id().map(str::to_owned),
        })
    }

    /// Sets a function's execution role, only at `revision` when given; returns the new
    /// `RevisionId`. From the Lambda API reference, UpdateFunctionConfiguration:
    /// `PreconditionFailedException` (412) when `RevisionId` is not the function's latest
    /// (`Stale`); `ResourceConflictException` while a previous update is in progress, and
    /// `InvalidParameterValueException` ("The role defined for the function cannot be
    /// assumed by Lambda.") for a role IAM has not yet propagated — the only parameter sent
    /// is the role, so both are `NotReady` and retried by the engine.
    pub async fn set_function_role(
        &self,
        account: &str,
        function: &str,
        role_arn: &str,
        revision: Option<&str>,
    ) -> AwsResult<Option<String>> {
        use aws_sdk_lambda::operation::update_function_configuration::UpdateFunctionConfigurationError as E;
        let lambda = aws_sdk_lambda::Client::new(self.sdk(account)?);
        let out = lambda
            .update_function_configuration()
            .function_name(function)
            .role(role_arn)
            .set_revision_id(revision.map(str::to_owned))
            .send()
            .await
            .map_err(|e| {
                let error = failed(
                    &e,
                    &format!("lambda:UpdateFunctionConfiguration {function}"),
                    self.endpoint(),
                );
                let kind = match e.as_service_error() {
                    Some(E::PreconditionFailedException(_)) => AwsErrorKind::Stale,
                    Some(
                        E::ResourceConflictException(_) | E::InvalidParameterValueException(_),
                    ) => AwsErrorKind::NotReady,
                    _ => error.kind,
                };
                AwsError::new(kind, error.message)
            })?;
        Ok(out.revision_id().map(str::to_owned))
    }

    /// Invokes a Lambda function synchronously; Err names a function error.
    pub async fn invoke_function(
        &self,
        account: &str,
        function: &str,
        payload: &str,
    ) -> AwsResult<()> {
        let lambda = aws_sdk_lambda::Client::new(self.sdk(account)?);
        let out = lambda
            .invoke()
            .function_name(function)
            .payload(aws_sdk_lambda::primitives::Blob::new(payload.as_bytes()))
            .send()
            .await
            .map_err(|e| failed(&e, &format!("lambda:Invoke {function}"), self.endpoint()))?;
        if let Some(error) = out.function_error() {
            return Err(other(format!(
                "lambda:Invoke {function}: the function failed ({error})"
            )));
        }
        Ok(())
    }

    /// The sum of a Lambda function's `Errors` (AWS/Lambda) between two times.
    pub async fn lambda_errors(
        &self,
        account: &str,
        function: &str,
        start_ms: i64,
        end_ms: i64,
    ) -> AwsResult<f64> {
        use aws_sdk_cloudwatch::primitives::DateTime;
        use aws_sdk_cloudwatch::types::{Dimension, Statistic};
        let cloudwatch = aws_sdk_cloudwatch::Client::new(self.sdk(account)?);
        let out = cloudwatch
            .get_metric_statistics()
            .namespace("AWS/Lambda")
            .metric_name("Errors")
            .dimensions(
                Dimension::builder()
                    .name("FunctionName")
                    .value(function)
                    .build(),
            )
            .start_time(DateTime::from_millis(start_ms))
            .end_time(DateTime::from_millis(end_ms))
            .period(60)
            .statistics(Statistic::Sum)
            .send()
            .await
            .map_err(|e| {
                failed(
                    &e,
                    &format!("cloudwatch:GetMetricStatistics Errors of {function}"),
                    self.endpoint(),
                )
            })?;
        Ok(out.datapoints().iter().filter_map(|d| d.sum()).sum())
    }
}
