//! The client's defences against hostile or broken surroundings: explicit proxies only, rustls
//! whatever the build turns on, bounded response bodies, paths that are sent as signed, hung
//! keys that fail instead of hang, and secrets that never reach an error.
#![cfg(all(feature = "simulator", feature = "client"))]

mod common;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dfns_signer::protocol::{Method, Payload};
use dfns_signer::software::SoftwareKey;
use dfns_signer::{
    Algorithm, BackendError, ClientError, CredentialSigner, DfnsClient, Error, KeyBackend,
    ProtocolError, PublicKey,
};
use secrecy::SecretString;
use serde_json::json;

/// A TCP listener that records the first bytes of each connection it gets, answers nothing and
/// closes.
fn recording_listener() -> (String, Arc<std::sync::Mutex<Vec<Vec<u8>>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let record = seen.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            stream
                .set_read_timeout(Some(Duration::from_secs(2)))
                .unwrap();
            let mut buf = vec![0u8; 4096];
            let n = stream.read(&mut buf).unwrap_or(0);
            buf.truncate(n);
            record.lock().unwrap().push(buf);
        }
    });
    (addr, seen)
}

#[tokio::test]
async fn an_explicit_proxy_sees_only_a_connect_for_https() {
    let (proxy, seen) = recording_listener();
    let client = DfnsClient::builder()
        .base_url("https://api.dfns.example")
        .auth_token(SecretString::from("bearer-secret-4711".to_owned()))
        .proxy(format!("http://{proxy}"))
        .timeout(Duration::from_secs(3))
        .build()
        .unwrap();
    let _ = client
        .request(Method::Get, "/wallets", Payload::empty())
        .await
        .unwrap_err();
    let seen = seen.lock().unwrap();
    let first = String::from_utf8_lossy(seen.first().expect("the proxy was used"));
    assert!(first.starts_with("CONNECT api.dfns.example:443"), "{first}");
    assert!(!first.contains("bearer-secret-4711"), "{first}");
}

#[test]
fn a_proxy_with_an_http_base_url_is_refused() {
    let err = DfnsClient::builder()
        .base_url("http://127.0.0.1:8080")
        .proxy("http://127.0.0.1:3128")
        .build()
        .unwrap_err();
    assert!(err.to_string().contains("in clear"), "{err}");
}

/// With the `dfns-sdk` feature the official crate turns on reqwest's native-tls; our client must
/// stay on rustls. OpenSSL's default ClientHello offers CBC suites (0xc013, 0xc014, 0x009c…),
/// rustls offers none: the first bytes on the wire tell the two apart.
#[tokio::test]
async fn the_client_speaks_rustls() {
    let (server, seen) = recording_listener();
    let client = DfnsClient::builder()
        .base_url(format!("https://{server}"))
        .timeout(Duration::from_secs(3))
        .build()
        .unwrap();
    let _ = client
        .request(Method::Get, "/wallets", Payload::empty())
        .await
        .unwrap_err();
    let seen = seen.lock().unwrap();
    let hello = seen.first().expect("a ClientHello");
    assert_eq!(hello.first(), Some(&0x16), "a TLS handshake record");
    let suites = client_hello_suites(hello);
    assert!(!suites.is_empty(), "no cipher suites parsed");
    for cbc in [0xc013u16, 0xc014, 0x009c, 0x002f, 0x0035] {
        assert!(
            !suites.contains(&cbc),
            "offers CBC/RSA suite {cbc:#06x}: not rustls ({suites:04x?})"
        );
    }
    assert!(suites.contains(&0x1301), "TLS 1.3 AES-128-GCM offered");
}

/// The cipher suites of a TLS ClientHello record.
fn client_hello_suites(record: &[u8]) -> Vec<u16> {
    // record header (5) | handshake header (4) | version (2) | random (32) | session id
    let mut at = 5 + 4 + 2 + 32;
    let Some(&sid_len) = record.get(at) else {
        return Vec::new();
    };
    at += 1 + sid_len as usize;
    let Some(len) = record.get(at..at + 2) else {
        return Vec::new();
    };
    let len = u16::from_be_bytes([len[0], len[1]]) as usize;
    at += 2;
    record
        .get(at..at + len)
        .unwrap_or_default()
        .chunks(2)
        .filter(|c| c.len() == 2)
        .map(|c| u16::from_be_bytes([c[0], c[1]]))
        .collect()
}

/// A server that answers every request with a body of `total` bytes, announced with
/// Content-Length or streamed chunked; counts the bytes it managed to write.
fn big_answer_server(total: u64, chunked: bool) -> (String, Arc<AtomicU64>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = format!("http://{}", listener.local_addr().unwrap());
    let written = Arc::new(AtomicU64::new(0));
    let count = written.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut buf = [0u8; 4096];
            let _ = stream.read(&mut buf);
            let head = if chunked {
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
                    .to_owned()
            } else {
                format!("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {total}\r\n\r\n")
            };
            if stream.write_all(head.as_bytes()).is_err() {
                continue;
            }
            let block = vec![b'x'; 64 * 1024];
            let mut sent = 0u64;
            while sent < total {
                let ok = if chunked {
                    stream
                        .write_all(format!("{:x}\r\n", block.len()).as_bytes())
                        .and_then(|()| stream.write_all(&block))
                        .and_then(|()| stream.write_all(b"\r\n"))
                } else {
                    stream.write_all(&block)
                };
                if ok.is_err() {
                    break;
                }
                sent += block.len() as u64;
                count.fetch_add(block.len() as u64, Ordering::Relaxed);
            }
        }
    });
    (addr, written)
}

#[tokio::test]
async fn oversize_answers_are_refused_without_being_read() {
    // Announced: refused from the header alone.
    let (url, written) = big_answer_server(64 * 1024 * 1024, false);
    let client = DfnsClient::builder().base_url(&url).build().unwrap();
    let err = client
        .request(Method::Get, "/wallets", Payload::empty())
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Client(ClientError::ResponseTooLarge {
                limit: 8_388_608,
                ..
            })
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("max_response_bytes"), "{err}");

    // Streamed without a length: read up to the cap, then given up; the server could not push
    // its gigabyte.
    let (url, written_chunked) = big_answer_server(1024 * 1024 * 1024, true);
    let client = DfnsClient::builder()
        .base_url(&url)
        .max_response_bytes(256 * 1024)
        .build()
        .unwrap();
    let err = client
        .request(Method::Get, "/wallets", Payload::empty())
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Client(ClientError::ResponseTooLarge { limit: 262_144, .. })
        ),
        "{err:?}"
    );
    std::thread::sleep(Duration::from_millis(300));
    let pushed = written_chunked.load(Ordering::Relaxed);
    assert!(
        pushed < 64 * 1024 * 1024,
        "the client kept reading: {pushed} bytes"
    );
    let _ = written;
}

#[tokio::test]
async fn paths_the_url_parser_would_rewrite_are_refused_before_anything_is_sent() {
    let (sim, client) = common::sim::start().await;
    for path in [
        "/wallets/../auth/credentials",
        "/wallets/%2e%2e/auth/credentials",
        "/wallets\\..\\auth",
        "/wallets/{x}",
    ] {
        let err = client
            .request(Method::Post, path, Payload::json(&json!({})).unwrap())
            .await
            .unwrap_err();
        assert!(
            matches!(err, Error::Protocol(ProtocolError::InvalidPath { .. })),
            "{path}: {err:?}"
        );
    }
    assert!(sim.stats().requests.is_empty(), "{:?}", sim.stats());
}

/// A key that takes `delay` to sign: a stuck HSM.
#[derive(Debug)]
struct SlowKey {
    inner: SoftwareKey,
    delay: Duration,
}

impl KeyBackend for SlowKey {
    fn public_key(&self) -> &PublicKey {
        self.inner.public_key()
    }
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, BackendError> {
        std::thread::sleep(self.delay);
        self.inner.sign(message)
    }
    fn describe(&self) -> String {
        "a slow test key".to_owned()
    }
}

fn slow_key(delay: Duration) -> Arc<dyn KeyBackend> {
    Arc::new(SlowKey {
        inner: SoftwareKey::generate(Algorithm::Ed25519).unwrap(),
        delay,
    })
}

#[tokio::test]
async fn a_stuck_key_fails_the_request_at_the_sign_deadline_and_nothing_is_sent() {
    let (sim, root) = common::sim::start().await;
    let client = DfnsClient::builder()
        .base_url(sim.base_url())
        .auth_token(sim.auth_token().clone())
        .signer(CredentialSigner::new(
            root.signer().unwrap().credential_id(),
            slow_key(Duration::from_secs(3)),
        ))
        .sign_timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let started = Instant::now();
    let err = client
        .create_wallet(&json!({"network": "Bitcoin"}))
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Client(ClientError::SignTimeout { .. })),
        "{err:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert!(err.to_string().contains("a slow test key"), "{err}");
    let stats = sim.stats();
    assert_eq!(stats.requests.get("POST /auth/action"), None, "{stats:?}");
    assert_eq!(stats.requests.get("POST /wallets"), None, "{stats:?}");
}

/// The attestation of a new credential is signed off the runtime and under the same deadline:
/// on a single-threaded runtime a stuck key would otherwise freeze everything.
#[tokio::test(flavor = "current_thread")]
async fn registration_attestation_is_signed_off_the_runtime() {
    let (sim, root) = common::sim::start().await;
    let client = root.clone();
    let deadline_client = common::sim::client_like(&sim, &client)
        .sign_timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    // While the slow attestation runs, the runtime keeps serving: this ticker advances.
    let ticks = Arc::new(AtomicU64::new(0));
    let ticker = {
        let ticks = ticks.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(20)).await;
                ticks.fetch_add(1, Ordering::Relaxed);
            }
        })
    };
    let err = deadline_client
        .register_key_credential(slow_key(Duration::from_secs(2)), "slow", None)
        .await
        .unwrap_err();
    ticker.abort();
    assert!(
        matches!(err, Error::Client(ClientError::SignTimeout { .. })),
        "{err:?}"
    );
    assert!(
        ticks.load(Ordering::Relaxed) >= 5,
        "the runtime was blocked"
    );
}

#[test]
fn base_url_credentials_are_never_echoed() {
    for url in [
        "https://admin:hunter2-secret@api.dfns.io",
        "https://admin:hunter2-secret@exa mple.com/",
        "ftp://admin:hunter2-secret@api.dfns.io",
    ] {
        let err = DfnsClient::builder().base_url(url).build().unwrap_err();
        let text = format!("{err} {err:?}");
        assert!(!text.contains("hunter2-secret"), "{text}");
    }
}

/// A hostile server's error message reaches the caller without terminal escapes or forged log
/// lines, and a hostile success body's values never reach a decode error.
#[tokio::test]
async fn hostile_answers_are_defanged() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        let answers = [
            (403, "{\"message\":\"no\\u001b[2J\\nWARN forged\"}".to_owned()),
            (
                200,
                r#"{"challenge":"YWJj","challengeIdentifier":"x","allowCredentials":"stolen-token-value-99"}"#
                    .to_owned(),
            ),
        ];
        for (stream, (status, body)) in listener.incoming().zip(answers) {
            let Ok(mut stream) = stream else { return };
            let mut buf = [0u8; 4096];
            let _ = stream.read(&mut buf);
            let _ = write!(
                stream,
                "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    let client = DfnsClient::builder().base_url(&url).build().unwrap();
    let err = client
        .request(Method::Get, "/wallets", Payload::empty())
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(!text.chars().any(char::is_control), "{text:?}");
    assert!(text.contains("WARN forged"), "{text}");

    let err = client
        .user_action_init(Method::Post, "/wallets", &Payload::empty())
        .await
        .unwrap_err();
    let text = format!("{err} {err:?}");
    assert!(!text.contains("stolen-token-value-99"), "{text}");
}
