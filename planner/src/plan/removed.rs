//! [`Removed`]: the granted actions a role's plan removes, each with its evidence, held
//! compactly.
//!
//! A role granted ReadOnlyAccess that used twenty actions loses ~9,000; as a list of
//! [`RemovedAction`]s that is ~1 MB a role, and a plan of 10,000 such roles would not fit in
//! the daemon's memory. The planner therefore keeps what a role loses as a set over the
//! catalog's actions — what its policies grant, a set shared by every role with the same
//! documents, less the few actions it keeps — with the evidence per service, and the list
//! a reviewer reads — every removed action (or `service:*` when a whole service goes), its
//! access level and its evidence — is derived from it when a plan is rendered or written as
//! JSON. Plans read back from JSON hold the list as written.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::RemovedAction;
use crate::catalog::{AccessLevel, ActionId, ActionTable, SetMinus};

/// The evidence shown with every removed action of a role: one sentence for most
/// services, another for those IAM's last-accessed data saw.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemovedEvidence {
    pub default: String,
    /// Service prefix -> its evidence, where it differs from `default`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub by_service: BTreeMap<String, String>,
}

impl RemovedEvidence {
    fn of(&self, service: &str) -> &str {
        self.by_service.get(service).unwrap_or(&self.default)
    }
}

/// What a plan removes from a role. See the module documentation.
#[derive(Debug, Clone)]
pub struct Removed(Repr);

#[derive(Debug, Clone)]
enum Repr {
    /// Entries as read from a stored or written plan.
    Listed(Vec<RemovedAction>),
    /// As the planner made it.
    Set {
        table: Arc<ActionTable>,
        actions: SetMinus,
        evidence: Arc<RemovedEvidence>,
    },
}

/// The two forms a [`Removed`] is held in, for the stored plan (`plan::stored`).
#[derive(Debug)]
pub enum RemovedParts<'a> {
    Listed(&'a [RemovedAction]),
    Set {
        table: &'a Arc<ActionTable>,
        actions: &'a SetMinus,
        evidence: &'a Arc<RemovedEvidence>,
    },
}

/// One removed entry, borrowed from a [`Removed`] where it can be.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RemovedRef<'a> {
    pub action: Cow<'a, str>,
    pub actions: usize,
    pub access_level: &'a str,
    pub evidence: &'a str,
}

impl RemovedRef<'_> {
    pub fn to_owned(&self) -> RemovedAction {
        RemovedAction {
            action: self.action.clone().into_owned(),
            actions: self.actions,
            access_level: self.access_level.to_owned(),
            evidence: self.evidence.to_owned(),
        }
    }
}

impl Default for Removed {
    fn default() -> Removed {
        Removed(Repr::Listed(Vec::new()))
    }
}

impl From<Vec<RemovedAction>> for Removed {
    fn from(list: Vec<RemovedAction>) -> Removed {
        Removed(Repr::Listed(list))
    }
}

impl Removed {
    /// The actions of `actions` (a set over the table's catalog), each with the evidence of
    /// its service.
    pub fn from_set(
        table: Arc<ActionTable>,
        actions: SetMinus,
        evidence: Arc<RemovedEvidence>,
    ) -> Removed {
        Removed(Repr::Set {
            table,
            actions,
            evidence,
        })
    }

    /// How the entries are held.
    pub fn parts(&self) -> RemovedParts<'_> {
        match &self.0 {
            Repr::Listed(list) => RemovedParts::Listed(list),
            Repr::Set {
                table,
                actions,
                evidence,
            } => RemovedParts::Set {
                table,
                actions,
                evidence,
            },
        }
    }

    /// The entries without copying their text: per service in prefix order, `service:*`
    /// for a service of more than one action that goes whole, else each action in name
    /// order.
    pub fn entries(&self) -> Box<dyn Iterator<Item = RemovedRef<'_>> + '_> {
        match &self.0 {
            Repr::Listed(list) => Box::new(list.iter().map(|r| RemovedRef {
                action: Cow::Borrowed(&r.action),
                actions: r.actions,
                access_level: &r.access_level,
                evidence: &r.evidence,
            })),
            Repr::Set {
                table,
                actions,
                evidence,
            } => Box::new(table.services.iter().flat_map(move |row| {
                let gone = actions.count_range(row.lo, row.hi);
                let evidence = evidence.of(&row.prefix);
                let whole = gone > 1 && gone == (row.hi - row.lo) as usize;
                let summary = whole.then(|| RemovedRef {
                    action: Cow::Owned(format!("{}:*", row.prefix)),
                    actions: gone,
                    access_level: &row.levels,
                    evidence,
                });
                let each = (row.lo..row.hi)
                    .filter(move |_| gone > 0 && !whole)
                    .map(ActionId)
                    .filter(move |id| actions.contains(*id))
                    .map(move |id| RemovedRef {
                        action: Cow::Borrowed(&table.names[id.0 as usize]),
                        actions: 1,
                        access_level: table.levels[id.0 as usize].label(),
                        evidence,
                    });
                summary.into_iter().chain(each)
            })),
        }
    }

    /// The entries as [`RemovedAction`]s.
    pub fn iter(&self) -> impl Iterator<Item = RemovedAction> + '_ {
        self.entries().map(|r| r.to_owned())
    }

    /// The entries as a list.
    pub fn to_vec(&self) -> Vec<RemovedAction> {
        self.iter().collect()
    }

    pub fn is_empty(&self) -> bool {
        match &self.0 {
            Repr::Listed(list) => list.is_empty(),
            Repr::Set { actions, .. } => actions.is_empty(),
        }
    }

    /// How many catalog actions of `level` go: the actions of entries whose access levels
    /// include it (a `service:*` entry counts whole).
    pub fn count_level(&self, level: AccessLevel) -> usize {
        match &self.0 {
            Repr::Listed(list) => list
                .iter()
                .filter(|r| r.access_level.split(", ").any(|l| l == level.label()))
                .map(|r| r.actions)
                .sum(),
            Repr::Set { table, actions, .. } => {
                let Some((_, with_level)) = table.with_level.iter().find(|(l, _)| *l == level)
                else {
                    return 0;
                };
                let mut base_level = (*actions.base).clone();
                base_level.intersect_with(with_level);
                table
                    .services
                    .iter()
                    .map(|row| {
                        let gone = actions.count_range(row.lo, row.hi);
                        if gone > 1 && gone == (row.hi - row.lo) as usize {
                            if row.level_bits & (1 << level as u8) != 0 {
                                gone
                            } else {
                                0
                            }
                        } else {
                            actions.count_range_filtered(&base_level, with_level, row.lo, row.hi)
                        }
                    })
                    .sum()
            }
        }
    }

    /// How many catalog actions go in all.
    pub fn actions(&self) -> usize {
        match &self.0 {
            Repr::Listed(list) => list.iter().map(|r| r.actions).sum(),
            Repr::Set { actions, .. } => actions.len(),
        }
    }
}

impl PartialEq for Removed {
    fn eq(&self, other: &Removed) -> bool {
        self.entries().eq(other.entries())
    }
}

impl Serialize for Removed {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.entries())
    }
}

impl<'de> Deserialize<'de> for Removed {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Removed, D::Error> {
        Vec::<RemovedAction>::deserialize(deserializer).map(Removed::from)
    }
}
