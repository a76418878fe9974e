//! The signing service as the service tests run it: an in-process simulator, a SoftHSM P-256
//! key registered there as a service account's credential, and `dfns-signer serve`'s library
//! (`dfns_signer::service`) configured from a real file with that key and a few clients.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use dfns_signer::service::{new_client_secret, RunningService, Service, ServiceConfig};
use dfns_signer::simulator::{Faults, Simulator};
use dfns_signer::software::SoftwareKey;
use dfns_signer::{Algorithm, CreateServiceAccount, DfnsClient, KeyUri};
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;

use super::softhsm::{Shared, PIN_ENV};

/// A client of the service: its name and secret.
pub struct Client {
    pub name: String,
    pub secret: String,
}

/// Everything a service test needs.
pub struct Fixture {
    pub sim: Simulator,
    /// The service account whose credential is the SoftHSM key: the callers' Dfns token.
    pub token: SecretString,
    pub credential_id: String,
    /// The SoftHSM key's URI (PIN from the environment).
    pub key_uri: String,
    /// The key's devices (URI, credential id) in failover order: the first is `key_uri`.
    pub devices: Vec<(String, String)>,
    /// Lines added to `[service]` by [`Fixture::write_config`] (an audit log, say).
    pub extra_service: String,
    /// `payments`: may create Bitcoin and EthereumSepolia wallets and sign with any wallet.
    pub payments: Client,
    /// `audit`: may only tag wallets (`PUT /wallets/{walletId}/tags`).
    pub audit: Client,
    /// Extra clients, `load-0` … (same rules as `payments`).
    pub load: Vec<Client>,
    /// The approval key file every instance of this fixture shares.
    pub approval_key: PathBuf,
    pub dir: PathBuf,
}

/// Options of [`Fixture::start`].
#[derive(Default)]
pub struct Options {
    pub faults: Faults,
    /// Extra clients with the `payments` rules.
    pub load_clients: usize,
    /// `rate_limit` of `payments`.
    pub payments_rate: Option<&'static str>,
    /// The key's URI instead of SoftHSM's `algs`/`p256` (a fault-injecting module's, say).
    pub key_uri: Option<String>,
    /// A second device of the key, registered as a second credential of the same user.
    pub second_device: Option<String>,
}

impl Fixture {
    /// Starts the simulator and registers the SoftHSM key (token `algs`, key `p256`).
    pub async fn start(h: &Shared, name: &str, options: Options) -> Fixture {
        let root = Arc::new(SoftwareKey::generate(Algorithm::Ed25519).unwrap());
        let sim = Simulator::builder()
            .root_public_key_pem(dfns_signer::KeyBackend::public_key(&*root).to_pem())
            .faults(options.faults)
            .start()
            .await
            .unwrap();
        let admin = DfnsClient::simulator_root(&sim, root).unwrap();
        let key_uri = options.key_uri.clone().unwrap_or_else(|| {
            format!(
                "pkcs11:token=algs;object=p256?module-path={}&pin-source=env:{PIN_ENV}",
                h.module.display()
            )
        });
        let key = dfns_signer::open(&KeyUri::parse(&key_uri).unwrap()).unwrap();
        let created = admin
            .create_service_account(&CreateServiceAccount {
                name: format!("service-{name}"),
                public_key: key.public_key().to_pem(),
                permission_id: None,
                external_id: None,
                days_valid: None,
            })
            .await
            .unwrap();
        let dir = h.scratch(&format!("service-{name}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let approval_key = dir.join("approval.key");
        write_private(
            &approval_key,
            "an approval key shared by the instances of this test\n",
        );
        let new_client = |name: &str| Client {
            name: name.to_owned(),
            secret: new_client_secret().secret.expose_secret().to_owned(),
        };
        let credential_id = created.credential_id.expect("the credential id");
        let mut devices = vec![(key_uri.clone(), credential_id.clone())];
        if let Some(second) = &options.second_device {
            let account = admin
                .with_auth_token(created.access_token.clone())
                .with_signer(dfns_signer::CredentialSigner::new(
                    credential_id.clone(),
                    key,
                ));
            let second_key = dfns_signer::open(&KeyUri::parse(second).unwrap()).unwrap();
            let registered = account
                .register_key_credential(second_key, "second device", None)
                .await
                .unwrap();
            let id = registered["credentialId"].as_str().unwrap().to_owned();
            devices.push((second.clone(), id));
        }
        let mut fixture = Fixture {
            sim,
            token: created.access_token,
            credential_id,
            key_uri,
            devices,
            extra_service: String::new(),
            payments: new_client("payments"),
            audit: new_client("audit"),
            load: (0..options.load_clients)
                .map(|i| new_client(&format!("load-{i}")))
                .collect(),
            approval_key,
            dir,
        };
        fixture.write_config("service.toml", options.payments_rate, None);
        fixture
    }

    /// Writes a configuration file (mode 0600) for one instance listening on `127.0.0.1:0`
    /// (plus `extra_listen` lines in `[listen]`); returns its path.
    pub fn write_config(
        &mut self,
        file: &str,
        payments_rate: Option<&str>,
        extra_listen: Option<&str>,
    ) -> PathBuf {
        let hash = |c: &Client| hex::encode(sha2::Sha256::digest(c.secret.as_bytes()));
        let payments_rules = r#"
[[clients.rules]]
allow = "POST /wallets"
body.network = ["Bitcoin", "EthereumSepolia"]
[[clients.rules]]
allow = "POST /wallets/{walletId}/signatures"
"#;
        let list = |items: Vec<&str>| match items.as_slice() {
            [one] => format!("\"{one}\""),
            many => format!(
                "[{}]",
                many.iter()
                    .map(|i| format!("\"{i}\""))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        };
        let key = list(self.devices.iter().map(|(k, _)| k.as_str()).collect());
        let cred = list(self.devices.iter().map(|(_, c)| c.as_str()).collect());
        let mut text = format!(
            r#"[service]
upstream = "{upstream}"
approval_key = "file:{approval}"
{extra_service}

[listen]
tcp = "127.0.0.1:0"
{extra_listen}

[[keys]]
name = "hsm"
key = {key}
credential_id = {cred}

[[clients]]
name = "payments"
secret_sha256 = "{payments}"
keys = ["hsm"]
{rate}
{payments_rules}
[[clients]]
name = "audit"
secret_sha256 = "{audit}"
keys = ["hsm"]
[[clients.rules]]
allow = "PUT /wallets/{{walletId}}/tags"
"#,
            upstream = self.sim.base_url(),
            approval = self.approval_key.display(),
            extra_listen = extra_listen.unwrap_or(""),
            extra_service = self.extra_service,
            payments = hash(&self.payments),
            audit = hash(&self.audit),
            rate = payments_rate.map_or(String::new(), |r| format!("rate_limit = \"{r}\"")),
        );
        for client in &self.load {
            text.push_str(&format!(
                "\n[[clients]]\nname = \"{}\"\nsecret_sha256 = \"{}\"\nkeys = [\"hsm\"]\n{payments_rules}",
                client.name,
                hash(client)
            ));
        }
        let path = self.dir.join(file);
        write_private(&path, &text);
        path
    }

    /// Starts one service instance from `config` (a file [`Fixture::write_config`] wrote).
    pub async fn serve(&self, config: &Path) -> RunningService {
        let config = ServiceConfig::load(config).unwrap();
        Service::open(config).unwrap().bind().await.unwrap()
    }

    /// A running instance of the fixture's default configuration, and its base URL.
    pub async fn serve_default(&self) -> (RunningService, String) {
        let running = self.serve(&self.dir.join("service.toml")).await;
        let url = running.tcp_url().unwrap();
        (running, url)
    }

    /// The Dfns token, for an `Authorization` header.
    pub fn bearer(&self) -> String {
        format!("Bearer {}", self.token.expose_secret())
    }
}

use sha2::Digest;

/// Writes a file only its owner may read, as the service demands of its configuration.
pub fn write_private(path: &Path, text: &str) {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let _ = std::fs::remove_file(path);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .unwrap();
    file.write_all(text.as_bytes()).unwrap();
}

/// Sends a request to the service, with the client secret, the Dfns bearer and a JSON body when
/// given: `(status, JSON body (or its text), headers)`.
pub async fn send(
    url: &str,
    method: &str,
    path: &str,
    secret: Option<&str>,
    bearer: Option<&str>,
    body: Option<&Value>,
) -> (u16, Value, reqwest::header::HeaderMap) {
    let client = reqwest::Client::new();
    let mut req = client.request(method.parse().unwrap(), format!("{url}{path}"));
    if let Some(secret) = secret {
        req = req.header("X-Dfns-Signer-Client", secret);
    }
    if let Some(bearer) = bearer {
        req = req.header("Authorization", bearer);
    }
    if let Some(body) = body {
        req = req
            .header("Content-Type", "application/json")
            .body(body.to_string());
    }
    let response = req.send().await.unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let text = response.text().await.unwrap();
    let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, value, headers)
}
