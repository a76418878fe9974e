//! The user-action table against every row of `tests/fixtures/endpoints_user_action.tsv` (273
//! endpoints on which five generations of official SDKs agree), with concrete paths built from
//! each template the way callers build them: encoded ids, query strings, trailing slashes.

use dfns_signer::protocol::{encode_segment, Method};
use dfns_signer::protocol::{lookup, needs_user_action};

fn rows() -> Vec<(Method, String, bool)> {
    let tsv = include_str!("fixtures/endpoints_user_action.tsv");
    tsv.lines()
        .filter(|l| !l.starts_with('#') && !l.starts_with("method\t"))
        .map(|l| {
            let cols: Vec<&str> = l.split('\t').collect();
            let flags: Vec<&str> = cols[2..]
                .iter()
                .copied()
                .filter(|c| !c.is_empty())
                .collect();
            assert!(flags.iter().all(|f| *f == flags[0]), "SDKs disagree on {l}");
            (
                cols[0].parse().unwrap(),
                cols[1].to_owned(),
                flags[0] == "UA",
            )
        })
        .collect()
}

#[test]
fn every_row_of_the_official_table() {
    let rows = rows();
    assert_eq!(rows.len(), 273);
    for (method, template, ua) in &rows {
        // Ids as callers send them: encoded, with characters that must not confuse the matcher.
        let concrete = template.replace("{}", &encode_segment("id-1/a b"));
        let info = lookup(*method, &concrete);
        assert_eq!(
            info.needs_user_action, *ua,
            "{method} {template} (as {concrete})"
        );
        assert_eq!(
            info.template,
            Some(template.as_str()),
            "{method} {concrete}"
        );
        // The query string never changes the answer.
        assert_eq!(
            needs_user_action(*method, &format!("{concrete}?limit=1&x=%2F")),
            *ua,
            "{method} {template}?…"
        );
    }
    // The rule holds over the table: no GET is signed; every exempt non-GET is one of the
    // exceptions listed in docs/protocol.md §3.
    assert!(rows
        .iter()
        .filter(|(m, _, _)| *m == Method::Get)
        .all(|(_, _, ua)| !ua));
    let exempt = rows
        .iter()
        .filter(|(m, _, ua)| *m != Method::Get && !ua)
        .count();
    assert_eq!(exempt, 31);
}

#[test]
fn paths_outside_the_table_follow_the_strict_rule() {
    assert!(needs_user_action(Method::Post, "/some/new/endpoint"));
    assert!(needs_user_action(Method::Delete, "/some/new/endpoint"));
    assert!(!needs_user_action(Method::Get, "/some/new/endpoint"));
    // An empty segment where an id belongs is not a match for the template.
    assert_eq!(lookup(Method::Get, "/wallets//assets").template, None);
}
