//! Brings in the NHS.UK design system from the `nhsuk-frontend` npm package, pinned by the
//! workspace's package-lock.json. If the package is not installed yet, runs `npm ci` (so a fresh
//! clone needs nothing by hand). The stylesheet's web-font rules, which point at a CDN, are
//! removed: caldicott serves every asset itself and falls back to Arial.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap_or_default()).join("../..");
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap_or_default());
    println!("cargo:rerun-if-changed=../../package-lock.json");
    println!("cargo:rerun-if-changed=../../package.json");
    println!("cargo:rerun-if-changed=assets");

    let lock = fs::read_to_string(root.join("package-lock.json")).unwrap_or_else(|e| panic!("package-lock.json: {e}"));
    let pinned = pinned_version(&lock).unwrap_or_else(|| panic!("package-lock.json does not pin nhsuk-frontend"));
    let dist = root.join("node_modules/nhsuk-frontend/dist/nhsuk");
    if installed_version(&root) != Some(pinned.clone()) {
        let status = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund", "--ignore-scripts"])
            .current_dir(&root)
            .status()
            .unwrap_or_else(|e| panic!("could not run npm to install nhsuk-frontend (install Node.js and npm): {e}"));
        assert!(status.success(), "npm ci failed");
    }
    let css =
        fs::read_to_string(dist.join("nhsuk-frontend.min.css")).unwrap_or_else(|e| panic!("nhsuk-frontend css: {e}"));
    let assets = out.join("assets");
    fs::create_dir_all(assets.join("images")).unwrap_or_else(|e| panic!("{e}"));
    fs::write(assets.join("nhsuk-frontend.min.css"), strip_web_fonts(&css)).unwrap_or_else(|e| panic!("{e}"));
    fs::copy(dist.join("nhsuk-frontend.min.js"), assets.join("nhsuk-frontend.min.js"))
        .unwrap_or_else(|e| panic!("{e}"));
    let mut images = Vec::new();
    for entry in fs::read_dir(dist.join("assets/images")).unwrap_or_else(|e| panic!("{e}")).flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.ends_with(".svg") || name.ends_with(".png") || name.ends_with(".ico") {
            fs::copy(entry.path(), assets.join("images").join(&name)).unwrap_or_else(|e| panic!("{e}"));
            images.push(name);
        }
    }
    images.sort();
    // A table of every asset for the router: (URL path, content type, file in OUT_DIR).
    let mut table = String::from("pub static ASSETS: &[(&str, &str, &[u8])] = &[\n");
    for (url, file, kind) in [
        ("/assets/nhsuk-frontend.min.css", "nhsuk-frontend.min.css", "text/css; charset=utf-8"),
        ("/assets/nhsuk-frontend.min.js", "nhsuk-frontend.min.js", "text/javascript; charset=utf-8"),
    ] {
        table.push_str(&format!(
            "    ({url:?}, {kind:?}, include_bytes!(concat!(env!(\"OUT_DIR\"), \"/assets/{file}\"))),\n"
        ));
    }
    for name in &images {
        let kind = match Path::new(name).extension().and_then(|e| e.to_str()) {
            Some("svg") => "image/svg+xml",
            Some("png") => "image/png",
            _ => "image/x-icon",
        };
        table.push_str(&format!(
            "    (\"/assets/images/{name}\", {kind:?}, include_bytes!(concat!(env!(\"OUT_DIR\"), \"/assets/images/{name}\"))),\n"
        ));
    }
    table.push_str("];\n");
    fs::write(out.join("assets.rs"), table).unwrap_or_else(|e| panic!("{e}"));
}

fn pinned_version(lock: &str) -> Option<String> {
    let at = lock.find("\"node_modules/nhsuk-frontend\"")?;
    let rest = &lock[at..];
    let v = rest.find("\"version\"")?;
    let tail = &rest[v + 9..];
    let start = tail.find('"')? + 1;
    let end = tail[start..].find('"')? + start;
    Some(tail[start..end].to_owned())
}

fn installed_version(root: &Path) -> Option<String> {
    let pkg = fs::read_to_string(root.join("node_modules/nhsuk-frontend/package.json")).ok()?;
    let v = pkg.find("\"version\"")?;
    let tail = &pkg[v + 9..];
    let start = tail.find('"')? + 1;
    let end = tail[start..].find('"')? + start;
    Some(tail[start..end].to_owned())
}

/// Removes `@font-face{…}` rules that load fonts from another site.
fn strip_web_fonts(css: &str) -> String {
    let mut out = String::with_capacity(css.len());
    let mut rest = css;
    while let Some(at) = rest.find("@font-face") {
        let Some(close) = rest[at..].find('}') else { break };
        let rule = &rest[at..at + close + 1];
        out.push_str(&rest[..at]);
        if !rule.contains("https://") {
            out.push_str(rule);
        }
        rest = &rest[at + close + 1..];
    }
    out.push_str(rest);
    out
}
