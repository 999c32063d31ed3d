//! [`PlanCache`]: each distinct policy document parsed and expanded once per plan.
//!
//! Roles share documents: an AWS-managed policy such as ReadOnlyAccess (~1,200 action
//! patterns) may be attached to thousands of roles, and the same inline policy is often
//! stamped onto a role per application. Expanding a document's patterns against the catalog
//! costs far more than planning what a role used, so documents are keyed by their text and
//! their parse and expansion kept for every later role, across the threads that plan roles
//! concurrently.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use crate::catalog::{ActionSet, Catalog};
use crate::policy::{Effect, OneOrMany, PolicyDocument, Statement};

/// A policy document parsed, with what each of its statements grants.
#[derive(Debug)]
pub struct Expanded {
    pub document: PolicyDocument,
    /// Per statement (in document order): the catalog actions an Allow grants; empty for a
    /// Deny.
    pub grants: Vec<ActionSet>,
    /// Everything the document's Allow statements grant (shared with the roles' removed
    /// sets).
    pub granted: Arc<ActionSet>,
    /// Explicit (wildcard-free) actions of Allow statements that the catalog does not know,
    /// in document order.
    pub unknown: Vec<String>,
}

impl Expanded {
    fn new(document: PolicyDocument, catalog: &Catalog) -> Expanded {
        let mut granted = catalog.empty_set();
        let mut unknown = Vec::new();
        let grants = document
            .statements()
            .iter()
            .map(|statement| {
                if statement.effect != Effect::Allow {
                    return catalog.empty_set();
                }
                for action in statement.action.iter().flat_map(OneOrMany::iter) {
                    if !action.contains(['*', '?']) && catalog.lookup(action).is_none() {
                        unknown.push(action.clone());
                    }
                }
                let set = granted_by(statement, catalog);
                granted.union_with(&set);
                set
            })
            .collect();
        Expanded {
            document,
            grants,
            granted: Arc::new(granted),
            unknown,
        }
    }
}

/// The catalog actions an Allow statement grants: its `Action` patterns expanded, or every
/// action but those its `NotAction` patterns match.
pub(crate) fn granted_by(statement: &Statement, catalog: &Catalog) -> ActionSet {
    let expand = |patterns: &OneOrMany<String>| -> ActionSet {
        let mut set = catalog.empty_set();
        for pattern in patterns.iter() {
            set.union_with(&catalog.expand_set(pattern));
        }
        set
    };
    match (&statement.action, &statement.not_action) {
        (Some(actions), _) => expand(actions),
        (None, Some(not)) => {
            let mut all = catalog.full_set();
            all.difference_with(&expand(not));
            all
        }
        (None, None) => catalog.empty_set(),
    }
}

/// A parsed document or the parse error's text.
pub type Parsed = Result<Arc<Expanded>, String>;

/// Parsed and expanded documents, keyed by their text; shared by the threads planning a
/// plan's roles. One cache belongs to one catalog.
#[derive(Debug)]
pub struct PlanCache<'c> {
    catalog: &'c Catalog,
    documents: Mutex<HashMap<Arc<str>, Parsed>>,
    /// (policy name, document) -> the risks of replacing its wildcards; the document by
    /// its address in `documents`, which holds it for the cache's life.
    wildcard_risks: Mutex<HashMap<(String, usize), Risks>>,
}

/// Risk sentences shared by the roles a policy is attached to.
type Risks = Arc<[Arc<str>]>;

impl<'c> PlanCache<'c> {
    pub fn new(catalog: &'c Catalog) -> PlanCache<'c> {
        // The catalog's table of removed actions is built here, once per catalog, rather than
        // by whichever role first removes something.
        drop(catalog.table());
        PlanCache {
            catalog,
            documents: Mutex::new(HashMap::new()),
            wildcard_risks: Mutex::new(HashMap::new()),
        }
    }

    pub fn catalog(&self) -> &'c Catalog {
        self.catalog
    }

    /// The document `text` (as IAM returns it) parsed and expanded, or why it does not
    /// parse; the work is done once per distinct text.
    pub fn document(&self, text: &str) -> Parsed {
        if let Some(found) = self.lock().get(text) {
            return found.clone();
        }
        // Expanded outside the lock: two threads meeting a new document at once both expand
        // it (the same result), rather than one waiting on the other's whole expansion.
        let parsed = PolicyDocument::from_iam(text)
            .map(|d| Arc::new(Expanded::new(d, self.catalog)))
            .map_err(|e| e.to_string());
        self.lock().entry(Arc::from(text)).or_insert(parsed).clone()
    }

    /// What a reviewer is told when a plan replaces the wildcards and `NotAction`s of the
    /// policy `name` with explicit actions, one sentence each, made once per policy.
    pub fn wildcard_risks(&self, name: &str, expanded: &Arc<Expanded>) -> Risks {
        let key = (name.to_owned(), Arc::as_ptr(expanded) as usize);
        let mut risks = self
            .wildcard_risks
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        risks
            .entry(key)
            .or_insert_with(|| {
                let mut out: Vec<Arc<str>> = Vec::new();
                for statement in expanded.document.statements() {
                    if statement.effect != Effect::Allow {
                        continue;
                    }
                    for action in statement.action.iter().flat_map(OneOrMany::iter) {
                        if action.contains(['*', '?']) {
                            out.push(
                                format!(
                                    "replaces the wildcard `{action}` of {name} with explicit actions"
                                )
                                .into(),
                            );
                        }
                    }
                    if statement.not_action.is_some() {
                        out.push(
                            format!(
                                "replaces a NotAction statement of {name} with explicit actions"
                            )
                            .into(),
                        );
                    }
                }
                out.into()
            })
            .clone()
    }

    /// How many distinct documents were parsed.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Arc<str>, Parsed>> {
        // The map is only ever inserted into, whole entries at a time: a panic elsewhere
        // cannot leave it half-written.
        self.documents
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}
