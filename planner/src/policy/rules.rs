//! What AWS decides whatever the policies say, and the facts about services the
//! evaluation logic turns on: operations that need no permission, resources AWS owns,
//! resources whose own policy must allow, the services RCPs cover, a resource's account.

use super::pattern::action_matches;

/// Why an operation needs no permission, if it needs none: AWS allows it to every
/// authenticated caller, even under an explicit Deny.
pub fn needs_no_permission(action: &str) -> Option<&'static str> {
    // `sts:GetCallerIdentity`: "No permissions are required to perform this operation. If
    // an administrator attaches a policy to your identity that explicitly denies access to
    // the sts:GetCallerIdentity action, you can still perform this operation" (STS API
    // reference, GetCallerIdentity). `sts:GetSessionToken` is an authentication step of the
    // caller's own long-term credentials that no IAM policy controls (IAM User Guide,
    // "Permissions for GetSessionToken"); the planner's event mapping drops both for the
    // same reason.
    const NONE_NEEDED: &[(&str, &str)] = &[
        (
            "sts:GetCallerIdentity",
            "sts:GetCallerIdentity needs no permission: AWS allows it even when a policy denies it (it returns what an access-denied message would)",
        ),
        (
            "sts:GetSessionToken",
            "sts:GetSessionToken needs no permission: no IAM policy controls getting a session token for one's own credentials",
        ),
    ];
    NONE_NEEDED
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(action))
        .map(|(_, why)| *why)
}

/// A kind of resource AWS owns and refuses to let anyone modify.
struct Owned {
    /// What the resource is, in a sentence.
    what: &'static str,
    /// Whether the resource ARN is one.
    is: fn(&[&str]) -> bool,
    /// The actions that would modify it.
    modifying: &'static [&'static str],
    /// What to do instead.
    instead: &'static str,
}

const OWNED: &[Owned] = &[
    // AWS managed policies (`arn:aws:iam::aws:policy/...`) are maintained by AWS; an
    // account can attach them, never edit or delete them (IAM User Guide, "AWS managed
    // policies").
    Owned {
        what: "an AWS managed policy",
        is: |parts| parts[2] == "iam" && parts[4] == "aws" && parts[5].starts_with("policy/"),
        modifying: &[
            "iam:CreatePolicyVersion",
            "iam:DeletePolicy",
            "iam:DeletePolicyVersion",
            "iam:SetDefaultPolicyVersion",
            "iam:TagPolicy",
            "iam:UntagPolicy",
        ],
        instead: "copy it into a customer managed policy and change that",
    },
    // Service-linked roles are defined by their service: "you can't edit the permissions
    // policies or trust policy of a service-linked role", a permissions boundary cannot be
    // applied to one, and only the service (or iam:DeleteServiceLinkedRole) deletes it (IAM
    // User Guide, "Using service-linked roles").
    Owned {
        what: "a service-linked role",
        is: |parts| parts[2] == "iam" && parts[5].starts_with("role/aws-service-role/"),
        modifying: &[
            "iam:DeleteRole",
            "iam:UpdateAssumeRolePolicy",
            "iam:PutRolePolicy",
            "iam:DeleteRolePolicy",
            "iam:AttachRolePolicy",
            "iam:DetachRolePolicy",
            "iam:PutRolePermissionsBoundary",
            "iam:DeleteRolePermissionsBoundary",
        ],
        instead: "delete it with iam:DeleteServiceLinkedRole, or let its service manage it",
    },
    // Aliases under `alias/aws/` name AWS managed keys: "You cannot create, update or
    // delete an alias that begins with alias/aws/" (AWS KMS Developer Guide, "Aliases").
    Owned {
        what: "an alias of an AWS managed KMS key (alias/aws/...)",
        is: |parts| parts[2] == "kms" && parts[5].starts_with("alias/aws/"),
        modifying: &["kms:CreateAlias", "kms:DeleteAlias", "kms:UpdateAlias"],
        instead: "use an alias outside alias/aws/ for a customer managed key",
    },
];

/// Why AWS refuses `action` on `resource` whatever the policies allow, if it does: the
/// request would modify a resource AWS owns.
pub fn aws_owned_refusal(action: &str, resource: &str) -> Option<String> {
    let parts: Vec<&str> = resource.splitn(6, ':').collect();
    if parts.len() != 6 || parts[0] != "arn" {
        return None;
    }
    OWNED
        .iter()
        .find(|owned| {
            (owned.is)(&parts)
                && owned
                    .modifying
                    .iter()
                    .any(|name| name.eq_ignore_ascii_case(action))
        })
        .map(|owned| {
            format!(
                "AWS refuses {action} on {resource}, {}, whatever the policies allow: {}",
                owned.what, owned.instead
            )
        })
}

/// Resources whose own policy must allow a request even within their account: "IAM role
/// trust policies and KMS key policies are exceptions to this logic, because they must
/// explicitly allow access for principals"
/// (`reference_policies_evaluation-logic_policy-eval-denyallow`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequiredPolicy {
    /// A role's trust policy, for assuming the role (and tagging or naming the session).
    RoleTrust,
    /// A KMS key's key policy.
    KeyPolicy,
}

impl RequiredPolicy {
    /// What the policy is called.
    pub fn name(self) -> &'static str {
        match self {
            RequiredPolicy::RoleTrust => "role trust policy",
            RequiredPolicy::KeyPolicy => "key policy",
        }
    }

    /// Whether `action` on `resource` needs the resource's own policy to allow it.
    pub fn of(action: &str, resource: &str) -> Option<RequiredPolicy> {
        let parts: Vec<&str> = resource.splitn(6, ':').collect();
        if parts.len() != 6 || parts[0] != "arn" {
            return None;
        }
        if parts[2] == "iam"
            && parts[5].starts_with("role/")
            && [
                "sts:AssumeRole*",
                "sts:TagSession",
                "sts:SetSourceIdentity",
                "sts:SetContext",
            ]
            .iter()
            .any(|pattern| action_matches(pattern, action))
        {
            return Some(RequiredPolicy::RoleTrust);
        }
        if parts[2] == "kms" && parts[5].starts_with("key/") {
            return Some(RequiredPolicy::KeyPolicy);
        }
        None
    }
}

/// Whether RCPs restrict `action`: they apply only to the services listed in "List of AWS
/// services that support RCPs" (AWS Organizations User Guide, "Resource control policies"):
/// Amazon S3, AWS STS, AWS KMS, Amazon SQS, AWS Secrets Manager, Amazon ECR, Amazon
/// OpenSearch Serverless, Amazon CloudWatch Logs and Amazon Cognito.
pub fn rcps_cover(action: &str) -> bool {
    const SERVICES: &[&str] = &[
        "s3",
        "sts",
        "kms",
        "sqs",
        "secretsmanager",
        "ecr",
        "aoss",
        "logs",
        "cognito-identity",
        "cognito-idp",
    ];
    action.split_once(':').is_some_and(|(service, _)| {
        SERVICES
            .iter()
            .any(|known| known.eq_ignore_ascii_case(service))
    })
}

/// The account a resource ARN names, if it names one. Many do not (an S3 bucket's ARN has
/// no account), and `aws` (an AWS managed policy) is no customer's account: both leave the
/// account to be told.
pub fn resource_account(resource: &str) -> Option<&str> {
    let parts: Vec<&str> = resource.splitn(6, ':').collect();
    match parts.as_slice() {
        ["arn", _, _, _, account, _] if !account.is_empty() && *account != "aws" => Some(account),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operations_that_need_no_permission() {
        assert!(needs_no_permission("sts:GetCallerIdentity").is_some());
        assert!(needs_no_permission("STS:getcalleridentity").is_some());
        assert!(needs_no_permission("sts:GetSessionToken").is_some());
        assert!(needs_no_permission("sts:AssumeRole").is_none());
        assert!(needs_no_permission("sts:GetAccessKeyInfo").is_none());
    }

    #[test]
    fn aws_owned_resources_are_refused_only_for_modifications() {
        let policy = "arn:aws:iam::aws:policy/AdministratorAccess";
        assert!(aws_owned_refusal("iam:CreatePolicyVersion", policy).is_some());
        assert!(aws_owned_refusal("iam:deletepolicy", policy).is_some());
        assert!(aws_owned_refusal("iam:GetPolicyVersion", policy).is_none());
        assert!(
            aws_owned_refusal(
                "iam:CreatePolicyVersion",
                "arn:aws:iam::111122223333:policy/Mine"
            )
            .is_none()
        );
        let linked = "arn:aws:iam::111122223333:role/aws-service-role/ecs.amazonaws.com/AWSServiceRoleForECS";
        assert!(aws_owned_refusal("iam:DeleteRole", linked).is_some());
        assert!(aws_owned_refusal("iam:PutRolePolicy", linked).is_some());
        assert!(aws_owned_refusal("iam:DeleteServiceLinkedRole", linked).is_none());
        assert!(aws_owned_refusal("iam:GetRole", linked).is_none());
        assert!(
            aws_owned_refusal("iam:DeleteRole", "arn:aws:iam::111122223333:role/app").is_none()
        );
        let alias = "arn:aws:kms:us-east-1:111122223333:alias/aws/s3";
        assert!(aws_owned_refusal("kms:DeleteAlias", alias).is_some());
        assert!(aws_owned_refusal("kms:ListAliases", alias).is_none());
        assert!(
            aws_owned_refusal(
                "kms:DeleteAlias",
                "arn:aws:kms:us-east-1:111122223333:alias/app"
            )
            .is_none()
        );
        assert!(aws_owned_refusal("kms:DeleteAlias", "*").is_none());
    }

    #[test]
    fn trust_and_key_policies_must_allow() {
        let role = "arn:aws:iam::111122223333:role/app";
        assert_eq!(
            RequiredPolicy::of("sts:AssumeRole", role),
            Some(RequiredPolicy::RoleTrust)
        );
        assert_eq!(
            RequiredPolicy::of("sts:AssumeRoleWithWebIdentity", role),
            Some(RequiredPolicy::RoleTrust)
        );
        assert_eq!(RequiredPolicy::of("iam:GetRole", role), None);
        assert_eq!(
            RequiredPolicy::of(
                "kms:Decrypt",
                "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"
            ),
            Some(RequiredPolicy::KeyPolicy)
        );
        assert_eq!(
            RequiredPolicy::of(
                "kms:Decrypt",
                "arn:aws:kms:us-east-1:111122223333:alias/app"
            ),
            None
        );
    }

    #[test]
    fn rcp_services_and_resource_accounts() {
        assert!(rcps_cover("s3:GetObject"));
        assert!(rcps_cover("KMS:Decrypt"));
        assert!(!rcps_cover("ec2:RunInstances"));
        assert!(!rcps_cover("dynamodb:GetItem"));
        assert_eq!(
            resource_account("arn:aws:sqs:us-east-1:222222222222:q"),
            Some("222222222222")
        );
        assert_eq!(resource_account("arn:aws:s3:::bucket/k"), None);
        assert_eq!(
            resource_account("arn:aws:iam::aws:policy/ReadOnlyAccess"),
            None
        );
        assert_eq!(resource_account("*"), None);
    }
}
