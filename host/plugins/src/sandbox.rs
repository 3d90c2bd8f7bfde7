//! The per-call sandbox: the store data of one plugin call.
//!
//! WASI p2 is linked because standard toolchains import it even for pure
//! functions, but the context grants nothing: no preopened directories,
//! no network, empty environment and arguments, empty stdin, a wall clock
//! fixed at the epoch and a monotonic clock that never moves, randomness
//! from a fixed seed. stdout and stderr are captured into a bounded log.
//! A plugin is therefore a reproducible function of its input.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use rand010::SeedableRng;
use wasmtime::ResourceLimiter;
use wasmtime::component::ResourceTable;
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

impl host::Host for PluginState {
    fn log(&mut self, level: host::LogLevel, message: String) {
        let level = match level {
            host::LogLevel::Debug => "debug",
            host::LogLevel::Info => "info",
            host::LogLevel::Warn => "warn",
            host::LogLevel::Error => "error",
        };
        self.log.append(format!("[{level}] {message}\n").as_bytes());
    }

    fn config(&mut self) -> String {
        self.config.to_string()
    }
}

impl super::bindings::types::Host for PluginState {}

/// Caps linear memory and remembers a refused growth, so that the trap
/// that follows (Rust guests abort when allocation fails) is reported as
/// running out of memory.
pub struct MemoryCap {
    max: usize,
    pub denied: bool,
}

impl ResourceLimiter for MemoryCap {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.max {
            self.denied = true;
            return Ok(false);
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 100_000)
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

    pub fn append(&self, data: &[u8]) {
        let mut buf = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let room = buf.capacity.saturating_sub(buf.bytes.len());
        let take = room.min(data.len());
        buf.bytes.extend_from_slice(&data[..take]);
        buf.dropped += data.len() - take;
    }

    /// The kept text and how many bytes were dropped.
    pub fn contents(&self) -> (String, usize) {
        let buf = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        (
            String::from_utf8_lossy(&buf.bytes).into_owned(),
            buf.dropped,
        )
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
