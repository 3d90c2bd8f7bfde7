//! `commerce plugin new`: for each language and kind, the project builds
//! as generated, passes its own tests, and its component runs on its
//! sample input with `commerce plugin run FILE.wasm`, as a product team
//! would try it before installing it.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");

/// Runs `command`, failing the test with its output if it fails.
fn run(command: &mut Command) -> String {
    let shown = format!("{command:?}");
    let output = command.output().unwrap_or_else(|e| panic!("{shown}: {e}"));
    assert!(
        output.status.success(),
        "{shown} failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

fn commerce(dir: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_commerce"));
    command
        .env_remove("DATABASE_URL")
        .arg("plugin")
        .arg("--data-dir")
        .arg(dir.join("data"));
    command
}

/// Creates, tests and builds the project; returns its component.
fn build(lang: &str, kind: &str, name: &str, base: &Path) -> PathBuf {
    let dir = base.join(name);
    run(commerce(base)
        .args(["new", name, "--kind", kind, "--lang", lang, "--dir"])
        .arg(&dir));
    let crate_name = name.replace('-', "_");
    match lang {
        "rust" => {
            // One target directory for every template build, so that
            // wit-bindgen is compiled once.
            let target = format!("{ROOT}/target/plugin-templates");
            run(Command::new("cargo")
                .args(["test", "--quiet"])
                .env("CARGO_TARGET_DIR", &target)
                .current_dir(&dir));
            run(Command::new("cargo")
                .args(["build", "--quiet", "--release", "--target", "wasm32-wasip2"])
                .env("CARGO_TARGET_DIR", &target)
                .current_dir(&dir));
            PathBuf::from(format!("{target}/wasm32-wasip2/release/{crate_name}.wasm"))
        }
        _ => {
            run(Command::new("python3")
                .args(["-m", "unittest", "--quiet"])
                .env("PYTHONDONTWRITEBYTECODE", "1")
                .current_dir(&dir));
            let out = dir.join(format!("{crate_name}.wasm"));
            run(Command::new(format!("{ROOT}/scripts/componentize-py.sh"))
                .args(["-d", "wit", "-w", kind, "componentize", "app", "-o"])
                .arg(&out)
                .current_dir(&dir));
            out
        }
    }
}

fn new_plugins_build_test_and_run(lang: &str) {
    let base = std::env::temp_dir().join(format!("plugin-new-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&base).unwrap();
    for kind in ["pricing", "validation", "saga-hook"] {
        let name = format!("my-{kind}");
        let component = build(lang, kind, &name, &base);
        let sample = base.join(&name).join("sample.json");
        let output = run(commerce(&base)
            .arg("run")
            .arg(&component)
            .arg("--input")
            .arg(&sample));
        let answer: Value = serde_json::from_str(&output).unwrap();
        match kind {
            // 1% of the sample's 150.00 EUR.
            "pricing" => assert_eq!(
                answer["adjustments"][0]["amount"]["amount"], 150,
                "{answer}"
            ),
            // The sample holds 60 units of one SKU.
            "validation" => assert_eq!(
                answer["violations"][0]["code"], "too-many-units",
                "{answer}"
            ),
            // The sample's total is above the hold.
            _ => assert!(answer["decision"]["Veto"].is_string(), "{answer}"),
        }
    }
    std::fs::remove_dir_all(&base).unwrap();
}

#[test]
fn a_new_rust_plugin_builds_passes_its_tests_and_runs() {
    new_plugins_build_test_and_run("rust");
}

#[test]
fn a_new_python_plugin_builds_passes_its_tests_and_runs() {
    new_plugins_build_test_and_run("python");
}
