;; evil_violations.wat (world `validation`): an aliasing output bomb at the
;; validation extension point.
;;
;; `validate` answers 50,000 violations whose codes and messages all point
;; at the same 1 MiB string.
;;
;; The order has more than 16 flat values, so the host passes it by
;; pointer (one i32); the answer, a list, is returned by pointer to its
;; (pointer, length). violation: size 24; code at +0/+4, message at
;; +8/+12, line at +16 (none).
;;
;; Layout: the result at 64, a bump heap for the host's allocations (the
;; order) from 1024, the string at 1 MiB, the list at 2 MiB.
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

  (func (export "validate") (param $order i32) (result i32)
    (local $entry i32)
    (local $end i32)
    (memory.fill (i32.const 0x100000) (i32.const 0x76) (i32.const 0x100000))
    (local.set $entry (i32.const 0x200000))
    (local.set $end (i32.add (i32.const 0x200000) (i32.mul (i32.const 50000) (i32.const 24))))
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $entry) (local.get $end)))
        (i32.store (local.get $entry) (i32.const 0x100000))
        (i32.store offset=4 (local.get $entry) (i32.const 0x100000))
        (i32.store offset=8 (local.get $entry) (i32.const 0x100000))
        (i32.store offset=12 (local.get $entry) (i32.const 0x100000))
        (i32.store8 offset=16 (local.get $entry) (i32.const 0))
        (local.set $entry (i32.add (local.get $entry) (i32.const 24)))
        (br $next)))
    (i32.store (i32.const 64) (i32.const 0x200000))
    (i32.store (i32.const 68) (i32.const 50000))
    (i32.const 64))
)
