//! Loading with every error at once.
//!
//! serde stops at the first error, so [`parse`] works in rounds over toml's spanned document
//! tree: deserialize; on an error, record it with its span, remove the offending item from the
//! tree, and deserialize again. Spans always refer to the original text because the tree keeps
//! them, so every diagnostic is located in the file as the user wrote it. When deserializing
//! succeeds (possibly with defaults in place of removed items), the cross-field checks run
//! and locate their findings by key path in the same tree.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::Config;

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
    let (mut root, syntax_errors) = DeTable::parse_recoverable(text);
    let locate = |span: Option<Range<usize>>| position(text, span.map_or(0, |s| s.start));
    if !syntax_errors.is_empty() {
        // A syntax error leaves the tree unreliable; report the syntax alone.
        return Err(syntax_errors
            .iter()
            .map(|e| diagnostic(locate(e.span()), e.message()))
            .collect());
    }

    let mut diagnostics = Vec::new();
    // Key paths removed so far: a finding caused by a removal is not a mistake of its own.
    let mut removed: Vec<Vec<String>> = Vec::new();
    let config = loop {
        match Config::deserialize(toml::de::Deserializer::from(root.clone())) {
            Ok(config) => break Some(config),
            Err(error) => {
                let Some(span) = error.span() else {
                    // Nothing to trace it to: report it and stop with what is known.
                    diagnostics.push(diagnostic(locate(None), error.message()));
                    break None;
                };
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
    match config {
        Some(config) if diagnostics.is_empty() => Ok(config),
        _ => Err(diagnostics),
    }
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

/// 1-based line and column (in characters) of a byte offset.
fn position(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, before[line_start..].chars().count() + 1)
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
        if rotation.playbook.as_os_str().is_empty() {
            found.push((whole, "rotation without a `playbook` file".to_owned()));
        } else {
            match whittle_playbooks::rotation::load(&rotation.playbook_path(&config.base_dir)) {
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
        let present: [(&'static str, bool, &[crate::config::SourceKind]); 10] = [
            ("path", source.path.is_some(), &[Directory]),
            (
                "account",
                source.account.is_some(),
                &[S3, LookupEvents, Athena],
            ),
            ("bucket", source.bucket.is_some(), &[S3]),
            ("prefix", source.prefix.is_some(), &[S3]),
            ("regions", !source.regions.is_empty(), &[LookupEvents]),
            ("database", source.database.is_some(), &[Athena]),
            ("table", source.table.is_some(), &[Athena]),
            ("workgroup", source.workgroup.is_some(), &[Athena]),
            (
                "output_location",
                source.output_location.is_some(),
                &[Athena],
            ),
            ("date_partition", source.date_partition.is_some(), &[Athena]),
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
    if config.planner.max_roles_per_apply == 0 {
        found.push((
            vec![Key("planner"), Key("max_roles_per_apply")],
            "max_roles_per_apply of 0 would make `whittle apply` refuse every plan".to_owned(),
        ));
    }
    if let Some(path) = &config.trial.playbook
        && let Err(error) = whittle_playbooks::trial::load(&config.base_dir.join(path))
    {
        found.push((
            vec![Key("trial"), Key("playbook")],
            format!("trial playbook {error}"),
        ));
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
        if let Some(jitter) = job.jitter
            && jitter.0.is_zero()
        {
            found.push((
                vec![Key("jobs"), Seg::Name(name.to_string()), Key("jitter")],
                "jitter of zero: remove the key instead".to_owned(),
            ));
        }
    }
    found
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
            "34:8: unknown variant `lookup-everything`",
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
}
