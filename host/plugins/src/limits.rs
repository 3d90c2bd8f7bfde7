//! What an upload is refused for before any call: declarations that could
//! only make the host allocate or work beyond the sandbox's limits.
//!
//! A compiled component states what instantiating it needs
//! ([`Component::resources_required`]): its core memories and tables and
//! their initial sizes (a data segment must fit in its memory's initial
//! size, so bounding the size bounds the data). Its imports and exports
//! are listed by its type. None of this depends on input, so it is checked
//! once, at upload; instantiation and calls enforce the same limits again
//! through the store's limiter (see [`super::sandbox::MemoryCap`]).
//!
//! This module decides; it does not compile or run anything.

use wasmtime::Engine;
use wasmtime::component::Component;

/// Bytes of a WebAssembly page.
const PAGE: u64 = 64 << 10;

/// What a component may declare.
#[derive(Debug, Clone)]
pub struct UploadLimits {
    /// Linear memory, in bytes, all memories together.
    pub memory: usize,
    /// Core memories. The canonical ABI reads and writes one; a second
    /// would only be room beyond what the cap is meant to allow.
    pub memories: u32,
    /// Core tables. Toolchains emit one for the plugin's functions and a
    /// few for the glue around imports.
    pub tables: u32,
    /// Initial elements of any one table.
    pub table_elements: u64,
    /// Component-level imports (each must be an interface the host
    /// provides; the linker refuses the others).
    pub imports: usize,
    /// Component-level exports (a world exports one function).
    pub exports: usize,
}

/// Refuses `component` if it declares more than `limits` allow, saying why.
pub fn check(engine: &Engine, component: &Component, limits: &UploadLimits) -> Result<(), String> {
    let Some(needs) = component.resources_required() else {
        return Err("it instantiates core modules it imports; \
                    what it needs cannot be known before it runs"
            .into());
    };
    if needs.num_memories > limits.memories {
        return Err(format!(
            "it defines {} linear memories; a plugin may have {}",
            needs.num_memories, limits.memories
        ));
    }
    let memory = needs
        .max_initial_memory_size
        .unwrap_or(0)
        .saturating_mul(PAGE);
    if memory > limits.memory as u64 {
        return Err(format!(
            "it starts with {memory} bytes of linear memory; the limit is {}",
            limits.memory
        ));
    }
    if needs.num_tables > limits.tables {
        return Err(format!(
            "it defines {} tables; a plugin may have {}",
            needs.num_tables, limits.tables
        ));
    }
    let elements = needs.max_initial_table_size.unwrap_or(0);
    if elements > limits.table_elements {
        return Err(format!(
            "it starts with a table of {elements} elements; the limit is {}",
            limits.table_elements
        ));
    }
    let ty = component.component_type();
    let imports = ty.imports(engine).len();
    if imports > limits.imports {
        return Err(format!(
            "it has {imports} imports; a plugin may have {}",
            limits.imports
        ));
    }
    let exports = ty.exports(engine).len();
    if exports > limits.exports {
        return Err(format!(
            "it has {exports} exports; a plugin may have {}",
            limits.exports
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The service's engine refuses most of these itself when it runs with
    /// the pooling allocator; without it (this engine) the check is the
    /// only thing between an upload and the allocation.
    fn check_text(component: &str, limits: &UploadLimits) -> Result<(), String> {
        let mut config = wasmtime::Config::new();
        config.wasm_component_model(true);
        let engine = Engine::new(&config).expect("an engine");
        let bytes = wat::parse_str(component).expect("valid component text");
        let component = Component::new(&engine, bytes).expect("it compiles");
        check(&engine, &component, limits)
    }

    fn limits() -> UploadLimits {
        UploadLimits {
            memory: 16 << 20,
            memories: 1,
            tables: 4,
            table_elements: 10_000,
            imports: 2,
            exports: 1,
        }
    }

    /// A component that instantiates `module` (core module text).
    fn with_module(module: &str) -> String {
        format!("(component (core module $m {module}) (core instance (instantiate $m)))")
    }

    #[test]
    fn a_component_within_the_limits_passes() {
        let component = with_module("(memory 16) (table 100 funcref)");
        assert_eq!(check_text(&component, &limits()), Ok(()));
    }

    #[test]
    fn declarations_beyond_the_limits_are_refused_with_the_reason() {
        let cases = [
            (with_module("(memory 1) (memory 1)"), "2 linear memories"),
            (
                with_module("(memory 2048)"),
                "starts with 134217728 bytes of linear memory",
            ),
            (
                with_module(
                    "(table 1 funcref) (table 1 funcref) (table 1 funcref) \
                             (table 1 funcref) (table 1 funcref)",
                ),
                "5 tables",
            ),
            (
                with_module("(table 10000000 funcref)"),
                "a table of 10000000 elements",
            ),
            (
                "(component (import \"a\" (func)) (import \"b\" (func)) \
                 (import \"c\" (func)))"
                    .to_owned(),
                "3 imports",
            ),
        ];
        for (component, reason) in cases {
            let refused = check_text(&component, &limits()).expect_err(&component);
            assert!(refused.contains(reason), "{refused:?} lacks {reason:?}");
        }
    }

    #[test]
    fn exports_beyond_the_limit_are_refused() {
        let component = "(component \
            (core module $m (func (export \"f\")) (func (export \"g\"))) \
            (core instance $i (instantiate $m)) \
            (func (export \"f\") (canon lift (core func $i \"f\"))) \
            (func (export \"g\") (canon lift (core func $i \"g\"))))";
        let refused = check_text(component, &limits()).expect_err("two exports");
        assert!(refused.contains("2 exports"), "{refused}");
    }
}
