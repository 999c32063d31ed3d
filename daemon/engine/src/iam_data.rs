//! `whittle iam-data`: which IAM action catalog is in use, and refreshing it from AWS's
//! Service Reference at run time.
//!
//! The shipped snapshot is compiled in. A refresh writes `iam-catalog.txt` into the state
//! directory (same text format, written to a temporary file and renamed, so a crash leaves
//! the old catalog or the new one, never half of one); mining and planning use it from then
//! on. Deleting the file goes back to the shipped snapshot.

use std::borrow::Cow;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;
use whittle_planner::catalog::service_reference::{IndexEntry, ServiceDoc, catalog_from};
use whittle_planner::catalog::{Catalog, DataVersion};

use crate::Engine;
use crate::ports::{Ports, Web, WebRequest};

/// AWS's Service Reference index.
pub const SERVICE_REFERENCE_URL: &str = "https://servicereference.us-east-1.amazonaws.com/";

/// Service documents fetched at once.
const FETCHES_AT_ONCE: usize = 8;

/// Where a refreshed catalog is kept.
pub fn refreshed_path(state_dir: &Path) -> PathBuf {
    state_dir.join("iam-catalog.txt")
}

/// What `whittle iam-data info` shows.
#[derive(Debug, Serialize)]
pub struct CatalogInfo {
    pub source: String,
    pub version: String,
    pub updated_at: String,
    pub actions: usize,
    pub services: usize,
    /// The refreshed file in use, if any (else the snapshot built into the binary).
    pub file: Option<PathBuf>,
    /// Operations whose authorized actions AWS's Service Reference gave (mapped first).
    pub operations: whittle_planner::catalog::OperationCoverage,
    /// Entries of the built-in exception table (mapped next).
    pub exceptions: usize,
}

/// The catalog in use: a refreshed one in the state directory, else the embedded snapshot.
pub fn catalog(state_dir: &Path) -> anyhow::Result<Cow<'static, Catalog>> {
    let path = refreshed_path(state_dir);
    match std::fs::read_to_string(&path) {
        Ok(text) => Catalog::parse(&text).map(Cow::Owned).map_err(|e| {
            anyhow::anyhow!(
                "{}: {e}; delete it to use the shipped catalog",
                path.display()
            )
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            Ok(Cow::Borrowed(Catalog::embedded()))
        }
        Err(e) => Err(anyhow::anyhow!("reading {}: {e}", path.display())),
    }
}

pub fn info(state_dir: &Path) -> anyhow::Result<CatalogInfo> {
    let catalog = catalog(state_dir)?;
    let path = refreshed_path(state_dir);
    Ok(CatalogInfo {
        source: catalog.version.source.clone(),
        version: catalog.version.version.clone(),
        updated_at: catalog.version.updated_at.clone(),
        actions: catalog.actions().len(),
        services: catalog.service_count(),
        file: path.exists().then_some(path),
        operations: catalog.operation_coverage(),
        exceptions: whittle_planner::mapping::exception_count(),
    })
}

/// What a refresh changed.
#[derive(Debug, Serialize)]
pub struct RefreshReport {
    pub info: CatalogInfo,
    pub added: usize,
    pub removed: usize,
    /// A few of the actions added and removed, for the reader.
    pub examples_added: Vec<String>,
    pub examples_removed: Vec<String>,
}

async fn get_json<T: serde::de::DeserializeOwned, W: Web>(web: &W, url: &str) -> anyhow::Result<T> {
    let request = WebRequest {
        method: "GET",
        url: url.to_owned(),
        headers: Vec::new(),
        json_body: None,
        timeout: Duration::from_secs(30),
    };
    let (status, body) = web
        .send(&request)
        .await
        .map_err(|e| anyhow::anyhow!("GET {url}: {e}"))?;
    if !(200..300).contains(&status) {
        anyhow::bail!("GET {url}: HTTP {status}");
    }
    serde_json::from_slice(&body)
        .map_err(|e| anyhow::anyhow!("GET {url}: not the expected JSON: {e}"))
}

/// Fetches the index at `url` and every service document it lists, builds a catalog, and
/// installs it in the state directory.
pub async fn refresh<P: Ports>(engine: &Engine<P>, url: &str) -> anyhow::Result<RefreshReport> {
    let state = &*engine.state;
    let index: Vec<IndexEntry> = get_json(&*engine.ports, url).await?;
    if index.is_empty() {
        anyhow::bail!("{url} lists no services");
    }
    let mut docs = Vec::with_capacity(index.len());
    for batch in index.chunks(FETCHES_AT_ONCE) {
        let mut set = tokio::task::JoinSet::new();
        for entry in batch {
            let (ports, entry) = (std::sync::Arc::clone(&engine.ports), entry.clone());
            set.spawn(async move { get_json::<ServiceDoc, _>(&*ports, &entry.url).await });
        }
        while let Some(joined) = set.join_next().await {
            docs.push(joined.map_err(|e| anyhow::anyhow!("fetch task failed: {e}"))??);
        }
    }
    docs.sort_by(|a, b| a.name.cmp(&b.name));
    let now = crate::time::format(engine.now());
    let version = DataVersion {
        source: "service-reference".to_owned(),
        version: now[..10].to_owned(),
        updated_at: now.clone(),
    };
    let refreshed = catalog_from(&docs, &version).map_err(|e| {
        anyhow::anyhow!("the Service Reference documents do not make a catalog: {e}")
    })?;
    let before = catalog(state.dir())?;
    let names =
        |c: &Catalog| -> BTreeSet<String> { c.actions().iter().map(|a| a.name.clone()).collect() };
    let (old, new) = (names(&before), names(&refreshed));
    let added: Vec<String> = new.difference(&old).cloned().collect();
    let removed: Vec<String> = old.difference(&new).cloned().collect();

    let path = refreshed_path(state.dir());
    let temporary = path.with_extension("txt.tmp");
    let header = format!("Written by `whittle iam-data refresh` from {url} at {now}.");
    std::fs::write(&temporary, refreshed.to_text(&header))
        .map_err(|e| anyhow::anyhow!("writing {}: {e}", temporary.display()))?;
    std::fs::rename(&temporary, &path)
        .map_err(|e| anyhow::anyhow!("installing {}: {e}", path.display()))?;
    Ok(RefreshReport {
        info: info(state.dir())?,
        added: added.len(),
        removed: removed.len(),
        examples_added: added.into_iter().take(10).collect(),
        examples_removed: removed.into_iter().take(10).collect(),
    })
}
