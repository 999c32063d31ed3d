//! Mining: reads the configured CloudTrail sources into the usage store.
//!
//! Every source is incremental. Files (local or S3) are checkpointed in the same
//! transaction as the usage they produced, so a crash or Ctrl-C between two commits neither
//! loses a file nor counts one twice; time-windowed sources (LookupEvents, Athena) keep the
//! end of the window they read. Work is committed in chunks, so memory holds one chunk's
//! aggregate, not the corpus; `store.rs` says how a chunk reaches the usage store.

mod files;
mod sources;
mod store;

pub use store::{build_heads, put_usage, remove_usage};

use std::borrow::Cow;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};
use whittle_planner::catalog::Catalog;
use whittle_planner::trail::day_of;
use whittle_planner::usage::{Aggregate, Stats};
use whittle_state::{State, WriteBatch};

pub use files::{Blob, DecodeOptions, Progress, decode_parallel};
pub use store::mined_file_count;

use crate::Engine;
use crate::config::{SourceConfig, SourceKind};
use crate::ports::Ports;
use crate::records::{StoredUsage, UsageMeta};

/// What to mine.
#[derive(Debug, Clone, Default)]
pub struct MineRequest {
    /// Read only this local copy of a trail instead of the configured sources.
    pub from_dir: Option<PathBuf>,
    /// Only these configured sources (by name); empty means all.
    pub only: Vec<String>,
    /// Draw a progress bar (on a terminal).
    pub progress: bool,
}

/// What a mining run did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct MineReport {
    pub sources: Vec<SourceReport>,
    /// Totals over all sources.
    pub stats: Stats,
    /// Roles whose IAM last-accessed data was refreshed.
    pub last_accessed_roles: usize,
    pub last_accessed_errors: Vec<String>,
    pub elapsed_ms: u64,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct SourceReport {
    pub name: String,
    pub kind: String,
    /// New inputs read (files, LookupEvents pages, Athena rows).
    pub new_inputs: u64,
    /// Inputs skipped because an earlier run read them.
    pub already_mined: u64,
    /// athena: the bytes the query scanned (`DataScannedInBytes`, what Athena bills).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes_scanned: Option<u64>,
    pub stats: Stats,
    /// Set when the source failed; other sources still ran.
    pub error: Option<String>,
}

impl MineReport {
    /// Whether nothing could be read at all: every source failed, or every file was bad.
    pub fn nothing_read(&self) -> bool {
        let failed = self.sources.iter().all(|s| s.error.is_some());
        let no_good_file = self.stats.files > 0 && self.stats.files == self.stats.bad_files;
        !self.sources.is_empty() && (failed || (no_good_file && self.stats.records == 0))
    }
}

/// Runs every requested source, then the last-accessed refresh, then the age-out pass.
pub async fn mine<P: Ports>(
    ctx: &Engine<P>,
    request: &MineRequest,
    cancel: &CancellationToken,
) -> anyhow::Result<MineReport> {
    // One mining run at a time (the scheduled job, a command handed to the daemon): two
    // would both find a new file unmined and count it twice.
    let _turn = ctx.turns.wait(crate::guard::Subject::Mining).await;
    let started = Instant::now();
    let now_ms = ctx.now().as_millis_i64();
    let cutoff_ms = now_ms - i64::from(ctx.config.mining.lookback_days) * 86_400_000;
    let run = Run {
        ctx,
        catalog: std::sync::OnceLock::new(),
        cutoff_ms,
        now_ms,
        workers: match ctx.config.mining.workers {
            0 => std::thread::available_parallelism().map_or(1, usize::from),
            n => n,
        },
        decode: DecodeOptions {
            cutoff_ms,
            stream_above: ctx.config.mining.stream_above_mib.saturating_mul(1 << 20),
        },
        progress: request.progress,
        cancel,
    };
    let sources: Vec<SourceConfig> = match &request.from_dir {
        Some(dir) => {
            let dir = std::fs::canonicalize(dir)
                .map_err(|e| anyhow::anyhow!("--from-dir {}: {e}", dir.display()))?;
            vec![SourceConfig::directory(
                format!("dir:{}", dir.display()),
                dir,
            )]
        }
        None => {
            for name in &request.only {
                if !ctx.config.mining.sources.iter().any(|s| &s.name == name) {
                    anyhow::bail!("no [[mining.sources]] named `{name}`");
                }
            }
            ctx.config
                .mining
                .sources
                .iter()
                .filter(|s| request.only.is_empty() || request.only.contains(&s.name))
                .cloned()
                .collect()
        }
    };
    if sources.is_empty() {
        anyhow::bail!(
            "nothing to mine: add a [[mining.sources]] table to the configuration, or pass --from-dir PATH"
        );
    }
    // Chunks a crashed run left behind are folded first, so this run starts from the usage
    // as it stands.
    store::migrate_file_checkpoints(&ctx.state)?;
    fold_pending(ctx)?;
    let mut report = MineReport::default();
    for source in &sources {
        if cancel.is_cancelled() {
            break;
        }
        let mut source_report = SourceReport {
            name: source.name.clone(),
            kind: source.kind.as_str().to_owned(),
            ..SourceReport::default()
        };
        let result = match source.kind {
            SourceKind::Directory => sources::directory(&run, source, &mut source_report).await,
            SourceKind::S3 => sources::s3(&run, source, &mut source_report).await,
            SourceKind::LookupEvents => {
                sources::lookup_events(&run, source, &mut source_report).await
            }
            SourceKind::Athena => sources::athena(&run, source, &mut source_report).await,
        };
        if let Err(error) = result {
            let text = crate::one_line(&error);
            warn!(source = %source.name, error = %text, "Source failed");
            source_report.error = Some(text);
        }
        for warning in &source_report.stats.warnings {
            warn!(source = %source.name, "{warning}");
        }
        report.stats.merge(&source_report.stats);
        report.sources.push(source_report);
    }
    if request.from_dir.is_none() && ctx.config.mining.last_accessed && !cancel.is_cancelled() {
        let (roles, errors) = sources::last_accessed(&run).await;
        report.last_accessed_roles = roles;
        report.last_accessed_errors = errors;
    }
    age_out(&ctx.state, cutoff_ms, now_ms)?;
    report.elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    info!(
        files = report.stats.files,
        records = report.stats.records,
        events = report.stats.events(),
        denials = report.stats.denials,
        unmapped = report.stats.unmapped,
        skipped = report.stats.skipped_total(),
        "Mining finished"
    );
    Ok(report)
}

/// Folds the usage a crashed mining run left pending, so readers of the usage store see
/// everything that was committed. Cheap when nothing is pending.
pub fn fold_pending<P: Ports>(engine: &Engine<P>) -> anyhow::Result<()> {
    let cutoff_ms =
        engine.now().as_millis_i64() - i64::from(engine.config.mining.lookback_days) * 86_400_000;
    let folded = store::fold(&engine.state, cutoff_ms)?;
    if folded > 0 {
        info!(
            chunks = folded,
            "Folded usage an interrupted mining run left pending"
        );
    }
    Ok(())
}

/// What every source needs.
pub(crate) struct Run<'a, P> {
    pub ctx: &'a Engine<P>,
    /// Loaded on first use: a re-run with nothing new never parses it.
    catalog: std::sync::OnceLock<Cow<'static, Catalog>>,
    pub cutoff_ms: i64,
    pub now_ms: i64,
    pub workers: usize,
    pub decode: DecodeOptions,
    pub progress: bool,
    pub cancel: &'a CancellationToken,
}

impl<P: Ports> Run<'_, P> {
    pub fn catalog(&self) -> anyhow::Result<&Catalog> {
        if let Some(catalog) = self.catalog.get() {
            return Ok(catalog);
        }
        let loaded = crate::iam_data::catalog(self.ctx.state.dir())?;
        Ok(self.catalog.get_or_init(|| loaded))
    }

    /// Stores an aggregate as a pending chunk with `batch` (the checkpoint of the input it
    /// came from) in the same transaction, and folds it into the usage store.
    pub fn commit(&self, aggregate: Aggregate, batch: WriteBatch) -> anyhow::Result<Stats> {
        let (usage, stats) = aggregate.into_usage(self.catalog()?);
        store::commit_chunk(&self.ctx.state, usage, batch, self.cutoff_ms)?;
        Ok(stats)
    }

    pub fn progress_bar(&self, total: u64, label: &str) -> Option<indicatif::ProgressBar> {
        if !self.progress {
            return None;
        }
        let bar = indicatif::ProgressBar::with_draw_target(
            Some(total),
            indicatif::ProgressDrawTarget::stderr_with_hz(8),
        );
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{prefix} [{bar:30}] {pos}/{len} files  {msg}  {elapsed_precise}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        // A `--from-dir` source is named after its full path; the tail is what tells sources
        // apart on one line.
        let chars: Vec<char> = label.chars().collect();
        let short: String = if chars.len() > 32 {
            std::iter::once('…')
                .chain(chars[chars.len() - 31..].iter().copied())
                .collect()
        } else {
            label.to_owned()
        };
        bar.set_prefix(short);
        Some(bar)
    }
}

/// Drops usage older than the look-back window from every principal, once a day: usage
/// that a run touched is aged out when it is committed, this catches the rest.
fn age_out(state: &State, cutoff_ms: i64, now_ms: i64) -> anyhow::Result<()> {
    let today = day_of(now_ms);
    let meta = state.tree::<UsageMeta>()?;
    let key = "age_out".to_owned();
    if meta.get(&key)?.is_some_and(|m| m.aged_out_day >= today) {
        return Ok(());
    }
    let tree = state.tree::<StoredUsage>()?;
    let mut batch = WriteBatch::new();
    for item in tree.iter() {
        let (arn, mut stored) = item?;
        let before = stored.usage.clone();
        if !stored.usage.age_out(cutoff_ms) {
            store::remove_usage(&mut batch, &arn);
        } else if stored.usage != before {
            store::put_usage(&mut batch, &arn, &stored)?;
        }
    }
    batch.put::<UsageMeta>(
        &key,
        &UsageMeta {
            aged_out_day: today,
        },
    )?;
    state.commit(batch)?;
    Ok(())
}

/// A summary of a run for people: what was read and what was found.
pub fn render_text(report: &MineReport) -> String {
    let s = &report.stats;
    let secs = Duration::from_millis(report.elapsed_ms)
        .as_secs_f64()
        .max(0.001);
    let mut out = String::new();
    for source in &report.sources {
        let status = match &source.error {
            Some(error) => format!("failed: {error}"),
            None => format!(
                "{} new, {} already mined, {} events{}",
                source.new_inputs,
                source.already_mined,
                source.stats.events(),
                source
                    .bytes_scanned
                    .map(|b| format!(", {b} bytes scanned by Athena"))
                    .unwrap_or_default()
            ),
        };
        out.push_str(&format!("{} ({}): {status}\n", source.name, source.kind));
    }
    let kinds: Vec<String> = s
        .events_by_kind
        .iter()
        .map(|(k, n)| format!("{k} {n}"))
        .collect();
    let skipped: Vec<String> = s.skipped.iter().map(|(k, n)| format!("{k}: {n}")).collect();
    out.push_str(&format!(
        "mined {} file(s) ({:.1} MB), {} record(s), {} event(s) [{}]; {} denial(s), {} unmapped (`whittle usage --unmapped`), {} permissionless, {} not API calls, {} older than the look-back, {} skipped malformed{}; {} file(s) not read to the end; {:.1} s, {:.0} events/s, {:.1} MB/s\n",
        s.files,
        s.bytes as f64 / 1e6,
        s.records,
        s.events(),
        if kinds.is_empty() { "none".to_owned() } else { kinds.join(", ") },
        s.denials,
        s.unmapped,
        s.permissionless,
        s.not_api_calls,
        s.too_old,
        s.skipped_total(),
        if skipped.is_empty() { String::new() } else { format!(" ({})", skipped.join("; ")) },
        s.bad_files,
        secs,
        s.events() as f64 / secs,
        s.bytes as f64 / 1e6 / secs,
    ));
    if report.last_accessed_roles > 0 || !report.last_accessed_errors.is_empty() {
        out.push_str(&format!(
            "IAM last-accessed data refreshed for {} role(s){}\n",
            report.last_accessed_roles,
            if report.last_accessed_errors.is_empty() {
                String::new()
            } else {
                format!(
                    "; {} failed: {}",
                    report.last_accessed_errors.len(),
                    report.last_accessed_errors.join("; ")
                )
            }
        ));
    }
    let shown = s.warnings.len() as u64;
    let total = s.skipped_total() + s.bad_files;
    if total > shown {
        out.push_str(&format!(
            "({} warning(s) shown in the log, {} more not shown)\n",
            shown,
            total - shown
        ));
    }
    out
}
