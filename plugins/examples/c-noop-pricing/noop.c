// The smallest pricing plugin (contract 0.2.0): returns no adjustment, so the quote is the built-in one. It is the
// baseline of the pricing benchmark (the cost of a fresh sandboxed instance per quote) and a starting point for C
// pricing plugins: fill `ret` with adjustments (`pricing_list_adjustment_t`, allocated with malloc) to change prices.
#include "pricing.h"

bool exports_pricing_price(pricing_cart_t *cart, pricing_list_adjustment_t *ret, pricing_string_t *err) {
  (void)err;
  pricing_cart_free(cart);
  ret->ptr = 0;
  ret->len = 0;
  return true;
}
