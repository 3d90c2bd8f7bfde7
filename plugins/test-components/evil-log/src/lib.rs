//! Test component (world `pricing`): `price` floods every output it has:
//! 10000 `host::log` calls with 10 KiB messages, then 1 MiB to stdout and
//! 1 MiB to stderr, then returns `Ok` with no adjustment. The host must
//! bound what it keeps of the log (1 KiB per call) and discard or bound the
//! WASI streams; the call ends with `Ok([])` or with a limit error, never
//! with harm to the host. It costs little fuel (about 1.2 million) but a
//! lot of host time: in a check with wasmtime 48 (wasmtime-wasi's default
//! sink for stdout/stderr) about 10 ms for the 100 MB of log messages the
//! host copies out and 20 ms for the 2048 stream writes, which a wall-clock
//! deadline of a few milliseconds cuts; the configuration below scales it.
//!
//! Configuration: `{"log_calls": 10000, "log_message": 10240,
//! "stream_bytes": 1048576}` (the defaults; `{}` works), to scale the flood.
//!
//! The streams are written like `println!`/`eprintln!` do, but a failed
//! write is ignored rather than turned into a panic: the test is about the
//! host surviving the flood, whether its streams accept or refuse bytes.

use std::io::{self, Write};

use serde_json::Value;

wit_bindgen::generate!({ world: "pricing", path: "../../../wit" });

use suuupra::commerce::host::{self, LogLevel};

fn setting(config: &Value, key: &str, default: usize) -> usize {
    config
        .get(key)
        .and_then(Value::as_u64)
        .and_then(|n| usize::try_from(n).ok())
        .unwrap_or(default)
}

struct EvilLog;

impl Guest for EvilLog {
    fn price(_cart: Cart) -> Result<Vec<Adjustment>, String> {
        let config: Value = serde_json::from_str(&host::config()).unwrap_or(Value::Null);
        let log_calls = setting(&config, "log_calls", 10_000);
        let log_message = setting(&config, "log_message", 10 * 1024);
        let stream_bytes = setting(&config, "stream_bytes", 1 << 20);

        let message = "L".repeat(log_message);
        for _ in 0..log_calls {
            host::log(LogLevel::Info, &message);
        }
        // 1 KiB lines (with their newline) on each stream.
        let line = format!("{}\n", "S".repeat(1023));
        let (mut stdout, mut stderr) = (io::stdout(), io::stderr());
        for _ in 0..stream_bytes / line.len() {
            let _ = stdout.write_all(line.as_bytes());
            let _ = stderr.write_all(line.as_bytes());
        }
        let _ = stdout.flush();
        Ok(vec![])
    }
}

export!(EvilLog);
