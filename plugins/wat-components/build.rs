//! Turns the core modules written in WebAssembly text by hand (the
//! `wat-free-shipping` example, and the hostile test components of
//! `test-components/evil-wat/`) into components of their worlds in
//! `../../wit`, and writes them next to the other plugins' artifacts
//! (`<target>/wasm32-wasip2/release/<name>.wasm`), where the service's
//! build finds every component. A file is rewritten only when its bytes
//! change.
//!
//! This runs in the plugins' own build (a host build script of this
//! workspace), not in the service's: wit-component and wit-parser are
//! built here anyway for wit-bindgen, without optimization, so a
//! newcomer's first `cargo run` does not build them a second time.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::{env, fs};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

/// A core module written by hand: its source (under `plugins/`), the
/// component it becomes, its world and the functions that world exports.
struct WatPlugin {
    source: &'static str,
    artifact: &'static str,
    world: &'static str,
    exports: &'static [&'static str],
}

const fn wat(
    source: &'static str,
    artifact: &'static str,
    world: &'static str,
    exports: &'static [&'static str],
) -> WatPlugin {
    WatPlugin {
        source,
        artifact,
        world,
        exports,
    }
}

const PRICE: &[&str] = &["price"];

/// The example written by hand, then the hostile components that only the
/// canonical ABI written by hand can produce (aliasing answers, several
/// memories, huge declarations).
const WAT_PLUGINS: &[WatPlugin] = &[
    wat(
        "wat-free-shipping/free_shipping.wat",
        "wat_free_shipping.wasm",
        "pricing",
        PRICE,
    ),
    wat(
        "test-components/evil-wat/evil_alias.wat",
        "evil_alias.wasm",
        "pricing",
        PRICE,
    ),
    wat(
        "test-components/evil-wat/evil_error.wat",
        "evil_error.wasm",
        "pricing",
        PRICE,
    ),
    wat(
        "test-components/evil-wat/evil_violations.wat",
        "evil_violations.wasm",
        "validation",
        &["validate"],
    ),
    wat(
        "test-components/evil-wat/evil_veto.wat",
        "evil_veto.wasm",
        "saga-hook",
        &["on-step"],
    ),
    wat(
        "test-components/evil-wat/evil_memories.wat",
        "evil_memories.wasm",
        "pricing",
        PRICE,
    ),
    wat(
        "test-components/evil-wat/evil_big_memory.wat",
        "evil_big_memory.wasm",
        "pricing",
        PRICE,
    ),
    wat(
        "test-components/evil-wat/evil_big_table.wat",
        "evil_big_table.wasm",
        "pricing",
        PRICE,
    ),
];

fn main() {
    if let Err(e) = run() {
        eprintln!("error: making components of the WAT plugins failed: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<()> {
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR")?);
    let plugins_dir = manifest_dir.parent().ok_or("no plugins directory")?;
    let wit_dir = plugins_dir.join("../wit");
    let out_dir = artifact_dir(Path::new(&env::var("OUT_DIR")?))?;
    println!("cargo:rerun-if-changed={}", wit_dir.display());

    let mut resolve = wit_parser::Resolve::default();
    let (package, _) = resolve
        .push_dir(&wit_dir)
        .map_err(|e| format!("parsing the WIT in {}: {e:#}", wit_dir.display()))?;
    for plugin in WAT_PLUGINS {
        let source = plugins_dir.join(plugin.source);
        println!("cargo:rerun-if-changed={}", source.display());
        componentize_wat(
            &resolve,
            package,
            plugin,
            &source,
            &out_dir.join(plugin.artifact),
        )
        .map_err(|e| format!("{}: {e}", source.display()))?;
    }
    Ok(())
}

/// Where cargo puts this build's artifacts: `OUT_DIR` is
/// `<target>/<triple>/<profile>/build/<package>-<hash>/out`.
fn artifact_dir(out_dir: &Path) -> Result<PathBuf> {
    let build = out_dir.ancestors().nth(2).ok_or("OUT_DIR is too short")?;
    if build.file_name().is_none_or(|name| name != "build") {
        return Err(format!("unexpected OUT_DIR layout: {}", out_dir.display()).into());
    }
    Ok(build.parent().ok_or("OUT_DIR is too short")?.to_path_buf())
}

/// Turns a hand-written core module into a component of its world: embeds
/// the world's type information, then lets `wit-component` wrap and
/// validate it. The file is rewritten only when its bytes change.
fn componentize_wat(
    resolve: &wit_parser::Resolve,
    package: wit_parser::PackageId,
    plugin: &WatPlugin,
    source: &Path,
    artifact: &Path,
) -> Result<()> {
    let world = resolve.select_world(&[package], Some(plugin.world))?;

    let mut module =
        wat::parse_file(source).map_err(|e| format!("parsing: {e}"))?;
    wit_component::embed_component_metadata(
        &mut module,
        resolve,
        world,
        wit_component::StringEncoding::UTF8,
    )?;
    let component = wit_component::ComponentEncoder::default()
        .validate(true)
        .module(&module)?
        .encode()
        .map_err(|e| format!("making a component: {e:#}"))?;
    check_exports(&component, plugin.exports)
        .map_err(|e| format!("checking the component made of it: {e}"))?;

    if fs::read(artifact).ok().as_deref() != Some(component.as_slice()) {
        if let Some(dir) = artifact.parent() {
            fs::create_dir_all(dir)?;
        }
        fs::write(artifact, &component)
            .map_err(|e| format!("writing {}: {e}", artifact.display()))?;
    }
    Ok(())
}

/// Decodes a component's world and checks it exports exactly these functions.
fn check_exports(component: &[u8], expected: &[&str]) -> Result<()> {
    let wit_component::DecodedWasm::Component(resolve, world) = wit_component::decode(component)?
    else {
        return Err("not a component".into());
    };
    let exports: BTreeSet<String> = resolve.worlds[world]
        .exports
        .keys()
        .map(|key| resolve.name_world_key(key))
        .collect();
    let expected: BTreeSet<String> = expected.iter().map(|s| s.to_string()).collect();
    if exports != expected {
        return Err(format!("exports {exports:?}, expected {expected:?}").into());
    }
    Ok(())
}

