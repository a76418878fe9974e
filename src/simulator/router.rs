//! The routing table: `METHOD /path` to handler. Paths are matched on their raw segments;
//! handlers percent-decode ids themselves (binding checks need the raw path).

use super::errors::ApiError;
use super::request::{Reply, Req};
use super::state::Inner;
use super::{credentials, keys, login, service_accounts, user_action, wallets, webhooks};

/// Runs the endpoint for `req` (auth and user action already checked).
pub(crate) fn route(inner: &mut Inner, req: &Req<'_>) -> Reply {
    let segments: Vec<&str> = req
        .path
        .strip_prefix('/')
        .unwrap_or(req.path)
        .split('/')
        .collect();
    match (req.method, segments.as_slice()) {
        ("POST", ["auth", "action", "init"]) => user_action::init(inner, req),
        ("POST", ["auth", "action"]) => user_action::complete(inner, req),

        ("POST", ["auth", "login", "init"]) => login::init(inner, req),
        ("POST", ["auth", "login"]) => login::complete(inner, req),
        ("POST", ["auth", "login", "delegated"]) => login::delegated(inner, req),
        ("PUT", ["auth", "logout"]) => login::logout(inner, req),

        ("POST", ["auth", "credentials", "init"]) => credentials::init(inner, req),
        ("POST", ["auth", "credentials"]) => credentials::create(inner, req),
        ("GET", ["auth", "credentials"]) => credentials::list(inner, req),
        ("POST", ["auth", "credentials", "code"]) => credentials::create_code(inner, req),
        ("POST", ["auth", "credentials", "code", "init"]) => credentials::code_init(inner, req),
        ("POST", ["auth", "credentials", "code", "verify"]) => {
            credentials::create_with_code(inner, req)
        }

        ("POST", ["auth", "service-accounts"]) => service_accounts::create(inner, req),
        ("GET", ["auth", "service-accounts"]) => service_accounts::list(inner, req),
        ("GET", ["auth", "service-accounts", id]) => service_accounts::get(inner, id),
        ("PUT", ["auth", "service-accounts", id, "activate"]) => {
            service_accounts::set_active(inner, id, true)
        }
        ("PUT", ["auth", "service-accounts", id, "deactivate"]) => {
            service_accounts::set_active(inner, id, false)
        }
        ("POST", ["auth", "pats"]) => service_accounts::create_pat(inner, req),
        ("GET", ["auth", "pats"]) => service_accounts::list_pats(inner, req),

        ("POST", ["wallets"]) => wallets::create(inner, req),
        ("GET", ["wallets"]) => wallets::list(inner, req),
        ("GET", ["wallets", id]) => wallets::get(inner, id),
        ("PUT", ["wallets", id]) => wallets::update(inner, req, id),
        ("PUT", ["wallets", id, "tags"]) => wallets::tags(inner, req, id, true),
        ("DELETE", ["wallets", id, "tags"]) => wallets::tags(inner, req, id, false),
        ("POST", ["wallets", id, "signatures"]) => wallets::generate_signature(inner, req, id),
        ("GET", ["wallets", id, "signatures"]) => wallets::list_signatures(inner, id),
        ("GET", ["wallets", id, "signatures", sig]) => wallets::get_signature(inner, id, sig),

        ("POST", ["keys"]) => keys::create(inner, req),
        ("GET", ["keys"]) => keys::list(inner),
        ("GET", ["keys", id]) => keys::get(inner, id),
        ("POST", ["keys", id, "signatures"]) => keys::generate_signature(inner, req, id),
        ("GET", ["keys", id, "signatures"]) => keys::list_signatures(inner, id),
        ("GET", ["keys", id, "signatures", sig]) => keys::get_signature(inner, id, sig),

        ("POST", ["webhooks"]) => webhooks::create(inner, req),
        ("GET", ["webhooks"]) => webhooks::list(inner),
        ("GET", ["webhooks", id]) => webhooks::get(inner, id),
        ("PUT", ["webhooks", id]) => webhooks::update(inner, req, id),
        ("DELETE", ["webhooks", id]) => webhooks::delete(inner, id),
        ("POST", ["webhooks", id, "ping"]) => webhooks::ping(inner, id),
        ("GET", ["webhooks", id, "events"]) => webhooks::list_events(inner, id),
        ("GET", ["webhooks", id, "events", event]) => webhooks::get_event(inner, id, event),

        _ => Err(ApiError::not_found(format!(
            "{} {} is not served by the dfns-signer simulator",
            req.method, req.path
        ))),
    }
}
