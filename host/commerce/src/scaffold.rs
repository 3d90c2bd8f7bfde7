//! `commerce plugin new`: a plugin project that builds as generated, in
//! Rust (cargo + wit-bindgen) or Python (componentize-py), for one of the
//! three worlds, with a rule to edit, its own tests, a sample input and a
//! README of three commands. The templates are in `../templates`,
//! embedded in the binary.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use commerce_app::extensions::PluginKind;

/// The language of a new plugin project.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Lang {
    Rust,
    Python,
}

const WIT: &str = include_str!("../../../wit/commerce.wit");
const TOOLCHAIN: &str = include_str!("../../../rust-toolchain.toml");

/// A template: where it goes in the project, and its text.
type File = (&'static str, &'static str);

fn rust_files(kind: PluginKind) -> Vec<File> {
    let lib = match kind {
        PluginKind::Pricing => include_str!("../templates/rust/pricing.rs"),
        PluginKind::Validation => include_str!("../templates/rust/validation.rs"),
        PluginKind::SagaHook => include_str!("../templates/rust/saga-hook.rs"),
    };
    vec![
        ("Cargo.toml", include_str!("../templates/rust/Cargo.toml")),
        (
            ".cargo/config.toml",
            include_str!("../templates/rust/cargo-config.toml"),
        ),
        (".gitignore", include_str!("../templates/rust/gitignore")),
        ("README.md", include_str!("../templates/rust/README.md")),
        ("rust-toolchain.toml", TOOLCHAIN),
        ("src/lib.rs", lib),
    ]
}

fn python_files(kind: PluginKind) -> Vec<File> {
    let (rule, app, test) = match kind {
        PluginKind::Pricing => (
            include_str!("../templates/python/pricing-rule.py"),
            include_str!("../templates/python/pricing-app.py"),
            include_str!("../templates/python/pricing-test.py"),
        ),
        PluginKind::Validation => (
            include_str!("../templates/python/validation-rule.py"),
            include_str!("../templates/python/validation-app.py"),
            include_str!("../templates/python/validation-test.py"),
        ),
        PluginKind::SagaHook => (
            include_str!("../templates/python/saga-hook-rule.py"),
            include_str!("../templates/python/saga-hook-app.py"),
            include_str!("../templates/python/saga-hook-test.py"),
        ),
    };
    vec![
        ("README.md", include_str!("../templates/python/README.md")),
        (".gitignore", include_str!("../templates/python/gitignore")),
        ("rule.py", rule),
        ("app.py", app),
        ("test_rule.py", test),
    ]
}

fn sample_input(kind: PluginKind) -> &'static str {
    match kind {
        PluginKind::Pricing => include_str!("../templates/inputs/pricing.json"),
        PluginKind::Validation => include_str!("../templates/inputs/validation.json"),
        PluginKind::SagaHook => include_str!("../templates/inputs/saga-hook.json"),
    }
}

/// Writes the project of plugin `name` (`kind`: pricing, validation or
/// saga-hook) into `dir`, which must not exist or be empty. Returns the
/// files written.
pub fn new_plugin(name: &str, kind: &str, lang: Lang, dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    commerce_app::plugins::check_name(name)?;
    let Some(kind) = PluginKind::parse(kind) else {
        bail!("the kind is pricing, validation or saga-hook, not {kind:?}");
    };
    if dir.exists() && dir.read_dir()?.next().is_some() {
        bail!("{} exists and is not empty", dir.display());
    }
    let crate_name = name.replace('-', "_");
    let fill = |text: &str| {
        text.replace("{{name}}", name)
            .replace("{{crate}}", &crate_name)
            .replace("{{kind}}", kind.as_str())
    };
    let mut files = match lang {
        Lang::Rust => rust_files(kind),
        Lang::Python => python_files(kind),
    };
    files.push(("wit/commerce.wit", WIT));
    files.push(("sample.json", sample_input(kind)));
    let mut written = Vec::new();
    for (path, text) in files {
        let path = dir.join(path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        std::fs::write(&path, fill(text)).with_context(|| format!("writing {}", path.display()))?;
        written.push(path);
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_project_is_written_with_its_names_filled_in() {
        let dir = std::env::temp_dir().join(format!("scaffold-{}", uuid::Uuid::new_v4()));
        let files = new_plugin("tiny-fee", "pricing", Lang::Rust, &dir).unwrap();
        assert!(files.iter().any(|f| f.ends_with("src/lib.rs")));
        let cargo = std::fs::read_to_string(dir.join("Cargo.toml")).unwrap();
        assert!(cargo.contains(r#"name = "tiny-fee""#), "{cargo}");
        let readme = std::fs::read_to_string(dir.join("README.md")).unwrap();
        assert!(
            readme.contains("tiny_fee.wasm") && !readme.contains("{{"),
            "{readme}"
        );
        assert!(
            new_plugin("tiny-fee", "pricing", Lang::Rust, &dir).is_err(),
            "not over a project"
        );
        assert!(new_plugin("Tiny", "pricing", Lang::Python, &dir.join("x")).is_err());
        assert!(new_plugin("tiny", "shipping", Lang::Python, &dir.join("y")).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
