;; Imports wasi:filesystem (see wasi-fs.wit): refused at upload with plugin_forbidden_import.
(module
  (import "wasi:filesystem/types@0.2.0" "read-byte" (func $read (param i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "pre-registration") (result i32) (call $read (i32.const 3)))
)
