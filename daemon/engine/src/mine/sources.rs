//! The sources: local trail directories, S3 trail buckets, LookupEvents, Athena, and IAM
//! last-accessed data.

use std::borrow::Cow;
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use tracing::info;
use whittle_planner::mapping::Mapper;
use whittle_planner::trail::{Event, Record, format_time, parse_time, principal_of_identity};
use whittle_planner::usage::Aggregate;
use whittle_state::WriteBatch;

use super::files::not_regular;
use super::{Blob, Progress, Run, SourceReport, decode_parallel};
use crate::config::SourceConfig;
use crate::ports::{AthenaQuery, AwsErrorKind, Ports};
use crate::records::{AthenaRun, LastAccessed, TimeCheckpoint};

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

/// The columns of the Athena query, in order. The identity is read as its three fields
/// (type, ARN, session issuer) so that the principal and session are derived by the same
/// code as for a log file record ([`principal_of_identity`]).
const ATHENA_COLUMNS: [&str; 15] = [
    "identity_type",
    "identity_arn",
    "session_issuer",
    "event_source",
    "event_name",
    "event_type",
    "error_code",
    "denied_action",
    "day",
    "calls",
    "first_seen",
    "last_seen",
    "sample_event_id",
    "region",
    "account",
];

/// How long CloudTrail may take to deliver a log file when the source does not say. AWS:
/// "CloudTrail typically delivers logs within an average of about 5 minutes of an API call.
/// This time is not guaranteed."; three times that leaves room for the slow tail.
const DEFAULT_DELIVERY_DELAY_MINUTES: u32 = 15;

/// The time window an Athena run reads: `[start_ms, end_ms)`, both on whole seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct AthenaWindow {
    start_ms: i64,
    end_ms: i64,
}

impl AthenaWindow {
    /// The window after `checkpoint` (the previous run's end), or from the look-back cutoff,
    /// to `delivery_delay` before now; `None` when it is empty. `eventtime` holds whole
    /// seconds, so both ends are whole seconds: the start is rounded up (an event in the
    /// second before the cutoff is older than the look-back), the end down, and the next
    /// run starts exactly where this one ended, so no event is read twice or skipped.
    fn new(
        checkpoint: Option<i64>,
        cutoff_ms: i64,
        now_ms: i64,
        delivery_delay_ms: i64,
    ) -> Option<AthenaWindow> {
        let start_ms = match checkpoint {
            // A checkpoint is the end of an earlier window: a whole second already.
            Some(until) if until >= cutoff_ms => until,
            _ => (cutoff_ms + 999).div_euclid(1000) * 1000,
        };
        let end_ms = (now_ms - delivery_delay_ms).div_euclid(1000) * 1000;
        (start_ms < end_ms).then_some(AthenaWindow { start_ms, end_ms })
    }

    /// The first and last UTC day the window touches, as the date partition spells them
    /// (`yyyy/MM/dd`, the format of CloudTrail's key layout and AWS's projection DDL).
    fn partitions(&self) -> (String, String) {
        let day = |ms: i64| format_time(ms)[..10].replace('-', "/");
        (day(self.start_ms), day(self.end_ms - 1))
    }
}

/// The aggregating query: one row per identity, operation, outcome and day, with the count,
/// first and last time and the smallest event id (the sample a file run keeps). The
/// aggregation runs in Athena; whittle reads a few thousand rows, not the trail.
/// `eventtime` is ISO 8601 text with whole seconds (`2026-11-20T10:00:00Z`) in CloudTrail's
/// table, so comparing it as a string with bounds in the same form orders it exactly. The
/// date (and region) partition predicates let Athena read only the window's partitions:
/// with partition projection it lists only the locations of the values they allow.
fn athena_sql(source: &SourceConfig, window: AthenaWindow) -> anyhow::Result<String> {
    let quote = |what: &str, name: &str| -> anyhow::Result<String> {
        if name.is_empty() || name.contains('"') {
            anyhow::bail!(
                "source `{}`: {what} `{name}` is not a valid Athena identifier",
                source.name
            );
        }
        Ok(format!("\"{name}\""))
    };
    let literal = |what: &str, value: &str| -> anyhow::Result<String> {
        if value.contains('\'') {
            anyhow::bail!(
                "source `{}`: {what} `{value}` contains a quote",
                source.name
            );
        }
        Ok(format!("'{value}'"))
    };
    let database = quote("database", source.database.as_deref().unwrap_or_default())?;
    let table = quote("table", source.table.as_deref().unwrap_or_default())?;
    let (start, end) = (format_time(window.start_ms), format_time(window.end_ms));
    let mut partitions = String::new();
    if let Some(column) = &source.date_partition {
        let (first, last) = window.partitions();
        let column = quote("date_partition", column)?;
        partitions.push_str(&format!(
            " AND {column} >= '{first}' AND {column} <= '{last}'"
        ));
    }
    if let Some(column) = &source.region_partition
        && !source.regions.is_empty()
    {
        let regions = source
            .regions
            .iter()
            .map(|r| literal("region", r))
            .collect::<anyhow::Result<Vec<_>>>()?;
        partitions.push_str(&format!(
            " AND {} IN ({})",
            quote("region_partition", column)?,
            regions.join(", ")
        ));
    }
    Ok(format!(
        "SELECT useridentity.type AS identity_type, useridentity.arn AS identity_arn, \
useridentity.sessioncontext.sessionissuer.arn AS session_issuer, \
eventsource AS event_source, eventname AS event_name, eventtype AS event_type, errorcode AS error_code, \
regexp_extract(errormessage, 'perform: ([A-Za-z0-9_*:-]+)', 1) AS denied_action, \
substr(eventtime, 1, 10) AS day, count(*) AS calls, min(eventtime) AS first_seen, max(eventtime) AS last_seen, \
min(eventid) AS sample_event_id, awsregion AS region, \
COALESCE(recipientaccountid, useridentity.accountid) AS account \
FROM {database}.{table} \
WHERE eventtime >= '{start}' AND eventtime < '{end}'{partitions} \
GROUP BY 1, 2, 3, 4, 5, 6, 7, 8, 9, 14, 15"
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
    let delay_ms = i64::from(
        source
            .delivery_delay_minutes
            .unwrap_or(DEFAULT_DELIVERY_DELAY_MINUTES),
    ) * 60_000;
    let checkpoint = checkpoints.get(&key)?.map(|c| c.until_ms);
    let Some(window) = AthenaWindow::new(checkpoint, run.cutoff_ms, run.now_ms, delay_ms) else {
        info!(source = %source.name, "Nothing new to read since the last run");
        return Ok(());
    };
    let sql = athena_sql(source, window)?;
    let cancel = run.cancel.clone();
    let query = AthenaQuery {
        sql,
        database: database.clone(),
        workgroup: source.workgroup.clone(),
        output_location: output.clone(),
        columns: ATHENA_COLUMNS.iter().map(|c| (*c).to_owned()).collect(),
    };
    // A failed query (a wrong table or column, a denial) returns here, before anything is
    // written: the usage store and the checkpoint stay as they were.
    let result = run
        .ctx
        .ports
        .athena_query(account, &query, &move || cancel.is_cancelled())
        .await?;
    report.bytes_scanned = Some(result.bytes_scanned);
    let mut aggregate = Aggregate::new();
    let mut mapper = Mapper::new(run.catalog()?);
    let location = format!("athena {}", source.name);
    for (index, row) in result.rows.iter().enumerate() {
        report.new_inputs += 1;
        match athena_row(row) {
            Ok(row) => aggregate.add_aggregated(
                row.event,
                row.event_type,
                row.count,
                row.last_ms,
                &mut mapper,
                run.cutoff_ms,
            ),
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
            until_ms: window.end_ms,
            recent_ids: Vec::new(),
        },
    )?;
    batch.put::<AthenaRun>(
        &key,
        &AthenaRun {
            at: run.ctx.now(),
            window_start_ms: window.start_ms,
            window_end_ms: window.end_ms,
            partitions: source.date_partition.as_ref().map(|_| window.partitions()),
            bytes_scanned: result.bytes_scanned,
            rows: result.rows.len() as u64,
        },
    )?;
    let stats = run.commit(aggregate, batch)?;
    report.stats.merge(&stats);
    info!(
        source = %source.name,
        rows = result.rows.len(),
        bytes_scanned = result.bytes_scanned,
        "Athena query read"
    );
    Ok(())
}

/// One result row: an event standing for `count` calls between its time and `last_ms`.
struct AthenaRow<'r> {
    event: Event<'r>,
    event_type: Option<&'r str>,
    count: u64,
    last_ms: i64,
}

fn athena_row(row: &[Option<String>]) -> Result<AthenaRow<'_>, String> {
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
    let (kind, principal, session) = principal_of_identity(col(0).unwrap_or(""), col(1), col(2));
    let count = col(9)
        .and_then(|c| c.parse::<u64>().ok())
        .ok_or("calls is not a number")?;
    let event = Event {
        time_ms: time(10)?,
        source: Cow::Borrowed(col(3).ok_or("no event_source")?),
        name: Cow::Borrowed(col(4).ok_or("no event_name")?),
        region: col(13).map(Cow::Borrowed),
        account: col(14).map(Cow::Borrowed),
        kind,
        principal,
        session,
        event_id: col(12).map(Cow::Borrowed),
        error_code: col(6).map(Cow::Borrowed),
        // The query extracts the denied action; the aggregate reads it from a message.
        error_message: col(7).map(|a| Cow::Owned(format!("not authorized to perform: {a}"))),
    };
    Ok(AthenaRow {
        event,
        event_type: col(5),
        count,
        last_ms: time(11)?,
    })
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
    fn athena_rows_become_events_with_the_file_path_principal() {
        let row = |identity: [&str; 3]| -> Vec<Option<String>> {
            identity
                .iter()
                .copied()
                .chain([
                    "s3.amazonaws.com",
                    "GetObject",
                    "AwsApiCall",
                    "AccessDenied",
                    "s3:GetObject",
                    "2026-11-20",
                    "42",
                    "2026-11-20T01:00:00Z",
                    "2026-11-20T23:00:00Z",
                    "e-1",
                    "us-east-1",
                    "1",
                ])
                .map(|s| (!s.is_empty()).then(|| s.to_owned()))
                .collect()
        };
        let issued = row([
            "AssumedRole",
            "arn:aws:sts::1:assumed-role/app/fn",
            "arn:aws:iam::1:role/path/app",
        ]);
        let parsed = athena_row(&issued).expect("row");
        assert_eq!(parsed.count, 42);
        assert_eq!(
            parsed.event.principal.as_deref(),
            Some("arn:aws:iam::1:role/path/app")
        );
        assert_eq!(parsed.event.session.as_deref(), Some("fn"));
        assert_eq!(parsed.event.event_id.as_deref(), Some("e-1"));
        assert_eq!(parsed.event_type, Some("AwsApiCall"));
        assert_eq!(
            parsed.event.error_message.as_deref(),
            Some("not authorized to perform: s3:GetObject")
        );
        assert_eq!(
            parsed.last_ms,
            parse_time("2026-11-20T23:00:00Z").expect("time")
        );
        // Without a session issuer the role comes from the session ARN, as for a log record.
        let bare = row(["AssumedRole", "arn:aws:sts::1:assumed-role/app/fn", ""]);
        assert_eq!(
            athena_row(&bare).expect("row").event.principal.as_deref(),
            Some("arn:aws:iam::1:role/app")
        );
        let service = row(["AWSService", "", ""]);
        assert_eq!(athena_row(&service).expect("row").event.principal, None);
        assert!(athena_row(&issued[..5]).is_err());
    }

    const DAY: i64 = 86_400_000;
    const MINUTE: i64 = 60_000;

    #[test]
    fn athena_windows_follow_each_other_exactly_and_lag_delivery() {
        let day0 = 20_000 * DAY;
        let delay = 15 * MINUTE;
        // First run: from the look-back cutoff (rounded up to a second) to 15 min ago.
        let first = AthenaWindow::new(None, day0 - 10 * DAY + 1, day0 + 10 * 60 * MINUTE, delay)
            .expect("window");
        assert_eq!(first.start_ms, day0 - 10 * DAY + 1000);
        assert_eq!(first.end_ms, day0 + 9 * 60 * MINUTE + 45 * MINUTE);
        // The next run starts exactly where the first ended; an end in the middle of a second
        // is rounded down, so the next run reads that second.
        let second = AthenaWindow::new(
            Some(first.end_ms),
            day0 - 9 * DAY,
            day0 + DAY + 10 * MINUTE + 500,
            delay,
        )
        .expect("window");
        assert_eq!(second.start_ms, first.end_ms);
        assert_eq!(second.end_ms, day0 + DAY - 5 * MINUTE);
        // It ends before midnight: only day0's partition.
        let day = |ms: i64| format_time(ms)[..10].replace('-', "/");
        assert_eq!(second.partitions(), (day(day0), day(day0)));
        let third = AthenaWindow::new(
            Some(second.end_ms),
            day0 - 9 * DAY,
            day0 + DAY + 20 * MINUTE,
            delay,
        )
        .expect("window");
        assert_eq!(third.partitions(), (day(day0), day(day0 + DAY)));
        // A window ending exactly at midnight does not name the next day.
        let midnight =
            AthenaWindow::new(Some(second.end_ms), 0, day0 + DAY + delay, delay).expect("window");
        assert_eq!(midnight.partitions(), (day(day0), day(day0)));
        // Nothing new within the same second, and a checkpoint older than the look-back
        // starts at the cutoff.
        assert_eq!(
            AthenaWindow::new(Some(third.end_ms), 0, third.end_ms + delay + 999, delay),
            None
        );
        let aged =
            AthenaWindow::new(Some(day0), day0 + DAY, day0 + 3 * DAY, delay).expect("window");
        assert_eq!(aged.start_ms, day0 + DAY);
    }

    #[test]
    fn athena_sql_quotes_identifiers_bounds_time_and_prunes_partitions() {
        let mut source = SourceConfig::directory("a".to_owned(), PathBuf::new());
        source.database = Some("db".to_owned());
        source.table = Some("trail".to_owned());
        source.date_partition = Some("timestamp".to_owned());
        source.region_partition = Some("region".to_owned());
        source.regions = vec!["us-east-1".to_owned(), "eu-west-1".to_owned()];
        let window = AthenaWindow {
            start_ms: 12 * 3_600_000,
            end_ms: DAY + 3_600_000,
        };
        let sql = athena_sql(&source, window).expect("sql");
        assert!(sql.contains("FROM \"db\".\"trail\""), "{sql}");
        assert!(
            sql.contains(
                "eventtime >= '1970-01-01T12:00:00Z' AND eventtime < '1970-01-02T01:00:00Z'"
            ),
            "{sql}"
        );
        assert!(
            sql.contains("\"timestamp\" >= '1970/01/01' AND \"timestamp\" <= '1970/01/02'"),
            "{sql}"
        );
        assert!(
            sql.contains("\"region\" IN ('us-east-1', 'eu-west-1')"),
            "{sql}"
        );
        source.regions = vec!["x' OR '1'='1".to_owned()];
        assert!(athena_sql(&source, window).is_err());
        source.regions.clear();
        source.table = Some("x\" OR 1=1 --".to_owned());
        assert!(athena_sql(&source, window).is_err());
    }
}
