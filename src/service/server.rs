//! Listeners: a Unix socket (0600, or 0660 for a group) and/or TCP, with TLS (rustls, optional
//! client certificates) required off loopback. One HTTP/1.1 connection task per client.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::{watch, Notify};
use tokio::task::JoinSet;
use tokio_rustls::rustls;
use tokio_rustls::TlsAcceptor;

use super::{handler, ServiceConfig, ServiceError, Shared, TlsFiles};

/// How long a client may take to send a request's head.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// A service that is serving. Dropping it stops the listeners.
pub struct RunningService {
    tcp: Option<SocketAddr>,
    tls: bool,
    unix: Option<PathBuf>,
    metrics: Option<SocketAddr>,
    stop: watch::Sender<bool>,
    tasks: JoinSet<()>,
    connections: Arc<Connections>,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for RunningService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunningService")
            .field("tcp", &self.tcp)
            .field("unix", &self.unix)
            .field("metrics", &self.metrics)
            .finish_non_exhaustive()
    }
}

/// The connections being served, so a shutdown can wait for them.
#[derive(Default)]
struct Connections {
    active: AtomicUsize,
    idle: Notify,
}

/// Counts one connection while it lives.
struct Served(Arc<Connections>);

impl Connections {
    fn enter(self: &Arc<Self>) -> Served {
        self.active.fetch_add(1, Ordering::SeqCst);
        Served(self.clone())
    }

    /// Waits until no connection is left, or `limit` passes; whether none is left.
    async fn wait_idle(&self, limit: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let notified = self.idle.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.active.load(Ordering::SeqCst) == 0 {
                return true;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return self.active.load(Ordering::SeqCst) == 0;
            }
        }
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::SeqCst);
        self.0.idle.notify_waiters();
    }
}

impl RunningService {
    /// The TCP address bound (the port chosen when the configuration said port 0).
    pub fn tcp_addr(&self) -> Option<SocketAddr> {
        self.tcp
    }

    /// The base URL of the TCP listener (`http://…` or `https://…`).
    pub fn tcp_url(&self) -> Option<String> {
        let scheme = if self.tls { "https" } else { "http" };
        self.tcp.map(|a| format!("{scheme}://{a}"))
    }

    /// The Unix socket's path.
    pub fn unix_path(&self) -> Option<&Path> {
        self.unix.as_deref()
    }

    /// The operators' listener (`/metrics`, `/healthz`, `/readyz`).
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics
    }

    /// Replaces the clients and their policies with those of `config` (what SIGHUP does);
    /// returns the clients now in force. Keys, listeners and the upstream stay as started.
    pub fn reload(&self, config: &ServiceConfig) -> Result<Vec<String>, ServiceError> {
        super::reload(&self.shared, config)
    }

    /// Stops accepting connections, lets the requests in flight finish (approvals included,
    /// each logged) for up to `[service] drain_seconds`, then removes the socket file. Whether
    /// every connection ended in time.
    pub async fn shutdown(mut self) -> bool {
        self.shared.draining.store(true, Ordering::SeqCst);
        let _ = self.stop.send(true);
        while self.tasks.join_next().await.is_some() {}
        let drained = self.connections.wait_idle(self.shared.config.drain).await;
        if !drained {
            tracing::warn!(
                left = self.connections.active.load(Ordering::SeqCst),
                "connections still open after the drain time; exiting anyway"
            );
        }
        if let Some(path) = &self.unix {
            let _ = std::fs::remove_file(path);
        }
        drained
    }

    /// Serves until the listeners fail (they do not, short of the runtime ending).
    pub async fn wait(&mut self) {
        while self.tasks.join_next().await.is_some() {}
    }
}

pub(super) async fn bind(shared: Arc<Shared>) -> Result<RunningService, ServiceError> {
    let listen = shared.config.listen.clone();
    if listen.unix.is_none() && listen.tcp.is_none() {
        return Err(ServiceError::NoListener(shared.config.path.clone()));
    }
    let (stop, stopped) = watch::channel(false);
    let mut tasks = JoinSet::new();
    let connections = Arc::new(Connections::default());
    let mut tcp = None;
    if let Some(addr) = listen.tcp {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|e| listen_error(format!("listen.tcp {addr}"), e))?;
        tcp = Some(
            listener
                .local_addr()
                .map_err(|e| listen_error("listen.tcp", e))?,
        );
        let acceptor = match &listen.tls {
            Some(files) => Some(TlsAcceptor::from(Arc::new(tls_config(files)?))),
            None => None,
        };
        tasks.spawn(accept_tcp(
            listener,
            acceptor,
            Accepted::new(&shared, &stopped, &connections, Role::Api),
        ));
    }
    let mut unix = None;
    if let Some(path) = &listen.unix {
        let listener = bind_unix(path, listen.unix_group.as_deref())?;
        unix = Some(path.clone());
        tasks.spawn(accept_unix(
            listener,
            Accepted::new(&shared, &stopped, &connections, Role::Api),
        ));
    }
    let mut metrics = None;
    if let Some(addr) = listen.metrics {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|e| listen_error(format!("listen.metrics {addr}"), e))?;
        metrics = Some(
            listener
                .local_addr()
                .map_err(|e| listen_error("listen.metrics", e))?,
        );
        tasks.spawn(accept_tcp(
            listener,
            None,
            Accepted::new(&shared, &stopped, &connections, Role::Operators),
        ));
    }
    Ok(RunningService {
        tcp,
        tls: listen.tls.is_some(),
        unix,
        metrics,
        stop,
        tasks,
        connections,
        shared,
    })
}

fn listen_error(what: impl Into<String>, e: impl std::fmt::Display) -> ServiceError {
    ServiceError::Listen {
        what: what.into(),
        reason: e.to_string(),
    }
}

/// Binds the socket under a temporary name, sets its mode (and group), then renames it into
/// place: no moment exists where the socket is reachable with the default mode.
fn bind_unix(path: &Path, group: Option<&str>) -> Result<UnixListener, ServiceError> {
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    let what = || format!("listen.unix {}", path.display());
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if !meta.file_type().is_socket() {
            return Err(listen_error(
                what(),
                "a file that is not a socket is in the way",
            ));
        }
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(listen_error(
                what(),
                "another process is serving on this socket",
            ));
        }
        // A socket left by a service that stopped: nobody answers on it.
        std::fs::remove_file(path).map_err(|e| listen_error(what(), e))?;
    }
    let temporary = path.with_extension(format!("{}.tmp", std::process::id()));
    let _ = std::fs::remove_file(&temporary);
    let listener = UnixListener::bind(&temporary).map_err(|e| listen_error(what(), e))?;
    let mode = if group.is_some() { 0o660 } else { 0o600 };
    std::fs::set_permissions(&temporary, std::fs::Permissions::from_mode(mode))
        .map_err(|e| listen_error(what(), e))?;
    if let Some(name) = group {
        let gid = nix::unistd::Group::from_name(name)
            .map_err(|e| listen_error(what(), e))?
            .ok_or_else(|| listen_error(what(), format!("there is no group `{name}`")))?
            .gid;
        nix::unistd::chown(&temporary, None, Some(gid)).map_err(|e| listen_error(what(), e))?;
    }
    std::fs::rename(&temporary, path).map_err(|e| listen_error(what(), e))?;
    Ok(listener)
}

fn tls_config(files: &TlsFiles) -> Result<rustls::ServerConfig, ServiceError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let pem_error =
        |path: &Path, e: rustls::pki_types::pem::Error| listen_error(path.display().to_string(), e);
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&files.cert)
        .map_err(|e| pem_error(&files.cert, e))?
        .collect::<Result<_, _>>()
        .map_err(|e| pem_error(&files.cert, e))?;
    if certs.is_empty() {
        return Err(listen_error(
            files.cert.display().to_string(),
            "no certificate in it",
        ));
    }
    let meta = std::fs::metadata(&files.key)
        .map_err(|e| listen_error(files.key.display().to_string(), e))?;
    crate::config::check_private(&files.key, &meta)?;
    let key = PrivateKeyDer::from_pem_file(&files.key).map_err(|e| pem_error(&files.key, e))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| listen_error("TLS", e))?;
    let builder = match &files.client_ca {
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in CertificateDer::pem_file_iter(ca).map_err(|e| pem_error(ca, e))? {
                roots
                    .add(cert.map_err(|e| pem_error(ca, e))?)
                    .map_err(|e| listen_error(ca.display().to_string(), e))?;
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            )
            .build()
            .map_err(|e| listen_error(ca.display().to_string(), e))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder
        .with_single_cert(certs, key)
        .map_err(|e| listen_error(files.key.display().to_string(), e))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// Which requests a listener takes.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Role {
    /// The Dfns API, `/v1/sign`, `/healthz`, `/readyz`.
    Api,
    /// `/metrics`, `/healthz`, `/readyz` only.
    Operators,
}

/// What every accepted connection of one listener needs.
#[derive(Clone)]
struct Accepted {
    shared: Arc<Shared>,
    stopped: watch::Receiver<bool>,
    connections: Arc<Connections>,
    role: Role,
}

impl Accepted {
    fn new(
        shared: &Arc<Shared>,
        stopped: &watch::Receiver<bool>,
        connections: &Arc<Connections>,
        role: Role,
    ) -> Accepted {
        Accepted {
            shared: shared.clone(),
            stopped: stopped.clone(),
            connections: connections.clone(),
            role,
        }
    }
}

async fn accept_tcp(listener: TcpListener, tls: Option<TlsAcceptor>, accepted: Accepted) {
    let mut stopped = accepted.stopped.clone();
    loop {
        let (stream, _) = tokio::select! {
            result = listener.accept() => match result {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stopped.changed() => return,
        };
        let _ = stream.set_nodelay(true);
        let accepted = accepted.clone();
        let served = accepted.connections.enter();
        match &tls {
            Some(acceptor) => {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    // A handshake that stalls must not hold a task forever.
                    match tokio::time::timeout(HEADER_READ_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(stream)) => serve(stream, accepted, served).await,
                        Ok(Err(e)) => tracing::info!(error = %e, "TLS handshake refused"),
                        Err(_) => tracing::info!("TLS handshake timed out"),
                    }
                });
            }
            None => {
                tokio::spawn(serve(stream, accepted, served));
            }
        }
    }
}

async fn accept_unix(listener: UnixListener, accepted: Accepted) {
    let mut stopped = accepted.stopped.clone();
    loop {
        let stream = tokio::select! {
            result = listener.accept() => match result {
                Ok((s, _)) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stopped.changed() => return,
        };
        let served = accepted.connections.enter();
        tokio::spawn(serve(stream, accepted.clone(), served));
    }
}

/// Serves one connection; on shutdown, lets the request in flight finish (hyper's graceful
/// shutdown) and closes.
async fn serve<S>(stream: S, accepted: Accepted, served: Served)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let Accepted {
        shared,
        mut stopped,
        role,
        ..
    } = accepted;
    let service = hyper::service::service_fn(move |req| {
        let shared = shared.clone();
        async move { Ok::<_, std::convert::Infallible>(handler::handle(&shared, req, role).await) }
    });
    let connection = hyper::server::conn::http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .serve_connection(TokioIo::new(stream), service);
    tokio::pin!(connection);
    if !*stopped.borrow() {
        tokio::select! {
            _ = connection.as_mut() => {
                drop(served);
                return;
            }
            _ = stopped.changed() => {}
        }
    }
    connection.as_mut().graceful_shutdown();
    let _ = connection.await;
    drop(served);
}
