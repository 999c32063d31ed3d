//! Loading with every error at once.
//!
//! serde stops at the first error, so [`parse`] works in rounds over toml's spanned document
//! tree: deserialize; on an error, record it with its span, remove the offending item from the
//! tree, and deserialize again. An unknown key is handled for its whole table at once: serde's
//! message lists the table's known keys, so every other unknown key of that table is
//! reported and removed in the same round (one round per key made a file of many unknown
//! keys take quadratic time). Spans always refer to the original text because the tree keeps
//! them, so every diagnostic is located in the file as the user wrote it. When deserializing
//! succeeds (possibly with defaults in place of removed items), the cross-field checks run
//! and locate their findings by key path in the same tree.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::{Config, CronSchedule, HumanDuration, PlannerConfig};

/// One located problem in the configuration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

/// Why a configuration could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{}: cannot read the configuration: {source}; pass --config PATH or set WHITTLE_CONFIG", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}", render(path, diagnostics))]
    Invalid {
        path: PathBuf,
        diagnostics: Vec<Diagnostic>,
    },
}

fn render(path: &Path, diagnostics: &[Diagnostic]) -> String {
    diagnostics
        .iter()
        .map(|d| format!("{}:{}:{}: {}", path.display(), d.line, d.column, d.message))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Reads and validates the file at `path`.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = super::read(path)?;
    let base_dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut config = parse_in(&text, base_dir).map_err(|diagnostics| ConfigError::Invalid {
        path: path.to_path_buf(),
        diagnostics,
    })?;
    config.text = text;
    Ok(config)
}

/// Parses and validates configuration text whose relative paths start at `.`.
#[cfg(test)]
pub fn parse(text: &str) -> Result<Config, Vec<Diagnostic>> {
    parse_in(text, Path::new("."))
}

/// Parses and validates configuration text, returning every problem found; relative paths
/// in it (playbooks) start at `base_dir`.
pub fn parse_in(text: &str, base_dir: &Path) -> Result<Config, Vec<Diagnostic>> {
    parse_counting_rounds(text, base_dir).0
}

/// [`parse_in`], also returning how many times the tree was deserialized (for tests: the
/// number of rounds must not grow with the number of unknown keys).
fn parse_counting_rounds(text: &str, base_dir: &Path) -> (Result<Config, Vec<Diagnostic>>, usize) {
    let (mut root, syntax_errors) = DeTable::parse_recoverable(text);
    let lines = Lines::new(text);
    let locate = |span: Option<Range<usize>>| lines.position(span.map_or(0, |s| s.start));
    if !syntax_errors.is_empty() {
        // A syntax error leaves the tree unreliable; report the syntax alone.
        let found = syntax_errors
            .iter()
            .map(|e| diagnostic(locate(e.span()), e.message()))
            .collect();
        return (Err(found), 0);
    }

    let mut diagnostics = Vec::new();
    // Key paths removed so far: a finding caused by a removal is not a mistake of its own.
    let mut removed: Vec<Vec<String>> = Vec::new();
    let mut rounds = 0;
    let config = loop {
        rounds += 1;
        match Config::deserialize(toml::de::Deserializer::from(root.clone())) {
            Ok(config) => break Some(config),
            Err(error) => {
                let Some(span) = error.span() else {
                    // Nothing to trace it to: report it and stop with what is known.
                    diagnostics.push(diagnostic(locate(None), error.message()));
                    break None;
                };
                // An unknown key: every unknown key of its table, in one round.
                if let Some(unknown) = remove_unknown_keys(root.get_mut(), &span, error.message()) {
                    for (path, key_span, message) in unknown {
                        diagnostics.push(diagnostic(locate(Some(key_span)), &message));
                        removed.push(path);
                    }
                    continue;
                }
                // A table that lost a required key to an earlier removal now reports that key
                // missing; that is the same mistake again, so only the first is reported.
                let missing = error
                    .message()
                    .strip_prefix("missing field `")
                    .and_then(|rest| rest.split('`').next());
                let caused_by_removal = missing.is_some_and(|field| {
                    removed
                        .iter()
                        .any(|path| path.last().is_some_and(|last| last == field))
                });
                // Remove the offending item (for a missing key: its table) and try again.
                let path = remove_at(root.get_mut(), &span);
                if !caused_by_removal {
                    let message = match &path {
                        // serde names the type it wanted, not the key; the key is the one
                        // removed, so say it (`aws.max_attempts: invalid type: …`).
                        Some(path) if names_no_key(error.message()) => {
                            format!("{}: {}", dotted(path), error.message())
                        }
                        _ => error.message().to_owned(),
                    };
                    diagnostics.push(diagnostic(locate(Some(span.clone())), &message));
                }
                match path {
                    Some(path) => removed.push(path),
                    None => break None,
                }
            }
        }
    };
    let config = config.map(|mut config| {
        config.base_dir = base_dir.to_path_buf();
        config
    });
    if let Some(config) = &config {
        for (path, message) in cross_checks(config) {
            let path_names: Vec<String> = path.iter().map(Seg::name).collect();
            let follows_a_removal = removed
                .iter()
                .any(|r| r.starts_with(&path_names) || path_names.starts_with(r));
            if !follows_a_removal {
                diagnostics.push(diagnostic(locate(span_of(&root, &path)), &message));
            }
        }
    }
    diagnostics.sort_by_key(|d| (d.line, d.column));
    diagnostics.dedup();
    let result = match config {
        Some(config) if diagnostics.is_empty() => Ok(config),
        _ => Err(diagnostics),
    };
    (result, rounds)
}

/// serde's messages for a value of the wrong type or shape, which do not say which key.
fn names_no_key(message: &str) -> bool {
    ["invalid type", "invalid value", "invalid length"]
        .iter()
        .any(|prefix| message.starts_with(prefix))
}

/// A key path as written in TOML: `aws.accounts[0].id`.
fn dotted(path: &[String]) -> String {
    let mut out = String::new();
    for segment in path {
        if segment.bytes().all(|b| b.is_ascii_digit()) && !out.is_empty() {
            out.push_str(&format!("[{segment}]"));
        } else {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(segment);
        }
    }
    out
}

fn diagnostic((line, column): (usize, usize), message: &str) -> Diagnostic {
    // toml messages sometimes end with a newline; one diagnostic is one line.
    let message = message.trim().replace('\n', "; ");
    Diagnostic {
        line,
        column,
        message,
    }
}

/// Where each line of a text starts, so that locating a diagnostic does not scan the text
/// before it (thousands of diagnostics in a large file would take quadratic time).
struct Lines<'t> {
    text: &'t str,
    starts: Vec<usize>,
}

impl<'t> Lines<'t> {
    fn new(text: &'t str) -> Self {
        let starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        Lines { text, starts }
    }

    /// 1-based line and column (in characters) of a byte offset.
    fn position(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        // The number of lines starting at or before the offset: at least 1 (the first).
        let line = self.starts.partition_point(|&start| start <= offset);
        let line_start = self.starts[line - 1];
        (line, self.text[line_start..offset].chars().count() + 1)
    }
}

/// serde's message for an unknown key of a struct, ``unknown field `NAME`, expected one of
/// `a`, `b` `` (or ``expected `a` ``, ``expected `a` or `b` ``, `there are no fields`): the
/// struct's known keys, and the message's text after the name.
fn parse_unknown_field(message: &str) -> Option<(Vec<&str>, &str)> {
    let rest = message.strip_prefix("unknown field `")?;
    // The unknown name is the user's and may hold anything; serde's part is at the end.
    let end = ["`, expected ", "`, there are no fields"]
        .iter()
        .filter_map(|marker| rest.rfind(marker))
        .max()?;
    let tail = &rest[end + 1..];
    let known = match tail.split_once("expected ") {
        // Every second piece between backticks is a name: "one of `a`, `b`".
        Some((_, list)) => list.split('`').skip(1).step_by(2).collect(),
        None => Vec::new(),
    };
    Some((known, tail))
}

/// Removed unknown keys: each one's key path, the span of its key, and its message (or,
/// below [`remove_unknown_keys`], its name).
type UnknownKeys = Vec<(Vec<String>, Range<usize>, String)>;

/// For an unknown-key error at `span`: removes every key of the same table that the error's
/// message does not list as known, returning each one's path, span and message. None when
/// the message is not about an unknown key or the table is not found (the caller then
/// removes the one item the error points at).
fn remove_unknown_keys(
    root: &mut DeTable<'_>,
    span: &Range<usize>,
    message: &str,
) -> Option<UnknownKeys> {
    let (known, tail) = parse_unknown_field(message)?;
    let mut found = remove_unknown_in_table(root, span, &known)?;
    for (_, _, name) in &mut found {
        *name = format!("unknown field `{name}`{tail}");
    }
    Some(found)
}

/// [`remove_unknown_keys`] in `table` or below; the third item of each result is the key.
fn remove_unknown_in_table(
    table: &mut DeTable<'_>,
    span: &Range<usize>,
    known: &[&str],
) -> Option<UnknownKeys> {
    if table.iter().any(|(key, _)| key.span() == *span) {
        let unknown: Vec<_> = table
            .keys()
            .filter(|key| !known.contains(&key.get_ref().as_ref()))
            .cloned()
            .collect();
        // The key the error names must go, or the next round would stop at it again.
        if !unknown.iter().any(|key| key.span() == *span) {
            return None;
        }
        // (The table is a BTreeMap: each removal takes logarithmic time.)
        let found = unknown
            .into_iter()
            .map(|key| {
                table.remove(&key);
                let name = key.get_ref().to_string();
                (vec![name.clone()], key.span(), name)
            })
            .collect();
        return Some(found);
    }
    table.iter_mut().find_map(|(key, value)| {
        let mut found = remove_unknown_in_value(value.get_mut(), span, known)?;
        for (path, _, _) in &mut found {
            path.insert(0, key.get_ref().to_string());
        }
        Some(found)
    })
}

fn remove_unknown_in_value(
    value: &mut DeValue<'_>,
    span: &Range<usize>,
    known: &[&str],
) -> Option<UnknownKeys> {
    match value {
        DeValue::Table(table) => remove_unknown_in_table(table, span, known),
        DeValue::Array(array) => array.iter_mut().enumerate().find_map(|(i, item)| {
            let mut found = remove_unknown_in_value(item.get_mut(), span, known)?;
            for (path, _, _) in &mut found {
                path.insert(0, i.to_string());
            }
            Some(found)
        }),
        _ => None,
    }
}

/// Removes the item the error span points at: a key whose key or value span matches, or an
/// array element. Returns the removed item's key path, or None when nothing matched (the
/// caller then stops instead of looping).
fn remove_at(table: &mut DeTable<'_>, span: &Range<usize>) -> Option<Vec<String>> {
    let hit = table
        .iter()
        .find(|(key, value)| key.span() == *span || value.span() == *span)
        .map(|(key, _)| key.clone());
    if let Some(key) = hit {
        table.remove(&key);
        return Some(vec![key.get_ref().to_string()]);
    }
    // Search every child: a table's span covers only its own header and keys, not the
    // sub-tables defined later in the file (`[aws]` does not contain `[[aws.accounts]]`).
    table.iter_mut().find_map(|(key, value)| {
        let mut path = remove_in_value(value.get_mut(), span)?;
        path.insert(0, key.get_ref().to_string());
        Some(path)
    })
}

fn remove_in_value(value: &mut DeValue<'_>, span: &Range<usize>) -> Option<Vec<String>> {
    match value {
        DeValue::Table(table) => remove_at(table, span),
        DeValue::Array(array) => {
            if let Some(index) = array.iter().position(|item| item.span() == *span) {
                let mut kept = toml::de::DeArray::new();
                for (i, item) in array.iter().enumerate() {
                    if i != index {
                        kept.push(item.clone());
                    }
                }
                *array = kept;
                return Some(vec![index.to_string()]);
            }
            array.iter_mut().enumerate().find_map(|(i, item)| {
                let mut path = remove_in_value(item.get_mut(), span)?;
                path.insert(0, i.to_string());
                Some(path)
            })
        }
        _ => None,
    }
}

/// A step in a key path: a table key or an array index.
#[derive(Debug, Clone)]
pub(super) enum Seg {
    Key(&'static str),
    Name(String),
    Index(usize),
}

impl Seg {
    fn name(&self) -> String {
        match self {
            Seg::Key(name) => (*name).to_owned(),
            Seg::Name(name) => name.clone(),
            Seg::Index(i) => i.to_string(),
        }
    }
}

/// The span of the deepest existing item along `path`.
fn span_of(root: &Spanned<DeTable<'_>>, path: &[Seg]) -> Option<Range<usize>> {
    let mut span = None;
    let mut current: Option<&DeValue<'_>> = None;
    let mut table = Some(root.get_ref());
    for seg in path {
        let next = match (seg, table, current) {
            (Seg::Key(name), Some(t), _) => lookup(t, name),
            (Seg::Name(name), Some(t), _) => lookup(t, name),
            (Seg::Index(i), _, Some(DeValue::Array(array))) => array.get(*i),
            _ => None,
        };
        let Some(next) = next else { break };
        span = Some(next.span());
        current = Some(next.get_ref());
        table = next.get_ref().as_table();
    }
    span
}

fn lookup<'a, 'i>(table: &'a DeTable<'i>, name: &str) -> Option<&'a Spanned<DeValue<'i>>> {
    table
        .iter()
        .find(|(key, _)| key.get_ref() == name)
        .map(|(_, value)| value)
}

/// Checks that involve more than one value. Each finding carries the key path it is about.
/// Each source has the keys its kind needs, and none that belong to another kind.
fn rotation_checks(config: &Config) -> Vec<(Vec<Seg>, String)> {
    use Seg::{Index, Key};
    let mut found = Vec::new();
    let rotations = &config.rotation;
    for (i, rotation) in rotations.iter().enumerate() {
        let at = |key: &'static str| vec![Key("rotation"), Index(i), Key(key)];
        let whole = vec![Key("rotation"), Index(i)];
        if rotation.name.trim().is_empty() {
            found.push((whole.clone(), "rotation without a `name`".to_owned()));
        } else if rotations[..i].iter().any(|r| r.name == rotation.name) {
            found.push((
                at("name"),
                format!(
                    "rotation name `{}` is used twice; names must be unique",
                    rotation.name
                ),
            ));
        }
        if rotation.secret.trim().is_empty() {
            found.push((
                whole.clone(),
                "rotation without a `secret` (the secret id or parameter name)".to_owned(),
            ));
        } else if let Some(other) = rotations[..i].iter().find(|r| {
            r.secret == rotation.secret
                && r.store == rotation.store
                && r.account == rotation.account
        }) {
            found.push((
                at("secret"),
                format!(
                    "`{}` is already rotated by `{}`: two rotations of one secret would overlap",
                    rotation.secret, other.name
                ),
            ));
        }
        if rotation.account.is_empty() {
            found.push((
                whole.clone(),
                "rotation without an `account` (a [[aws.accounts]] name)".to_owned(),
            ));
        } else if config.account(&rotation.account).is_none() {
            found.push((
                at("account"),
                format!(
                    "account `{}` is not one of the [[aws.accounts]] names",
                    rotation.account
                ),
            ));
        }
        if rotation.store == whittle_playbooks::rotation::machine::Store::Ssm
            && rotation.kms_key.is_none()
        {
            found.push((
                whole.clone(),
                "store = \"ssm\" needs `kms_key`: it encrypts the SecureString and the pending value kept in the journal".to_owned(),
            ));
        }
        if rotation.attempts == 0 {
            found.push((at("attempts"), "attempts = 0 would never try".to_owned()));
        }
        if let Some(message) = jitter_problem(&rotation.cron, rotation.jitter) {
            found.push((at("jitter"), message));
        }
        let playbook_path = rotation.playbook_path(&config.base_dir);
        if rotation.playbook.as_os_str().is_empty() {
            found.push((whole, "rotation without a `playbook` file".to_owned()));
        } else if let Err(message) = check_playbook_file(&playbook_path) {
            found.push((at("playbook"), format!("playbook {message}")));
        } else {
            match whittle_playbooks::rotation::load(&playbook_path) {
                Err(error) => found.push((at("playbook"), format!("playbook {error}"))),
                Ok(playbook)
                    if playbook.kind() == "native"
                        && rotation.store
                            != whittle_playbooks::rotation::machine::Store::SecretsManager =>
                {
                    found.push((
                        at("playbook"),
                        "a `native` playbook runs Secrets Manager's own rotation: it needs store = \"secrets-manager\"".to_owned(),
                    ));
                }
                Ok(_) => {}
            }
        }
    }
    found
}

fn source_checks(config: &Config) -> Vec<(Vec<Seg>, String)> {
    use crate::config::SourceKind::{Athena, Directory, LookupEvents, S3};
    use Seg::{Index, Key};
    let mut found = Vec::new();
    let sources = &config.mining.sources;
    for (i, source) in sources.iter().enumerate() {
        let at = |key: &'static str| vec![Key("mining"), Key("sources"), Index(i), Key(key)];
        let kind = source.kind;
        if source.name.trim().is_empty() {
            found.push((
                vec![Key("mining"), Key("sources"), Index(i)],
                "source without a `name` (its checkpoint is kept under it)".to_owned(),
            ));
        } else if sources[..i].iter().any(|s| s.name == source.name) {
            found.push((
                at("name"),
                format!(
                    "source name `{}` is used twice; names must be unique",
                    source.name
                ),
            ));
        }
        let present: [(&'static str, bool, &[crate::config::SourceKind]); 12] = [
            ("path", source.path.is_some(), &[Directory]),
            (
                "account",
                source.account.is_some(),
                &[S3, LookupEvents, Athena],
            ),
            ("bucket", source.bucket.is_some(), &[S3]),
            ("prefix", source.prefix.is_some(), &[S3]),
            (
                "regions",
                !source.regions.is_empty(),
                &[LookupEvents, Athena],
            ),
            ("database", source.database.is_some(), &[Athena]),
            ("table", source.table.is_some(), &[Athena]),
            ("workgroup", source.workgroup.is_some(), &[Athena]),
            (
                "output_location",
                source.output_location.is_some(),
                &[Athena],
            ),
            ("date_partition", source.date_partition.is_some(), &[Athena]),
            (
                "region_partition",
                source.region_partition.is_some(),
                &[Athena],
            ),
            (
                "delivery_delay_minutes",
                source.delivery_delay_minutes.is_some(),
                &[Athena],
            ),
        ];
        for (key, set, kinds) in present {
            if set && !kinds.contains(&kind) {
                found.push((
                    at(key),
                    format!("`{key}` does not apply to kind = \"{}\"", kind.as_str()),
                ));
            }
        }
        let required: &[(&str, bool)] = match kind {
            Directory => &[("path", source.path.is_some())],
            S3 => &[
                ("account", source.account.is_some()),
                ("bucket", source.bucket.is_some()),
            ],
            LookupEvents => &[("account", source.account.is_some())],
            Athena => &[
                ("account", source.account.is_some()),
                ("database", source.database.is_some()),
                ("table", source.table.is_some()),
                ("output_location", source.output_location.is_some()),
            ],
        };
        for (key, set) in required {
            if !set {
                found.push((
                    vec![Key("mining"), Key("sources"), Index(i)],
                    format!("kind = \"{}\" needs `{key}`", kind.as_str()),
                ));
            }
        }
        if let Some(account) = &source.account
            && config.account(account).is_none()
        {
            found.push((
                at("account"),
                format!("account `{account}` is not one of the [[aws.accounts]] names"),
            ));
        }
        if kind == Athena && !source.regions.is_empty() && source.region_partition.is_none() {
            found.push((
                at("regions"),
                "kind = \"athena\" reads `regions` through the table's region partition: set `region_partition` too".to_owned(),
            ));
        }
        if let Some(location) = &source.output_location
            && !location.starts_with("s3://")
        {
            found.push((
                at("output_location"),
                format!("`{location}` is not an S3 URL: write it as s3://BUCKET/PREFIX/"),
            ));
        }
    }
    if config.mining.stream_above_mib == 0 {
        found.push((
            vec![Key("mining"), Key("stream_above_mib")],
            "stream_above_mib must be at least 1".to_owned(),
        ));
    }
    if config.mining.chunk_files == 0 {
        found.push((
            vec![Key("mining"), Key("chunk_files")],
            "chunk_files must be at least 1".to_owned(),
        ));
    }
    found
}

fn cross_checks(config: &Config) -> Vec<(Vec<Seg>, String)> {
    use Seg::{Index, Key};
    let mut found = Vec::new();
    let accounts = &config.aws.accounts;
    if accounts.is_empty() {
        found.push((
            vec![Key("aws")],
            "no account configured: add at least one [[aws.accounts]] with a `name`".to_owned(),
        ));
    }
    for (i, account) in accounts.iter().enumerate() {
        if account.name.trim().is_empty() {
            found.push((
                vec![Key("aws"), Key("accounts"), Index(i)],
                "account without a `name`".to_owned(),
            ));
        } else if accounts[..i].iter().any(|a| a.name == account.name) {
            found.push((
                vec![Key("aws"), Key("accounts"), Index(i), Key("name")],
                format!(
                    "account name `{}` is used twice; names must be unique",
                    account.name
                ),
            ));
        }
        if account.external_id.is_some() && account.role_arn.is_none() {
            found.push((
                vec![Key("aws"), Key("accounts"), Index(i), Key("external_id")],
                "`external_id` needs a `role_arn` to assume".to_owned(),
            ));
        }
        if let Some(role) = &account.role_arn
            && !(role.starts_with("arn:") && role.contains(":role/"))
        {
            found.push((
                vec![Key("aws"), Key("accounts"), Index(i), Key("role_arn")],
                format!("`{role}` is not a role ARN (arn:aws:iam::ACCOUNT:role/NAME)"),
            ));
        }
    }
    if config.aws.max_attempts == 0 {
        found.push((
            vec![Key("aws"), Key("max_attempts")],
            "max_attempts must be at least 1".to_owned(),
        ));
    }
    if config.aws.concurrent_accounts == 0 {
        found.push((
            vec![Key("aws"), Key("concurrent_accounts")],
            "concurrent_accounts must be at least 1".to_owned(),
        ));
    }
    if config.target_selector().is_empty() {
        found.push((
            vec![Key("targets")],
            "no target selector: set [targets] arn_patterns and/or tags; whittle never manages every role by default"
                .to_owned(),
        ));
    }
    if config.targets.max_roles_per_run == 0 {
        found.push((
            vec![Key("targets"), Key("max_roles_per_run")],
            "max_roles_per_run must be at least 1 (it caps how many roles one run changes)"
                .to_owned(),
        ));
    }
    let lookback = config.mining.lookback_days;
    if !(1..=400).contains(&lookback) {
        found.push((
            vec![Key("mining"), Key("lookback_days")],
            format!("lookback_days = {lookback}: use 1 to 400 days (IAM keeps last-accessed data for 400 days)"),
        ));
    } else if config.planner.min_observation_days > lookback {
        found.push((
            vec![Key("planner"), Key("min_observation_days")],
            format!(
                "min_observation_days ({}) exceeds [mining] lookback_days ({lookback}): evidence would age out before any role could be planned",
                config.planner.min_observation_days
            ),
        ));
    }
    for (i, pattern) in config.planner.keep.iter().enumerate() {
        let at = vec![Key("planner"), Key("keep"), Index(i)];
        if pattern != "*" && !pattern.contains(':') {
            found.push((
                at,
                format!("`{pattern}` is not an action pattern; write `service:Action` (wildcards allowed), e.g. `ssm:GetParameter*`"),
            ));
        } else if whittle_planner::catalog::Catalog::embedded()
            .expand(pattern)
            .is_empty()
        {
            found.push((
                at,
                format!(
                    "`{pattern}` matches no action in the IAM action catalog; check its spelling"
                ),
            ));
        }
    }
    if let Some(url) = &config.notify.webhook_url
        && !(url.starts_with("https://") || url.starts_with("http://"))
    {
        found.push((
            vec![Key("notify"), Key("webhook_url")],
            format!("`{url}` is not an http(s) URL"),
        ));
    }
    if let Some(account) = &config.planner.organization_from
        && config.account(account).is_none()
    {
        found.push((
            vec![Key("planner"), Key("organization_from")],
            format!("account `{account}` is not one of the [[aws.accounts]] names"),
        ));
    }
    for (account, paths) in &config.planner.organization_policies {
        let at = |rest: Vec<Seg>| {
            let mut at = vec![
                Key("planner"),
                Key("organization_policies"),
                Seg::Name(account.clone()),
            ];
            at.extend(rest);
            at
        };
        if config.account(account).is_none() {
            found.push((
                at(Vec::new()),
                format!("account `{account}` is not one of the [[aws.accounts]] names"),
            ));
        }
        if paths.is_empty() {
            found.push((
                at(Vec::new()),
                "no SCP file: list one per level, from the organization root down to the account"
                    .to_owned(),
            ));
        }
        for (i, path) in paths.iter().enumerate() {
            let problem = check_playbook_file(&config.base_dir.join(path))
                .err()
                .or_else(|| PlannerConfig::read_scp(&config.base_dir, path).err());
            if let Some(problem) = problem {
                found.push((at(vec![Index(i)]), problem));
            }
        }
    }
    if config.planner.max_roles_per_apply == 0 {
        found.push((
            vec![Key("planner"), Key("max_roles_per_apply")],
            "max_roles_per_apply of 0 would make `whittle apply` refuse every plan".to_owned(),
        ));
    }
    if let Some(path) = &config.trial.playbook {
        let path = config.base_dir.join(path);
        let problem = check_playbook_file(&path).err().or_else(|| {
            whittle_playbooks::trial::load(&path)
                .err()
                .map(|e| e.to_string())
        });
        if let Some(problem) = problem {
            found.push((
                vec![Key("trial"), Key("playbook")],
                format!("trial playbook {problem}"),
            ));
        }
    }
    for (i, name) in config.trial.staging_accounts.iter().enumerate() {
        if config.account(name).is_none() {
            found.push((
                vec![Key("trial"), Key("staging_accounts"), Index(i)],
                format!("staging account `{name}` is not one of the [[aws.accounts]] names"),
            ));
        }
    }
    found.extend(source_checks(config));
    found.extend(rotation_checks(config));
    for (name, job) in config.jobs.iter() {
        let at = vec![Key("jobs"), Seg::Name(name.to_string()), Key("jitter")];
        if let Some(jitter) = job.jitter
            && jitter.0.is_zero()
        {
            found.push((at, "jitter of zero: remove the key instead".to_owned()));
        } else if let Some(message) = jitter_problem(&job.cron, job.jitter) {
            found.push((at, message));
        }
    }
    found
}

/// A jitter as long as the time between two runs would make every run still wait when the
/// next tick comes, and the scheduler skips a tick while the job runs: it would never run
/// on time, or (with an absurd jitter) never at all.
fn jitter_problem(cron: &CronSchedule, jitter: Option<HumanDuration>) -> Option<String> {
    let jitter = jitter?;
    let gap = HumanDuration(cron.shortest_gap(chrono::Utc::now())?);
    (jitter.0 >= gap.0).then(|| {
        format!(
            "jitter of {jitter} is not shorter than the period of `{}` ({gap} between runs): each run would wait past the next tick, which is then skipped; make it shorter than {gap}",
            cron.as_str()
        )
    })
}

/// Playbooks are small TOML files. Larger ones are refused before reading.
const PLAYBOOK_MAX_BYTES: u64 = 1 << 20;

/// Refuses a playbook path that is not a regular file of at most [`PLAYBOOK_MAX_BYTES`]
/// before the playbook is read: reading `/dev/zero` would fill memory and a FIFO would
/// block `validate` forever. (A symlink counts as what it points to.) A path that cannot be
/// examined passes, for the playbook loader to say why it cannot read it.
fn check_playbook_file(path: &Path) -> Result<(), String> {
    match std::fs::metadata(path) {
        Ok(meta) if !meta.is_file() => Err(format!("{}: not a regular file", path.display())),
        Ok(meta) if meta.len() > PLAYBOOK_MAX_BYTES => {
            Err(format!("{}: larger than 1 MiB", path.display()))
        }
        _ => Ok(()),
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.line, self.column, self.message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
[aws]
region = "us-east-1"

[[aws.accounts]]
name = "staging"
id = "123456789012"

[targets]
arn_patterns = ["arn:aws:iam::*:role/app-*"]
"#;

    fn errors(text: &str) -> Vec<String> {
        match parse(text) {
            Ok(_) => Vec::new(),
            Err(diagnostics) => diagnostics.iter().map(ToString::to_string).collect(),
        }
    }

    #[test]
    fn minimal_config_is_valid_with_defaults() {
        let config = parse(MINIMAL).expect("valid");
        assert_eq!(config.aws.max_attempts, 3);
        assert_eq!(config.status.listen.to_string(), "127.0.0.1:9187");
        assert_eq!(config.mining.lookback_days, 90);
        assert!(config.jobs.iter().next().is_none());
    }

    #[test]
    fn reports_three_separate_mistakes_at_once() {
        let text = r#"
[aws]
region = "us-east-1"
colour = "blue"

[[aws.accounts]]
name = "staging"
id = "1234"

[targets]
arn_patterns = ["arn:aws:iam::*:role/app-*"]

[jobs.discover]
cron = "every five minutes"
"#;
        let found = errors(text);
        assert_eq!(found.len(), 3, "{found:#?}");
        assert!(
            found[0].starts_with("4:1: unknown field `colour`"),
            "{}",
            found[0]
        );
        assert!(
            found[1].starts_with("8:6: invalid account id `1234`"),
            "{}",
            found[1]
        );
        assert!(
            found[2].starts_with("14:8: invalid cron expression `every five minutes`"),
            "{}",
            found[2]
        );
    }

    #[test]
    fn mining_sources_need_their_keys_and_refuse_others() {
        let text = format!(
            r#"{MINIMAL}
[mining]
[[mining.sources]]
name = "trail"
kind = "s3"
account = "staging"

[[mining.sources]]
name = "trail"
kind = "directory"
path = "/var/log/trail"
bucket = "b"

[[mining.sources]]
name = "org"
kind = "athena"
account = "prod"
database = "d"
table = "t"
output_location = "athena-results"
regions = ["us-east-1"]

[[mining.sources]]
name = "events"
kind = "lookup-events"
account = "staging"
delivery_delay_minutes = 5
region_partition = "region"

[[mining.sources]]
name = "recent"
kind = "lookup-everything"
"#
        );
        let found = errors(&text);
        let expect = [
            "13:1: kind = \"s3\" needs `bucket`",
            "19:8: source name `trail` is used twice",
            "22:10: `bucket` does not apply to kind = \"directory\"",
            "27:11: account `prod` is not one of the [[aws.accounts]] names",
            "30:19: `athena-results` is not an S3 URL",
            "31:11: kind = \"athena\" reads `regions` through the table's region partition: set `region_partition` too",
            "37:26: `delivery_delay_minutes` does not apply to kind = \"lookup-events\"",
            "38:20: `region_partition` does not apply to kind = \"lookup-events\"",
            "42:8: unknown variant `lookup-everything`",
        ];
        assert_eq!(found.len(), expect.len(), "{found:#?}");
        for (found, expected) in found.iter().zip(expect) {
            assert!(
                found.starts_with(expected),
                "{found} should start with {expected}"
            );
        }
    }

    #[test]
    fn wrong_types_unknown_tables_and_bad_values_are_each_located() {
        let text = r#"[aws]
max_attempts = "three"
endpoint_url = "ftp://x"

[[aws.accounts]]
name = "staging"

[status]
listen = "0.0.0.0:9187"

[targets]
arn_patterns = ["role/app-*", "arn:aws:iam::*:role/ok-*"]

[jobs.mystery]
cron = "0 * * * * *"

[jobs.discover]
cron = "0 * * * * *"
jitter = "5 parsecs"

[bogus]
x = 1
"#;
        let found = errors(text);
        let lines: Vec<&str> = found
            .iter()
            .map(|f| f.split(": ").next().unwrap_or_default())
            .collect();
        // toml locates an error inside an array at the array itself.
        assert_eq!(
            lines,
            ["2:16", "3:16", "9:10", "12:16", "14:7", "19:10", "21:2"],
            "{found:#?}"
        );
        assert!(
            found[0].contains("aws.max_attempts: invalid type"),
            "{}",
            found[0]
        );
        assert!(found[2].contains("not a loopback address"), "{}", found[2]);
        assert!(
            found[3].contains("ARN pattern `role/app-*` must start with `arn:`"),
            "{}",
            found[3]
        );
        assert!(found[4].contains("unknown field `mystery`"), "{}", found[4]);
        assert!(found[5].contains("invalid duration"), "{}", found[5]);
        assert!(found[6].contains("unknown field `bogus`"), "{}", found[6]);
    }

    #[test]
    fn cross_field_checks_are_located_by_key_path() {
        let text = r#"[aws]

[[aws.accounts]]
name = "staging"
external_id = "x"

[[aws.accounts]]
name = "staging"

[trial]
staging_accounts = ["staging", "prod"]
"#;
        let found = errors(text);
        assert_eq!(
            found,
            [
                "1:1: no target selector: set [targets] arn_patterns and/or tags; whittle never manages every role by default",
                "5:15: `external_id` needs a `role_arn` to assume",
                "8:8: account name `staging` is used twice; names must be unique",
                "11:32: staging account `prod` is not one of the [[aws.accounts]] names",
            ]
        );
    }

    #[test]
    fn missing_accounts_is_reported() {
        let found = errors("[targets]\ntags = { team = \"*\" }\n");
        assert_eq!(
            found,
            ["1:1: no account configured: add at least one [[aws.accounts]] with a `name`"]
        );
    }

    #[test]
    fn syntax_errors_are_located() {
        let found = errors("[aws]\nregion = \"us-east-1\nfoo = 1\n");
        assert!(!found.is_empty());
        assert!(found[0].starts_with("2:"), "{found:?}");
    }

    #[test]
    fn missing_required_cron_is_reported_not_looped() {
        let found = errors(&format!("{MINIMAL}\n[jobs.discover]\njitter = \"5s\"\n"));
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].contains("missing field `cron`"), "{found:?}");
    }

    #[test]
    fn shipped_example_is_valid() {
        let text = include_str!("../../../../config.toml");
        // Its playbook paths are relative to the repository root, where it lives.
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        if let Err(found) = parse_in(text, &root) {
            panic!("config.toml is invalid: {found:#?}");
        }
    }

    fn repo_root() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
    }

    /// The diagnostics for `MINIMAL` followed by `tail`, with paths relative to `base`.
    fn errors_after_minimal(tail: &str, base: &Path) -> Vec<String> {
        match parse_in(&format!("{MINIMAL}\n{tail}"), base) {
            Ok(_) => Vec::new(),
            Err(diagnostics) => diagnostics.iter().map(ToString::to_string).collect(),
        }
    }

    /// Each case: what follows `MINIMAL` (its first line is line 12), and the start of each
    /// expected diagnostic.
    fn check_cases(cases: &[(&str, &[&str])], base: &Path) {
        for (tail, expected) in cases {
            let found = errors_after_minimal(tail, base);
            assert_eq!(found.len(), expected.len(), "{tail}: {found:#?}");
            for (found, expected) in found.iter().zip(expected.iter()) {
                assert!(
                    found.starts_with(expected),
                    "{tail}: `{found}` should start with `{expected}`"
                );
            }
        }
    }

    const ROTATION: &str = r#"[[rotation]]
name = "key"
account = "staging"
store = "secrets-manager"
secret = "demo/key"
playbook = "playbooks/rotate-random.toml"
cron = "0 0 3 * * 1"
"#;

    #[test]
    fn schedules_that_never_work_are_located() {
        let weekly = |jitter: &str| format!("{ROTATION}jitter = \"{jitter}\"\n");
        let (week, six_days) = (weekly("7days"), weekly("6days"));
        let cases: &[(&str, &[&str])] = &[
            (
                "[jobs.discover]\ncron = \"0 0 0 31 2 *\"\n",
                &[
                    "13:8: cron expression `0 0 0 31 2 *` never fires: it has no occurrence in the next 10 years",
                ],
            ),
            (
                "[jobs.discover]\ncron = \"0 0 0 1 1 * 2020\"\n",
                &["13:8: cron expression `0 0 0 1 1 * 2020` never fires"],
            ),
            // A leap day comes at most 8 years apart: rare, but it fires.
            ("[jobs.discover]\ncron = \"0 0 0 29 2 *\"\n", &[]),
            (
                "[jobs.discover]\ncron = \"0 */5 * * * *\"\njitter = \"5m\"\n",
                &[
                    "14:10: jitter of 5m is not shorter than the period of `0 */5 * * * *` (5m between runs)",
                ],
            ),
            // The shortest gap counts: 00:00 and 01:00 are an hour apart.
            (
                "[jobs.mine]\ncron = \"0 0 0,1 * * *\"\njitter = \"2h\"\n",
                &[
                    "14:10: jitter of 2h is not shorter than the period of `0 0 0,1 * * *` (1h between runs)",
                ],
            ),
            (
                "[jobs.mine]\ncron = \"0 0 * * * *\"\njitter = \"59m\"\n",
                &[],
            ),
            (
                "[jobs.discover]\ncron = \"0 0 * * * *\"\njitter = \"18446744073709551615s\"\n",
                &["14:10: invalid duration `18446744073709551615s`: longer than 10 years"],
            ),
            (
                "[jobs.discover]\ncron = \"0 0 * * * *\"\njitter = \"11years\"\n",
                &["14:10: invalid duration `11years`: longer than 10 years"],
            ),
            (
                &week,
                &[
                    "19:10: jitter of 7days is not shorter than the period of `0 0 3 * * 1` (7days between runs)",
                ],
            ),
            (&six_days, &[]),
            (
                &format!("{ROTATION}jitter = \"18446744073709551615s\"\n"),
                &["19:10: invalid duration `18446744073709551615s`: longer than 10 years"],
            ),
        ];
        check_cases(cases, &repo_root());
    }

    #[cfg(unix)]
    #[test]
    fn playbooks_that_are_not_small_regular_files_are_located() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let big = dir.path().join("big.toml");
        std::fs::write(&big, vec![b'#'; 2 << 20]).expect("write");
        let fifo = dir.path().join("fifo.toml");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .expect("mkfifo runs");
        assert!(made.success());
        let (big, fifo) = (big.display().to_string(), fifo.display().to_string());
        let trial = |path: &str| format!("[trial]\nplaybook = \"{path}\"\n");
        let rotation = |path: &str| ROTATION.replace("playbooks/rotate-random.toml", path);
        let cases: Vec<(String, Vec<String>)> = vec![
            (
                trial("/dev/zero"),
                vec!["13:12: trial playbook /dev/zero: not a regular file".to_owned()],
            ),
            (
                trial(&fifo),
                vec![format!("13:12: trial playbook {fifo}: not a regular file")],
            ),
            (
                trial(&big),
                vec![format!("13:12: trial playbook {big}: larger than 1 MiB")],
            ),
            (
                rotation("/dev/zero"),
                vec!["17:12: playbook /dev/zero: not a regular file".to_owned()],
            ),
            (
                rotation(&fifo),
                vec![format!("17:12: playbook {fifo}: not a regular file")],
            ),
            (
                rotation(&big),
                vec![format!("17:12: playbook {big}: larger than 1 MiB")],
            ),
        ];
        for (tail, expected) in &cases {
            let expected: Vec<&str> = expected.iter().map(String::as_str).collect();
            check_cases(&[(tail, &expected)], &repo_root());
        }
    }

    #[cfg(unix)]
    #[test]
    fn a_configuration_path_that_never_ends_is_refused() {
        let error = load(Path::new("/dev/zero")).err().map(|e| e.to_string());
        assert_eq!(
            error.as_deref(),
            Some(
                "/dev/zero: cannot read the configuration: larger than 16 MiB, so not a configuration file; pass --config PATH or set WHITTLE_CONFIG"
            )
        );
    }

    #[test]
    fn every_unknown_key_is_reported_and_one_table_takes_one_round() {
        // MINIMAL ends inside [targets]; its keys go on from line 11.
        let mut text = MINIMAL.to_owned();
        for i in 0..16_000 {
            text.push_str(&format!("k{i:05} = 1\n"));
        }
        let (result, rounds) = parse_counting_rounds(&text, Path::new("."));
        let found = result.err().unwrap_or_default();
        assert_eq!(found.len(), 16_000, "{:#?}", &found[..found.len().min(5)]);
        for (i, d) in found.iter().enumerate() {
            assert_eq!((d.line, d.column), (11 + i, 1), "{d}");
            assert!(
                d.message
                    .starts_with(&format!("unknown field `k{i:05}`, expected one of")),
                "{d}"
            );
        }
        // Deserializing once per unknown key made this quadratic.
        assert!(rounds <= 3, "{rounds} rounds");
    }

    #[test]
    fn unknown_keys_in_several_tables_are_each_located() {
        let text = r#"bogus = 1
[aws]
colour = "blue"
shade = "dark"

[[aws.accounts]]
name = "staging"
nickname = "s"
alias = "t"

[[aws.accounts]]
name = "prod"
nickname = "p"

[targets]
arn_patterns = ["arn:aws:iam::*:role/app-*"]

[jobs.discover]
cron = "0 * * * * *"
every = "5m"

[jobs.sometimes]
cron = "0 * * * * *"

[jobs.check-aws]
cron = "0 * * * * *"
"#;
        let (result, rounds) = parse_counting_rounds(text, Path::new("."));
        let found: Vec<String> = result
            .err()
            .unwrap_or_default()
            .iter()
            .map(ToString::to_string)
            .collect();
        let starts: Vec<&str> = found
            .iter()
            .map(|f| f.split(", expected").next().unwrap_or_default())
            .collect();
        assert_eq!(
            starts,
            [
                "1:1: unknown field `bogus`",
                "3:1: unknown field `colour`",
                "4:1: unknown field `shade`",
                "8:1: unknown field `nickname`",
                "9:1: unknown field `alias`",
                "13:1: unknown field `nickname`",
                "20:1: unknown field `every`",
                "22:7: unknown field `sometimes`",
            ],
            "{found:#?}"
        );
        // One round per table with unknown keys, and a last one that succeeds.
        assert!(rounds <= 7, "{rounds} rounds");
    }
}
