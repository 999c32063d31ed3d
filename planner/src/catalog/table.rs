//! [`ActionTable`]: a catalog's action names and levels grouped per service, the form plans
//! list removed actions in (`plan::removed`), self-contained so that a plan outlives the
//! catalog it was made with.

use std::collections::BTreeSet;

use super::{AccessLevel, ActionSet, Catalog};

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
        let prefix_of = |i: usize| -> &str {
            let name = &actions[i].name;
            name.split_once(':').map_or(name.as_str(), |(s, _)| s)
        };
        let mut services = Vec::new();
        let mut lo = 0;
        while lo < actions.len() {
            let prefix = prefix_of(lo);
            let mut hi = lo + 1;
            while hi < actions.len() && prefix_of(hi) == prefix {
                hi += 1;
            }
            let levels: BTreeSet<String> = actions[lo..hi]
                .iter()
                .map(|a| a.level.to_string())
                .collect();
            services.push(ServiceRow {
                prefix: prefix.to_owned(),
                lo: lo as u32,
                hi: hi as u32,
                levels: levels.into_iter().collect::<Vec<_>>().join(", "),
                level_bits: actions[lo..hi]
                    .iter()
                    .fold(0, |bits, a| bits | (1 << a.level as u8)),
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
            let mut set = catalog.empty_set();
            for (i, a) in actions.iter().enumerate() {
                if a.level == level {
                    set.insert(super::ActionId(i as u32));
                }
            }
            (level, set)
        })
        .collect();
        ActionTable {
            names: actions.iter().map(|a| a.name.clone()).collect(),
            levels: actions.iter().map(|a| a.level).collect(),
            services,
            with_level,
        }
    }
}
