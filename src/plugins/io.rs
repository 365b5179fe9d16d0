//! JSON at the edges of a call: dry-run input mirroring the WIT records with snake_case field names, output as
//! the API shows it, sample inputs per function, and how a login decision becomes `Effects`.

use serde::Deserialize;
use serde_json::{Value, json};

use super::Effects;
use super::runtime::{
    Adjustment, AdjustmentKind, Cart, Decision, Function, Input, Message, Output, Request, Target, User,
};
use crate::error::{Error, Result};

#[derive(Deserialize)]
struct LoginArgs {
    user: User,
    request: Request,
}

#[derive(Deserialize)]
struct RenderArgs {
    message: Message,
}

#[derive(Deserialize)]
struct PriceArgs {
    cart: Cart,
}

/// Reads a dry-run input for `function`.
pub fn parse_input(function: Function, input: Value) -> Result<Input> {
    let bad = |e: serde_json::Error| {
        Error::validation(format!("input does not match the {} arguments: {e}", function.as_str()))
    };
    Ok(match function {
        Function::PreRegistration | Function::PostLogin => {
            let args: LoginArgs = serde_json::from_value(input).map_err(bad)?;
            if function == Function::PreRegistration {
                Input::PreRegistration(args.user, args.request)
            } else {
                Input::PostLogin(args.user, args.request)
            }
        }
        Function::Render => Input::Render(serde_json::from_value::<RenderArgs>(input).map_err(bad)?.message),
        Function::Price => Input::Price(serde_json::from_value::<PriceArgs>(input).map_err(bad)?.cart),
    })
}

/// A sample input per function, prefilled in the dry-run form.
pub fn sample(function: Function) -> Value {
    let request = json!({"ip": "203.0.113.7", "user_agent": "Mozilla/5.0", "client_id": null});
    match function {
        Function::PreRegistration => json!({
            "user": {"id": "", "email": "new.user@example.com", "email_verified": false, "roles": [],
                     "fields": [{"key": "plan", "value": "\"pro\""}]},
            "request": request,
        }),
        Function::PostLogin => json!({
            "user": {"id": "01890000-0000-7000-8000-000000000000", "email": "user@example.com",
                     "email_verified": true, "roles": ["member"], "fields": [{"key": "plan", "value": "\"pro\""}]},
            "request": request,
        }),
        Function::Render => json!({"message": {
            "template": "welcome", "locale": "en", "to": "user@example.com", "subject": "Welcome to Acme",
            "html": "<p>Welcome!</p>", "text": "Welcome!",
            "data": [{"key": "name", "value": "\"Ada\""}, {"key": "login_url", "value": "\"https://example.com/login\""}],
        }}),
        Function::Price => json!({"cart": {
            "currency": "EUR",
            "lines": [{"sku": "TSHIRT-M", "quantity": 2, "unit_price": 1999, "categories": ["apparel"]}],
            "discount_codes": ["WELCOME10"], "customer_id": null, "customer_roles": [], "shipping_country": "DE",
            "subtotal": 3998,
            "applied": [{"target": {"Line": 0}, "kind": "Discount", "amount": -400, "label": "10 % off (WELCOME10)"}],
        }}),
    }
}

fn message_json(m: &Message) -> Value {
    serde_json::to_value(m).unwrap_or(Value::Null)
}

fn adjustment_json(a: &Adjustment) -> Value {
    let target = match a.target {
        Target::Order => json!({"type": "order"}),
        Target::Line(i) => json!({"type": "line", "index": i}),
        Target::Shipping => json!({"type": "shipping"}),
    };
    let kind = match a.kind {
        AdjustmentKind::Discount => "discount",
        AdjustmentKind::Tax => "tax",
        AdjustmentKind::Shipping => "shipping",
        AdjustmentKind::Fee => "fee",
    };
    json!({"target": target, "kind": kind, "amount": a.amount, "label": a.label})
}

/// The output as the dry-run answer shows it.
pub fn output_json(output: &Output) -> Value {
    match output {
        Output::Decision(Decision::Allow) => json!({"decision": "allow"}),
        Output::Decision(Decision::Deny(reason)) => json!({"decision": "deny", "reason": reason}),
        Output::Decision(Decision::Modify(c)) => json!({"decision": "modify", "changes": {
            "claims": c.claims.iter().map(|f| json!({"key": f.key, "value": f.value})).collect::<Vec<_>>(),
            "require_mfa": c.require_mfa,
            "fields": c.fields.iter().map(|f| json!({"key": f.key, "value": f.value})).collect::<Vec<_>>(),
        }}),
        Output::Render(Ok(m)) => json!({"ok": message_json(m)}),
        Output::Render(Err(e)) | Output::Price(Err(e)) => json!({"err": e}),
        Output::Price(Ok(list)) => json!({"ok": list.iter().map(adjustment_json).collect::<Vec<_>>()}),
    }
}

/// Checks a login decision and folds it into `effects`: `Ok(None)` goes on, `Ok(Some(reason))` is a refusal,
/// `Err` is output the host refuses (a claim or field value that is not JSON, an empty key).
pub fn apply_decision(
    decision: Decision,
    function: Function,
    effects: &mut Effects,
) -> std::result::Result<Option<String>, String> {
    match decision {
        Decision::Allow => Ok(None),
        Decision::Deny(reason) => {
            let reason = reason.trim();
            let mut reason =
                if reason.is_empty() { "refused by a policy of this site".to_owned() } else { reason.to_owned() };
            if reason.len() > 300 {
                let mut cut = 300;
                while !reason.is_char_boundary(cut) {
                    cut -= 1;
                }
                reason.truncate(cut);
            }
            Ok(Some(reason))
        }
        Decision::Modify(changes) => {
            for f in &changes.claims {
                let value = json_value(&f.key, &f.value, "claim")?;
                // Never stored, so no token can carry it whatever minting does later.
                if crate::oidc::settings::is_protected_claim(&f.key) {
                    tracing::warn!(claim = %f.key, ?function, "a plugin claim was dropped: the server sets this claim");
                    continue;
                }
                effects.claims.insert(f.key.clone(), value);
            }
            if function == Function::PreRegistration {
                for f in &changes.fields {
                    effects.fields.insert(f.key.clone(), json_value(&f.key, &f.value, "field")?);
                }
            }
            effects.require_mfa |= changes.require_mfa;
            Ok(None)
        }
    }
}

fn json_value(key: &str, text: &str, what: &str) -> std::result::Result<Value, String> {
    if key.is_empty() || key.len() > 100 {
        return Err(format!("a {what} name must be 1 to 100 bytes"));
    }
    serde_json::from_str(text).map_err(|e| format!("{what} {key:?} is not JSON text: {e}"))
}

/// Turns a JSON object of custom fields into WIT fields (values as JSON text).
pub fn fields_of(value: &Value) -> Vec<super::runtime::Field> {
    value
        .as_object()
        .map(|o| o.iter().map(|(k, v)| super::runtime::Field { key: k.clone(), value: v.to_string() }).collect())
        .unwrap_or_default()
}
