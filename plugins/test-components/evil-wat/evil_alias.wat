;; evil_alias.wat (world `pricing`): an aliasing output bomb.
;;
;; `price` answers ok(list) with 50,000 adjustments whose labels all point
;; at the same 1 MiB string: 4 MiB of guest memory describe 50 GB of
;; answer. A host that copies an answer before measuring it allocates
;; list length x label length; the host must refuse it from the list's
;; length and the labels' lengths, without copying.
;;
;; Layout: "EUR" at 16, the result at 64, a bump heap for the host's
;; allocations (the cart) from 1024, the label at 1 MiB, the list at 2 MiB
;; (adjustment: size 40; label at +0/+4, kind at +8, amount at +16,
;; currency at +24/+28, line at +32).
(module
  (memory (export "memory") 64)
  (data (i32.const 16) "EUR")
  (global $heap (mut i32) (i32.const 1024))

  ;; A bump allocator below 1 MiB, for the cart the host passes in.
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
    (local $entry i32)
    (local $end i32)
    ;; The label: 1 MiB of "x".
    (memory.fill (i32.const 0x100000) (i32.const 0x78) (i32.const 0x100000))
    ;; 50,000 adjustments, every label the same 1 MiB.
    (local.set $entry (i32.const 0x200000))
    (local.set $end (i32.add (i32.const 0x200000) (i32.mul (i32.const 50000) (i32.const 40))))
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $entry) (local.get $end)))
        (i32.store (local.get $entry) (i32.const 0x100000))
        (i32.store offset=4 (local.get $entry) (i32.const 0x100000))
        (i32.store8 offset=8 (local.get $entry) (i32.const 1))
        (i64.store offset=16 (local.get $entry) (i64.const 0))
        (i32.store offset=24 (local.get $entry) (i32.const 16))
        (i32.store offset=28 (local.get $entry) (i32.const 3))
        (i32.store8 offset=32 (local.get $entry) (i32.const 0))
        (local.set $entry (i32.add (local.get $entry) (i32.const 40)))
        (br $next)))
    ;; ok(list)
    (i32.store8 (i32.const 64) (i32.const 0))
    (i32.store (i32.const 68) (i32.const 0x200000))
    (i32.store (i32.const 72) (i32.const 50000))
    (i32.const 64))
)
