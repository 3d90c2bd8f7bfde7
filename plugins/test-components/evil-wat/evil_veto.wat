;; evil_veto.wat (world `saga-hook`): a veto whose reason is 3 MiB of "r".
;;
;; The step context is passed by pointer (more than 16 flat values); the
;; decision is returned by pointer: the case at +0 (1 = veto), the
;; reason at +4/+8.
;;
;; Layout: the result at 64, a bump heap for the host's allocations (the
;; context) from 1024, the reason at 1 MiB.
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

  (func (export "on-step") (param $context i32) (result i32)
    (memory.fill (i32.const 0x100000) (i32.const 0x72) (i32.const 0x300000))
    (i32.store8 (i32.const 64) (i32.const 1))
    (i32.store (i32.const 68) (i32.const 0x100000))
    (i32.store (i32.const 72) (i32.const 0x300000))
    (i32.const 64))
)
