//! The pricing pipeline: a quote is a pure function of the cart's lines (with their catalog rows), the discount
//! codes applied, the chosen shipping method, the tax rate of the destination and the store's tax flags.
//!
//! Steps, in order:
//! 1. Base: each line's unit price × quantity.
//! 2. Discount codes: percent (of the eligible lines), fixed (spread over the eligible lines in proportion, the
//!    remainder cent by cent from the first line), free shipping (applied after step 3).
//! 3. Shipping: the chosen method's flat price, weight or subtotal bracket, free over an amount.
//! 4. Tax: the destination's rate on the discounted lines (and on shipping when `tax_shipping`), each tax line
//!    rounded half away from zero to the minor unit; with `prices_include_tax` the tax is the part of the price
//!    that is tax (`amount × rate / (1 + rate)`) and the total does not grow.
//!
//! Every amount is `i64` minor units; products of amounts and rates go through `i128`.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use utoipa::ToSchema;

/// A cart line with what the catalog says about it.
#[derive(Debug, Clone)]
pub struct PricedLine {
    pub sku: String,
    pub title: String,
    pub unit_price: i64,
    pub quantity: u32,
    pub weight_grams: i64,
    pub category_ids: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DiscountKind {
    /// `value` percent (1-100) off the eligible lines.
    Percent,
    /// `value` minor units off the eligible lines (never more than they cost).
    Fixed,
    /// Shipping costs nothing.
    FreeShipping,
}

/// A discount code as the pipeline applies it (eligibility — dates, usage, minimum — is checked before).
#[derive(Debug, Clone)]
pub struct Discount {
    pub code: String,
    pub kind: DiscountKind,
    pub value: i64,
    /// Empty: every line. Else the lines in one of these categories or with one of these SKUs.
    pub category_ids: Vec<String>,
    pub skus: Vec<String>,
}

impl Discount {
    pub fn applies_to(&self, line: &PricedLine) -> bool {
        (self.category_ids.is_empty() && self.skus.is_empty())
            || self.skus.contains(&line.sku)
            || line.category_ids.iter().any(|c| self.category_ids.contains(c))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ShippingKind {
    /// One price.
    Flat,
    /// By the cart's weight in grams: the first bracket whose `up_to` covers it.
    Weight,
    /// By the discounted subtotal: the first bracket whose `up_to` covers it.
    Subtotal,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Bracket {
    /// Grams (weight) or minor units (subtotal), inclusive.
    pub up_to: i64,
    pub price: i64,
}

#[derive(Debug, Clone)]
pub struct Shipping {
    pub code: String,
    pub name: String,
    pub kind: ShippingKind,
    pub price: i64,
    pub brackets: Vec<Bracket>,
    pub free_over: Option<i64>,
}

#[derive(Debug, Clone)]
pub struct Tax {
    /// `DE`, or `US-CA` with a region.
    pub label: String,
    pub name: String,
    pub rate_bps: i64,
}

/// Everything a quote depends on besides the lines.
#[derive(Debug, Clone, Default)]
pub struct Rules {
    pub currency: String,
    pub discounts: Vec<Discount>,
    pub shipping: Option<Shipping>,
    pub tax: Option<Tax>,
    pub prices_include_tax: bool,
    pub tax_shipping: bool,
}

/// One change to the price: discounts are negative, shipping, tax and fees positive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Adjustment {
    /// `discount`, `shipping`, `tax` or `fee`.
    pub kind: String,
    /// `order`, `shipping` or `line(i)` (0-based).
    pub target: String,
    pub amount: i64,
    pub label: String,
    /// `code:SUMMER10`, `shipping:standard`, `tax:DE`, `plugin:{name}@v{n}`.
    pub source: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct QuoteLine {
    pub sku: String,
    pub title: String,
    pub quantity: u32,
    pub unit_price: i64,
    /// Unit price × quantity, before adjustments.
    pub subtotal: i64,
    pub adjustments: Vec<Adjustment>,
}

/// A priced cart.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Quote {
    pub currency: String,
    pub lines: Vec<QuoteLine>,
    /// Adjustments of the order and of shipping (line adjustments are with their line).
    pub adjustments: Vec<Adjustment>,
    /// Sum of the lines' subtotals.
    pub subtotal: i64,
    /// Sum of the discounts, as a positive amount.
    pub discount_total: i64,
    pub shipping_total: i64,
    pub tax_total: i64,
    /// What the customer pays: subtotal − discounts + shipping (+ tax unless prices include it).
    pub total: i64,
    /// Whether a fail-open pricing plugin was left out.
    pub degraded: bool,
    /// A hash of this priced result: checkout accepts it in place of the expected total.
    pub quote_id: String,
}

/// `amount × num / den` rounded half away from zero.
pub fn mul_div_round(amount: i64, num: i64, den: i64) -> i64 {
    let (a, n, d) = (i128::from(amount), i128::from(num), i128::from(den));
    let product = a * n;
    let half = d / 2;
    let rounded = if (product >= 0) == (d > 0) { (product + half) / d } else { (product - half) / d };
    rounded as i64
}

fn adjustment(kind: &str, target: String, amount: i64, label: String, source: String) -> Adjustment {
    Adjustment { kind: kind.into(), target, amount, label, source }
}

/// Prices `lines` under `rules`.
pub fn quote(lines: &[PricedLine], rules: &Rules) -> Quote {
    let mut out: Vec<QuoteLine> = lines
        .iter()
        .map(|l| QuoteLine {
            sku: l.sku.clone(),
            title: l.title.clone(),
            quantity: l.quantity,
            unit_price: l.unit_price,
            subtotal: l.unit_price * i64::from(l.quantity),
            adjustments: Vec::new(),
        })
        .collect();
    let subtotal: i64 = out.iter().map(|l| l.subtotal).sum();
    // What each line costs after discounts so far.
    let mut net: Vec<i64> = out.iter().map(|l| l.subtotal).collect();
    let mut order_adjustments = Vec::new();
    let mut free_shipping: Option<String> = None;

    // 2. Discount codes: percent codes first, then fixed, then free shipping (then by code), so the same codes
    // price the same whatever order they were applied in; each works on what the lines cost after the codes
    // before it.
    let mut discounts: Vec<&Discount> = rules.discounts.iter().collect();
    discounts.sort_by_key(|d| (d.kind as u8, d.code.clone()));
    for d in discounts {
        let source = format!("code:{}", d.code);
        let eligible: Vec<usize> = (0..lines.len()).filter(|i| d.applies_to(&lines[*i])).collect();
        let base: i64 = eligible.iter().map(|&i| net[i]).sum();
        let (off_total, label) = match d.kind {
            // The percent of the eligible lines together, spread over them (no per-line rounding drift).
            DiscountKind::Percent => {
                (mul_div_round(base, d.value.clamp(0, 100), 100), format!("{} % off ({})", d.value, d.code))
            }
            DiscountKind::Fixed => (d.value.clamp(0, base), format!("{} off", d.code)),
            DiscountKind::FreeShipping => {
                free_shipping = Some(d.code.clone());
                continue;
            }
        };
        for (i, share) in spread(&eligible, &net, off_total) {
            net[i] -= share;
            out[i].adjustments.push(adjustment(
                "discount",
                format!("line({i})"),
                -share,
                label.clone(),
                source.clone(),
            ));
        }
    }
    let discounted: i64 = net.iter().sum();

    // 3. Shipping (nothing to ship, nothing to pay).
    let mut shipping_price = 0;
    let mut shipping_off = 0;
    if let Some(s) = rules.shipping.as_ref().filter(|_| !lines.is_empty()) {
        let weight: i64 = lines.iter().map(|l| l.weight_grams * i64::from(l.quantity)).sum();
        // Past the last bracket the method's `price` applies.
        let bracket = |measure: i64| s.brackets.iter().find(|b| measure <= b.up_to).map_or(s.price, |b| b.price);
        shipping_price = match s.kind {
            ShippingKind::Flat => s.price,
            ShippingKind::Weight => bracket(weight),
            ShippingKind::Subtotal => bracket(discounted),
        };
        if s.free_over.is_some_and(|over| discounted >= over) {
            shipping_price = 0;
        }
        let source = format!("shipping:{}", s.code);
        order_adjustments.push(adjustment("shipping", "shipping".into(), shipping_price, s.name.clone(), source));
        if let Some(code) = free_shipping
            && shipping_price > 0
        {
            shipping_off = shipping_price;
            let label = format!("free shipping ({code})");
            order_adjustments.push(adjustment(
                "discount",
                "shipping".into(),
                -shipping_off,
                label,
                format!("code:{code}"),
            ));
        }
    }
    let shipping_net = shipping_price - shipping_off;

    // 4. Tax. With prices that include it, the adjustments are `tax_included` (shown, not added).
    let mut tax_total = 0;
    if let Some(t) = &rules.tax {
        let source = format!("tax:{}", t.label);
        let kind = if rules.prices_include_tax { "tax_included" } else { "tax" };
        let tax_of = |amount: i64| {
            if rules.prices_include_tax {
                mul_div_round(amount, t.rate_bps, 10_000 + t.rate_bps)
            } else {
                mul_div_round(amount, t.rate_bps, 10_000)
            }
        };
        for (i, line) in out.iter_mut().enumerate() {
            let tax = tax_of(net[i]);
            if tax != 0 {
                tax_total += tax;
                line.adjustments.push(adjustment(kind, format!("line({i})"), tax, t.name.clone(), source.clone()));
            }
        }
        if rules.tax_shipping && shipping_net > 0 {
            let tax = tax_of(shipping_net);
            tax_total += tax;
            order_adjustments.push(adjustment(kind, "shipping".into(), tax, t.name.clone(), source));
        }
    }

    // subtotal − discount_total + shipping_total (+ tax_total unless included) = total.
    let discount_total = subtotal - discounted + shipping_off;
    let total = discounted + shipping_net + if rules.prices_include_tax { 0 } else { tax_total };
    let mut quote = Quote {
        currency: rules.currency.clone(),
        lines: out,
        adjustments: order_adjustments,
        subtotal,
        discount_total,
        shipping_total: shipping_price,
        tax_total,
        total,
        degraded: false,
        quote_id: String::new(),
    };
    quote.quote_id = quote_id(&quote);
    quote
}

/// Spreads `total` over the `eligible` lines in proportion to what each costs now (`net`), the rounding
/// remainder a minor unit at a time from the first line; no line gets more than it costs. Answers (line, share)
/// for the shares above zero.
fn spread(eligible: &[usize], net: &[i64], total: i64) -> Vec<(usize, i64)> {
    let base: i64 = eligible.iter().map(|&i| net[i]).sum();
    if total <= 0 || base <= 0 {
        return Vec::new();
    }
    let total = total.min(base);
    let mut shares: Vec<i64> =
        eligible.iter().map(|&i| (i128::from(net[i]) * i128::from(total) / i128::from(base)) as i64).collect();
    let mut rest = total - shares.iter().sum::<i64>();
    while rest > 0 {
        let before = rest;
        for (k, &i) in eligible.iter().enumerate() {
            if rest > 0 && shares[k] < net[i] {
                shares[k] += 1;
                rest -= 1;
            }
        }
        if rest == before {
            break;
        }
    }
    eligible.iter().zip(shares).filter(|(_, s)| *s > 0).map(|(&i, s)| (i, s)).collect()
}

/// A hash of the priced result (every line, adjustment and total).
pub fn quote_id(quote: &Quote) -> String {
    let mut copy = quote.clone();
    copy.quote_id = String::new();
    let digest = Sha256::digest(serde_json::to_vec(&copy).unwrap_or_default());
    crate::plugins::artifacts::hex(&digest[..16])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(sku: &str, price: i64, qty: u32, grams: i64, category: &str) -> PricedLine {
        PricedLine {
            sku: sku.into(),
            title: sku.into(),
            unit_price: price,
            quantity: qty,
            weight_grams: grams,
            category_ids: vec![category.into()],
        }
    }

    #[test]
    fn rounding_is_half_away_from_zero() {
        assert_eq!(mul_div_round(5, 1, 2), 3);
        assert_eq!(mul_div_round(-5, 1, 2), -3);
        assert_eq!(mul_div_round(4, 1, 2), 2);
        assert_eq!(mul_div_round(1999, 1900, 10_000), 380); // 379.81
        assert_eq!(mul_div_round(1190, 1900, 11_900), 190);
        assert_eq!(mul_div_round(i64::MAX / 2, 3, 3), i64::MAX / 2, "no overflow through i128");
    }

    #[test]
    fn a_cart_priced_by_hand() {
        // 2 × 25.00 shirts (category c1) + 1 × 10.00 mug (c2); 10 % off shirts; weight shipping; 19 % VAT on all.
        let lines = [line("SHIRT", 2500, 2, 300, "c1"), line("MUG", 1000, 1, 500, "c2")];
        let rules = Rules {
            currency: "EUR".into(),
            discounts: vec![Discount {
                code: "SHIRTS10".into(),
                kind: DiscountKind::Percent,
                value: 10,
                category_ids: vec!["c1".into()],
                skus: vec![],
            }],
            shipping: Some(Shipping {
                code: "std".into(),
                name: "Standard".into(),
                kind: ShippingKind::Weight,
                price: 0,
                brackets: vec![Bracket { up_to: 1000, price: 490 }, Bracket { up_to: 5000, price: 990 }],
                free_over: None,
            }),
            tax: Some(Tax { label: "DE".into(), name: "VAT".into(), rate_bps: 1900 }),
            prices_include_tax: false,
            tax_shipping: true,
        };
        let q = quote(&lines, &rules);
        // Shirts 5000 − 500 = 4500; mug 1000; 1100 g → 9.90 shipping; tax 855 + 190 + 188.1→188.
        assert_eq!(q.subtotal, 6000);
        assert_eq!(q.discount_total, 500);
        assert_eq!(q.shipping_total, 990);
        assert_eq!(q.tax_total, 855 + 190 + 188);
        assert_eq!(q.total, 4500 + 1000 + 990 + 1233);
        assert_eq!(q.subtotal - q.discount_total + q.shipping_total + q.tax_total, q.total);
        assert_eq!(q.lines[0].adjustments[0].source, "code:SHIRTS10");
        assert_eq!(q.lines[0].adjustments[1].source, "tax:DE");
        // Inclusive prices: the tax is inside the price and the total does not grow.
        let inclusive = Rules { prices_include_tax: true, ..rules.clone() };
        let q = quote(&lines, &inclusive);
        assert_eq!(q.tax_total, 718 + 160 + 158); // 4500×19/119 = 718.49, 1000×19/119 = 159.66, 990×19/119 = 158.07
        assert_eq!(q.total, 4500 + 1000 + 990);
        assert_ne!(q.quote_id, quote(&lines, &rules).quote_id);
    }

    #[test]
    fn codes_price_the_same_in_any_order_and_empty_carts_ship_nothing() {
        let lines = [line("A", 10_000, 1, 100, "c")];
        let fixed =
            Discount { code: "F".into(), kind: DiscountKind::Fixed, value: 1000, category_ids: vec![], skus: vec![] };
        let pct =
            Discount { code: "P".into(), kind: DiscountKind::Percent, value: 10, category_ids: vec![], skus: vec![] };
        let a = Rules { discounts: vec![fixed.clone(), pct.clone()], ..Rules::default() };
        let b = Rules { discounts: vec![pct, fixed], ..Rules::default() };
        assert_eq!(quote(&lines, &a), quote(&lines, &b));
        assert_eq!(quote(&lines, &a).total, 10_000 - 1000 - 1000, "10 % first, then the fixed amount");
        // Three 5-cent lines at 10 % off: 1.5 cents rounds to 2 for the cart, not 1 per line.
        let small = [line("X", 5, 1, 0, "c"), line("Y", 5, 1, 0, "c"), line("Z", 5, 1, 0, "c")];
        let ten = Rules {
            discounts: vec![Discount {
                code: "T".into(),
                kind: DiscountKind::Percent,
                value: 10,
                category_ids: vec![],
                skus: vec![],
            }],
            ..Rules::default()
        };
        assert_eq!(quote(&small, &ten).discount_total, 2);
        // Past the last weight bracket the method's price applies; an empty cart ships nothing.
        let heavy = Rules {
            shipping: Some(Shipping {
                code: "w".into(),
                name: "W".into(),
                kind: ShippingKind::Weight,
                price: 4900,
                brackets: vec![Bracket { up_to: 1000, price: 490 }],
                free_over: None,
            }),
            ..Rules::default()
        };
        assert_eq!(quote(&[line("H", 100, 20, 100, "c")], &heavy).shipping_total, 4900);
        assert_eq!(quote(&[], &heavy).shipping_total, 0);
    }

    #[test]
    fn fixed_discounts_spread_and_free_shipping_zeroes_shipping() {
        let lines = [line("A", 333, 1, 0, "c"), line("B", 667, 1, 0, "c")];
        let rules = Rules {
            currency: "USD".into(),
            discounts: vec![
                Discount {
                    code: "FIVE".into(),
                    kind: DiscountKind::Fixed,
                    value: 500,
                    category_ids: vec![],
                    skus: vec![],
                },
                Discount {
                    code: "SHIPFREE".into(),
                    kind: DiscountKind::FreeShipping,
                    value: 0,
                    category_ids: vec![],
                    skus: vec![],
                },
            ],
            shipping: Some(Shipping {
                code: "flat".into(),
                name: "Flat".into(),
                kind: ShippingKind::Flat,
                price: 700,
                brackets: vec![],
                free_over: None,
            }),
            ..Rules::default()
        };
        let q = quote(&lines, &rules);
        let offs: Vec<i64> = q.lines.iter().map(|l| l.adjustments[0].amount).collect();
        assert_eq!(offs, [-167, -333], "166.5 and 333.5: the remainder cent goes to the first line");
        // Shipping is shown at its price and taken off as a discount: the totals still add up.
        assert_eq!((q.shipping_total, q.discount_total, q.total), (700, 500 + 700, 500));
        assert_eq!(q.subtotal - q.discount_total + q.shipping_total + q.tax_total, q.total);
        // A fixed discount larger than the cart costs it all, never less than zero.
        let big = Rules {
            discounts: vec![Discount {
                code: "ALL".into(),
                kind: DiscountKind::Fixed,
                value: 5000,
                category_ids: vec![],
                skus: vec![],
            }],
            ..Rules::default()
        };
        assert_eq!(quote(&lines, &big).total, 0);
    }
}
