//! A scripted HTTP/1.1 server for conformance tests: answers each request with the next scripted
//! response and records exactly what arrived (request line, headers in order, body bytes).
//! Deliberately tiny and independent of the client under test.

#![allow(dead_code)]

use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

/// A request as it arrived.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub target: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Recorded {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A response to play.
#[derive(Debug, Clone)]
pub struct Scripted {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

pub struct MockServer {
    pub base_url: String,
    recorded: Arc<Mutex<Vec<Recorded>>>,
}

impl MockServer {
    pub async fn start(script: Vec<Scripted>) -> MockServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base_url = format!("http://{}", listener.local_addr().unwrap());
        let recorded = Arc::new(Mutex::new(Vec::new()));
        let script = Arc::new(Mutex::new(script.into_iter()));
        let rec = recorded.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let rec = rec.clone();
                let script = script.clone();
                tokio::spawn(async move {
                    let (read, mut write) = stream.into_split();
                    let mut reader = BufReader::new(read);
                    loop {
                        let mut line = String::new();
                        if reader.read_line(&mut line).await.unwrap_or(0) == 0 {
                            return;
                        }
                        let mut parts = line.trim_end().splitn(3, ' ');
                        let method = parts.next().unwrap_or_default().to_owned();
                        let target = parts.next().unwrap_or_default().to_owned();
                        let mut headers = Vec::new();
                        loop {
                            let mut h = String::new();
                            reader.read_line(&mut h).await.unwrap();
                            let h = h.trim_end();
                            if h.is_empty() {
                                break;
                            }
                            let (k, v) = h.split_once(':').unwrap();
                            headers.push((k.trim().to_owned(), v.trim().to_owned()));
                        }
                        let len = headers
                            .iter()
                            .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
                            .map(|(_, v)| v.parse::<usize>().unwrap())
                            .unwrap_or(0);
                        let mut body = vec![0; len];
                        reader.read_exact(&mut body).await.unwrap();
                        rec.lock().unwrap().push(Recorded {
                            method,
                            target,
                            headers,
                            body,
                        });
                        let next = script.lock().unwrap().next();
                        let resp = next.unwrap_or(Scripted {
                            status: 599,
                            headers: vec![],
                            body: b"mock server: script exhausted".to_vec(),
                        });
                        let mut out = format!(
                            "HTTP/1.1 {} X\r\ncontent-length: {}\r\n",
                            resp.status,
                            resp.body.len()
                        );
                        for (k, v) in &resp.headers {
                            if !k.eq_ignore_ascii_case("content-length")
                                && !k.eq_ignore_ascii_case("transfer-encoding")
                            {
                                out.push_str(&format!("{k}: {v}\r\n"));
                            }
                        }
                        out.push_str("\r\n");
                        let mut bytes = out.into_bytes();
                        bytes.extend_from_slice(&resp.body);
                        if write.write_all(&bytes).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        MockServer { base_url, recorded }
    }

    pub fn recorded(&self) -> Vec<Recorded> {
        self.recorded.lock().unwrap().clone()
    }
}
