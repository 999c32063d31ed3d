//! `whittle iam-data`: which IAM action catalog is in use, and refreshing it from AWS's
//! Service Reference at run time.
//!
//! The shipped snapshot is compiled in. A refresh writes `iam-catalog.txt` into the state
//! directory (same text format, written to a temporary file and renamed, so a crash leaves
//! the old catalog or the new one, never half of one); mining and planning use it from then
//! on. Deleting the file goes back to the shipped snapshot.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::Serialize;
use whittle_planner::catalog::service_reference::{IndexEntry, ServiceDoc, catalog_from};
use whittle_planner::catalog::{Catalog, DataVersion};
use whittle_state::State;

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
}

pub fn info(state_dir: &Path) -> anyhow::Result<CatalogInfo> {
    let catalog = crate::mine::catalog(state_dir)?;
    let path = refreshed_path(state_dir);
    Ok(CatalogInfo {
        source: catalog.version.source.clone(),
        version: catalog.version.version.clone(),
        updated_at: catalog.version.updated_at.clone(),
        actions: catalog.actions().len(),
        services: catalog.service_count(),
        file: path.exists().then_some(path),
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

type HttpsClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Empty<hyper::body::Bytes>>;

fn client() -> anyhow::Result<HttpsClient> {
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_provider_and_native_roots(rustls::crypto::aws_lc_rs::default_provider())
        .map_err(|e| anyhow::anyhow!("loading the system's TLS root certificates: {e}"))?
        .https_or_http()
        .enable_http1()
        .build();
    Ok(Client::builder(TokioExecutor::new()).build(connector))
}

async fn get_json<T: serde::de::DeserializeOwned>(
    client: &HttpsClient,
    url: &str,
) -> anyhow::Result<T> {
    let uri: hyper::Uri = url
        .parse()
        .map_err(|e| anyhow::anyhow!("`{url}` is not a URL: {e}"))?;
    let response = tokio::time::timeout(Duration::from_secs(30), client.get(uri))
        .await
        .map_err(|_| anyhow::anyhow!("GET {url}: no answer within 30 s"))?
        .map_err(|e| anyhow::anyhow!("GET {url}: {e}"))?;
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| anyhow::anyhow!("GET {url}: {e}"))?
        .to_bytes();
    if !status.is_success() {
        anyhow::bail!("GET {url}: HTTP {status}");
    }
    serde_json::from_slice(&body)
        .map_err(|e| anyhow::anyhow!("GET {url}: not the expected JSON: {e}"))
}

/// Fetches the index at `url` and every service document it lists, builds a catalog, and
/// installs it in the state directory.
pub async fn refresh(state: &State, url: &str) -> anyhow::Result<RefreshReport> {
    let client = client()?;
    let index: Vec<IndexEntry> = get_json(&client, url).await?;
    if index.is_empty() {
        anyhow::bail!("{url} lists no services");
    }
    let mut docs = Vec::with_capacity(index.len());
    for batch in index.chunks(FETCHES_AT_ONCE) {
        let mut set = tokio::task::JoinSet::new();
        for entry in batch {
            let (client, entry) = (client.clone(), entry.clone());
            set.spawn(async move { get_json::<ServiceDoc>(&client, &entry.url).await });
        }
        while let Some(joined) = set.join_next().await {
            docs.push(joined.map_err(|e| anyhow::anyhow!("fetch task failed: {e}"))??);
        }
    }
    docs.sort_by(|a, b| a.name.cmp(&b.name));
    let now = crate::clock::format(crate::clock::now());
    let version = DataVersion {
        source: "service-reference".to_owned(),
        version: now[..10].to_owned(),
        updated_at: now.clone(),
    };
    let catalog = catalog_from(&docs, &version).map_err(|e| {
        anyhow::anyhow!("the Service Reference documents do not make a catalog: {e}")
    })?;
    let before = crate::mine::catalog(state.dir())?;
    let names =
        |c: &Catalog| -> BTreeSet<String> { c.actions().iter().map(|a| a.name.clone()).collect() };
    let (old, new) = (names(&before), names(&catalog));
    let added: Vec<String> = new.difference(&old).cloned().collect();
    let removed: Vec<String> = old.difference(&new).cloned().collect();

    let path = refreshed_path(state.dir());
    let temporary = path.with_extension("txt.tmp");
    let header = format!("Written by `whittle iam-data refresh` from {url} at {now}.");
    std::fs::write(&temporary, catalog.to_text(&header))
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
