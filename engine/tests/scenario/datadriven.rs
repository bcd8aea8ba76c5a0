//! A minimal datadriven file format, after etcd's `testdata/*.txt`:
//!
//! ```text
//! # Comments and blank lines before a command are kept as they are.
//! propose 2 hello
//! ----
//! r1
//!
//! stabilize
//! ----
//! r1 (at 2): committed id=1 index=2 term=1
//! ```
//!
//! A case is one command line, a `----` line, and the expected output up to
//! the next blank line (outputs never contain blank lines). With
//! `ORDO_REWRITE=1` the file is rewritten with the actual outputs, to be
//! reviewed as a diff.

use std::fmt::Write as _;

/// One command and what it should print.
#[derive(Clone, Debug)]
pub struct Case {
    /// Comment and blank lines before the command, verbatim.
    pub prelude: Vec<String>,
    /// The command line.
    pub command: String,
    /// The expected output lines.
    pub expected: Vec<String>,
    /// Line number of the command (1-based), for messages.
    pub line: usize,
}

/// A parsed file: its cases and whatever follows the last one.
#[derive(Clone, Debug)]
pub struct Script {
    /// The cases, in order.
    pub cases: Vec<Case>,
    /// Comment and blank lines after the last case.
    pub epilogue: Vec<String>,
}

/// Parses a script; panics with the line number on a malformed one.
pub fn parse(name: &str, text: &str) -> Script {
    let lines: Vec<&str> = text.lines().collect();
    let mut cases = Vec::new();
    let mut prelude = Vec::new();
    let mut at = 0;
    while at < lines.len() {
        let line = lines[at];
        if line.trim().is_empty() || line.starts_with('#') {
            prelude.push(line.to_string());
            at += 1;
            continue;
        }
        let command_line = at + 1;
        assert!(
            lines.get(at + 1) == Some(&"----"),
            "{name}:{}: expected `----` after the command `{line}`",
            at + 2
        );
        let mut expected = Vec::new();
        at += 2;
        while at < lines.len() && !lines[at].trim().is_empty() {
            expected.push(lines[at].to_string());
            at += 1;
        }
        // The blank line that ends the output is the separator.
        at += 1;
        // The blank line after the previous output already separates.
        let skip = prelude.iter().take_while(|l| l.trim().is_empty()).count();
        cases.push(Case {
            prelude: std::mem::take(&mut prelude).split_off(skip),
            command: line.to_string(),
            expected,
            line: command_line,
        });
    }
    Script {
        cases,
        epilogue: prelude,
    }
}

/// The file text for `script` with `outputs` (one per case).
pub fn render(script: &Script, outputs: &[Vec<String>]) -> String {
    let mut text = String::new();
    for (i, (case, output)) in script.cases.iter().zip(outputs).enumerate() {
        if i > 0 {
            text.push('\n');
        }
        for line in &case.prelude {
            writeln!(text, "{line}").expect("string");
        }
        writeln!(text, "{}\n----", case.command).expect("string");
        for line in output {
            writeln!(text, "{line}").expect("string");
        }
    }
    if !script.epilogue.is_empty() {
        text.push('\n');
        for line in &script.epilogue {
            writeln!(text, "{line}").expect("string");
        }
    }
    text
}
