//! Which requests need what: the user-action rule of docs/protocol.md §3, written out here from the
//! documented list (not taken from the client's table), and the few endpoints that take no
//! auth token at all.

/// `POST`/`PUT`/`DELETE` endpoints that take no user action. `{}` matches one path segment.
const NO_USER_ACTION: &[(&str, &str)] = &[
    ("POST", "/auth/action/init"),
    ("POST", "/auth/action"),
    ("POST", "/auth/login/init"),
    ("POST", "/auth/login"),
    ("POST", "/auth/login/code"),
    ("POST", "/auth/login/social"),
    ("POST", "/auth/login/sso/init"),
    ("POST", "/auth/login/sso"),
    ("POST", "/auth/login/oidc/init"),
    ("POST", "/auth/login/oidc"),
    ("POST", "/auth/login/oidc/credentials"),
    ("PUT", "/auth/logout"),
    ("POST", "/auth/tokens"),
    ("POST", "/auth/registration/init"),
    ("POST", "/auth/registration"),
    ("POST", "/auth/registration/enduser"),
    ("POST", "/auth/registration/social"),
    ("PUT", "/auth/registration/code"),
    ("POST", "/auth/recover/user/init"),
    ("POST", "/auth/recover/user"),
    ("POST", "/auth/recover/user/code"),
    ("POST", "/auth/credentials/init"),
    ("POST", "/auth/credentials/code/init"),
    ("POST", "/auth/credentials/code/verify"),
    ("POST", "/networks/read-contract"),
    ("POST", "/networks/{}/call-function"),
    ("POST", "/swaps/quotes"),
    ("POST", "/payouts/quote"),
    ("POST", "/payins/quote"),
    ("POST", "/allocations/get-0fns-quote"),
    ("POST", "/wallets/{}/canton/ledger-api"),
];

/// Endpoints the simulator serves without an `Authorization` header: the caller has no token
/// yet (login) or proves itself another way (a credential code).
const NO_AUTH_TOKEN: &[(&str, &str)] = &[
    ("POST", "/auth/login/init"),
    ("POST", "/auth/login"),
    ("POST", "/auth/credentials/code/init"),
    ("POST", "/auth/credentials/code/verify"),
];

/// Whether `method path` (raw path, no query) must carry `X-DFNS-USERACTION`.
pub(crate) fn needs_user_action(method: &str, path: &str) -> bool {
    match method {
        "GET" | "HEAD" | "OPTIONS" => false,
        _ => !listed(NO_USER_ACTION, method, path),
    }
}

/// Whether `method path` is served without a bearer token.
pub(crate) fn needs_auth_token(method: &str, path: &str) -> bool {
    !listed(NO_AUTH_TOKEN, method, path)
}

fn listed(table: &[(&str, &str)], method: &str, path: &str) -> bool {
    table
        .iter()
        .any(|(m, template)| *m == method && path_matches(template, path))
}

/// Matches a raw request path against a template where `{}` or `{name}` stands for exactly
/// one non-empty segment. A trailing slash is a different path, as it is for Dfns' router.
pub(crate) fn path_matches(template: &str, path: &str) -> bool {
    let mut t = template.split('/');
    let mut p = path.split('/');
    loop {
        match (t.next(), p.next()) {
            (None, None) => return true,
            (Some(ts), Some(ps)) => {
                let wildcard = ts.starts_with('{') && ts.ends_with('}');
                if !(wildcard && !ps.is_empty() || ts == ps) {
                    return false;
                }
            }
            _ => return false,
        }
    }
}

/// Parses `"METHOD /path/{template}"` (fault and policy settings) and matches it.
pub(crate) fn rule_matches(rule: &str, method: &str, path: &str) -> bool {
    match rule.trim().split_once(' ') {
        Some((m, template)) => {
            m.eq_ignore_ascii_case(method) && path_matches(template.trim(), path)
        }
        None => path_matches(rule.trim(), path),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_match_one_segment() {
        assert!(path_matches(
            "/networks/{}/call-function",
            "/networks/Ethereum/call-function"
        ));
        assert!(!path_matches(
            "/networks/{}/call-function",
            "/networks//call-function"
        ));
        assert!(!path_matches(
            "/networks/{}/call-function",
            "/networks/a/b/call-function"
        ));
        assert!(!path_matches("/wallets", "/wallets/"));
        assert!(rule_matches(
            "POST /wallets/{walletId}/signatures",
            "POST",
            "/wallets/wa-1/signatures"
        ));
        assert!(!rule_matches("POST /wallets", "PUT", "/wallets"));
    }

    /// The rule agrees with every endpoint of every SDK generation in the conformance table.
    #[test]
    fn rule_agrees_with_all_sdks_on_every_endpoint() {
        let table = include_str!("../../tests/fixtures/endpoints_user_action.tsv");
        let mut checked = 0;
        for line in table
            .lines()
            .filter(|l| !l.starts_with('#') && !l.starts_with("method"))
        {
            let cols: Vec<&str> = line.split('\t').collect();
            let (method, path) = (cols[0], cols[1].replace("{}", "x-1"));
            let marks: Vec<&str> = cols[2..]
                .iter()
                .copied()
                .filter(|c| !c.is_empty())
                .collect();
            assert!(!marks.is_empty(), "{line}");
            let expected = marks[0] == "UA";
            assert!(
                marks.iter().all(|m| (*m == "UA") == expected),
                "SDKs disagree on {line}"
            );
            assert_eq!(
                needs_user_action(method, &path),
                expected,
                "{method} {path}"
            );
            checked += 1;
        }
        assert_eq!(checked, 273);
    }
}
