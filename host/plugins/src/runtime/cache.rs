//! Compiled components: in memory, and as precompiled artifacts on disk
//! keyed by sha256 and the engine's configuration.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use uuid::Uuid;
use wasmtime::Engine;
use wasmtime::component::Component;

use super::*;

impl PluginRuntime {
    pub(super) fn artifact_path(&self, sha256: &str) -> PathBuf {
        self.settings
            .cache_dir
            .join(format!("{sha256}-{}.cwasm", self.cache_tag))
    }

    /// Drops the compiled components, in memory and on disk, whose sha256
    /// is not in `in_use` (versions pruned, uploads refused); returns how
    /// many artifact files were deleted. An upload being checked right now
    /// may lose its artifact: it is compiled again from its bytes if needed.
    pub(super) fn forget_compiled(&self, in_use: &HashSet<String>) -> usize {
        self.compiled
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|sha, _| in_use.contains(sha));
        let Ok(entries) = std::fs::read_dir(&self.settings.cache_dir) else {
            return 0;
        };
        let mut deleted = 0;
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            let Some((sha, _)) = name.split_once('-') else {
                continue;
            };
            if name.ends_with(".cwasm")
                && !in_use.contains(sha)
                && std::fs::remove_file(entry.path()).is_ok()
            {
                deleted += 1;
            }
        }
        deleted
    }

    /// The compiled component for `bytes`: from memory, from the host's own
    /// artifact cache, or compiled now (and cached).
    pub(super) fn component(
        &self,
        sha256: &str,
        bytes: impl FnOnce() -> Option<Arc<Vec<u8>>>,
    ) -> Result<Component, String> {
        if let Some(c) = self
            .compiled
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(sha256)
        {
            return Ok(c.clone());
        }
        let path = self.artifact_path(sha256);
        let component = match load_artifact(&self.engine, &path) {
            Some(c) => c,
            None => {
                let bytes = bytes().ok_or("the component's bytes are gone")?;
                let component = Component::new(&self.engine, bytes.as_slice())
                    .map_err(|e| format!("it does not compile as a component: {e}"))?;
                if let Err(e) = store_artifact(&path, &component) {
                    tracing::warn!(error = %e, path = %path.display(), "could not cache a compiled plugin");
                }
                component
            }
        };
        self.compiled
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(sha256.to_owned(), component.clone());
        Ok(component)
    }
}

/// Loads a precompiled artifact written by [`store_artifact`].
pub(super) fn load_artifact(engine: &Engine, path: &Path) -> Option<Component> {
    if !path.exists() {
        return None;
    }
    // SAFETY: deserializing runs native code produced by Cranelift. The
    // file is only ever one this host wrote itself into its own cache
    // directory (never an uploaded file), named by the sha256 of the
    // component it was compiled from and by the engine configuration and
    // wasmtime version (precompile_compatibility_hash), and written
    // atomically (temporary file + rename), so it is complete and matches
    // this engine.
    #[allow(unsafe_code)]
    let loaded = unsafe { Component::deserialize_file(engine, path) };
    match loaded {
        Ok(c) => Some(c),
        Err(e) => {
            tracing::warn!(error = %e, path = %path.display(), "ignoring an unusable cached artifact");
            None
        }
    }
}

pub(super) fn store_artifact(path: &Path, component: &Component) -> anyhow::Result<()> {
    let bytes = component.serialize().map_err(|e| anyhow::anyhow!("{e}"))?;
    let tmp = path.with_extension(format!("tmp-{}", Uuid::new_v4().simple()));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}
