//! Builds the WebAssembly plugins so that `cargo build` / `cargo test` of the
//! service need no manual step:
//!
//! 1. `../../plugins`, a cargo workspace of its own, is built in release mode
//!    for `wasm32-wasip2` into `../../target/plugins` (a target directory of its
//!    own, so the nested cargo never waits on the outer one's lock);
//!    its `wat-components` package turns the core modules written by hand
//!    in WebAssembly text (`wat-free-shipping`, and the hostile test
//!    components of `test-components/evil-wat/`) into components next to
//!    the others;
//! 2. `COMMERCE_PLUGIN_DIR` (compile-time, `env!`) names the directory that
//!    holds every `.wasm`.
//!
//! The nested build's output is shown only when it fails.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::{env, fs};

use anyhow::{Context, Result, bail};

const WASM_TARGET: &str = "wasm32-wasip2";

/// Variables the outer cargo sets for this build script (or a wrapper such as
/// clippy sets for it) that describe the *outer* build and would mislead the
/// nested one: host-target flags, wrappers, the jobserver, the profile.
const LEAKED_VARS: &[&str] = &[
    "CARGO_ENCODED_RUSTFLAGS",
    "CARGO_ENCODED_RUSTDOCFLAGS",
    "RUSTFLAGS",
    "RUSTDOCFLAGS",
    "CARGO_BUILD_RUSTFLAGS",
    "CARGO_BUILD_TARGET",
    "CARGO_BUILD_TARGET_DIR",
    "CARGO_TARGET_DIR",
    "RUSTC_WORKSPACE_WRAPPER",
    "CARGO_MAKEFLAGS",
    "MAKEFLAGS",
    "MFLAGS",
    "CARGO_PRIMARY_PACKAGE",
    "CARGO_MANIFEST_DIR",
    "CARGO_MANIFEST_PATH",
    "CARGO_MANIFEST_LINKS",
    "CARGO_CRATE_NAME",
    "CARGO_SBOM_PATH",
    "RUSTC_LINKER",
    "TARGET",
    "HOST",
    "PROFILE",
    "OPT_LEVEL",
    "DEBUG",
    "NUM_JOBS",
    "OUT_DIR",
];

/// Prefixes of the same kind: package metadata, features and cfg of the outer
/// package, profile overrides meant for the service, cargo internals.
const LEAKED_PREFIXES: &[&str] = &[
    "CARGO_PKG_",
    "CARGO_FEATURE_",
    "CARGO_CFG_",
    "CARGO_PROFILE_",
    "__CARGO",
];

fn main() {
    if let Err(e) = run() {
        eprintln!("error: building the WebAssembly plugins failed: {e:#}");
        std::process::exit(1);
    }
}

fn run() -> Result<()> {
    let manifest_dir =
        PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").context("CARGO_MANIFEST_DIR")?);
    // host/bundled -> the repository root.
    let repo = manifest_dir
        .ancestors()
        .nth(2)
        .context("host/bundled has no grandparent directory")?
        .to_path_buf();
    let wit_dir = repo.join("wit");
    let plugins_dir = repo.join("plugins");
    let target_dir = repo.join("target").join("plugins");
    let out_dir = target_dir.join(WASM_TARGET).join("release");

    watch(&wit_dir, &plugins_dir)?;

    ensure_wasm_target()?;
    cargo_build(&plugins_dir, &target_dir)?;

    println!("cargo:rustc-env=COMMERCE_PLUGIN_DIR={}", out_dir.display());
    Ok(())
}

/// Reruns this script when the contract or a plugin's sources change, and
/// only then: never on the plugins' own target directory.
fn watch(wit_dir: &Path, plugins_dir: &Path) -> Result<()> {
    println!("cargo:rerun-if-changed={}", wit_dir.display());
    println!(
        "cargo:rerun-if-changed={}",
        plugins_dir.join(".cargo/config.toml").display()
    );
    let mut paths = BTreeSet::new();
    collect_watched(plugins_dir, &mut paths)?;
    for path in paths {
        println!("cargo:rerun-if-changed={}", path.display());
    }
    Ok(())
}

/// Every file under `dir`, except that `src/` and `wit/` directories are
/// watched whole (so a new file there counts), and `target/` and hidden
/// entries are skipped.
fn collect_watched(dir: &Path, paths: &mut BTreeSet<PathBuf>) -> Result<()> {
    let entries = fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))?;
    for entry in entries {
        let entry = entry?;
        let path = entry.path();
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') || name == "target" {
            continue;
        }
        if entry.file_type()?.is_dir() {
            if name == "src" || name == "wit" {
                paths.insert(path);
            } else {
                collect_watched(&path, paths)?;
            }
        } else {
            paths.insert(path);
        }
    }
    Ok(())
}

/// Makes sure the standard library for `wasm32-wasip2` is installed, with
/// `rustup target add` if it is not.
fn ensure_wasm_target() -> Result<()> {
    if wasm_target_installed()? {
        return Ok(());
    }
    println!(
        "cargo:warning=installing the {WASM_TARGET} target with rustup (needed to build the plugins)"
    );
    let added = Command::new("rustup")
        .args(["target", "add", WASM_TARGET])
        .output();
    match added {
        Ok(out) if out.status.success() && wasm_target_installed()? => Ok(()),
        Ok(out) => bail!(
            "the {WASM_TARGET} target is not installed and `rustup target add {WASM_TARGET}` \
             did not install it:\n{}\ninstall it (rustup target add {WASM_TARGET}) and build again",
            output_text(&out)
        ),
        Err(e) => bail!(
            "the {WASM_TARGET} target is not installed and rustup could not be run ({e}); \
             install the target for this toolchain (rustup target add {WASM_TARGET}) and build again"
        ),
    }
}

fn wasm_target_installed() -> Result<bool> {
    let rustc = env::var_os("RUSTC").unwrap_or_else(|| OsString::from("rustc"));
    let out = Command::new(&rustc)
        .args(["--print", "sysroot"])
        .output()
        .with_context(|| format!("running {} --print sysroot", rustc.to_string_lossy()))?;
    if !out.status.success() {
        bail!(
            "{} --print sysroot failed:\n{}",
            rustc.to_string_lossy(),
            output_text(&out)
        );
    }
    let sysroot = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    Ok(sysroot
        .join("lib/rustlib")
        .join(WASM_TARGET)
        .join("lib")
        .is_dir())
}

/// `cargo build --release --target wasm32-wasip2` of the plugins workspace,
/// in a clean environment; its output is printed only if it fails.
fn cargo_build(plugins_dir: &Path, target_dir: &Path) -> Result<()> {
    let cargo = env::var_os("CARGO").unwrap_or_else(|| OsString::from("cargo"));
    let mut command = Command::new(&cargo);
    command
        .current_dir(plugins_dir)
        .arg("build")
        .arg("--release")
        .args(["--target", WASM_TARGET])
        .arg("--manifest-path")
        .arg(plugins_dir.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(target_dir);
    for (key, _) in env::vars_os() {
        let key_str = key.to_string_lossy();
        if LEAKED_VARS.contains(&key_str.as_ref())
            || LEAKED_PREFIXES.iter().any(|p| key_str.starts_with(p))
        {
            command.env_remove(&key);
        }
    }
    let out = command
        .output()
        .with_context(|| format!("running {}", cargo.to_string_lossy()))?;
    if !out.status.success() {
        // Cargo shows a failing build script's stderr.
        eprintln!("{}", output_text(&out));
        bail!(
            "`cargo build --release --target {WASM_TARGET}` of {} failed ({}); its output is above",
            plugins_dir.display(),
            out.status
        );
    }
    Ok(())
}

fn output_text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}
