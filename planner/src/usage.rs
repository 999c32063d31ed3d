//! What each principal used: aggregated from events, merged into the stored usage, aged out
//! after the look-back window, and reported.
//!
//! Counts are kept per UTC day, so that usage older than the look-back window can be
//! dropped exactly and `--since` can count from any day. An [`Aggregate`] is what one
//! mining worker builds (keyed by catalog action ids, cheap in the hot loop); it becomes
//! [`PrincipalUsage`] records (keyed by action name, so a newer catalog reads them) that
//! the daemon merges into the state.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::catalog::{ActionId, Catalog};
use crate::mapping::{Mapper, Mapping, denied_actions_mapped, is_denial};
use crate::trail::{Event, PrincipalKind, Record, RequestParameters, day_of, format_time};

/// Resources remembered per action; the least recently seen is dropped beyond this.
pub const MAX_RESOURCES_PER_ACTION: usize = 32;
/// Session names remembered per principal.
pub const MAX_SESSIONS: usize = 64;
/// Sessions whose actions are kept one by one per principal (see
/// [`PrincipalUsage::by_session`]); the calls of any further session go to `other_sessions`.
/// More than the 100 functions a service rarely exceeds, few enough to bound memory.
pub const MAX_FUNCTION_SESSIONS: usize = 128;
/// Located warnings kept per run (the count of skipped records is always exact).
pub const MAX_WARNINGS: usize = 100;

/// One day's count: `[day, count, first_ms, last_ms]`, day = days since the Unix epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DayCount(pub u32, pub u64, pub i64, pub i64);

/// Counts by day, sorted by day.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Counted(pub Vec<DayCount>);

impl Counted {
    pub fn add(&mut self, first_ms: i64, last_ms: i64, count: u64) {
        let day = day_of(first_ms);
        // Events mostly arrive in time order, so the matching day is usually the last one.
        match self.0.iter().rposition(|d| d.0 <= day) {
            Some(i) if self.0[i].0 == day => {
                let d = &mut self.0[i];
                d.1 += count;
                d.2 = d.2.min(first_ms);
                d.3 = d.3.max(last_ms);
            }
            Some(i) => self
                .0
                .insert(i + 1, DayCount(day, count, first_ms, last_ms)),
            None => self.0.insert(0, DayCount(day, count, first_ms, last_ms)),
        }
    }

    pub fn merge(&mut self, other: &Counted) {
        for d in &other.0 {
            self.add(d.2, d.3, d.1);
        }
    }

    /// Drops the days before `cutoff_day`.
    pub fn age_out(&mut self, cutoff_day: u32) {
        self.0.retain(|d| d.0 >= cutoff_day);
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Total, first and last since `since_day` (inclusive), if any.
    pub fn since(&self, since_day: u32) -> Option<(u64, i64, i64)> {
        let days = self.0.iter().filter(|d| d.0 >= since_day);
        days.fold(None, |acc, d| match acc {
            None => Some((d.1, d.2, d.3)),
            Some((n, f, l)) => Some((n + d.1, f.min(d.2), l.max(d.3))),
        })
    }
}

/// The use of one action by one principal.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActionUsage {
    pub counts: Counted,
    /// Resource ARN (or ARN pattern) -> last seen, at most [`MAX_RESOURCES_PER_ACTION`].
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub resources: BTreeMap<String, i64>,
    /// Set once a resource had to be dropped to stay within the bound.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub resources_truncated: bool,
    /// The id of one event that used it, for a reviewer to look up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sample_event_id: Option<String>,
}

impl ActionUsage {
    /// Keeps the smallest event id seen as the sample: the same events give the same sample
    /// whatever the order the workers met them in, so reports and plans are reproducible.
    fn offer_sample(&mut self, id: &str) {
        if self
            .sample_event_id
            .as_deref()
            .is_none_or(|current| id < current)
        {
            self.sample_event_id = Some(id.to_owned());
        }
    }

    fn add_resource(&mut self, arn: &str, time_ms: i64) {
        if let Some(last) = self.resources.get_mut(arn) {
            *last = (*last).max(time_ms);
            return;
        }
        self.resources.insert(arn.to_owned(), time_ms);
        if self.resources.len() > MAX_RESOURCES_PER_ACTION {
            self.resources_truncated = true;
            if let Some(oldest) = self
                .resources
                .iter()
                .min_by_key(|(_, t)| **t)
                .map(|(k, _)| k.clone())
            {
                self.resources.remove(&oldest);
            }
        }
    }

    fn merge(&mut self, other: &ActionUsage) {
        self.counts.merge(&other.counts);
        for (arn, t) in &other.resources {
            self.add_resource(arn, *t);
        }
        self.resources_truncated |= other.resources_truncated;
        if let Some(id) = &other.sample_event_id {
            self.offer_sample(id);
        }
    }
}

/// Calls of one operation that could not be mapped to an action.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnmappedUsage {
    pub counts: Counted,
    pub reason: String,
}

/// Everything known about one principal (a role, a user, the root user).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrincipalUsage {
    pub kind: PrincipalKind,
    /// Session name -> last seen, at most [`MAX_SESSIONS`].
    #[serde(default)]
    pub sessions: BTreeMap<String, i64>,
    /// Action (canonical spelling) -> use.
    #[serde(default)]
    pub actions: BTreeMap<String, ActionUsage>,
    /// Denied action -> denials (with the ARN of the resource when the event named one).
    #[serde(default)]
    pub denied: BTreeMap<String, ActionUsage>,
    /// `eventSource\teventName` -> calls that could not be mapped.
    #[serde(default)]
    pub unmapped: BTreeMap<String, UnmappedUsage>,
    /// Secret id or parameter name -> last read (GetSecretValue, GetParameter(s)).
    #[serde(default)]
    pub secrets_read: BTreeMap<String, i64>,
    /// Session name -> action -> use, for the sessions of a role whose name can be a Lambda
    /// function's (Lambda names the execution role's session after the function; see
    /// [`may_be_function_session`]), at most [`MAX_FUNCTION_SESSIONS`], the first seen kept.
    /// Which of them really are functions is known only from discovery, at report and plan
    /// time. Denials are not split by session.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub by_session: BTreeMap<String, BTreeMap<String, ActionUsage>>,
    /// Action -> use under every other session of a role (names no function can have, or
    /// sessions beyond the bound), without resources: what stays on a shared role when its
    /// functions get roles of their own.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub other_sessions: BTreeMap<String, ActionUsage>,
}

impl PrincipalUsage {
    pub fn new(kind: PrincipalKind) -> PrincipalUsage {
        PrincipalUsage {
            kind,
            sessions: BTreeMap::new(),
            actions: BTreeMap::new(),
            denied: BTreeMap::new(),
            unmapped: BTreeMap::new(),
            secrets_read: BTreeMap::new(),
            by_session: BTreeMap::new(),
            other_sessions: BTreeMap::new(),
        }
    }

    pub fn merge(&mut self, other: &PrincipalUsage) {
        for (session, t) in &other.sessions {
            add_session(&mut self.sessions, session, *t);
        }
        merge_actions(&mut self.actions, &other.actions);
        merge_actions(&mut self.denied, &other.denied);
        for (key, u) in &other.unmapped {
            let mine = self.unmapped.entry(key.clone()).or_default();
            mine.counts.merge(&u.counts);
            mine.reason.clone_from(&u.reason);
        }
        for (secret, t) in &other.secrets_read {
            let mine = self.secrets_read.entry(secret.clone()).or_insert(*t);
            *mine = (*mine).max(*t);
        }
        for (session, actions) in &other.by_session {
            let room = self.by_session.len() < MAX_FUNCTION_SESSIONS;
            match self.by_session.get_mut(session) {
                Some(mine) => merge_actions(mine, actions),
                None if room => {
                    self.by_session.insert(session.clone(), actions.clone());
                }
                // No room: its calls count as another session's, without resources.
                None => merge_actions(&mut self.other_sessions, &without_resources(actions)),
            }
        }
        merge_actions(&mut self.other_sessions, &other.other_sessions);
    }

    /// Drops everything last seen before `cutoff_ms`. Returns whether anything is left.
    pub fn age_out(&mut self, cutoff_ms: i64) -> bool {
        let cutoff_day = day_of(cutoff_ms);
        for map in [&mut self.actions, &mut self.denied] {
            map.retain(|_, u| {
                u.counts.age_out(cutoff_day);
                u.resources.retain(|_, t| *t >= cutoff_ms);
                !u.counts.is_empty()
            });
        }
        self.unmapped.retain(|_, u| {
            u.counts.age_out(cutoff_day);
            !u.counts.is_empty()
        });
        self.sessions.retain(|_, t| *t >= cutoff_ms);
        self.secrets_read.retain(|_, t| *t >= cutoff_ms);
        let age = |map: &mut BTreeMap<String, ActionUsage>| {
            map.retain(|_, u| {
                u.counts.age_out(cutoff_day);
                u.resources.retain(|_, t| *t >= cutoff_ms);
                !u.counts.is_empty()
            });
        };
        self.by_session.retain(|_, actions| {
            age(actions);
            !actions.is_empty()
        });
        age(&mut self.other_sessions);
        !(self.actions.is_empty() && self.denied.is_empty() && self.unmapped.is_empty())
    }

    /// The first and last event time over all actions, denials and unmapped calls.
    pub fn observed(&self) -> Option<(i64, i64)> {
        let all = self
            .actions
            .values()
            .chain(self.denied.values())
            .map(|u| &u.counts)
            .chain(self.unmapped.values().map(|u| &u.counts));
        all.filter_map(|c| c.since(0).map(|(_, f, l)| (f, l)))
            .reduce(|(f1, l1), (f2, l2)| (f1.min(f2), l1.max(l2)))
    }
}

fn merge_actions(into: &mut BTreeMap<String, ActionUsage>, from: &BTreeMap<String, ActionUsage>) {
    for (action, u) in from {
        into.entry(action.clone()).or_default().merge(u);
    }
}

fn without_resources(actions: &BTreeMap<String, ActionUsage>) -> BTreeMap<String, ActionUsage> {
    actions
        .iter()
        .map(|(a, u)| {
            let mut u = u.clone();
            u.resources.clear();
            u.resources_truncated = false;
            (a.clone(), u)
        })
        .collect()
}

/// Who a role session's name says its caller is, where the name is recognisable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum SessionKind {
    /// An EC2 instance id (`i-` and 8 or 17 hex digits): an instance profile's session.
    Ec2Instance,
    /// 32 hex digits: an ECS task id (the task role's session).
    EcsTask,
    /// An SDK's default session name (`botocore-session-1700000000`, `aws-go-sdk-…`, …) or
    /// digits only: a script or a person assuming the role without naming the session.
    SdkDefault,
    /// Not a name Lambda can give a session (longer than 64 characters, or characters a
    /// function name cannot have, such as a person's e-mail address).
    NotAFunctionName,
    /// Anything else: a function, or a caller that chose a name a function could have.
    Other,
}

/// The kind of caller `name` belongs to. Function names are 1 to 64 of `[A-Za-z0-9_-]`
/// (Lambda API reference, CreateFunction `FunctionName`).
pub fn session_kind(name: &str) -> SessionKind {
    let hex = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_hexdigit());
    if name.is_empty()
        || name.len() > 64
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return SessionKind::NotAFunctionName;
    }
    if let Some(id) = name.strip_prefix("i-")
        && (id.len() == 8 || id.len() == 17)
        && hex(id)
    {
        return SessionKind::Ec2Instance;
    }
    if name.len() == 32 && hex(name) {
        return SessionKind::EcsTask;
    }
    const SDK_DEFAULTS: [&str; 6] = [
        "botocore-session-",
        "aws-go-sdk-",
        "aws-sdk-java-",
        "aws-sdk-js-",
        "aws-sdk-rust-",
        "Boto3Session-",
    ];
    if SDK_DEFAULTS.iter().any(|p| name.starts_with(p)) || name.bytes().all(|b| b.is_ascii_digit())
    {
        return SessionKind::SdkDefault;
    }
    SessionKind::Other
}

/// Whether a role session name can be a Lambda function's. Lambda names the session of a
/// function's execution role after the function (`assumed-role/ROLE/FUNCTION`). Names that
/// other services and SDKs give sessions are excluded where they are recognisable (see
/// [`session_kind`]). The rest is decided by discovery: the functions Lambda lists with
/// this role.
pub fn may_be_function_session(name: &str) -> bool {
    session_kind(name) == SessionKind::Other
}

fn add_session(sessions: &mut BTreeMap<String, i64>, session: &str, time_ms: i64) {
    if let Some(last) = sessions.get_mut(session) {
        *last = (*last).max(time_ms);
        return;
    }
    sessions.insert(session.to_owned(), time_ms);
    if sessions.len() > MAX_SESSIONS
        && let Some(oldest) = sessions
            .iter()
            .min_by_key(|(_, t)| **t)
            .map(|(k, _)| k.clone())
    {
        sessions.remove(&oldest);
    }
}

/// What a mining run saw, for its summary line.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    pub files: u64,
    pub bytes: u64,
    pub records: u64,
    /// Usable events by principal kind (`role`, `user`, …).
    pub events_by_kind: BTreeMap<String, u64>,
    pub denials: u64,
    pub unmapped: u64,
    pub permissionless: u64,
    /// Events that are not API calls of the principal (console sign-in, console actions,
    /// AWS service events): neither usage nor unmapped.
    #[serde(default)]
    pub not_api_calls: u64,
    /// Events older than the look-back window, ignored.
    pub too_old: u64,
    /// Records skipped as malformed, by reason.
    pub skipped: BTreeMap<String, u64>,
    /// Files that could not be read to the end (or at all).
    pub bad_files: u64,
    /// Located warnings: `file: record N: reason`, at most [`MAX_WARNINGS`].
    pub warnings: Vec<String>,
}

impl Stats {
    pub fn events(&self) -> u64 {
        self.events_by_kind.values().sum()
    }

    pub fn skipped_total(&self) -> u64 {
        self.skipped.values().sum()
    }

    pub fn warn(&mut self, warning: String) {
        if self.warnings.len() < MAX_WARNINGS {
            self.warnings.push(warning);
        }
    }

    pub fn skip(&mut self, location: &str, index: u64, reason: &str) {
        *self.skipped.entry(reason_class(reason)).or_default() += 1;
        self.warn(format!("{location}: record {index}: {reason}"));
    }

    pub fn merge(&mut self, other: &Stats) {
        self.files += other.files;
        self.bytes += other.bytes;
        self.records += other.records;
        for (k, v) in &other.events_by_kind {
            *self.events_by_kind.entry(k.clone()).or_default() += v;
        }
        self.denials += other.denials;
        self.unmapped += other.unmapped;
        self.permissionless += other.permissionless;
        self.not_api_calls += other.not_api_calls;
        self.too_old += other.too_old;
        for (k, v) in &other.skipped {
            *self.skipped.entry(k.clone()).or_default() += v;
        }
        self.bad_files += other.bad_files;
        for w in &other.warnings {
            self.warn(w.clone());
        }
    }
}

/// The short class of a skip reason (its text up to the first `:`), for the summary.
fn reason_class(reason: &str) -> String {
    reason.split(':').next().unwrap_or(reason).trim().to_owned()
}

/// The hot-loop form of [`ActionUsage`] maps.
#[derive(Debug, Default)]
struct PrincipalAgg {
    kind: Option<PrincipalKind>,
    sessions: BTreeMap<String, i64>,
    actions: HashMap<ActionId, ActionUsage>,
    denied: HashMap<String, ActionUsage>,
    unmapped: HashMap<String, UnmappedUsage>,
    secrets_read: BTreeMap<String, i64>,
    by_session: HashMap<Box<str>, HashMap<ActionId, ActionUsage>>,
    other_sessions: HashMap<ActionId, ActionUsage>,
}

/// What one worker aggregated from its share of the events.
#[derive(Debug, Default)]
pub struct Aggregate {
    principals: HashMap<Box<str>, PrincipalAgg>,
    pub stats: Stats,
    scratch: String,
    resources: Vec<String>,
}

/// One event after parsing, with what resource extraction needs.
struct Input<'e> {
    event: Event<'e>,
    /// The record's `eventType`, when it has one.
    event_type: Option<&'e str>,
    count: u64,
    last_ms: i64,
}

impl Aggregate {
    pub fn new() -> Aggregate {
        Aggregate::default()
    }

    /// Adds one record; `location` names the file for a warning. Events before `cutoff_ms`
    /// are counted as too old and otherwise ignored.
    pub fn add_record(
        &mut self,
        record: &Record<'_>,
        mapper: &mut Mapper<'_>,
        cutoff_ms: i64,
        location: &str,
        index: u64,
    ) {
        self.stats.records += 1;
        let event = match record.event() {
            Ok(event) => event,
            Err(reason) => {
                self.stats.skip(location, index, reason);
                return;
            }
        };
        let last_ms = event.time_ms;
        self.add(
            Input {
                event,
                event_type: record.event_type.as_deref(),
                count: 1,
                last_ms,
            },
            record.request_parameters.as_ref(),
            record.resources.as_deref().unwrap_or(&[]),
            mapper,
            cutoff_ms,
        );
    }

    /// Adds calls already aggregated elsewhere (an Athena result row): `count` calls of one
    /// operation by one principal between `first_ms` and `last_ms`, of the record type
    /// `event_type` (`AwsApiCall`, `AwsServiceEvent`, …) when known. Request parameters and
    /// `resources` are not part of such a row, so no resource or secret read is recorded.
    pub fn add_aggregated(
        &mut self,
        event: Event<'_>,
        event_type: Option<&str>,
        count: u64,
        last_ms: i64,
        mapper: &mut Mapper<'_>,
        cutoff_ms: i64,
    ) {
        self.stats.records += count;
        self.add(
            Input {
                event,
                event_type,
                count,
                last_ms,
            },
            None,
            &[],
            mapper,
            cutoff_ms,
        );
    }

    fn add(
        &mut self,
        input: Input<'_>,
        params: Option<&RequestParameters<'_>>,
        resources: &[crate::trail::ResourceRef<'_>],
        mapper: &mut Mapper<'_>,
        cutoff_ms: i64,
    ) {
        let Input {
            event,
            event_type,
            count,
            last_ms,
        } = input;
        // Counted per event: look up by &str, allocate the key only the first time.
        let kind = event.kind.as_str();
        match self.stats.events_by_kind.get_mut(kind) {
            Some(n) => *n += count,
            None => {
                self.stats.events_by_kind.insert(kind.to_owned(), count);
            }
        }
        if last_ms < cutoff_ms {
            self.stats.too_old += count;
            return;
        }
        let Some(principal) = event.principal.as_deref() else {
            return;
        };
        let mapping = mapper.map_typed(&event.source, &event.name, event_type);
        let denied = event.error_code.as_deref().is_some_and(is_denial);

        self.resources.clear();
        if let Mapping::Actions { .. } = &*mapping {
            collect_resources(
                &event,
                params,
                resources,
                &mut self.scratch,
                &mut self.resources,
            );
        }

        if !self.principals.contains_key(principal) {
            self.principals
                .insert(principal.into(), PrincipalAgg::default());
        }
        // Just inserted when missing.
        let Some(agg) = self.principals.get_mut(principal) else {
            return;
        };
        agg.kind.get_or_insert(event.kind);
        if let Some(session) = event.session.as_deref() {
            add_session(&mut agg.sessions, session, last_ms);
        }
        let first_ms = event.time_ms;

        if denied {
            self.stats.denials += count;
            // Only catalog actions: the message's when the catalog knows it, else the event's.
            let denial =
                denied_actions_mapped(mapper.catalog(), &mapping, event.error_message.as_deref());
            for action in denial.actions {
                let usage = agg.denied.entry(action).or_default();
                record_use(usage, &event, first_ms, last_ms, count, &self.resources);
            }
            if denial.from == crate::mapping::DeniedFrom::Nothing {
                // No action to file it under: kept with the unmapped calls, saying why.
                self.scratch.clear();
                let _ = write!(self.scratch, "{}\t{}", event.source, event.name);
                let reason = format!(
                    "denied: {}",
                    denial.note.as_deref().unwrap_or("no action established")
                );
                agg.unmapped
                    .entry(self.scratch.clone())
                    .or_insert_with(|| UnmappedUsage {
                        counts: Counted::default(),
                        reason,
                    })
                    .counts
                    .add(first_ms, last_ms, count);
            }
            return;
        }

        match &*mapping {
            Mapping::Actions { actions, .. } => {
                for id in actions {
                    let usage = agg.actions.entry(*id).or_default();
                    record_use(usage, &event, first_ms, last_ms, count, &self.resources);
                }
                if event.kind == PrincipalKind::Role {
                    let session = event.session.as_deref().filter(|session| {
                        agg.by_session.contains_key(*session)
                            || (agg.by_session.len() < MAX_FUNCTION_SESSIONS
                                && may_be_function_session(session))
                    });
                    if let Some(session) = session
                        && !agg.by_session.contains_key(session)
                    {
                        agg.by_session.insert(session.into(), HashMap::new());
                    }
                    let per_session = session.and_then(|session| agg.by_session.get_mut(session));
                    match per_session {
                        Some(per_session) => {
                            for id in actions {
                                let usage = per_session.entry(*id).or_default();
                                record_use(
                                    usage,
                                    &event,
                                    first_ms,
                                    last_ms,
                                    count,
                                    &self.resources,
                                );
                            }
                        }
                        None => {
                            for id in actions {
                                let usage = agg.other_sessions.entry(*id).or_default();
                                record_use(usage, &event, first_ms, last_ms, count, &[]);
                            }
                        }
                    }
                }
                if let Some(params) = params {
                    record_secret_reads(agg, &event, params, last_ms);
                }
            }
            Mapping::Permissionless { .. } => self.stats.permissionless += count,
            Mapping::NotAnApiCall { .. } => self.stats.not_api_calls += count,
            Mapping::Unmapped { reason } => {
                self.stats.unmapped += count;
                self.scratch.clear();
                let _ = write!(self.scratch, "{}\t{}", event.source, event.name);
                let usage =
                    match agg.unmapped.get_mut(self.scratch.as_str()) {
                        Some(u) => u,
                        None => agg.unmapped.entry(self.scratch.clone()).or_insert_with(|| {
                            UnmappedUsage {
                                counts: Counted::default(),
                                reason: reason.clone(),
                            }
                        }),
                    };
                usage.counts.add(first_ms, last_ms, count);
            }
        }
    }

    /// Folds another worker's aggregate into this one.
    pub fn merge(&mut self, other: Aggregate) {
        self.stats.merge(&other.stats);
        for (principal, theirs) in other.principals {
            let mine = self.principals.entry(principal).or_default();
            if mine.kind.is_none() {
                mine.kind = theirs.kind;
            }
            for (s, t) in theirs.sessions {
                add_session(&mut mine.sessions, &s, t);
            }
            for (id, u) in theirs.actions {
                mine.actions.entry(id).or_default().merge(&u);
            }
            for (a, u) in theirs.denied {
                mine.denied.entry(a).or_default().merge(&u);
            }
            for (k, u) in theirs.unmapped {
                let m = mine.unmapped.entry(k).or_default();
                m.counts.merge(&u.counts);
                m.reason = u.reason;
            }
            for (s, t) in theirs.secrets_read {
                let m = mine.secrets_read.entry(s).or_insert(t);
                *m = (*m).max(t);
            }
            for (session, actions) in theirs.by_session {
                let room = mine.by_session.len() < MAX_FUNCTION_SESSIONS;
                let into = match mine.by_session.get_mut(&session) {
                    Some(into) => into,
                    None if room => mine.by_session.entry(session).or_default(),
                    // No room: its calls count as another session's, without resources.
                    None => {
                        for (id, mut u) in actions {
                            u.resources.clear();
                            u.resources_truncated = false;
                            mine.other_sessions.entry(id).or_default().merge(&u);
                        }
                        continue;
                    }
                };
                for (id, u) in actions {
                    into.entry(id).or_default().merge(&u);
                }
            }
            for (id, u) in theirs.other_sessions {
                mine.other_sessions.entry(id).or_default().merge(&u);
            }
        }
    }

    /// The per-principal usage, keyed by principal ARN, with action names from `catalog`.
    pub fn into_usage(self, catalog: &Catalog) -> (BTreeMap<String, PrincipalUsage>, Stats) {
        let mut out = BTreeMap::new();
        for (principal, agg) in self.principals {
            let mut usage = PrincipalUsage::new(agg.kind.unwrap_or(PrincipalKind::Unknown));
            usage.sessions = agg.sessions;
            usage.actions = agg
                .actions
                .into_iter()
                .map(|(id, u)| (catalog.action(id).name.clone(), u))
                .collect();
            usage.denied = agg.denied.into_iter().collect();
            usage.unmapped = agg.unmapped.into_iter().collect();
            usage.secrets_read = agg.secrets_read;
            let named = |actions: HashMap<ActionId, ActionUsage>| -> BTreeMap<String, ActionUsage> {
                actions
                    .into_iter()
                    .map(|(id, u)| (catalog.action(id).name.clone(), u))
                    .collect()
            };
            usage.by_session = agg
                .by_session
                .into_iter()
                .map(|(session, actions)| (session.into_string(), named(actions)))
                .collect();
            usage.other_sessions = named(agg.other_sessions);
            out.insert(principal.into_string(), usage);
        }
        (out, self.stats)
    }
}

fn record_use(
    usage: &mut ActionUsage,
    event: &Event<'_>,
    first_ms: i64,
    last_ms: i64,
    count: u64,
    resources: &[String],
) {
    usage.counts.add(first_ms, last_ms, count);
    if let Some(id) = event.event_id.as_deref() {
        usage.offer_sample(id);
    }
    for arn in resources {
        usage.add_resource(arn, last_ms);
    }
}

/// Which secrets a successful read names: `secretsmanager:GetSecretValue` (`secretId`),
/// `ssm:GetParameter` (`name`), `ssm:GetParameters` (`names`). The rotation uses this to know
/// who reads a secret.
fn record_secret_reads(
    agg: &mut PrincipalAgg,
    event: &Event<'_>,
    params: &RequestParameters<'_>,
    time_ms: i64,
) {
    let mut mark = |id: &str| {
        let last = agg.secrets_read.entry(id.to_owned()).or_insert(time_ms);
        *last = (*last).max(time_ms);
    };
    match (&*event.source, &*event.name) {
        ("secretsmanager.amazonaws.com", "GetSecretValue") => {
            if let Some(id) = params.secret_id.as_deref() {
                mark(id);
            }
        }
        ("ssm.amazonaws.com", "GetParameter") => {
            if let Some(name) = params.name.as_deref() {
                mark(name);
            }
        }
        ("ssm.amazonaws.com", "GetParameters") => {
            for name in &params.names.0 {
                mark(name);
            }
        }
        _ => {}
    }
}

/// The ARNs an event names: `resources[]` and the well-known request parameters (bucket and
/// key, table, secret, parameter, KMS key, function, queue, topic, role). An ARN built from a
/// name uses the event's region and account; a secret named without its ARN becomes the
/// pattern `…:secret:NAME-??????`, which matches the six random characters AWS appends.
fn collect_resources(
    event: &Event<'_>,
    params: Option<&RequestParameters<'_>>,
    resources: &[crate::trail::ResourceRef<'_>],
    scratch: &mut String,
    out: &mut Vec<String>,
) {
    for r in resources {
        if let Some(arn) = r.arn.as_deref().or(r.arn_prefix.as_deref()) {
            out.push(arn.to_owned());
        }
    }
    let Some(p) = params else {
        return;
    };
    let partition = event
        .principal
        .as_deref()
        .and_then(|a| a.split(':').nth(1))
        .unwrap_or("aws");
    let region = event.region.as_deref().unwrap_or("*");
    let account = event.account.as_deref().unwrap_or("*");
    let push = |out: &mut Vec<String>, text: &str| {
        if !out.iter().any(|o| o == text) {
            out.push(text.to_owned());
        }
    };
    let mut arn_or = |out: &mut Vec<String>, id: &str, build: &dyn Fn(&mut String, &str)| {
        if id.starts_with("arn:") {
            push(out, id);
        } else {
            scratch.clear();
            build(scratch, id);
            push(out, scratch);
        }
    };
    let prefix = crate::mapping::prefix_of_source(&event.source);
    match prefix {
        "s3" => {
            if let Some(bucket) = p.bucket_name.as_deref() {
                match p.key.as_deref() {
                    Some(key) => arn_or(out, bucket, &|s, b| {
                        let _ = write!(s, "arn:{partition}:s3:::{b}/{key}");
                    }),
                    None => arn_or(out, bucket, &|s, b| {
                        let _ = write!(s, "arn:{partition}:s3:::{b}");
                    }),
                }
            }
        }
        "dynamodb" => {
            if let Some(table) = p.table_name.as_deref() {
                arn_or(out, table, &|s, t| {
                    let _ = write!(s, "arn:{partition}:dynamodb:{region}:{account}:table/{t}");
                });
            }
        }
        "secretsmanager" => {
            if let Some(id) = p.secret_id.as_deref() {
                arn_or(out, id, &|s, n| {
                    let _ = write!(
                        s,
                        "arn:{partition}:secretsmanager:{region}:{account}:secret:{n}-??????"
                    );
                });
            }
        }
        "ssm" => {
            let names = p
                .name
                .as_deref()
                .into_iter()
                .chain(p.names.0.iter().map(Cow::as_ref));
            for name in names {
                arn_or(out, name, &|s, n| {
                    let _ = write!(
                        s,
                        "arn:{partition}:ssm:{region}:{account}:parameter/{}",
                        n.trim_start_matches('/')
                    );
                });
            }
        }
        "kms" => {
            if let Some(key) = p.key_id.as_deref() {
                arn_or(out, key, &|s, k| {
                    let kind = if k.starts_with("alias/") { "" } else { "key/" };
                    let _ = write!(s, "arn:{partition}:kms:{region}:{account}:{kind}{k}");
                });
            }
        }
        "lambda" => {
            if let Some(f) = p.function_name.as_deref() {
                arn_or(out, f, &|s, f| {
                    let _ = write!(s, "arn:{partition}:lambda:{region}:{account}:function:{f}");
                });
            }
        }
        "sqs" => {
            // https://sqs.REGION.amazonaws.com/ACCOUNT/NAME
            if let Some(url) = p.queue_url.as_deref() {
                let mut parts = url.rsplit('/');
                if let (Some(name), Some(acct)) = (parts.next(), parts.next()) {
                    push(out, &format!("arn:{partition}:sqs:{region}:{acct}:{name}"));
                }
            }
        }
        _ => {}
    }
    if let Some(topic) = p.topic_arn.as_deref() {
        push(out, topic);
    }
    if let Some(role) = p.role_arn.as_deref()
        && matches!(prefix, "sts" | "iam")
    {
        push(out, role);
    }
}

/// IAM's last-accessed data for one service of one role (GetServiceLastAccessedDetails).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceLastAccessed {
    pub namespace: String,
    /// When any action of the service was last used (ms), if within IAM's tracking period.
    pub last_authenticated_ms: Option<i64>,
    /// Action-level data where AWS tracks it: (action, last used ms).
    #[serde(default)]
    pub actions: Vec<(String, i64)>,
}

/// The documented JSON of `whittle usage` (schema 1, see docs/usage-schema.md).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UsageReport {
    pub schema: u32,
    pub generated_at: String,
    pub lookback_days: u32,
    pub catalog: String,
    pub roles: Vec<RoleReport>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RoleReport {
    pub arn: String,
    pub kind: PrincipalKind,
    pub sessions: Vec<String>,
    pub first_seen: Option<String>,
    pub last_seen: Option<String>,
    pub actions: Vec<ActionReport>,
    pub denied: Vec<DeniedReport>,
    pub unmapped: Vec<UnmappedReport>,
    pub secrets_read: Vec<SecretReadReport>,
    /// IAM's last-accessed data, when mining fetched it for this role.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_accessed: Option<LastAccessedReport>,
    /// Per session whose name can be a Lambda function's: what it used. `function` is set
    /// for the sessions that discovery matched to a function of this role.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub session_usage: Vec<SessionReport>,
    /// What calls under every other session used (no resources are kept for them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub other_sessions: Vec<ActionReport>,
}

/// What one session of a role used.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SessionReport {
    pub session: String,
    /// The ARN of the Lambda function of this name whose execution role is this role, when
    /// discovery listed one.
    #[serde(default)]
    pub function: Option<String>,
    pub actions: Vec<ActionReport>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LastAccessedReport {
    pub fetched_at: String,
    pub services: Vec<ServiceAccessReport>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ServiceAccessReport {
    pub namespace: String,
    /// `null`: not used within IAM's tracking period.
    pub last_authenticated: Option<String>,
    pub actions: Vec<ActionAccessReport>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ActionAccessReport {
    pub action: String,
    pub last_accessed: String,
}

impl LastAccessedReport {
    pub fn build(fetched_at_ms: i64, services: &[ServiceLastAccessed]) -> LastAccessedReport {
        LastAccessedReport {
            fetched_at: format_time(fetched_at_ms),
            services: services
                .iter()
                .map(|s| ServiceAccessReport {
                    namespace: s.namespace.clone(),
                    last_authenticated: s.last_authenticated_ms.map(format_time),
                    actions: s
                        .actions
                        .iter()
                        .map(|(a, t)| ActionAccessReport {
                            action: a.clone(),
                            last_accessed: format_time(*t),
                        })
                        .collect(),
                })
                .collect(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ActionReport {
    pub action: String,
    pub access_level: Option<String>,
    pub count: u64,
    pub first_seen: String,
    pub last_seen: String,
    pub resources: Vec<String>,
    pub resources_truncated: bool,
    pub sample_event_id: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeniedReport {
    pub action: String,
    pub count: u64,
    pub last_seen: String,
    pub resources: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UnmappedReport {
    pub event_source: String,
    pub event_name: String,
    pub count: u64,
    pub reason: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SecretReadReport {
    pub secret: String,
    pub last_read: String,
}

impl RoleReport {
    /// The report of one principal's usage since `since_ms`; `None` when nothing is left.
    pub fn build(
        arn: &str,
        usage: &PrincipalUsage,
        since_ms: i64,
        catalog: &Catalog,
    ) -> Option<RoleReport> {
        let since_day = day_of(since_ms);
        let counted = |c: &Counted| c.since(since_day).filter(|(_, _, last)| *last >= since_ms);
        let action_reports = |map: &BTreeMap<String, ActionUsage>| -> Vec<ActionReport> {
            map.iter()
                .filter_map(|(action, u)| {
                    let (count, first, last) = counted(&u.counts)?;
                    Some(ActionReport {
                        action: action.clone(),
                        access_level: catalog
                            .lookup(action)
                            .map(|id| catalog.action(id).level.to_string()),
                        count,
                        first_seen: format_time(first),
                        last_seen: format_time(last),
                        resources: u
                            .resources
                            .iter()
                            .filter(|(_, t)| **t >= since_ms)
                            .map(|(r, _)| r.clone())
                            .collect(),
                        resources_truncated: u.resources_truncated,
                        sample_event_id: u.sample_event_id.clone(),
                    })
                })
                .collect()
        };
        let actions = action_reports(&usage.actions);
        let denied: Vec<DeniedReport> = usage
            .denied
            .iter()
            .filter_map(|(action, u)| {
                let (count, _, last) = counted(&u.counts)?;
                Some(DeniedReport {
                    action: action.clone(),
                    count,
                    last_seen: format_time(last),
                    resources: u.resources.keys().cloned().collect(),
                })
            })
            .collect();
        let unmapped: Vec<UnmappedReport> = usage
            .unmapped
            .iter()
            .filter_map(|(key, u)| {
                let (count, _, _) = counted(&u.counts)?;
                let (source, name) = key.split_once('\t').unwrap_or((key, ""));
                Some(UnmappedReport {
                    event_source: source.to_owned(),
                    event_name: name.to_owned(),
                    count,
                    reason: u.reason.clone(),
                })
            })
            .collect();
        if actions.is_empty() && denied.is_empty() && unmapped.is_empty() {
            return None;
        }
        let (first, last) = usage.observed()?;
        Some(RoleReport {
            arn: arn.to_owned(),
            kind: usage.kind,
            sessions: usage.sessions.keys().cloned().collect(),
            first_seen: Some(format_time(first.max(since_ms))),
            last_seen: Some(format_time(last)),
            actions,
            denied,
            unmapped,
            secrets_read: usage
                .secrets_read
                .iter()
                .filter(|(_, t)| **t >= since_ms)
                .map(|(s, t)| SecretReadReport {
                    secret: s.clone(),
                    last_read: format_time(*t),
                })
                .collect(),
            last_accessed: None,
            session_usage: usage
                .by_session
                .iter()
                .map(|(session, actions)| SessionReport {
                    session: session.clone(),
                    function: None,
                    actions: action_reports(actions),
                })
                .filter(|s| !s.actions.is_empty())
                .collect(),
            other_sessions: action_reports(&usage.other_sessions),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trail::{Item, parse_time, read_log};

    fn t(text: &str) -> i64 {
        parse_time(text).expect("time")
    }

    fn record(role: &str, time: &str, source: &str, name: &str, extra: &str) -> String {
        format!(
            r#"{{"eventTime":"{time}","eventSource":"{source}","eventName":"{name}","awsRegion":"eu-west-1",
            "recipientAccountId":"111122223333","eventID":"id-{name}-{time}",
            "userIdentity":{{"type":"AssumedRole","arn":"arn:aws:sts::111122223333:assumed-role/{role}/sess-{role}",
            "sessionContext":{{"sessionIssuer":{{"arn":"arn:aws:iam::111122223333:role/{role}"}}}}}}{extra}}}"#
        )
    }

    fn aggregate(records: &[String], cutoff: i64) -> (BTreeMap<String, PrincipalUsage>, Stats) {
        let file = format!(r#"{{"Records":[{}]}}"#, records.join(","));
        let catalog = Catalog::embedded();
        let mut mapper = Mapper::new(catalog);
        let mut agg = Aggregate::new();
        let mut index = 0;
        read_log(file.as_bytes(), &mut |item| {
            match item {
                Item::Record(r) => agg.add_record(&r, &mut mapper, cutoff, "f.json", index),
                Item::Skipped { index, reason } => agg.stats.skip("f.json", index, &reason),
            }
            index += 1;
        });
        agg.into_usage(catalog)
    }

    const ROLE: &str = "arn:aws:iam::111122223333:role/app-orders";

    /// A record of `role` under the session `session`.
    fn record_as(session: &str, time: &str, source: &str, name: &str, extra: &str) -> String {
        record("app-orders", time, source, name, extra).replace("sess-app-orders", session)
    }

    #[test]
    fn sessions_that_can_be_functions_keep_their_own_actions_and_the_rest_are_pooled() {
        let records = vec![
            record_as(
                "orders-read",
                "2026-11-20T10:00:00Z",
                "s3.amazonaws.com",
                "GetObject",
                r#","requestParameters":{"bucketName":"orders","key":"in/1.json"}"#,
            ),
            record_as(
                "orders_write",
                "2026-11-20T11:00:00Z",
                "dynamodb.amazonaws.com",
                "PutItem",
                r#","requestParameters":{"tableName":"orders"}"#,
            ),
            record_as(
                "orders-read",
                "2026-11-21T10:00:00Z",
                "dynamodb.amazonaws.com",
                "GetItem",
                r#","requestParameters":{"tableName":"orders"}"#,
            ),
            // An EC2 instance profile's session and an SDK's default name: not functions.
            record_as(
                "i-0123456789abcdef0",
                "2026-11-21T11:00:00Z",
                "sqs.amazonaws.com",
                "SendMessage",
                r#","requestParameters":{"queueUrl":"https://sqs.eu-west-1.amazonaws.com/111122223333/q"}"#,
            ),
            record_as(
                "botocore-session-1700000000",
                "2026-11-21T12:00:00Z",
                "dynamodb.amazonaws.com",
                "PutItem",
                r#","requestParameters":{"tableName":"orders"}"#,
            ),
        ];
        let (usage, _) = aggregate(&records, 0);
        let role = &usage[ROLE];
        let per: BTreeMap<&str, Vec<&str>> = role
            .by_session
            .iter()
            .map(|(s, a)| (s.as_str(), a.keys().map(String::as_str).collect()))
            .collect();
        assert_eq!(
            per,
            BTreeMap::from([
                ("orders-read", vec!["dynamodb:GetItem", "s3:GetObject"]),
                ("orders_write", vec!["dynamodb:PutItem"]),
            ])
        );
        assert_eq!(
            role.by_session["orders-read"]["s3:GetObject"]
                .resources
                .keys()
                .collect::<Vec<_>>(),
            ["arn:aws:s3:::orders/in/1.json"]
        );
        assert_eq!(
            role.other_sessions.keys().collect::<Vec<_>>(),
            ["dynamodb:PutItem", "sqs:SendMessage"]
        );
        assert!(role.other_sessions.values().all(|u| u.resources.is_empty()));
        // The role's own view still has every call.
        assert_eq!(role.actions.len(), 4);
        assert_eq!(
            role.actions["dynamodb:PutItem"]
                .counts
                .since(0)
                .map(|c| c.0),
            Some(2)
        );

        let report = RoleReport::build(ROLE, role, 0, Catalog::embedded()).expect("report");
        let sessions: Vec<&str> = report
            .session_usage
            .iter()
            .map(|s| s.session.as_str())
            .collect();
        assert_eq!(sessions, ["orders-read", "orders_write"]);
        assert_eq!(report.other_sessions.len(), 2);
        // Aged out with the rest: only the 21st is left.
        let mut aged = role.clone();
        assert!(aged.age_out(t("2026-11-21T00:00:00Z")));
        assert_eq!(aged.by_session.keys().collect::<Vec<_>>(), ["orders-read"]);
    }

    #[test]
    fn sessions_kept_one_by_one_are_bounded_per_role_in_every_merge() {
        let records: Vec<String> = (0..MAX_FUNCTION_SESSIONS + 5)
            .map(|i| {
                record_as(
                    &format!("fn-{i:03}"),
                    "2026-11-20T10:00:00Z",
                    "sqs.amazonaws.com",
                    "SendMessage",
                    "",
                )
            })
            .collect();
        let (usage, _) = aggregate(&records, 0);
        let role = &usage[ROLE];
        assert_eq!(role.by_session.len(), MAX_FUNCTION_SESSIONS);
        assert_eq!(
            role.other_sessions["sqs:SendMessage"]
                .counts
                .since(0)
                .map(|c| c.0),
            Some(5)
        );
        // Merging runs keeps the bound; the overflow's calls are pooled, not lost.
        let (later, _) = aggregate(
            &[record_as(
                "late-function",
                "2026-11-22T10:00:00Z",
                "sqs.amazonaws.com",
                "SendMessage",
                "",
            )],
            0,
        );
        let mut merged = role.clone();
        merged.merge(&later[ROLE]);
        assert_eq!(merged.by_session.len(), MAX_FUNCTION_SESSIONS);
        assert!(!merged.by_session.contains_key("late-function"));
        assert_eq!(
            merged.other_sessions["sqs:SendMessage"]
                .counts
                .since(0)
                .map(|c| c.0),
            Some(6)
        );
    }

    #[test]
    fn function_session_names_are_told_from_other_services_names() {
        for name in ["orders-api-dev-createOrder", "f", "A_b-9", &"x".repeat(64)] {
            assert!(may_be_function_session(name), "{name}");
        }
        for name in [
            "",
            &"x".repeat(65),
            "jane@example.com",
            "i-0123456789abcdef0",
            "i-12345678",
            "0123456789abcdef0123456789abcdef",
            "botocore-session-1700000000",
            "aws-go-sdk-1700000000123",
            "1700000000",
        ] {
            assert!(!may_be_function_session(name), "{name}");
        }
    }

    #[test]
    fn counts_actions_per_role_with_resources_and_sessions() {
        let records = vec![
            record(
                "app-orders",
                "2026-11-20T10:00:00Z",
                "s3.amazonaws.com",
                "GetObject",
                r#","requestParameters":{"bucketName":"orders","key":"in/1.json"}"#,
            ),
            record(
                "app-orders",
                "2026-11-21T10:00:00Z",
                "s3.amazonaws.com",
                "HeadObject",
                r#","requestParameters":{"bucketName":"orders","key":"in/2.json"}"#,
            ),
            record(
                "app-orders",
                "2026-11-21T11:00:00Z",
                "secretsmanager.amazonaws.com",
                "GetSecretValue",
                r#","requestParameters":{"secretId":"orders/api-key"}"#,
            ),
            record(
                "app-orders",
                "2026-11-21T12:00:00Z",
                "sts.amazonaws.com",
                "GetCallerIdentity",
                "",
            ),
        ];
        let (usage, stats) = aggregate(&records, 0);
        let role = &usage[ROLE];
        assert_eq!(role.kind, PrincipalKind::Role);
        assert_eq!(
            role.sessions.keys().collect::<Vec<_>>(),
            ["sess-app-orders"]
        );
        let get = &role.actions["s3:GetObject"];
        assert_eq!(get.counts.since(0).map(|c| c.0), Some(2));
        assert_eq!(
            get.resources.keys().collect::<Vec<_>>(),
            [
                "arn:aws:s3:::orders/in/1.json",
                "arn:aws:s3:::orders/in/2.json"
            ]
        );
        let secret = &role.actions["secretsmanager:GetSecretValue"];
        assert_eq!(
            secret.resources.keys().collect::<Vec<_>>(),
            ["arn:aws:secretsmanager:eu-west-1:111122223333:secret:orders/api-key-??????"]
        );
        assert!(role.secrets_read.contains_key("orders/api-key"));
        assert_eq!(role.actions.len(), 2);
        assert_eq!(stats.permissionless, 1);
        assert_eq!(stats.events_by_kind["role"], 4);
    }

    #[test]
    fn denials_are_kept_apart_with_the_action_from_the_message() {
        let records = vec![record(
            "app-orders",
            "2026-11-20T10:00:00Z",
            "ec2.amazonaws.com",
            "RunInstances",
            r#","errorCode":"Client.UnauthorizedOperation","errorMessage":"You are not authorized to perform this operation. User: x is not authorized to perform: ec2:RunInstances on resource: y""#,
        )];
        let (usage, stats) = aggregate(&records, 0);
        let role = &usage[ROLE];
        assert!(role.actions.is_empty());
        assert!(role.denied.contains_key("ec2:RunInstances"));
        assert_eq!(stats.denials, 1);
    }

    #[test]
    fn a_denial_naming_a_non_action_is_kept_under_the_events_action() {
        // S3 writes `s3:ListObjects` (an API name, not an IAM action) in some denials.
        let records = vec![record(
            "app-orders",
            "2026-11-20T10:00:00Z",
            "s3.amazonaws.com",
            "GetBucketTagging",
            r#","errorCode":"AccessDenied","errorMessage":"User: x is not authorized to perform: s3:ListObjects on resource: arn:aws:s3:::orders""#,
        )];
        let (usage, stats) = aggregate(&records, 0);
        let role = &usage[ROLE];
        assert_eq!(
            role.denied.keys().collect::<Vec<_>>(),
            ["s3:GetBucketTagging"],
            "{:?}",
            role.denied
        );
        assert_eq!(stats.denials, 1);
    }

    #[test]
    fn events_that_are_not_api_calls_are_not_unmapped() {
        let records = vec![
            record(
                "app-orders",
                "2026-11-20T10:00:00Z",
                "kms.amazonaws.com",
                "RotateKey",
                r#","eventType":"AwsServiceEvent""#,
            ),
            record(
                "app-orders",
                "2026-11-20T10:00:01Z",
                "signin.amazonaws.com",
                "ConsoleLogin",
                r#","eventType":"AwsConsoleSignIn""#,
            ),
            record(
                "app-orders",
                "2026-11-20T10:00:02Z",
                "signin.amazonaws.com",
                "GetSigninToken",
                r#","eventType":"AwsConsoleSignIn""#,
            ),
            record(
                "app-orders",
                "2026-11-20T10:00:03Z",
                "s3.amazonaws.com",
                "ListBuckets",
                r#","eventType":"AwsConsoleAction""#,
            ),
        ];
        let (usage, stats) = aggregate(&records, 0);
        assert_eq!(stats.unmapped, 0, "{usage:?}");
        assert_eq!(stats.not_api_calls, 4);
        assert!(
            usage
                .get(ROLE)
                .is_none_or(|u| u.unmapped.is_empty() && u.actions.is_empty())
        );
    }

    #[test]
    fn unmapped_events_are_kept_with_their_reason() {
        let records = vec![record(
            "app-orders",
            "2026-11-20T10:00:00Z",
            "s3.amazonaws.com",
            "FrobnicateBucket",
            "",
        )];
        let (usage, stats) = aggregate(&records, 0);
        let u = &usage[ROLE].unmapped["s3.amazonaws.com\tFrobnicateBucket"];
        assert!(u.reason.contains("s3:FrobnicateBucket"));
        assert_eq!(stats.unmapped, 1);
    }

    #[test]
    fn old_events_and_malformed_records_are_counted_not_used() {
        let records = vec![
            record(
                "app-orders",
                "2026-01-01T00:00:00Z",
                "s3.amazonaws.com",
                "GetObject",
                "",
            ),
            r#"{"eventSource":"s3.amazonaws.com"}"#.to_owned(),
            r#"{"eventTime":"2026-11-20T10:00:00Z","userIdentity":"a string"}"#.to_owned(),
        ];
        let (usage, stats) = aggregate(&records, t("2026-06-01T00:00:00Z"));
        assert!(usage.is_empty());
        assert_eq!(stats.too_old, 1);
        assert_eq!(stats.skipped_total(), 2);
        assert_eq!(stats.warnings.len(), 2);
        assert!(
            stats.warnings[0].starts_with("f.json: record 1: no eventTime"),
            "{:?}",
            stats.warnings
        );
        assert!(
            stats.warnings[1].starts_with("f.json: record 2:"),
            "{:?}",
            stats.warnings
        );
    }

    #[test]
    fn merge_then_age_out_keeps_only_the_window() {
        let (a, _) = aggregate(
            &[record(
                "app-orders",
                "2026-09-01T10:00:00Z",
                "s3.amazonaws.com",
                "GetObject",
                "",
            )],
            0,
        );
        let (b, _) = aggregate(
            &[
                record(
                    "app-orders",
                    "2026-11-20T10:00:00Z",
                    "s3.amazonaws.com",
                    "GetObject",
                    "",
                ),
                record(
                    "app-orders",
                    "2026-11-20T11:00:00Z",
                    "s3.amazonaws.com",
                    "PutObject",
                    "",
                ),
            ],
            0,
        );
        let mut stored = a[ROLE].clone();
        stored.merge(&b[ROLE]);
        assert_eq!(
            stored.actions["s3:GetObject"].counts.since(0).map(|c| c.0),
            Some(2)
        );
        assert!(stored.age_out(t("2026-10-01T00:00:00Z")));
        let (count, first, _) = stored.actions["s3:GetObject"]
            .counts
            .since(0)
            .expect("left");
        assert_eq!(count, 1);
        assert_eq!(first, t("2026-11-20T10:00:00Z"));
        assert!(!stored.age_out(t("2026-12-01T00:00:00Z")));
    }

    #[test]
    fn aggregates_merge_like_one() {
        let r1 = record(
            "app-orders",
            "2026-11-20T10:00:00Z",
            "s3.amazonaws.com",
            "GetObject",
            "",
        );
        let r2 = record(
            "app-orders",
            "2026-11-21T10:00:00Z",
            "s3.amazonaws.com",
            "GetObject",
            "",
        );
        let (together, _) = aggregate(&[r1.clone(), r2.clone()], 0);
        let (one, _) = aggregate(&[r1], 0);
        let (two, _) = aggregate(&[r2], 0);
        let mut merged = one[ROLE].clone();
        merged.merge(&two[ROLE]);
        assert_eq!(merged.actions, together[ROLE].actions);
        // In either order: the sample event is the same whichever worker met it first.
        let mut reversed = two[ROLE].clone();
        reversed.merge(&one[ROLE]);
        assert_eq!(reversed.actions, together[ROLE].actions);
    }

    #[test]
    fn report_has_canonical_names_and_respects_since() {
        let records = vec![
            record(
                "app-orders",
                "2026-11-01T10:00:00Z",
                "s3.amazonaws.com",
                "ListObjectsV2",
                r#","requestParameters":{"bucketName":"orders"}"#,
            ),
            record(
                "app-orders",
                "2026-11-20T10:00:00Z",
                "s3.amazonaws.com",
                "GetObject",
                "",
            ),
        ];
        let (usage, _) = aggregate(&records, 0);
        let catalog = Catalog::embedded();
        let report = RoleReport::build(ROLE, &usage[ROLE], 0, catalog).expect("report");
        let names: Vec<_> = report.actions.iter().map(|a| a.action.as_str()).collect();
        assert_eq!(names, ["s3:GetObject", "s3:ListBucket"]);
        assert_eq!(report.actions[1].access_level.as_deref(), Some("List"));
        assert_eq!(report.actions[1].resources, ["arn:aws:s3:::orders"]);
        let recent = RoleReport::build(ROLE, &usage[ROLE], t("2026-11-10T00:00:00Z"), catalog)
            .expect("report");
        assert_eq!(recent.actions.len(), 1);
        assert!(
            RoleReport::build(ROLE, &usage[ROLE], t("2026-11-30T00:00:00Z"), catalog).is_none()
        );
    }
}
