//! The development plugin directory (`commerce serve --plugin-dir DIR`):
//! every `NAME.wasm` in it is installed and activated as plugin `NAME`
//! (with `NAME.json` as its configuration when present), and installed
//! again whenever it changes. It goes through the same checks and registry
//! as an upload, so other replicas follow too.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use sha2::{Digest, Sha256};

use commerce_app::extensions::PluginKind;
use commerce_app::plugins::InstallPlugin;
use commerce_app::{App, Caller, Role};

/// How often the directory is scanned.
const SCAN_EVERY: Duration = Duration::from_secs(1);

/// Which world a component exports, found by trying each.
pub async fn detect_kind(app: &App, name: &str, bytes: &[u8], config: &str) -> Option<PluginKind> {
    for kind in [
        PluginKind::Pricing,
        PluginKind::Validation,
        PluginKind::SagaHook,
    ] {
        let ok = app
            .plugins
            .check(
                kind,
                name,
                std::sync::Arc::new(bytes.to_vec()),
                config,
                Default::default(),
            )
            .await
            .is_ok();
        if ok {
            return Some(kind);
        }
    }
    None
}

/// Installs the directory's plugins now, then watches it.
pub fn spawn(app: App, dir: PathBuf) {
    tokio::spawn(async move {
        let mut seen: HashMap<PathBuf, (SystemTime, u64)> = HashMap::new();
        loop {
            if let Err(e) = scan(&app, &dir, &mut seen).await {
                tracing::warn!(dir = %dir.display(), error = %e, "scanning the plugin directory failed");
            }
            tokio::time::sleep(SCAN_EVERY).await;
        }
    });
}

async fn scan(
    app: &App,
    dir: &Path,
    seen: &mut HashMap<PathBuf, (SystemTime, u64)>,
) -> anyhow::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.extension().and_then(|e| e.to_str()) != Some("wasm") {
            continue;
        }
        let config_path = path.with_extension("json");
        let stamp = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
        let modified = stamp(&path).unwrap_or(SystemTime::UNIX_EPOCH);
        let config_modified = stamp(&config_path).map_or(0, |t| {
            t.duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64)
        });
        if seen.get(&path) == Some(&(modified, config_modified)) {
            continue;
        }
        seen.insert(path.clone(), (modified, config_modified));
        let Some(stem) = path.file_stem().and_then(|s| s.to_str()) else {
            continue;
        };
        let name = stem.to_ascii_lowercase().replace('_', "-");
        let bytes = std::fs::read(&path)?;
        let config = std::fs::read_to_string(&config_path).unwrap_or_else(|_| "{}".into());
        install(app, &name, bytes, config, None).await;
    }
    Ok(())
}

/// Installs and activates `bytes` as `name` (a saga hook listening at
/// `listen`, see `parse_listen`; `None`: everywhere), unless the active
/// version already has these bytes, configuration and listen points.
pub async fn install(app: &App, name: &str, bytes: Vec<u8>, config: String, listen: Option<&str>) {
    let listen = match listen
        .map(commerce_app::extensions::parse_listen)
        .transpose()
    {
        Ok(listen) => listen,
        Err(e) => {
            tracing::error!(plugin = %name, error = %e, "not installed: bad listen points");
            return;
        }
    };
    let system = Caller {
        subject: uuid::Uuid::nil(),
        role: Role::Admin,
    };
    let sha256 = hex::encode(Sha256::digest(&bytes));
    if let Ok(list) = app.registry().list_plugins(system).await
        && list.iter().any(|p| {
            p.record.name == name
                && p.record.active
                && p.record.sha256 == sha256
                && p.record.config == config
                && p.record.listen == listen
                && p.record.limits == Default::default()
        })
    {
        return;
    }
    let Some(kind) = detect_kind(app, name, &bytes, &config).await else {
        tracing::error!(plugin = %name, "not installed: the component exports none of the plugin worlds, or fails its smoke call");
        return;
    };
    let install = InstallPlugin {
        name: name.to_owned(),
        kind,
        bytes,
        config: Some(config),
        priority: 100,
        listen,
        limits: Default::default(),
        activate: true,
    };
    match app.registry().install_plugin(system, install).await {
        Ok(record) => {
            tracing::info!(plugin = %record.name, version = record.version, kind = kind.as_str(), "plugin installed from a file")
        }
        Err(e) => {
            tracing::error!(plugin = %name, error = %e, "installing a plugin from a file failed")
        }
    }
}
