//! Durations as people write them in config, command files and chat:
//! `90s`, `10m`, `2h`, `1d`, or combinations such as `1h30m`.

use std::time::Duration;

/// Parses `90s`, `10m`, `2h`, `1d`, `1h30m`. Returns `None` for anything else,
/// including zero-length input and overflowing values.
pub fn parse_duration(text: &str) -> Option<Duration> {
    if text.is_empty() || !text.is_ascii() {
        return None;
    }
    let mut total: u64 = 0;
    let mut digits = String::new();
    for character in text.chars() {
        if character.is_ascii_digit() {
            digits.push(character);
            continue;
        }
        let unit_seconds: u64 = match character {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            _ => return None,
        };
        if digits.is_empty() {
            return None;
        }
        let amount: u64 = digits.parse().ok()?;
        total = total.checked_add(amount.checked_mul(unit_seconds)?)?;
        digits.clear();
    }
    if !digits.is_empty() {
        return None;
    }
    Some(Duration::from_secs(total))
}

/// Formats a duration the way `parse_duration` reads it, largest units first:
/// `2h`, `1h30m`, `45s`, `0s`.
pub fn format_duration(duration: Duration) -> String {
    let mut seconds = duration.as_secs();
    if seconds == 0 {
        return "0s".to_string();
    }
    let mut text = String::new();
    for (unit_seconds, suffix) in [(86_400, 'd'), (3600, 'h'), (60, 'm'), (1, 's')] {
        if seconds >= unit_seconds {
            text.push_str(&format!("{}{suffix}", seconds / unit_seconds));
            seconds %= unit_seconds;
        }
    }
    text
}

/// Formats an elapsed time for step lines: `850ms`, `4.2s`, `1m05s`.
pub fn format_elapsed(duration: Duration) -> String {
    let millis = duration.as_millis();
    if millis < 1000 {
        format!("{millis}ms")
    } else if millis < 60_000 {
        format!("{:.1}s", duration.as_secs_f64())
    } else {
        let seconds = duration.as_secs();
        format!("{}m{:02}s", seconds / 60, seconds % 60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_formats_durations() {
        let cases = [
            ("90s", Some(90)),
            ("10m", Some(600)),
            ("2h", Some(7200)),
            ("1d", Some(86_400)),
            ("1h30m", Some(5400)),
            ("", None),
            ("10", None),
            ("m", None),
            ("10x", None),
            ("-5m", None),
            ("１m", None),
            ("99999999999999999999d", None),
        ];
        for (text, expected) in cases {
            assert_eq!(
                parse_duration(text).map(|duration| duration.as_secs()),
                expected,
                "input {text:?}"
            );
        }
        assert_eq!(format_duration(Duration::from_secs(5400)), "1h30m");
        assert_eq!(format_duration(Duration::from_secs(0)), "0s");
        assert_eq!(format_elapsed(Duration::from_millis(850)), "850ms");
        assert_eq!(format_elapsed(Duration::from_millis(4200)), "4.2s");
        assert_eq!(format_elapsed(Duration::from_secs(65)), "1m05s");
    }
}
