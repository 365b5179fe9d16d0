//! Unit tests of the pricing pipeline (`pricing.rs`): hand-computed quotes, rounding, code order, and the checks
//! of pricing plugins' answers.

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
    assert_eq!(quote_with(&lines, &rules, &[]), Ok(q.clone()));
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
    let pct = Discount { code: "P".into(), kind: DiscountKind::Percent, value: 10, category_ids: vec![], skus: vec![] };
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
            Discount { code: "FIVE".into(), kind: DiscountKind::Fixed, value: 500, category_ids: vec![], skus: vec![] },
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

fn adj(target: PluginTarget, kind: PluginKind, amount: i64) -> PluginAdjustment {
    PluginAdjustment { target, kind, amount, label: "x".into() }
}

#[test]
fn plugin_adjustments_apply_in_their_step_and_the_totals_add_up() {
    let lines = [line("A", 1000, 2, 100, "c"), line("B", 500, 1, 100, "c")];
    let rules = Rules {
        currency: "EUR".into(),
        shipping: Some(Shipping {
            code: "s".into(),
            name: "S".into(),
            kind: ShippingKind::Flat,
            price: 400,
            brackets: vec![],
            free_over: None,
        }),
        tax: Some(Tax { label: "DE".into(), name: "VAT".into(), rate_bps: 1000 }),
        tax_shipping: true,
        ..Rules::default()
    };
    let plugin = PluginOutput {
        source: "plugin:p@v1".into(),
        adjustments: vec![
            adj(PluginTarget::Line(0), PluginKind::Discount, -200),
            adj(PluginTarget::Order, PluginKind::Discount, -300),
            adj(PluginTarget::Order, PluginKind::Fee, 99),
            adj(PluginTarget::Shipping, PluginKind::Shipping, 100),
            adj(PluginTarget::Shipping, PluginKind::Discount, -1000),
            adj(PluginTarget::Order, PluginKind::Tax, 7),
        ],
    };
    let q = quote_with(&lines, &rules, std::slice::from_ref(&plugin)).unwrap();
    // Lines 2500 − 200 − 300 = 2000 (the order discount spread over 1800:500 → 234.8 and 65.2, so 234 + 65
    // and the remainder cent to the first: 235 and 65); shipping 400 + 100, all taken off (capped at what it
    // costs); 10 % tax on 1565 (156.5 → 157) and 435 (43.5 → 44); plus the plugin's 7.
    assert_eq!(q.subtotal, 2500);
    assert_eq!(q.discount_total, 500 + 500);
    assert_eq!((q.shipping_total, q.fee_total), (500, 99));
    assert_eq!(q.tax_total, 157 + 44 + 7);
    assert_eq!(q.total, 2000 + 99 + 208);
    assert_eq!(q.subtotal - q.discount_total + q.shipping_total + q.fee_total + q.tax_total, q.total);
    assert!(q.lines[0].adjustments.iter().any(|a| a.source == "plugin:p@v1" && a.amount == -200));
    // The next plugin is shown what came before it.
    let (subtotal, applied) = applied_so_far(&lines, &rules, &[plugin]);
    assert_eq!((subtotal, applied.len()), (2500, 6));
}

#[test]
fn a_plugin_answer_that_breaks_a_rule_is_refused_whole() {
    let lines = [line("A", 1000, 1, 0, "c")];
    let refused = |adjustments: Vec<PluginAdjustment>| {
        let plugin = PluginOutput { source: "plugin:p@v1".into(), adjustments };
        quote_with(&lines, &Rules::default(), &[plugin]).unwrap_err().1
    };
    assert!(refused(vec![adj(PluginTarget::Order, PluginKind::Discount, 1)]).contains("zero or negative"));
    // Amounts that would wrap the totals are refused, never summed.
    assert!(refused(vec![adj(PluginTarget::Order, PluginKind::Fee, i64::MAX)]).contains("beyond"));
    assert!(refused(vec![adj(PluginTarget::Order, PluginKind::Discount, i64::MIN)]).contains("beyond"));
    assert!(refused(vec![adj(PluginTarget::Shipping, PluginKind::Shipping, i64::MAX)]).contains("beyond"));
    assert!(refused(vec![adj(PluginTarget::Order, PluginKind::Tax, -1)]).contains("zero or positive"));
    assert!(refused(vec![adj(PluginTarget::Order, PluginKind::Fee, -1)]).contains("zero or positive"));
    assert!(refused(vec![adj(PluginTarget::Line(1), PluginKind::Fee, 1)]).contains("out of range"));
    assert!(refused(vec![adj(PluginTarget::Line(0), PluginKind::Shipping, 1)]).contains("target shipping"));
    let below = vec![
        adj(PluginTarget::Line(0), PluginKind::Discount, -600),
        adj(PluginTarget::Line(0), PluginKind::Discount, -600),
    ];
    assert!(refused(below).contains("less than zero"));
    assert!(refused(vec![adj(PluginTarget::Order, PluginKind::Discount, -1001)]).contains("less than zero"));
    let many = vec![adj(PluginTarget::Order, PluginKind::Fee, 0); MAX_PLUGIN_ADJUSTMENTS + 1];
    assert!(refused(many).contains("adjustments"));
    let long =
        PluginAdjustment { label: "é".repeat(MAX_LABEL_CHARS + 1), ..adj(PluginTarget::Order, PluginKind::Fee, 1) };
    assert!(refused(vec![long]).contains("label"));
    let fine = PluginAdjustment { label: "é".repeat(MAX_LABEL_CHARS), ..adj(PluginTarget::Order, PluginKind::Fee, 1) };
    let plugin = PluginOutput { source: "plugin:p@v1".into(), adjustments: vec![fine] };
    assert_eq!(quote_with(&lines, &Rules::default(), &[plugin]).unwrap().total, 1001);
}
