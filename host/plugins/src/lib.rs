//! The plugin runtime: sandboxed WebAssembly components at the extension
//! points (pricing, validation, saga hooks), run with wasmtime.
//!
//! - Components are compiled once, at upload (or on a replica's first
//!   sight of a version), and cached as precompiled artifacts by sha256 and
//!   engine configuration in `<data-dir>/plugin-cache`; the request path
//!   only instantiates pre-linked components (`*Pre`), from the pooling
//!   allocator when the address space allows it.
//! - Every call gets a fresh store: its own fuel budget, wall-clock
//!   deadline (epochs ticked by one thread), memory cap, and bounded log.
//!   A trap, running out of fuel, time or memory, or an oversized output
//!   becomes a [`PluginError`], a counter and a log line; nothing is shared
//!   between calls, so nothing can be poisoned.
//! - The active set is swapped atomically ([`arc_swap`]): a request uses
//!   the set it started with from its first plugin call to its last.
//!   A poller reloads when the registry's generation changes, so every
//!   replica follows an activation within a second.
//!
//! Layout: [`bindings`] (the one `bindgen!`), [`sandbox`] (store data:
//! deny-all WASI, host interface, limits), [`convert`] (app <-> WIT types),
//! [`runtime`] (engine, cache, calls, reload), [`watcher`] (the
//! development plugin directory).

pub mod bindings;
pub mod convert;
pub mod runtime;
pub mod sandbox;
pub mod watcher;

pub use runtime::{CheckError, FailurePolicy, PluginError, PluginRuntime, PluginSettings};
