;; Pricing world (contract 0.2.0), hostile: answers 30 adjustments whose labels all point at one 2 MiB string (NUL
;; bytes are valid UTF-8). Copied once per entry that is 60 MiB of host memory from a 4 MiB guest (and 500 entries
;; would be 1 GB); the host stops copying at its hostcall fuel (1 MiB per lift): invalid_output, "too much data".
;; Built by scripts/build-plugins (plugins/build-wat.mjs with plugins/wit/0.2.0/gatehouse.wit, world
;; gatehouse:plugin/pricing). Used by tests/it/pricing.rs: a fail-open plugin is left out of the quote
;; (`degraded`), a fail-closed one makes the quote 503 `pricing_unavailable`.
;;
;; ABI: the cart record flattens to more than 16 values, so `price` gets one pointer to it; the result
;; (`result<list<adjustment>, string>`) is returned through a pointer: byte 0 the case (0 = ok), then the list's
;; pointer and length at +4 and +8. An adjustment is 32 bytes: target case (u8) at 0 and its line index (u32) at 4,
;; kind (u8: discount, tax, shipping, fee) at 8, amount (s64) at 16, label pointer and length at 24 and 28.
(module
  (memory (export "memory") 64)
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
    (local $i i32)
    ;; ok(list at 2048, 30 elements); every element's label: pointer 1 MiB, length 2 MiB.
    (i32.store8 (i32.const 1024) (i32.const 0))
    (i32.store (i32.const 1028) (i32.const 2048))
    (i32.store (i32.const 1032) (i32.const 30))
    (loop $fill
      (i32.store (i32.add (i32.const 2072) (i32.mul (local.get $i) (i32.const 32))) (i32.const 1048576))
      (i32.store (i32.add (i32.const 2076) (i32.mul (local.get $i) (i32.const 32))) (i32.const 2097152))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $fill (i32.lt_u (local.get $i) (i32.const 30))))
    (i32.const 1024)
  )
)
