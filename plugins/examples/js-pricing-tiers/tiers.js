// A pricing-world plugin (contract 0.2.0): volume tiers per line and a discount by customer role, both read from
// the plugin's saved config through `config()`, so a merchant changes them without a new upload:
//
//   {"tiers": [{"min_quantity": 10, "percent": 5}, {"min_quantity": 50, "percent": 10}],
//    "role_discounts": {"wholesale": 15}}
//
// A line gets the best tier its quantity reaches (a line discount); a customer with one of the roles gets the
// largest of their roles' percentages off what the order costs after the codes and the tiers (an order
// discount). Amounts are whole minor units: s64 values are BigInts in JavaScript, and division rounds down.
import { log, config } from 'gatehouse:plugin/host@0.2.0';

function settings() {
  try {
    const parsed = JSON.parse(config());
    return {
      tiers: Array.isArray(parsed.tiers) ? parsed.tiers : [],
      roles: parsed.role_discounts && typeof parsed.role_discounts === 'object' ? parsed.role_discounts : {},
    };
  } catch (e) {
    log('warn', `config is not JSON (${e}); no discount`);
    return { tiers: [], roles: {} };
  }
}

// The largest whole percentage (0-100) among `candidates`.
function best(candidates) {
  return candidates.reduce((top, p) => Math.max(top, Math.min(100, Math.max(0, Math.floor(Number(p) || 0)))), 0);
}

export function price(cart) {
  const { tiers, roles } = settings();
  const adjustments = [];
  // What the lines cost so far: the subtotal plus the (negative) line and order discounts already applied.
  const onLines = (a) => a.kind === 'discount' && a.target.tag !== 'shipping';
  let net = cart.applied.reduce((sum, a) => (onLines(a) ? sum + a.amount : sum), cart.subtotal);
  cart.lines.forEach((line, index) => {
    const percent = best(tiers.filter((t) => line.quantity >= Number(t.min_quantity)).map((t) => t.percent));
    if (percent === 0) return;
    const lineNet = cart.applied
      .filter((a) => a.kind === 'discount' && a.target.tag === 'line' && a.target.val === index)
      .reduce((sum, a) => sum + a.amount, line.unitPrice * BigInt(line.quantity));
    const off = (lineNet * BigInt(percent)) / 100n;
    if (off <= 0n) return;
    net -= off;
    adjustments.push({
      target: { tag: 'line', val: index },
      kind: 'discount',
      amount: -off,
      label: `${percent} % volume discount`,
    });
  });
  const rolePercent = best(cart.customerRoles.map((r) => roles[r] ?? 0));
  if (rolePercent > 0 && net > 0n) {
    const off = (net * BigInt(rolePercent)) / 100n;
    adjustments.push({ target: { tag: 'order' }, kind: 'discount', amount: -off, label: `${rolePercent} % member price` });
  }
  return adjustments;
}
