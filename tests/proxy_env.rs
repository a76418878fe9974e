//! Environment proxies are never used: a client pointed at a loopback simulator over plain
//! http would otherwise send the bearer token and the user action, in clear, to whatever
//! `HTTP_PROXY`/`ALL_PROXY` names. Its own test binary, because it sets process-wide
//! environment variables.
#![cfg(all(feature = "simulator", feature = "client"))]

mod common;

use std::net::TcpListener;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use serde_json::json;

#[tokio::test]
async fn environment_proxies_never_see_a_request() {
    let trap = TcpListener::bind("127.0.0.1:0").unwrap();
    let trap_url = format!("http://{}", trap.local_addr().unwrap());
    let connections = Arc::new(AtomicU64::new(0));
    let seen = connections.clone();
    std::thread::spawn(move || {
        for stream in trap.incoming() {
            seen.fetch_add(1, Ordering::SeqCst);
            drop(stream);
        }
    });
    for var in [
        "HTTP_PROXY",
        "http_proxy",
        "HTTPS_PROXY",
        "https_proxy",
        "ALL_PROXY",
        "all_proxy",
    ] {
        std::env::set_var(var, &trap_url);
    }
    std::env::remove_var("NO_PROXY");
    std::env::remove_var("no_proxy");

    let (sim, client) = common::sim::start().await;
    client
        .create_wallet(&json!({"network": "Bitcoin"}))
        .await
        .expect("the call goes straight to the simulator")
        .done()
        .unwrap();
    assert_eq!(connections.load(Ordering::SeqCst), 0, "the proxy was used");
    assert_eq!(sim.stats().user_actions_used, 1);
}
