;; Login world, grows its memory until refused: the memory cap must stop it (outcome trap).
;; Built by scripts/build-plugins: `wasm-tools component embed ../wit --world gatehouse:plugin/login` then
;; `wasm-tools component new`. Used by the integration tests (tests/it/plugins.rs).
(module
  (import "gatehouse:plugin/host@0.1.0" "log" (func $log (param i32 i32 i32)))
  (memory (export "memory") 2)
  (global $heap (mut i32) (i32.const 65536))
  ;; A bump allocator: the host copies arguments in through it; nothing is ever freed (one call per instance).
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

  (func (export "pre-registration") (param i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32) (result i32)
    (loop $more
      (drop (memory.grow (i32.const 16)))
      (br $more))
    (unreachable)
  )
  (func (export "post-login") (param i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32) (result i32)
    (loop $more
      (drop (memory.grow (i32.const 16)))
      (br $more))
    (unreachable)
  )
)
