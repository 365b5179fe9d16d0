//! Money: integer amounts in minor units of one ISO 4217 currency per store. Never floats: amounts are `i64`
//! minor units everywhere; decimal text (CSV files, pages) is parsed and printed digit by digit with the
//! currency's exponent (JPY 0, USD 2, KWD 3). `format` is the one function that turns an amount into text for
//! mail and pages.

use crate::error::{Error, Result};

/// Largest amount accepted anywhere (10^13 minor units: 100 billion dollars), far from `i64` overflow even when
/// summed over many lines.
pub const MAX_AMOUNT: i64 = 10_000_000_000_000;

/// Every active ISO 4217 currency with a minor unit, and its exponent (precious metals, testing and no-currency
/// codes such as XAU, XTS and XXX are left out: nothing is priced in them).
const CURRENCIES: &[(&str, u8)] = &[
    ("AED", 2),
    ("AFN", 2),
    ("ALL", 2),
    ("AMD", 2),
    ("AOA", 2),
    ("ARS", 2),
    ("AUD", 2),
    ("AWG", 2),
    ("AZN", 2),
    ("BAM", 2),
    ("BBD", 2),
    ("BDT", 2),
    ("BGN", 2),
    ("BHD", 3),
    ("BIF", 0),
    ("BMD", 2),
    ("BND", 2),
    ("BOB", 2),
    ("BOV", 2),
    ("BRL", 2),
    ("BSD", 2),
    ("BTN", 2),
    ("BWP", 2),
    ("BYN", 2),
    ("BZD", 2),
    ("CAD", 2),
    ("CDF", 2),
    ("CHE", 2),
    ("CHF", 2),
    ("CHW", 2),
    ("CLF", 4),
    ("CLP", 0),
    ("CNY", 2),
    ("COP", 2),
    ("COU", 2),
    ("CRC", 2),
    ("CUP", 2),
    ("CVE", 2),
    ("CZK", 2),
    ("DJF", 0),
    ("DKK", 2),
    ("DOP", 2),
    ("DZD", 2),
    ("EGP", 2),
    ("ERN", 2),
    ("ETB", 2),
    ("EUR", 2),
    ("FJD", 2),
    ("FKP", 2),
    ("GBP", 2),
    ("GEL", 2),
    ("GHS", 2),
    ("GIP", 2),
    ("GMD", 2),
    ("GNF", 0),
    ("GTQ", 2),
    ("GYD", 2),
    ("HKD", 2),
    ("HNL", 2),
    ("HTG", 2),
    ("HUF", 2),
    ("IDR", 2),
    ("ILS", 2),
    ("INR", 2),
    ("IQD", 3),
    ("IRR", 2),
    ("ISK", 0),
    ("JMD", 2),
    ("JOD", 3),
    ("JPY", 0),
    ("KES", 2),
    ("KGS", 2),
    ("KHR", 2),
    ("KMF", 0),
    ("KPW", 2),
    ("KRW", 0),
    ("KWD", 3),
    ("KYD", 2),
    ("KZT", 2),
    ("LAK", 2),
    ("LBP", 2),
    ("LKR", 2),
    ("LRD", 2),
    ("LSL", 2),
    ("LYD", 3),
    ("MAD", 2),
    ("MDL", 2),
    ("MGA", 2),
    ("MKD", 2),
    ("MMK", 2),
    ("MNT", 2),
    ("MOP", 2),
    ("MRU", 2),
    ("MUR", 2),
    ("MVR", 2),
    ("MWK", 2),
    ("MXN", 2),
    ("MXV", 2),
    ("MYR", 2),
    ("MZN", 2),
    ("NAD", 2),
    ("NGN", 2),
    ("NIO", 2),
    ("NOK", 2),
    ("NPR", 2),
    ("NZD", 2),
    ("OMR", 3),
    ("PAB", 2),
    ("PEN", 2),
    ("PGK", 2),
    ("PHP", 2),
    ("PKR", 2),
    ("PLN", 2),
    ("PYG", 0),
    ("QAR", 2),
    ("RON", 2),
    ("RSD", 2),
    ("RUB", 2),
    ("RWF", 0),
    ("SAR", 2),
    ("SBD", 2),
    ("SCR", 2),
    ("SDG", 2),
    ("SEK", 2),
    ("SGD", 2),
    ("SHP", 2),
    ("SLE", 2),
    ("SOS", 2),
    ("SRD", 2),
    ("SSP", 2),
    ("STN", 2),
    ("SVC", 2),
    ("SYP", 2),
    ("SZL", 2),
    ("THB", 2),
    ("TJS", 2),
    ("TMT", 2),
    ("TND", 3),
    ("TOP", 2),
    ("TRY", 2),
    ("TTD", 2),
    ("TWD", 2),
    ("TZS", 2),
    ("UAH", 2),
    ("UGX", 0),
    ("USD", 2),
    ("USN", 2),
    ("UYI", 0),
    ("UYU", 2),
    ("UYW", 4),
    ("UZS", 2),
    ("VED", 2),
    ("VES", 2),
    ("VND", 0),
    ("VUV", 0),
    ("WST", 2),
    ("XAF", 0),
    ("XCD", 2),
    ("XCG", 2),
    ("XOF", 0),
    ("XPF", 0),
    ("YER", 2),
    ("ZAR", 2),
    ("ZMW", 2),
    ("ZWG", 2),
];

/// The exponent (digits after the decimal point) of an ISO 4217 code, or `None` for an unknown code.
pub fn exponent(currency: &str) -> Option<u8> {
    CURRENCIES.binary_search_by(|(code, _)| (*code).cmp(currency)).ok().map(|i| CURRENCIES[i].1)
}

/// Whether `currency` is an active ISO 4217 code we price in.
pub fn is_currency(currency: &str) -> bool {
    exponent(currency).is_some()
}

/// Checks that an amount is within 0..=`MAX_AMOUNT`.
pub fn check_amount(field: &str, amount: i64) -> Result<()> {
    if (0..=MAX_AMOUNT).contains(&amount) {
        Ok(())
    } else {
        Err(Error::validation(format!("{field} must be an integer amount in minor units, 0 to {MAX_AMOUNT}")))
    }
}

/// The amount as a plain decimal in major units: 1234 USD → `12.34`, -5 USD → `-0.05`, 1500 JPY → `1500`. What
/// CSV files carry.
pub fn to_decimal(amount: i64, currency: &str) -> String {
    let exp = u32::from(exponent(currency).unwrap_or(2));
    let sign = if amount < 0 { "-" } else { "" };
    let abs = amount.unsigned_abs();
    if exp == 0 {
        return format!("{sign}{abs}");
    }
    let unit = 10u64.pow(exp);
    format!("{sign}{}.{:0width$}", abs / unit, abs % unit, width = exp as usize)
}

/// Parses a decimal in major units (`12.34`, `12`, `12.3`) exactly into minor units of `currency`. More
/// fraction digits than the currency has, signs, exponents and thousands separators are refused.
pub fn parse_decimal(text: &str, currency: &str) -> Result<i64> {
    let exp = usize::from(exponent(currency).unwrap_or(2));
    let bad =
        || Error::validation(format!("{text:?} is not an amount in {currency} (e.g. {})", to_decimal(1999, currency)));
    let text = text.trim();
    let (whole, frac) = text.split_once('.').unwrap_or((text, ""));
    let digits = |s: &str| !s.is_empty() && s.len() <= 15 && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(whole) || (text.contains('.') && !digits(frac)) || frac.len() > exp {
        return Err(bad());
    }
    let whole: i64 = whole.parse().map_err(|_| bad())?;
    let frac: i64 = if frac.is_empty() { 0 } else { format!("{frac:0<exp$}").parse().map_err(|_| bad())? };
    let amount = whole.checked_mul(10i64.pow(exp as u32)).and_then(|w| w.checked_add(frac)).ok_or_else(bad)?;
    check_amount("amount", amount)?;
    Ok(amount)
}

/// An amount for people: thousands grouped, the currency's decimals and its code, e.g. `1,234.56 USD`,
/// `1,500 JPY`, `-0.050 KWD`. Mail and pages use this one function.
pub fn format(amount: i64, currency: &str) -> String {
    let plain = to_decimal(amount, currency);
    let (sign, rest) = plain.strip_prefix('-').map_or(("", plain.as_str()), |r| ("-", r));
    let (whole, frac) = rest.split_once('.').map_or((rest, None), |(w, f)| (w, Some(f)));
    let mut grouped = String::with_capacity(whole.len() + whole.len() / 3);
    for (i, c) in whole.chars().enumerate() {
        if i > 0 && (whole.len() - i) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(c);
    }
    match frac {
        Some(frac) => format!("{sign}{grouped}.{frac} {currency}"),
        None => format!("{sign}{grouped} {currency}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_is_sorted_and_knows_the_exponents() {
        assert!(CURRENCIES.windows(2).all(|w| w[0].0 < w[1].0), "sorted for binary search");
        assert_eq!(exponent("USD"), Some(2));
        assert_eq!(exponent("JPY"), Some(0));
        assert_eq!(exponent("KWD"), Some(3));
        assert_eq!(exponent("CLF"), Some(4));
        assert_eq!(exponent("XXX"), None);
        assert_eq!(exponent("usd"), None, "codes are upper case");
    }

    #[test]
    fn amounts_print_and_parse_exactly() {
        assert_eq!(format(123456, "USD"), "1,234.56 USD");
        assert_eq!(format(1500, "JPY"), "1,500 JPY");
        assert_eq!(format(-50, "KWD"), "-0.050 KWD");
        assert_eq!(format(0, "EUR"), "0.00 EUR");
        assert_eq!(format(100_000_000, "EUR"), "1,000,000.00 EUR");
        assert_eq!(to_decimal(1999, "USD"), "19.99");
        assert_eq!(to_decimal(5, "USD"), "0.05");
        for (text, currency, minor) in [
            ("19.99", "USD", 1999),
            ("19.9", "USD", 1990),
            ("19", "USD", 1900),
            ("1500", "JPY", 1500),
            ("1.005", "KWD", 1005),
        ] {
            assert_eq!(parse_decimal(text, currency).unwrap(), minor, "{text} {currency}");
            assert_eq!(parse_decimal(&to_decimal(minor, currency), currency).unwrap(), minor);
        }
        for bad in ["19.999", "-1", "1e3", "1,000", "", ".5", "5.", "abc", "99999999999999999"] {
            assert!(parse_decimal(bad, "USD").is_err(), "{bad:?}");
        }
        assert!(parse_decimal("1.5", "JPY").is_err(), "JPY has no minor unit");
    }
}
