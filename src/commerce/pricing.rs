//! The pricing pipeline: a quote is a pure function of the cart's lines (with their catalog rows), the discount
//! codes applied, the chosen shipping method, the tax rate of the destination and the store's tax flags.
//!
//! Steps, in order:
//! 1. Base: each line's unit price × quantity.
//! 2. Discount codes: percent (of the eligible lines), fixed (spread over the eligible lines in proportion, the
//!    remainder cent by cent from the first line), free shipping (applied after step 4).
//! 3. Pricing plugins' adjustments (`quote_with`; the calls happen in `commerce::quoting`), each plugin's answer
//!    checked whole: a line or order discount lowers what the lines cost (an order discount spread like a fixed
//!    code), fees are added untaxed, a plugin's tax is added as it is, and shipping changes wait for step 4.
//! 4. Shipping: the chosen method's flat price, weight or subtotal bracket, free over an amount; then the plugins'
//!    shipping surcharges and discounts (a discount takes off at most what shipping costs).
//! 5. Tax: the destination's rate on the discounted lines (and on shipping when `tax_shipping`), each tax line
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
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, ToSchema)]
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
    /// Fees added by pricing plugins (not taxed).
    pub fee_total: i64,
    /// What the customer pays: subtotal − discounts + shipping + fees (+ tax unless prices include it; a
    /// plugin's tax is always added).
    pub total: i64,
    /// Whether a fail-open pricing plugin was left out (it failed or answered something invalid).
    pub degraded: bool,
    /// The plugins left out, as `{name}@v{n}`.
    pub degraded_plugins: Vec<String>,
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

/// What a pricing plugin may target (the WIT `target`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PluginTarget {
    Order,
    Line(u32),
    Shipping,
}

/// What kind of change a pricing plugin makes (the WIT `adjustment-kind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PluginKind {
    Discount,
    Tax,
    Shipping,
    Fee,
}

/// One adjustment as a pricing plugin returns it, or as the next plugin is shown it (`applied`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginAdjustment {
    pub target: PluginTarget,
    pub kind: PluginKind,
    pub amount: i64,
    pub label: String,
}

/// What one pricing plugin answered, with the source its adjustments are listed under (`plugin:{name}@v{n}`).
#[derive(Debug, Clone)]
pub struct PluginOutput {
    pub source: String,
    pub adjustments: Vec<PluginAdjustment>,
}

/// The largest total a quote may have: 100 lines × 999 × `money::MAX_AMOUNT` stays below it, plugin amounts that
/// would pass it are refused.
pub const MAX_TOTAL: i64 = i64::MAX / 4;

/// Most adjustments one plugin may return, and the longest label (in characters).
pub const MAX_PLUGIN_ADJUSTMENTS: usize = 100;
pub const MAX_LABEL_CHARS: usize = 200;

/// Prices `lines` under `rules` (no plugin).
pub fn quote(lines: &[PricedLine], rules: &Rules) -> Quote {
    let pass = Pass::new(lines, rules);
    // Without plugin adjustments nothing can break a rule: amounts are checked where they are stored.
    let mut quote = pass.finish().unwrap_or_else(|why| unreachable!("a quote without plugins was refused: {why}"));
    quote.quote_id = quote_id(&quote);
    quote
}

/// Prices `lines` under `rules` with the adjustments of the pricing plugins that ran, in order. `Err((k, why))`
/// when plugin `k`'s answer breaks a rule (a positive discount, a negative fee, tax or shipping, a line out of
/// range or below zero, an amount beyond `money::MAX_AMOUNT`, totals out of range, too many adjustments, a long
/// label): the caller leaves that plugin out
/// (fail open) or refuses to price (fail closed).
pub fn quote_with(lines: &[PricedLine], rules: &Rules, plugins: &[PluginOutput]) -> Result<Quote, (usize, String)> {
    let mut quote = quote_unnamed(lines, rules, plugins)?;
    quote.quote_id = quote_id(&quote);
    Ok(quote)
}

/// `quote_with` without the `quote_id` (a hash of the whole quote): for checking an answer, or for a caller that
/// changes the quote before naming it.
pub fn quote_unnamed(lines: &[PricedLine], rules: &Rules, plugins: &[PluginOutput]) -> Result<Quote, (usize, String)> {
    let mut pass = Pass::new(lines, rules);
    for (k, plugin) in plugins.iter().enumerate() {
        pass.apply_plugin(plugin).map_err(|why| (k, why))?;
    }
    // What only the totals can tell (a sum out of range) is the last plugin's doing: the ones before it were
    // accepted without it.
    pass.finish().map_err(|why| (plugins.len().saturating_sub(1), why))
}

/// What the next pricing plugin is shown: the subtotal and every adjustment so far (discount codes, then the
/// plugins before it). `plugins` must be answers `quote_with` accepted.
pub fn applied_so_far(lines: &[PricedLine], rules: &Rules, plugins: &[PluginOutput]) -> (i64, Vec<PluginAdjustment>) {
    let mut pass = Pass::new(lines, rules);
    for plugin in plugins {
        let _ = pass.apply_plugin(plugin);
    }
    (pass.subtotal, pass.applied)
}

/// A quote being built: steps 1 and 2 in `new`, plugins (step 3) in `apply_plugin`, shipping and tax (4 and 5)
/// in `finish`.
struct Pass<'a> {
    lines: &'a [PricedLine],
    rules: &'a Rules,
    out: Vec<QuoteLine>,
    subtotal: i64,
    /// What each line costs after the discounts so far.
    net: Vec<i64>,
    order_adjustments: Vec<Adjustment>,
    free_shipping: Option<String>,
    /// Plugin fees (not taxed) and plugin taxes (added as they are).
    fees: i64,
    plugin_tax: i64,
    /// Plugin adjustments of shipping, applied once shipping is priced.
    shipping_changes: Vec<(PluginAdjustment, String)>,
    /// Every adjustment so far, as a plugin is shown it.
    applied: Vec<PluginAdjustment>,
}

impl<'a> Pass<'a> {
    fn new(lines: &'a [PricedLine], rules: &'a Rules) -> Pass<'a> {
        let out: Vec<QuoteLine> = lines
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
        let net: Vec<i64> = out.iter().map(|l| l.subtotal).collect();
        let mut pass = Pass {
            lines,
            rules,
            out,
            subtotal,
            net,
            order_adjustments: Vec::new(),
            free_shipping: None,
            fees: 0,
            plugin_tax: 0,
            shipping_changes: Vec::new(),
            applied: Vec::new(),
        };
        pass.codes();
        pass
    }

    /// Step 2, discount codes: percent codes first, then fixed, then free shipping (then by code), so the same
    /// codes price the same whatever order they were applied in; each works on what the lines cost after the
    /// codes before it.
    fn codes(&mut self) {
        let mut discounts: Vec<&Discount> = self.rules.discounts.iter().collect();
        discounts.sort_by_key(|d| (d.kind as u8, d.code.clone()));
        for d in discounts {
            let source = format!("code:{}", d.code);
            let eligible: Vec<usize> = (0..self.lines.len()).filter(|i| d.applies_to(&self.lines[*i])).collect();
            let base: i64 = eligible.iter().map(|&i| self.net[i]).sum();
            let (off_total, label) = match d.kind {
                // The percent of the eligible lines together, spread over them (no per-line rounding drift).
                DiscountKind::Percent => {
                    (mul_div_round(base, d.value.clamp(0, 100), 100), format!("{} % off ({})", d.value, d.code))
                }
                DiscountKind::Fixed => (d.value.clamp(0, base), format!("{} off", d.code)),
                DiscountKind::FreeShipping => {
                    self.free_shipping = Some(d.code.clone());
                    continue;
                }
            };
            for (i, share) in spread(&eligible, &self.net, off_total) {
                self.discount_line(i, share, &label, &source);
            }
        }
    }

    fn discount_line(&mut self, i: usize, off: i64, label: &str, source: &str) {
        self.net[i] -= off;
        let target = PluginTarget::Line(i as u32);
        self.applied.push(PluginAdjustment { target, kind: PluginKind::Discount, amount: -off, label: label.into() });
        self.out[i].adjustments.push(adjustment("discount", format!("line({i})"), -off, label.into(), source.into()));
    }

    /// 3. One plugin's adjustments, all or none: every one is checked before any applies.
    fn apply_plugin(&mut self, plugin: &PluginOutput) -> Result<(), String> {
        let list = &plugin.adjustments;
        if list.len() > MAX_PLUGIN_ADJUSTMENTS {
            return Err(format!("{} adjustments (at most {MAX_PLUGIN_ADJUSTMENTS})", list.len()));
        }
        let mut net = self.net.clone();
        for (n, a) in list.iter().enumerate() {
            let what = format!("adjustment {n}");
            if a.label.chars().count() > MAX_LABEL_CHARS {
                return Err(format!("{what}: the label is longer than {MAX_LABEL_CHARS} characters"));
            }
            if a.amount.unsigned_abs() > super::money::MAX_AMOUNT.unsigned_abs() {
                return Err(format!("{what}: the amount is beyond ±{}", super::money::MAX_AMOUNT));
            }
            match a.kind {
                PluginKind::Discount if a.amount > 0 => {
                    return Err(format!("{what}: a discount must be zero or negative, not {}", a.amount));
                }
                PluginKind::Tax | PluginKind::Shipping | PluginKind::Fee if a.amount < 0 => {
                    return Err(format!("{what}: tax, shipping and fees must be zero or positive, not {}", a.amount));
                }
                PluginKind::Shipping if a.target != PluginTarget::Shipping => {
                    return Err(format!("{what}: a shipping adjustment must target shipping"));
                }
                _ => {}
            }
            match (a.target, a.kind) {
                (PluginTarget::Line(i), _) if i as usize >= self.lines.len() => {
                    return Err(format!("{what}: line({i}) is out of range (the cart has {} lines)", self.lines.len()));
                }
                (PluginTarget::Line(i), PluginKind::Discount) => {
                    let i = i as usize;
                    net[i] += a.amount;
                    if net[i] < 0 {
                        return Err(format!("{what}: line({i}) would cost less than zero"));
                    }
                }
                (PluginTarget::Order, PluginKind::Discount) => {
                    if -a.amount > net.iter().sum::<i64>() {
                        return Err(format!("{what}: the order would cost less than zero"));
                    }
                    let all: Vec<usize> = (0..net.len()).collect();
                    for (i, share) in spread(&all, &net.clone(), -a.amount) {
                        net[i] -= share;
                    }
                }
                _ => {}
            }
        }
        for a in list {
            self.applied.push(a.clone());
            match a.kind {
                PluginKind::Fee => self.fees = self.fees.saturating_add(a.amount),
                PluginKind::Tax => self.plugin_tax = self.plugin_tax.saturating_add(a.amount),
                _ => {}
            }
            match (a.target, a.kind) {
                (PluginTarget::Shipping, PluginKind::Discount | PluginKind::Shipping) => {
                    self.shipping_changes.push((a.clone(), plugin.source.clone()));
                }
                (PluginTarget::Line(i), kind) => {
                    let i = i as usize;
                    if kind == PluginKind::Discount {
                        self.net[i] += a.amount;
                    }
                    let adj = adjustment(
                        kind_str(kind),
                        format!("line({i})"),
                        a.amount,
                        a.label.clone(),
                        plugin.source.clone(),
                    );
                    self.out[i].adjustments.push(adj);
                }
                (target, kind) => {
                    if kind == PluginKind::Discount {
                        let all: Vec<usize> = (0..self.net.len()).collect();
                        for (i, share) in spread(&all, &self.net.clone(), -a.amount) {
                            self.net[i] -= share;
                        }
                    }
                    let target = if target == PluginTarget::Shipping { "shipping" } else { "order" };
                    let adj =
                        adjustment(kind_str(kind), target.into(), a.amount, a.label.clone(), plugin.source.clone());
                    self.order_adjustments.push(adj);
                }
            }
        }
        Ok(())
    }

    /// 4. Shipping, then the plugins' shipping changes; 5. tax; then the totals.
    fn finish(mut self) -> Result<Quote, String> {
        let (lines, rules) = (self.lines, self.rules);
        let discounted: i64 = self.net.iter().sum();
        // Nothing to ship, nothing to pay.
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
            self.order_adjustments.push(adjustment(
                "shipping",
                "shipping".into(),
                shipping_price,
                s.name.clone(),
                source,
            ));
            if let Some(code) = self.free_shipping.clone()
                && shipping_price > 0
            {
                shipping_off = shipping_price;
                let label = format!("free shipping ({code})");
                self.order_adjustments.push(adjustment(
                    "discount",
                    "shipping".into(),
                    -shipping_off,
                    label,
                    format!("code:{code}"),
                ));
            }
        }
        // A plugin's surcharge adds to shipping; its discount takes off at most what shipping still costs (a
        // plugin does not see the shipping price, as a free-shipping code does not).
        for (a, source) in std::mem::take(&mut self.shipping_changes) {
            if a.kind == PluginKind::Shipping {
                shipping_price = shipping_price.saturating_add(a.amount);
                self.order_adjustments.push(adjustment("shipping", "shipping".into(), a.amount, a.label, source));
            } else {
                let off = (-a.amount).min(shipping_price - shipping_off);
                if off > 0 {
                    shipping_off += off;
                    self.order_adjustments.push(adjustment("discount", "shipping".into(), -off, a.label, source));
                }
            }
        }
        let shipping_net = shipping_price - shipping_off;

        // 5. Tax. With prices that include it, the adjustments are `tax_included` (shown, not added).
        let mut tax_total: i64 = 0;
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
            for (i, line) in self.out.iter_mut().enumerate() {
                let tax = tax_of(self.net[i]);
                if tax != 0 {
                    tax_total = tax_total.saturating_add(tax);
                    line.adjustments.push(adjustment(kind, format!("line({i})"), tax, t.name.clone(), source.clone()));
                }
            }
            if rules.tax_shipping && shipping_net > 0 {
                let tax = tax_of(shipping_net);
                tax_total = tax_total.saturating_add(tax);
                self.order_adjustments.push(adjustment(kind, "shipping".into(), tax, t.name.clone(), source));
            }
        }
        let added_tax = if rules.prices_include_tax { 0 } else { tax_total };
        let tax_total = tax_total.saturating_add(self.plugin_tax);

        // subtotal − discount_total + shipping_total + fee_total (+ tax_total unless included) = total.
        let discount_total = self.subtotal - discounted + shipping_off;
        // Every part is at least zero; summed wide, a total past `MAX_TOTAL` (only plugin amounts get there) is
        // refused rather than wrapped.
        let wide = [discounted, shipping_net, added_tax, self.plugin_tax, self.fees, tax_total, shipping_price];
        let total = i128::from(discounted)
            + i128::from(shipping_net)
            + i128::from(added_tax)
            + i128::from(self.plugin_tax)
            + i128::from(self.fees);
        if total > i128::from(MAX_TOTAL) || wide.iter().any(|part| *part < 0 || *part > MAX_TOTAL) {
            return Err(format!("the quote's totals would pass {MAX_TOTAL}"));
        }
        let total = total as i64;
        let quote = Quote {
            currency: rules.currency.clone(),
            lines: self.out,
            adjustments: self.order_adjustments,
            subtotal: self.subtotal,
            discount_total,
            shipping_total: shipping_price,
            tax_total,
            fee_total: self.fees,
            total,
            degraded: false,
            degraded_plugins: Vec::new(),
            quote_id: String::new(),
        };
        Ok(quote)
    }
}

fn kind_str(kind: PluginKind) -> &'static str {
    match kind {
        PluginKind::Discount => "discount",
        PluginKind::Tax => "tax",
        PluginKind::Shipping => "shipping",
        PluginKind::Fee => "fee",
    }
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
#[path = "pricing_tests.rs"]
mod tests;
