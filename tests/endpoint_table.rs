//! The generator of `src/protocol/endpoint_table.rs`, written as a test.
//!
//! The table is built from `tests/fixtures/endpoints_user_action.tsv` (one row per endpoint, one
//! column per official SDK generation, `UA` where that SDK sends a user action, `-` where it does
//! not, blank where it lacks the endpoint). This test turns the fixture into the Rust text of the
//! table — the layout `rustfmt` gives it included — and compares it byte for byte with the file
//! in the repository, so the two cannot drift apart. With `DFNS_SIGNER_REGENERATE=1` it writes
//! the file instead:
//!
//! ```text
//! DFNS_SIGNER_REGENERATE=1 cargo test --test endpoint_table
//! ```
//!
//! The SDKs must agree on every row (a row where one signs and another does not is an error, not
//! a vote); a row's answer is the one they give.

use std::fmt::Write as _;
use std::path::PathBuf;

const FIXTURE: &str = "tests/fixtures/endpoints_user_action.tsv";
const TABLE: &str = "src/protocol/endpoint_table.rs";
const REGENERATE: &str = "DFNS_SIGNER_REGENERATE";

/// The file's opening comment and items before the rows.
const HEADER: &str = "\
//! The table of Dfns endpoints and whether each needs a user action, generated from
//! `tests/fixtures/endpoints_user_action.tsv` (five official SDK generations agree on every row)
//! by the test `tests/endpoint_table.rs`. Do not edit it by hand: change the fixture, then run
//! `DFNS_SIGNER_REGENERATE=1 cargo test --test endpoint_table`; without the variable that test
//! fails whenever this file differs from what the fixture gives. See docs/protocol.md §3.
//! `{}` stands for one path segment.

use super::Method;

/// (method, path template, needs a user action)
pub(super) static ENDPOINTS: &[(Method, &str, bool)] = &[
";

const FOOTER: &str = "];\n";

/// rustfmt puts a tuple on one line while its items, joined by `, `, take at most this many
/// characters (its `fn_call_width` default), and one item per line beyond.
const ONE_LINE_WIDTH: usize = 60;

fn repo_file(relative: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(relative)
}

/// One endpoint of the fixture.
struct Row {
    method: &'static str,
    template: String,
    needs_user_action: bool,
}

/// Reads the fixture: comment lines (`#`), the column header, then one endpoint a line.
fn rows(tsv: &str) -> Vec<Row> {
    let mut rows = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for (number, line) in tsv.lines().enumerate() {
        let line = line.trim_end_matches('\r');
        if line.is_empty() || line.starts_with('#') || line.starts_with("method\t") {
            continue;
        }
        let at = format!("{FIXTURE}:{}", number + 1);
        let cols: Vec<&str> = line.split('\t').collect();
        assert!(
            cols.len() >= 3,
            "{at}: expected method, path and SDK columns: {line:?}"
        );
        let method = match cols[0] {
            "GET" => "Get",
            "POST" => "Post",
            "PUT" => "Put",
            "PATCH" => "Patch",
            "DELETE" => "Delete",
            other => panic!("{at}: unknown method {other:?}"),
        };
        let template = cols[1];
        assert!(
            template.starts_with('/')
                && template
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"/{}-_.".contains(&b)),
            "{at}: a path template is `/` and letters, digits, `-_.` and `{{}}`: {template:?}"
        );
        let marks: Vec<&str> = cols[2..]
            .iter()
            .copied()
            .filter(|c| !c.is_empty())
            .collect();
        assert!(!marks.is_empty(), "{at}: no SDK has {} {template}", cols[0]);
        for mark in &marks {
            assert!(
                *mark == "UA" || *mark == "-",
                "{at}: {mark:?} is neither `UA` nor `-`"
            );
        }
        assert!(
            marks.iter().all(|m| *m == marks[0]),
            "{at}: the SDKs disagree on {} {template}: {marks:?}",
            cols[0]
        );
        assert!(
            seen.insert((method, template.to_owned())),
            "{at}: {} {template} is listed twice",
            cols[0]
        );
        rows.push(Row {
            method,
            template: template.to_owned(),
            needs_user_action: marks[0] == "UA",
        });
    }
    assert!(!rows.is_empty(), "{FIXTURE} lists no endpoint");
    rows
}

/// The Rust text of `src/protocol/endpoint_table.rs` for these rows, as rustfmt lays it out.
fn render(rows: &[Row]) -> String {
    let mut out = String::from(HEADER);
    for row in rows {
        let method = format!("Method::{}", row.method);
        let template = format!("\"{}\"", row.template);
        let items = format!("{method}, {template}, {}", row.needs_user_action);
        if items.chars().count() <= ONE_LINE_WIDTH {
            writeln!(out, "    ({items}),").unwrap();
        } else {
            assert!(
                8 + template.len() < 100,
                "{template} would not fit a 100-column line even on its own"
            );
            writeln!(
                out,
                "    (\n        {method},\n        {template},\n        {},\n    ),",
                row.needs_user_action
            )
            .unwrap();
        }
    }
    out.push_str(FOOTER);
    out
}

/// The first line where `a` and `b` differ, for the failure message.
fn first_difference(a: &str, b: &str) -> String {
    let (mut la, mut lb) = (a.lines(), b.lines());
    for number in 1.. {
        match (la.next(), lb.next()) {
            (Some(x), Some(y)) if x == y => continue,
            (None, None) => return "(only line endings differ)".to_owned(),
            (x, y) => {
                return format!(
                    "line {number}:\n  in the file:       {}\n  from the fixture:  {}",
                    x.unwrap_or("(end of file)"),
                    y.unwrap_or("(end of file)")
                )
            }
        }
    }
    unreachable!()
}

#[test]
fn endpoint_table_is_generated_from_the_fixture() {
    let tsv = std::fs::read_to_string(repo_file(FIXTURE))
        .unwrap_or_else(|e| panic!("cannot read {FIXTURE}: {e}"));
    let expected = render(&rows(&tsv));
    let path = repo_file(TABLE);
    let current = std::fs::read_to_string(&path).unwrap_or_default();

    if std::env::var_os(REGENERATE).is_some_and(|v| v == "1") {
        if current != expected {
            std::fs::write(&path, &expected)
                .unwrap_or_else(|e| panic!("cannot write {TABLE}: {e}"));
            eprintln!("{REGENERATE}=1: wrote {TABLE} from {FIXTURE}");
        } else {
            eprintln!("{REGENERATE}=1: {TABLE} is already what {FIXTURE} gives");
        }
        return;
    }
    assert!(
        current == expected,
        "{TABLE} is not what {FIXTURE} gives; regenerate it with \
         `{REGENERATE}=1 cargo test --test endpoint_table` (never edit it by hand).\nFirst \
         difference at {}",
        first_difference(&current, &expected)
    );
}

/// The layout rule, on the rows that sit on each side of the width limit.
#[test]
fn rows_are_laid_out_as_rustfmt_lays_them_out() {
    let row = |method: &'static str, template: &str| Row {
        method,
        template: template.to_owned(),
        needs_user_action: true,
    };
    // 60 characters of items: one line.
    let text = render(&[row("Post", "/wallets/{}/transfers/{}/speed-up/xxxx")]);
    assert!(
        text.contains("    (Method::Post, \"/wallets/{}/transfers/{}/speed-up/xxxx\", true),\n")
    );
    // 61: one item per line.
    let text = render(&[row("Post", "/wallets/{}/transfers/{}/speed-up/xxxxx")]);
    assert!(text.contains(
        "    (\n        Method::Post,\n        \"/wallets/{}/transfers/{}/speed-up/xxxxx\",\n        true,\n    ),\n"
    ));
}
