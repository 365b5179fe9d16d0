;; Pricing world of contract 0.1.0 (not hostile): adds a fee of 50 minor units to the order, labelled "handling".
;; It proves a 0.1.0 pricing component keeps working on a host that speaks 0.2.0 (its cart has no subtotal and no
;; applied adjustments). Built by scripts/build-plugins (plugins/build-wat.mjs with plugins/wit/0.1.0/gatehouse.wit).
;;
;; ABI: a 0.1.0 cart flattens to 14 values, so `price` takes them as they are; the result is returned through a
;; pointer: byte 0 the case (0 = ok), then the list's pointer and length at +4 and +8. An adjustment is 32 bytes:
;; target case (u8) at 0, kind (u8: discount, tax, shipping, fee) at 8, amount (s64) at 16, label pointer and
;; length at 24 and 28.
(module
  (memory (export "memory") 2)
  (data (i32.const 3072) "handling")
  (global $heap (mut i32) (i32.const 65536))
  (func $realloc (export "cabi_realloc") (param i32 i32) (param $align i32) (param $size i32) (result i32)
    (local $ptr i32)
    (local.set $ptr
      (i32.and (i32.add (global.get $heap) (i32.sub (local.get $align) (i32.const 1)))
               (i32.sub (i32.const 0) (local.get $align))))
    (global.set $heap (i32.add (local.get $ptr) (local.get $size)))
    (block $done
      (loop $grow
        (br_if $done (i32.le_u (global.get $heap) (i32.mul (memory.size) (i32.const 65536))))
        (drop (memory.grow (i32.const 1)))
        (br $grow)))
    (local.get $ptr))

  (func (export "price")
    (param i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32) (result i32)
    (i32.store8 (i32.const 1024) (i32.const 0))
    (i32.store (i32.const 1028) (i32.const 2048))
    (i32.store (i32.const 1032) (i32.const 1))
    ;; target order (0), kind fee (3), amount 50, label "handling"
    (i32.store8 (i32.const 2048) (i32.const 0))
    (i32.store8 (i32.const 2056) (i32.const 3))
    (i64.store (i32.const 2064) (i64.const 50))
    (i32.store (i32.const 2072) (i32.const 3072))
    (i32.store (i32.const 2076) (i32.const 8))
    (i32.const 1024)
  )
)
