// Just enough of <stdlib.h> for wit-bindgen's C bindings on wasm32-unknown-unknown (no libc there).
#pragma once
#include <stddef.h>
void *malloc(size_t size);
void *realloc(void *ptr, size_t size);
void free(void *ptr);
_Noreturn void abort(void);
