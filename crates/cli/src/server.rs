//! The HTTP server around the router: TLS when a certificate is given (its files are looked at
//! every two seconds and reloaded when they change; every answer carries HSTS), a limit on open connections, a time limit for a request's headers and
//! one for the whole request. Without these a client that sends its headers a byte a minute
//! holds a connection open for ever (ASVS 12.1 / 13.1, slow-header attacks).

use anyhow::Context;
use axum::extract::ConnectInfo;
use axum::http::{header, HeaderValue, Request, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tower::ServiceExt;

/// How the server treats connections.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Connections open at once; a connection beyond it is closed at once.
    pub max_connections: usize,
    /// How long a client may take to send a request's headers.
    pub header_timeout: Duration,
    /// How long a whole request may take, body and answer included.
    pub request_timeout: Duration,
}

/// A certificate chain and its private key, as PEM files.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// When set, every client must present a certificate issued by this authority (PEM):
    /// mutual TLS, as the Spine Secure Proxy requires of GP Connect providers.
    pub client_ca: Option<PathBuf>,
}

/// The TLS configuration in use, swapped when the files change.
struct Tls {
    files: TlsFiles,
    config: RwLock<(Arc<rustls::ServerConfig>, Option<SystemTime>)>,
}

impl Tls {
    fn load(files: TlsFiles) -> anyhow::Result<Self> {
        let config = server_config(&files)?;
        let stamp = stamp(&files);
        Ok(Self { files, config: RwLock::new((Arc::new(config), stamp)) })
    }

    fn current(&self) -> Arc<rustls::ServerConfig> {
        self.config.read().map(|c| c.0.clone()).unwrap_or_else(|e| e.into_inner().0.clone())
    }

    /// Loads the files again if they changed; a bad new pair is logged and the old one kept.
    fn reload_if_changed(&self) {
        let now = stamp(&self.files);
        let before = self.config.read().map(|c| c.1).unwrap_or(None);
        if now == before {
            return;
        }
        match server_config(&self.files) {
            Ok(config) => {
                if let Ok(mut c) = self.config.write() {
                    *c = (Arc::new(config), now);
                }
                tracing::info!(cert = %self.files.cert.display(), "TLS certificate reloaded");
            }
            Err(e) => {
                tracing::error!(error = %e, "the changed TLS files could not be loaded; the old ones stay in use")
            }
        }
    }
}

/// The later of the two files' modification times.
fn stamp(files: &TlsFiles) -> Option<SystemTime> {
    let m = |p: &PathBuf| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    m(&files.cert).max(m(&files.key)).max(files.client_ca.as_ref().and_then(m))
}

pub fn server_config(files: &TlsFiles) -> anyhow::Result<rustls::ServerConfig> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs = CertificateDer::pem_file_iter(&files.cert)
        .with_context(|| format!("reading the certificate {}", files.cert.display()))?
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("reading the certificate {}", files.cert.display()))?;
    anyhow::ensure!(!certs.is_empty(), "no certificate in {}", files.cert.display());
    let key = PrivateKeyDer::from_pem_file(&files.key)
        .with_context(|| format!("reading the private key {}", files.key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?;
    let builder = match &files.client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in
                CertificateDer::pem_file_iter(ca).with_context(|| format!("reading the client CA {}", ca.display()))?
            {
                let c = c.with_context(|| format!("reading the client CA {}", ca.display()))?;
                roots.add(c).with_context(|| format!("the client CA {} is not a usable certificate", ca.display()))?;
            }
            anyhow::ensure!(!roots.is_empty(), "no certificate in {}", ca.display());
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .context("the client certificate verifier")?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder.with_single_cert(certs, key).context("the certificate and key do not make a pair")?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// With TLS, every answer tells browsers to use HTTPS only from now on (a year).
async fn hsts(mut res: Response) -> Response {
    res.headers_mut()
        .insert(header::STRICT_TRANSPORT_SECURITY, HeaderValue::from_static("max-age=31536000; includeSubDomains"));
    res
}

/// Serves `router` on `listener` until `shutdown` resolves, then waits (up to 30 seconds) for
/// the requests in flight.
pub async fn run(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    tls: Option<TlsFiles>,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    let tls = tls.map(Tls::load).transpose()?.map(Arc::new);
    let router = if tls.is_some() { router.layer(axum::middleware::map_response(hsts)) } else { router };
    if let Some(tls) = tls.clone() {
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(2)).await;
                tls.reload_if_changed();
            }
        });
    }
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: wait a moment rather than spin.
                    tracing::warn!(error = %e, "accepting a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::warn!(%peer, max = limits.max_connections, "connection refused: too many open");
            drop(stream);
            continue;
        };
        let (router, limits, tls) = (router.clone(), limits.clone(), tls.clone());
        tokio::spawn(async move {
            let _slot = slot;
            let _ = stream.set_nodelay(true);
            match tls {
                Some(tls) => {
                    let acceptor = tokio_rustls::TlsAcceptor::from(tls.current());
                    match tokio::time::timeout(limits.header_timeout, acceptor.accept(stream)).await {
                        Ok(Ok(stream)) => connection(stream, peer, router, &limits).await,
                        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake too slow"),
                    }
                }
                None => connection(stream, peer, router, &limits).await,
            }
        });
    }
    tracing::info!("shutting down: waiting for requests in flight");
    let all = u32::try_from(limits.max_connections).unwrap_or(u32::MAX);
    let _ = tokio::time::timeout(Duration::from_secs(30), slots.acquire_many(all)).await;
    Ok(())
}

async fn connection<S>(stream: S, peer: SocketAddr, router: Router, limits: &Limits)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let request_timeout = limits.request_timeout;
    let service = hyper::service::service_fn(move |mut req: Request<Incoming>| {
        // The connection's own address: tries are counted and audit events written per address.
        req.extensions_mut().insert(ConnectInfo(peer));
        let router = router.clone();
        async move {
            match tokio::time::timeout(request_timeout, router.oneshot(req)).await {
                Ok(answer) => answer,
                Err(_) => {
                    Ok((StatusCode::REQUEST_TIMEOUT, "the request took too long and was stopped").into_response())
                }
            }
        }
    });
    let served = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades()
        .await;
    if let Err(e) = served {
        tracing::debug!(%peer, error = %e, "connection ended");
    }
}
