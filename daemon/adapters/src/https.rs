//! The one HTTP(S) client for everything outbound that is not the AWS SDK (which brings its
//! own): the [`Web`](whittle_engine::ports::Web) port (webhooks, AWS's Service Reference, the
//! loopback endpoint of a running daemon) and the requests of `http` playbooks.
//!
//! One construction serves both ([`build`]): hyper over rustls with the ring provider,
//! HTTP/1, certificates verified against the system's native roots, loaded once when the
//! client is made. The two uses differ only in what they allow:
//! - [`Https::send`] (the `Web` port) takes `http` and `https` URLs;
//! - [`Https::playbook`] takes `https` only, and trusts the playbook's `ca_file` on top of
//!   the system's roots (a client with that extra root is built for the call).
//!
//! Invariants: TLS is always verified (there is no switch to turn it off); a playbook
//! request's errors name it by its label (method and URL template) only, never by the
//! rendered URL, headers or body, which may hold keys; nothing here logs a request.

use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt as _, Full};
use hyper::body::Bytes;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rustls::RootCertStore;
use whittle_engine::ports::{HttpCall, PortError, WebRequest};

type HyperClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// Which URL schemes a client accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Schemes {
    HttpAndHttps,
    HttpsOnly,
}

/// The outbound HTTP(S) client: cheap to clone (the clients share their connection pools).
#[derive(Debug, Clone)]
pub struct Https {
    /// The system's root certificates, to which a playbook's `ca_file` is added.
    roots: Arc<RootCertStore>,
    /// Why the system has no usable roots, when it has none.
    roots_missing: Option<String>,
    /// `http` and `https`: the `Web` port.
    web: HyperClient,
    /// `https` only, the system's roots: playbook requests without a `ca_file`.
    playbook: HyperClient,
}

impl Https {
    /// Loads the system's root certificates and builds the clients. A host without roots
    /// still gets a client (plain HTTP works); an `https` request then fails, saying why.
    pub fn new() -> Result<Https, String> {
        let loaded = rustls_native_certs::load_native_certs();
        if !loaded.errors.is_empty() {
            tracing::warn!(errors = ?loaded.errors, "Some of the system's TLS root certificates could not be loaded");
        }
        let mut roots = RootCertStore::empty();
        // A system root rustls cannot parse is skipped, as browsers do.
        let (_added, _skipped) = roots.add_parsable_certificates(loaded.certs);
        let roots_missing = roots.is_empty().then(|| {
            let errors: Vec<String> = loaded.errors.iter().map(ToString::to_string).collect();
            format!(
                "loading the system's TLS root certificates: none found{}",
                if errors.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", errors.join("; "))
                }
            )
        });
        Ok(Https {
            web: build(roots.clone(), Schemes::HttpAndHttps)?,
            playbook: build(roots.clone(), Schemes::HttpsOnly)?,
            roots: Arc::new(roots),
            roots_missing,
        })
    }

    /// The `Web` port: one request, `http` or `https`; the status and the body, or why no
    /// answer came.
    pub async fn send(&self, request: &WebRequest) -> Result<(u16, Vec<u8>), String> {
        let uri: hyper::Uri = request
            .url
            .parse()
            .map_err(|e| format!("`{}` is not a URL: {e}", request.url))?;
        if uri.scheme() == Some(&hyper::http::uri::Scheme::HTTPS)
            && let Some(missing) = &self.roots_missing
        {
            return Err(missing.clone());
        }
        let mut builder = hyper::Request::builder().method(request.method).uri(uri);
        for (name, value) in &request.headers {
            builder = builder.header(*name, value.as_str());
        }
        if request.json_body.is_some() {
            builder = builder.header("content-type", "application/json");
        }
        let body = request
            .json_body
            .clone()
            .map(Bytes::from)
            .unwrap_or_default();
        // The builder's error names what is wrong, never the header's value (which may be a
        // token).
        let built = builder
            .body(Full::new(body))
            .map_err(|e| format!("not a valid HTTP request: {e}"))?;
        exchange(&self.web, built, request.timeout).await
    }

    /// One request of an `http` playbook: `https` only, verified against the system's roots
    /// plus the playbook's `ca_file`. Errors start with the call's label and never show the
    /// rendered URL, headers or body.
    pub async fn playbook(&self, call: &HttpCall) -> Result<(u16, Vec<u8>), PortError> {
        let fail = |what: String| PortError(format!("{}: {what}", call.label));
        let client = match &call.ca_file {
            Some(ca_file) => {
                let mut roots = (*self.roots).clone();
                add_pem_file(&mut roots, ca_file)
                    .map_err(|e| fail(format!("ca_file {}: {e}", ca_file.display())))?;
                build(roots, Schemes::HttpsOnly).map_err(fail)?
            }
            None => {
                if let Some(missing) = &self.roots_missing {
                    return Err(fail(missing.clone()));
                }
                self.playbook.clone()
            }
        };
        let mut request = hyper::Request::builder()
            .method(call.method.as_str())
            .uri(call.url.expose());
        for (name, value) in &call.headers {
            request = request.header(name.as_str(), value.expose());
        }
        let body = call
            .body
            .as_ref()
            .map(|b| Bytes::from(b.expose().to_owned()))
            .unwrap_or_default();
        // The builder's error would quote the offending URL or header value: it is dropped.
        let request = request
            .body(Full::new(body))
            .map_err(|_| fail("the rendered request is not valid HTTP".to_owned()))?;
        exchange(&client, request, call.timeout).await.map_err(fail)
    }
}

/// The one construction of a client: rustls with the ring provider and safe default
/// protocol versions, verified against `roots`, HTTP/1.
fn build(roots: RootCertStore, schemes: Schemes) -> Result<HyperClient, String> {
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| format!("TLS configuration: {e}"))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    let builder = hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(tls);
    let connector = match schemes {
        Schemes::HttpAndHttps => builder.https_or_http(),
        Schemes::HttpsOnly => builder.https_only(),
    }
    .enable_http1()
    .build();
    Ok(Client::builder(TokioExecutor::new()).build(connector))
}

/// Adds every certificate of a PEM file to `roots`.
fn add_pem_file(roots: &mut RootCertStore, path: &std::path::Path) -> Result<(), String> {
    use rustls::pki_types::{CertificateDer, pem::PemObject as _};
    let certs = CertificateDer::pem_file_iter(path).map_err(|e| e.to_string())?;
    for cert in certs {
        roots
            .add(cert.map_err(|e| e.to_string())?)
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// Sends the request and reads the whole answer, all within `timeout`. The error is one
/// line: the client's error and its causes (the TLS error, an untrusted certificate say, is
/// in the source chain). It never holds the request: hyper's errors do not quote it.
async fn exchange(
    client: &HyperClient,
    request: hyper::Request<Full<Bytes>>,
    timeout: Duration,
) -> Result<(u16, Vec<u8>), String> {
    let answer = async {
        let response = client
            .request(request)
            .await
            .map_err(|e| crate::causes(&e))?;
        let status = response.status().as_u16();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| crate::causes(&e))?
            .to_bytes()
            .to_vec();
        Ok((status, body))
    };
    tokio::time::timeout(timeout, answer)
        .await
        .map_err(|_| format!("no answer within {}", humantime::format_duration(timeout)))?
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    use whittle_playbooks::rotation::SecretValue;

    use super::*;

    /// A one-shot HTTP server on loopback: answers `200 ok` and hands back what it was sent.
    async fn one_shot_server() -> (String, tokio::task::JoinHandle<String>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let address = listener.local_addr().expect("address");
        let served = tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.expect("accept");
            let mut received = Vec::new();
            let mut buffer = [0u8; 4096];
            loop {
                let n = stream.read(&mut buffer).await.expect("read");
                received.extend_from_slice(&buffer[..n]);
                let text = String::from_utf8_lossy(&received);
                if let Some(end) = text.find("\r\n\r\n") {
                    let length = text[..end]
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length: "))
                        .and_then(|v| v.trim().parse::<usize>().ok())
                        .unwrap_or(0);
                    if received.len() >= end + 4 + length {
                        break;
                    }
                }
                if n == 0 {
                    break;
                }
            }
            stream
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok")
                .await
                .expect("write");
            String::from_utf8_lossy(&received).into_owned()
        });
        (format!("http://{address}"), served)
    }

    #[tokio::test]
    async fn the_web_port_posts_json_over_plain_http() {
        let https = Https::new().expect("client");
        let (url, served) = one_shot_server().await;
        let answer = https
            .send(&WebRequest {
                method: "POST",
                url: format!("{url}/hook"),
                headers: vec![("x-whittle-test", "yes".to_owned())],
                json_body: Some(br#"{"a":1}"#.to_vec()),
                timeout: Duration::from_secs(5),
            })
            .await
            .expect("answer");
        assert_eq!(answer, (200, b"ok".to_vec()));
        let request = served.await.expect("served");
        assert!(request.starts_with("POST /hook HTTP/1.1\r\n"), "{request}");
        assert!(
            request.contains("content-type: application/json"),
            "{request}"
        );
        assert!(request.contains("x-whittle-test: yes"), "{request}");
        assert!(request.ends_with(r#"{"a":1}"#), "{request}");
    }

    #[tokio::test]
    async fn the_web_port_says_when_no_answer_came() {
        let https = Https::new().expect("client");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}/slow", listener.local_addr().expect("address"));
        let error = https
            .send(&WebRequest {
                method: "GET",
                url,
                headers: Vec::new(),
                json_body: None,
                timeout: Duration::from_millis(200),
            })
            .await
            .expect_err("no answer");
        assert_eq!(error, "no answer within 200ms");
        drop(listener);
    }

    fn call(url: &str, ca_file: Option<std::path::PathBuf>) -> HttpCall {
        HttpCall {
            label: "POST https://provider/{{key}}".to_owned(),
            method: "POST".to_owned(),
            url: SecretValue::new(url.to_owned()),
            headers: vec![(
                "authorization".to_owned(),
                SecretValue::new("Bearer s3cr3t-token".to_owned()),
            )],
            body: Some(SecretValue::new("s3cr3t-body".to_owned())),
            ca_file,
            timeout: Duration::from_secs(5),
        }
    }

    #[tokio::test]
    async fn a_playbook_request_is_https_only_and_errors_name_its_label_only() {
        let https = Https::new().expect("client");
        let (url, _served) = one_shot_server().await;
        let secret_url = format!("{url}/s3cr3t-path");
        let error = https
            .playbook(&call(&secret_url, None))
            .await
            .expect_err("plain http refused");
        assert!(
            error.0.starts_with("POST https://provider/{{key}}: "),
            "{error}"
        );
        assert!(error.0.contains("unsupported scheme http"), "{error}");
        assert!(!error.0.contains("s3cr3t"), "{error}");

        let missing = std::path::PathBuf::from("/nonexistent/ca.pem");
        let error = https
            .playbook(&call("https://127.0.0.1:1/s3cr3t", Some(missing)))
            .await
            .expect_err("no ca_file");
        assert!(
            error
                .0
                .starts_with("POST https://provider/{{key}}: ca_file /nonexistent/ca.pem: "),
            "{error}"
        );
        assert!(!error.0.contains("s3cr3t"), "{error}");

        let bad_header = HttpCall {
            headers: vec![(
                "authorization".to_owned(),
                SecretValue::new("s3cr3t\nvalue".to_owned()),
            )],
            ..call("https://127.0.0.1:1/", None)
        };
        let error = https.playbook(&bad_header).await.expect_err("invalid");
        assert_eq!(
            error.0,
            "POST https://provider/{{key}}: the rendered request is not valid HTTP"
        );
    }
}
