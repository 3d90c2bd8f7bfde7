//! Test component (world `pricing`): `price` allocates 1 MiB chunks, writes
//! into every 4 KiB page of each and keeps them all, forever. The host's
//! memory cap must make the growth fail; the allocation failure aborts,
//! which is a trap.
//!
//! One byte per page of each chunk is written, rather than filling it
//! (`vec![x; n]`, or even zeroed allocation, is a `memory.fill`): wasmtime charges
//! `memory.fill` one unit of fuel per byte, so filling 1 MiB chunks would
//! exhaust a 10-million fuel budget at about 10 MiB, before a 16 MiB memory
//! cap is reached. Touching each page costs a few hundred instructions per
//! MiB, so the memory cap is what stops this one.

use std::hint::black_box;

wit_bindgen::generate!({ world: "pricing", path: "../../../wit" });

const CHUNK: usize = 1 << 20;
const PAGE: usize = 4096;

struct EvilMemory;

impl Guest for EvilMemory {
    fn price(cart: Cart) -> Result<Vec<Adjustment>, String> {
        let mut hoard: Vec<Vec<u8>> = Vec::new();
        let mut byte = black_box(cart.lines.len() as u8) | 1;
        loop {
            let mut chunk: Vec<u8> = Vec::with_capacity(CHUNK);
            for page in chunk.spare_capacity_mut().iter_mut().step_by(PAGE) {
                page.write(byte);
            }
            hoard.push(black_box(chunk));
            byte = byte.wrapping_add(2);
        }
    }
}

export!(EvilMemory);
