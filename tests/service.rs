//! The signing service (`dfns_signer::service`, `dfns-signer serve`) against the simulator,
//! signing with a SoftHSM key: the approval proxy (plain HTTP from the test, as curl would send
//! it), the remote-signer endpoint `/v1/sign`, refusals that reach nothing upstream, two
//! instances behind a round-robin proxy, 1,000 requests from 16 clients, the Unix socket and TLS.
//! The official SDKs through `clients/typescript` and `clients/python` are in `ts_sdk.rs` and
//! `py_sdk.rs`.
//!
//! Needs SoftHSM (`DFNS_SIGNER_SKIP_HARDWARE=1` skips outside CI).

#![cfg(all(feature = "serve", feature = "pkcs11", feature = "simulator"))]

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use common::service::{send, Fixture, Options};
use common::softhsm::hsm;
use dfns_signer::simulator::Faults;
use serde_json::{json, Value};

/// Requests the simulator has received, all endpoints together.
fn upstream_requests(f: &Fixture) -> u64 {
    f.sim.stats().requests.values().sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_proxy_signs_what_the_policy_allows_and_nothing_else_reaches_upstream() {
    let Some(h) = hsm() else { return };
    let faults = Faults {
        policy_pending_paths: vec!["POST /wallets/{id}/signatures".into()],
        ..Faults::default()
    };
    let f = Fixture::start(
        &h,
        "proxy",
        Options {
            faults,
            ..Options::default()
        },
    )
    .await;
    let (_service, url) = f.serve_default().await;
    let bearer = f.bearer();
    let pay = Some(f.payments.secret.as_str());

    // Allowed: the service runs init → sign (SoftHSM) → complete, then the request.
    let before = f.sim.stats();
    let (status, wallet, _) = send(
        &url,
        "POST",
        "/wallets",
        pay,
        Some(&bearer),
        Some(&json!({"network": "Bitcoin"})),
    )
    .await;
    assert_eq!(status, 200, "{wallet}");
    let wallet_id = wallet["id"].as_str().unwrap().to_owned();
    assert!(wallet_id.starts_with("wa-"), "{wallet}");
    let after = f.sim.stats();
    assert_eq!(after.user_actions_used, before.user_actions_used + 1);
    assert_eq!(after.side_effects, before.side_effects + 1);

    // Outside the policy: a 403 naming the rule, and not one request upstream.
    let seen = upstream_requests(&f);
    let (status, refused, headers) = send(
        &url,
        "POST",
        "/wallets",
        pay,
        Some(&bearer),
        Some(&json!({"network": "Tron"})),
    )
    .await;
    assert_eq!(status, 403, "{refused}");
    assert_eq!(refused["error"]["id"], "dfns-signer.policy-denied");
    let message = refused["error"]["message"].as_str().unwrap();
    assert!(message.contains("client `payments`"), "{message}");
    assert!(message.contains(r#"rule 1 (POST /wallets) allows it only with network in ["Bitcoin", "EthereumSepolia"]; the body has "Tron""#), "{message}");
    assert_eq!(headers["x-dfns-signer-refused"], "policy");
    // `audit` may not create wallets at all.
    let audit = Some(f.audit.secret.as_str());
    let (status, refused, _) = send(
        &url,
        "POST",
        "/wallets",
        audit,
        Some(&bearer),
        Some(&json!({"network": "Bitcoin"})),
    )
    .await;
    assert_eq!(status, 403);
    assert!(
        refused["error"]["message"]
            .as_str()
            .unwrap()
            .contains("no rule allows POST /wallets"),
        "{refused}"
    );
    // A wrong secret is refused before anything else.
    let (status, refused, _) = send(
        &url,
        "POST",
        "/wallets",
        Some("dss_wrong"),
        Some(&bearer),
        Some(&json!({"network": "Bitcoin"})),
    )
    .await;
    assert_eq!(status, 401);
    assert_eq!(refused["error"]["id"], "dfns-signer.unknown-client");
    assert_eq!(
        upstream_requests(&f),
        seen,
        "refusals reach nothing upstream"
    );

    // Without a client secret the service signs nothing: the request goes on as it came, and
    // Dfns refuses it for want of a user action.
    let issued = f.sim.stats().user_actions_issued;
    let (status, _, _) = send(
        &url,
        "POST",
        "/wallets",
        None,
        Some(&bearer),
        Some(&json!({"network": "Bitcoin"})),
    )
    .await;
    assert!(status == 401 || status == 403, "{status}");
    assert_eq!(f.sim.stats().user_actions_issued, issued);

    // A request that needs no user action passes through, with or without a secret.
    let (status, listed, _) = send(
        &url,
        "GET",
        &format!("/wallets/{wallet_id}"),
        None,
        Some(&bearer),
        None,
    )
    .await;
    assert_eq!(status, 200, "{listed}");
    assert_eq!(listed["id"], wallet_id.as_str());

    // A 202 (a Dfns policy awaiting approval) comes back a 202, body as Dfns sent it.
    let body = json!({"kind": "Hash", "hash": format!("0x{}", "42".repeat(32))});
    let (status, pending, _) = send(
        &url,
        "POST",
        &format!("/wallets/{wallet_id}/signatures"),
        pay,
        Some(&bearer),
        Some(&body),
    )
    .await;
    assert_eq!(status, 202, "{pending}");
    assert!(pending.is_object(), "{pending}");

    // Without a Dfns token the service does not start a user action.
    let seen = upstream_requests(&f);
    let (status, refused, _) = send(
        &url,
        "POST",
        "/wallets",
        pay,
        None,
        Some(&json!({"network": "Bitcoin"})),
    )
    .await;
    assert_eq!(status, 401);
    assert_eq!(refused["error"]["id"], "dfns-signer.no-auth-token");
    assert_eq!(upstream_requests(&f), seen);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rate_limit_refuses_with_retry_after_and_reaches_nothing_upstream() {
    let Some(h) = hsm() else { return };
    let options = Options {
        payments_rate: Some("2/min"),
        ..Options::default()
    };
    let f = Fixture::start(&h, "rate", options).await;
    let (_service, url) = f.serve_default().await;
    let bearer = f.bearer();
    let pay = Some(f.payments.secret.as_str());
    let body = json!({"network": "Bitcoin"});
    for _ in 0..2 {
        let (status, answer, _) =
            send(&url, "POST", "/wallets", pay, Some(&bearer), Some(&body)).await;
        assert_eq!(status, 200, "{answer}");
    }
    let seen = upstream_requests(&f);
    let (status, refused, headers) =
        send(&url, "POST", "/wallets", pay, Some(&bearer), Some(&body)).await;
    assert_eq!(status, 429, "{refused}");
    assert!(refused["error"]["message"]
        .as_str()
        .unwrap()
        .contains("rate limit of 2/min"));
    let wait: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=31).contains(&wait), "{wait}");
    assert_eq!(upstream_requests(&f), seen);
}

/// The remote-signer flow by hand, as an SDK and its adapter run it.
async fn init(
    url: &str,
    secret: Option<&str>,
    bearer: &str,
    method: &str,
    path: &str,
    body: &Value,
) -> (u16, Value) {
    let init = json!({
        "userActionPayload": body.to_string(),
        "userActionHttpMethod": method,
        "userActionHttpPath": path,
        "userActionServerKind": "Api",
    });
    let (status, answer, _) = send(
        url,
        "POST",
        "/auth/action/init",
        secret,
        Some(bearer),
        Some(&init),
    )
    .await;
    (status, answer)
}

async fn sign(url: &str, secret: Option<&str>, challenge: &Value) -> (u16, Value) {
    let (status, answer, _) = send(
        url,
        "POST",
        "/v1/sign",
        secret,
        None,
        Some(&json!({"challenge": challenge})),
    )
    .await;
    (status, answer)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v1_sign_signs_only_challenges_the_service_sealed_for_an_allowed_request() {
    let Some(h) = hsm() else { return };
    let f = Fixture::start(&h, "sign", Options::default()).await;
    let (_service, url) = f.serve_default().await;
    let bearer = f.bearer();
    let pay = Some(f.payments.secret.as_str());
    let body = json!({"network": "EthereumSepolia"});

    // Init through the service (no secret: the TypeScript SDK cannot send one), sign, complete
    // and send through the service.
    let (status, challenge) = init(&url, None, &bearer, "POST", "/wallets", &body).await;
    assert_eq!(status, 200, "{challenge}");
    assert!(challenge["dfnsSignerApproval"].is_string(), "{challenge}");
    let (status, signed) = sign(&url, pay, &challenge).await;
    assert_eq!(status, 200, "{signed}");
    assert_eq!(signed["firstFactor"]["kind"], "Key");
    assert_eq!(
        signed["firstFactor"]["credentialAssertion"]["credId"],
        f.credential_id.as_str()
    );
    let complete = json!({"challengeIdentifier": challenge["challengeIdentifier"], "firstFactor": signed["firstFactor"]});
    let (status, token, _) = send(
        &url,
        "POST",
        "/auth/action",
        None,
        Some(&bearer),
        Some(&complete),
    )
    .await;
    assert_eq!(status, 200, "{token}");
    let client = reqwest::Client::new();
    let created = client
        .post(format!("{url}/wallets"))
        .header("Authorization", &bearer)
        .header("X-DFNS-USERACTION", token["userAction"].as_str().unwrap())
        .header("Content-Type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 200);

    // A challenge straight from the simulator, not through the service: refused.
    let (status, direct) = init(f.sim.base_url(), None, &bearer, "POST", "/wallets", &body).await;
    assert_eq!(status, 200, "{direct}");
    let (status, refused) = sign(&url, pay, &direct).await;
    assert_eq!(status, 403, "{refused}");
    assert!(
        refused["error"]["message"]
            .as_str()
            .unwrap()
            .contains("did not come through"),
        "{refused}"
    );
    // The same with a sealed approval copied from another challenge.
    let mut spliced = direct.clone();
    spliced["dfnsSignerApproval"] = challenge["dfnsSignerApproval"].clone();
    let (status, refused) = sign(&url, pay, &spliced).await;
    assert_eq!(status, 403);
    assert!(
        refused["error"]["message"]
            .as_str()
            .unwrap()
            .contains("does not verify"),
        "{refused}"
    );

    // An init outside the policy, sealed without a client: refused when signing.
    let (status, tron) = init(
        &url,
        None,
        &bearer,
        "POST",
        "/wallets",
        &json!({"network": "Tron"}),
    )
    .await;
    assert_eq!(status, 200);
    let (status, refused) = sign(&url, pay, &tron).await;
    assert_eq!(status, 403);
    assert_eq!(refused["error"]["id"], "dfns-signer.policy-denied");
    // With the client named at init (the Python SDK can send the header), refused at init, and
    // the init never reaches the simulator.
    let inits = |f: &Fixture| {
        f.sim
            .stats()
            .requests
            .get("POST /auth/action/init")
            .copied()
            .unwrap_or(0)
    };
    let before = inits(&f);
    let (status, refused) = init(
        &url,
        pay,
        &bearer,
        "POST",
        "/wallets",
        &json!({"network": "Tron"}),
    )
    .await;
    assert_eq!(status, 403, "{refused}");
    assert_eq!(inits(&f), before);
    // Asked for by `payments`, signed by `audit`: refused.
    let (status, named) = init(&url, pay, &bearer, "POST", "/wallets", &body).await;
    assert_eq!(status, 200);
    let (status, refused) = sign(&url, Some(&f.audit.secret), &named).await;
    assert_eq!(status, 403);
    assert!(refused["error"]["message"]
        .as_str()
        .unwrap()
        .contains("asked for by client `payments`"));
    // No secret, or a wrong one.
    assert_eq!(sign(&url, None, &named).await.0, 401);
    assert_eq!(sign(&url, Some("dss_nope"), &named).await.0, 401);
    // Not a challenge.
    assert_eq!(sign(&url, pay, &json!({"nothing": 1})).await.0, 400);
}

/// A TCP proxy that sends each new connection to the next backend in turn, and counts them.
async fn round_robin(backends: Vec<std::net::SocketAddr>) -> (String, Arc<Vec<AtomicUsize>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let counts: Arc<Vec<AtomicUsize>> =
        Arc::new(backends.iter().map(|_| AtomicUsize::new(0)).collect());
    let served = counts.clone();
    tokio::spawn(async move {
        let mut next = 0;
        loop {
            let (mut inbound, _) = listener.accept().await.unwrap();
            let i = next % backends.len();
            next += 1;
            served[i].fetch_add(1, Ordering::SeqCst);
            let backend = backends[i];
            tokio::spawn(async move {
                let mut outbound = tokio::net::TcpStream::connect(backend).await.unwrap();
                let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
            });
        }
    });
    (url, counts)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_sharing_the_approval_key_serve_each_others_challenges() {
    let Some(h) = hsm() else { return };
    let mut f = Fixture::start(&h, "pair", Options::default()).await;
    let (a, url_a) = f.serve_default().await;
    let second = f.write_config("second.toml", None, None);
    let b = f.serve(&second).await;
    let url_b = b.tcp_url().unwrap();
    let bearer = f.bearer();
    let pay = Some(f.payments.secret.as_str());
    let body = json!({"network": "Bitcoin"});

    // Sealed by one, signed by the other.
    let (_, challenge) = init(&url_a, None, &bearer, "POST", "/wallets", &body).await;
    let (status, signed) = sign(&url_b, pay, &challenge).await;
    assert_eq!(status, 200, "{signed}");

    // Behind a round-robin proxy, a new connection per request: every flow crosses instances.
    let (proxy, counts) = round_robin(vec![a.tcp_addr().unwrap(), b.tcp_addr().unwrap()]).await;
    for _ in 0..3 {
        let (status, challenge) = init(&proxy, None, &bearer, "POST", "/wallets", &body).await;
        assert_eq!(status, 200, "{challenge}");
        let (status, signed) = sign(&proxy, pay, &challenge).await;
        assert_eq!(status, 200, "{signed}");
        let complete = json!({"challengeIdentifier": challenge["challengeIdentifier"], "firstFactor": signed["firstFactor"]});
        let (status, token, _) = send(
            &proxy,
            "POST",
            "/auth/action",
            None,
            Some(&bearer),
            Some(&complete),
        )
        .await;
        assert_eq!(status, 200, "{token}");
        let (status, _, _) =
            send(&proxy, "POST", "/wallets", pay, Some(&bearer), Some(&body)).await;
        assert_eq!(status, 200);
    }
    let served: Vec<usize> = counts.iter().map(|c| c.load(Ordering::SeqCst)).collect();
    assert_eq!(served, vec![6, 6], "connections alternate");

    // An instance with another approval key refuses the others' challenges.
    let other_key = f.dir.join("other.key");
    common::service::write_private(
        &other_key,
        "a different approval key, not shared with the others\n",
    );
    let text = std::fs::read_to_string(&second).unwrap().replace(
        &f.approval_key.display().to_string(),
        &other_key.display().to_string(),
    );
    let third = f.dir.join("third.toml");
    common::service::write_private(&third, &text);
    let c = f.serve(&third).await;
    let (status, refused) = sign(&c.tcp_url().unwrap(), pay, &challenge).await;
    assert_eq!(status, 403);
    assert!(refused["error"]["fix"]
        .as_str()
        .unwrap()
        .contains("same [service] approval_key"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_requests_from_sixteen_clients_use_each_user_action_once() {
    let Some(h) = hsm() else { return };
    let options = Options {
        load_clients: 16,
        ..Options::default()
    };
    let mut f = Fixture::start(&h, "load", options).await;
    // Every approval on the audit chain, across rotations.
    let audit = f.dir.join("audit.log");
    f.extra_service = format!(
        "audit_log = \"{}\"\naudit_rotate_bytes = 65536",
        audit.display()
    );
    let config = f.write_config("load.toml", None, None);
    let service = f.serve(&config).await;
    let url = service.tcp_url().unwrap();
    let before = f.sim.stats();
    let bearer = Arc::new(f.bearer());
    let http = reqwest::Client::new();
    let mut tasks = tokio::task::JoinSet::new();
    for (i, client) in f.load.iter().enumerate() {
        let (url, bearer, http, secret) = (
            url.clone(),
            bearer.clone(),
            http.clone(),
            client.secret.clone(),
        );
        // 1,000 in all: 8 clients send 63, 8 send 62.
        let count = if i < 8 { 63 } else { 62 };
        tasks.spawn(async move {
            let mut ok = 0;
            for n in 0..count {
                let body = json!({"network": "Bitcoin", "name": format!("load {i} {n}")});
                let response = http
                    .post(format!("{url}/wallets"))
                    .header("X-Dfns-Signer-Client", &secret)
                    .header("Authorization", bearer.as_str())
                    .header("Content-Type", "application/json")
                    .body(body.to_string())
                    .send()
                    .await
                    .unwrap();
                assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
                ok += 1;
            }
            ok
        });
    }
    let mut done = 0;
    while let Some(ok) = tasks.join_next().await {
        done += ok.unwrap();
    }
    assert_eq!(done, 1000);
    let after = f.sim.stats();
    assert_eq!(after.user_actions_issued - before.user_actions_issued, 1000);
    assert_eq!(after.user_actions_used - before.user_actions_used, 1000);
    assert_eq!(after.side_effects - before.side_effects, 1000);
    assert!(
        after
            .rejections
            .keys()
            .all(|r| !r.contains("already been used")),
        "{:?}",
        after.rejections
    );
    let files = dfns_signer::audit::chain_files(&audit);
    assert!(files.len() > 1, "the log rotated: {files:?}");
    let report = dfns_signer::audit::verify(&files).unwrap();
    assert!(report.ok(), "{:?}", report.broken);
    // An approved and a completed line for each of the 1,000.
    assert_eq!(report.lines, 2000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_unix_socket_is_private_to_its_owner() {
    use std::os::unix::fs::PermissionsExt;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Some(h) = hsm() else { return };
    let mut f = Fixture::start(&h, "unix", Options::default()).await;
    let socket = f.dir.join("signer.sock");
    let config = f.write_config(
        "unix.toml",
        None,
        Some(&format!("unix = \"{}\"", socket.display())),
    );
    let service = f.serve(&config).await;
    let mode = std::fs::metadata(&socket).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    // A plain HTTP/1.1 request over the socket, as `curl --unix-socket` sends it.
    let body = json!({"network": "Bitcoin"}).to_string();
    let request = format!(
        "POST /wallets HTTP/1.1\r\nHost: signer\r\nAuthorization: {}\r\nX-Dfns-Signer-Client: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        f.bearer(),
        f.payments.secret,
        body.len()
    );
    let mut stream = tokio::net::UnixStream::connect(&socket).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("\"network\":\"Bitcoin\""), "{answer}");
    // A second instance refuses to take over a live socket; after shutdown the file is gone.
    let err = dfns_signer::service::Service::open(
        dfns_signer::service::ServiceConfig::load(&config).unwrap(),
    )
    .unwrap()
    .bind()
    .await
    .unwrap_err();
    assert!(
        err.to_string().contains("another process is serving"),
        "{err}"
    );
    service.shutdown().await;
    assert!(!socket.exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_client_certificates_refuses_a_client_without_one() {
    let Some(h) = hsm() else { return };
    let tls = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tls");
    let mut f = Fixture::start(&h, "tls", Options::default()).await;
    // The key file must be private, as the service checks: copy it so.
    let key = f.dir.join("server.key.pem");
    common::service::write_private(
        &key,
        &std::fs::read_to_string(tls.join("server.key.pem")).unwrap(),
    );
    let listen = format!(
        "tls_cert = \"{}\"\ntls_key = \"{}\"\ntls_client_ca = \"{}\"",
        tls.join("server.pem").display(),
        key.display(),
        tls.join("ca.pem").display()
    );
    let config = f.write_config("tls.toml", None, Some(&listen));
    let service = f.serve(&config).await;
    let url = service.tcp_url().unwrap();
    assert!(url.starts_with("https://127.0.0.1:"), "{url}");
    let ca = reqwest::Certificate::from_pem(&std::fs::read(tls.join("ca.pem")).unwrap()).unwrap();
    let identity = [
        std::fs::read(tls.join("client.pem")).unwrap(),
        std::fs::read(tls.join("client.key.pem")).unwrap(),
    ]
    .concat();
    // rustls explicitly: with every feature on, the official Rust SDK also builds reqwest's
    // native-tls backend, which would be the default and cannot take a PEM identity.
    let with_cert = reqwest::Client::builder()
        .use_rustls_tls()
        .add_root_certificate(ca.clone())
        .identity(reqwest::Identity::from_pem(&identity).unwrap())
        .build()
        .unwrap();
    let response = with_cert
        .post(format!("{url}/wallets"))
        .header("Authorization", f.bearer())
        .header("X-Dfns-Signer-Client", &f.payments.secret)
        .header("Content-Type", "application/json")
        .body(json!({"network": "Bitcoin"}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let without = reqwest::Client::builder()
        .use_rustls_tls()
        .add_root_certificate(ca)
        .build()
        .unwrap();
    let refused = without.get(format!("{url}/wallets")).send().await;
    assert!(
        refused.is_err(),
        "a client without a certificate got an answer"
    );
}
