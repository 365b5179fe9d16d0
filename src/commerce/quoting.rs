//! Pricing with the tenant's `pricing` plugins (step 3 of `pricing`): every active pricing plugin, in priority
//! order, is called once per quote with every line, the subtotal and the adjustments so far; its answer is
//! checked whole by `pricing::quote_with` before it counts.
//!
//! A plugin that traps, times out, answers `err` or answers something the pipeline refuses follows its failure
//! policy: `fail_open` prices without it and marks the quote `degraded` (naming it), `fail_closed` refuses to
//! price (503 `pricing_unavailable`). Failures are counted in the plugin's stats and metrics and logged; they are
//! not audited (a busy store would fill the audit log with one entry per quote).
//!
//! A tenant with no active pricing plugin never gets here past one cache lookup (`finish`). A plugin has no clock,
//! randomness or I/O, so its answer to the same input (and version and config) is kept and reused
//! (`Store::pricing_cache`): reading a cart again calls no plugin; only a change of the cart, the catalog or the
//! plugin does.

use std::sync::Arc;

use serde_json::Value;
use sha2::{Digest, Sha256};

use super::carts::{CartView, Draft, QuoteInput};
use super::pricing::{self, PluginAdjustment, PluginKind, PluginOutput, PluginTarget, Quote};
use crate::app::App;
use crate::error::{Error, Result};
use crate::plugins::World;
use crate::plugins::records::{Active, FailurePolicy};
use crate::plugins::runtime::{self as rt, Input, Outcome, Output};
use crate::tenants::TenantSlug;

/// The cart's view with its quote priced by the pricing plugins too (unchanged when there are none, or when the
/// cart is empty: no plugin prices nothing).
pub async fn finish(app: &App, slug: &TenantSlug, draft: Draft) -> Result<CartView> {
    let Draft { mut view, input } = draft;
    let active = match input.lines.is_empty() {
        true => Vec::new(),
        false => app.plugins.active_of(app, slug, World::Pricing).await?,
    };
    view.quote = match active.is_empty() {
        true => pricing::quote(&input.lines, &input.rules),
        false => quote(app, slug, &input, &active).await?,
    };
    Ok(view)
}

/// One plugin's part in a quote, for the admin sandbox.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct PluginRun {
    /// `{name}@v{n}`.
    pub plugin: String,
    /// `Outcome::as_str`, or `invalid_output` for an answer the pipeline refused.
    pub outcome: String,
    pub error: Option<String>,
    pub duration_us: u64,
    /// Whether its adjustments are in the quote.
    pub applied: bool,
    /// Whether the answer came from the cache of identical calls (no call was made).
    pub cached: bool,
}

/// What a pricing plugin answered, as the cache of identical calls keeps it: its adjustments before they are
/// checked (the check depends on the plugins before it, so it runs on every use), or a failure that the same
/// input always gives (a trap, an `err` answer).
#[derive(Debug)]
pub enum Answer {
    Adjustments(Vec<PluginAdjustment>),
    Failed { outcome: &'static str, error: String },
}

impl Answer {
    /// Approximate bytes, for the cache's bound.
    pub fn weight(&self) -> u32 {
        let bytes = match self {
            Answer::Adjustments(list) => list.iter().map(|a| 48 + a.label.len()).sum::<usize>(),
            Answer::Failed { error, .. } => error.len(),
        };
        u32::try_from(bytes + 64).unwrap_or(u32::MAX)
    }
}

/// A priced quote with what each plugin did; `refused` says why a fail-closed plugin would have refused it (the
/// sandbox prices on to show the rest).
pub struct Traced {
    pub quote: Quote,
    pub runs: Vec<PluginRun>,
    pub refused: Option<String>,
}

/// Prices `input` with the `active` pricing plugins; a failing fail-closed plugin refuses the quote.
pub async fn quote(app: &App, slug: &TenantSlug, input: &QuoteInput, active: &[Active]) -> Result<Quote> {
    let traced = quote_traced(app, slug, input, active, false).await?;
    Ok(traced.quote)
}

/// `quote`, with what each plugin did. With `keep_going`, a failing fail-closed plugin is left out like a fail-open
/// one and named in `refused`, instead of refusing.
pub async fn quote_traced(
    app: &App,
    slug: &TenantSlug,
    input: &QuoteInput,
    active: &[Active],
    keep_going: bool,
) -> Result<Traced> {
    let mut accepted: Vec<PluginOutput> = Vec::new();
    let mut degraded = Vec::new();
    let mut runs = Vec::new();
    let mut refused = None;
    let memo = app.store.pricing_cache.as_ref();
    for plugin in active {
        let name = format!("{}@v{}", plugin.settings.name, plugin.version);
        let (subtotal, applied) = pricing::applied_so_far(&input.lines, &input.rules, &accepted);
        let cart = wit_cart(input, subtotal, &applied);
        let key = memo.map(|_| memo_key(slug, plugin, &cart));
        // Accepts `list` when the pipeline takes it after the plugins accepted so far.
        let check = |list: &[PluginAdjustment]| -> std::result::Result<PluginOutput, String> {
            let output = PluginOutput { source: format!("plugin:{name}"), adjustments: list.to_vec() };
            if list.is_empty() {
                // Nothing to apply, nothing that could break a rule.
                return Ok(output);
            }
            let mut trial = accepted.clone();
            trial.push(output.clone());
            pricing::quote_unnamed(&input.lines, &input.rules, &trial).map_err(|(_, why)| why)?;
            Ok(output)
        };
        let mut candidate = None;
        let cached = memo.zip(key.as_ref()).and_then(|(m, key)| m.get(key));
        let run = match cached {
            Some(answer) => {
                let (outcome, error) = match &*answer {
                    Answer::Adjustments(list) => match check(list) {
                        Ok(output) => {
                            candidate = Some(output);
                            ("ok", None)
                        }
                        Err(why) => ("invalid_output", Some(why)),
                    },
                    Answer::Failed { outcome, error } => (*outcome, Some(error.clone())),
                };
                PluginRun {
                    plugin: name.clone(),
                    outcome: outcome.into(),
                    error,
                    duration_us: 0,
                    applied: false,
                    cached: true,
                }
            }
            None => {
                let mut raw = None;
                let report = app
                    .plugins
                    .call_checked(
                        app,
                        slug,
                        &plugin.settings,
                        plugin.version,
                        &plugin.sha256,
                        Input::Price(cart),
                        |out| {
                            let list: Vec<PluginAdjustment> = match out {
                                Output::Price(Ok(list)) => list.iter().map(from_wit).collect(),
                                Output::Price(Err(reason)) => {
                                    let error = format!("the plugin answered err: {reason}");
                                    raw = Some(Answer::Failed { outcome: "invalid_output", error: error.clone() });
                                    return Err(error);
                                }
                                _ => return Err("not a pricing answer".into()),
                            };
                            let output = check(&list);
                            raw = Some(Answer::Adjustments(list));
                            candidate = Some(output?);
                            Ok(())
                        },
                    )
                    .await;
                if report.outcome == Outcome::Trap {
                    let error = report.error.clone().unwrap_or_default();
                    raw = Some(Answer::Failed { outcome: "trap", error });
                }
                if let (Some(memo), Some(key), Some(raw)) = (memo, key, raw) {
                    memo.insert(key, Arc::new(raw));
                }
                PluginRun {
                    plugin: name.clone(),
                    outcome: report.outcome.as_str().to_owned(),
                    error: report.error.clone(),
                    duration_us: report.duration.as_micros() as u64,
                    applied: false,
                    cached: false,
                }
            }
        };
        let ok = run.outcome == "ok" && candidate.is_some();
        let outcome = run.outcome.clone();
        runs.push(PluginRun { applied: ok, ..run });
        match candidate {
            Some(output) if ok => accepted.push(output),
            _ => {
                if plugin.settings.failure_policy == FailurePolicy::FailClosed {
                    // The public message names the plugin and how it failed; the details are in the log, the
                    // plugin's stats and the sandbox.
                    let why = format!("pricing plugin {name} failed ({outcome})");
                    if !keep_going {
                        return Err(Error::PricingUnavailable(why));
                    }
                    refused.get_or_insert(why);
                }
                degraded.push(name);
            }
        }
    }
    let mut quote = pricing::quote_unnamed(&input.lines, &input.rules, &accepted)
        .map_err(|(k, why)| Error::Internal(format!("an accepted pricing plugin answer ({k}) was refused: {why}")))?;
    quote.degraded = !degraded.is_empty();
    quote.degraded_plugins = degraded;
    quote.quote_id = pricing::quote_id(&quote);
    Ok(Traced { quote, runs, refused })
}

/// The cache key of one call: the tenant, the plugin's name, version, content hash and config, and the input.
fn memo_key(slug: &TenantSlug, plugin: &Active, cart: &rt::Cart) -> [u8; 32] {
    // Every field fed with its length (strings) or fixed width (numbers), so no two inputs feed the same bytes.
    let mut hash = Sha256::new();
    let mut text = |s: &str| {
        hash.update((s.len() as u64).to_le_bytes());
        hash.update(s.as_bytes());
    };
    text(slug.as_str());
    text(&plugin.settings.name);
    text(&plugin.version.to_string());
    text(&plugin.sha256);
    text(&plugin.settings.config.to_string());
    text(&cart.currency);
    for line in &cart.lines {
        text(&line.sku);
        text(&line.quantity.to_string());
        text(&line.unit_price.to_string());
        text(&line.categories.join("\u{1f}"));
    }
    text("codes");
    text(&cart.discount_codes.join("\u{1f}"));
    text(cart.customer_id.as_deref().unwrap_or("\u{0}"));
    text(&cart.customer_roles.join("\u{1f}"));
    text(cart.shipping_country.as_deref().unwrap_or("\u{0}"));
    text(&cart.subtotal.to_string());
    for a in &cart.applied {
        let target = match a.target {
            rt::Target::Order => "order".to_owned(),
            rt::Target::Line(i) => format!("line({i})"),
            rt::Target::Shipping => "shipping".to_owned(),
        };
        text(&format!("{target} {:?} {}", a.kind, a.amount));
        text(&a.label);
    }
    hash.finalize().into()
}

/// The cart record a pricing plugin is called with (contract 0.2.0; 0.1.0 plugins get it without `subtotal` and
/// `applied`).
pub fn wit_cart(input: &QuoteInput, subtotal: i64, applied: &[PluginAdjustment]) -> rt::Cart {
    rt::Cart {
        currency: input.rules.currency.clone(),
        lines: input
            .lines
            .iter()
            .map(|l| rt::Line {
                sku: l.sku.clone(),
                quantity: l.quantity,
                unit_price: l.unit_price,
                categories: l.category_ids.clone(),
            })
            .collect(),
        discount_codes: input.codes.clone(),
        customer_id: input.customer_id.clone(),
        customer_roles: input.customer_roles.clone(),
        shipping_country: input.country.clone(),
        subtotal,
        applied: applied.iter().map(to_wit).collect(),
    }
}

fn from_wit(a: &rt::Adjustment) -> PluginAdjustment {
    PluginAdjustment {
        target: match a.target {
            rt::Target::Order => PluginTarget::Order,
            rt::Target::Line(i) => PluginTarget::Line(i),
            rt::Target::Shipping => PluginTarget::Shipping,
        },
        kind: match a.kind {
            rt::AdjustmentKind::Discount => PluginKind::Discount,
            rt::AdjustmentKind::Tax => PluginKind::Tax,
            rt::AdjustmentKind::Shipping => PluginKind::Shipping,
            rt::AdjustmentKind::Fee => PluginKind::Fee,
        },
        amount: a.amount,
        label: a.label.clone(),
    }
}

fn to_wit(a: &PluginAdjustment) -> rt::Adjustment {
    rt::Adjustment {
        target: match a.target {
            PluginTarget::Order => rt::Target::Order,
            PluginTarget::Line(i) => rt::Target::Line(i),
            PluginTarget::Shipping => rt::Target::Shipping,
        },
        kind: match a.kind {
            PluginKind::Discount => rt::AdjustmentKind::Discount,
            PluginKind::Tax => rt::AdjustmentKind::Tax,
            PluginKind::Shipping => rt::AdjustmentKind::Shipping,
            PluginKind::Fee => rt::AdjustmentKind::Fee,
        },
        amount: a.amount,
        label: a.label.clone(),
    }
}

/// A real cart as a pricing plugin's dry-run input (`{"cart": …}` in `plugins::io`'s format).
pub fn dry_run_input(input: &QuoteInput) -> Value {
    let (subtotal, applied) = pricing::applied_so_far(&input.lines, &input.rules, &[]);
    serde_json::json!({ "cart": wit_cart(input, subtotal, &applied) })
}
