//! [`ActionTable`]: a catalog's action names and levels grouped per service, the form plans
//! list removed actions in (`plan::removed`), self-contained so that a plan outlives the
//! catalog it was made with.

use std::collections::BTreeSet;

use super::{AccessLevel, ActionSet, Catalog};

impl ActionTable {
    /// The actions' names, in id order.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// The actions' access levels, in id order.
    pub fn levels(&self) -> &[AccessLevel] {
        &self.levels
    }
}

/// A catalog's actions grouped per service, as plans list removed actions: services in
/// byte order of their prefix, each service's actions in byte order of their names (the
/// catalog's id order, so each service is one range of ids). Built once per catalog and
/// shared by every role's `plan::Removed`.
#[derive(Debug)]
pub struct ActionTable {
    pub(crate) names: Vec<String>,
    pub(crate) levels: Vec<AccessLevel>,
    pub(crate) services: Vec<ServiceRow>,
    /// Per access level (in `AccessLevel` order), its actions.
    pub(crate) with_level: Vec<(AccessLevel, ActionSet)>,
}

#[derive(Debug)]
pub(crate) struct ServiceRow {
    /// The prefix as the catalog spells it.
    pub(crate) prefix: String,
    /// The service's actions: ids `lo..hi`.
    pub(crate) lo: u32,
    pub(crate) hi: u32,
    /// The access levels of all of the service's actions, sorted and joined with `, `.
    pub(crate) levels: String,
    /// The same levels, one bit per `AccessLevel` (its discriminant).
    pub(crate) level_bits: u8,
}

impl ActionTable {
    pub(crate) fn new(catalog: &Catalog) -> ActionTable {
        let actions = catalog.actions();
        ActionTable::from_parts(
            actions.iter().map(|a| a.name.clone()).collect(),
            actions.iter().map(|a| a.level).collect(),
        )
        .unwrap_or_else(|_| unreachable!("a catalog's actions are sorted by name"))
    }

    /// A table from its actions' names (sorted in byte order, as a catalog holds them) and
    /// levels, as a stored plan keeps them.
    pub fn from_parts(names: Vec<String>, levels: Vec<AccessLevel>) -> Result<ActionTable, String> {
        if names.len() != levels.len() {
            return Err(format!(
                "{} action names but {} access levels",
                names.len(),
                levels.len()
            ));
        }
        if !names.is_sorted() {
            return Err("the action names are not sorted".to_owned());
        }
        let prefix_of = |i: usize| -> &str {
            let name = &names[i];
            name.split_once(':').map_or(name.as_str(), |(s, _)| s)
        };
        let mut services = Vec::new();
        let mut lo = 0;
        while lo < names.len() {
            let prefix = prefix_of(lo);
            let mut hi = lo + 1;
            while hi < names.len() && prefix_of(hi) == prefix {
                hi += 1;
            }
            let level_names: BTreeSet<String> =
                levels[lo..hi].iter().map(|l| l.to_string()).collect();
            services.push(ServiceRow {
                prefix: prefix.to_owned(),
                lo: lo as u32,
                hi: hi as u32,
                levels: level_names.into_iter().collect::<Vec<_>>().join(", "),
                level_bits: levels[lo..hi]
                    .iter()
                    .fold(0, |bits, l| bits | (1 << *l as u8)),
            });
            lo = hi;
        }
        // Names sorted by bytes put `s3-outposts:` before `s3:`; plans list services by
        // prefix (`s3` first).
        services.sort_by(|a, b| a.prefix.cmp(&b.prefix));
        let with_level = [
            AccessLevel::List,
            AccessLevel::Read,
            AccessLevel::Write,
            AccessLevel::Tagging,
            AccessLevel::Permissions,
        ]
        .into_iter()
        .map(|level| {
            let mut set = ActionSet::empty(names.len());
            for (i, l) in levels.iter().enumerate() {
                if *l == level {
                    set.insert(super::ActionId(i as u32));
                }
            }
            (level, set)
        })
        .collect();
        Ok(ActionTable {
            names,
            levels,
            services,
            with_level,
        })
    }
}
