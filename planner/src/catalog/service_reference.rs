//! AWS's Service Reference (`https://servicereference.us-east-1.amazonaws.com/`): an index
//! of services, each a JSON document listing its actions (with annotations that give the
//! access level), resource types (with ARN formats) and API operations. An operation names
//! the actions it authorizes (`AuthorizedActions`, each `{"Name", "Service"}`, possibly of
//! another service) and the SDK methods that call it (`SDK`, each `{"Name", "Method",
//! "Package"}`); services that do not map operations to actions yet leave
//! `AuthorizedActions` out. `whittle iam-data refresh` fetches the documents; this module
//! turns them into a [`Catalog`], operations included.

use serde::Deserialize;

use super::{AccessLevel, Action, Catalog, CatalogError, DataVersion};

/// One operation of a service document.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct OperationDoc {
    pub name: String,
    #[serde(default)]
    pub authorized_actions: Vec<AuthorizedActionDoc>,
    #[serde(default, rename = "SDK")]
    pub sdk: Vec<SdkDoc>,
}

/// An action an operation authorizes: `{"Name": "GetObject", "Service": "s3"}`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct AuthorizedActionDoc {
    pub name: String,
    pub service: String,
}

/// An SDK method that calls an operation: `{"Name": "s3", "Method": "copy_object",
/// "Package": "Boto3"}`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SdkDoc {
    pub name: String,
    #[serde(default)]
    pub method: Option<String>,
    #[serde(default)]
    pub package: Option<String>,
}

/// One entry of the index document: `[{"service": "s3", "url": "https://…/s3.json"}, …]`.
#[derive(Debug, Clone, Deserialize)]
pub struct IndexEntry {
    pub service: String,
    pub url: String,
}

/// A service document; fields whittle does not use are ignored.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ServiceDoc {
    pub name: String,
    #[serde(default)]
    pub actions: Vec<ActionDoc>,
    #[serde(default)]
    pub resources: Vec<ResourceDoc>,
    #[serde(default)]
    pub operations: Vec<OperationDoc>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ActionDoc {
    pub name: String,
    #[serde(default)]
    pub annotations: Option<Annotations>,
    #[serde(default)]
    pub resources: Vec<NamedDoc>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Annotations {
    #[serde(default)]
    pub properties: Properties,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Properties {
    #[serde(default)]
    pub is_list: bool,
    #[serde(default)]
    pub is_permission_management: bool,
    #[serde(default)]
    pub is_tagging_only: bool,
    #[serde(default)]
    pub is_write: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct NamedDoc {
    pub name: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ResourceDoc {
    pub name: String,
    #[serde(default, rename = "ARNFormats")]
    pub arn_formats: Vec<String>,
}

/// The access level the annotations imply, most privileged first: permissions management,
/// tagging, write, list, else read (how the Service Authorization Reference classifies).
fn level(properties: &Properties) -> AccessLevel {
    if properties.is_permission_management {
        AccessLevel::Permissions
    } else if properties.is_tagging_only {
        AccessLevel::Tagging
    } else if properties.is_write {
        AccessLevel::Write
    } else if properties.is_list {
        AccessLevel::List
    } else {
        AccessLevel::Read
    }
}

/// Builds a catalog from service documents. The Service Reference does not say which
/// resource types are required, so every type is recorded as optional. Operations keep
/// their authorized actions (those without any are left out: the service does not map
/// them yet).
pub fn catalog_from(docs: &[ServiceDoc], version: &DataVersion) -> Result<Catalog, CatalogError> {
    let mut actions = Vec::new();
    let mut resources = Vec::new();
    let mut operations: Vec<(String, String, Vec<String>)> = Vec::new();
    for doc in docs {
        for operation in &doc.operations {
            if operation.authorized_actions.is_empty() || operation.name.contains(['\t', '\n']) {
                continue;
            }
            operations.push((
                doc.name.clone(),
                operation.name.clone(),
                operation
                    .authorized_actions
                    .iter()
                    .map(|a| format!("{}:{}", a.service, a.name))
                    .collect(),
            ));
        }
        for action in &doc.actions {
            actions.push(Action {
                name: format!("{}:{}", doc.name, action.name),
                level: action
                    .annotations
                    .as_ref()
                    .map_or(AccessLevel::Read, |a| level(&a.properties)),
                resource_types: action
                    .resources
                    .iter()
                    .map(|r| (r.name.clone(), false))
                    .collect(),
            });
        }
        for resource in &doc.resources {
            if let Some(arn) = resource.arn_formats.first() {
                resources.push((doc.name.clone(), resource.name.clone(), arn.clone()));
            }
        }
    }
    actions.sort_by(|a, b| a.name.cmp(&b.name));
    actions.dedup_by(|a, b| a.name.eq_ignore_ascii_case(&b.name));
    // One record per operation (case-insensitively), as the catalog requires.
    operations.sort_by(|a, b| {
        (a.0.to_ascii_lowercase(), a.1.to_ascii_lowercase())
            .cmp(&(b.0.to_ascii_lowercase(), b.1.to_ascii_lowercase()))
    });
    operations.dedup_by(|a, b| a.0.eq_ignore_ascii_case(&b.0) && a.1.eq_ignore_ascii_case(&b.1));
    Catalog::from_parts_with_operations(version, &actions, &resources, &operations)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Part of a service document as AWS documents it ("Simplified AWS service information
    /// for programmatic access"): actions with annotations, resources with ARN formats, and
    /// operations with their authorized actions and SDK methods. Values are made up in that
    /// shape.
    const S3_DOC: &str = r#"{
      "Name": "s3",
      "Version": "v1.4",
      "Actions": [
        {"Name": "GetObject", "ActionConditionKeys": ["s3:ExistingObjectTag/<key>"],
         "Annotations": {"Properties": {"IsList": false, "IsPermissionManagement": false, "IsTaggingOnly": false, "IsWrite": false}},
         "Resources": [{"Name": "object"}], "SupportedBy": {"IAM Access Analyzer Policy Generation": true, "IAM Action Last Accessed": true}},
        {"Name": "GetObjectTagging", "Annotations": {"Properties": {"IsList": false, "IsPermissionManagement": false, "IsTaggingOnly": false, "IsWrite": false}}, "Resources": [{"Name": "object"}]},
        {"Name": "PutObject", "Annotations": {"Properties": {"IsList": false, "IsPermissionManagement": false, "IsTaggingOnly": false, "IsWrite": true}}, "Resources": [{"Name": "object"}]},
        {"Name": "PutObjectTagging", "Annotations": {"Properties": {"IsList": false, "IsPermissionManagement": false, "IsTaggingOnly": true, "IsWrite": false}}, "Resources": [{"Name": "object"}]},
        {"Name": "ListBucket", "Annotations": {"Properties": {"IsList": true, "IsPermissionManagement": false, "IsTaggingOnly": false, "IsWrite": false}}, "Resources": [{"Name": "bucket"}]},
        {"Name": "PutBucketPublicAccessBlock", "Annotations": {"Properties": {"IsList": false, "IsPermissionManagement": true, "IsTaggingOnly": false, "IsWrite": true}}, "Resources": [{"Name": "bucket"}]}
      ],
      "Resources": [
        {"Name": "bucket", "ARNFormats": ["arn:${Partition}:s3:::${BucketName}"]},
        {"Name": "object", "ARNFormats": ["arn:${Partition}:s3:::${BucketName}/${ObjectName}"]}
      ],
      "Operations": [
        {"Name": "CopyObject",
         "AuthorizedActions": [
           {"Name": "GetObject", "Service": "s3"},
           {"Name": "GetObjectTagging", "Service": "s3"},
           {"Name": "PutObject", "Service": "s3"},
           {"Name": "PutObjectTagging", "Service": "s3"}
         ],
         "SDK": [{"Name": "s3", "Method": "copy_object", "Package": "Boto3"}]},
        {"Name": "DeletePublicAccessBlock",
         "AuthorizedActions": [{"Name": "PutBucketPublicAccessBlock", "Service": "s3"}],
         "SDK": [{"Name": "s3", "Method": "delete_public_access_block", "Package": "Boto3"}]},
        {"Name": "ListObjectsV2",
         "AuthorizedActions": [{"Name": "ListBucket", "Service": "s3"}],
         "SDK": [{"Name": "s3", "Method": "list_objects_v2", "Package": "Boto3"}]},
        {"Name": "GetObjectTorrent",
         "SDK": [{"Name": "s3", "Method": "get_object_torrent", "Package": "Boto3"}]}
      ]
    }"#;

    fn version() -> DataVersion {
        DataVersion {
            source: "service-reference".to_owned(),
            version: "2026-11-24".to_owned(),
            updated_at: "2026-11-24T00:00:00Z".to_owned(),
        }
    }

    #[test]
    fn operations_keep_their_authorized_actions() {
        let doc: ServiceDoc = serde_json::from_str(S3_DOC).expect("parses");
        assert_eq!(doc.operations.len(), 4);
        assert_eq!(
            doc.operations[0].sdk[0].method.as_deref(),
            Some("copy_object")
        );
        let catalog = catalog_from(&[doc], &version()).expect("catalog");
        let names = |service: &str, operation: &str| -> Option<Vec<String>> {
            catalog.operation_actions(service, operation).map(|ids| {
                ids.iter()
                    .map(|id| catalog.action(*id).name.clone())
                    .collect()
            })
        };
        assert_eq!(
            names("s3", "CopyObject").expect("known"),
            [
                "s3:GetObject",
                "s3:GetObjectTagging",
                "s3:PutObject",
                "s3:PutObjectTagging"
            ]
        );
        assert_eq!(
            names("s3", "DeletePublicAccessBlock").expect("known"),
            ["s3:PutBucketPublicAccessBlock"]
        );
        // A service that does not map an operation yet leaves AuthorizedActions out.
        assert_eq!(names("s3", "GetObjectTorrent"), None);
        assert_eq!(catalog.operation_coverage().operations, 3);
        // What a refresh writes and reads back keeps the operations.
        let again = Catalog::parse(&catalog.to_text("refreshed")).expect("parses");
        assert_eq!(again.operation_coverage(), catalog.operation_coverage());
        assert_eq!(
            crate::mapping::map_event(&again, "s3.amazonaws.com", "DeletePublicAccessBlock"),
            crate::mapping::Mapping::Actions {
                actions: vec![
                    again
                        .lookup("s3:PutBucketPublicAccessBlock")
                        .expect("known")
                ],
                confidence: crate::mapping::Confidence::Reference,
            }
        );
    }

    #[test]
    fn an_operation_authorizing_another_services_action_needs_that_service() {
        // Cross-service actions resolve when their service's document was fetched too.
        let s3: ServiceDoc = serde_json::from_str(
            r#"{"Name":"s3","Actions":[{"Name":"GetObject"}],
                "Operations":[{"Name":"GetObject","AuthorizedActions":[
                  {"Name":"GetObject","Service":"s3"},{"Name":"Decrypt","Service":"kms"}]}]}"#,
        )
        .expect("parses");
        let kms: ServiceDoc =
            serde_json::from_str(r#"{"Name":"kms","Actions":[{"Name":"Decrypt"}]}"#)
                .expect("parses");
        let both = catalog_from(&[s3.clone(), kms], &version()).expect("catalog");
        assert_eq!(
            both.operation_actions("s3", "GetObject").map(<[_]>::len),
            Some(2)
        );
        let alone = catalog_from(&[s3], &version()).expect("catalog");
        assert_eq!(alone.operation_actions("s3", "GetObject"), None);
        assert_eq!(alone.operation_coverage().dropped, 1);
    }

    #[test]
    fn service_documents_become_a_catalog() {
        let doc: ServiceDoc = serde_json::from_str(
            r#"{"Name":"s3","Version":"v1.3","Actions":[
                {"Name":"GetObject","Annotations":{"Properties":{"IsList":false,"IsPermissionManagement":false,"IsTaggingOnly":false,"IsWrite":false}},"Resources":[{"Name":"object"}]},
                {"Name":"PutBucketPolicy","Annotations":{"Properties":{"IsWrite":true,"IsPermissionManagement":true}}},
                {"Name":"ListBucket","Annotations":{"Properties":{"IsList":true}}}],
              "Resources":[{"Name":"object","ARNFormats":["arn:${Partition}:s3:::${BucketName}/${ObjectName}"]}],
              "Operations":[{"Name":"GetObject"}]}"#,
        )
        .expect("parses");
        let version = DataVersion {
            source: "service-reference".to_owned(),
            version: "2026-11-24".to_owned(),
            updated_at: "2026-11-24T00:00:00Z".to_owned(),
        };
        let catalog = catalog_from(&[doc], &version).expect("catalog");
        let get = catalog.action(catalog.lookup("s3:getobject").expect("found"));
        assert_eq!(get.level, AccessLevel::Read);
        assert_eq!(get.resource_types, vec![("object".to_owned(), false)]);
        let policy = catalog.action(catalog.lookup("s3:PutBucketPolicy").expect("found"));
        assert_eq!(policy.level, AccessLevel::Permissions);
        assert_eq!(
            catalog.resource_arn("s3", "object"),
            Some("arn:${Partition}:s3:::${BucketName}/${ObjectName}")
        );
        assert_eq!(catalog.version, version);
    }
}
