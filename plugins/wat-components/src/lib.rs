//! Nothing to link: this package exists for its build script, which turns
//! the core modules written by hand in WebAssembly text into components
//! (see `build.rs`).
#![no_std]
