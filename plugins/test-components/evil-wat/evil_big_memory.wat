;; evil_big_memory.wat (world `pricing`): a memory whose initial size, 128
;; MiB, is eight times the cap, and a data segment at its end. It could
;; never be instantiated; the upload check refuses it from the declared
;; size, before any call.
(module
  (memory (export "memory") 2048)
  (data (i32.const 0x7fffff0) "far away")
  (global $heap (mut i32) (i32.const 1024))

  (func (export "cabi_realloc")
    (param $old_ptr i32) (param $old_size i32) (param $align i32) (param $new_size i32)
    (result i32)
    (local $ptr i32)
    (local.set $ptr
      (i32.and
        (i32.add (global.get $heap) (i32.sub (local.get $align) (i32.const 1)))
        (i32.sub (i32.const 0) (local.get $align))))
    (global.set $heap (i32.add (local.get $ptr) (local.get $new_size)))
    (local.get $ptr))

  (func (export "price")
    (param i32 i32 i32 i32 i64 i32 i32 i32 i32 i32 i32 i32 i32)
    (result i32)
    (i32.store8 (i32.const 64) (i32.const 0))
    (i32.store (i32.const 68) (i32.const 8))
    (i32.store (i32.const 72) (i32.const 0))
    (i32.const 64))
)
