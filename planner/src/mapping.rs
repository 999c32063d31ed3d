//! CloudTrail event -> IAM action(s).
//!
//! The mapping is not 1:1. The rules, in order:
//! 1. eventSource -> IAM service prefix: the host part of `X.amazonaws.com`, except for the
//!    services whose prefix differs ([`SOURCE_PREFIXES`]: `monitoring` -> `cloudwatch`, …).
//! 2. API version suffixes are stripped from the event name (`ListFunctions20150331`,
//!    `GetFunction20150331v2`, `CreateDistribution2020_05_31`).
//! 3. Events that are not API calls of the principal ([`Mapping::NotAnApiCall`]: console
//!    sign-in, console actions, AWS service events, by `eventType` or by name) and calls that
//!    need no permission ([`Mapping::Permissionless`]: `sts GetCallerIdentity`) are told
//!    apart first: they have no action to find.
//! 4. AWS's own word: the operation's `AuthorizedActions` from the Service Reference, when
//!    the catalog has them for the service and operation ([`Confidence::Reference`]).
//! 5. An exception table ([`EXCEPTIONS`]) for operations whose action has another name
//!    (`s3 ListObjectsV2` -> `s3:ListBucket`) or that need several actions (`kms ReEncrypt`).
//! 6. Otherwise the action is `prefix:EventName` (API Gateway: the HTTP verb; Budgets: view
//!    or modify).
//!
//! Every action produced is looked up in the [`Catalog`]; one that is not there is reported
//! as unmapped with the reason, never invented. The catalog also supplies IAM's canonical
//! spelling. A denial's action is taken from its message only when the catalog knows it
//! ([`denied_actions`]).

use std::collections::HashMap;
use std::sync::Arc;

use serde::Serialize;

use crate::catalog::{ActionId, Catalog};

/// How a mapping was reached, from most to least direct.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Confidence {
    /// AWS's Service Reference lists the actions the operation authorizes.
    Reference,
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
    /// An API call that needs no IAM permission (`sts:GetCallerIdentity`).
    Permissionless { reason: &'static str },
    /// Not an API call of the principal at all: a console sign-in, a console action, an
    /// event AWS records about its own work. Never a usage, never unmapped.
    NotAnApiCall { reason: &'static str },
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
    NotApi(&'static str),
}

const SIGN_IN: &str = "a console sign-in event, not an API call";

/// `(prefix, event name without version suffix)` -> what it needs. Sources: each service's
/// API reference and the Service Authorization Reference ("Actions defined by …"), where an
/// operation's required permission is named. Where CloudTrail's event name differs from the
/// API's (`GetBucketPublicAccessBlock` for `GetPublicAccessBlock`), both are listed.
const EXCEPTIONS: &[(&str, &str, Target)] = {
    use Target::{Actions as A, NotApi as N, Permissionless as P};
    &[
        // Amazon S3: the API operation and the permission differ for many calls. Deleting a
        // sub-resource of a bucket is authorised by the permission to put it.
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
            "DeleteBucketPublicAccessBlock",
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
            "ListBucketIntelligentTieringConfigurations",
            A(&["s3:GetIntelligentTieringConfiguration"]),
        ),
        (
            "s3",
            "PutBucketIntelligentTieringConfiguration",
            A(&["s3:PutIntelligentTieringConfiguration"]),
        ),
        (
            "s3",
            "DeleteBucketIntelligentTieringConfiguration",
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
        // S3 Object Lambda's one data-plane call, logged by S3.
        (
            "s3",
            "WriteGetObjectResponse",
            A(&["s3-object-lambda:WriteGetObjectResponse"]),
        ),
        // S3 Control: the account's public access block (CloudTrail's name).
        (
            "s3",
            "DeleteAccountPublicAccessBlock",
            A(&["s3:PutAccountPublicAccessBlock"]),
        ),
        // CloudFront: tagging on creation is authorised by both permissions.
        (
            "cloudfront",
            "CreateDistributionWithTags",
            A(&["cloudfront:CreateDistribution", "cloudfront:TagResource"]),
        ),
        // API Gateway's WebSocket management API (`execute-api`).
        (
            "execute-api",
            "PostToConnection",
            A(&["execute-api:ManageConnections"]),
        ),
        (
            "execute-api",
            "GetConnection",
            A(&["execute-api:ManageConnections"]),
        ),
        (
            "execute-api",
            "DeleteConnection",
            A(&["execute-api:ManageConnections"]),
        ),
        // Amazon Timestream: a query is authorised by `Select`.
        ("timestream", "Query", A(&["timestream:Select"])),
        // Amazon Detective: the API's name is plural, the action's singular; the call reads
        // the organization too.
        (
            "detective",
            "ListOrganizationAdminAccounts",
            A(&[
                "detective:ListOrganizationAdminAccount",
                "organizations:DescribeOrganization",
            ]),
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
        // Calls that no policy can allow or deny for the caller.
        (
            "sts",
            "GetCallerIdentity",
            P("sts:GetCallerIdentity needs no permission"),
        ),
        (
            "sts",
            "GetSessionToken",
            P("an authentication operation: no policy controls sts:GetSessionToken"),
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
        // AWS Sign-In records console sign-in steps under `signin.amazonaws.com`; they are
        // not API calls of the principal (its few `signin:` API actions map by name).
        ("signin", "ConsoleLogin", N(SIGN_IN)),
        ("signin", "CheckMfa", N(SIGN_IN)),
        ("signin", "SwitchRole", N(SIGN_IN)),
        ("signin", "ExitRole", N(SIGN_IN)),
        ("signin", "RenewRole", N(SIGN_IN)),
        ("signin", "CredentialVerification", N(SIGN_IN)),
        ("signin", "CredentialChallenge", N(SIGN_IN)),
        ("signin", "UserAuthentication", N(SIGN_IN)),
        ("signin", "PasswordUpdated", N(SIGN_IN)),
        ("signin", "GetSigninToken", N(SIGN_IN)),
        ("signin", "ExternalIdPDirectoryLogin", N(SIGN_IN)),
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

/// Why a record's `eventType` says it is not an API call of the principal; `None` for API
/// calls (`AwsApiCall`, `AwsVpceEvent`: a call through a VPC endpoint), for a missing type
/// (records before eventVersion 1.02 have none) and for types not known here.
pub fn non_api_event_type(event_type: &str) -> Option<&'static str> {
    Some(match event_type {
        "AwsConsoleSignIn" => SIGN_IN,
        "AwsConsoleAction" => {
            "a console action that is not an API call (eventType AwsConsoleAction)"
        }
        "AwsServiceEvent" => {
            "an event AWS records about its own work, not a call by the principal (eventType AwsServiceEvent)"
        }
        "AwsCloudTrailInsight" => "a CloudTrail Insights event, not a call",
        _ => return None,
    })
}

/// Maps events to actions, remembering every `(eventSource, eventName)` it has seen so a
/// corpus with millions of events does the lookups once per distinct operation.
#[derive(Debug)]
pub struct Mapper<'c> {
    catalog: &'c Catalog,
    // Two levels keyed by `Box<str>` so a hit is looked up with the borrowed strings of the
    // record, allocating nothing.
    cache: HashMap<Box<str>, HashMap<Box<str>, Arc<Mapping>>>,
    /// One shared mapping per non-API `eventType`.
    by_type: HashMap<&'static str, Arc<Mapping>>,
}

impl<'c> Mapper<'c> {
    pub fn new(catalog: &'c Catalog) -> Mapper<'c> {
        Mapper {
            catalog,
            cache: HashMap::new(),
            by_type: HashMap::new(),
        }
    }

    pub fn catalog(&self) -> &'c Catalog {
        self.catalog
    }

    /// The mapping of an operation ([`map_event`]), cached.
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

    /// The mapping of a record given its `eventType` too ([`classify_event`]), cached.
    pub fn map_typed(
        &mut self,
        source: &str,
        name: &str,
        event_type: Option<&str>,
    ) -> Arc<Mapping> {
        match event_type.and_then(non_api_event_type) {
            Some(reason) => Arc::clone(
                self.by_type
                    .entry(reason)
                    .or_insert_with(|| Arc::new(Mapping::NotAnApiCall { reason })),
            ),
            None => self.map(source, name),
        }
    }
}

/// The mapping of a record, without caching: [`Mapping::NotAnApiCall`] when its `eventType`
/// says it is not an API call ([`non_api_event_type`]), else [`map_event`].
pub fn classify_event(
    catalog: &Catalog,
    source: &str,
    name: &str,
    event_type: Option<&str>,
) -> Mapping {
    match event_type.and_then(non_api_event_type) {
        Some(reason) => Mapping::NotAnApiCall { reason },
        None => map_event(catalog, source, name),
    }
}

/// Where the exception table has an operation (by IAM prefix or by source host).
fn exception(prefix: &str, host: &str, name: &str) -> Option<&'static Target> {
    EXCEPTIONS
        .iter()
        .find(|(p, n, _)| (*p == prefix || *p == host) && *n == name)
        .map(|(_, _, target)| target)
}

/// The mapping of one operation, without caching. The rules are in the module's
/// documentation; the `eventType` of a record is not looked at here (see
/// [`classify_event`]).
pub fn map_event(catalog: &Catalog, source: &str, name: &str) -> Mapping {
    let host = source
        .strip_suffix(".amazonaws.com")
        .or_else(|| source.strip_suffix(".amazonaws.com.cn"))
        .unwrap_or(source);
    let prefix = prefix_of_source(source);
    let stripped = strip_version_suffix(name);
    let exception = exception(prefix, host, stripped);
    match exception {
        Some(Target::Permissionless(reason)) => return Mapping::Permissionless { reason },
        Some(Target::NotApi(reason)) => return Mapping::NotAnApiCall { reason },
        _ => {}
    }
    if let Some(actions) = catalog.operation_actions(prefix, stripped) {
        return Mapping::Actions {
            actions: actions.to_vec(),
            confidence: Confidence::Reference,
        };
    }
    let mut confidence = if prefix != host || stripped != name {
        Confidence::Rule
    } else {
        Confidence::Exact
    };
    let names: Vec<String> = match exception {
        Some(Target::Actions(actions)) => {
            confidence = Confidence::Exception;
            actions.iter().map(|a| (*a).to_owned()).collect()
        }
        _ if prefix == "apigateway" => match http_verb(stripped) {
            // API Gateway's management permissions are the HTTP verbs of its REST API.
            Some(verb) => {
                confidence = Confidence::Rule;
                vec![format!("apigateway:{verb}")]
            }
            None => vec![format!("apigateway:{stripped}")],
        },
        _ if prefix == "budgets" && catalog.lookup(&format!("budgets:{stripped}")).is_none() => {
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
        _ if prefix == "signin" && catalog.lookup(&format!("signin:{stripped}")).is_none() => {
            // Every other `signin.amazonaws.com` event is a step of a console sign-in.
            return Mapping::NotAnApiCall { reason: SIGN_IN };
        }
        _ => {
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

/// How many operations the exception table maps to actions (for `whittle iam-data info`,
/// beside [`Catalog::operation_coverage`]).
pub fn exception_count() -> usize {
    EXCEPTIONS
        .iter()
        .filter(|(_, _, t)| matches!(t, Target::Actions(_)))
        .count()
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

/// Where the actions of a denial come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum DeniedFrom {
    /// The action the denial's `errorMessage` names, found in the catalog.
    Message,
    /// The message names no action the catalog knows (or none at all, as S3's denials of
    /// another account's calls): the actions of the event's mapping.
    EventMapping,
    /// Neither gave an action: `actions` is empty and `note` says why.
    Nothing,
}

/// The actions a denial denied, each an action of the catalog in its canonical spelling.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeniedAction {
    pub actions: Vec<String>,
    pub from: DeniedFrom,
    /// Why the message was not taken, or why there is no action.
    pub note: Option<String>,
}

/// The actions of a denied call of `event_name` on `source`: the action named in the
/// `error_message` ([`denied_action_of_message`]) when the catalog knows it (matched
/// case-insensitively, returned in the catalog's spelling), else the actions the event maps
/// to ([`map_event`]). Never a name that is not an action: a message naming `s3:ListObjects`
/// (an API name) on a `GetBucketTagging` event gives `s3:GetBucketTagging`.
pub fn denied_actions(
    catalog: &Catalog,
    source: &str,
    event_name: &str,
    error_message: Option<&str>,
) -> DeniedAction {
    denied_actions_mapped(
        catalog,
        &map_event(catalog, source, event_name),
        error_message,
    )
}

/// [`denied_actions`] with the event's mapping already at hand (from a [`Mapper`]).
pub fn denied_actions_mapped(
    catalog: &Catalog,
    mapping: &Mapping,
    error_message: Option<&str>,
) -> DeniedAction {
    let named = error_message.and_then(denied_action_of_message);
    if let Some(id) = named.and_then(|a| catalog.lookup(a)) {
        return DeniedAction {
            actions: vec![catalog.action(id).name.clone()],
            from: DeniedFrom::Message,
            note: None,
        };
    }
    let why = match named {
        Some(named) => format!("the denial names `{named}`, which is not an IAM action"),
        None => "the denial names no action".to_owned(),
    };
    match mapping {
        Mapping::Actions { actions, .. } => DeniedAction {
            actions: actions
                .iter()
                .map(|id| catalog.action(*id).name.clone())
                .collect(),
            from: DeniedFrom::EventMapping,
            note: Some(format!("{why}; the actions are the event's")),
        },
        Mapping::Unmapped { reason } => DeniedAction {
            actions: Vec::new(),
            from: DeniedFrom::Nothing,
            note: Some(format!("{why}, and the event is unmapped: {reason}")),
        },
        Mapping::Permissionless { reason } | Mapping::NotAnApiCall { reason } => DeniedAction {
            actions: Vec::new(),
            from: DeniedFrom::Nothing,
            note: Some(format!("{why}, and the event has no action: {reason}")),
        },
    }
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
    fn s3_operations_named_unlike_their_action() {
        // CloudTrail's event names and the S3 API's, where the permission has another name.
        for (operation, actions) in [
            (
                "DeleteBucketPublicAccessBlock",
                &["s3:PutBucketPublicAccessBlock"][..],
            ),
            (
                "GetBucketPublicAccessBlock",
                &["s3:GetBucketPublicAccessBlock"],
            ),
            (
                "PutBucketPublicAccessBlock",
                &["s3:PutBucketPublicAccessBlock"],
            ),
            (
                "DeletePublicAccessBlock",
                &["s3:PutBucketPublicAccessBlock"],
            ),
            (
                "GetAccountPublicAccessBlock",
                &["s3:GetAccountPublicAccessBlock"],
            ),
            (
                "DeleteAccountPublicAccessBlock",
                &["s3:PutAccountPublicAccessBlock"],
            ),
            ("GetBucketLifecycle", &["s3:GetLifecycleConfiguration"]),
            (
                "GetBucketLifecycleConfiguration",
                &["s3:GetLifecycleConfiguration"],
            ),
            ("PutBucketLifecycle", &["s3:PutLifecycleConfiguration"]),
            (
                "PutBucketLifecycleConfiguration",
                &["s3:PutLifecycleConfiguration"],
            ),
            ("DeleteBucketLifecycle", &["s3:PutLifecycleConfiguration"]),
            ("GetBucketEncryption", &["s3:GetEncryptionConfiguration"]),
            ("PutBucketEncryption", &["s3:PutEncryptionConfiguration"]),
            ("DeleteBucketEncryption", &["s3:PutEncryptionConfiguration"]),
            ("DeleteBucketTagging", &["s3:PutBucketTagging"]),
            ("GetBucketCors", &["s3:GetBucketCORS"]),
            ("PutBucketCors", &["s3:PutBucketCORS"]),
            ("DeleteBucketCors", &["s3:PutBucketCORS"]),
            ("DeleteBucketWebsite", &["s3:DeleteBucketWebsite"]),
            ("DeleteBucketPolicy", &["s3:DeleteBucketPolicy"]),
            ("ListObjectVersions", &["s3:ListBucketVersions"]),
            ("ListMultipartUploads", &["s3:ListBucketMultipartUploads"]),
            ("ListParts", &["s3:ListMultipartUploadParts"]),
            ("CreateMultipartUpload", &["s3:PutObject"]),
            ("UploadPart", &["s3:PutObject"]),
            ("CompleteMultipartUpload", &["s3:PutObject"]),
            ("AbortMultipartUpload", &["s3:AbortMultipartUpload"]),
            ("UploadPartCopy", &["s3:GetObject", "s3:PutObject"]),
            ("CopyObject", &["s3:GetObject", "s3:PutObject"]),
            ("DeleteObjects", &["s3:DeleteObject"]),
            ("HeadObject", &["s3:GetObject"]),
            ("HeadBucket", &["s3:ListBucket"]),
            ("ListObjects", &["s3:ListBucket"]),
            ("ListObjectsV2", &["s3:ListBucket"]),
            ("ListBuckets", &["s3:ListAllMyBuckets"]),
            (
                "GetObjectAttributes",
                &["s3:GetObject", "s3:GetObjectAttributes"],
            ),
            ("GetBucketNotification", &["s3:GetBucketNotification"]),
            (
                "GetBucketNotificationConfiguration",
                &["s3:GetBucketNotification"],
            ),
            (
                "PutBucketNotificationConfiguration",
                &["s3:PutBucketNotification"],
            ),
            ("GetBucketReplication", &["s3:GetReplicationConfiguration"]),
            ("PutBucketReplication", &["s3:PutReplicationConfiguration"]),
            (
                "DeleteBucketReplication",
                &["s3:PutReplicationConfiguration"],
            ),
            (
                "GetBucketOwnershipControls",
                &["s3:GetBucketOwnershipControls"],
            ),
            (
                "PutBucketOwnershipControls",
                &["s3:PutBucketOwnershipControls"],
            ),
            (
                "DeleteBucketOwnershipControls",
                &["s3:PutBucketOwnershipControls"],
            ),
            (
                "GetObjectLockConfiguration",
                &["s3:GetBucketObjectLockConfiguration"],
            ),
            (
                "PutObjectLockConfiguration",
                &["s3:PutBucketObjectLockConfiguration"],
            ),
            (
                "GetBucketObjectLockConfiguration",
                &["s3:GetBucketObjectLockConfiguration"],
            ),
            (
                "GetBucketAccelerateConfiguration",
                &["s3:GetAccelerateConfiguration"],
            ),
            (
                "PutBucketAccelerateConfiguration",
                &["s3:PutAccelerateConfiguration"],
            ),
            (
                "GetBucketMetricsConfiguration",
                &["s3:GetMetricsConfiguration"],
            ),
            (
                "PutBucketMetricsConfiguration",
                &["s3:PutMetricsConfiguration"],
            ),
            (
                "DeleteBucketMetricsConfiguration",
                &["s3:PutMetricsConfiguration"],
            ),
            (
                "ListBucketMetricsConfigurations",
                &["s3:GetMetricsConfiguration"],
            ),
            (
                "GetBucketAnalyticsConfiguration",
                &["s3:GetAnalyticsConfiguration"],
            ),
            (
                "DeleteBucketAnalyticsConfiguration",
                &["s3:PutAnalyticsConfiguration"],
            ),
            (
                "GetBucketInventoryConfiguration",
                &["s3:GetInventoryConfiguration"],
            ),
            (
                "DeleteBucketInventoryConfiguration",
                &["s3:PutInventoryConfiguration"],
            ),
            (
                "GetBucketIntelligentTieringConfiguration",
                &["s3:GetIntelligentTieringConfiguration"],
            ),
            (
                "DeleteBucketIntelligentTieringConfiguration",
                &["s3:PutIntelligentTieringConfiguration"],
            ),
            ("GetBucketRequestPayment", &["s3:GetBucketRequestPayment"]),
            ("PutBucketRequestPayment", &["s3:PutBucketRequestPayment"]),
            ("SelectObjectContent", &["s3:GetObject"]),
            ("RestoreObject", &["s3:RestoreObject"]),
            (
                "WriteGetObjectResponse",
                &["s3-object-lambda:WriteGetObjectResponse"],
            ),
        ] {
            assert_eq!(
                names(&map("s3.amazonaws.com", operation)),
                actions,
                "{operation}"
            );
        }
    }

    #[test]
    fn other_rest_style_services() {
        for (source, operation, actions) in [
            ("lambda", "Invoke", &["lambda:InvokeFunction"][..]),
            ("lambda", "InvokeAsync", &["lambda:InvokeAsync"]),
            (
                "lambda",
                "GetLayerVersionByArn20181031",
                &["lambda:GetLayerVersion"],
            ),
            (
                "lambda",
                "ListVersionsByFunction20150331",
                &["lambda:ListVersionsByFunction"],
            ),
            (
                "lambda",
                "UpdateFunctionCode20150331v2",
                &["lambda:UpdateFunctionCode"],
            ),
            (
                "cloudfront",
                "CreateDistributionWithTags2020_05_31",
                &["cloudfront:CreateDistribution", "cloudfront:TagResource"],
            ),
            (
                "cloudfront",
                "GetDistributionConfig2020_05_31",
                &["cloudfront:GetDistributionConfig"],
            ),
            (
                "route53",
                "ChangeResourceRecordSets",
                &["route53:ChangeResourceRecordSets"],
            ),
            (
                "route53",
                "ListHostedZonesByName",
                &["route53:ListHostedZonesByName"],
            ),
            (
                "elasticfilesystem",
                "CreateMountTarget",
                &["elasticfilesystem:CreateMountTarget"],
            ),
            (
                "elasticfilesystem",
                "DescribeMountTargetSecurityGroups",
                &["elasticfilesystem:DescribeMountTargetSecurityGroups"],
            ),
            (
                "elastictranscoder",
                "ReadJob",
                &["elastictranscoder:ReadJob"],
            ),
            ("apigateway", "GetRestApis", &["apigateway:GET"]),
            ("apigateway", "CreateApi", &["apigateway:POST"]),
            ("apigateway", "ImportRestApi", &["apigateway:POST"]),
            ("apigateway", "PutIntegration", &["apigateway:PUT"]),
            (
                "execute-api",
                "PostToConnection",
                &["execute-api:ManageConnections"],
            ),
            ("monitoring", "PutMetricData", &["cloudwatch:PutMetricData"]),
        ] {
            let source = format!("{source}.amazonaws.com");
            assert_eq!(
                names(&map(&source, operation)),
                actions,
                "{source} {operation}"
            );
        }
    }

    #[test]
    fn permissionless_operations_are_dropped() {
        assert!(matches!(
            map("sts.amazonaws.com", "GetCallerIdentity"),
            Mapping::Permissionless { .. }
        ));
        // An API call of STS, unlike the console's role switch.
        assert_eq!(
            names(&map("sts.amazonaws.com", "AssumeRole")),
            ["sts:AssumeRole"]
        );
    }

    #[test]
    fn console_and_service_events_are_not_api_calls() {
        let not_api = |m: Mapping| matches!(m, Mapping::NotAnApiCall { .. });
        for name in [
            "ConsoleLogin",
            "GetSigninToken",
            "ExternalIdPDirectoryLogin",
            "PasswordUpdated",
            "SwitchRole",
            "CheckMfa",
            // Not listed: every sign-in step that is not a `signin:` action.
            "SomeFutureSignInStep",
        ] {
            assert!(not_api(map("signin.amazonaws.com", name)), "{name}");
        }
        // `signin:` API actions still map.
        assert_eq!(
            names(&map(
                "signin.amazonaws.com",
                "CreateTrustedIdentityPropagationApplicationForConsole"
            )),
            ["signin:CreateTrustedIdentityPropagationApplicationForConsole"]
        );
        let catalog = Catalog::embedded();
        for event_type in ["AwsServiceEvent", "AwsConsoleAction", "AwsConsoleSignIn"] {
            assert!(
                not_api(classify_event(
                    catalog,
                    "kms.amazonaws.com",
                    "RotateKey",
                    Some(event_type)
                )),
                "{event_type}"
            );
        }
        assert!(matches!(
            classify_event(catalog, "kms.amazonaws.com", "Decrypt", Some("AwsApiCall")),
            Mapping::Actions { .. }
        ));
        assert!(matches!(
            classify_event(catalog, "kms.amazonaws.com", "Decrypt", None),
            Mapping::Actions { .. }
        ));
        let mut mapper = Mapper::new(catalog);
        let a = mapper.map_typed("kms.amazonaws.com", "RotateKey", Some("AwsServiceEvent"));
        let b = mapper.map_typed("s3.amazonaws.com", "X", Some("AwsServiceEvent"));
        assert!(Arc::ptr_eq(&a, &b));
        assert!(not_api((*a).clone()));
    }

    /// A catalog with AWS's authorized actions for a few operations, shaped as a refresh
    /// writes it.
    fn catalog_with_operations() -> Catalog {
        let text = "version\tservice-reference\t2026-11-24\t2026-11-24T00:00:00Z\n\
            action\ts3:GetObject\tRead\tobject*\n\
            action\ts3:GetObjectTagging\tRead\tobject*\n\
            action\ts3:PutObject\tWrite\tobject*\n\
            action\ts3:PutObjectTagging\tTagging\tobject*\n\
            action\ts3:ListBucket\tList\tbucket*\n\
            action\ts3:GetBucketTagging\tRead\tbucket*\n\
            action\ts3:PutBucketPublicAccessBlock\tPermissions\tbucket*\n\
            action\tkms:Decrypt\tWrite\tkey*\n\
            action\tlambda:InvokeFunction\tWrite\tfunction*\n\
            operation\ts3\tCopyObject\ts3:GetObject,s3:GetObjectTagging,s3:PutObject,s3:PutObjectTagging,kms:Decrypt\n\
            operation\ts3\tDeletePublicAccessBlock\ts3:PutBucketPublicAccessBlock\n\
            operation\ts3\tListObjects\ts3:ListBucket\n\
            operation\ts3\tGetBucketTagging\ts3:GetBucketTagging\n\
            operation\tlambda\tInvoke\tlambda:InvokeFunction\n";
        Catalog::parse(text).expect("parses")
    }

    #[test]
    fn authorized_actions_come_first_when_the_catalog_has_them() {
        let catalog = catalog_with_operations();
        let names = |m: &Mapping| match m {
            Mapping::Actions {
                actions,
                confidence,
            } => (
                actions
                    .iter()
                    .map(|id| catalog.action(*id).name.clone())
                    .collect::<Vec<_>>(),
                *confidence,
            ),
            other => panic!("not actions: {other:?}"),
        };
        // AWS's list wins over the exception table (which has only GetObject and PutObject).
        assert_eq!(
            names(&map_event(&catalog, "s3.amazonaws.com", "CopyObject")),
            (
                vec![
                    "s3:GetObject".to_owned(),
                    "s3:GetObjectTagging".to_owned(),
                    "s3:PutObject".to_owned(),
                    "s3:PutObjectTagging".to_owned(),
                    "kms:Decrypt".to_owned()
                ],
                Confidence::Reference
            )
        );
        // Version suffixes are stripped before the operation is looked up.
        assert_eq!(
            names(&map_event(
                &catalog,
                "lambda.amazonaws.com",
                "Invoke20150331"
            )),
            (
                vec!["lambda:InvokeFunction".to_owned()],
                Confidence::Reference
            )
        );
        // Without AWS's word for it, the exception table, then the name.
        assert_eq!(
            names(&map_event(&catalog, "s3.amazonaws.com", "HeadBucket")),
            (vec!["s3:ListBucket".to_owned()], Confidence::Exception)
        );
        assert_eq!(
            names(&map_event(&catalog, "s3.amazonaws.com", "PutObject")),
            (vec!["s3:PutObject".to_owned()], Confidence::Exact)
        );
        // What needs no permission stays so whatever the Service Reference lists.
        assert!(matches!(
            map_event(&catalog, "signin.amazonaws.com", "ConsoleLogin"),
            Mapping::NotAnApiCall { .. }
        ));
    }

    #[test]
    fn a_denial_takes_its_action_from_the_message_only_when_it_is_an_action() {
        let catalog = Catalog::embedded();
        // S3 names its API (`s3:ListObjects`) where IAM's action is another one.
        let d = denied_actions(
            catalog,
            "s3.amazonaws.com",
            "GetBucketTagging",
            Some(
                "User: arn:aws:sts::1:assumed-role/r/s is not authorized to perform: s3:ListObjects on resource: arn:aws:s3:::b",
            ),
        );
        assert_eq!(d.actions, ["s3:GetBucketTagging"]);
        assert_eq!(d.from, DeniedFrom::EventMapping);
        assert!(
            d.note
                .as_deref()
                .is_some_and(|n| n.contains("s3:ListObjects")),
            "{d:?}"
        );
        // An action the catalog knows, in any case, comes back in the catalog's spelling.
        let d = denied_actions(
            catalog,
            "ec2.amazonaws.com",
            "RunInstances",
            Some("is not authorized to perform: EC2:runinstances on resource: x"),
        );
        assert_eq!(d.actions, ["ec2:RunInstances"]);
        assert_eq!(d.from, DeniedFrom::Message);
        // The message may name another service's action: it is what was denied.
        let d = denied_actions(
            catalog,
            "s3.amazonaws.com",
            "PutObject",
            Some("User: x is not authorized to perform: kms:GenerateDataKey on resource: k"),
        );
        assert_eq!(d.actions, ["kms:GenerateDataKey"]);
        // No action named (S3's "Access Denied"): the event's mapping, several actions too.
        let d = denied_actions(
            catalog,
            "s3.amazonaws.com",
            "CopyObject",
            Some("Access Denied"),
        );
        assert_eq!(d.actions, ["s3:GetObject", "s3:PutObject"]);
        assert_eq!(d.from, DeniedFrom::EventMapping);
        let d = denied_actions(catalog, "s3.amazonaws.com", "HeadObject", None);
        assert_eq!(d.actions, ["s3:GetObject"]);
        // Neither: nothing, never the event's name as if it were an action.
        let d = denied_actions(
            catalog,
            "s3.amazonaws.com",
            "FrobnicateBucket",
            Some("not authorized to perform: s3:Frobnicate"),
        );
        assert!(d.actions.is_empty());
        assert_eq!(d.from, DeniedFrom::Nothing);
        assert!(
            d.note.as_deref().is_some_and(|n| n.contains("unmapped")),
            "{d:?}"
        );
        // A wildcard is not an action either.
        let d = denied_actions(
            catalog,
            "s3.amazonaws.com",
            "GetObject",
            Some("not authorized to perform: s3:*"),
        );
        assert_eq!(d.actions, ["s3:GetObject"]);
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
        let path = crate::tests::shared_testdata("mapping/cloudtrail_service_mappings.json");
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

/// Oracles from `../shared/testdata` (written by others; absent on a fresh clone, when these
/// tests skip with a note).
#[cfg(test)]
mod testdata_oracles {
    use std::collections::{BTreeMap, BTreeSet};
    use std::path::PathBuf;

    use super::*;

    fn shared(relative: &str) -> Option<PathBuf> {
        let path = crate::tests::shared_testdata(relative);
        if path.exists() {
            Some(path)
        } else {
            eprintln!("note: {} is absent; skipping this oracle", path.display());
            None
        }
    }

    /// What whittle and iamlive's map (iann0036/iamlive `map.json`, 2022-08, MIT) say about
    /// each SDK operation both know.
    struct Agreement {
        compared: usize,
        agree: usize,
        /// `Service.Operation` -> `whittle [...], iamlive {...}` where they differ.
        differ: BTreeMap<String, String>,
    }

    /// Differences judged and kept: `(key or key prefix ending in '.', why whittle differs)`.
    const KNOWN_DIFFERENCES: &[(&str, &str)] = &[
        (
            "S3Control.GetPublicAccessBlock",
            "the account's block: CloudTrail names it GetAccountPublicAccessBlock (an action by \
             name); the bare name is S3's bucket operation",
        ),
        ("S3Control.PutPublicAccessBlock", "as GetPublicAccessBlock"),
        (
            "S3Control.DeletePublicAccessBlock",
            "as GetPublicAccessBlock (DeleteAccountPublicAccessBlock is in the exception table)",
        ),
        (
            "S3.UploadPartCopy",
            "whittle adds s3:GetObject: copying a part reads the source object (S3 API reference)",
        ),
        (
            "S3.GetObjectAttributes",
            "whittle adds s3:GetObject, which the S3 API reference requires with \
             s3:GetObjectAttributes",
        ),
        (
            "LexModelsV2.",
            "iamlive (2022) names Lex V1 actions; Lex V2 operations have their own actions now",
        ),
        (
            "MediaPackage.ConfigureLogs",
            "mediapackage:ConfigureLogs is an action of its own now",
        ),
        (
            "Detective.ListOrganizationAdminAccounts",
            "whittle adds detective:ListOrganizationAdminAccount, the operation's own action",
        ),
    ];

    fn explained(key: &str, theirs: &BTreeSet<String>) -> bool {
        // iamlive maps S3 Control's bucket and access point calls to S3 on Outposts, which
        // CloudTrail logs under s3-outposts.amazonaws.com (mapped there by name).
        (key.starts_with("S3Control.") && theirs.iter().all(|a| a.starts_with("s3-outposts:")))
            || KNOWN_DIFFERENCES.iter().any(|(k, _)| {
                if k.ends_with('.') {
                    key.starts_with(k)
                } else {
                    key == *k
                }
            })
    }

    /// Also returns the differences nothing explains.
    fn iamlive_agreement(only_prefix: Option<&str>) -> Option<(Agreement, Vec<String>)> {
        let path = shared("mapping/iamlive-map.json")?;
        let text = std::fs::read_to_string(&path).expect("readable");
        let doc: serde_json::Value = serde_json::from_str(&text).expect("oracle parses");
        let services = doc["sdk_service_mappings"].as_object().expect("services");
        let methods = doc["sdk_method_iam_mappings"].as_object().expect("methods");
        let permissionless: BTreeSet<&str> = doc["sdk_permissionless_actions"]
            .as_array()
            .expect("list")
            .iter()
            .filter_map(|v| v.as_str())
            .collect();
        let catalog = Catalog::embedded();
        let mut result = Agreement {
            compared: 0,
            agree: 0,
            differ: BTreeMap::new(),
        };
        let mut unexplained = Vec::new();
        for (key, entries) in methods {
            let Some((service, operation)) = key.split_once('.') else {
                continue;
            };
            let Some(prefix) = services.get(service).and_then(|p| p.as_str()) else {
                continue;
            };
            if only_prefix.is_some_and(|p| p != prefix) || !catalog.has_service(prefix) {
                continue;
            }
            // Only the actions the current catalog still has: the oracle is from 2022.
            let theirs: BTreeSet<String> = entries
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|e| e["action"].as_str())
                .filter_map(|a| catalog.lookup(a))
                .map(|id| catalog.action(id).name.clone())
                .collect();
            if theirs.is_empty() || permissionless.contains(key.as_str()) {
                continue;
            }
            result.compared += 1;
            // The WebSocket management API is API Gateway's data plane, `execute-api`.
            let source = match service {
                "ApiGatewayManagementApi" => "execute-api.amazonaws.com".to_owned(),
                _ => format!("{prefix}.amazonaws.com"),
            };
            let mapping = map_event(catalog, &source, operation);
            let ours: Vec<String> = match &mapping {
                Mapping::Actions { actions, .. } => actions
                    .iter()
                    .map(|id| catalog.action(*id).name.clone())
                    .collect(),
                _ => Vec::new(),
            };
            // Agreement: every action whittle names is one iamlive names for the call
            // (iamlive also lists the ones a parameter may add, such as an ACL).
            if !ours.is_empty() && ours.iter().all(|a| theirs.contains(a)) {
                result.agree += 1;
            } else {
                let line = match &mapping {
                    Mapping::Actions { .. } => format!("whittle {ours:?}, iamlive {theirs:?}"),
                    other => format!("whittle {other:?}, iamlive {theirs:?}"),
                };
                if !explained(key, &theirs) {
                    unexplained.push(format!("{key}: {line}"));
                }
                result.differ.insert(key.clone(), line);
            }
        }
        Some((result, unexplained))
    }

    #[test]
    fn s3_agrees_with_iamlive() {
        let Some((a, unexplained)) = iamlive_agreement(Some("s3")) else {
            return;
        };
        eprintln!(
            "S3 operations: {} of {} agree with iamlive; differ:\n  {}",
            a.agree,
            a.compared,
            a.differ
                .iter()
                .map(|(k, v)| format!("{k}: {v}"))
                .collect::<Vec<_>>()
                .join("\n  ")
        );
        assert!(unexplained.is_empty(), "unexplained: {unexplained:#?}");
    }

    #[test]
    fn agreement_with_iamlive() {
        let Some((a, unexplained)) = iamlive_agreement(None) else {
            return;
        };
        let rate = a.agree as f64 / a.compared as f64;
        eprintln!(
            "iamlive agreement: {} of {} SDK operations ({:.2}%); {} differ, every one explained in KNOWN_DIFFERENCES",
            a.agree,
            a.compared,
            rate * 100.0,
            a.differ.len(),
        );
        assert!(unexplained.is_empty(), "unexplained: {unexplained:#?}");
        // Measured: 5,199 of 5,243 (99.16%); the rest are the explained differences.
        assert!(rate >= 0.99, "agreement fell to {rate}");
    }

    /// Every record of `../shared/testdata/cloudtrail`, whatever the file's layout: a log
    /// file (`{"Records":[...]}` or a bare array), the awsdocs examples (`[{"record": ...}]`)
    /// and a LookupEvents response (`CloudTrailEvent` strings). Compressed copies of files
    /// that are also there as `.json` are left out.
    fn cloudtrail_records() -> Option<Vec<(String, serde_json::Value)>> {
        let root = shared("cloudtrail")?;
        let mut files = Vec::new();
        let mut dirs = vec![root.clone()];
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(&dir).expect("readable") {
                let path = entry.expect("entry").path();
                if path.is_dir() {
                    dirs.push(path);
                } else if path.extension().is_some_and(|e| e == "json") {
                    files.push(path);
                }
            }
        }
        files.sort();
        let mut records = Vec::new();
        for path in files {
            let name = path
                .strip_prefix(&root)
                .unwrap_or(&path)
                .display()
                .to_string();
            let Ok(doc) = serde_json::from_slice::<serde_json::Value>(
                &std::fs::read(&path).expect("readable"),
            ) else {
                continue; // the deliberately broken file
            };
            let items: Vec<serde_json::Value> = match &doc {
                serde_json::Value::Array(items) => items.clone(),
                serde_json::Value::Object(o) => {
                    if let Some(serde_json::Value::Array(items)) = o.get("Records") {
                        items.clone()
                    } else if let Some(serde_json::Value::Array(events)) = o.get("Events") {
                        events
                            .iter()
                            .filter_map(|e| e["CloudTrailEvent"].as_str())
                            .filter_map(|t| serde_json::from_str(t).ok())
                            .collect()
                    } else {
                        Vec::new()
                    }
                }
                _ => Vec::new(),
            };
            for item in items {
                let record = match item.get("record") {
                    Some(inner) => inner.clone(),
                    None => item,
                };
                records.push((name.clone(), record));
            }
        }
        Some(records)
    }

    /// Events of the test data judged unmappable, with the reason: `(eventSource, eventName,
    /// why)`. The oracle asserts the unmapped set is exactly this, so a regression shows.
    const UNMAPPABLE: &[(&str, &str, &str)] = &[
        (
            "eventSource1",
            "eventName1",
            "a placeholder of aws-cloudtrail-processing-library's fixtures",
        ),
        (
            "eventSource2",
            "eventName2",
            "a placeholder of aws-cloudtrail-processing-library's fixtures",
        ),
        (
            "eventSource3",
            "eventName3",
            "a placeholder of aws-cloudtrail-processing-library's fixtures",
        ),
        (
            "eventSource4",
            "eventName4",
            "a placeholder of aws-cloudtrail-processing-library's fixtures",
        ),
        (
            "eventSource5",
            "eventName5",
            "a placeholder of aws-cloudtrail-processing-library's fixtures",
        ),
        (
            "eventSource6",
            "eventName6",
            "a placeholder of aws-cloudtrail-processing-library's fixtures",
        ),
    ];

    #[test]
    fn every_real_event_of_the_test_data_maps_or_is_explained() {
        let Some(records) = cloudtrail_records() else {
            return;
        };
        let catalog = Catalog::embedded();
        let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
        let mut unmapped: BTreeMap<(String, String), String> = BTreeMap::new();
        let mut not_api: BTreeSet<String> = BTreeSet::new();
        for (file, value) in &records {
            // Through the trail reader's record type, as mining reads them.
            let text = value.to_string();
            let record: crate::trail::Record<'_> =
                serde_json::from_str(&text).expect("a record decodes");
            let (Some(source), Some(name)) =
                (record.event_source.as_deref(), record.event_name.as_deref())
            else {
                *counts.entry("no eventSource or eventName").or_default() += 1;
                continue;
            };
            let mapping = classify_event(catalog, source, name, record.event_type.as_deref());
            let class = match &mapping {
                Mapping::Actions { actions, .. } => {
                    assert!(!actions.is_empty(), "{file}: {source} {name}");
                    for id in actions {
                        let action = &catalog.action(*id).name;
                        assert_eq!(catalog.lookup(action), Some(*id), "{file}: {action}");
                    }
                    "actions"
                }
                Mapping::Permissionless { .. } => "permissionless",
                Mapping::NotAnApiCall { .. } => {
                    not_api.insert(format!(
                        "{source} {name} ({})",
                        record.event_type.as_deref().unwrap_or("no eventType")
                    ));
                    "not an API call"
                }
                Mapping::Unmapped { reason } => {
                    unmapped.insert((source.to_owned(), name.to_owned()), reason.clone());
                    "unmapped"
                }
            };
            *counts.entry(class).or_default() += 1;
        }
        eprintln!(
            "test data: {} records: {counts:?}\nnot API calls: {not_api:#?}\nunmapped: {unmapped:#?}",
            records.len()
        );
        let expected: BTreeSet<(String, String)> = UNMAPPABLE
            .iter()
            .map(|(s, n, _)| ((*s).to_owned(), (*n).to_owned()))
            .collect();
        let found: BTreeSet<(String, String)> = unmapped.keys().cloned().collect();
        assert_eq!(found, expected, "unmapped: {unmapped:#?}");
        assert!(counts["actions"] > 250, "{counts:?}");
    }
}
