;; evil_memories.wat (world `pricing`): two linear memories of 10 MiB each.
;;
;; The memory cap holds for all of a plugin's memories together, not for
;; each one: every single memory here is under the 16 MiB cap, both
;; together are not. The upload check refuses a plugin with more than one
;; memory; should one get past it, instantiation fails on the cap.
;;
;; `price` answers ok([]) (the result at 64). The second memory is not
;; exported: the canonical ABI uses the first.
(module
  (memory $abi (export "memory") 160)
  (memory $hoard 160)
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
    ;; Touch the hoard, so it is a memory in use, not only declared.
    (i32.store $hoard (i32.const 0x9ffffc) (i32.const 1))
    (i32.store8 (i32.const 64) (i32.const 0))
    (i32.store (i32.const 68) (i32.const 8))
    (i32.store (i32.const 72) (i32.const 0))
    (i32.const 64))
)
