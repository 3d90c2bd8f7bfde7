//! The schema's migrations, embedded in the binary (`build.rs` lists
//! `migrations/<backend>/`), as sqlx migrators. Version, description and
//! checksum are what `sqlx::migrate!` and the `sqlx` CLI compute from the
//! same files, so databases migrated by either stay valid.

use std::borrow::Cow;

use sqlx::SqlSafeStr;
use sqlx::migrate::{Migration, MigrationType, Migrator};

mod files {
    include!(concat!(env!("OUT_DIR"), "/migrations.rs"));
}

/// PostgreSQL's migrations.
pub fn postgres() -> Migrator {
    migrator(files::POSTGRES)
}

/// SQLite's migrations.
pub fn sqlite() -> Migrator {
    migrator(files::SQLITE)
}

/// Files named `<version>_<description>.sql`, as sqlx names them.
fn migrator(files: &'static [(&'static str, &'static str)]) -> Migrator {
    let migrations = files
        .iter()
        .map(|&(name, sql)| {
            let (version, rest) = name
                .split_once('_')
                .unwrap_or_else(|| panic!("migration {name}: not <version>_<description>.sql"));
            let version = version
                .parse()
                .unwrap_or_else(|_| panic!("migration {name}: the version is not a number"));
            let description = rest.trim_end_matches(".sql").replace('_', " ");
            let no_tx = sql.starts_with("-- no-transaction");
            Migration::new(
                version,
                Cow::Owned(description),
                MigrationType::Simple,
                sql.into_sql_str(),
                no_tx,
            )
        })
        .collect();
    Migrator::with_migrations(migrations)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    /// What sqlx itself resolves from the directory at run time: the same
    /// versions, descriptions, checksums and transaction flags.
    async fn assert_same_as_sqlx(embedded: Migrator, dir: &str) {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../migrations")
            .join(dir);
        let resolved = Migrator::new(dir)
            .await
            .expect("sqlx resolves the directory");
        let key = |m: &Migration| {
            (
                m.version,
                m.description.to_string(),
                m.checksum.to_vec(),
                m.no_tx,
                m.migration_type,
            )
        };
        let embedded: Vec<_> = embedded.iter().map(key).collect();
        let resolved: Vec<_> = resolved.iter().map(key).collect();
        assert!(embedded.len() >= 8, "{embedded:?}");
        assert_eq!(embedded, resolved);
    }

    #[tokio::test]
    async fn embedded_migrations_are_what_sqlx_reads_from_the_directory() {
        assert_same_as_sqlx(postgres(), "postgres").await;
        assert_same_as_sqlx(sqlite(), "sqlite").await;
    }
}
