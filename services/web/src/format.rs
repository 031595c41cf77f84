//! Money and dates as people read them: in the tenant's currency and time zone, with the
//! separators of the message catalogue; and amounts typed into a form, back to minor units.

use carerp_proto::common::v1::Money;

use crate::messages::Messages;

/// Minor-unit digits of an ISO 4217 currency (the common ones without cents; 2 otherwise).
pub fn decimals(currency: &str) -> u32 {
    match currency {
        "JPY" | "KRW" | "ISK" | "CLP" | "VND" | "HUF" => 0,
        "BHD" | "KWD" | "OMR" | "JOD" | "TND" => 3,
        _ => 2,
    }
}

fn symbol(currency: &str) -> Option<&'static str> {
    Some(match currency {
        "EUR" => "€",
        "USD" => "$",
        "GBP" => "£",
        "JPY" => "¥",
        "CHF" => "CHF ",
        _ => return None,
    })
}

/// `€1,234.50`, or `1,234.50 SEK` for a currency without a symbol here.
pub fn money(t: &Messages, amount_minor: i64, currency: &str) -> String {
    let digits = decimals(currency);
    let scale = 10i64.pow(digits);
    let sign = if amount_minor < 0 { "-" } else { "" };
    let abs = amount_minor.unsigned_abs();
    let whole = abs / scale as u64;
    let fraction = abs % scale as u64;
    let whole = group(whole, t.group_separator);
    let number = if digits == 0 {
        whole
    } else {
        format!(
            "{whole}{}{fraction:0width$}",
            t.decimal_separator,
            width = digits as usize
        )
    };
    match symbol(currency) {
        Some(symbol) => format!("{sign}{symbol}{number}"),
        None => format!("{sign}{number} {currency}"),
    }
}

/// [`money`] of an optional proto amount; nothing when absent.
pub fn money_of(t: &Messages, money_value: Option<&Money>) -> String {
    money_value
        .map(|m| money(t, m.amount_minor, &m.currency))
        .unwrap_or_default()
}

fn group(mut n: u64, separator: char) -> String {
    let mut groups = Vec::new();
    loop {
        if n < 1000 {
            groups.push(n.to_string());
            break;
        }
        groups.push(format!("{:03}", n % 1000));
        n /= 1000;
    }
    groups.reverse();
    groups.join(&separator.to_string())
}

/// A whole number with the catalogue's grouping: `42,100`.
pub fn integer(t: &Messages, n: i64) -> String {
    let sign = if n < 0 { "-" } else { "" };
    format!("{sign}{}", group(n.unsigned_abs(), t.group_separator))
}

/// Labour time in hours, as an invoice counts it: 45 minutes is `0.75 h`, 120 is `2 h`.
pub fn hours(t: &Messages, minutes: i32) -> String {
    let hundredths = (i64::from(minutes) * 100 + 30) / 60;
    let (whole, fraction) = (hundredths / 100, hundredths % 100);
    let number = if fraction == 0 {
        integer(t, whole)
    } else {
        let digits = format!("{fraction:02}");
        format!(
            "{}{}{}",
            integer(t, whole),
            t.decimal_separator,
            digits.trim_end_matches('0')
        )
    };
    format!("{number} {}", t.hours_unit)
}

/// An amount typed into a form (`120.5`, `1,200.50` with the catalogue's separators) in minor
/// units of `currency`; `None` when it is not an amount with at most the currency's digits.
pub fn parse_amount(t: &Messages, input: &str, currency: &str) -> Option<i64> {
    let cleaned: String = input
        .trim()
        .chars()
        .filter(|c| *c != t.group_separator && !c.is_whitespace())
        .collect();
    let digits = decimals(currency) as usize;
    let (whole, fraction) = match cleaned.split_once(t.decimal_separator) {
        Some((whole, fraction)) => (whole, fraction),
        None => (cleaned.as_str(), ""),
    };
    let all_digits = |s: &str| s.chars().all(|c| c.is_ascii_digit());
    if whole.is_empty() || !all_digits(whole) || !all_digits(fraction) || fraction.len() > digits {
        return None;
    }
    let whole: i64 = whole.parse().ok()?;
    let fraction: i64 = if fraction.is_empty() {
        0
    } else {
        format!("{fraction:0<digits$}").parse().ok()?
    };
    whole
        .checked_mul(10i64.pow(digits as u32))?
        .checked_add(fraction)
}

/// A time zone by IANA name; UTC when the name is unknown (the tenant's settings are
/// validated where they are written).
pub fn zone(name: &str) -> jiff::tz::TimeZone {
    jiff::tz::TimeZone::get(name).unwrap_or(jiff::tz::TimeZone::UTC)
}

/// A timestamp in the tenant's zone, with the catalogue's format; nothing when absent.
pub fn date_time(
    t: &Messages,
    zone: &jiff::tz::TimeZone,
    at: Option<&prost_types::Timestamp>,
) -> String {
    at.and_then(|at| jiff::Timestamp::new(at.seconds, at.nanos).ok())
        .map(|at| {
            at.to_zoned(zone.clone())
                .strftime(t.date_time_format)
                .to_string()
        })
        .unwrap_or_default()
}

/// How long ago `since` was, in the largest whole unit: minutes, hours or days.
pub fn age(t: &Messages, now: jiff::Timestamp, since: Option<&prost_types::Timestamp>) -> String {
    let Some(since) = since.and_then(|at| jiff::Timestamp::new(at.seconds, at.nanos).ok()) else {
        return String::new();
    };
    let minutes = (now.as_second() - since.as_second()).max(0) / 60;
    match minutes {
        m if m < 60 => format!("{m} {}", t.age_minutes),
        m if m < 24 * 60 => format!("{} {}", m / 60, t.age_hours),
        m => format!("{} {}", m / (24 * 60), t.age_days),
    }
}

/// An ISO date (`2026-03-01`, already in the tenant's zone) with the catalogue's format.
pub fn date(t: &Messages, iso: &str) -> String {
    iso.parse::<jiff::civil::Date>()
        .map(|d| d.strftime(t.date_format).to_string())
        .unwrap_or_else(|_| iso.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labour_minutes_read_as_hours() {
        let t = &crate::messages::EN;
        assert_eq!(hours(t, 45), "0.75 h");
        assert_eq!(hours(t, 120), "2 h");
        assert_eq!(hours(t, 90), "1.5 h");
        assert_eq!(hours(t, 20), "0.33 h");
        assert_eq!(hours(t, 6000), "100 h");
    }
    use crate::messages::EN;

    #[test]
    fn money_reads_with_symbol_grouping_and_the_currency_digits() {
        let cases = [
            (123456, "EUR", "€1,234.56"),
            (5, "EUR", "€0.05"),
            (-250, "USD", "-$2.50"),
            (100_000_000, "GBP", "£1,000,000.00"),
            (1500, "JPY", "¥1,500"),
            (12345, "SEK", "123.45 SEK"),
        ];
        for (minor, currency, shown) in cases {
            assert_eq!(money(&EN, minor, currency), shown, "{minor} {currency}");
        }
    }

    #[test]
    fn typed_amounts_become_minor_units_or_are_refused() {
        let cases = [
            ("120.5", Some(12050)),
            ("1,200.50", Some(120050)),
            (" 7 ", Some(700)),
            ("0.05", Some(5)),
            ("1.234", None),
            ("-3", None),
            ("abc", None),
            ("", None),
            (".5", None),
        ];
        for (typed, minor) in cases {
            assert_eq!(parse_amount(&EN, typed, "EUR"), minor, "{typed:?}");
        }
        assert_eq!(parse_amount(&EN, "1500", "JPY"), Some(1500));
        assert_eq!(parse_amount(&EN, "15.5", "JPY"), None);
    }

    #[test]
    fn times_are_shown_in_the_tenant_zone() {
        // 2026-03-01T23:30:00Z is already 2 March in Berlin.
        let at = prost_types::Timestamp {
            seconds: 1_772_407_800,
            nanos: 0,
        };
        assert_eq!(
            date_time(&EN, &zone("Europe/Berlin"), Some(&at)),
            "02 Mar 2026, 00:30"
        );
        assert_eq!(
            date_time(&EN, &zone("UTC"), Some(&at)),
            "01 Mar 2026, 23:30"
        );
        assert_eq!(date(&EN, "2026-03-14"), "14 Mar 2026");
    }
}
