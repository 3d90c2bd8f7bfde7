;; free_shipping.wat: a `pricing` plugin written by hand in WebAssembly text,
;; to show that any language that can produce a component for the contract in
;; wit/commerce.wit is a plugin language.
;;
;; It ignores the cart and always proposes one adjustment:
;;   {label: "free shipping", kind: fee, amount: {amount: 0, currency: "EUR"}, line: none}
;;
;; This is a *core* module that follows the component model's canonical ABI.
;; The service's build script (host/build.rs) embeds the `pricing` world in it
;; and wraps it into a component with the `wit-component` crate, writing
;; `wat_free_shipping.wasm` beside the other plugins.
;;
;; Canonical ABI, as it applies here:
;; - `price: func(cart: cart) -> result<list<adjustment>, string>`
;;   The cart flattens to 13 core parameters (strings and lists are a pointer
;;   and a length, `money.amount` is an i64):
;;     currency (2) | lines (2) | subtotal: amount, currency (3)
;;     | customer: id, attributes (4) | attributes (2)
;;   The result does not fit in one core value, so `price` returns a pointer
;;   to it in linear memory.
;; - result<list<adjustment>, string>: size 12, align 4
;;     +0 u8 discriminant (0 = ok), +4 list pointer, +8 list length
;; - adjustment: size 40, align 8
;;     +0 label pointer, +4 label length, +8 kind (u8: 0 discount, 1 fee, 2 tax),
;;     +16 amount.amount (i64), +24 amount.currency pointer, +28 its length,
;;     +32 line (option<u32>: u8 discriminant, 0 = none; +36 the u32)
;; - `cabi_realloc` lets the host allocate the cart in this memory before the
;;   call; `cabi_post_price` runs after the host has read the result.
;;
;; Memory map: the strings at 16 and 32, the result at 64, the adjustment at
;; 80, and from 1024 a bump heap for the host's allocations, reset after
;; each call.
(module
  (memory (export "memory") 1)

  (data (i32.const 16) "free shipping")
  (data (i32.const 32) "EUR")

  (global $heap_base i32 (i32.const 1024))
  (global $heap (mut i32) (i32.const 1024))

  ;; cabi_realloc(old_ptr, old_size, align, new_size) -> ptr
  ;; A bump allocator: never frees; grows the memory as needed; traps when
  ;; the memory cannot grow.
  (func $cabi_realloc (export "cabi_realloc")
    (param $old_ptr i32) (param $old_size i32) (param $align i32) (param $new_size i32)
    (result i32)
    (local $ptr i32)
    (local $end i64)
    (local $have i64)
    ;; ptr = align_up(heap, align); align is a power of two.
    (local.set $ptr
      (i32.and
        (i32.add (global.get $heap) (i32.sub (local.get $align) (i32.const 1)))
        (i32.sub (i32.const 0) (local.get $align))))
    ;; end = ptr + new_size, computed in 64 bits so it cannot wrap.
    (local.set $end
      (i64.add (i64.extend_i32_u (local.get $ptr)) (i64.extend_i32_u (local.get $new_size))))
    (local.set $have (i64.shl (i64.extend_i32_u (memory.size)) (i64.const 16)))
    (if (i64.gt_u (local.get $end) (local.get $have))
      (then
        ;; grow by ceil((end - have) / 64 KiB) pages, or trap.
        (if (i32.eq
              (memory.grow
                (i32.wrap_i64
                  (i64.shr_u
                    (i64.add (i64.sub (local.get $end) (local.get $have)) (i64.const 65535))
                    (i64.const 16))))
              (i32.const -1))
          (then unreachable))))
    ;; A reallocation keeps the old contents (the host never asks for one
    ;; when it passes arguments, but the ABI allows it).
    (if (local.get $old_ptr)
      (then
        (memory.copy
          (local.get $ptr)
          (local.get $old_ptr)
          (select (local.get $old_size) (local.get $new_size)
            (i32.lt_u (local.get $old_size) (local.get $new_size))))))
    (global.set $heap (i32.wrap_i64 (local.get $end)))
    (local.get $ptr))

  ;; price(cart...) -> pointer to result<list<adjustment>, string>
  (func $price (export "price")
    (param $currency_ptr i32) (param $currency_len i32)
    (param $lines_ptr i32) (param $lines_len i32)
    (param $subtotal_amount i64) (param $subtotal_currency_ptr i32) (param $subtotal_currency_len i32)
    (param $customer_id_ptr i32) (param $customer_id_len i32)
    (param $customer_attributes_ptr i32) (param $customer_attributes_len i32)
    (param $attributes_ptr i32) (param $attributes_len i32)
    (result i32)
    ;; The adjustment, at 80.
    (i32.store (i32.const 80) (i32.const 16))    ;; label: "free shipping"
    (i32.store (i32.const 84) (i32.const 13))
    (i32.store8 (i32.const 88) (i32.const 1))    ;; kind: fee
    (i64.store (i32.const 96) (i64.const 0))     ;; amount.amount: 0
    (i32.store (i32.const 104) (i32.const 32))   ;; amount.currency: "EUR"
    (i32.store (i32.const 108) (i32.const 3))
    (i32.store8 (i32.const 112) (i32.const 0))   ;; line: none
    ;; The result, at 64: ok([the adjustment]).
    (i32.store8 (i32.const 64) (i32.const 0))
    (i32.store (i32.const 68) (i32.const 80))
    (i32.store (i32.const 72) (i32.const 1))
    (i32.const 64))

  ;; Called with price's return value once the host has copied the result
  ;; out: everything the host allocated for this call can go.
  (func $cabi_post_price (export "cabi_post_price") (param $result i32)
    (global.set $heap (global.get $heap_base)))
)
