//! CloudTrail event -> IAM action(s).
//!
//! The mapping is not 1:1. The rules, in order:
//! 1. eventSource -> IAM service prefix: the host part of `X.amazonaws.com`, except for the
//!    services whose prefix differs ([`SOURCE_PREFIXES`]: `monitoring` -> `cloudwatch`, …).
//! 2. API version suffixes are stripped from the event name (`ListFunctions20150331`,
//!    `GetFunction20150331v2`, `CreateDistribution2020_05_31`).
//! 3. An exception table ([`EXCEPTIONS`]) for operations whose action has another name
//!    (`s3 ListObjectsV2` -> `s3:ListBucket`), that need several actions (`kms ReEncrypt`),
//!    or that need no permission at all (`sts GetCallerIdentity`, console sign-in events).
//! 4. Otherwise the action is `prefix:EventName`.
//!
//! Every action produced is looked up in the [`Catalog`]; one that is not there is reported
//! as unmapped with the reason, never invented. The catalog also supplies IAM's canonical
//! spelling.

use std::collections::HashMap;
use std::sync::Arc;

use serde::Serialize;

use crate::catalog::{ActionId, Catalog};

/// How a mapping was reached, from most to least direct.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Confidence {
    /// `prefix:EventName` is an action as it stands.
    Exact,
    /// Found after a rule: a prefix from the source table or a stripped version suffix.
    Rule,
    /// From the exception table.
    Exception,
}

/// What an event means for permissions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mapping {
    /// The call needed these actions.
    Actions {
        actions: Vec<ActionId>,
        confidence: Confidence,
    },
    /// The call needs no IAM permission (or is not an API call of the principal).
    Permissionless { reason: &'static str },
    /// No action could be established; kept and reported.
    Unmapped { reason: String },
}

/// eventSource host -> IAM prefix, where they differ.
pub const SOURCE_PREFIXES: &[(&str, &str)] = &[
    ("monitoring", "cloudwatch"),
    ("tagging", "tag"),
    ("pinpoint", "mobiletargeting"),
    ("rdsdata", "rds-data"),
    ("email", "ses"),
    ("runtime.lex", "lex"),
    ("models.lex", "lex"),
    ("runtime.sagemaker", "sagemaker"),
    ("api.sagemaker", "sagemaker"),
    ("streams.dynamodb", "dynamodb"),
    ("billingconsole", "billing"),
    ("iotdata", "iot"),
    ("data.iot", "iot"),
    ("api.ecr", "ecr"),
    ("api.pricing", "pricing"),
    ("elasticfilesystem", "elasticfilesystem"),
    ("sso-directory", "sso-directory"),
    ("cloudsearchdomain", "cloudsearch"),
    ("ec2-instance-connect", "ec2-instance-connect"),
    ("execute-api", "execute-api"),
    ("apigateway", "apigateway"),
    ("amazonmq", "mq"),
    ("application-insights", "applicationinsights"),
    ("chime-sdk-media-pipelines", "chime"),
    ("chime-sdk-voice", "chime"),
    ("cloudcontrolapi", "cloudformation"),
    ("contact-lens", "connect"),
    ("participant-connect", "connect"),
    ("migrationhub", "mgh"),
    ("opensearchservice", "es"),
    ("pricelist", "pricing"),
    ("qconnect", "wisdom"),
    ("servicecatalog-appregistry", "servicecatalog"),
    ("taxconsole", "tax"),
    ("transcribestreaming", "transcribe"),
    ("agreement-marketplace", "aws-marketplace"),
    ("discovery-marketplace", "aws-marketplace"),
    ("marketplacecatalog", "aws-marketplace"),
    ("reporting-marketplace", "aws-marketplace"),
    ("management-marketplace", "aws-marketplace-management"),
];

/// Every PartiQL permission: a statement's event does not say which kind it ran.
const PARTIQL: &[&str] = &[
    "dynamodb:PartiQLDelete",
    "dynamodb:PartiQLInsert",
    "dynamodb:PartiQLSelect",
    "dynamodb:PartiQLUpdate",
];

/// Targets of the exception table.
enum Target {
    Actions(&'static [&'static str]),
    Permissionless(&'static str),
}

/// `(prefix, event name without version suffix)` -> what it needs. Sources: each service's
/// API reference and the Service Authorization Reference ("Actions defined by …"), where an
/// operation's required permission is named.
const EXCEPTIONS: &[(&str, &str, Target)] = {
    use Target::{Actions as A, Permissionless as P};
    &[
        // Amazon S3: the API operation and the permission differ for many calls.
        ("s3", "ListObjects", A(&["s3:ListBucket"])),
        ("s3", "ListObjectsV2", A(&["s3:ListBucket"])),
        ("s3", "HeadBucket", A(&["s3:ListBucket"])),
        ("s3", "ListObjectVersions", A(&["s3:ListBucketVersions"])),
        ("s3", "HeadObject", A(&["s3:GetObject"])),
        ("s3", "SelectObjectContent", A(&["s3:GetObject"])),
        (
            "s3",
            "GetObjectAttributes",
            A(&["s3:GetObject", "s3:GetObjectAttributes"]),
        ),
        ("s3", "ListBuckets", A(&["s3:ListAllMyBuckets"])),
        ("s3", "CopyObject", A(&["s3:GetObject", "s3:PutObject"])),
        ("s3", "UploadPartCopy", A(&["s3:GetObject", "s3:PutObject"])),
        ("s3", "CreateMultipartUpload", A(&["s3:PutObject"])),
        ("s3", "UploadPart", A(&["s3:PutObject"])),
        ("s3", "CompleteMultipartUpload", A(&["s3:PutObject"])),
        ("s3", "ListParts", A(&["s3:ListMultipartUploadParts"])),
        (
            "s3",
            "ListMultipartUploads",
            A(&["s3:ListBucketMultipartUploads"]),
        ),
        ("s3", "DeleteObjects", A(&["s3:DeleteObject"])),
        (
            "s3",
            "GetBucketEncryption",
            A(&["s3:GetEncryptionConfiguration"]),
        ),
        (
            "s3",
            "PutBucketEncryption",
            A(&["s3:PutEncryptionConfiguration"]),
        ),
        (
            "s3",
            "DeleteBucketEncryption",
            A(&["s3:PutEncryptionConfiguration"]),
        ),
        (
            "s3",
            "GetBucketLifecycle",
            A(&["s3:GetLifecycleConfiguration"]),
        ),
        (
            "s3",
            "GetBucketLifecycleConfiguration",
            A(&["s3:GetLifecycleConfiguration"]),
        ),
        (
            "s3",
            "PutBucketLifecycle",
            A(&["s3:PutLifecycleConfiguration"]),
        ),
        (
            "s3",
            "PutBucketLifecycleConfiguration",
            A(&["s3:PutLifecycleConfiguration"]),
        ),
        (
            "s3",
            "DeleteBucketLifecycle",
            A(&["s3:PutLifecycleConfiguration"]),
        ),
        ("s3", "DeleteBucketTagging", A(&["s3:PutBucketTagging"])),
        ("s3", "GetBucketCors", A(&["s3:GetBucketCORS"])),
        ("s3", "PutBucketCors", A(&["s3:PutBucketCORS"])),
        ("s3", "DeleteBucketCors", A(&["s3:PutBucketCORS"])),
        (
            "s3",
            "GetBucketReplication",
            A(&["s3:GetReplicationConfiguration"]),
        ),
        (
            "s3",
            "PutBucketReplication",
            A(&["s3:PutReplicationConfiguration"]),
        ),
        (
            "s3",
            "DeleteBucketReplication",
            A(&["s3:PutReplicationConfiguration"]),
        ),
        (
            "s3",
            "GetPublicAccessBlock",
            A(&["s3:GetBucketPublicAccessBlock"]),
        ),
        (
            "s3",
            "PutPublicAccessBlock",
            A(&["s3:PutBucketPublicAccessBlock"]),
        ),
        (
            "s3",
            "DeletePublicAccessBlock",
            A(&["s3:PutBucketPublicAccessBlock"]),
        ),
        (
            "s3",
            "GetBucketNotificationConfiguration",
            A(&["s3:GetBucketNotification"]),
        ),
        (
            "s3",
            "PutBucketNotificationConfiguration",
            A(&["s3:PutBucketNotification"]),
        ),
        (
            "s3",
            "GetBucketAccelerateConfiguration",
            A(&["s3:GetAccelerateConfiguration"]),
        ),
        (
            "s3",
            "PutBucketAccelerateConfiguration",
            A(&["s3:PutAccelerateConfiguration"]),
        ),
        (
            "s3",
            "GetBucketAnalyticsConfiguration",
            A(&["s3:GetAnalyticsConfiguration"]),
        ),
        (
            "s3",
            "ListBucketAnalyticsConfigurations",
            A(&["s3:GetAnalyticsConfiguration"]),
        ),
        (
            "s3",
            "PutBucketAnalyticsConfiguration",
            A(&["s3:PutAnalyticsConfiguration"]),
        ),
        (
            "s3",
            "DeleteBucketAnalyticsConfiguration",
            A(&["s3:PutAnalyticsConfiguration"]),
        ),
        (
            "s3",
            "GetBucketInventoryConfiguration",
            A(&["s3:GetInventoryConfiguration"]),
        ),
        (
            "s3",
            "ListBucketInventoryConfigurations",
            A(&["s3:GetInventoryConfiguration"]),
        ),
        (
            "s3",
            "PutBucketInventoryConfiguration",
            A(&["s3:PutInventoryConfiguration"]),
        ),
        (
            "s3",
            "DeleteBucketInventoryConfiguration",
            A(&["s3:PutInventoryConfiguration"]),
        ),
        (
            "s3",
            "GetBucketMetricsConfiguration",
            A(&["s3:GetMetricsConfiguration"]),
        ),
        (
            "s3",
            "ListBucketMetricsConfigurations",
            A(&["s3:GetMetricsConfiguration"]),
        ),
        (
            "s3",
            "PutBucketMetricsConfiguration",
            A(&["s3:PutMetricsConfiguration"]),
        ),
        (
            "s3",
            "DeleteBucketMetricsConfiguration",
            A(&["s3:PutMetricsConfiguration"]),
        ),
        (
            "s3",
            "GetBucketIntelligentTieringConfiguration",
            A(&["s3:GetIntelligentTieringConfiguration"]),
        ),
        (
            "s3",
            "PutBucketIntelligentTieringConfiguration",
            A(&["s3:PutIntelligentTieringConfiguration"]),
        ),
        (
            "s3",
            "GetObjectLockConfiguration",
            A(&["s3:GetBucketObjectLockConfiguration"]),
        ),
        (
            "s3",
            "PutObjectLockConfiguration",
            A(&["s3:PutBucketObjectLockConfiguration"]),
        ),
        (
            "s3",
            "DeleteBucketOwnershipControls",
            A(&["s3:PutBucketOwnershipControls"]),
        ),
        (
            "s3",
            "DeleteBucketIntelligentTieringConfiguration",
            A(&["s3:PutIntelligentTieringConfiguration"]),
        ),
        (
            "s3",
            "ListBucketIntelligentTieringConfigurations",
            A(&["s3:GetIntelligentTieringConfiguration"]),
        ),
        // AWS KMS: one operation, two permissions (source and destination key).
        (
            "kms",
            "ReEncrypt",
            A(&["kms:ReEncryptFrom", "kms:ReEncryptTo"]),
        ),
        // AWS Lambda: the data-plane operations.
        ("lambda", "Invoke", A(&["lambda:InvokeFunction"])),
        (
            "lambda",
            "InvokeWithResponseStream",
            A(&["lambda:InvokeFunction"]),
        ),
        (
            "lambda",
            "GetLayerVersionByArn",
            A(&["lambda:GetLayerVersion"]),
        ),
        // DynamoDB: transactions and PartiQL are authorised per item operation; the event does
        // not say which, so every one the call may need is kept.
        ("dynamodb", "TransactGetItems", A(&["dynamodb:GetItem"])),
        (
            "dynamodb",
            "TransactWriteItems",
            A(&[
                "dynamodb:ConditionCheckItem",
                "dynamodb:DeleteItem",
                "dynamodb:PutItem",
                "dynamodb:UpdateItem",
            ]),
        ),
        ("dynamodb", "ExecuteStatement", A(PARTIQL)),
        ("dynamodb", "BatchExecuteStatement", A(PARTIQL)),
        ("dynamodb", "ExecuteTransaction", A(PARTIQL)),
        // Batch operations authorised by the single-item permission.
        ("sqs", "SendMessageBatch", A(&["sqs:SendMessage"])),
        ("sqs", "DeleteMessageBatch", A(&["sqs:DeleteMessage"])),
        (
            "sqs",
            "ChangeMessageVisibilityBatch",
            A(&["sqs:ChangeMessageVisibility"]),
        ),
        ("sns", "PublishBatch", A(&["sns:Publish"])),
        (
            "ssm",
            "GetParametersByPath",
            A(&["ssm:GetParametersByPath"]),
        ),
        (
            "secretsmanager",
            "BatchGetSecretValue",
            A(&["secretsmanager:BatchGetSecretValue"]),
        ),
        (
            "monitoring",
            "PutMetricData",
            A(&["cloudwatch:PutMetricData"]),
        ),
        // Calls that no policy can allow or deny for the caller.
        (
            "sts",
            "GetCallerIdentity",
            P("sts:GetCallerIdentity needs no permission"),
        ),
        (
            "sts",
            "AssumeRoleWithWebIdentity",
            P("the caller is unauthenticated; the role's trust policy decides"),
        ),
        (
            "sts",
            "AssumeRoleWithSAML",
            P("the caller is unauthenticated; the role's trust policy decides"),
        ),
        (
            "signin",
            "ConsoleLogin",
            P("a console sign-in event, not an API permission"),
        ),
        (
            "signin",
            "CheckMfa",
            P("a console sign-in event, not an API permission"),
        ),
        (
            "signin",
            "SwitchRole",
            P("a console sign-in event, not an API permission"),
        ),
        (
            "signin",
            "ExitRole",
            P("a console sign-in event, not an API permission"),
        ),
        (
            "signin",
            "RenewRole",
            P("a console sign-in event, not an API permission"),
        ),
        (
            "signin",
            "CredentialVerification",
            P("a console sign-in event, not an API permission"),
        ),
        (
            "signin",
            "CredentialChallenge",
            P("a console sign-in event, not an API permission"),
        ),
        (
            "signin",
            "UserAuthentication",
            P("a console sign-in event, not an API permission"),
        ),
    ]
};

/// The IAM prefix for an eventSource such as `monitoring.amazonaws.com`.
pub fn prefix_of_source(source: &str) -> &str {
    let host = source
        .strip_suffix(".amazonaws.com")
        .or_else(|| source.strip_suffix(".amazonaws.com.cn"))
        .unwrap_or(source);
    SOURCE_PREFIXES
        .iter()
        .find(|(h, _)| *h == host)
        .map_or(host, |(_, p)| p)
}

/// `ListFunctions20150331` -> `ListFunctions`, `GetFunction20150331v2` -> `GetFunction`,
/// `CreateDistribution2020_05_31` -> `CreateDistribution`; other names unchanged.
pub fn strip_version_suffix(name: &str) -> &str {
    let b = name.as_bytes();
    // `YYYY_MM_DD`
    if b.len() > 10 {
        let tail = &b[b.len() - 10..];
        if tail[4] == b'_'
            && tail[7] == b'_'
            && tail
                .iter()
                .enumerate()
                .all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit())
        {
            return &name[..name.len() - 10];
        }
    }
    // `YYYYMMDD` optionally followed by `vN`
    let mut end = b.len();
    if let Some(v) = b.iter().rposition(|&c| c == b'v')
        && v + 1 < b.len()
        && b[v + 1..].iter().all(u8::is_ascii_digit)
        && v >= 8
        && b[v - 8..v].iter().all(u8::is_ascii_digit)
    {
        end = v;
    }
    if end > 8 && b[end - 8..end].iter().all(u8::is_ascii_digit) && b[end - 9].is_ascii_alphabetic()
    {
        return &name[..end - 8];
    }
    name
}

/// Maps events to actions, remembering every `(eventSource, eventName)` it has seen so a
/// corpus with millions of events does the lookups once per distinct operation.
#[derive(Debug)]
pub struct Mapper<'c> {
    catalog: &'c Catalog,
    // Two levels keyed by `Box<str>` so a hit is looked up with the borrowed strings of the
    // record, allocating nothing.
    cache: HashMap<Box<str>, HashMap<Box<str>, Arc<Mapping>>>,
}

impl<'c> Mapper<'c> {
    pub fn new(catalog: &'c Catalog) -> Mapper<'c> {
        Mapper {
            catalog,
            cache: HashMap::new(),
        }
    }

    pub fn catalog(&self) -> &'c Catalog {
        self.catalog
    }

    pub fn map(&mut self, source: &str, name: &str) -> Arc<Mapping> {
        if let Some(found) = self.cache.get(source).and_then(|names| names.get(name)) {
            return Arc::clone(found);
        }
        let mapping = Arc::new(map_event(self.catalog, source, name));
        self.cache
            .entry(source.into())
            .or_default()
            .insert(name.into(), Arc::clone(&mapping));
        mapping
    }
}

/// The mapping of one operation, without caching.
pub fn map_event(catalog: &Catalog, source: &str, name: &str) -> Mapping {
    let host = source.strip_suffix(".amazonaws.com").unwrap_or(source);
    let prefix = prefix_of_source(source);
    let stripped = strip_version_suffix(name);
    let mut confidence = if prefix != host || stripped != name {
        Confidence::Rule
    } else {
        Confidence::Exact
    };
    let names: Vec<String> = match EXCEPTIONS
        .iter()
        .find(|(p, n, _)| (*p == prefix || *p == host) && *n == stripped)
    {
        Some((_, _, Target::Permissionless(reason))) => {
            return Mapping::Permissionless { reason };
        }
        Some((_, _, Target::Actions(actions))) => {
            confidence = Confidence::Exception;
            actions.iter().map(|a| (*a).to_owned()).collect()
        }
        None if prefix == "apigateway" => match http_verb(stripped) {
            // API Gateway's management permissions are the HTTP verbs of its REST API.
            Some(verb) => {
                confidence = Confidence::Rule;
                vec![format!("apigateway:{verb}")]
            }
            None => vec![format!("apigateway:{stripped}")],
        },
        None if prefix == "budgets" && catalog.lookup(&format!("budgets:{stripped}")).is_none() => {
            // AWS Budgets authorises budgets themselves with two permissions, one to read and
            // one to change (budget *actions* have their own, found above by name).
            confidence = Confidence::Rule;
            let read = ["Describe", "Get", "List", "View"]
                .iter()
                .any(|p| stripped.starts_with(p));
            vec![
                if read {
                    "budgets:ViewBudget"
                } else {
                    "budgets:ModifyBudget"
                }
                .to_owned(),
            ]
        }
        None => {
            if !catalog.has_service(prefix) {
                return Mapping::Unmapped {
                    reason: format!(
                        "eventSource `{source}` is not a service in the IAM catalog (prefix `{prefix}`)"
                    ),
                };
            }
            vec![format!("{prefix}:{stripped}")]
        }
    };
    let mut actions = Vec::with_capacity(names.len());
    for action in &names {
        match catalog.lookup(action) {
            Some(id) => actions.push(id),
            None => {
                return Mapping::Unmapped {
                    reason: format!(
                        "`{action}` is not an IAM action in the catalog ({})",
                        catalog.version
                    ),
                };
            }
        }
    }
    Mapping::Actions {
        actions,
        confidence,
    }
}

/// The HTTP verb behind an API Gateway management operation (`GetRestApis` -> GET).
fn http_verb(name: &str) -> Option<&'static str> {
    const VERBS: &[(&str, &str)] = &[
        // Imports that create resources are POSTs; the other imports overwrite (PUT).
        ("ImportApiKeys", "POST"),
        ("ImportRestApi", "POST"),
        ("Get", "GET"),
        ("Export", "GET"),
        ("Create", "POST"),
        ("Generate", "POST"),
        ("TestInvoke", "POST"),
        ("Tag", "POST"),
        ("Update", "PATCH"),
        ("Delete", "DELETE"),
        ("Flush", "DELETE"),
        ("Untag", "DELETE"),
        ("Reset", "DELETE"),
        ("Put", "PUT"),
        ("Import", "PUT"),
        ("Reimport", "PUT"),
    ];
    VERBS
        .iter()
        .find(|(prefix, _)| name.starts_with(prefix))
        .map(|(_, verb)| *verb)
}

/// The action named in a denial's `errorMessage`: "... is not authorized to perform:
/// ec2:RunInstances on resource: ..." or "... not authorized to perform: s3:ListBucket".
pub fn denied_action_of_message(message: &str) -> Option<&str> {
    let (_, rest) = message.split_once("perform: ")?;
    let end = rest
        .find(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, ':' | '-' | '_' | '*')))
        .unwrap_or(rest.len());
    let action = &rest[..end];
    let (prefix, name) = action.split_once(':')?;
    (!prefix.is_empty() && !name.is_empty()).then_some(action)
}

/// Whether an `errorCode` means the call was denied by IAM.
pub fn is_denial(error_code: &str) -> bool {
    error_code == "AccessDenied"
        || error_code.ends_with("UnauthorizedOperation")
        || error_code.contains("AccessDenied")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(mapping: &Mapping) -> Vec<String> {
        match mapping {
            Mapping::Actions { actions, .. } => actions
                .iter()
                .map(|id| Catalog::embedded().action(*id).name.clone())
                .collect(),
            other => panic!("not actions: {other:?}"),
        }
    }

    fn map(source: &str, name: &str) -> Mapping {
        map_event(Catalog::embedded(), source, name)
    }

    #[test]
    fn direct_names_map_exactly_in_canonical_spelling() {
        let m = map("dynamodb.amazonaws.com", "GetItem");
        assert_eq!(names(&m), ["dynamodb:GetItem"]);
        assert!(matches!(
            m,
            Mapping::Actions {
                confidence: Confidence::Exact,
                ..
            }
        ));
        assert_eq!(
            names(&map("iam.amazonaws.com", "PassRole")),
            ["iam:PassRole"]
        );
    }

    #[test]
    fn source_prefix_table_applies() {
        let m = map("monitoring.amazonaws.com", "GetMetricData");
        assert_eq!(names(&m), ["cloudwatch:GetMetricData"]);
        assert!(matches!(
            m,
            Mapping::Actions {
                confidence: Confidence::Rule,
                ..
            }
        ));
        assert_eq!(
            names(&map("tagging.amazonaws.com", "GetResources")),
            ["tag:GetResources"]
        );
        assert_eq!(
            names(&map("email.amazonaws.com", "SendEmail")),
            ["ses:SendEmail"]
        );
    }

    #[test]
    fn version_suffixes_are_stripped() {
        assert_eq!(
            strip_version_suffix("ListFunctions20150331"),
            "ListFunctions"
        );
        assert_eq!(strip_version_suffix("GetFunction20150331v2"), "GetFunction");
        assert_eq!(
            strip_version_suffix("UpdateFunctionCode20150331v2"),
            "UpdateFunctionCode"
        );
        assert_eq!(
            strip_version_suffix("CreateDistribution2020_05_31"),
            "CreateDistribution"
        );
        assert_eq!(strip_version_suffix("GetObject"), "GetObject");
        assert_eq!(strip_version_suffix("Ec2v2"), "Ec2v2");
        assert_eq!(strip_version_suffix("20150331"), "20150331");
        assert_eq!(
            names(&map("lambda.amazonaws.com", "ListFunctions20150331")),
            ["lambda:ListFunctions"]
        );
    }

    #[test]
    fn exceptions_and_multi_action_operations() {
        assert_eq!(
            names(&map("s3.amazonaws.com", "ListObjectsV2")),
            ["s3:ListBucket"]
        );
        assert_eq!(
            names(&map("s3.amazonaws.com", "HeadObject")),
            ["s3:GetObject"]
        );
        assert_eq!(
            names(&map("s3.amazonaws.com", "ListBuckets")),
            ["s3:ListAllMyBuckets"]
        );
        assert_eq!(
            names(&map("s3.amazonaws.com", "CopyObject")),
            ["s3:GetObject", "s3:PutObject"]
        );
        assert_eq!(
            names(&map("kms.amazonaws.com", "ReEncrypt")),
            ["kms:ReEncryptFrom", "kms:ReEncryptTo"]
        );
        assert_eq!(
            names(&map("lambda.amazonaws.com", "Invoke")),
            ["lambda:InvokeFunction"]
        );
        assert_eq!(
            names(&map("apigateway.amazonaws.com", "GetRestApis")),
            ["apigateway:GET"]
        );
        assert_eq!(
            names(&map("apigateway.amazonaws.com", "UpdateStage")),
            ["apigateway:PATCH"]
        );
        assert_eq!(
            names(&map("budgets.amazonaws.com", "DescribeBudgets")),
            ["budgets:ViewBudget"]
        );
        assert_eq!(
            names(&map("budgets.amazonaws.com", "CreateBudget")),
            ["budgets:ModifyBudget"]
        );
    }

    #[test]
    fn permissionless_operations_are_dropped() {
        assert!(matches!(
            map("sts.amazonaws.com", "GetCallerIdentity"),
            Mapping::Permissionless { .. }
        ));
        assert!(matches!(
            map("signin.amazonaws.com", "ConsoleLogin"),
            Mapping::Permissionless { .. }
        ));
    }

    #[test]
    fn unknown_operations_are_unmapped_with_a_reason() {
        match map("s3.amazonaws.com", "FrobnicateBucket") {
            Mapping::Unmapped { reason } => {
                assert!(reason.contains("s3:FrobnicateBucket"), "{reason}")
            }
            other => panic!("{other:?}"),
        }
        match map("nosuch.amazonaws.com", "Get") {
            Mapping::Unmapped { reason } => assert!(reason.contains("nosuch"), "{reason}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn every_exception_names_catalog_actions() {
        for (prefix, name, target) in EXCEPTIONS {
            if let Target::Actions(actions) = target {
                for action in *actions {
                    assert!(
                        Catalog::embedded().lookup(action).is_some(),
                        "{prefix} {name} -> {action} is not in the catalog"
                    );
                }
            }
        }
    }

    #[test]
    fn mapper_caches_and_agrees_with_map_event() {
        let mut mapper = Mapper::new(Catalog::embedded());
        let first = mapper.map("s3.amazonaws.com", "GetObject");
        let again = mapper.map("s3.amazonaws.com", "GetObject");
        assert!(Arc::ptr_eq(&first, &again));
        assert_eq!(*first, map("s3.amazonaws.com", "GetObject"));
    }

    #[test]
    fn denials_and_their_actions() {
        assert!(is_denial("AccessDenied"));
        assert!(is_denial("Client.UnauthorizedOperation"));
        assert!(is_denial("AccessDeniedException"));
        assert!(!is_denial("NoSuchEntity"));
        assert_eq!(
            denied_action_of_message(
                "User: arn:aws:sts::1:assumed-role/r/s is not authorized to perform: ec2:RunInstances on resource: arn:aws:ec2:..."
            ),
            Some("ec2:RunInstances")
        );
        assert_eq!(
            denied_action_of_message("is not authorized to perform: s3:ListBucket"),
            Some("s3:ListBucket")
        );
        assert_eq!(denied_action_of_message("Access Denied"), None);
    }
}

/// Agreement with iann0036/iam-dataset's eventSource -> prefix table (../shared/testdata,
/// MIT), used as an oracle when it is present.
#[cfg(test)]
mod oracle {
    use super::*;

    #[test]
    fn source_prefixes_agree_with_iam_dataset() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../shared/testdata/mapping/cloudtrail_service_mappings.json");
        let Ok(text) = std::fs::read_to_string(&path) else {
            eprintln!(
                "note: {} is absent; skipping the source-prefix oracle",
                path.display()
            );
            return;
        };
        let doc: serde_json::Value = serde_json::from_str(&text).expect("oracle parses");
        let table = doc["cloudtrail_service_mappings"]
            .as_object()
            .expect("table");
        let mut differ = Vec::new();
        for (source, prefix) in table {
            let ours = prefix_of_source(source);
            if Some(ours) != prefix.as_str() {
                differ.push(format!("{source}: oracle {prefix}, whittle {ours}"));
            }
        }
        eprintln!(
            "eventSource prefixes: {} of {} agree; differ: {differ:?}",
            table.len() - differ.len(),
            table.len()
        );
        assert!(differ.is_empty(), "{differ:?}");
    }
}
