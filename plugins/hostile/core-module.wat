;; A core WebAssembly module, not a component: refused at upload with plugin_invalid.
(module
  (func (export "pre-registration") (result i32) (i32.const 0))
)
