//! The HTTP/1.1 client under [`DfnsClient`](super::DfnsClient): each request written whole in one
//! write, each answer read with `httparse`, connections kept alive and reused, plain TCP for a
//! loopback simulator and rustls (ring, the webpki roots) for `https`.
//!
//! Why not reqwest here: a signed call is three small exchanges, and per call reqwest, hyper-util
//! and hyper cost more instructions than the library's own work (URL re-parsing in a redirect
//! layer that never redirects, header maps built and copied, a connection task to hand each
//! request to, a pool keyed by a hashed URL authority). `benches/callgrind_sdk.sh` counts it.
//! This client does what the API needs and nothing else: no redirects (never followed anyway), no
//! proxies (a configured proxy, or a caller's own reqwest client, takes the reqwest transport),
//! no HTTP/2, no compression, no cookies.
//!
//! What it holds to:
//! - a request is written once and never sent again from here; a pooled connection is reused only
//!   if the server has not closed it (a read that would block), and an error after the request
//!   left is reported as such, never as "not sent";
//! - the buffer that carried the tokens is zeroized once written;
//! - an answer is read up to the client's body cap: a `Content-Length` over it fails before
//!   anything is read, a chunked body fails as soon as it passes it; headers stop at 64 KiB;
//! - a connection goes back to the pool only after a complete, well-framed answer that does not
//!   ask to close it.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant, SystemTime};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::rustls;
use zeroize::Zeroizing;

use crate::protocol::Method;

/// How long an idle connection is kept: under the idle timeouts of the usual load balancers and
/// servers (60 s and more), so the server is not the one closing it while a request is on its way.
const IDLE_FOR: Duration = Duration::from_secs(30);
/// Idle connections kept at most; more in flight at once are closed after their answer.
const MAX_IDLE: usize = 64;
/// Largest status line plus headers read.
const MAX_HEAD_BYTES: usize = 64 * 1024;
/// Most headers in an answer.
const MAX_HEADERS: usize = 64;
/// Longest chunk-size line or trailer line of a chunked body.
const MAX_LINE_BYTES: usize = 4 * 1024;

/// Where to connect and what to send as `Host`.
pub(super) struct Http1 {
    target: Target,
    /// The `Host` header: the URL's host, and its port when not the scheme's default.
    authority: String,
    /// The base URL's path (a proxy's `/dfns`), without its trailing `/`; often empty.
    prefix: String,
    /// The base URL as a string without its trailing `/`: the long way for paths the short one
    /// is not sure of (see [`Http1::request_target`]).
    base: String,
    tls: Option<Tls>,
    idle: Mutex<Vec<Idle>>,
}

enum Target {
    Ip(SocketAddr),
    Name(String, u16),
}

struct Tls {
    connector: tokio_rustls::TlsConnector,
    name: rustls::pki_types::ServerName<'static>,
}

struct Idle {
    io: Io,
    since: Instant,
}

/// One request: the method, the API path with its query, the two credentials, the body.
pub(super) struct Request<'a> {
    pub method: Method,
    pub path: &'a str,
    /// The whole `Authorization` value (`Bearer …`).
    pub authorization: Option<&'a str>,
    pub user_action: Option<&'a str>,
    pub body: &'a [u8],
}

/// One answer, its body read whole.
pub(super) struct Response {
    pub status: u16,
    pub retry_after: Option<Duration>,
    pub date: Option<SystemTime>,
    pub body: Vec<u8>,
}

/// Why an exchange failed.
#[derive(Debug)]
pub(super) enum Failure {
    /// No connection: the request was never sent.
    Connect(String),
    /// The request may have reached the server (the connection failed while writing it or
    /// before the whole answer came back, or the answer was not HTTP).
    Exchange(String),
    /// The answer's body is larger than the cap.
    TooLarge,
}

impl Http1 {
    /// A client for `base`, checked by the builder (http or https, a host, no userinfo, no query,
    /// its path without a trailing `/`). `tls` is the rustls configuration for `https` (its ALPN
    /// is set here); `None` builds the default one: the webpki roots.
    pub(super) fn new(base: &url::Url, tls: Option<rustls::ClientConfig>) -> Result<Http1, String> {
        let https = base.scheme() == "https";
        let port = base
            .port_or_known_default()
            .ok_or_else(|| "the base URL has no port".to_owned())?;
        let (target, server_name) = match base.host() {
            Some(url::Host::Ipv4(ip)) => (
                Target::Ip(SocketAddr::new(ip.into(), port)),
                rustls::pki_types::ServerName::IpAddress(std::net::IpAddr::V4(ip).into()),
            ),
            Some(url::Host::Ipv6(ip)) => (
                Target::Ip(SocketAddr::new(ip.into(), port)),
                rustls::pki_types::ServerName::IpAddress(std::net::IpAddr::V6(ip).into()),
            ),
            Some(url::Host::Domain(name)) => (
                Target::Name(name.to_owned(), port),
                rustls::pki_types::ServerName::try_from(name.to_owned())
                    .map_err(|e| format!("`{name}` is not a TLS server name: {e}"))?,
            ),
            None => return Err("the base URL has no host".to_owned()),
        };
        let host = base.host_str().unwrap_or_default();
        let authority = match base.port() {
            Some(port) => format!("{host}:{port}"),
            None => host.to_owned(),
        };
        let tls = https.then(|| {
            let mut config = tls.unwrap_or_else(default_tls_config);
            config.alpn_protocols = vec![b"http/1.1".to_vec()];
            Tls {
                connector: tokio_rustls::TlsConnector::from(Arc::new(config)),
                name: server_name,
            }
        });
        Ok(Http1 {
            target,
            authority,
            prefix: base.path().trim_end_matches('/').to_owned(),
            base: base.as_str().trim_end_matches('/').to_owned(),
            tls,
            idle: Mutex::new(Vec::new()),
        })
    }

    /// Sends `request` and reads its answer, whole, up to `limit` body bytes.
    pub(super) async fn exchange(
        &self,
        request: &Request<'_>,
        limit: usize,
    ) -> Result<Response, Failure> {
        let bytes = self.serialize(request);
        let mut io = match self.take_idle() {
            Some(io) => io,
            None => self.connect().await?,
        };
        let sent = async {
            io.write_all(&bytes).await?;
            io.flush().await
        };
        sent.await
            .map_err(|e| Failure::Exchange(format!("writing the request: {e}")))?;
        drop(bytes);
        let (response, reusable) = read_response(&mut io, limit).await?;
        if reusable {
            self.put_idle(io);
        }
        Ok(response)
    }

    /// The request's bytes: request line, headers, body, in one buffer (one write, one TLS
    /// record or TCP segment for a small request), zeroized when dropped because it holds the
    /// tokens. Header values were checked by the caller (no CR, LF or other control bytes).
    fn serialize(&self, request: &Request<'_>) -> Zeroizing<Vec<u8>> {
        let mut out = Zeroizing::new(Vec::with_capacity(
            512 + request.body.len()
                + request.authorization.map_or(0, str::len)
                + request.user_action.map_or(0, str::len),
        ));
        out.extend_from_slice(request.method.as_str().as_bytes());
        out.push(b' ');
        self.request_target(request.path, &mut out);
        out.extend_from_slice(b" HTTP/1.1\r\nhost: ");
        out.extend_from_slice(self.authority.as_bytes());
        out.extend_from_slice(
            concat!("\r\nuser-agent: dfns-signer/", env!("CARGO_PKG_VERSION")).as_bytes(),
        );
        out.extend_from_slice(b"\r\naccept: */*");
        let mut header = |name: &[u8], value: &[u8]| {
            out.extend_from_slice(b"\r\n");
            out.extend_from_slice(name);
            out.extend_from_slice(b": ");
            out.extend_from_slice(value);
        };
        if let Some(value) = request.authorization {
            header(b"authorization", value.as_bytes());
        }
        if let Some(value) = request.user_action {
            header(b"x-dfns-useraction", value.as_bytes());
        }
        if !request.body.is_empty() {
            header(b"content-type", b"application/json");
        }
        if !request.body.is_empty() || !matches!(request.method, Method::Get | Method::Delete) {
            let mut digits = [0; 20];
            header(b"content-length", decimal(request.body.len(), &mut digits));
        }
        out.extend_from_slice(b"\r\n\r\n");
        out.extend_from_slice(request.body);
        out
    }

    /// The request target for `path` (an API path with its query): the bytes reqwest sent for
    /// it, which are those `Url::parse` makes of the base and the path joined. Paths made only
    /// that `validate_path` accepts go as they are, with `'` in the query encoded
    /// as `%27` (as `Url` does for http(s) queries); anything else takes `Url::parse`.
    fn request_target(&self, path: &str, out: &mut Vec<u8>) {
        let plain = crate::protocol::validate_path(path).is_ok();
        if plain {
            out.extend_from_slice(self.prefix.as_bytes());
            let (path, query) = match path.split_once('?') {
                Some((path, query)) => (path, Some(query)),
                None => (path, None),
            };
            out.extend_from_slice(path.as_bytes());
            if let Some(query) = query {
                out.push(b'?');
                for b in query.bytes() {
                    if b == b'\'' {
                        out.extend_from_slice(b"%27");
                    } else {
                        out.push(b);
                    }
                }
            }
            return;
        }
        match url::Url::parse(&format!("{}{path}", self.base)) {
            Ok(url) => {
                out.extend_from_slice(url.path().as_bytes());
                if let Some(query) = url.query() {
                    out.push(b'?');
                    out.extend_from_slice(query.as_bytes());
                }
            }
            // Not reached: the builder checked the base and `validate_path` the path (it
            // starts with `/`). Were it reached, the path goes without its unprintable bytes,
            // so no space, CR or LF can break the request line; the server refuses the rest.
            Err(_) => {
                out.extend_from_slice(self.prefix.as_bytes());
                out.extend(path.bytes().filter(|b| b.is_ascii_graphic()));
            }
        }
    }

    /// A pooled connection the server has not closed, if any. Older ones, and ones with
    /// something to read (an EOF, an error, bytes nobody asked for), are closed.
    fn take_idle(&self) -> Option<Io> {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        while let Some(Idle { mut io, since }) = idle.pop() {
            if since.elapsed() < IDLE_FOR && !io.peer_closed() {
                return Some(io);
            }
        }
        None
    }

    fn put_idle(&self, io: Io) {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        if idle.len() < MAX_IDLE {
            idle.push(Idle {
                io,
                since: Instant::now(),
            });
        }
    }

    async fn connect(&self) -> Result<Io, Failure> {
        let tcp = match &self.target {
            Target::Ip(addr) => TcpStream::connect(addr).await,
            Target::Name(name, port) => TcpStream::connect((name.as_str(), *port)).await,
        }
        .map_err(|e| Failure::Connect(format!("TCP connection failed: {e}")))?;
        // Without it a request written after the previous answer's ACK was delayed waits for
        // that ACK (Nagle): 40 ms on Linux.
        tcp.set_nodelay(true)
            .map_err(|e| Failure::Connect(format!("TCP_NODELAY: {e}")))?;
        match &self.tls {
            None => Ok(Io::Plain(tcp)),
            Some(tls) => {
                let stream = tls
                    .connector
                    .connect(tls.name.clone(), tcp)
                    .await
                    .map_err(|e| Failure::Connect(format!("TLS handshake failed: {e}")))?;
                Ok(Io::Tls(Box::new(stream)))
            }
        }
    }
}

/// rustls with ring and the webpki roots: what reqwest's `rustls-tls` used before.
fn default_tls_config() -> rustls::ClientConfig {
    let roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("ring supports the default TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth()
}

/// A connection: plain TCP or TLS over it.
enum Io {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl Io {
    /// Whether the server closed the connection, or said something nobody asked for, while it
    /// sat in the pool: one read that must not find anything. TLS session tickets that arrived
    /// meanwhile are taken in by rustls and are not "something".
    fn peer_closed(&mut self) -> bool {
        let mut cx = Context::from_waker(Waker::noop());
        let mut byte = [0u8; 1];
        let mut buf = ReadBuf::new(&mut byte);
        Pin::new(self).poll_read(&mut cx, &mut buf).is_ready()
    }
}

impl AsyncRead for Io {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Io {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_flush(cx),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// What the status line and headers say.
struct Head {
    /// Bytes of the status line and headers, blank line included.
    len: usize,
    status: u16,
    framing: Framing,
    /// The server keeps the connection open after this answer.
    keep_alive: bool,
    retry_after: Option<Duration>,
    date: Option<SystemTime>,
}

enum Framing {
    /// No body (204, 304).
    Empty,
    Length(u64),
    Chunked,
    /// Until the server closes the connection.
    UntilClose,
}

fn exchange_error(what: impl std::fmt::Display) -> Failure {
    Failure::Exchange(what.to_string())
}

/// Reads one answer from `io`: its head, then its body as the head frames it. Also says whether
/// the connection can carry another request.
async fn read_response<S: AsyncRead + Unpin>(
    io: &mut S,
    limit: usize,
) -> Result<(Response, bool), Failure> {
    let mut buf: Vec<u8> = Vec::with_capacity(4096);
    let head = loop {
        match parse_head(&buf)? {
            // 1xx answers (100 Continue, 103 Early Hints) come before the real one.
            Some(head) if (100..200).contains(&head.status) => {
                if head.status == 101 {
                    return Err(exchange_error("the server switched protocols (101)"));
                }
                buf.drain(..head.len);
                continue;
            }
            Some(head) => break head,
            None => {}
        }
        if buf.len() >= MAX_HEAD_BYTES {
            return Err(exchange_error(
                "the answer's headers are longer than 64 KiB",
            ));
        }
        if read_more(io, &mut buf, 4096).await? == 0 {
            return Err(exchange_error(if buf.is_empty() {
                "the server closed the connection without answering"
            } else {
                "the server closed the connection in the middle of the answer's headers"
            }));
        }
    };
    buf.drain(..head.len);
    let (body, clean_end) = match head.framing {
        Framing::Empty => (Vec::new(), buf.is_empty()),
        Framing::Length(n) => {
            if n > limit as u64 {
                return Err(Failure::TooLarge);
            }
            let n = n as usize;
            while buf.len() < n {
                let want = n - buf.len();
                if read_more(io, &mut buf, want).await? == 0 {
                    return Err(exchange_error(format!(
                        "the server closed the connection after {} of {n} body bytes",
                        buf.len()
                    )));
                }
            }
            let clean_end = buf.len() == n;
            buf.truncate(n);
            (buf, clean_end)
        }
        Framing::Chunked => read_chunked(io, buf, limit).await?,
        Framing::UntilClose => {
            if buf.len() > limit {
                return Err(Failure::TooLarge);
            }
            while read_more(io, &mut buf, 8192).await? > 0 {
                if buf.len() > limit {
                    return Err(Failure::TooLarge);
                }
            }
            (buf, false)
        }
    };
    let reusable = head.keep_alive && clean_end && !matches!(head.framing, Framing::UntilClose);
    Ok((
        Response {
            status: head.status,
            retry_after: head.retry_after,
            date: head.date,
            body,
        },
        reusable,
    ))
}

/// Reads what is there into `buf` (up to `want` more bytes, at least 1 KiB of room); 0 at EOF.
async fn read_more<S: AsyncRead + Unpin>(
    io: &mut S,
    buf: &mut Vec<u8>,
    want: usize,
) -> Result<usize, Failure> {
    buf.reserve(want.clamp(1024, 64 * 1024));
    io.read_buf(buf)
        .await
        .map_err(|e| exchange_error(format!("reading the answer: {e}")))
}

/// `n` in decimal, written at the end of `buf` (20 digits hold any `u64`), without the heap
/// allocation of `to_string`.
fn decimal(mut n: usize, buf: &mut [u8; 20]) -> &[u8] {
    let mut start = buf.len();
    loop {
        start -= 1;
        buf[start] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return &buf[start..];
        }
    }
}

/// The head at the start of `buf`, or `None` when more bytes are needed.
fn parse_head(buf: &[u8]) -> Result<Option<Head>, Failure> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut response = httparse::Response::new(&mut headers);
    let len = match response.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(exchange_error(format!("the answer is not HTTP/1.1: {e}"))),
    };
    let status = response.code.unwrap_or_default();
    let mut length: Option<u64> = None;
    let mut chunked = false;
    let mut transfer_encoding = false;
    let mut close = response.version == Some(0);
    let mut retry_after = None;
    let mut date = None;
    for header in response.headers.iter() {
        let value = std::str::from_utf8(header.value).unwrap_or("").trim();
        let name = header.name;
        if name.eq_ignore_ascii_case("content-length") {
            let n: u64 = value
                .parse()
                .ok()
                .filter(|_| value.bytes().all(|b| b.is_ascii_digit()))
                .ok_or_else(|| exchange_error("bad Content-Length (not a decimal number)"))?;
            if length.is_some_and(|m| m != n) {
                return Err(exchange_error("two different Content-Length headers"));
            }
            length = Some(n);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            transfer_encoding = true;
            // Only the last coding frames the body.
            chunked = value
                .rsplit(',')
                .next()
                .is_some_and(|last| last.trim().eq_ignore_ascii_case("chunked"));
        } else if name.eq_ignore_ascii_case("connection") {
            for token in value.split(',') {
                let token = token.trim();
                if token.eq_ignore_ascii_case("close") {
                    close = true;
                } else if token.eq_ignore_ascii_case("keep-alive") && response.version == Some(0) {
                    close = false;
                }
            }
        } else if name.eq_ignore_ascii_case("retry-after") {
            retry_after = value.parse::<u64>().ok().map(Duration::from_secs);
        } else if name.eq_ignore_ascii_case("date") {
            date = httpdate::parse_http_date(value).ok();
        }
    }
    let framing = if status == 204 || status == 304 || (100..200).contains(&status) {
        Framing::Empty
    } else if chunked {
        Framing::Chunked
    } else if transfer_encoding {
        Framing::UntilClose
    } else if let Some(n) = length {
        Framing::Length(n)
    } else {
        Framing::UntilClose
    };
    // A Content-Length beside a Transfer-Encoding is how responses get smuggled: read the
    // body as the Transfer-Encoding says, and do not trust the connection after it.
    let both_framings = transfer_encoding && length.is_some();
    let keep_alive = !(close || both_framings);
    Ok(Some(Head {
        len,
        status,
        framing,
        keep_alive,
        retry_after,
        date,
    }))
}

/// A chunked body after its head (`buf` holds what was read past the head): the body, and
/// whether the answer ended exactly where the last chunk did.
async fn read_chunked<S: AsyncRead + Unpin>(
    io: &mut S,
    mut buf: Vec<u8>,
    limit: usize,
) -> Result<(Vec<u8>, bool), Failure> {
    let mut body = Vec::new();
    let mut pos = 0;
    loop {
        let end = line_end(io, &mut buf, pos).await?;
        let line = std::str::from_utf8(&buf[pos..end]).unwrap_or("");
        let digits = line.split(';').next().unwrap_or("").trim();
        let size = (!digits.is_empty() && digits.len() <= 16)
            .then(|| usize::from_str_radix(digits, 16).ok())
            .flatten()
            .ok_or_else(|| exchange_error("bad chunk size line (not hexadecimal)"))?;
        pos = end + 2;
        if size == 0 {
            // Trailers, up to the blank line.
            loop {
                let end = line_end(io, &mut buf, pos).await?;
                let blank = end == pos;
                pos = end + 2;
                if blank {
                    return Ok((body, pos == buf.len()));
                }
            }
        }
        if body.len().saturating_add(size) > limit {
            return Err(Failure::TooLarge);
        }
        while buf.len() < pos + size + 2 {
            let want = pos + size + 2 - buf.len();
            if read_more(io, &mut buf, want).await? == 0 {
                return Err(exchange_error(
                    "the server closed the connection in the middle of a chunk",
                ));
            }
        }
        body.extend_from_slice(&buf[pos..pos + size]);
        if &buf[pos + size..pos + size + 2] != b"\r\n" {
            return Err(exchange_error("a chunk does not end with CRLF"));
        }
        pos += size + 2;
        // What was taken out is not kept: the buffer holds one chunk at a time.
        buf.drain(..pos);
        pos = 0;
    }
}

/// The index of the CR of the next CRLF at or after `from`, reading more as needed.
async fn line_end<S: AsyncRead + Unpin>(
    io: &mut S,
    buf: &mut Vec<u8>,
    from: usize,
) -> Result<usize, Failure> {
    let mut searched = from;
    loop {
        let found = buf[searched..].windows(2).position(|w| w == b"\r\n");
        // Also when the line is all there: the same answer whatever size the reads came in.
        if found.map_or(buf.len(), |i| searched + i) - from > MAX_LINE_BYTES {
            return Err(exchange_error(
                "a line of the chunked body is longer than 4 KiB",
            ));
        }
        if let Some(i) = found {
            return Ok(searched + i);
        }
        searched = buf.len().saturating_sub(1).max(from);
        if read_more(io, buf, 1024).await? == 0 {
            return Err(exchange_error(
                "the server closed the connection in the middle of a chunked body",
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;
    use tokio::net::TcpListener;

    /// Hands out `data` `step` bytes per read: every place a parser can be cut is cut.
    struct Trickle {
        data: Vec<u8>,
        pos: usize,
        step: usize,
    }

    impl AsyncRead for Trickle {
        fn poll_read(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            let n = self
                .step
                .min(self.data.len() - self.pos)
                .min(buf.remaining());
            let from = self.pos;
            buf.put_slice(&self.data[from..from + n]);
            self.pos += n;
            Poll::Ready(Ok(()))
        }
    }

    /// `answer` read at every step size; all must agree. The body as text, and reusability.
    async fn read(answer: &str, limit: usize) -> Result<(Response, bool), Failure> {
        let mut results = Vec::new();
        for step in [1, 2, 7, 4096] {
            let mut io = Trickle {
                data: answer.as_bytes().to_vec(),
                pos: 0,
                step,
            };
            results.push(read_response(&mut io, limit).await);
        }
        let last = results.pop().unwrap();
        for other in &results {
            match (other, &last) {
                (Ok((a, ra)), Ok((b, rb))) => {
                    assert_eq!(
                        (a.status, &a.body, ra),
                        (b.status, &b.body, rb),
                        "{answer:?}"
                    )
                }
                (Err(a), Err(b)) => assert_eq!(format!("{a:?}"), format!("{b:?}"), "{answer:?}"),
                _ => panic!("step sizes disagree on {answer:?}"),
            }
        }
        last
    }

    fn body(result: &(Response, bool)) -> &str {
        std::str::from_utf8(&result.0.body).unwrap()
    }

    fn error(result: Result<(Response, bool), Failure>) -> String {
        match result {
            Err(Failure::Exchange(reason)) => reason,
            Err(other) => panic!("expected an exchange failure, got {other:?}"),
            Ok((r, _)) => panic!("expected a failure, got status {}", r.status),
        }
    }

    #[tokio::test]
    async fn answers_are_framed_as_their_headers_say() {
        let r = read("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", 100)
            .await
            .unwrap();
        assert_eq!((r.0.status, body(&r), r.1), (200, "hello", true));

        let r = read(
            "HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n\
             5;ext=1\r\nhello\r\n1\r\n \r\nA\r\n0123456789\r\n0\r\nX-Trailer: t\r\n\r\n",
            100,
        )
        .await
        .unwrap();
        assert_eq!((r.0.status, body(&r), r.1), (201, "hello 0123456789", true));

        // 100 Continue and 103 Early Hints come first and are skipped.
        let r = read(
            "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n\
             HTTP/1.1 400 Bad Request\r\nContent-Length: 2\r\n\r\n{}",
            100,
        )
        .await
        .unwrap();
        assert_eq!((r.0.status, body(&r), r.1), (400, "{}", true));

        let r = read("HTTP/1.1 204 No Content\r\n\r\n", 100).await.unwrap();
        assert_eq!((r.0.status, body(&r), r.1), (204, "", true));

        // Connection: close, HTTP/1.0, a body until the close: not reused.
        let r = read(
            "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok",
            100,
        )
        .await
        .unwrap();
        assert_eq!((body(&r), r.1), ("ok", false));
        let r = read("HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok", 100)
            .await
            .unwrap();
        assert_eq!((body(&r), r.1), ("ok", false));
        let r = read(
            "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nok",
            100,
        )
        .await
        .unwrap();
        assert_eq!((body(&r), r.1), ("ok", true));
        let r = read("HTTP/1.1 200 OK\r\n\r\nuntil the end", 100)
            .await
            .unwrap();
        assert_eq!((body(&r), r.1), ("until the end", false));

        // Both framings: the Transfer-Encoding wins and the connection is not trusted after.
        let r = read(
            "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n\
             2\r\nok\r\n0\r\n\r\n",
            100,
        )
        .await
        .unwrap();
        assert_eq!((body(&r), r.1), ("ok", false));

        // Bytes after the body nobody asked for: the connection is not reused. (Read at once:
        // bytes that have not arrived yet cannot be seen.)
        let mut io = Trickle {
            data: b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1".to_vec(),
            pos: 0,
            step: 4096,
        };
        let r = read_response(&mut io, 100).await.unwrap();
        assert_eq!((body(&r), r.1), ("ok", false));
    }

    #[tokio::test]
    async fn retry_after_and_date_are_read() {
        let (r, _) = read(
            "HTTP/1.1 429 Too Many Requests\r\nRetry-After: 7\r\n\
             Date: Sun, 06 Nov 1994 08:49:37 GMT\r\nContent-Length: 0\r\n\r\n",
            100,
        )
        .await
        .unwrap();
        assert_eq!(r.retry_after, Some(Duration::from_secs(7)));
        assert_eq!(
            r.date,
            Some(SystemTime::UNIX_EPOCH + Duration::from_secs(784_111_777))
        );
    }

    #[tokio::test]
    async fn bodies_over_the_cap_are_refused_before_they_are_read() {
        // The body is not there at all: refusing it means the length alone was enough.
        let r = read("HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\n", 10).await;
        assert!(matches!(r, Err(Failure::TooLarge)), "{r:?}", r = r.err());
        let r = read(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffff\r\n",
            10,
        )
        .await;
        assert!(matches!(r, Err(Failure::TooLarge)), "{r:?}", r = r.err());
        let r = read(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n6\r\n123456\r\n5\r\n12345\r\n",
            10,
        )
        .await;
        assert!(matches!(r, Err(Failure::TooLarge)), "{r:?}", r = r.err());
        let r = read("HTTP/1.1 200 OK\r\n\r\n12345678901", 10).await;
        assert!(matches!(r, Err(Failure::TooLarge)), "{r:?}", r = r.err());
        // Exactly the cap is fine.
        let r = read(
            "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n1234567890",
            10,
        )
        .await;
        assert_eq!(body(&r.unwrap()), "1234567890");
    }

    #[tokio::test]
    async fn broken_answers_are_errors_that_say_what_broke() {
        let cases = [
            ("", "without answering"),
            (
                "HTTP/1.1 200 OK\r\nContent-",
                "in the middle of the answer's headers",
            ),
            ("HELLO\r\n\r\n", "not HTTP/1.1"),
            (
                "HTTP/1.1 200 OK\r\nContent-Length: 1a\r\n\r\n",
                "bad Content-Length",
            ),
            (
                "HTTP/1.1 200 OK\r\nContent-Length: +1\r\n\r\nx",
                "bad Content-Length",
            ),
            (
                "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nxx",
                "two different Content-Length",
            ),
            (
                "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nabc",
                "after 3 of 5 body bytes",
            ),
            (
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
                "bad chunk size",
            ),
            (
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nokX\r\n",
                "does not end with CRLF",
            ),
            (
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nok",
                "in the middle of a chunk",
            ),
            (
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n",
                "in the middle of a chunked body",
            ),
            (
                "HTTP/1.1 101 Switching Protocols\r\n\r\n",
                "switched protocols",
            ),
        ];
        for (answer, expected) in cases {
            let reason = error(read(answer, 100).await);
            assert!(reason.contains(expected), "{answer:?}: {reason}");
        }
        // What the server wrote is not repeated (errors reach terminals and logs).
        for answer in [
            "HTTP/1.1 200 OK\r\nContent-Length: evil\r\n\r\n",
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nevil\r\n",
        ] {
            let reason = error(read(answer, 100).await);
            assert!(!reason.contains("evil"), "{reason}");
        }
        let long = format!("HTTP/1.1 200 OK\r\nX: {}\r\n\r\n", "a".repeat(70 * 1024));
        assert!(error(read(&long, 100).await).contains("longer than 64 KiB"));
        let long = format!(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1;{}\r\n",
            "a".repeat(5000)
        );
        assert!(error(read(&long, 100).await).contains("longer than 4 KiB"));
    }

    fn client(base: &str) -> Http1 {
        let mut url = url::Url::parse(base).unwrap();
        let trimmed = url.path().trim_end_matches('/').to_owned();
        url.set_path(&trimmed);
        Http1::new(&url, None).unwrap()
    }

    /// `Content-Length` digits, written without `to_string`, are the same text.
    #[test]
    fn decimal_is_the_same_text_as_to_string() {
        let mut buf = [0; 20];
        for n in [0, 1, 9, 10, 99, 100, 228, 65_536, 1 << 40, usize::MAX] {
            assert_eq!(decimal(n, &mut buf), n.to_string().as_bytes(), "{n}");
        }
        assert_eq!(decimal(4_096, &mut buf), b"4096");
    }

    /// The request target is what `Url::parse` makes of base + path (what reqwest sent), for
    /// every character `validate_path` lets through, with and without a query and a base path;
    /// and characters it would refuse still go the way `Url` sends them.
    #[test]
    fn request_targets_are_what_parsing_the_joined_url_gives() {
        let bases = [
            "http://127.0.0.1:8080",
            "https://api.dfns.io/",
            "https://proxy.example/dfns/",
            "http://[::1]:3000/x/y",
        ];
        let paths = [
            "/",
            "/wallets",
            "/wallets/wa-01/transactions",
            "/wallets?limit=10&paginationToken=abc",
            "/wallets?",
            "/wallets?a=1?b=2",
            "/a%2Fb/c%25d/%5C",
            "/x-._~!$&'()*+,;=:@y",
            "/q?x-._~!$&'()*+,;=:@/?%20",
            "//double",
            // Not what validate_path admits: the long way.
            "/a b/\"c\"?d e'f",
            "/50%/x",
            "/é",
        ];
        for base in bases {
            let http = client(base);
            for path in paths {
                let expected = url::Url::parse(&format!("{}{path}", http.base)).unwrap();
                let mut expected_target = expected.path().to_owned();
                if let Some(query) = expected.query() {
                    expected_target.push('?');
                    expected_target.push_str(query);
                }
                let mut target = Vec::new();
                http.request_target(path, &mut target);
                assert_eq!(
                    String::from_utf8(target).unwrap(),
                    expected_target,
                    "{base} + {path}"
                );
            }
        }
    }

    /// A server that answers each request on each connection it accepts with `answer`, and
    /// hands the raw requests back; closes a connection after `per_connection` answers.
    async fn server(
        answer: &'static str,
        per_connection: usize,
    ) -> (
        std::net::SocketAddr,
        tokio::sync::mpsc::UnboundedReceiver<(usize, Vec<u8>)>,
    ) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            for connection in 0.. {
                let (mut socket, _) = listener.accept().await.unwrap();
                let tx = tx.clone();
                tokio::spawn(async move {
                    for _ in 0..per_connection {
                        let Some(request) = read_request(&mut socket).await else {
                            return;
                        };
                        tx.send((connection, request)).unwrap();
                        socket.write_all(answer.as_bytes()).await.unwrap();
                    }
                });
            }
        });
        (addr, rx)
    }

    /// One request: its head, and as many body bytes as its Content-Length says.
    async fn read_request(socket: &mut TcpStream) -> Option<Vec<u8>> {
        let mut buf = Vec::new();
        loop {
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&buf[..end]).to_lowercase();
                let length: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length: "))
                    .map_or(0, |n| n.parse().unwrap());
                if buf.len() >= end + 4 + length {
                    return Some(buf);
                }
            }
            let mut chunk = [0u8; 4096];
            let n = socket.read(&mut chunk).await.ok()?;
            if n == 0 {
                return None;
            }
            buf.extend_from_slice(&chunk[..n]);
        }
    }

    fn post<'a>(body: &'a [u8], user_action: Option<&'a str>) -> Request<'a> {
        Request {
            method: Method::Post,
            path: "/wallets",
            authorization: Some("Bearer token"),
            user_action,
            body,
        }
    }

    #[tokio::test]
    async fn a_request_is_written_whole_and_connections_are_kept_alive() {
        let (addr, mut requests) =
            server("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}", 100).await;
        let http = client(&format!("http://{addr}/prefix/"));
        let response = http
            .exchange(&post(br#"{"a":1}"#, Some("ua")), 1000)
            .await
            .unwrap();
        assert_eq!((response.status, &response.body[..]), (200, &b"{}"[..]));
        let (connection, request) = requests.recv().await.unwrap();
        assert_eq!(connection, 0);
        assert_eq!(
            String::from_utf8(request).unwrap(),
            format!(
                "POST /prefix/wallets HTTP/1.1\r\nhost: {addr}\r\nuser-agent: dfns-signer/{}\r\n\
                 accept: */*\r\nauthorization: Bearer token\r\nx-dfns-useraction: ua\r\n\
                 content-type: application/json\r\ncontent-length: 7\r\n\r\n{{\"a\":1}}",
                env!("CARGO_PKG_VERSION")
            )
        );
        // A GET without a body has no body headers; it goes on the same connection.
        let get = Request {
            method: Method::Get,
            path: "/wallets?limit=1",
            authorization: None,
            user_action: None,
            body: b"",
        };
        http.exchange(&get, 1000).await.unwrap();
        let (connection, request) = requests.recv().await.unwrap();
        assert_eq!(connection, 0, "the kept-alive connection carried it");
        let request = String::from_utf8(request).unwrap();
        assert!(
            request.starts_with("GET /prefix/wallets?limit=1 HTTP/1.1\r\n"),
            "{request}"
        );
        assert!(!request.contains("content-"), "{request}");
        // A POST without a body says so.
        http.exchange(&post(b"", None), 1000).await.unwrap();
        let (_, request) = requests.recv().await.unwrap();
        assert!(String::from_utf8(request)
            .unwrap()
            .ends_with("content-length: 0\r\n\r\n"),);
    }

    #[tokio::test]
    async fn a_connection_the_server_closed_is_not_used_again() {
        // The server answers once per connection and closes it (without saying so).
        let (addr, mut requests) =
            server("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}", 1).await;
        let http = client(&format!("http://{addr}"));
        for expected_connection in 0..3 {
            http.exchange(&post(b"{}", None), 1000).await.unwrap();
            let (connection, _) = requests.recv().await.unwrap();
            assert_eq!(connection, expected_connection);
            // Lets the server's FIN arrive before the next request looks at the pool.
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    #[tokio::test]
    async fn a_refused_connection_is_a_connect_failure() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let http = client(&format!("http://{addr}"));
        match http.exchange(&post(b"{}", None), 1000).await {
            Err(Failure::Connect(reason)) => assert!(reason.contains("TCP"), "{reason}"),
            other => panic!("{:?}", other.err()),
        }
    }

    /// The test CA's server certificate, for 127.0.0.1.
    fn tls_acceptor() -> tokio_rustls::TlsAcceptor {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/tls");
        let certs = CertificateDer::pem_file_iter(format!("{dir}/server.pem"))
            .unwrap()
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        let key = PrivateKeyDer::from_pem_file(format!("{dir}/server.key.pem")).unwrap();
        let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        tokio_rustls::TlsAcceptor::from(Arc::new(config))
    }

    fn trusting_the_test_ca() -> rustls::ClientConfig {
        use rustls::pki_types::pem::PemObject;
        let ca = rustls::pki_types::CertificateDer::from_pem_file(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/tls/ca.pem"
        ))
        .unwrap();
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca).unwrap();
        rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth()
    }

    #[tokio::test]
    async fn https_carries_requests_on_one_connection_and_checks_the_certificate() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let acceptor = tls_acceptor();
        let accepted = tokio::spawn(async move {
            let mut handshakes = 0;
            let mut requests = Vec::new();
            while let Ok((socket, _)) = listener.accept().await {
                let Ok(mut tls) = acceptor.accept(socket).await else {
                    continue; // the client that did not trust the certificate
                };
                handshakes += 1;
                assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
                let mut buf = vec![0u8; 4096];
                while let Ok(n) = tls.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                    requests.push(String::from_utf8_lossy(&buf[..n]).into_owned());
                    tls.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                        .await
                        .unwrap();
                }
                break;
            }
            (handshakes, requests)
        });
        let url = url::Url::parse(&format!("https://{addr}")).unwrap();
        // The webpki roots do not know the test CA: no connection, so nothing was sent.
        let strict = Http1::new(&url, None).unwrap();
        match strict.exchange(&post(b"{}", None), 1000).await {
            Err(Failure::Connect(reason)) => {
                assert!(reason.contains("TLS handshake"), "{reason}")
            }
            other => panic!("{:?}", other.err()),
        }
        let http = Http1::new(&url, Some(trusting_the_test_ca())).unwrap();
        for _ in 0..3 {
            let response = http.exchange(&post(b"{}", None), 1000).await.unwrap();
            assert_eq!(&response.body[..], b"ok");
        }
        drop(http);
        let (handshakes, requests) = accepted.await.unwrap();
        assert_eq!(handshakes, 1, "three requests, one TLS connection");
        assert_eq!(requests.len(), 3);
        assert!(requests[0].starts_with(&format!("POST /wallets HTTP/1.1\r\nhost: {addr}\r\n")));
    }
}
