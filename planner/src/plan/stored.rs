//! The stored form of a plan (schema 2): what the daemon's state keeps, sized by what the
//! plan's roles have in common rather than by their number.
//!
//! A plan of 10,000 roles written as `whittle plan --format json` (schema 1) repeats each
//! shared policy document in every role that has it (an AWS-managed policy of 30 KB on
//! thousands of roles), lists every removed action of every role (~9,000 for a role granted
//! ReadOnlyAccess) and every risk sentence. Stored, the same plan keeps:
//! - `documents`: each distinct policy document once, keyed by the SHA-256 of its text
//!   (lower-case hex); a role's policies name the key instead of holding the text;
//! - `actions`: the catalog actions the roles' removed sets index (names in id order, and
//!   one letter per action for its access level), once;
//! - `sets`: what roles' policies grant, each distinct set once, as bitsets over `actions`
//!   (base64 of little-endian 64-bit words);
//! - per role, `removed` as either `{"set": {"base": N, "except": [ids], "evidence": {...}}}`,
//!   the set `N` less the actions the role keeps, with the evidence per service, or
//!   `{"list": [...]}` as in schema 1 (plans read from older records);
//! - `texts`: each distinct risk sentence once; a role's `risks` are runs of it.
//!
//! [`StoredPlan::from_plan`] and [`StoredPlan::into_plan`] convert without loss: the plan read
//! back renders and serialises exactly as the plan stored. `docs/plan-schema.md` describes
//! the shape.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::removed::RemovedParts;
use super::{
    AccountRead, InlinePolicy, KeptAction, ManagedPolicy, Plan, PlanStatus, Proposal, Removed,
    RemovedAction, RemovedEvidence, RolePlan, RolePolicies, RoleStatus,
};
use crate::catalog::{AccessLevel, ActionId, ActionSet, ActionTable, SetMinus};

/// Plans removing at most this many actions in all list them instead of storing sets and
/// the catalog's action table.
const LIST_BELOW: usize = 20_000;

/// The schema number of the stored form.
pub const STORED_PLAN_SCHEMA: u32 = 2;

/// A plan as the state stores it. See the module documentation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredPlan {
    pub schema: u32,
    pub id: String,
    pub created_at: String,
    pub catalog: String,
    pub lookback_days: u32,
    pub status: PlanStatus,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub accounts: Vec<AccountRead>,
    /// SHA-256 of a document's text (hex) -> the text.
    pub documents: BTreeMap<String, String>,
    /// The actions removed sets index, when a role has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actions: Option<StoredActions>,
    /// What roles' policies grant, each distinct set once: base64 of the bitset's
    /// little-endian 64-bit words over `actions`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sets: Vec<String>,
    /// Risk sentences, each once.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub texts: Vec<String>,
    pub roles: Vec<StoredRole>,
}

/// A catalog's actions in id order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredActions {
    pub names: Vec<String>,
    /// One letter per action: `L`ist, `R`ead, `W`rite, `T`agging, `P`ermissions management.
    pub levels: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredRole {
    pub role_arn: String,
    pub status: RoleStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_at: Option<String>,
    pub observed_days: u32,
    pub current: StoredPolicies,
    pub proposal: Proposal,
    pub kept: Vec<KeptAction>,
    pub removed: StoredRemoved,
    /// The risk sentences as runs of the plan's `texts`: `[first index, count]` (a policy's
    /// wildcard risks, shared by every role it is attached to, are one run).
    pub risks: Vec<[u32; 2]>,
    pub notes: Vec<String>,
    pub inline_size: usize,
    /// One role per function (as in the plan; its documents are the function roles' own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub split: Option<super::split::SplitProposal>,
}

/// [`RolePolicies`] with each document replaced by its key in `documents`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredPolicies {
    pub role_arn: String,
    pub role_name: String,
    /// (name, document key).
    pub inline: Vec<(String, String)>,
    pub managed: Vec<StoredManaged>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boundary: Option<StoredManaged>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredManaged {
    pub arn: String,
    pub name: String,
    pub aws_managed: bool,
    pub version: String,
    /// The document's key in `documents`.
    pub document: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StoredRemoved {
    List(Vec<RemovedAction>),
    /// The actions of the plan's set `base` (what the role's policies grant) but the ids
    /// `except` (what it keeps).
    Set {
        base: u32,
        except: Vec<u32>,
        evidence: RemovedEvidence,
    },
}

fn level_letter(level: AccessLevel) -> char {
    match level {
        AccessLevel::List => 'L',
        AccessLevel::Read => 'R',
        AccessLevel::Write => 'W',
        AccessLevel::Tagging => 'T',
        AccessLevel::Permissions => 'P',
    }
}

fn letter_level(letter: char) -> Option<AccessLevel> {
    Some(match letter {
        'L' => AccessLevel::List,
        'R' => AccessLevel::Read,
        'W' => AccessLevel::Write,
        'T' => AccessLevel::Tagging,
        'P' => AccessLevel::Permissions,
        _ => return None,
    })
}

/// The SHA-256 of `text`, lower-case hex.
pub fn document_key(text: &str) -> String {
    Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The documents of a plan being stored, each keyed once.
#[derive(Default)]
struct Documents<'p> {
    keys: HashMap<&'p str, String>,
    texts: BTreeMap<String, String>,
}

impl<'p> Documents<'p> {
    fn key(&mut self, text: &'p str) -> String {
        if let Some(key) = self.keys.get(text) {
            return key.clone();
        }
        let key = document_key(text);
        self.texts.insert(key.clone(), text.to_owned());
        self.keys.insert(text, key.clone());
        key
    }

    fn managed(&mut self, m: &'p ManagedPolicy) -> StoredManaged {
        StoredManaged {
            arn: m.arn.clone(),
            name: m.name.clone(),
            aws_managed: m.aws_managed,
            version: m.version.clone(),
            document: self.key(&m.document),
        }
    }
}

impl StoredPlan {
    /// The stored form of `plan`.
    pub fn from_plan(plan: &Plan) -> StoredPlan {
        let mut documents = Documents::default();
        let mut table: Option<&Arc<ActionTable>> = None;
        // The action table costs as much as listing ~20,000 removed actions: a plan that
        // removes fewer in all lists them, as schema 1 does, and is stored without it.
        let removes: usize = plan.roles.iter().map(|r| r.removed.actions()).sum();
        let use_sets = removes > LIST_BELOW;
        let mut sets: Vec<String> = Vec::new();
        let mut set_index: HashMap<&[u64], u32> = HashMap::new();
        let mut texts: Vec<String> = Vec::new();
        let mut text_index: HashMap<&str, u32> = HashMap::new();
        let mut roles = Vec::with_capacity(plan.roles.len());
        for role in &plan.roles {
            let current = StoredPolicies {
                role_arn: role.current.role_arn.clone(),
                role_name: role.current.role_name.clone(),
                inline: role
                    .current
                    .inline
                    .iter()
                    .map(|i| (i.name.clone(), documents.key(&i.document)))
                    .collect(),
                managed: role
                    .current
                    .managed
                    .iter()
                    .map(|m| documents.managed(m))
                    .collect(),
                boundary: role.current.boundary.as_ref().map(|b| documents.managed(b)),
            };
            let removed = match role.removed.parts() {
                RemovedParts::Set {
                    table: own,
                    actions,
                    evidence,
                } if use_sets
                    && table.is_none_or(|t| Arc::ptr_eq(t, own) || t.names() == own.names()) =>
                {
                    table.get_or_insert(own);
                    let base = match set_index.get(actions.base.words()) {
                        Some(i) => *i,
                        None => {
                            let bytes: Vec<u8> = actions
                                .base
                                .words()
                                .iter()
                                .flat_map(|w| w.to_le_bytes())
                                .collect();
                            sets.push(BASE64.encode(bytes));
                            let i = (sets.len() - 1) as u32;
                            set_index.insert(actions.base.words(), i);
                            i
                        }
                    };
                    StoredRemoved::Set {
                        base,
                        except: actions.except().iter().map(|id| id.0).collect(),
                        evidence: (**evidence).clone(),
                    }
                }
                // A set over another catalog than the plan's first (never made by one
                // `whittle plan`) is kept as its list.
                _ => StoredRemoved::List(role.removed.to_vec()),
            };
            let mut risks: Vec<[u32; 2]> = Vec::new();
            for risk in &role.risks {
                let index = *text_index.entry(risk).or_insert_with(|| {
                    texts.push(risk.to_string());
                    (texts.len() - 1) as u32
                });
                match risks.last_mut() {
                    Some([first, count]) if *first + *count == index => *count += 1,
                    _ => risks.push([index, 1]),
                }
            }
            roles.push(StoredRole {
                role_arn: role.role_arn.clone(),
                status: role.status,
                error: role.error.clone(),
                read_at: role.read_at.clone(),
                observed_days: role.observed_days,
                current,
                proposal: role.proposal.clone(),
                kept: role.kept.clone(),
                removed,
                risks,
                notes: role.notes.clone(),
                inline_size: role.inline_size,
                split: role.split.clone(),
            });
        }
        StoredPlan {
            schema: STORED_PLAN_SCHEMA,
            id: plan.id.clone(),
            created_at: plan.created_at.clone(),
            catalog: plan.catalog.clone(),
            lookback_days: plan.lookback_days,
            status: plan.status,
            accounts: plan.accounts.clone(),
            documents: documents.texts,
            actions: table.map(|t| StoredActions {
                names: t.names().to_vec(),
                levels: t.levels().iter().map(|l| level_letter(*l)).collect(),
            }),
            sets,
            texts,
            roles,
        }
    }

    /// The plan back, or what in the stored form does not hold together.
    pub fn into_plan(self) -> Result<Plan, String> {
        let table = match self.actions {
            Some(actions) => {
                let levels = actions
                    .levels
                    .chars()
                    .map(|c| letter_level(c).ok_or_else(|| format!("unknown access level `{c}`")))
                    .collect::<Result<Vec<_>, _>>()?;
                Some(Arc::new(ActionTable::from_parts(actions.names, levels)?))
            }
            None => None,
        };
        let documents: HashMap<String, Arc<str>> = self
            .documents
            .into_iter()
            .map(|(k, v)| (k, Arc::from(v)))
            .collect();
        let document = |key: &str| -> Result<Arc<str>, String> {
            documents
                .get(key)
                .cloned()
                .ok_or_else(|| format!("no document {key} in the plan"))
        };
        let texts: Vec<Arc<str>> = self.texts.into_iter().map(Arc::from).collect();
        let words = table.as_ref().map_or(0, |t| t.names().len().div_ceil(64));
        let sets: Vec<Arc<ActionSet>> = self
            .sets
            .iter()
            .enumerate()
            .map(|(i, text)| {
                let bytes = BASE64
                    .decode(text)
                    .map_err(|e| format!("set {i} of the plan: {e}"))?;
                if bytes.len() != words * 8 {
                    return Err(format!(
                        "set {i} of the plan: {} bytes for {words} words of actions",
                        bytes.len()
                    ));
                }
                let words = bytes
                    .chunks(8)
                    .map(|c| u64::from_le_bytes(c.try_into().unwrap_or_default()))
                    .collect();
                Ok(Arc::new(ActionSet::from_words(words)))
            })
            .collect::<Result<_, String>>()?;
        let mut roles = Vec::with_capacity(self.roles.len());
        for role in self.roles {
            let managed = |m: StoredManaged| -> Result<ManagedPolicy, String> {
                Ok(ManagedPolicy {
                    document: document(&m.document)?,
                    arn: m.arn,
                    name: m.name,
                    aws_managed: m.aws_managed,
                    version: m.version,
                })
            };
            let current = RolePolicies {
                role_arn: role.current.role_arn,
                role_name: role.current.role_name,
                inline: role
                    .current
                    .inline
                    .into_iter()
                    .map(|(name, key)| {
                        Ok(InlinePolicy {
                            name,
                            document: document(&key)?,
                        })
                    })
                    .collect::<Result<_, String>>()?,
                managed: role
                    .current
                    .managed
                    .into_iter()
                    .map(managed)
                    .collect::<Result<_, String>>()?,
                boundary: role.current.boundary.map(managed).transpose()?,
            };
            let removed = match role.removed {
                StoredRemoved::List(list) => Removed::from(list),
                StoredRemoved::Set {
                    base,
                    except,
                    evidence,
                } => {
                    let table = table
                        .clone()
                        .ok_or("a removed set but no `actions` in the plan")?;
                    let base = sets
                        .get(base as usize)
                        .cloned()
                        .ok_or_else(|| format!("no set {base} in the plan"))?;
                    Removed::from_set(
                        table,
                        SetMinus::new(base, except.into_iter().map(ActionId).collect()),
                        Arc::new(evidence),
                    )
                }
            };
            let risks = role
                .risks
                .iter()
                .map(|&[first, count]| {
                    texts
                        .get(first as usize..(first as usize).saturating_add(count as usize))
                        .ok_or_else(|| format!("no risk texts {first}+{count} in the plan"))
                })
                .collect::<Result<Vec<_>, String>>()?
                .concat();
            roles.push(RolePlan {
                role_arn: role.role_arn,
                status: role.status,
                error: role.error,
                read_at: role.read_at,
                observed_days: role.observed_days,
                current,
                proposal: role.proposal,
                kept: role.kept,
                removed,
                risks,
                notes: role.notes,
                inline_size: role.inline_size,
                split: role.split,
            });
        }
        Ok(Plan {
            schema: super::PLAN_SCHEMA,
            id: self.id,
            created_at: self.created_at,
            catalog: self.catalog,
            lookback_days: self.lookback_days,
            status: self.status,
            accounts: self.accounts,
            roles,
        })
    }
}
