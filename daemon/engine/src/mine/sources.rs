//! The sources: local trail directories, S3 trail buckets, LookupEvents, Athena, and IAM
//! last-accessed data.

use std::borrow::Cow;
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use tracing::info;
use whittle_planner::mapping::Mapper;
use whittle_planner::trail::{Event, PrincipalKind, Record, format_time, parse_time};
use whittle_planner::usage::Aggregate;
use whittle_state::WriteBatch;

use super::files::not_regular;
use super::{Blob, Progress, Run, SourceReport, decode_parallel};
use crate::config::SourceConfig;
use crate::ports::{AthenaQuery, AwsErrorKind, Ports};
use crate::records::{LastAccessed, TimeCheckpoint};

/// How far back LookupEvents re-reads past its checkpoint: CloudTrail delivers an event to
/// LookupEvents up to about 15 minutes after it happened (AWS: "typically within 15
/// minutes"), so a window ending now may still gain events. Ids seen in the overlap are
/// remembered, so an event is never counted twice.
const LOOKUP_OVERLAP_MS: i64 = 15 * 60 * 1000;
/// LookupEvents only holds the last 90 days.
const LOOKUP_HORIZON_MS: i64 = 90 * 86_400_000;

/// Whether a path or key is a CloudTrail log file. Digest and Insights files live beside
/// the logs under their own folders and are not API records.
fn is_log_file(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    !lower.contains("cloudtrail-digest")
        && !lower.contains("cloudtrail-insight")
        && (lower.ends_with(".json.gz") || lower.ends_with(".json") || lower.ends_with(".gz"))
}

/// What listing a trail directory found.
#[derive(Debug, Default)]
struct Listing {
    /// Every log file under the root (or the root itself), as (location relative to the
    /// root, path), sorted so runs are deterministic.
    files: Vec<(String, PathBuf)>,
    /// What was skipped, located: sub-directories that cannot be listed, and entries named
    /// like log files that are not regular files.
    warnings: Vec<String>,
}

/// Lists the log files under `root`. Hidden entries are skipped. Only regular files are
/// listed: a FIFO would block the reader and a device (`/dev/zero`) never ends. A symlink
/// is followed to what it points at and listed only when that is a regular file; a
/// symlinked directory is not walked. A sub-directory that cannot be listed is skipped with
/// a warning; only a root that cannot be read fails the listing.
fn list_dir(root: &Path) -> anyhow::Result<Listing> {
    let meta = std::fs::metadata(root).map_err(|e| anyhow::anyhow!("{}: {e}", root.display()))?;
    if meta.is_file() {
        let name = root
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        return Ok(Listing {
            files: vec![(name, root.to_path_buf())],
            warnings: Vec::new(),
        });
    }
    if !meta.is_dir() {
        anyhow::bail!(
            "{}: {}; a trail source is a directory or a log file",
            root.display(),
            not_regular(meta.file_type())
        );
    }
    let mut listing = Listing::default();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if dir == root => anyhow::bail!("{}: {e}", dir.display()),
            Err(e) => {
                listing.warnings.push(format!(
                    "{}: cannot list the directory ({e}); skipped",
                    dir.display()
                ));
                continue;
            }
        };
        for entry in entries {
            let entry = match entry {
                Ok(entry) => entry,
                Err(e) => {
                    listing.warnings.push(format!(
                        "{}: cannot list the directory to its end ({e}); the rest is skipped",
                        dir.display()
                    ));
                    break;
                }
            };
            let name = entry.file_name();
            if name.to_string_lossy().starts_with('.') {
                continue;
            }
            let path = entry.path();
            let kind = match entry.file_type() {
                Ok(kind) => kind,
                Err(e) => {
                    listing
                        .warnings
                        .push(format!("{}: cannot read ({e}); skipped", path.display()));
                    continue;
                }
            };
            if kind.is_dir() {
                stack.push(path);
                continue;
            }
            if !is_log_file(&path.to_string_lossy()) {
                continue;
            }
            let kind = if kind.is_symlink() {
                match std::fs::metadata(&path) {
                    Ok(meta) => meta.file_type(),
                    Err(e) => {
                        listing
                            .warnings
                            .push(format!("{}: cannot read ({e}); skipped", path.display()));
                        continue;
                    }
                }
            } else {
                kind
            };
            if !kind.is_file() {
                listing.warnings.push(format!(
                    "{}: {}; skipped",
                    path.display(),
                    not_regular(kind)
                ));
                continue;
            }
            let location = path
                .strip_prefix(root)
                .unwrap_or(&path)
                .to_string_lossy()
                .into_owned();
            listing.files.push((location, path));
        }
    }
    listing.files.sort();
    Ok(listing)
}

pub(super) async fn directory<P: Ports>(
    run: &Run<'_, P>,
    source: &SourceConfig,
    report: &mut SourceReport,
) -> anyhow::Result<()> {
    let root = source
        .path
        .clone()
        .ok_or_else(|| anyhow::anyhow!("source `{}` has no `path`", source.name))?;
    let listing = tokio::task::block_in_place(|| list_dir(&root))?;
    for warning in listing.warnings {
        report.stats.warn(warning);
    }
    let (new, progress) = unmined(run, &source.name, listing.files, report)?;
    for chunk in new.chunks(run.ctx.config.mining.chunk_files) {
        if run.cancel.is_cancelled() {
            break;
        }
        let next_index = AtomicUsize::new(0);
        let next = || {
            let i = next_index.fetch_add(1, Ordering::Relaxed);
            chunk.get(i).map(|(location, path)| Blob::Path {
                location: location.clone(),
                path: path.clone(),
            })
        };
        let catalog = run.catalog()?;
        let decoded = tokio::task::block_in_place(|| {
            decode_parallel(run.workers, &next, &run.decode, catalog, &progress)
        });
        commit_files(run, &source.name, decoded, report)?;
    }
    Ok(())
}

/// The candidates `(location, item)` that `source` has not mined yet, counting the others in
/// `report`, and a progress display sized for them.
fn unmined<T, P: Ports>(
    run: &Run<'_, P>,
    source: &str,
    candidates: impl IntoIterator<Item = (String, T)>,
    report: &mut SourceReport,
) -> anyhow::Result<(Vec<(String, T)>, Progress)> {
    let mut mined = super::store::MinedFiles::new(&run.ctx.state, source);
    let mut new = Vec::new();
    for (location, item) in candidates {
        if mined.contains(&location)? {
            report.already_mined += 1;
        } else {
            new.push((location, item));
        }
    }
    info!(
        source,
        new = new.len(),
        already_mined = report.already_mined,
        "Listed trail files"
    );
    let progress = Progress::new(run.progress_bar(new.len() as u64, source));
    Ok((new, progress))
}

/// Commits a chunk's usage with the checkpoint of every file it read.
fn commit_files<P: Ports>(
    run: &Run<'_, P>,
    source: &str,
    decoded: super::files::Decoded,
    report: &mut SourceReport,
) -> anyhow::Result<()> {
    let mut batch = WriteBatch::new();
    super::store::checkpoint_files(
        &run.ctx.state,
        decoded
            .done
            .iter()
            .map(|(location, size)| (source, location.as_str(), *size)),
        &mut batch,
    )?;
    report.new_inputs += decoded.done.len() as u64;
    let stats = run.commit(decoded.aggregate, batch)?;
    report.stats.merge(&stats);
    Ok(())
}

pub(super) async fn s3<P: Ports>(
    run: &Run<'_, P>,
    source: &SourceConfig,
    report: &mut SourceReport,
) -> anyhow::Result<()> {
    let (Some(account), Some(bucket)) = (&source.account, &source.bucket) else {
        anyhow::bail!("source `{}` needs `account` and `bucket`", source.name);
    };
    // CloudTrail writes under `[prefix/]AWSLogs/[o-org/]ACCOUNT/CloudTrail/REGION/YYYY/MM/DD/`.
    let list_prefix = match source.prefix.as_deref().map(|p| p.trim_matches('/')) {
        Some(p) if !p.is_empty() => format!("{p}/AWSLogs/"),
        _ => "AWSLogs/".to_owned(),
    };
    let aws = &run.ctx.ports;
    let objects = aws.list_objects(account, bucket, &list_prefix).await?;
    let logs = objects
        .into_iter()
        .filter(|key| key.contains("/CloudTrail/") && is_log_file(key))
        .map(|key| (format!("s3://{bucket}/{key}"), key));
    let (new, progress) = unmined(run, &source.name, logs, report)?;
    if new.is_empty() {
        return Ok(());
    }
    let downloads = crate::trail::downloads_dir(run.ctx.state.dir())?;
    for chunk in new.chunks(run.ctx.config.mining.chunk_files) {
        if run.cancel.is_cancelled() {
            break;
        }
        // Downloads run as async tasks, at most `FETCHERS` at once, each streaming its object
        // into a file of `downloads/`, and hand the files to the decode threads through a
        // bounded channel: memory holds a chunk of each download, never an object, and the
        // decode threads read the files as they read local ones (bounded, streamed).
        const FETCHERS: usize = 8;
        let (tx, rx) = tokio::sync::mpsc::channel::<Blob>(run.workers * 2);
        let queue = std::sync::Arc::new(Mutex::new(chunk.to_vec()));
        let failures = std::sync::Arc::new(Mutex::new(Vec::<String>::new()));
        let mut fetchers = tokio::task::JoinSet::new();
        for _ in 0..FETCHERS {
            let (tx, queue, failures) = (tx.clone(), queue.clone(), failures.clone());
            let downloads = downloads.clone();
            let (aws, account, bucket) =
                (std::sync::Arc::clone(aws), account.clone(), bucket.clone());
            fetchers.spawn(async move {
                loop {
                    let key = match queue.lock() {
                        Ok(mut q) => q.pop(),
                        Err(_) => None,
                    };
                    let Some((location, key)) = key else { break };
                    let fetched =
                        match crate::trail::download(&*aws, &account, &bucket, &key, &downloads)
                            .await
                        {
                            Ok(file) => tx.send(Blob::Download { location, file }).await.is_ok(),
                            Err(error) => {
                                if let Ok(mut f) = failures.lock() {
                                    f.push(error.to_string());
                                }
                                true
                            }
                        };
                    if !fetched {
                        break;
                    }
                }
            });
        }
        drop(tx);
        let rx = Mutex::new(rx);
        let next = || rx.lock().ok().and_then(|mut rx| rx.blocking_recv());
        let catalog = run.catalog()?;
        let decoded = tokio::task::block_in_place(|| {
            decode_parallel(run.workers, &next, &run.decode, catalog, &progress)
        });
        while fetchers.join_next().await.is_some() {}
        // A download that failed is not checkpointed: the next run tries it again.
        for failure in failures.lock().map(|f| f.clone()).unwrap_or_default() {
            report.stats.bad_files += 1;
            report.stats.warn(failure);
        }
        commit_files(run, &source.name, decoded, report)?;
    }
    Ok(())
}

pub(super) async fn lookup_events<P: Ports>(
    run: &Run<'_, P>,
    source: &SourceConfig,
    report: &mut SourceReport,
) -> anyhow::Result<()> {
    let Some(account) = &source.account else {
        anyhow::bail!("source `{}` needs `account`", source.name);
    };
    let regions = if source.regions.is_empty() {
        vec![run.ctx.config.aws.region.clone()]
    } else {
        source.regions.clone()
    };
    let checkpoints = run.ctx.state.tree::<TimeCheckpoint>()?;
    let mut failures = Vec::new();
    for region in &regions {
        if run.cancel.is_cancelled() {
            break;
        }
        let key = format!("{}/{account}/{region}", source.name);
        let checkpoint = checkpoints.get(&key)?;
        let floor = run.cutoff_ms.max(run.now_ms - LOOKUP_HORIZON_MS);
        let start = checkpoint
            .as_ref()
            .map_or(floor, |c| (c.until_ms - LOOKUP_OVERLAP_MS).max(floor));
        let end = run.now_ms;
        let seen: HashSet<String> = checkpoint
            .map(|c| c.recent_ids.into_iter().collect())
            .unwrap_or_default();
        let mut aggregate = Aggregate::new();
        let mut mapper = Mapper::new(run.catalog()?);
        let mut recent = Vec::new();
        let mut token = None;
        let location = format!("lookup-events {account}/{region}");
        let mut index = 0u64;
        let finished = 'pages: loop {
            let cancelled = || run.cancel.is_cancelled();
            let page = crate::guard::paced(
                &*run.ctx.ports,
                &run.ctx.pace,
                (crate::guard::Quota::LookupEvents, account, region),
                &cancelled,
                || {
                    run.ctx
                        .ports
                        .lookup_events(account, region, start, end, token.clone())
                },
            )
            .await;
            let page = match page {
                Ok(page) => page,
                Err(error) if error.kind == AwsErrorKind::Throttled => {
                    if !run.cancel.is_cancelled() {
                        failures.push(format!(
                            "{region}: {}; the next run resumes from the checkpoint",
                            error.message
                        ));
                    }
                    break 'pages false;
                }
                Err(error) => return Err(error.into()),
            };
            report.new_inputs += 1;
            for text in &page.events {
                let record: Record<'_> = match serde_json::from_str(text) {
                    Ok(record) => record,
                    Err(e) => {
                        aggregate.stats.records += 1;
                        aggregate.stats.skip(
                            &location,
                            index,
                            &format!("record does not fit the CloudTrail shape: {e}"),
                        );
                        index += 1;
                        continue;
                    }
                };
                if let Ok(event) = record.event()
                    && let Some(id) = event.event_id.as_deref()
                {
                    if seen.contains(id) {
                        index += 1;
                        continue;
                    }
                    if event.time_ms >= end - LOOKUP_OVERLAP_MS {
                        recent.push(id.to_owned());
                    }
                }
                aggregate.add_record(&record, &mut mapper, run.cutoff_ms, &location, index);
                index += 1;
            }
            match page.next_token {
                Some(next) if !run.cancel.is_cancelled() => token = Some(next),
                Some(_) => break false,
                None => break true,
            }
        };
        if !finished {
            continue;
        }
        let mut batch = WriteBatch::new();
        batch.put::<TimeCheckpoint>(
            &key,
            &TimeCheckpoint {
                until_ms: end,
                recent_ids: recent,
            },
        )?;
        let stats = run.commit(aggregate, batch)?;
        report.stats.merge(&stats);
    }
    if !failures.is_empty() {
        for failure in &failures {
            report.stats.warn(failure.clone());
        }
        if failures.len() == regions.len() {
            anyhow::bail!("LookupEvents read no region: {}", failures.join("; "));
        }
    }
    Ok(())
}

/// The columns of the Athena query, in order.
const ATHENA_COLUMNS: [&str; 13] = [
    "principal_type",
    "principal",
    "session",
    "event_source",
    "event_name",
    "error_code",
    "denied_action",
    "day",
    "calls",
    "first_seen",
    "last_seen",
    "region",
    "account",
];

/// The aggregating query: one row per principal, session, operation, outcome and day. The
/// aggregation runs in Athena; whittle reads a few thousand rows, not the trail. `eventtime`
/// is ISO 8601 text in the CloudTrail table, so string comparison orders it.
fn athena_sql(source: &SourceConfig, start_ms: i64, end_ms: i64) -> anyhow::Result<String> {
    let quote = |what: &str, name: &str| -> anyhow::Result<String> {
        if name.is_empty() || name.contains('"') {
            anyhow::bail!(
                "source `{}`: {what} `{name}` is not a valid Athena identifier",
                source.name
            );
        }
        Ok(format!("\"{name}\""))
    };
    let database = quote("database", source.database.as_deref().unwrap_or_default())?;
    let table = quote("table", source.table.as_deref().unwrap_or_default())?;
    let (start, end) = (format_time(start_ms), format_time(end_ms));
    let partition = match &source.date_partition {
        Some(column) => format!(
            " AND {} >= '{}'",
            quote("date_partition", column)?,
            start[..10].replace('-', "/")
        ),
        None => String::new(),
    };
    Ok(format!(
        "SELECT useridentity.type AS principal_type, \
COALESCE(useridentity.sessioncontext.sessionissuer.arn, useridentity.arn) AS principal, \
CASE WHEN useridentity.type = 'AssumedRole' THEN element_at(split(useridentity.arn, '/'), -1) END AS session, \
eventsource AS event_source, eventname AS event_name, errorcode AS error_code, \
regexp_extract(errormessage, 'perform: ([A-Za-z0-9-]+:[A-Za-z0-9*]+)', 1) AS denied_action, \
substr(eventtime, 1, 10) AS day, count(*) AS calls, min(eventtime) AS first_seen, max(eventtime) AS last_seen, \
awsregion AS region, recipientaccountid AS account \
FROM {database}.{table} \
WHERE eventtime >= '{start}' AND eventtime < '{end}'{partition} \
GROUP BY 1, 2, 3, 4, 5, 6, 7, 8, 12, 13"
    ))
}

pub(super) async fn athena<P: Ports>(
    run: &Run<'_, P>,
    source: &SourceConfig,
    report: &mut SourceReport,
) -> anyhow::Result<()> {
    let (Some(account), Some(database), Some(output)) =
        (&source.account, &source.database, &source.output_location)
    else {
        anyhow::bail!(
            "source `{}` needs `account`, `database`, `table` and `output_location`",
            source.name
        );
    };
    let checkpoints = run.ctx.state.tree::<TimeCheckpoint>()?;
    let key = source.name.clone();
    let start = checkpoints
        .get(&key)?
        .map_or(run.cutoff_ms, |c| c.until_ms.max(run.cutoff_ms));
    let end = run.now_ms;
    let sql = athena_sql(source, start, end)?;
    let cancel = run.cancel.clone();
    let query = AthenaQuery {
        sql,
        database: database.clone(),
        workgroup: source.workgroup.clone(),
        output_location: output.clone(),
        columns: ATHENA_COLUMNS.iter().map(|c| (*c).to_owned()).collect(),
    };
    let rows = run
        .ctx
        .ports
        .athena_query(account, &query, &move || cancel.is_cancelled())
        .await?;
    let mut aggregate = Aggregate::new();
    let mut mapper = Mapper::new(run.catalog()?);
    let location = format!("athena {}", source.name);
    for (index, row) in rows.iter().enumerate() {
        report.new_inputs += 1;
        match athena_row(row) {
            Ok((event, count, last_ms)) => {
                aggregate.add_aggregated(event, count, last_ms, &mut mapper, run.cutoff_ms);
            }
            Err(reason) => {
                aggregate.stats.records += 1;
                aggregate.stats.skip(&location, index as u64, &reason);
            }
        }
    }
    let mut batch = WriteBatch::new();
    batch.put::<TimeCheckpoint>(
        &key,
        &TimeCheckpoint {
            until_ms: end,
            recent_ids: Vec::new(),
        },
    )?;
    let stats = run.commit(aggregate, batch)?;
    report.stats.merge(&stats);
    Ok(())
}

/// One result row as an event standing for `calls` calls.
fn athena_row(row: &[Option<String>]) -> Result<(Event<'_>, u64, i64), String> {
    let col = |i: usize| {
        row.get(i)
            .and_then(|v| v.as_deref())
            .filter(|v| !v.is_empty())
    };
    if row.len() != ATHENA_COLUMNS.len() {
        return Err(format!(
            "row has {} columns, expected {} ({})",
            row.len(),
            ATHENA_COLUMNS.len(),
            ATHENA_COLUMNS.join(", ")
        ));
    }
    let time = |i: usize| {
        col(i)
            .and_then(parse_time)
            .ok_or_else(|| format!("{} is not an ISO 8601 time", ATHENA_COLUMNS[i]))
    };
    let kind = PrincipalKind::of_identity_type(col(0).unwrap_or(""));
    let count = col(8)
        .and_then(|c| c.parse::<u64>().ok())
        .ok_or("calls is not a number")?;
    let event = Event {
        time_ms: time(9)?,
        source: Cow::Borrowed(col(3).ok_or("no event_source")?),
        name: Cow::Borrowed(col(4).ok_or("no event_name")?),
        region: col(11).map(Cow::Borrowed),
        account: col(12).map(Cow::Borrowed),
        kind,
        principal: col(1)
            .filter(|_| !matches!(kind, PrincipalKind::Service | PrincipalKind::Unknown))
            .map(Cow::Borrowed),
        session: col(2).map(Cow::Borrowed),
        event_id: None,
        error_code: col(5).map(Cow::Borrowed),
        // The query extracts the denied action; the aggregate reads it from a message.
        error_message: col(6).map(|a| Cow::Owned(format!("not authorized to perform: {a}"))),
    };
    Ok((event, count, time(10)?))
}

/// Refreshes IAM's last-accessed data for every target role of every account (from the
/// `discover` inventory, or listed now when there is none). Returns the roles refreshed and
/// the failures; a failure never fails the run.
pub(super) async fn last_accessed<P: Ports>(run: &Run<'_, P>) -> (usize, Vec<String>) {
    let mut done = 0;
    let mut errors = Vec::new();
    let aws = &run.ctx.ports;
    let tree = match run.ctx.state.tree::<LastAccessed>() {
        Ok(tree) => tree,
        Err(e) => return (0, vec![e.to_string()]),
    };
    for account in run.ctx.config.account_names() {
        let targets = match crate::targets::account_targets(run.ctx, account).await {
            Ok(targets) => targets,
            Err(error) => {
                errors.push(format!("{account}: {}", crate::one_line(&error)));
                continue;
            }
        };
        for role in targets {
            if run.cancel.is_cancelled() {
                return (done, errors);
            }
            match aws.last_accessed(account, &role).await {
                Ok(services) => {
                    let record = LastAccessed {
                        fetched_at: run.ctx.now(),
                        services,
                    };
                    if let Err(e) = tree
                        .put(&role, &record)
                        .and_then(|()| run.ctx.state.flush())
                    {
                        errors.push(format!("{role}: {e}"));
                    } else {
                        done += 1;
                    }
                }
                Err(error) => errors.push(format!("{role}: {error}")),
            }
        }
    }
    (done, errors)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_files_are_recognised_and_digests_skipped() {
        assert!(is_log_file(
            "AWSLogs/1/CloudTrail/us-east-1/2026/11/24/1_CloudTrail_us-east-1_20261124T1000Z_x.json.gz"
        ));
        assert!(is_log_file("loose.json"));
        assert!(!is_log_file(
            "AWSLogs/1/CloudTrail-Digest/us-east-1/2026/11/24/1_CloudTrail-Digest_x.json.gz"
        ));
        assert!(!is_log_file("notes.txt"));
    }

    /// Lists `root` on a thread, failing the test if it blocks: the locations found and the
    /// warnings.
    fn listed(root: &Path) -> (Vec<String>, Vec<String>) {
        let root = root.to_path_buf();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let listing = list_dir(&root).map(|listing| {
                let files = listing.files.into_iter().map(|(location, _)| location);
                (files.collect(), listing.warnings)
            });
            let _ = tx.send(listing.map_err(|e| e.to_string()));
        });
        rx.recv_timeout(std::time::Duration::from_secs(20))
            .expect("listing finished instead of blocking")
            .expect("the listing succeeds")
    }

    #[test]
    fn listing_skips_what_is_not_a_regular_file_and_unreadable_directories() {
        use std::os::unix::fs::{PermissionsExt, symlink};
        let tmp = tempfile::tempdir().expect("tempdir");
        let root = tmp.path().join("trail");
        let logs = root.join("AWSLogs/1/CloudTrail/us-east-1");
        std::fs::create_dir_all(&logs).expect("mkdir");
        std::fs::write(logs.join("good.json"), r#"{"Records":[]}"#).expect("write");
        let outside = tmp.path().join("outside.json");
        std::fs::write(&outside, r#"{"Records":[]}"#).expect("write");
        symlink(&outside, root.join("linked.json")).expect("symlink");
        symlink("/dev/zero", root.join("zero.json.gz")).expect("symlink");
        symlink(tmp.path().join("nowhere"), root.join("dangling.json")).expect("symlink");
        symlink(tmp.path(), root.join("dir-link.json")).expect("symlink");
        let made = std::process::Command::new("mkfifo")
            .arg(root.join("pipe.json"))
            .status()
            .expect("run mkfifo");
        assert!(made.success(), "mkfifo failed");
        // A FIFO or device that is not named like a log is not looked at, as before.
        std::process::Command::new("mkfifo")
            .arg(root.join("pipe.txt"))
            .status()
            .expect("run mkfifo");

        // An unreadable sub-directory. chmod 000 does not stop root (or a process with
        // CAP_DAC_READ_SEARCH), so a directory whose path is longer than PATH_MAX stands
        // for one too: opening it fails with ENAMETOOLONG whoever runs the test.
        let locked = root.join("locked");
        std::fs::create_dir(&locked).expect("mkdir");
        std::fs::write(locked.join("a.json"), r#"{"Records":[]}"#).expect("write");
        std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o000)).expect("chmod");
        let privileged = std::fs::read_dir(&locked).is_ok();
        // Twenty levels of 250-byte names, built in two halves (each under PATH_MAX) and
        // joined by a rename.
        let level = "d".repeat(250);
        let half = |base: PathBuf| (0..10).fold(base, |path, _| path.join(&level));
        let near = half(root.join("deep"));
        std::fs::create_dir_all(&near).expect("mkdir");
        let far = half(tmp.path().join("side"));
        std::fs::create_dir_all(&far).expect("mkdir");
        std::fs::write(far.join("far.json"), r#"{"Records":[]}"#).expect("write");
        std::fs::rename(tmp.path().join("side").join(&level), near.join(&level))
            .expect("join the halves");
        let (files, warnings) = listed(&root);
        std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o755))
            .expect("chmod back");

        let mut expected = vec![
            "AWSLogs/1/CloudTrail/us-east-1/good.json".to_owned(),
            "linked.json".to_owned(),
        ];
        if privileged {
            println!(
                "note: running with the privilege to read a chmod-000 directory (root?): \
                 its unreadability is checked with the over-long path only"
            );
            expected.push("locked/a.json".to_owned());
        }
        expected.sort();
        assert_eq!(files, expected, "{warnings:#?}");
        let warned = |name: &str, what: &str| {
            warnings
                .iter()
                .any(|w| w.contains(name) && w.contains(what))
        };
        assert!(
            warned("pipe.json", "not a regular file (a FIFO)"),
            "{warnings:#?}"
        );
        assert!(
            warned("zero.json.gz", "not a regular file (a character device)"),
            "{warnings:#?}"
        );
        assert!(
            warned("dir-link.json", "not a regular file (a directory)"),
            "{warnings:#?}"
        );
        assert!(warned("dangling.json", "cannot read"), "{warnings:#?}");
        assert!(warned(&level, "cannot list the directory"), "{warnings:#?}");
        assert!(!warned("pipe.txt", ""), "{warnings:#?}");
        if !privileged {
            assert!(
                warned("locked", "cannot list the directory"),
                "{warnings:#?}"
            );
        }
        assert_eq!(
            warnings.len(),
            if privileged { 5 } else { 6 },
            "{warnings:#?}"
        );
        // An unreadable root still fails the source.
        assert!(list_dir(&tmp.path().join("missing")).is_err());
    }

    #[test]
    fn athena_rows_become_events() {
        let row: Vec<Option<String>> = [
            "AssumedRole",
            "arn:aws:iam::1:role/app",
            "fn",
            "s3.amazonaws.com",
            "GetObject",
            "",
            "",
            "2026-11-20",
            "42",
            "2026-11-20T01:00:00Z",
            "2026-11-20T23:00:00Z",
            "us-east-1",
            "1",
        ]
        .iter()
        .map(|s| Some((*s).to_owned()))
        .collect();
        let (event, count, last) = athena_row(&row).expect("row");
        assert_eq!(count, 42);
        assert_eq!(event.principal.as_deref(), Some("arn:aws:iam::1:role/app"));
        assert_eq!(event.error_code, None);
        assert_eq!(last, parse_time("2026-11-20T23:00:00Z").expect("time"));
        assert!(athena_row(&row[..5]).is_err());
    }

    #[test]
    fn athena_sql_quotes_identifiers_and_bounds_time() {
        let mut source = SourceConfig::directory("a".to_owned(), PathBuf::new());
        source.database = Some("db".to_owned());
        source.table = Some("trail".to_owned());
        source.date_partition = Some("timestamp".to_owned());
        let sql = athena_sql(&source, 0, 86_400_000).expect("sql");
        assert!(sql.contains("FROM \"db\".\"trail\""), "{sql}");
        assert!(
            sql.contains(
                "eventtime >= '1970-01-01T00:00:00Z' AND eventtime < '1970-01-02T00:00:00Z'"
            ),
            "{sql}"
        );
        assert!(sql.contains("\"timestamp\" >= '1970/01/01'"), "{sql}");
        source.table = Some("x\" OR 1=1 --".to_owned());
        assert!(athena_sql(&source, 0, 1).is_err());
    }
}
