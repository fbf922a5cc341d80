//! Durations as the config writes them: `"250ms"`, `"30s"`, `"15m"`, `"1h30m"`, `"14d"`.

use std::time::Duration;

/// Parses a duration string; the error is a message for a config diagnostic.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let invalid = || format!("invalid duration `{text}`: expected a number and a unit (ms, s, m, h, d), e.g. \"30s\"");
    if text.is_empty() {
        return Err(invalid());
    }
    let mut total = Duration::ZERO;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(invalid());
        }
        let value: u64 = rest[..digits].parse().map_err(|_| invalid())?;
        rest = &rest[digits..];
        let unit_len = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
        let unit = match &rest[..unit_len] {
            "ms" => Duration::from_millis(1),
            "s" => Duration::from_secs(1),
            "m" => Duration::from_secs(60),
            "h" => Duration::from_secs(3600),
            "d" => Duration::from_secs(86_400),
            _ => return Err(invalid()),
        };
        rest = &rest[unit_len..];
        let part = u32::try_from(value)
            .ok()
            .and_then(|v| unit.checked_mul(v))
            .ok_or_else(|| format!("duration `{text}` is too large"))?;
        total = total.checked_add(part).ok_or_else(|| format!("duration `{text}` is too large"))?;
    }
    Ok(total)
}

/// Formats a duration the way the config writes it, for `authgate check`.
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    match ms {
        0 => "0s".to_owned(),
        _ if ms.is_multiple_of(86_400_000) => format!("{}d", ms / 86_400_000),
        _ if ms.is_multiple_of(3_600_000) => format!("{}h", ms / 3_600_000),
        _ if ms.is_multiple_of(60_000) => format!("{}m", ms / 60_000),
        _ if ms.is_multiple_of(1000) => format!("{}s", ms / 1000),
        _ => format!("{ms}ms"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_spec_forms() {
        let cases = [
            ("250ms", Duration::from_millis(250)),
            ("30s", Duration::from_secs(30)),
            ("15m", Duration::from_secs(900)),
            ("14d", Duration::from_secs(14 * 86_400)),
            ("1h30m", Duration::from_secs(5400)),
            ("0s", Duration::ZERO),
        ];
        for (text, want) in cases {
            assert_eq!(parse_duration(text), Ok(want), "{text}");
        }
    }

    #[test]
    fn rejects_what_is_not_a_duration() {
        for text in ["", "30", "s", "30 s", "-1s", "1.5s", "30sec", "99999999999999999999s", "5000000000d"] {
            assert!(parse_duration(text).is_err(), "{text}");
        }
    }

    #[test]
    fn formats_back() {
        for text in ["250ms", "30s", "15m", "2h", "14d"] {
            assert_eq!(format_duration(parse_duration(text).unwrap()), text);
        }
    }
}
