;; Login world of contract 0.2.0 (not hostile): logs its saved config (`host.config`, new in 0.2.0) at info level
;; and allows every call. It proves 0.2.0 login components link and read their config. Built by
;; scripts/build-plugins (plugins/build-wat.mjs with plugins/wit/0.2.0/gatehouse.wit); used by tests/it/pricing.rs.
(module
  (import "gatehouse:plugin/host@0.2.0" "log" (func $log (param i32 i32 i32)))
  ;; A string result comes back through a pointer: the host writes (pointer, length) there.
  (import "gatehouse:plugin/host@0.2.0" "config" (func $config (param i32)))
  (memory (export "memory") 2)
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

  (func $log_config
    (call $config (i32.const 512))
    (call $log (i32.const 1) (i32.load (i32.const 512)) (i32.load (i32.const 516))))

  (func (export "pre-registration") (param i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32) (result i32)
    (call $log_config)
    (i32.store8 (i32.const 1024) (i32.const 0))
    (i32.const 1024)
  )
  (func (export "post-login") (param i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32) (result i32)
    (call $log_config)
    (i32.store8 (i32.const 1024) (i32.const 0))
    (i32.const 1024)
  )
)
