//! AWS's Service Reference (`https://servicereference.us-east-1.amazonaws.com/`): an index
//! of services, each a JSON document listing its actions (with annotations that give the
//! access level) and resource types (with ARN formats). `whittle iam-data refresh` fetches
//! them; this module turns them into a [`Catalog`].

use serde::Deserialize;

use super::{AccessLevel, Action, Catalog, CatalogError, DataVersion};

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
/// resource types are required, so every type is recorded as optional.
pub fn catalog_from(docs: &[ServiceDoc], version: &DataVersion) -> Result<Catalog, CatalogError> {
    let mut actions = Vec::new();
    let mut resources = Vec::new();
    for doc in docs {
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
    Catalog::from_parts(version, &actions, &resources)
}

#[cfg(test)]
mod tests {
    use super::*;

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
