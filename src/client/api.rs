//! Typed calls for the endpoints this crate owns: credentials (registration, listing,
//! deactivation and activation), service accounts, personal access tokens, login, wallets and
//! wallet signatures. Everything else goes through [`DfnsClient::request`]. Entities come back
//! as `serde_json::Value`: Dfns adds fields often, and a custody backend should not break when
//! it does.

use std::sync::Arc;

use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{DfnsClient, Outcome};
use crate::backend::KeyBackend;
use crate::error::{ClientError, Error};
use crate::protocol::{
    encode_segment, FirstFactor, KeyCredentialInfo, Method, Payload, UserActionChallenge,
};
use crate::signer::{attest, CredentialSigner};

/// The challenge of `POST /auth/credentials/init` (or `/auth/credentials/code/init`).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct CredentialChallenge {
    /// The challenge the new key attests to.
    pub challenge: String,
    /// To send back with the registration.
    pub challenge_identifier: String,
    /// `Key`.
    #[serde(default)]
    pub kind: Option<String>,
    /// The user the credential will belong to, as given.
    #[serde(default)]
    pub user: Option<Value>,
}

/// Body of `POST /auth/service-accounts`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateServiceAccount {
    /// Display name.
    pub name: String,
    /// The credential key's public key, SPKI PEM.
    pub public_key: String,
    /// Permission to grant, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub permission_id: Option<String>,
    /// Idempotency key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub external_id: Option<String>,
    /// Token lifetime in days (at most 730).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub days_valid: Option<u32>,
}

/// A created service account: its long-lived token and the credential to sign with.
#[non_exhaustive]
pub struct CreatedServiceAccount {
    /// The auth token (`accessTokens[0].accessToken`).
    pub access_token: SecretString,
    /// The credential id bound to the public key given, when the answer names it.
    pub credential_id: Option<String>,
    /// The full answer, with the token removed.
    pub body: Value,
}

impl std::fmt::Debug for CreatedServiceAccount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CreatedServiceAccount")
            .field("access_token", &"[REDACTED]")
            .field("credential_id", &self.credential_id)
            .field("body", &self.body)
            .finish()
    }
}

/// Query of `GET /wallets`.
#[derive(Debug, Clone, Default)]
pub struct ListWallets {
    /// Page size.
    pub limit: Option<u32>,
    /// From a previous page's `nextPageToken`.
    pub pagination_token: Option<String>,
}

/// The answer of `/auth/login` and `/auth/login/delegated`, decoded straight into a secret.
#[derive(Deserialize)]
struct TokenAnswer {
    token: SecretString,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
// Field order as the official TypeScript SDK sends it.
struct KeyRegistration<'a> {
    credential_kind: &'a str,
    credential_info: &'a KeyCredentialInfo,
    credential_name: &'a str,
    challenge_identifier: &'a str,
}

impl DfnsClient {
    async fn call(
        &self,
        method: Method,
        path: &str,
        payload: Payload,
    ) -> Result<Outcome<Value>, Error> {
        self.request_json(method, path, payload).await
    }

    async fn call_done(
        &self,
        method: Method,
        path: &str,
        payload: Payload,
    ) -> Result<Value, Error> {
        super::expect_done(self.call(method, path, payload).await?, method, path)
    }

    /// Like `call_done`, for answers that carry a token: the body's bytes are zeroized once
    /// decoded (the token goes into a [`SecretString`], never a plain string).
    async fn call_done_secret<T: serde::de::DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        payload: Payload,
    ) -> Result<T, Error> {
        let raw = super::expect_done(self.request(method, path, payload).await?, method, path)?;
        raw.json_zeroizing(method, path)
    }

    // ---- credentials -------------------------------------------------------------------

    /// `POST /auth/credentials/init` `{"kind":"Key"}`: a registration challenge.
    pub async fn credential_challenge(&self) -> Result<CredentialChallenge, Error> {
        let v = self
            .call_done(
                Method::Post,
                "/auth/credentials/init",
                Payload::json(&serde_json::json!({"kind": "Key"}))?,
            )
            .await?;
        decode(v, "/auth/credentials/init")
    }

    /// Registers `new_key` as a Key credential of the caller: init, attestation by the new key,
    /// then `POST /auth/credentials` signed (user action) by this client's current credential.
    /// `cred_id` defaults to [`crate::protocol::default_credential_id`]. The new key signs on a
    /// blocking thread under the sign deadline, like every signature of the client.
    pub async fn register_key_credential(
        &self,
        new_key: Arc<dyn KeyBackend>,
        name: &str,
        cred_id: Option<&str>,
    ) -> Result<Value, Error> {
        let challenge = self.credential_challenge().await?;
        let payload = self
            .registration_payload(new_key, &challenge, name, cred_id)
            .await?;
        self.call_done(Method::Post, "/auth/credentials", payload)
            .await
    }

    /// `POST /auth/credentials/code` (user action): a short-lived code to register a credential
    /// from somewhere without one. `valid_for` sets its expiration (Dfns allows about a minute).
    pub async fn create_credential_code(
        &self,
        valid_for: std::time::Duration,
    ) -> Result<Value, Error> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        // A unix timestamp in seconds, one of the two forms the API takes.
        let expiration = (now + valid_for).as_secs();
        let body = serde_json::json!({ "expiration": expiration });
        self.call_done(
            Method::Post,
            "/auth/credentials/code",
            Payload::json(&body)?,
        )
        .await
    }

    /// Registers `new_key` with a code from [`DfnsClient::create_credential_code`]: no existing
    /// credential needed (`/auth/credentials/code/init` then `/code/verify`).
    pub async fn register_key_credential_with_code(
        &self,
        code: &str,
        new_key: Arc<dyn KeyBackend>,
        name: &str,
        cred_id: Option<&str>,
    ) -> Result<Value, Error> {
        let body = serde_json::json!({"credentialKind": "Key", "code": code});
        let v = self
            .call_done(
                Method::Post,
                "/auth/credentials/code/init",
                Payload::json(&body)?,
            )
            .await?;
        let challenge: CredentialChallenge = decode(v, "/auth/credentials/code/init")?;
        let payload = self
            .registration_payload(new_key, &challenge, name, cred_id)
            .await?;
        self.call_done(Method::Post, "/auth/credentials/code/verify", payload)
            .await
    }

    /// `GET /auth/credentials`.
    pub async fn list_credentials(&self) -> Result<Value, Error> {
        self.call_done(Method::Get, "/auth/credentials", Payload::empty())
            .await
    }

    /// `PUT /auth/credentials/deactivate` `{"credentialUuid"}` (user action): the credential
    /// can no longer sign user actions or logins until [`DfnsClient::activate_credential`].
    /// `credential_uuid` is the credential's `credentialUuid` (`cr-…`, as
    /// [`DfnsClient::list_credentials`] and the registration answer show it), not its
    /// `credentialId`. Dfns answers `{"message":"success"}`, also for a credential already
    /// deactivated. Signed by this client's credential, which may be the one deactivated: the
    /// client then needs another credential for its next signed call.
    pub async fn deactivate_credential(&self, credential_uuid: &str) -> Result<Value, Error> {
        self.set_credential_state("/auth/credentials/deactivate", credential_uuid)
            .await
    }

    /// `PUT /auth/credentials/activate` `{"credentialUuid"}` (user action): a deactivated
    /// credential signs again. Dfns answers `{"message":"success"}`, also for a credential
    /// already active. Signed by this client's credential, which must be an active one.
    pub async fn activate_credential(&self, credential_uuid: &str) -> Result<Value, Error> {
        self.set_credential_state("/auth/credentials/activate", credential_uuid)
            .await
    }

    async fn set_credential_state(
        &self,
        path: &str,
        credential_uuid: &str,
    ) -> Result<Value, Error> {
        let body = serde_json::json!({ "credentialUuid": credential_uuid });
        self.call_done(Method::Put, path, Payload::json(&body)?)
            .await
    }

    // ---- service accounts and tokens -----------------------------------------------------

    /// `POST /auth/service-accounts` (user action).
    pub async fn create_service_account(
        &self,
        body: &CreateServiceAccount,
    ) -> Result<CreatedServiceAccount, Error> {
        let path = "/auth/service-accounts";
        let mut v: Value = self
            .call_done_secret(Method::Post, path, Payload::json(body)?)
            .await?;
        let token = take_secret(&mut v, "/accessTokens/0/accessToken")
            .ok_or_else(|| missing(path, "accessTokens[0].accessToken"))?;
        let credential_id = [
            "/accessTokens/0/credId",
            "/userInfo/credentialId",
            "/credentialId",
        ]
        .iter()
        .find_map(|p| v.pointer(p).and_then(Value::as_str).map(str::to_owned));
        Ok(CreatedServiceAccount {
            access_token: token,
            credential_id,
            body: v,
        })
    }

    /// Registers `key` as the credential of a new service account named `name` (signed by this
    /// client's credential) and returns a client acting as that service account: its token, its
    /// credential, this client's connection pool.
    pub async fn service_account_client(
        &self,
        name: &str,
        key: Arc<dyn KeyBackend>,
    ) -> Result<DfnsClient, Error> {
        let path = "/auth/service-accounts";
        let created = self
            .create_service_account(&CreateServiceAccount {
                name: name.to_owned(),
                public_key: key.public_key().to_pem(),
                permission_id: None,
                external_id: None,
                days_valid: None,
            })
            .await?;
        let cred_id = created
            .credential_id
            .ok_or_else(|| missing(path, "the new credential's id"))?;
        Ok(self
            .with_auth_token(created.access_token)
            .with_signer(CredentialSigner::new(cred_id, key)))
    }

    /// `POST /auth/pats` (user action): a personal access token. Returns the token and the
    /// answer without it.
    pub async fn create_personal_access_token(
        &self,
        name: &str,
        public_key_pem: &str,
        seconds_valid: Option<u64>,
    ) -> Result<(SecretString, Value), Error> {
        let path = "/auth/pats";
        let mut body = serde_json::json!({"name": name, "publicKey": public_key_pem});
        if let Some(s) = seconds_valid {
            body["secondsValid"] = s.into();
        }
        let mut v: Value = self
            .call_done_secret(Method::Post, path, Payload::json(&body)?)
            .await?;
        let token =
            take_secret(&mut v, "/accessToken").ok_or_else(|| missing(path, "accessToken"))?;
        Ok((token, v))
    }

    // ---- login -----------------------------------------------------------------------

    /// `POST /auth/login/init` (no auth token needed): the login challenge.
    pub async fn login_init(
        &self,
        username: &str,
        org_id: &str,
    ) -> Result<UserActionChallenge, Error> {
        let body = serde_json::json!({"username": username, "orgId": org_id});
        let raw = self
            .send(
                Method::Post,
                "/auth/login/init",
                Payload::json(&body)?.into_string(),
                None,
            )
            .await?;
        let raw = super::expect_done(raw, Method::Post, "/auth/login/init")?;
        Ok(UserActionChallenge::from_json(&raw.body)?)
    }

    /// `POST /auth/login` with a signed login challenge: returns the login token.
    pub async fn login_complete(
        &self,
        challenge_identifier: &str,
        first_factor: FirstFactor,
    ) -> Result<SecretString, Error> {
        let body = serde_json::json!({"challengeIdentifier": challenge_identifier, "firstFactor": first_factor});
        let answer: TokenAnswer = self
            .call_done_secret(Method::Post, "/auth/login", Payload::json(&body)?)
            .await?;
        Ok(answer.token)
    }

    /// Logs in as `username` with this client's credential: init, sign, complete.
    pub async fn login(&self, username: &str, org_id: &str) -> Result<SecretString, Error> {
        let signer = self.require_signer(Method::Post, "/auth/login")?;
        let challenge = self.login_init(username, org_id).await?;
        let first_factor = self.assert_off_runtime(signer, &challenge).await?;
        self.login_complete(&challenge.challenge_identifier, first_factor)
            .await
    }

    /// `POST /auth/login/delegated` (user action): a login token for an end user.
    pub async fn delegated_login(&self, username: &str) -> Result<SecretString, Error> {
        let body = serde_json::json!({"username": username});
        let answer: TokenAnswer = self
            .call_done_secret(Method::Post, "/auth/login/delegated", Payload::json(&body)?)
            .await?;
        Ok(answer.token)
    }

    // ---- wallets ---------------------------------------------------------------------

    /// `POST /wallets` (user action). `body` is e.g. `{"network":"EthereumSepolia","name":"…"}`.
    pub async fn create_wallet(&self, body: &Value) -> Result<Outcome<Value>, Error> {
        self.call(Method::Post, "/wallets", Payload::json(body)?)
            .await
    }

    /// `GET /wallets`.
    pub async fn list_wallets(&self, query: &ListWallets) -> Result<Value, Error> {
        let mut pairs = url::form_urlencoded::Serializer::new(String::new());
        if let Some(limit) = query.limit {
            pairs.append_pair("limit", &limit.to_string());
        }
        if let Some(token) = &query.pagination_token {
            pairs.append_pair("paginationToken", token);
        }
        let q = pairs.finish().replace('+', "%20");
        let path = if q.is_empty() {
            "/wallets".to_owned()
        } else {
            format!("/wallets?{q}")
        };
        self.call_done(Method::Get, &path, Payload::empty()).await
    }

    /// `GET /wallets/{walletId}`.
    pub async fn get_wallet(&self, wallet_id: &str) -> Result<Value, Error> {
        self.call_done(
            Method::Get,
            &format!("/wallets/{}", encode_segment(wallet_id)),
            Payload::empty(),
        )
        .await
    }

    /// `POST /wallets/{walletId}/signatures` (user action): asks the wallet to sign, e.g.
    /// `{"kind":"Hash","hash":"0x…"}`. Use `externalId` to make retries safe.
    pub async fn generate_signature(
        &self,
        wallet_id: &str,
        body: &Value,
    ) -> Result<Outcome<Value>, Error> {
        let path = format!("/wallets/{}/signatures", encode_segment(wallet_id));
        self.call(Method::Post, &path, Payload::json(body)?).await
    }

    /// `GET /wallets/{walletId}/signatures/{signatureId}`.
    pub async fn get_signature(&self, wallet_id: &str, signature_id: &str) -> Result<Value, Error> {
        let path = format!(
            "/wallets/{}/signatures/{}",
            encode_segment(wallet_id),
            encode_segment(signature_id)
        );
        self.call_done(Method::Get, &path, Payload::empty()).await
    }
}

impl DfnsClient {
    /// The body of a Key credential registration (shared by both registration routes); the
    /// attestation is signed off the runtime.
    async fn registration_payload(
        &self,
        new_key: Arc<dyn KeyBackend>,
        challenge: &CredentialChallenge,
        name: &str,
        cred_id: Option<&str>,
    ) -> Result<Payload, Error> {
        let cred_id = cred_id
            .map(str::to_owned)
            .unwrap_or_else(|| crate::protocol::default_credential_id(new_key.public_key()));
        let attestation = {
            let (key, challenge) = (new_key.clone(), challenge.challenge.clone());
            self.sign_off_runtime(new_key.as_ref(), move || {
                Ok(attest(key.as_ref(), &challenge, &cred_id)?)
            })
            .await?
        };
        Ok(Payload::json(&KeyRegistration {
            credential_kind: "Key",
            challenge_identifier: &challenge.challenge_identifier,
            credential_name: name,
            credential_info: &attestation.credential_info,
        })?)
    }
}

fn decode<T: serde::de::DeserializeOwned>(v: Value, path: &str) -> Result<T, Error> {
    serde_json::from_value(v).map_err(|e| {
        ClientError::Decode {
            method: "POST".to_owned(),
            path: path.to_owned(),
            reason: crate::error::json_error_summary(&e),
        }
        .into()
    })
}

/// Takes the string at `pointer` out of `v` into a secret (moved, not copied).
fn take_secret(v: &mut Value, pointer: &str) -> Option<SecretString> {
    match v.pointer_mut(pointer).map(Value::take) {
        Some(Value::String(s)) => Some(SecretString::from(s)),
        _ => None,
    }
}

fn missing(path: &str, field: &str) -> Error {
    ClientError::Decode {
        method: "POST".to_owned(),
        path: path.to_owned(),
        reason: format!("no `{field}` in the answer"),
    }
    .into()
}
