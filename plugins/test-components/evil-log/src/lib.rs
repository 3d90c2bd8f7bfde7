//! Test component (world `pricing`): `price` floods every output it has:
//! 10000 `host::log` calls with 10 KiB messages, then 1 MiB to stdout and
//! 1 MiB to stderr, then returns `Ok` with no adjustment. The host must
//! bound what it keeps of the log (1 KiB per call) and discard or bound the
//! WASI streams, and the call must still succeed (or run out of fuel).
//!
//! The streams are written like `println!`/`eprintln!` do, but a failed
//! write is ignored rather than turned into a panic: the test is about the
//! host surviving the flood, whether its streams accept or refuse bytes.

use std::io::{self, Write};

wit_bindgen::generate!({ world: "pricing", path: "../../../wit" });

use suuupra::commerce::host::{self, LogLevel};

const LOG_CALLS: usize = 10_000;
const LOG_MESSAGE: usize = 10 * 1024;
const STREAM_BYTES: usize = 1 << 20;

struct EvilLog;

impl Guest for EvilLog {
    fn price(_cart: Cart) -> Result<Vec<Adjustment>, String> {
        let message = "L".repeat(LOG_MESSAGE);
        for _ in 0..LOG_CALLS {
            host::log(LogLevel::Info, &message);
        }
        // 1 KiB lines (with their newline), 1024 of them, on each stream.
        let line = format!("{}\n", "S".repeat(1023));
        let (mut stdout, mut stderr) = (io::stdout(), io::stderr());
        for _ in 0..STREAM_BYTES / line.len() {
            let _ = stdout.write_all(line.as_bytes());
            let _ = stderr.write_all(line.as_bytes());
        }
        let _ = stdout.flush();
        Ok(vec![])
    }
}

export!(EvilLog);
