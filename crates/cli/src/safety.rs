//! The clinical safety case as code (DCB0129): the hazard log (`docs/safety/hazards.toml`), the
//! gate that checks it against a test run's results, the Clinical Safety Case Report generated
//! from both, and the check that a change to code carrying a hazard also touched the log.
//!
//! The risk matrix and the acceptance line are those of `docs/safety/plan.md`: the log holds
//! severity and likelihood, the rating is read from the matrix here and never written by hand.

use anyhow::{bail, Context, Result};
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::Path;

/// Where the log lives, from the repository's root.
pub const LOG_PATH: &str = "docs/safety/hazards.toml";
/// The deployer's guide; every business-process control names one of its headings.
pub const GUIDE_PATH: &str = "docs/safety/deployment.md";
/// A risk at or above this rating is "above the line" (plan.md, *Risk matrix and acceptance*).
pub const ACCEPTANCE_LINE: u8 = 3;

/// The 5×5 matrix: `MATRIX[likelihood - 1][severity - 1]`.
const MATRIX: [[u8; 5]; 5] = [
    [1, 1, 2, 2, 3], // 1 Very low
    [1, 2, 2, 3, 4], // 2 Low
    [2, 2, 3, 3, 4], // 3 Medium
    [2, 3, 3, 4, 5], // 4 High
    [3, 4, 4, 5, 5], // 5 Very high
];

const SEVERITY: [&str; 5] = ["Minor", "Significant", "Considerable", "Major", "Catastrophic"];
const LIKELIHOOD: [&str; 5] = ["Very low", "Low", "Medium", "High", "Very high"];

/// The whole log.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Log {
    #[serde(default)]
    pub review: Vec<Review>,
    pub hazard: Vec<Hazard>,
}

/// One review of the log (its version history): when, by whom, what changed and why.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Review {
    pub date: String,
    pub by: String,
    pub change: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Hazard {
    pub id: String,
    pub title: String,
    pub causes: String,
    pub effect: String,
    pub harm: String,
    pub initial: Score,
    pub residual: Score,
    #[serde(default)]
    pub residual_justification: Option<String>,
    pub status: Status,
    #[serde(default)]
    pub sources: Vec<String>,
    /// Code paths (files or folders, from the repository's root) whose change needs this hazard
    /// reviewed.
    #[serde(default)]
    pub watch: Vec<String>,
    pub control: Vec<Control>,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Score {
    pub severity: u8,
    pub likelihood: u8,
}

impl Score {
    /// The rating from the matrix; `None` when severity or likelihood is out of 1–5.
    pub fn risk(self) -> Option<u8> {
        let (s, l) = (usize::from(self.severity), usize::from(self.likelihood));
        ((1..=5).contains(&s) && (1..=5).contains(&l)).then(|| MATRIX[l - 1][s - 1])
    }

    fn describe(self) -> String {
        match self.risk() {
            Some(r) => format!(
                "severity {} ({}) × likelihood {} ({}) = risk {r}",
                self.severity,
                SEVERITY[usize::from(self.severity) - 1],
                self.likelihood,
                LIKELIHOOD[usize::from(self.likelihood) - 1]
            ),
            None => format!("severity {} × likelihood {} (out of range)", self.severity, self.likelihood),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Open,
    Controlled,
    Closed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// The software is built so that it cannot do the unsafe thing.
    Design,
    /// An automated test proves a design control holds.
    Test,
    /// What the deploying organisation must do (DCB0160).
    Process,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Control {
    pub kind: Kind,
    pub text: String,
    /// For design and test controls: the tests that prove it, as `binary::path`.
    #[serde(default)]
    pub tests: Vec<String>,
    /// For process controls: the heading of `deployment.md` that tells the practice what to do.
    #[serde(default)]
    pub guide: Option<String>,
}

/// How one test ended in the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Passed,
    Failed,
    Ignored,
}

/// Every test the run reported, by `binary::path`.
#[derive(Debug, Default)]
pub struct Results {
    pub outcomes: BTreeMap<String, Outcome>,
}

impl Results {
    /// Reads cargo test's output (the test harness's "test NAME ... ok" lines, under each
    /// "Running … (…/deps/BINARY-HASH)" line). A name reported twice keeps its worst outcome.
    pub fn parse(text: &str) -> Self {
        let mut outcomes: BTreeMap<String, Outcome> = BTreeMap::new();
        let mut binary: Option<String> = None;
        for line in text.lines() {
            let line = line.trim_end();
            let trimmed = line.trim_start();
            if let Some(rest) = trimmed.strip_prefix("Running ") {
                binary = rest
                    .rsplit_once('(')
                    .and_then(|(_, p)| p.strip_suffix(')'))
                    .and_then(|p| Path::new(p).file_name().map(|f| f.to_string_lossy().into_owned()))
                    .map(|f| match f.rsplit_once('-') {
                        Some((name, hash)) if hash.chars().all(|c| c.is_ascii_hexdigit()) => name.to_owned(),
                        _ => f,
                    });
                continue;
            }
            if trimmed.starts_with("Doc-tests ") {
                binary = trimmed.strip_prefix("Doc-tests ").map(|c| format!("doc:{c}"));
                continue;
            }
            let (Some(bin), Some(rest)) = (&binary, line.strip_prefix("test ")) else { continue };
            let Some((name, result)) = rest.rsplit_once(" ... ") else { continue };
            let outcome = if result == "ok" {
                Outcome::Passed
            } else if result.starts_with("FAILED") {
                Outcome::Failed
            } else if result.starts_with("ignored") {
                Outcome::Ignored
            } else {
                continue;
            };
            let key = format!("{bin}::{}", name.trim());
            let worst = match (outcomes.get(&key), outcome) {
                (Some(Outcome::Failed), _) | (_, Outcome::Failed) => Outcome::Failed,
                (Some(Outcome::Ignored), _) | (_, Outcome::Ignored) => Outcome::Ignored,
                _ => Outcome::Passed,
            };
            outcomes.insert(key, worst);
        }
        Self { outcomes }
    }
}

/// Reads and parses the log.
pub fn load(root: &Path) -> Result<Log> {
    let path = root.join(LOG_PATH);
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("{} is not a valid hazard log", path.display()))
}

/// One thing wrong, naming the hazard it is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub hazard: String,
    pub what: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.hazard, self.what)
    }
}

/// Where the tests' source is, to tell a test that does not exist from one that did not run.
pub struct Sources {
    names: BTreeSet<String>,
}

impl Sources {
    /// Every function name in the Rust files under `crates/`.
    pub fn scan(root: &Path) -> Self {
        let mut names = BTreeSet::new();
        let mut stack = vec![root.join("crates")];
        while let Some(dir) = stack.pop() {
            let Ok(entries) = std::fs::read_dir(&dir) else { continue };
            for e in entries.flatten() {
                let p = e.path();
                if p.is_dir() {
                    stack.push(p);
                } else if p.extension().is_some_and(|x| x == "rs") {
                    if let Ok(text) = std::fs::read_to_string(&p) {
                        for word in
                            text.split(|c: char| !(c.is_alphanumeric() || c == '_')).collect::<Vec<_>>().windows(2)
                        {
                            if word[0] == "fn" {
                                names.insert(word[1].to_owned());
                            }
                        }
                    }
                }
            }
        }
        Self { names }
    }

    fn has(&self, test: &str) -> bool {
        test.rsplit("::").next().is_some_and(|f| self.names.contains(f))
    }
}

/// Checks the log against itself, the deployer's guide, the repository and the run's results.
pub fn check(root: &Path, log: &Log, results: &Results, sources: &Sources) -> Vec<Problem> {
    let guide = std::fs::read_to_string(root.join(GUIDE_PATH)).unwrap_or_default();
    let headings: BTreeSet<String> = guide
        .lines()
        .filter_map(|l| l.strip_prefix('#'))
        .map(|l| l.trim_start_matches('#').trim().to_owned())
        .collect();
    let mut problems = Vec::new();
    let mut seen = BTreeSet::new();
    for h in &log.hazard {
        let mut problem = |what: String| problems.push(Problem { hazard: h.id.clone(), what });
        if !seen.insert(h.id.clone()) {
            problem("the id is used by more than one hazard".into());
        }
        for field in [&h.title, &h.causes, &h.effect, &h.harm] {
            if field.trim().is_empty() {
                problem("title, causes, effect and harm must all be filled in".into());
                break;
            }
        }
        let (Some(initial), Some(residual)) = (h.initial.risk(), h.residual.risk()) else {
            problem("severity and likelihood must be from 1 to 5".into());
            continue;
        };
        if residual > initial {
            problem(format!("the residual risk ({residual}) is above the initial risk ({initial})"));
        }
        if residual > ACCEPTANCE_LINE {
            problem(format!("the residual risk is {residual}: unacceptable, it must be controlled down"));
        } else if residual == ACCEPTANCE_LINE && h.residual_justification.as_deref().is_none_or(|j| j.trim().is_empty())
        {
            problem(format!(
                "the residual risk is {residual}, at the acceptance line, with no residual_justification recorded"
            ));
        }
        let tested = h.control.iter().any(|c| c.kind != Kind::Process && !c.tests.is_empty());
        if initial >= ACCEPTANCE_LINE && !tested {
            problem(format!("the initial risk is {initial}, above the line, and no control names a test"));
        }
        for w in &h.watch {
            if !root.join(w).exists() {
                problem(format!("watches {w}, which does not exist (moved or renamed?)"));
            }
        }
        for c in &h.control {
            match c.kind {
                Kind::Process => match &c.guide {
                    Some(g) if headings.contains(g.trim()) => {}
                    Some(g) => {
                        problem(format!("a process control points to \"{g}\", which is not a heading of {GUIDE_PATH}"))
                    }
                    None => problem(format!("a process control must name its section of {GUIDE_PATH} (guide)")),
                },
                Kind::Design | Kind::Test if c.tests.is_empty() => {
                    let kind = if c.kind == Kind::Design { "design" } else { "test" };
                    problem(format!("the {kind} control \"{}\" names no test", short(&c.text)));
                }
                Kind::Design | Kind::Test => {}
            }
            for t in &c.tests {
                match results.outcomes.get(t) {
                    Some(Outcome::Passed) => {}
                    Some(Outcome::Failed) => problem(format!("the test {t} failed")),
                    Some(Outcome::Ignored) => problem(format!("the test {t} was ignored, so it proves nothing")),
                    None if sources.has(t) => {
                        problem(format!("the test {t} did not run (filtered out, or named with the wrong binary)"))
                    }
                    None => problem(format!("the test {t} does not exist (renamed or removed?)")),
                }
            }
        }
    }
    problems
}

fn short(s: &str) -> String {
    let s = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if s.chars().count() > 60 {
        format!("{}…", s.chars().take(60).collect::<String>())
    } else {
        s
    }
}

/// Counts for the summary: hazards, controls, distinct tests linked, and those that passed.
pub struct Counts {
    pub hazards: usize,
    pub controls: usize,
    pub tests: usize,
    pub passed: usize,
}

pub fn counts(log: &Log, results: &Results) -> Counts {
    let tests: BTreeSet<&String> = log.hazard.iter().flat_map(|h| &h.control).flat_map(|c| &c.tests).collect();
    Counts {
        hazards: log.hazard.len(),
        controls: log.hazard.iter().map(|h| h.control.len()).sum(),
        passed: tests.iter().filter(|t| results.outcomes.get(t.as_str()) == Some(&Outcome::Passed)).count(),
        tests: tests.len(),
    }
}

/// The facts of the run the report stands on.
pub struct Run {
    pub commit: String,
    pub date: String,
}

impl Run {
    /// The commit checked out at `root` (with "+ changes" when the tree has uncommitted ones),
    /// and the date the results file was written.
    pub fn of(root: &Path, results_file: &Path) -> Self {
        let git = |args: &[&str]| {
            std::process::Command::new("git")
                .args(args)
                .current_dir(root)
                .output()
                .ok()
                .filter(|o| o.status.success())
                .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        };
        let mut commit = git(&["rev-parse", "--short=12", "HEAD"]).unwrap_or_else(|| "unknown".into());
        if git(&["status", "--porcelain", "--untracked-files=no"]).is_some_and(|s| !s.is_empty()) {
            commit.push_str(" + uncommitted changes");
        }
        let date = std::fs::metadata(results_file)
            .and_then(|m| m.modified())
            .map(|t| chrono::DateTime::<chrono::Utc>::from(t).format("%Y-%m-%d %H:%M UTC").to_string())
            .unwrap_or_else(|_| "unknown".into());
        Self { commit, date }
    }
}

fn outcome_words(results: &Results, test: &str) -> &'static str {
    match results.outcomes.get(test) {
        Some(Outcome::Passed) => "passed",
        Some(Outcome::Failed) => "FAILED",
        Some(Outcome::Ignored) => "IGNORED",
        None => "NOT RUN",
    }
}

/// The Clinical Safety Case Report, as Markdown.
pub fn report_markdown(log: &Log, results: &Results, problems: &[Problem], run: &Run) -> String {
    let c = counts(log, results);
    let mut md = String::new();
    let _ = writeln!(md, "# caldicott: Clinical Safety Case Report (DCB0129)\n");
    let _ = writeln!(
        md,
        "Generated by `caldicott safety report` from the hazard log (`{LOG_PATH}`) and the results of \
         the test run of {} at commit `{}`. Not for clinical use until signed by the Clinical Safety \
         Officer (see `docs/safety/plan.md`).\n",
        run.date, run.commit
    );
    let _ = writeln!(md, "## Summary\n");
    let _ = writeln!(
        md,
        "- {} hazards, {} controls, {} distinct tests linked, {} of them passed in this run.",
        c.hazards, c.controls, c.tests, c.passed
    );
    let mut by_residual = BTreeMap::new();
    for h in &log.hazard {
        *by_residual.entry(h.residual.risk().unwrap_or(0)).or_insert(0) += 1;
    }
    let spread: Vec<String> = by_residual.iter().rev().map(|(r, n)| format!("{n} at risk {r}")).collect();
    let _ = writeln!(md, "- Residual risk: {}.", spread.join(", "));
    if problems.is_empty() {
        let _ = writeln!(md, "- The safety gate found no problem: every control's tests ran and passed.\n");
    } else {
        let _ = writeln!(md, "- **The safety gate found {} problems** (listed under *Open issues*).\n", problems.len());
    }
    let _ = writeln!(md, "| Hazard | Title | Initial | Residual | Status | Tests passed |");
    let _ = writeln!(md, "|---|---|---|---|---|---|");
    for h in &log.hazard {
        let tests: Vec<&String> = h.control.iter().flat_map(|c| &c.tests).collect();
        let passed = tests.iter().filter(|t| results.outcomes.get(t.as_str()) == Some(&Outcome::Passed)).count();
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {:?} | {passed} of {} |",
            h.id,
            h.title,
            h.initial.risk().unwrap_or(0),
            h.residual.risk().unwrap_or(0),
            h.status,
            tests.len()
        );
    }
    let _ = writeln!(md, "\n## Hazards\n");
    for h in &log.hazard {
        let _ = writeln!(md, "### {}: {}\n", h.id, h.title);
        let _ = writeln!(md, "- **Causes:** {}", h.causes.trim());
        let _ = writeln!(md, "- **Effect:** {}", h.effect.trim());
        let _ = writeln!(md, "- **Harm:** {}", h.harm.trim());
        let _ = writeln!(md, "- **Initial risk:** {}", h.initial.describe());
        let _ = writeln!(md, "- **Residual risk:** {}", h.residual.describe());
        if let Some(j) = &h.residual_justification {
            let _ = writeln!(md, "- **Why the residual risk is accepted:** {}", j.trim());
        }
        let _ = writeln!(md, "- **Status:** {:?}", h.status);
        if !h.sources.is_empty() {
            let _ = writeln!(md, "- **Sources:** {}", h.sources.join("; "));
        }
        let _ = writeln!(md, "\nControls:\n");
        for c in &h.control {
            let kind = match c.kind {
                Kind::Design => "Design",
                Kind::Test => "Test",
                Kind::Process => "Deployer (DCB0160)",
            };
            let _ = write!(md, "- *{kind}:* {}", c.text.trim());
            if let Some(g) = &c.guide {
                let _ = write!(md, " (deployment.md: \"{g}\")");
            }
            let _ = writeln!(md);
            for t in &c.tests {
                let _ = writeln!(md, "  - `{t}`: {}, {}, {}", outcome_words(results, t), run.date, run.commit);
            }
        }
        let _ = writeln!(md);
    }
    let _ = writeln!(md, "## Open issues\n");
    let open: Vec<&Hazard> = log.hazard.iter().filter(|h| h.status == Status::Open).collect();
    let at_line: Vec<&Hazard> =
        log.hazard.iter().filter(|h| h.residual.risk().is_some_and(|r| r >= ACCEPTANCE_LINE)).collect();
    if open.is_empty() && at_line.is_empty() && problems.is_empty() {
        let _ = writeln!(md, "None: no hazard is open, none is left at the acceptance line, and the gate passed.");
    }
    for h in open {
        let _ = writeln!(md, "- {} ({}) is open: its analysis or controls are not finished.", h.id, h.title);
    }
    for h in at_line {
        let _ = writeln!(
            md,
            "- {} ({}) is accepted at residual risk {}: {}",
            h.id,
            h.title,
            h.residual.risk().unwrap_or(0),
            h.residual_justification.as_deref().unwrap_or("no justification recorded").trim()
        );
    }
    for p in problems {
        let _ = writeln!(md, "- Gate: {p}");
    }
    if !log.review.is_empty() {
        let _ = writeln!(md, "\n## Review history\n");
        for r in &log.review {
            let _ = writeln!(md, "- {} ({}): {}", r.date, r.by, r.change.trim());
        }
    }
    md
}

/// The same report as a tagged PDF.
pub fn report_pdf(md: &str) -> Result<Vec<u8>> {
    use caldicott_pdf::{render, Block, PdfDocument};
    let mut blocks = Vec::new();
    let mut para = String::new();
    let flush = |para: &mut String, blocks: &mut Vec<Block>| {
        if !para.trim().is_empty() {
            blocks.push(Block::Para(std::mem::take(para).trim_end().to_owned()));
        }
        para.clear();
    };
    for line in md.lines().skip(1) {
        let plain = line.replace("**", "").replace('`', "");
        if let Some(h) = plain.strip_prefix("### ") {
            flush(&mut para, &mut blocks);
            blocks.push(Block::Heading(3, h.to_owned()));
        } else if let Some(h) = plain.strip_prefix("## ") {
            flush(&mut para, &mut blocks);
            blocks.push(Block::Heading(2, h.to_owned()));
        } else if plain.trim().is_empty() {
            flush(&mut para, &mut blocks);
        } else if plain.starts_with("|---") {
            continue;
        } else if let Some(row) = plain.strip_prefix("| ") {
            let cells: Vec<&str> = row.trim_end_matches('|').split(" | ").map(str::trim).collect();
            para.push_str(&cells.join(" · "));
            para.push('\n');
        } else {
            para.push_str(plain.trim_start_matches("- ").replace('*', "").as_str());
            para.push('\n');
        }
    }
    flush(&mut para, &mut blocks);
    let doc = PdfDocument {
        title: "caldicott: Clinical Safety Case Report (DCB0129)".into(),
        author: "caldicott".into(),
        letterhead: vec!["caldicott".into(), "Clinical Safety Case Report (DCB0129)".into()],
        running_header: "caldicott: Clinical Safety Case Report".into(),
        blocks,
    };
    render(&doc, |_, _| {}).map_err(|e| anyhow::anyhow!(e.to_string()))
}

/// The hazards whose watched paths `changed` touches, with the paths.
pub fn hazards_touched<'a>(log: &'a Log, changed: &[String]) -> Vec<(&'a Hazard, Vec<String>)> {
    log.hazard
        .iter()
        .filter_map(|h| {
            let hits: Vec<String> = changed
                .iter()
                .filter(|c| {
                    h.watch.iter().any(|w| {
                        let w = w.trim_end_matches('/');
                        c.as_str() == w || c.starts_with(&format!("{w}/"))
                    })
                })
                .cloned()
                .collect();
            (!hits.is_empty()).then_some((h, hits))
        })
        .collect()
}

fn git_lines(root: &Path, args: &[&str]) -> Result<Vec<String>> {
    let out = std::process::Command::new("git").args(args).current_dir(root).output().context("running git")?;
    if !out.status.success() {
        bail!("git {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&out.stdout).lines().filter(|l| !l.is_empty()).map(str::to_owned).collect())
}

/// The files changed since the hazard log last changed (committed since then, or changed in the
/// working tree), or `None` when the log itself has uncommitted changes (being reviewed now).
pub fn changed_since_log(root: &Path, since: Option<&str>) -> Result<Option<Vec<String>>> {
    let dirty = git_lines(root, &["status", "--porcelain", "--untracked-files=no"])?;
    if dirty.iter().any(|l| l.get(3..).is_some_and(|p| p.trim() == LOG_PATH)) {
        return Ok(None);
    }
    let base = match since {
        Some(s) => s.to_owned(),
        None => git_lines(root, &["log", "-1", "--format=%H", "--", LOG_PATH])?
            .into_iter()
            .next()
            .context("the hazard log has never been committed")?,
    };
    let mut changed: BTreeSet<String> =
        git_lines(root, &["diff", "--name-only", &format!("{base}..HEAD")])?.into_iter().collect();
    changed.extend(git_lines(root, &["diff", "--name-only", "HEAD"])?);
    Ok(Some(changed.into_iter().collect()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    const RUN: &str = "\
     Running unittests src/lib.rs (/t/debug/deps/caldicott_core-0123abcd)

running 2 tests
test visibility::tests::hidden_never_shown ... ok
test visibility::tests::slow ... ignored, takes an hour

     Running tests/update_record.rs (/t/debug/deps/update_record-89ab)

running 2 tests
test a_summary_is_filed_once ... FAILED
test a_summary_is_filed_once_on_postgres ... ok
test a_summary_is_filed_once_on_postgres has been running for over 60 seconds

   Doc-tests caldicott_core

running 1 test
test crates/core/src/lib.rs - doc (line 3) ... ok
";

    fn log(text: &str) -> Log {
        toml::from_str(text).unwrap()
    }

    const HAZARD: &str = r#"
[[hazard]]
id = "H01"
title = "Hidden entry shown"
causes = "a path misses the engine"
effect = "the patient reads it"
harm = "abuse"
initial = { severity = 5, likelihood = 3 }
residual = { severity = 5, likelihood = 1 }
residual_justification = "every output path goes through the engine"
status = "controlled"
watch = ["crates/cli/src/safety.rs"]
[[hazard.control]]
kind = "design"
text = "one engine"
tests = ["caldicott_core::visibility::tests::hidden_never_shown", "update_record::a_summary_is_filed_once_on_postgres"]
"#;

    fn root() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
    }

    #[test]
    fn the_run_is_read_per_binary_with_each_tests_outcome() {
        let r = Results::parse(RUN);
        assert_eq!(r.outcomes.get("caldicott_core::visibility::tests::hidden_never_shown"), Some(&Outcome::Passed));
        assert_eq!(r.outcomes.get("caldicott_core::visibility::tests::slow"), Some(&Outcome::Ignored));
        assert_eq!(r.outcomes.get("update_record::a_summary_is_filed_once"), Some(&Outcome::Failed));
        assert_eq!(r.outcomes.get("update_record::a_summary_is_filed_once_on_postgres"), Some(&Outcome::Passed));
        assert!(r.outcomes.contains_key("doc:caldicott_core::crates/core/src/lib.rs - doc (line 3)"));
        assert_eq!(r.outcomes.len(), 5);
    }

    #[test]
    fn the_risk_is_read_from_the_matrix() {
        let r = |severity, likelihood| Score { severity, likelihood }.risk();
        assert_eq!(r(5, 3), Some(4)); // H01's initial risk in the starter log
        assert_eq!(r(5, 1), Some(3));
        assert_eq!(r(4, 1), Some(2));
        assert_eq!(r(2, 3), Some(2));
        assert_eq!(r(1, 5), Some(3));
        assert_eq!(r(5, 5), Some(5));
        assert_eq!(r(0, 3), None);
        assert_eq!(r(3, 6), None);
    }

    #[test]
    fn a_log_whose_tests_all_passed_passes_the_gate() {
        let problems = check(&root(), &log(HAZARD), &Results::parse(RUN), &Sources::scan(&root()));
        assert_eq!(problems, vec![]);
    }

    #[test]
    fn the_gate_names_the_hazard_of_a_test_renamed_failed_ignored_or_not_run() {
        // T47: every dangling, failed or skipped reference fails the gate, naming the hazard.
        let results = Results::parse(RUN);
        let sources = Sources::scan(&root());
        for (test, says) in [
            ("caldicott_core::visibility::tests::hidden_never_shown_renamed", "does not exist"),
            ("update_record::a_summary_is_filed_once", "failed"),
            ("caldicott_core::visibility::tests::slow", "was ignored"),
            // A real function that is not in this run.
            ("caldicott::safety::tests::the_risk_is_read_from_the_matrix", "did not run"),
        ] {
            let text = HAZARD.replace("caldicott_core::visibility::tests::hidden_never_shown", test);
            let problems = check(&root(), &log(&text), &results, &sources);
            assert_eq!(problems.len(), 1, "{test}: {problems:?}");
            assert_eq!(problems[0].hazard, "H01");
            assert!(problems[0].what.contains(says) && problems[0].what.contains(test), "{}", problems[0]);
        }
    }

    #[test]
    fn a_hazard_above_the_line_without_a_tested_control_or_justification_fails() {
        let results = Results::parse(RUN);
        let sources = Sources::scan(&root());
        let untested = HAZARD.replace("kind = \"design\"", "kind = \"process\"\nguide = \"Nowhere\"");
        let untested = untested.replace(
            "tests = [\"caldicott_core::visibility::tests::hidden_never_shown\", \"update_record::a_summary_is_filed_once_on_postgres\"]",
            "",
        );
        let p = check(&root(), &log(&untested), &results, &sources);
        assert!(p.iter().any(|p| p.what.contains("above the line, and no control names a test")), "{p:?}");
        assert!(p.iter().any(|p| p.what.contains("not a heading")), "{p:?}");
        let unjustified =
            HAZARD.replace("residual_justification = \"every output path goes through the engine\"\n", "");
        let p = check(&root(), &log(&unjustified), &results, &sources);
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(p[0].what.contains("no residual_justification"), "{p:?}");
        let unacceptable = HAZARD
            .replace("residual = { severity = 5, likelihood = 1 }", "residual = { severity = 5, likelihood = 2 }");
        let p = check(&root(), &log(&unacceptable), &results, &sources);
        assert!(p.iter().any(|p| p.what.contains("unacceptable")), "{p:?}");
        let untested_design = HAZARD.replace(
            "tests = [\"caldicott_core::visibility::tests::hidden_never_shown\", \"update_record::a_summary_is_filed_once_on_postgres\"]",
            "",
        );
        let p = check(&root(), &log(&untested_design), &results, &sources);
        assert!(p.iter().any(|p| p.what == "the design control \"one engine\" names no test"), "{p:?}");
        let gone = HAZARD.replace("crates/cli/src/safety.rs", "crates/cli/src/gone.rs");
        let p = check(&root(), &log(&gone), &results, &sources);
        assert!(p.iter().any(|p| p.what.contains("does not exist (moved or renamed?)")), "{p:?}");
        let twice = format!("{HAZARD}{}", HAZARD.replace("Hidden entry shown", "Again"));
        let p = check(&root(), &log(&twice), &results, &sources);
        assert!(p.iter().any(|p| p.what.contains("more than one hazard")), "{p:?}");
    }

    #[test]
    fn a_change_to_a_watched_path_names_the_hazards_to_review() {
        let l = log(HAZARD);
        let touched = hazards_touched(&l, &["crates/cli/src/safety.rs".into(), "README.md".into()]);
        assert_eq!(touched.len(), 1);
        assert_eq!(touched[0].0.id, "H01");
        assert_eq!(touched[0].1, vec!["crates/cli/src/safety.rs".to_owned()]);
        assert!(hazards_touched(&l, &["crates/cli/src/safety.rs.orig".into(), "README.md".into()]).is_empty());
    }

    #[test]
    fn the_report_carries_each_hazard_its_evidence_and_the_open_issues() {
        let results = Results::parse(RUN);
        let run = Run { commit: "abc123".into(), date: "2026-12-06 10:00 UTC".into() };
        let problems = vec![Problem { hazard: "H01".into(), what: "the test x failed".into() }];
        let md = report_markdown(&log(HAZARD), &results, &problems, &run);
        assert!(md.contains("### H01: Hidden entry shown"));
        assert!(md
            .contains("`caldicott_core::visibility::tests::hidden_never_shown`: passed, 2026-12-06 10:00 UTC, abc123"));
        assert!(md.contains("Initial risk:** severity 5 (Catastrophic) × likelihood 3 (Medium) = risk 4"));
        assert!(md.contains("- Gate: H01: the test x failed"));
        assert!(md.contains("H01 (Hidden entry shown) is accepted at residual risk 3"));
        let pdf = report_pdf(&md).unwrap();
        assert!(pdf.starts_with(b"%PDF"));
    }
}
