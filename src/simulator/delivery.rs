//! Sends webhook events: one HTTP/1.1 `POST` per delivery, on its own connection, signed as Dfns
//! signs (`X-DFNS-WEBHOOK-SIGNATURE: sha256=<hex HMAC-SHA256(body, secret)>`).
//!
//! Written on a bare `TcpStream` rather than an HTTP client so the simulator needs none (it
//! must not share code with the client it checks). Only `http://` URLs on a loopback address
//! are delivered to: the simulator is a test tool, and its traffic stays on this machine.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::webhooks::Delivery;

/// How long one delivery may take, connection to status line.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(5);

/// What the receiver answered: its HTTP status and (the start of) its body; or why nothing was
/// delivered.
pub(crate) type DeliveryResult = Result<(u16, String), String>;

/// The `X-DFNS-WEBHOOK-SIGNATURE` value for `body`.
pub(crate) fn signature_header(secret: &str, body: &[u8]) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes());
    format!(
        "sha256={}",
        hex::encode(ring::hmac::sign(&key, body).as_ref())
    )
}

/// The socket address and request target of a loopback `http://` URL, or why it is refused.
fn loopback_target(url: &str) -> Result<(SocketAddr, String, String), String> {
    let parsed = url::Url::parse(url).map_err(|e| format!("webhook URL does not parse: {e}"))?;
    if parsed.scheme() != "http" {
        return Err("the simulator delivers only to http:// loopback URLs".into());
    }
    let ip: IpAddr = match parsed.host() {
        Some(url::Host::Ipv4(ip)) => ip.into(),
        Some(url::Host::Ipv6(ip)) => ip.into(),
        Some(url::Host::Domain("localhost")) => IpAddr::from([127, 0, 0, 1]),
        _ => return Err("the simulator delivers only to loopback addresses".into()),
    };
    if !ip.is_loopback() {
        return Err("the simulator delivers only to loopback addresses".into());
    }
    let port = parsed.port_or_known_default().unwrap_or(80);
    let host = parsed.host_str().unwrap_or_default().to_owned();
    let mut target = parsed.path().to_owned();
    if let Some(query) = parsed.query() {
        target.push('?');
        target.push_str(query);
    }
    Ok((SocketAddr::new(ip, port), host, target))
}

/// Sends one delivery and reads the receiver's status line and body (at most 4 KiB).
pub(crate) async fn deliver(delivery: &Delivery) -> DeliveryResult {
    let (addr, host, target) = loopback_target(&delivery.url)?;
    let send = async {
        let mut stream = TcpStream::connect(addr)
            .await
            .map_err(|e| format!("cannot connect to {addr}: {e}"))?;
        let request = format!(
            "POST {target} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nX-DFNS-WEBHOOK-SIGNATURE: {}\r\nUser-Agent: dfns-signer-simulator\r\n\
             Connection: close\r\n\r\n",
            delivery.body.len(),
            signature_header(&delivery.secret, delivery.body.as_bytes()),
        );
        stream
            .write_all(request.as_bytes())
            .await
            .and(stream.write_all(delivery.body.as_bytes()).await)
            .map_err(|e| format!("cannot send to {addr}: {e}"))?;
        let mut answer = Vec::new();
        stream
            .take(4096)
            .read_to_end(&mut answer)
            .await
            .map_err(|e| format!("no answer from {addr}: {e}"))?;
        parse_answer(&answer)
    };
    tokio::time::timeout(DELIVERY_TIMEOUT, send)
        .await
        .unwrap_or_else(|_| Err(format!("no answer from {addr} within {DELIVERY_TIMEOUT:?}")))
}

/// The status code and body of an HTTP/1.x answer.
fn parse_answer(answer: &[u8]) -> DeliveryResult {
    let text = String::from_utf8_lossy(answer);
    let status = text
        .strip_prefix("HTTP/1.")
        .and_then(|rest| rest.get(2..5))
        .and_then(|code| code.parse::<u16>().ok())
        .ok_or("the receiver's answer is not HTTP/1.x")?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default();
    Ok((status, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_http_urls_are_targets() {
        let (addr, host, target) = loopback_target("http://127.0.0.1:8080/hook?x=1").unwrap();
        assert_eq!(
            (addr.port(), host.as_str(), target.as_str()),
            (8080, "127.0.0.1", "/hook?x=1")
        );
        assert!(loopback_target("http://localhost/h").is_ok());
        assert!(loopback_target("http://[::1]:9/h").is_ok());
        for refused in [
            "https://127.0.0.1/h",
            "http://10.0.0.1/h",
            "http://example.com/h",
            "http://192.168.1.1/h",
            "not a url",
        ] {
            assert!(loopback_target(refused).is_err(), "{refused}");
        }
    }

    #[test]
    fn answers_are_read_for_their_status() {
        assert_eq!(
            parse_answer(b"HTTP/1.1 204 No Content\r\n\r\n").unwrap(),
            (204, String::new())
        );
        assert_eq!(
            parse_answer(b"HTTP/1.0 500 Oops\r\nA: b\r\n\r\nbad").unwrap(),
            (500, "bad".into())
        );
        assert!(parse_answer(b"SSH-2.0").is_err());
    }
}
