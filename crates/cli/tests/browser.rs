#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Runs the browser tests in `e2e/` (Playwright driving Debian's Chromium, with axe-core)
//! against the binary this build produced, so that `cargo test` runs them with everything else.

use std::path::PathBuf;
use std::process::Command;

#[test]
fn browser_tests_pass() {
    let e2e = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../e2e");
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        std::path::Path::new(&chromium).exists(),
        "the browser tests need Debian's Chromium at {chromium}: run scripts/test.sh (it installs it) or `apt-get install chromium`"
    );
    let installed = e2e.join("node_modules/playwright-core/package.json").exists()
        && e2e.join("node_modules/axe-core/package.json").exists()
        && e2e.join("node_modules/oidc-provider/package.json").exists();
    if !installed {
        let status = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund", "--ignore-scripts"])
            .current_dir(&e2e)
            .status()
            .expect("npm runs (Node.js and npm are needed for the browser tests)");
        assert!(status.success(), "npm ci in e2e/ failed");
    }
    let output = Command::new("node")
        .args(["--test", "--test-concurrency=1", "--test-reporter=spec", "tests/"])
        .current_dir(&e2e)
        .env("CALDICOTT_BIN", env!("CARGO_BIN_EXE_caldicott"))
        .env("CHROMIUM", &chromium)
        .output()
        .expect("node runs");
    let report = String::from_utf8_lossy(&output.stdout);
    println!("{report}\n{}", String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "browser tests failed:\n{report}");
    let count = |label: &str| {
        report
            .lines()
            .find_map(|l| {
                l.trim_start_matches(['ℹ', '#', ' ']).strip_prefix(label).map(|n| n.trim().parse::<u32>().unwrap_or(0))
            })
            .unwrap_or(0)
    };
    assert!(count("pass ") >= 17 && count("fail ") == 0, "the browser tests did not all run and pass:\n{report}");
}
