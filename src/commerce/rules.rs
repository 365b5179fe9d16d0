//! Store rules the pricing pipeline reads: discount codes, tax rates and shipping methods (tenant file), with
//! their checks and the admin operations on them.

use rusqlite::{Connection, OptionalExtension, Row, params};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::money;
use super::pricing::{Bracket, DiscountKind, ShippingKind};
use crate::email::outbox::TenantTx;
use crate::error::{Error, Result};

/// `POST …/discount-codes`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DiscountCode {
    /// 1-64 of A-Z, a-z, 0-9, `-`, `_`; matched case-insensitively.
    pub code: String,
    pub kind: DiscountKind,
    /// Percent as a whole number (1-100), or an amount in minor units; 0 for free shipping.
    #[serde(default)]
    pub value: i64,
    /// The eligible lines must cost at least this much (minor units).
    pub min_subtotal: Option<i64>,
    #[serde(default, with = "crate::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub starts_at: Option<i64>,
    #[serde(default, with = "crate::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub ends_at: Option<i64>,
    /// Orders that may use it in all.
    pub usage_limit: Option<i64>,
    /// Orders one customer may use it for.
    pub per_customer_limit: Option<i64>,
    /// Only lines in these categories (or with these SKUs); both empty: every line.
    #[serde(default)]
    pub category_ids: Vec<String>,
    #[serde(default)]
    pub skus: Vec<String>,
    /// Whether it may be used together with other codes (every code in a cart must be).
    #[serde(default)]
    pub combinable: bool,
    /// Orders that used it so far (read only).
    #[serde(default, skip_deserializing)]
    pub used: i64,
}

impl DiscountCode {
    fn check(&self) -> Result<()> {
        let ok = (1..=64).contains(&self.code.len())
            && self.code.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !ok {
            return Err(Error::validation("code must be 1-64 of A-Z, a-z, 0-9, '-' and '_'"));
        }
        match self.kind {
            DiscountKind::Percent if !(1..=100).contains(&self.value) => {
                return Err(Error::validation("a percent code's value is 1-100"));
            }
            DiscountKind::Fixed => money::check_amount("value", self.value)?,
            _ => {}
        }
        if let Some(min) = self.min_subtotal {
            money::check_amount("min_subtotal", min)?;
        }
        if let (Some(s), Some(e)) = (self.starts_at, self.ends_at)
            && e <= s
        {
            return Err(Error::validation("ends_at must be after starts_at"));
        }
        if self.usage_limit.is_some_and(|n| n < 1) || self.per_customer_limit.is_some_and(|n| n < 1) {
            return Err(Error::validation("usage limits are at least 1"));
        }
        if self.category_ids.len() > 100 || self.skus.len() > 1000 {
            return Err(Error::validation("a code names at most 100 categories and 1000 SKUs"));
        }
        for sku in &self.skus {
            super::catalog::check_sku(sku)?;
        }
        Ok(())
    }
}

fn kind_str(kind: DiscountKind) -> &'static str {
    match kind {
        DiscountKind::Percent => "percent",
        DiscountKind::Fixed => "fixed",
        DiscountKind::FreeShipping => "free_shipping",
    }
}

pub fn create_code(tx: &TenantTx<'_>, code: &DiscountCode, now: i64) -> Result<()> {
    code.check()?;
    let taken: bool =
        tx.query_row("SELECT EXISTS (SELECT 1 FROM discount_codes WHERE code = ?1)", [&code.code], |r| r.get(0))?;
    if taken {
        return Err(Error::Conflict(format!("discount code {} exists", code.code)));
    }
    tx.execute(
        "INSERT INTO discount_codes (code, kind, value, min_subtotal, starts_at, ends_at, usage_limit, per_customer_limit,
                                     category_ids, skus, combinable, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
        params![
            code.code,
            kind_str(code.kind),
            code.value,
            code.min_subtotal,
            code.starts_at,
            code.ends_at,
            code.usage_limit,
            code.per_customer_limit,
            super::catalog::json(&code.category_ids),
            super::catalog::json(&code.skus),
            code.combinable,
            now
        ],
    )?;
    Ok(())
}

fn code_row(r: &Row<'_>) -> rusqlite::Result<DiscountCode> {
    let kind: String = r.get(1)?;
    let list = |i: usize| -> rusqlite::Result<Vec<String>> {
        Ok(serde_json::from_str(&r.get::<_, String>(i)?).unwrap_or_default())
    };
    Ok(DiscountCode {
        code: r.get(0)?,
        kind: match kind.as_str() {
            "percent" => DiscountKind::Percent,
            "fixed" => DiscountKind::Fixed,
            _ => DiscountKind::FreeShipping,
        },
        value: r.get(2)?,
        min_subtotal: r.get(3)?,
        starts_at: r.get(4)?,
        ends_at: r.get(5)?,
        usage_limit: r.get(6)?,
        per_customer_limit: r.get(7)?,
        category_ids: list(8)?,
        skus: list(9)?,
        combinable: r.get(10)?,
        used: r.get(11)?,
    })
}

const CODE_COLUMNS: &str = "code, kind, value, min_subtotal, starts_at, ends_at, usage_limit, per_customer_limit, \
                            category_ids, skus, combinable, used";

pub fn find_code(conn: &Connection, code: &str) -> Result<Option<DiscountCode>> {
    Ok(conn
        .query_row(&format!("SELECT {CODE_COLUMNS} FROM discount_codes WHERE code = ?1"), [code], code_row)
        .optional()?)
}

pub fn list_codes(conn: &Connection) -> Result<Vec<DiscountCode>> {
    let mut stmt = conn.prepare(&format!("SELECT {CODE_COLUMNS} FROM discount_codes ORDER BY code"))?;
    Ok(stmt.query_map([], code_row)?.collect::<rusqlite::Result<_>>()?)
}

pub fn delete_code(tx: &TenantTx<'_>, code: &str) -> Result<()> {
    if tx.execute("DELETE FROM discount_codes WHERE code = ?1", [code])? == 0 {
        return Err(Error::NotFound("discount code"));
    }
    Ok(())
}

/// `POST …/tax-rates`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TaxRate {
    /// Assigned by the store (read only).
    #[serde(default, skip_deserializing)]
    pub id: String,
    /// ISO 3166-1 alpha-2, e.g. `DE`.
    pub country: String,
    /// A region code (e.g. `CA`); its rate wins over the country's.
    pub region: Option<String>,
    /// Basis points: 19 % is 1900.
    pub rate_bps: i64,
    pub name: String,
}

/// Every ISO 3166-1 alpha-2 country code, sorted.
const COUNTRIES: &str = "AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ BA BB BD BE BF BG BH BI BJ BL BM BN BO BQ BR BS \
    BT BV BW BY BZ CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ DE DJ DK DM DO DZ EC EE EG EH ER ES ET FI \
    FJ FK FM FO FR GA GB GD GE GF GG GH GI GL GM GN GP GQ GR GS GT GU GW GY HK HM HN HR HT HU ID IE IL IM IN IO IQ IR \
    IS IT JE JM JO JP KE KG KH KI KM KN KP KR KW KY KZ LA LB LC LI LK LR LS LT LU LV LY MA MC MD ME MF MG MH MK ML MM \
    MN MO MP MQ MR MS MT MU MV MW MX MY MZ NA NC NE NF NG NI NL NO NP NR NU NZ OM PA PE PF PG PH PK PL PM PN PR PS PT \
    PW PY QA RE RO RS RU RW SA SB SC SD SE SG SH SI SJ SK SL SM SN SO SR SS ST SV SX SY SZ TC TD TF TG TH TJ TK TL TM \
    TN TO TR TT TV TW TZ UA UG UM US UY UZ VA VC VE VG VI VN VU WF WS YE YT ZA ZM ZW";

pub fn check_country(country: &str) -> Result<()> {
    if country.len() == 2 && COUNTRIES.split_whitespace().any(|c| c == country) {
        Ok(())
    } else {
        Err(Error::validation(format!("country {country:?} is not an ISO 3166-1 alpha-2 code such as DE")))
    }
}

pub fn create_tax_rate(tx: &TenantTx<'_>, rate: &TaxRate) -> Result<TaxRate> {
    check_country(&rate.country)?;
    let region = rate.region.clone().unwrap_or_default();
    if region.len() > 10 || !region.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(Error::validation("region is up to 10 letters or digits"));
    }
    if !(0..=10_000).contains(&rate.rate_bps) {
        return Err(Error::validation("rate_bps is 0-10000 (19 % is 1900)"));
    }
    super::catalog::check_title("name", &rate.name, 100)?;
    let id = uuid::Uuid::now_v7().to_string();
    let inserted = tx.execute(
        "INSERT OR IGNORE INTO tax_rates (id, country, region, rate_bps, name) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![id, rate.country, region, rate.rate_bps, rate.name],
    )?;
    if inserted == 0 {
        return Err(Error::Conflict(format!("{} {} has a tax rate; delete it first", rate.country, region)));
    }
    Ok(TaxRate { id, ..rate.clone() })
}

fn tax_row(r: &Row<'_>) -> rusqlite::Result<TaxRate> {
    let region: String = r.get(2)?;
    Ok(TaxRate {
        id: r.get(0)?,
        country: r.get(1)?,
        region: (!region.is_empty()).then_some(region),
        rate_bps: r.get(3)?,
        name: r.get(4)?,
    })
}

pub fn list_tax_rates(conn: &Connection) -> Result<Vec<TaxRate>> {
    let mut stmt =
        conn.prepare("SELECT id, country, region, rate_bps, name FROM tax_rates ORDER BY country, region")?;
    Ok(stmt.query_map([], tax_row)?.collect::<rusqlite::Result<_>>()?)
}

/// The rate of a destination: its region's, else its country's.
pub fn tax_rate_for(conn: &Connection, country: &str, region: Option<&str>) -> Result<Option<TaxRate>> {
    Ok(conn
        .query_row(
            "SELECT id, country, region, rate_bps, name FROM tax_rates WHERE country = ?1 AND region IN (?2, '')
             ORDER BY region DESC LIMIT 1",
            params![country, region.unwrap_or("")],
            tax_row,
        )
        .optional()?)
}

pub fn delete_tax_rate(tx: &TenantTx<'_>, id: &str) -> Result<()> {
    if tx.execute("DELETE FROM tax_rates WHERE id = ?1", [id])? == 0 {
        return Err(Error::NotFound("tax rate"));
    }
    Ok(())
}

/// `POST …/shipping-methods`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ShippingMethod {
    /// 1-64 of a-z, 0-9, `-`, `_`.
    pub code: String,
    pub name: String,
    /// ISO 3166-1 alpha-2 codes the method ships to.
    pub countries: Vec<String>,
    pub kind: ShippingKind,
    /// The flat price (and the price past the last bracket when it has no bracket).
    #[serde(default)]
    pub price: i64,
    /// Weight (grams) or subtotal (minor units) brackets, ascending `up_to`.
    #[serde(default)]
    pub brackets: Vec<Bracket>,
    /// Free when the discounted subtotal reaches this.
    pub free_over: Option<i64>,
}

pub fn create_shipping(tx: &TenantTx<'_>, method: &ShippingMethod, now: i64) -> Result<()> {
    let ok = (1..=64).contains(&method.code.len())
        && method.code.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    if !ok {
        return Err(Error::validation("code must be 1-64 of a-z, 0-9, '-' and '_'"));
    }
    super::catalog::check_title("name", &method.name, 100)?;
    if method.countries.is_empty() || method.countries.len() > 250 {
        return Err(Error::validation("countries lists 1-250 countries"));
    }
    for c in &method.countries {
        check_country(c)?;
    }
    money::check_amount("price", method.price)?;
    if let Some(over) = method.free_over {
        money::check_amount("free_over", over)?;
    }
    if method.kind != ShippingKind::Flat && method.brackets.is_empty() {
        return Err(Error::validation("weight and subtotal methods need brackets"));
    }
    if method.brackets.len() > 50 || !method.brackets.windows(2).all(|w| w[0].up_to < w[1].up_to) {
        return Err(Error::validation("brackets: at most 50, with ascending up_to"));
    }
    for b in &method.brackets {
        money::check_amount("brackets.price", b.price)?;
        if b.up_to < 0 {
            return Err(Error::validation("brackets.up_to is at least 0"));
        }
    }
    let kind = match method.kind {
        ShippingKind::Flat => "flat",
        ShippingKind::Weight => "weight",
        ShippingKind::Subtotal => "subtotal",
    };
    let inserted = tx.execute(
        "INSERT OR IGNORE INTO shipping_methods (code, name, countries, kind, price, brackets, free_over, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        params![
            method.code,
            method.name,
            super::catalog::json(&method.countries),
            kind,
            method.price,
            super::catalog::json(&method.brackets),
            method.free_over,
            now
        ],
    )?;
    if inserted == 0 {
        return Err(Error::Conflict(format!("shipping method {} exists", method.code)));
    }
    Ok(())
}

fn shipping_row(r: &Row<'_>) -> rusqlite::Result<ShippingMethod> {
    let kind: String = r.get(3)?;
    Ok(ShippingMethod {
        code: r.get(0)?,
        name: r.get(1)?,
        countries: serde_json::from_str(&r.get::<_, String>(2)?).unwrap_or_default(),
        kind: match kind.as_str() {
            "weight" => ShippingKind::Weight,
            "subtotal" => ShippingKind::Subtotal,
            _ => ShippingKind::Flat,
        },
        price: r.get(4)?,
        brackets: serde_json::from_str(&r.get::<_, String>(5)?).unwrap_or_default(),
        free_over: r.get(6)?,
    })
}

pub fn list_shipping(conn: &Connection) -> Result<Vec<ShippingMethod>> {
    let mut stmt = conn.prepare(
        "SELECT code, name, countries, kind, price, brackets, free_over FROM shipping_methods ORDER BY code",
    )?;
    Ok(stmt.query_map([], shipping_row)?.collect::<rusqlite::Result<_>>()?)
}

pub fn find_shipping(conn: &Connection, code: &str) -> Result<Option<ShippingMethod>> {
    Ok(conn
        .query_row(
            "SELECT code, name, countries, kind, price, brackets, free_over FROM shipping_methods WHERE code = ?1",
            [code],
            shipping_row,
        )
        .optional()?)
}

pub fn delete_shipping(tx: &TenantTx<'_>, code: &str) -> Result<()> {
    if tx.execute("DELETE FROM shipping_methods WHERE code = ?1", [code])? == 0 {
        return Err(Error::NotFound("shipping method"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_country_list_is_whole_and_sorted() {
        let codes: Vec<&str> = super::COUNTRIES.split_whitespace().collect();
        assert_eq!(codes.len(), 249);
        assert!(codes.windows(2).all(|w| w[0] < w[1]));
        assert!(super::check_country("DE").is_ok() && super::check_country("ZZ").is_err());
    }
}
