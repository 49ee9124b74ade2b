//! Bounded mutation fuzzing of the graph reader: seeded random edits of the shipped graphs
//! and their macros, loaded with [`load_graph`] (parse, `${param}` substitution, macros,
//! `--set`), validated against an empty registry, and every diagnostic rendered. Each
//! input must give `Ok` or `Err` with a bounded report: no panic, no stack overflow.
//!
//! Why not cargo-fuzz: it needs a nightly toolchain and runs outside `cargo test`; this
//! runs in CI on stable within a fixed time and seed, so a failure reproduces.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use proptest::prelude::Rng;
use proptest::test_runner::{RngAlgorithm, TestRng};
use voxflow_engine::graph::{load_graph, LoadOptions};
use voxflow_engine::validate::{validate, validate_template, ValidateOptions};
use voxflow_engine::Registry;

/// Time spent mutating (CI runs on 2 cores; the whole suite must stay fast).
const BUDGET: Duration = Duration::from_secs(15);

/// Text that tends to reach corners of the reader: brackets, strings and escapes, param
/// references, comments, numbers at the edges, non-ASCII and a byte order mark.
const TOKENS: &[&str] = &[
    "[",
    "]",
    "(",
    ")",
    "{",
    "}",
    "\"",
    ",",
    ":",
    "${",
    "}",
    "${seed}",
    "${a}",
    "${ct}",
    "\"${seed}\"",
    "\\",
    "\\u{",
    "\\u{110000}",
    "r#\"",
    "\"#",
    "/*",
    "*/",
    "//",
    "\n",
    "\r\n",
    "“",
    "”",
    "\u{feff}",
    "é",
    "日本",
    "-",
    "+",
    "0x",
    "0xffffffffffffffffff",
    "1e999",
    "-inf",
    "NaN",
    "Some(",
    "None",
    "9223372036854775808",
    "-9223372036854775808",
    ".5",
    "1_000",
    "macros/postprocess_structure.ron",
    "missing.ron",
    "\"node\": ",
    "node: ",
    "params: ",
    "inputs: ",
    "outputs: ",
    "\"x.y\"",
    "Graph(",
    "true",
    "()",
    "\t",
    "\0",
];

fn rng_below(rng: &mut TestRng, n: usize) -> usize {
    (rng.next_u64() % n.max(1) as u64) as usize
}

/// A random char boundary of `s`.
fn boundary(rng: &mut TestRng, s: &str) -> usize {
    let mut i = rng_below(rng, s.len() + 1);
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// One to four random edits of `text`; stays valid UTF-8 (the reader takes `&str`).
fn mutate(rng: &mut TestRng, text: &str) -> String {
    let mut s = text.to_string();
    for _ in 0..1 + rng_below(rng, 4) {
        let a = boundary(rng, &s);
        let b = boundary(rng, &s);
        let (lo, hi) = (a.min(b), a.max(b));
        match rng_below(rng, 7) {
            0 => s.insert_str(a, TOKENS[rng_below(rng, TOKENS.len())]),
            1 => {
                // A short deletion.
                let hi = (lo..=hi.min(lo + 40))
                    .rev()
                    .find(|i| s.is_char_boundary(*i))
                    .unwrap();
                s.replace_range(lo..hi, "");
            }
            2 => {
                // Duplicate a stretch (repeats nodes, params, brackets).
                let hi = (lo..=hi.min(lo + 400))
                    .rev()
                    .find(|i| s.is_char_boundary(*i))
                    .unwrap();
                let piece = s[lo..hi].to_string();
                s.insert_str(hi, &piece);
            }
            3 => s.truncate(a),
            4 => {
                // A run of one token, deep enough to test the nesting limit.
                let t = TOKENS[rng_below(rng, 6)];
                s.insert_str(a, &t.repeat(1 + rng_below(rng, 400)));
            }
            5 => {
                // Replace one character by a random one (any plane).
                if let Some(c) = s[a..].chars().next() {
                    let r = char::from_u32(rng.next_u32() % 0x3_0000).unwrap_or('\u{fffd}');
                    s.replace_range(a..a + c.len_utf8(), &r.to_string());
                }
            }
            _ => {
                // Swap two stretches' order by moving one.
                let hi = (lo..=hi.min(lo + 80))
                    .rev()
                    .find(|i| s.is_char_boundary(*i))
                    .unwrap();
                let piece: String = s.drain(lo..hi).collect();
                let at = boundary(rng, &s);
                s.insert_str(at, &piece);
            }
        }
    }
    s
}

fn graphs_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../graphs")
}

/// The shipped graph files, relative to graphs/.
fn shipped() -> Vec<PathBuf> {
    let mut out = Vec::new();
    for dir in [graphs_dir(), graphs_dir().join("macros")] {
        for e in std::fs::read_dir(&dir).unwrap().flatten() {
            let p = e.path();
            if p.extension().is_some_and(|x| x == "ron") {
                out.push(p.strip_prefix(graphs_dir()).unwrap().to_path_buf());
            }
        }
    }
    out.sort();
    out
}

/// Load, validate and render one graph; a panic is returned as its message.
fn exercise(path: &Path, set: &[String]) -> Result<usize, String> {
    catch_unwind(AssertUnwindSafe(|| {
        let opts = LoadOptions::from_args(set);
        let text = match load_graph(path, &opts) {
            Err(d) => d.to_string(),
            Ok(g) => {
                let registry = Registry::new();
                let vopts = ValidateOptions::default();
                let a = match validate(&g, &registry, &vopts) {
                    Ok(p) => p.warnings.to_string(),
                    Err(d) => d.to_string(),
                };
                let b = match validate_template(&g, &registry, &vopts) {
                    Ok(t) => t.warnings.to_string(),
                    Err(d) => d.to_string(),
                };
                a + &b
            }
        };
        text.len()
    }))
    .map_err(|e| {
        e.downcast_ref::<String>()
            .cloned()
            .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default()
    })
}

#[test]
fn mutated_graphs_load_or_fail_cleanly() {
    let files = shipped();
    assert!(files.len() >= 5, "{files:?}");
    let work = tempfile::tempdir().unwrap();
    let root = work.path().join("graphs");
    std::fs::create_dir_all(root.join("macros")).unwrap();
    let originals: Vec<String> = files
        .iter()
        .map(|f| {
            let text = std::fs::read_to_string(graphs_dir().join(f)).unwrap();
            std::fs::write(root.join(f), &text).unwrap();
            text
        })
        .collect();
    // Every shipped graph loads as it is (a reader that refused all would pass otherwise).
    for f in files.iter().filter(|f| f.parent() == Some(Path::new(""))) {
        let g = load_graph(&root.join(f), &LoadOptions::default());
        assert!(g.is_ok(), "{}: {}", f.display(), g.unwrap_err());
    }

    let mut rng = TestRng::from_seed(RngAlgorithm::ChaCha, &[16; 32]);
    let start = Instant::now();
    let (mut runs, mut loaded_ok, mut longest) = (0usize, 0usize, 0usize);
    let mut findings = Vec::new();
    while start.elapsed() < BUDGET && runs < 200_000 {
        let i = rng_below(&mut rng, files.len());
        let mutated = mutate(&mut rng, &originals[i]);
        std::fs::write(root.join(&files[i]), &mutated).unwrap();
        // A mutated macro is reached through demo.ron, which uses it.
        let top = if files[i].starts_with("macros") {
            root.join("demo.ron")
        } else {
            root.join(&files[i])
        };
        let set: Vec<String> = if rng_below(&mut rng, 4) == 0 {
            vec![format!("seed={}", mutate(&mut rng, "[(1, 2)]"))]
        } else {
            Vec::new()
        };
        match exercise(&top, &set) {
            Ok(len) => {
                longest = longest.max(len);
                loaded_ok += usize::from(load_graph(&top, &LoadOptions::default()).is_ok());
            }
            Err(panic) => findings.push(format!(
                "{} (run {runs}): {panic}\n{}",
                files[i].display(),
                mutated.chars().take(300).collect::<String>()
            )),
        }
        std::fs::write(root.join(&files[i]), &originals[i]).unwrap();
        runs += 1;
    }
    eprintln!(
        "graph fuzz: {runs} mutated graphs in {:.1} s, {loaded_ok} loaded, longest report {longest} bytes, {} panics",
        start.elapsed().as_secs_f64(),
        findings.len()
    );
    assert!(findings.is_empty(), "{}", findings.join("\n\n"));
    assert!(runs >= 100, "only {runs} runs");
    // At most 50 diagnostics are printed, each a window of its line: the report stays
    // small whatever the input (twice: validate and validate_template).
    assert!(longest < 2 * 64 * 1024, "a report of {longest} bytes");
}
