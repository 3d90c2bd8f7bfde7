//! The plugin runtime: sandboxed WebAssembly components at the extension
//! points (pricing, validation, saga hooks), run with wasmtime.
//!
//! - Components are compiled once, at upload (or on a replica's first
//!   sight of a version), and cached as precompiled artifacts by sha256 and
//!   engine configuration in `<data-dir>/plugin-cache`; the request path
//!   only instantiates pre-linked components (`*Pre`), from the pooling
//!   allocator when the address space allows it.
//! - An upload is refused when the component declares more than the
//!   sandbox allows (memories, tables, their initial sizes, imports,
//!   exports: [`limits`]), before it is ever called.
//! - Every call gets a fresh store: its own fuel budget, wall-clock
//!   deadline (epochs ticked by one thread), memory cap (all memories
//!   together), and bounded log. A trap, running out of fuel, time or
//!   memory, or an oversized output becomes a [`PluginError`], a counter
//!   and a log line; nothing is shared between calls, so nothing can be
//!   poisoned.
//! - What the host copies out of a plugin in one transfer (its answer,
//!   or the arguments of one call to the host) is measured in the
//!   plugin's memory before it is copied, against a small multiple of the
//!   output limit (wasmtime's hostcall budget): however an answer is
//!   built, the host never allocates more for it.
//! - The active set is swapped atomically ([`arc_swap`]): a request uses
//!   the set it started with from its first plugin call to its last.
//!   A poller reloads when the registry's generation changes, so every
//!   replica follows an activation within a second.
//!
//! Layout: [`bindings`] (the one `bindgen!`), [`sandbox`] (store data:
//! deny-all WASI, host interface, limits), [`limits`] (upload checks),
//! [`convert`] (app <-> WIT types),
//! [`runtime`] (engine, cache, calls, reload), [`watcher`] (the
//! development plugin directory).

pub mod bindings;
pub mod convert;
pub mod limits;
pub mod runtime;
pub mod sandbox;
pub mod watcher;

pub use runtime::{CheckError, FailurePolicy, PluginError, PluginRuntime, PluginSettings};
