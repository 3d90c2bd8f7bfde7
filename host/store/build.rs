//! Embeds the migrations of `migrations/<backend>/` in the crate: writes
//! `$OUT_DIR/migrations.rs` with one `(file name, include_str!(..))` per
//! file, in file-name order, for `crate::migrations` to turn into a
//! `sqlx::migrate::Migrator`. (This replaces `sqlx::migrate!`, whose
//! proc-macro crate builds sqlx and both drivers a second time.)

use std::fmt::Write;
use std::path::Path;

fn main() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../migrations");
    println!("cargo:rerun-if-changed={}", dir.display());
    let mut out = String::new();
    for backend in ["postgres", "sqlite"] {
        let backend_dir = dir.join(backend);
        println!("cargo:rerun-if-changed={}", backend_dir.display());
        let mut files: Vec<_> = std::fs::read_dir(&backend_dir)
            .unwrap_or_else(|e| panic!("reading {}: {e}", backend_dir.display()))
            .map(|entry| entry.expect("a directory entry").path())
            .filter(|path| path.extension().is_some_and(|ext| ext == "sql"))
            .collect();
        files.sort();
        writeln!(
            out,
            "pub(crate) const {}: &[(&str, &str)] = &[",
            backend.to_uppercase()
        )
        .unwrap();
        for path in files {
            let name = path
                .file_name()
                .unwrap()
                .to_str()
                .expect("a UTF-8 file name");
            let path = path.canonicalize().expect("a migration's path");
            writeln!(
                out,
                "    ({name:?}, include_str!({:?})),",
                path.display().to_string()
            )
            .unwrap();
        }
        writeln!(out, "];").unwrap();
    }
    let target = Path::new(&std::env::var("OUT_DIR").unwrap()).join("migrations.rs");
    std::fs::write(target, out).expect("writing migrations.rs");
}
