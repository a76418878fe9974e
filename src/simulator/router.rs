//! The routing table: `METHOD /template` to handler. Paths are matched on their raw segments
//! (`{}` matches one non-empty segment, handed to the handler raw: handlers percent-decode ids
//! themselves, binding checks need the raw path). The template also names the route in the
//! per-route statistics, so a client cannot grow them with made-up paths.

use super::errors::ApiError;
use super::request::{Reply, Req};
use super::state::Inner;
use super::{
    credentials, keys, login, permissions, service_accounts, user_action, wallets, webhooks,
};

/// An endpoint: the state, the request and the raw `{}` segments of its path, in order.
type Handler = fn(&mut Inner, &Req<'_>, &[&str]) -> Reply;

/// `(method, template, handler)`.
type Route = (&'static str, &'static str, Handler);

/// Every endpoint the simulator serves.
const ROUTES: &[Route] = &[
    ("POST", "/auth/action/init", |i, r, _| {
        user_action::init(i, r)
    }),
    ("POST", "/auth/action", |i, r, _| {
        user_action::complete(i, r)
    }),
    ("POST", "/auth/login/init", |i, r, _| login::init(i, r)),
    ("POST", "/auth/login", |i, r, _| login::complete(i, r)),
    ("POST", "/auth/login/delegated", |i, r, _| {
        login::delegated(i, r)
    }),
    ("PUT", "/auth/logout", |i, r, _| login::logout(i, r)),
    ("POST", "/auth/credentials/init", |i, r, _| {
        credentials::init(i, r)
    }),
    ("POST", "/auth/credentials", |i, r, _| {
        credentials::create(i, r)
    }),
    ("GET", "/auth/credentials", |i, r, _| {
        credentials::list(i, r)
    }),
    ("PUT", "/auth/credentials/activate", |i, r, _| {
        credentials::set_active(i, r, true)
    }),
    ("PUT", "/auth/credentials/deactivate", |i, r, _| {
        credentials::set_active(i, r, false)
    }),
    ("POST", "/auth/credentials/code", |i, r, _| {
        credentials::create_code(i, r)
    }),
    ("POST", "/auth/credentials/code/init", |i, r, _| {
        credentials::code_init(i, r)
    }),
    ("POST", "/auth/credentials/code/verify", |i, r, _| {
        credentials::create_with_code(i, r)
    }),
    ("POST", "/auth/service-accounts", |i, r, _| {
        service_accounts::create(i, r)
    }),
    ("GET", "/auth/service-accounts", |i, r, _| {
        service_accounts::list(i, r)
    }),
    ("GET", "/auth/service-accounts/{}", |i, _, p| {
        service_accounts::get(i, p[0])
    }),
    ("PUT", "/auth/service-accounts/{}/activate", |i, r, p| {
        service_accounts::set_active(i, r, p[0], true)
    }),
    ("PUT", "/auth/service-accounts/{}/deactivate", |i, r, p| {
        service_accounts::set_active(i, r, p[0], false)
    }),
    ("POST", "/auth/pats", |i, r, _| {
        service_accounts::create_pat(i, r)
    }),
    ("GET", "/auth/pats", |i, r, _| {
        service_accounts::list_pats(i, r)
    }),
    ("POST", "/wallets", |i, r, _| wallets::create(i, r)),
    ("GET", "/wallets", |i, r, _| wallets::list(i, r)),
    ("GET", "/wallets/{}", |i, _, p| wallets::get(i, p[0])),
    ("PUT", "/wallets/{}", |i, r, p| wallets::update(i, r, p[0])),
    ("PUT", "/wallets/{}/tags", |i, r, p| {
        wallets::tags(i, r, p[0], true)
    }),
    ("DELETE", "/wallets/{}/tags", |i, r, p| {
        wallets::tags(i, r, p[0], false)
    }),
    ("POST", "/wallets/{}/signatures", |i, r, p| {
        wallets::generate_signature(i, r, p[0])
    }),
    ("GET", "/wallets/{}/signatures", |i, _, p| {
        wallets::list_signatures(i, p[0])
    }),
    ("GET", "/wallets/{}/signatures/{}", |i, _, p| {
        wallets::get_signature(i, p[0], p[1])
    }),
    ("POST", "/keys", |i, r, _| keys::create(i, r)),
    ("GET", "/keys", |i, _, _| keys::list(i)),
    ("GET", "/keys/{}", |i, _, p| keys::get(i, p[0])),
    ("POST", "/keys/{}/signatures", |i, r, p| {
        keys::generate_signature(i, r, p[0])
    }),
    ("GET", "/keys/{}/signatures", |i, _, p| {
        keys::list_signatures(i, p[0])
    }),
    ("GET", "/keys/{}/signatures/{}", |i, _, p| {
        keys::get_signature(i, p[0], p[1])
    }),
    ("POST", "/webhooks", |i, r, _| webhooks::create(i, r)),
    ("GET", "/webhooks", |i, _, _| webhooks::list(i)),
    ("GET", "/webhooks/{}", |i, _, p| webhooks::get(i, p[0])),
    ("PUT", "/webhooks/{}", |i, r, p| {
        webhooks::update(i, r, p[0])
    }),
    ("DELETE", "/webhooks/{}", |i, _, p| {
        webhooks::delete(i, p[0])
    }),
    ("POST", "/webhooks/{}/ping", |i, _, p| {
        webhooks::ping(i, p[0])
    }),
    ("GET", "/webhooks/{}/events", |i, _, p| {
        webhooks::list_events(i, p[0])
    }),
    ("GET", "/webhooks/{}/events/{}", |i, _, p| {
        webhooks::get_event(i, p[0], p[1])
    }),
    ("POST", "/permissions", |i, r, _| permissions::create(i, r)),
    ("GET", "/permissions", |i, _, _| permissions::list(i)),
    ("GET", "/permissions/{}", |i, _, p| {
        permissions::get(i, p[0])
    }),
    ("PUT", "/permissions/{}", |i, r, p| {
        permissions::update(i, r, p[0])
    }),
    ("PUT", "/permissions/{}/archive", |i, r, p| {
        permissions::archive(i, r, p[0])
    }),
    ("POST", "/permissions/{}/assignments", |i, r, p| {
        permissions::assign(i, r, p[0])
    }),
    ("GET", "/permissions/{}/assignments", |i, _, p| {
        permissions::list_assignments(i, p[0])
    }),
    ("DELETE", "/permissions/{}/assignments/{}", |i, _, p| {
        permissions::revoke(i, p[0], p[1])
    }),
];

/// Every route's `METHOD /template`, for tables keyed by route (`permissions.rs`).
#[cfg(test)]
pub(crate) fn route_names() -> impl Iterator<Item = String> {
    ROUTES.iter().map(|(m, t, _)| format!("{m} {t}"))
}

/// The key under which requests that match no route are counted.
pub(crate) const UNROUTED: &str = "(not served)";

/// The route `method path` takes: its table entry and the raw `{}` segments. The most literal
/// template wins (`/auth/credentials/code` over a `{}` in that place).
fn find<'p>(method: &str, path: &'p str) -> Option<(&'static Route, Vec<&'p str>)> {
    let segments: Vec<&str> = path.strip_prefix('/').unwrap_or(path).split('/').collect();
    ROUTES
        .iter()
        .filter(|(m, _, _)| *m == method)
        .filter_map(|route| {
            let parts: Vec<&str> = route.1[1..].split('/').collect();
            if parts.len() != segments.len() {
                return None;
            }
            let mut params = Vec::new();
            for (part, segment) in parts.iter().zip(&segments) {
                match *part {
                    "{}" if !segment.is_empty() => params.push(*segment),
                    literal if literal == *segment => {}
                    _ => return None,
                }
            }
            Some((route, params))
        })
        .min_by_key(|(_, params)| params.len())
}

/// `METHOD /template` of the route a request takes, or [`UNROUTED`]: what the statistics count.
pub(crate) fn route_name(method: &str, path: &str) -> String {
    match find(method, path) {
        Some(((m, template, _), _)) => format!("{m} {template}"),
        None => UNROUTED.to_owned(),
    }
}

/// Runs the endpoint for `req` (auth and user action already checked).
pub(crate) fn route(inner: &mut Inner, req: &Req<'_>) -> Reply {
    match find(req.method, req.path) {
        Some(((_, _, handler), params)) => handler(inner, req, &params),
        None => Err(ApiError::not_found(
            "this endpoint is not served by the dfns-signer simulator",
        )
        .because(format!("{} {}", req.method, req.path))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_named_by_their_route_template() {
        assert_eq!(route_name("POST", "/wallets"), "POST /wallets");
        assert_eq!(route_name("GET", "/wallets/wa-1"), "GET /wallets/{}");
        assert_eq!(
            route_name("GET", "/wallets/wa-1/signatures/sig-2"),
            "GET /wallets/{}/signatures/{}"
        );
        // A literal segment beats a `{}` in the same place.
        assert_eq!(
            route_name("POST", "/auth/credentials/code"),
            "POST /auth/credentials/code"
        );
        assert_eq!(route_name("GET", "/wallets/"), UNROUTED);
        assert_eq!(route_name("GET", "/nope-1234"), UNROUTED);
        assert_eq!(route_name("BREW", "/wallets"), UNROUTED);
    }

    #[test]
    fn every_template_is_well_formed_and_listed_once() {
        let mut seen = std::collections::HashSet::new();
        for (method, template, _) in ROUTES {
            assert!(
                template.starts_with('/') && !template.ends_with('/'),
                "{template}"
            );
            assert!(seen.insert((method, template)), "{method} {template} twice");
        }
    }
}
