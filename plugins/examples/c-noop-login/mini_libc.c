// A freestanding allocator and the few string functions the bindings use. Every call runs on a fresh instance,
// so a bump allocator that never frees is enough: memory is thrown away with the instance.
#include <stdlib.h>
#include <string.h>

extern unsigned char __heap_base;
static unsigned long heap_top = 0;

void *malloc(size_t size) {
  if (heap_top == 0) heap_top = (unsigned long)&__heap_base;
  unsigned long ptr = (heap_top + 7) & ~7ul;
  unsigned long end = ptr + size;
  unsigned long have = __builtin_wasm_memory_size(0) * 65536ul;
  if (end > have) {
    unsigned long pages = (end - have + 65535) / 65536;
    if (__builtin_wasm_memory_grow(0, pages) == (size_t)-1) abort();
  }
  heap_top = end;
  return (void *)ptr;
}

void *realloc(void *old, size_t size) {
  void *ptr = malloc(size);
  // The old block's size is unknown; copying `size` bytes stays inside memory because the new block lies above.
  if (old) memcpy(ptr, old, size);
  return ptr;
}

void free(void *ptr) { (void)ptr; }

_Noreturn void abort(void) { __builtin_trap(); }

void *memcpy(void *dst, const void *src, size_t n) {
  unsigned char *d = dst;
  const unsigned char *s = src;
  while (n--) *d++ = *s++;
  return dst;
}

void *memset(void *dst, int c, size_t n) {
  unsigned char *d = dst;
  while (n--) *d++ = (unsigned char)c;
  return dst;
}

size_t strlen(const char *s) {
  size_t n = 0;
  while (s[n]) n++;
  return n;
}
