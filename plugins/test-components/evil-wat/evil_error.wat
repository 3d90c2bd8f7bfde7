;; evil_error.wat (world `pricing`): a huge error string.
;;
;; `price` answers err(s) where s is 3 MiB of "e": a plugin's error message
;; is part of its answer and is bounded like the rest of it.
;;
;; Layout: the result at 64, a bump heap for the host's allocations (the
;; cart) from 1024, the message at 1 MiB.
(module
  (memory (export "memory") 64)
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
    (if (i32.gt_u (global.get $heap) (i32.const 0x100000)) (then unreachable))
    (local.get $ptr))

  (func (export "price")
    (param i32 i32 i32 i32 i64 i32 i32 i32 i32 i32 i32 i32 i32)
    (result i32)
    (memory.fill (i32.const 0x100000) (i32.const 0x65) (i32.const 0x300000))
    ;; err(message)
    (i32.store8 (i32.const 64) (i32.const 1))
    (i32.store (i32.const 68) (i32.const 0x100000))
    (i32.store (i32.const 72) (i32.const 0x300000))
    (i32.const 64))
)
