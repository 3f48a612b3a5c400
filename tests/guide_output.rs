//! The sample outputs in docs/guide.md and README.md are what the examples
//! print today.
//!
//! A block of example output in those files is marked:
//!
//! ````text
//! <!-- output: tour after="dump taken in the request handler:" lines=6 -->
//! ```text
//! ...
//! ```
//! <!-- /output -->
//! ````
//!
//! `output: NAME` is the example (`cargo run --example NAME`), or a
//! service run (see [`SERVICE_RUNS`]): what a running example serves
//! rather than what it prints, such as `two-services`, stock's debug view
//! of a call from orders. The block
//! shows one paragraph of its standard output: the lines after the line
//! equal to `after` (from the first line without it) up to the next blank
//! line. With `lines=N` only the first N lines are shown, followed by a
//! `...` line. What varies from run to run (thread ids, addresses, timings,
//! rates, temp paths, see [`normalise`]) is replaced by a placeholder on
//! both sides before comparing.
//!
//! The test builds the examples with cargo (the same profile and features
//! as this test, so after `cargo test` it is a no-op), runs each binary
//! once and compares every marked block; a drift fails with a diff.
//!
//! To rewrite the blocks from what the examples print now:
//!
//! ```sh
//! MILIEU_BLESS=1 cargo test --all-features --test guide_output
//! ```

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use common::examples::build_examples;

/// The files whose marked blocks are checked, relative to the package root.
const DOCS: &[&str] = &["docs/guide.md", "README.md"];

/// Set to rewrite the blocks instead of comparing them.
const BLESS_ENV: &str = "MILIEU_BLESS";

/// A block that shows what a running example serves rather than what it
/// prints.
struct ServiceRun {
    /// The block's name, in its marker.
    name: &'static str,
    /// The example it runs.
    example: &'static str,
    /// Runs it; the text the block shows.
    run: fn(&Path) -> String,
}

/// Every [`ServiceRun`].
const SERVICE_RUNS: &[ServiceRun] = &[
    #[cfg(feature = "sqlite")]
    ServiceRun {
        name: "two-services",
        example: "orders",
        run: two_services,
    },
];

/// The service run a block's name names, if any.
fn service_run(name: &str) -> Option<&'static ServiceRun> {
    SERVICE_RUNS.iter().find(|run| run.name == name)
}

/// The example a block's name runs: itself, or a service run's.
fn example_of(name: &str) -> &str {
    service_run(name).map_or(name, |run| run.example)
}

/// Where a block's text comes from, for messages.
fn what_shows(name: &str) -> String {
    match service_run(name) {
        Some(run) => format!(
            "the `{}` run of example `{}` serves (see `SERVICE_RUNS` in tests/guide_output.rs)",
            run.name, run.example
        ),
        None => format!("`cargo run --example {name}` prints"),
    }
}

/// Examples that need a feature this test was built without.
fn missing_feature(name: &str) -> Option<&'static str> {
    match name {
        "outbox" | "orders" | "two-services" if !cfg!(feature = "sqlite") => Some("sqlite"),
        _ => None,
    }
}

#[test]
fn guide_output_matches_examples() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let bless = std::env::var_os(BLESS_ENV).is_some_and(|v| !v.is_empty() && v != "0");

    let mut docs = Vec::new();
    for doc in DOCS {
        let text = std::fs::read_to_string(root.join(doc))
            .unwrap_or_else(|e| panic!("reading {doc}: {e}"));
        let blocks = parse_blocks(doc, &text);
        docs.push((*doc, text, blocks));
    }

    // Every example named by a block, built once and run once.
    let mut outputs: BTreeMap<String, Option<String>> = BTreeMap::new();
    for (_, _, blocks) in &docs {
        for block in blocks {
            outputs.entry(block.example.clone()).or_insert(None);
        }
    }
    assert!(
        !outputs.is_empty(),
        "no `<!-- output: NAME -->` block in {DOCS:?}: the markers were lost"
    );
    let runnable: Vec<String> = outputs
        .keys()
        .filter(|name| missing_feature(name).is_none())
        .cloned()
        .collect();
    let mut examples: Vec<&str> = runnable.iter().map(|name| example_of(name)).collect();
    examples.dedup();
    let executables = build_examples(&examples);
    for name in runnable {
        let example = example_of(&name);
        let exe = executables
            .get(example)
            .unwrap_or_else(|| panic!("cargo built no executable for example `{example}`"));
        let output = match service_run(&name) {
            Some(service) => normalise(&(service.run)(exe)),
            None => run_example(root, &name, exe),
        };
        outputs.insert(name, Some(output));
    }

    let mut failures = Vec::new();
    for (doc, text, blocks) in &docs {
        let mut rewritten = String::with_capacity(text.len());
        let mut copied = 0;
        for block in blocks {
            let Some(output) = &outputs[&block.example] else {
                note(&format!(
                    "{doc}:{}: not checked: example `{}` needs feature `{}`",
                    block.line,
                    block.example,
                    missing_feature(&block.example).unwrap_or("?")
                ));
                continue;
            };
            let expected = match block.select(output) {
                Ok(lines) => lines,
                Err(e) => {
                    failures.push(format!("{doc}:{}: {e}", block.line));
                    continue;
                }
            };
            let shown = normalise(&text[block.body.clone()]);
            let shown: Vec<&str> = shown.lines().map(str::trim_end).collect();
            if shown == expected {
                continue;
            }
            if bless {
                rewritten.push_str(&text[copied..block.body.start]);
                for line in &expected {
                    rewritten.push_str(line);
                    rewritten.push('\n');
                }
                copied = block.body.end;
                note(&format!(
                    "{doc}:{}: blessed (example `{}`)",
                    block.line, block.example
                ));
            } else {
                failures.push(format!(
                    "{doc}:{}: the block differs from what {} (- the doc, + the example):\n{}",
                    block.line,
                    what_shows(&block.example),
                    diff(&shown, &expected)
                ));
            }
        }
        if bless && copied > 0 {
            rewritten.push_str(&text[copied..]);
            std::fs::write(root.join(doc), rewritten)
                .unwrap_or_else(|e| panic!("writing {doc}: {e}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{}\n\nIf the examples are right, rewrite the blocks with:\n    \
         {BLESS_ENV}=1 cargo test --all-features --test guide_output\n",
        failures.join("\n\n")
    );
}

/// A line on stderr that shows even when the test passes (the harness
/// captures `eprintln!`, not the stream itself).
fn note(line: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "guide_output: {line}");
}

/// One marked block of a doc.
#[derive(Debug)]
struct Block {
    /// The example whose output it shows.
    example: String,
    /// The line after which the shown paragraph starts.
    after: Option<String>,
    /// At most this many lines, then `...`.
    lines: Option<usize>,
    /// 1-based line of the marker, for messages.
    line: usize,
    /// Byte range of the lines between the code fences.
    body: std::ops::Range<usize>,
}

impl Block {
    /// The lines this block should show, from the example's (normalised)
    /// output.
    fn select<'a>(&self, output: &'a str) -> Result<Vec<&'a str>, String> {
        let all: Vec<&str> = output.lines().map(str::trim_end).collect();
        let start = match &self.after {
            None => 0,
            Some(after) => {
                all.iter().position(|l| l == after).ok_or_else(|| {
                    format!(
                        "example `{}` no longer prints the line {after:?} this block follows; \
                             fix `after=` in the marker",
                        self.example
                    )
                })? + 1
            }
        };
        let rest = &all[start..];
        let end = rest.iter().position(|l| l.is_empty()).unwrap_or(rest.len());
        let mut shown = rest[..end].to_vec();
        if let Some(n) = self.lines {
            if shown.len() > n {
                shown.truncate(n);
                shown.push("...");
            }
        }
        if shown.is_empty() {
            return Err(format!(
                "example `{}` prints nothing where this block is",
                self.example
            ));
        }
        Ok(shown)
    }
}

const OPEN: &str = "<!-- output:";
const CLOSE: &str = "<!-- /output -->";

/// The marked blocks of `text` (markers at the start of a line). A
/// malformed marker panics: a block that is
/// silently not checked is what this test exists to prevent.
fn parse_blocks(doc: &str, text: &str) -> Vec<Block> {
    let mut blocks = Vec::new();
    let mut from = 0;
    // A marker starts a line (one quoted in prose does not count).
    while let Some(found) = text[from..]
        .match_indices(OPEN)
        .map(|(i, _)| from + i)
        .find(|&i| text[..i].ends_with('\n') || i == 0)
    {
        let start = found;
        let line = text[..start].matches('\n').count() + 1;
        let fail = |what: &str| -> ! { panic!("{doc}:{line}: {what}") };
        let header_end = text[start..]
            .find("-->")
            .map(|i| start + i)
            .unwrap_or_else(|| fail("unterminated `<!-- output:` marker"));
        let (example, after, lines) =
            parse_header(&text[start + OPEN.len()..header_end]).unwrap_or_else(|e| fail(&e));
        // The marker, then the opening fence on the next line.
        let mut pos = line_end(text, header_end);
        let fence_line = &text[pos..line_end(text, pos)];
        let fence = fence_line.trim_end();
        if !fence.starts_with("```") {
            fail("the marker must be followed by a ``` code fence");
        }
        let fence_len = fence.chars().take_while(|&c| c == '`').count();
        pos = line_end(text, pos);
        let body_start = pos;
        // The closing fence: a line of (at least) as many backticks.
        let body_end = loop {
            if pos >= text.len() {
                fail("the code fence after the marker is not closed");
            }
            let next = line_end(text, pos);
            let l = text[pos..next].trim_end();
            if l.len() >= fence_len && l.chars().all(|c| c == '`') {
                break pos;
            }
            pos = next;
        };
        pos = line_end(text, body_end);
        if !text[pos..].trim_start().starts_with(CLOSE) {
            fail("the code fence must be followed by `<!-- /output -->`");
        }
        from = pos;
        blocks.push(Block {
            example,
            after,
            lines,
            line,
            body: body_start..body_end,
        });
    }
    blocks
}

/// The index just past the end of the line containing `pos`.
fn line_end(text: &str, pos: usize) -> usize {
    text[pos..]
        .find('\n')
        .map(|i| pos + i + 1)
        .unwrap_or(text.len())
}

/// `NAME [after="LINE"] [lines=N]`.
fn parse_header(header: &str) -> Result<(String, Option<String>, Option<usize>), String> {
    let header = header.trim();
    let (name, mut rest) = header.split_once(' ').unwrap_or((header, ""));
    if name.is_empty() {
        return Err("the marker names no example: `<!-- output: NAME -->`".into());
    }
    let (mut after, mut lines) = (None, None);
    loop {
        rest = rest.trim_start();
        if rest.is_empty() {
            break;
        }
        let (key, value) = rest
            .split_once('=')
            .ok_or_else(|| format!("expected key=value in the marker, found {rest:?}"))?;
        let (value, tail) = if let Some(quoted) = value.strip_prefix('"') {
            let close = quoted
                .find('"')
                .ok_or_else(|| format!("unterminated quote in the marker: {value:?}"))?;
            (&quoted[..close], &quoted[close + 1..])
        } else {
            value.split_once(' ').unwrap_or((value, ""))
        };
        match key.trim() {
            "after" => after = Some(value.to_owned()),
            "lines" => {
                lines = Some(
                    value
                        .parse()
                        .map_err(|_| format!("lines={value:?} is not a number"))?,
                )
            }
            other => return Err(format!("unknown marker key `{other}` (after, lines)")),
        }
        rest = tail;
    }
    Ok((name.to_owned(), after, lines))
}

/// Runs an example binary from the package root, as `cargo run` does, and
/// returns its normalised standard output.
fn run_example(root: &Path, name: &str, exe: &Path) -> String {
    let out = Command::new(exe)
        .current_dir(root)
        .env_remove(BLESS_ENV)
        .output()
        .unwrap_or_else(|e| panic!("running example `{name}` ({}): {e}", exe.display()));
    assert!(
        out.status.success(),
        "example `{name}` failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    normalise(&String::from_utf8(out.stdout).expect("example output is UTF-8"))
}

/// The `two-services` block: stock's debug view (text) of the call
/// orders made to reserve an order, both started as in the guide, with
/// both install-site flags on.
#[cfg(feature = "sqlite")]
fn two_services(exe: &Path) -> String {
    use common::orders_example::Server;

    let stock = Server::stock_from(
        exe,
        &["--admin-addr", "127.0.0.1:0", "--accept-install-sites"],
    );
    let stock_url = format!("http://{}", stock.addr);
    let orders = Server::orders_from(exe, &["--stock-url", &stock_url, "--send-install-sites"]);
    let placed = orders.post("/orders", r#"{"item": "tea", "quantity": 2}"#);
    assert_eq!(placed.status, 201, "placing an order: {}", placed.text());
    let trace = placed.header("trace-id").expect("a trace-id header");
    let view = stock.admin_get(&format!("/debug/context?trace={trace}"));
    assert_eq!(
        view.status,
        200,
        "stock's view of the call: {}",
        view.text()
    );
    without_sequence_numbers(&view.text())
}

/// `[inherited #17]` as `[inherited #<seq>]` (and `local` alike): the
/// number counts the installs of the thread, and a reactor thread's
/// depend on how many ticks it ran before the request came.
#[cfg(feature = "sqlite")]
fn without_sequence_numbers(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(" #") {
        let (before, from) = rest.split_at(at + 2);
        out.push_str(before);
        let digits = from
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(from.len());
        let policy = out.ends_with("[inherited #") || out.ends_with("[local #");
        if policy && digits > 0 {
            out.push_str("<seq>");
            rest = &from[digits..];
        } else {
            rest = from;
        }
    }
    out.push_str(rest);
    out
}

/// Replaces what legitimately differs between runs with a placeholder:
/// thread ids (`ThreadId(N)`), addresses (`0x` and 6+ hex digits), paths
/// under the system temp dir (`$TMP/...`), durations (`12.5ms`, `3s`),
/// rates (`50.3/s`), loopback ports (`127.0.0.1:<port>`) and W3C trace and
/// span ids (a word of 32 or 16 lowercase hex digits: `<trace-id>`,
/// `<span-id>`). Applied to the example's output and to the doc's block
/// alike, so a block may show either a real value or the placeholder.
fn normalise(text: &str) -> String {
    let tmp = std::env::temp_dir();
    let tmp = tmp.to_string_lossy();
    let tmp = tmp.trim_end_matches('/');
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(c) = rest.chars().next() {
        if !tmp.is_empty() && rest.starts_with(tmp) && rest[tmp.len()..].starts_with('/') {
            // The whole path: it usually holds a process id.
            let len = rest
                .find(|c: char| c.is_whitespace() || matches!(c, '"' | '\'' | '`' | ')'))
                .unwrap_or(rest.len());
            out.push_str("$TMP/...");
            rest = &rest[len..];
            continue;
        }
        if rest.starts_with("ThreadId(") {
            if let Some(close) = rest.find(')') {
                if rest["ThreadId(".len()..close]
                    .chars()
                    .all(|c| c.is_ascii_digit())
                {
                    out.push_str("ThreadId(N)");
                    rest = &rest[close + 1..];
                    continue;
                }
            }
        }
        if let Some(after) = rest.strip_prefix(LOOPBACK) {
            let port = after
                .find(|c: char| !c.is_ascii_digit())
                .unwrap_or(after.len());
            if port > 0 {
                out.push_str(LOOPBACK);
                out.push_str("<port>");
                rest = &after[port..];
                continue;
            }
        }
        let word_start = !out.ends_with(|c: char| c.is_alphanumeric() || c == '_' || c == '.');
        if word_start && c.is_ascii_hexdigit() {
            if let Some((len, placeholder)) = trace_or_span_id(rest) {
                out.push_str(placeholder);
                rest = &rest[len..];
                continue;
            }
        }
        if word_start && rest.starts_with("0x") {
            let hex = rest[2..]
                .find(|c: char| !c.is_ascii_hexdigit())
                .unwrap_or(rest.len() - 2);
            if hex >= 6 {
                out.push_str("0x...");
                rest = &rest[2 + hex..];
                continue;
            }
        }
        if word_start && c.is_ascii_digit() {
            if let Some(len) = measure(rest) {
                out.push_str("<measured>");
                rest = &rest[len..];
                continue;
            }
        }
        out.push(c);
        rest = &rest[c.len_utf8()..];
    }
    out
}

/// An address's start whose port [`normalise`] replaces.
const LOOPBACK: &str = "127.0.0.1:";

/// A trace id (32 lowercase hex digits) or span id (16) making up the
/// word at the start of `s`: its length and placeholder.
fn trace_or_span_id(s: &str) -> Option<(usize, &'static str)> {
    let len = s
        .find(|c: char| !matches!(c, '0'..='9' | 'a'..='f'))
        .unwrap_or(s.len());
    if s[len..].starts_with(|c: char| c.is_alphanumeric() || c == '_') {
        return None;
    }
    match len {
        32 => Some((len, "<trace-id>")),
        16 => Some((len, "<span-id>")),
        _ => None,
    }
}

/// The length of a duration or rate at the start of `s` (`12`, `12.5`
/// followed by `ns`, `µs`, `us`, `ms`, `s` or `/s`, then no letter or digit).
fn measure(s: &str) -> Option<usize> {
    let int = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let mut len = int;
    if s[len..].starts_with('.') {
        let frac = s[len + 1..]
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(s.len() - len - 1);
        if frac == 0 {
            return None;
        }
        len += 1 + frac;
    }
    let unit = ["/s", "ns", "µs", "us", "ms", "s"]
        .into_iter()
        .find(|u| s[len..].starts_with(u))?;
    len += unit.len();
    match s[len..].chars().next() {
        Some(c) if c.is_alphanumeric() || c == '_' => None,
        _ => Some(len),
    }
}

/// A line diff (longest common subsequence): `-` lines only in `old`, `+`
/// lines only in `new`, two spaces for lines in both.
fn diff(old: &[&str], new: &[&str]) -> String {
    let (n, m) = (old.len(), new.len());
    let mut lcs = vec![vec![0usize; m + 1]; n + 1];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            lcs[i][j] = if old[i] == new[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let mut out = String::new();
    let (mut i, mut j) = (0, 0);
    while i < n || j < m {
        if i < n && j < m && old[i] == new[j] {
            out += &format!("  {}\n", old[i]);
            i += 1;
            j += 1;
        } else if j < m && (i == n || lcs[i][j + 1] >= lcs[i + 1][j]) {
            out += &format!("+ {}\n", new[j]);
            j += 1;
        } else {
            out += &format!("- {}\n", old[i]);
            i += 1;
        }
    }
    out
}

#[test]
fn normalise_replaces_only_what_varies() {
    let tmp = std::env::temp_dir().join("milieu-outbox-4242/orders.db");
    let text = format!(
        "database: {}\nat examples/tour.rs:59:49 on ThreadId(12), 0x7ffd5e8a1c20, \
         50.3/s, p50 8.388607ms p99 37ms, 2s linger, 50 µs, 3 visible, v1.5\n\
         hop from 127.0.0.1:40312 (traceparent 00-4bf92f3577b34da6a3ce929d0e0e4736-\
         00f067aa0ba902b7-01), 10.0.0.1:80, 4bf92f3577b34da6a3ce929d0e0e473, \
         00f067aa0ba902b7x, 00F067AA0BA902B7",
        tmp.display()
    );
    assert_eq!(
        normalise(&text),
        "database: $TMP/...\nat examples/tour.rs:59:49 on ThreadId(N), 0x..., \
         <measured>, p50 <measured> p99 <measured>, <measured> linger, 50 µs, 3 visible, v1.5\n\
         hop from 127.0.0.1:<port> (traceparent 00-<trace-id>-<span-id>-01), 10.0.0.1:80, \
         4bf92f3577b34da6a3ce929d0e0e473, 00f067aa0ba902b7x, 00F067AA0BA902B7"
    );
}

#[test]
fn markers_parse() {
    let doc = "text `<!-- output: quoted -->` in prose\n<!-- output: tour after=\"a b:\" lines=3 -->\n```text\nx\ny\n```\n<!-- /output -->\nmore\n";
    let blocks = parse_blocks("doc", doc);
    assert_eq!(blocks.len(), 1);
    let b = &blocks[0];
    assert_eq!(b.example, "tour");
    assert_eq!(b.after.as_deref(), Some("a b:"));
    assert_eq!(b.lines, Some(3));
    assert_eq!(&doc[b.body.clone()], "x\ny\n");
    assert_eq!(
        b.select("0\na b:\n1\n2\n3\n4\n\nafter"),
        Ok(vec!["1", "2", "3", "..."])
    );
}
