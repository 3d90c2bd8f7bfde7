//! The per-call sandbox: the store data of one plugin call.
//!
//! WASI p2 is linked because standard toolchains import it even for pure
//! functions, but the context grants nothing: no preopened directories,
//! no network, empty environment and arguments, empty stdin, a wall clock
//! fixed at the epoch and a monotonic clock that never moves, randomness
//! from a fixed seed. stdout and stderr are captured into a bounded log.
//! A plugin is therefore a reproducible function of its input.
//!
//! The `host` interface is linked by hand rather than through the
//! generated bindings, so that `log` reads its message in place (a
//! [`WasmStr`]) and copies only what the bounded log keeps: a plugin that
//! logs the same large string in a loop costs the host nothing per call
//! once the log is full.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use rand010::SeedableRng;
use wasmtime::component::{Linker, ResourceTable, WasmStr};
use wasmtime::{ResourceLimiter, StoreContextMut};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::bindings::host;

/// Seed of the plugins' "random" numbers: fixed, so calls are reproducible.
const RANDOM_SEED: u64 = 0x5eed_c0de;

/// What one call may use, enforced by the store.
#[derive(Debug, Clone, Copy)]
pub struct CallLimits {
    /// Largest linear memory, in bytes.
    pub memory: usize,
    /// Log bytes kept per call (host.log, stdout and stderr together).
    pub log: usize,
}

/// Store data of one call.
pub struct PluginState {
    wasi: WasiCtx,
    table: ResourceTable,
    pub limiter: MemoryCap,
    pub log: BoundedLog,
    config: Arc<str>,
}

impl PluginState {
    pub fn new(config: Arc<str>, limits: CallLimits) -> Self {
        let log = BoundedLog::new(limits.log);
        let wasi = WasiCtx::builder()
            .stdout(log.clone())
            .stderr(log.clone())
            .wall_clock(FixedClock)
            .monotonic_clock(FixedClock)
            .secure_random(rand010::rngs::StdRng::seed_from_u64(RANDOM_SEED))
            .insecure_random_seed(RANDOM_SEED as u128)
            .allow_ip_name_lookup(false)
            .allow_tcp(false)
            .allow_udp(false)
            .build();
        PluginState {
            wasi,
            table: ResourceTable::new(),
            limiter: MemoryCap {
                max: limits.memory,
                total: 0,
                denied: false,
            },
            log,
            config,
        }
    }
}

impl WasiView for PluginState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// The `host` interface of wit/commerce.wit, as the world's plugins import it.
const HOST_INTERFACE: &str = "suuupra:commerce/host@0.1.0";

/// Links the `host` interface: `log` and `config`.
pub fn add_host_to_linker(linker: &mut Linker<PluginState>) -> wasmtime::Result<()> {
    let mut host = linker.instance(HOST_INTERFACE)?;
    host.func_wrap("log", log)?;
    host.func_wrap("config", |cx: StoreContextMut<'_, PluginState>, (): ()| {
        Ok((cx.data().config.to_string(),))
    })?;
    Ok(())
}

/// `host::log`: keeps what fits in the call's log. The message is read in
/// place; once the log is full it is not even read.
fn log(
    cx: StoreContextMut<'_, PluginState>,
    (level, message): (host::LogLevel, WasmStr),
) -> wasmtime::Result<()> {
    let log = &cx.data().log;
    if log.is_full() {
        log.drop_write();
        return Ok(());
    }
    let level = match level {
        host::LogLevel::Debug => "debug",
        host::LogLevel::Info => "info",
        host::LogLevel::Warn => "warn",
        host::LogLevel::Error => "error",
    };
    let message = message.to_str(&cx)?;
    log.append_all(&[b"[", level.as_bytes(), b"] ", message.as_bytes(), b"\n"]);
    Ok(())
}

/// Elements a table may have: a plugin's function table, with room to spare.
pub const MAX_TABLE_ELEMENTS: usize = 100_000;

/// Caps the linear memory of a call, all its memories together (a
/// component may define several, and a cap per memory would multiply),
/// and remembers a refused growth, so that the trap that follows (Rust
/// guests abort when allocation fails) is reported as running out of
/// memory. Instantiation asks too, for each memory's initial size.
pub struct MemoryCap {
    max: usize,
    /// Bytes of all the call's memories, as last granted.
    total: usize,
    pub denied: bool,
}

impl ResourceLimiter for MemoryCap {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let total = self.total.saturating_sub(current).saturating_add(desired);
        if total > self.max {
            self.denied = true;
            return Ok(false);
        }
        self.total = total;
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= MAX_TABLE_ELEMENTS)
    }
}

/// A wall clock stopped at the Unix epoch and a monotonic clock at zero.
struct FixedClock;

impl wasmtime_wasi::HostWallClock for FixedClock {
    fn resolution(&self) -> Duration {
        Duration::from_secs(1)
    }
    fn now(&self) -> Duration {
        Duration::ZERO
    }
}

impl wasmtime_wasi::HostMonotonicClock for FixedClock {
    fn resolution(&self) -> u64 {
        1_000_000_000
    }
    fn now(&self) -> u64 {
        0
    }
}

/// A log buffer that keeps the first `capacity` bytes and drops the rest,
/// never failing a write (a plugin that prints a lot is not an error, it is
/// just not heard).
#[derive(Clone)]
pub struct BoundedLog {
    inner: Arc<Mutex<LogBuffer>>,
}

struct LogBuffer {
    bytes: Vec<u8>,
    capacity: usize,
    /// Writes (log calls, stream writes) cut short or dropped whole.
    dropped: usize,
}

impl BoundedLog {
    pub fn new(capacity: usize) -> Self {
        BoundedLog {
            inner: Arc::new(Mutex::new(LogBuffer {
                bytes: Vec::new(),
                capacity,
                dropped: 0,
            })),
        }
    }

    /// Keeps what fits of one write.
    pub fn append(&self, data: &[u8]) {
        self.append_all(&[data]);
    }

    /// Keeps what fits of one write given in parts.
    pub fn append_all(&self, parts: &[&[u8]]) {
        let mut buf = self.lock();
        let mut cut = false;
        for part in parts {
            let room = buf.capacity.saturating_sub(buf.bytes.len());
            let take = room.min(part.len());
            buf.bytes.extend_from_slice(&part[..take]);
            cut |= take < part.len();
        }
        if cut {
            buf.dropped += 1;
        }
    }

    /// Whether nothing more will be kept.
    pub fn is_full(&self) -> bool {
        let buf = self.lock();
        buf.bytes.len() >= buf.capacity
    }

    /// Counts a write dropped whole, unread.
    pub fn drop_write(&self) {
        self.lock().dropped += 1;
    }

    /// The kept text and how many writes were cut short or dropped.
    pub fn contents(&self) -> (String, usize) {
        let buf = self.lock();
        (
            String::from_utf8_lossy(&buf.bytes).into_owned(),
            buf.dropped,
        )
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LogBuffer> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl tokio::io::AsyncWrite for BoundedLog {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.append(data);
        Poll::Ready(Ok(data.len()))
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

impl wasmtime_wasi::cli::IsTerminal for BoundedLog {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl wasmtime_wasi::cli::StdoutStream for BoundedLog {
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}
