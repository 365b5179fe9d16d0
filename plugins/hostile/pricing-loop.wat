;; Pricing world (contract 0.2.0), hostile: never returns (an endless loop; the deadline stops it).
;; Built by scripts/build-plugins (plugins/build-wat.mjs with plugins/wit/0.2.0/gatehouse.wit, world
;; gatehouse:plugin/pricing). Used by tests/it/pricing.rs: a fail-open plugin is left out of the quote
;; (`degraded`), a fail-closed one makes the quote 503 `pricing_unavailable`.
;;
;; ABI: the cart record flattens to more than 16 values, so `price` gets one pointer to it; the result
;; (`result<list<adjustment>, string>`) is returned through a pointer: byte 0 the case (0 = ok), then the list's
;; pointer and length at +4 and +8. An adjustment is 32 bytes: target case (u8) at 0 and its line index (u32) at 4,
;; kind (u8: discount, tax, shipping, fee) at 8, amount (s64) at 16, label pointer and length at 24 and 28.
(module
  (memory (export "memory") 6)
  (global $heap (mut i32) (i32.const 327680))
  ;; A bump allocator for the host's copy of the cart; nothing is freed (one call per instance).
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

  (func (export "price") (param i32) (result i32)
    (loop $forever (br $forever))
    (i32.const 0)
  )
)
