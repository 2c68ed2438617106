//! Durations as people write them in config, command files and chat:
//! `90s`, `10m`, `2h`, `1d`, or combinations such as `1h30m`.

use std::time::Duration;

/// Parses `90s`, `10m`, `2h`, `1d`, `1h30m`, and milliseconds (`250ms`,
/// for short intervals such as lease renewals). Returns `None` for anything
/// else, including zero-length input and overflowing values.
pub fn parse_duration(text: &str) -> Option<Duration> {
    if text.is_empty() || !text.is_ascii() {
        return None;
    }
    let mut total_ms: u64 = 0;
    let mut digits = String::new();
    let mut characters = text.chars().peekable();
    while let Some(character) = characters.next() {
        if character.is_ascii_digit() {
            digits.push(character);
            continue;
        }
        let unit_ms: u64 = match character {
            'm' if characters.peek() == Some(&'s') => {
                characters.next();
                1
            }
            's' => 1_000,
            'm' => 60_000,
            'h' => 3_600_000,
            'd' => 86_400_000,
            _ => return None,
        };
        if digits.is_empty() {
            return None;
        }
        let amount: u64 = digits.parse().ok()?;
        total_ms = total_ms.checked_add(amount.checked_mul(unit_ms)?)?;
        digits.clear();
    }
    if !digits.is_empty() {
        return None;
    }
    Some(Duration::from_millis(total_ms))
}

/// Formats a duration the way `parse_duration` reads it, largest units first:
/// `2h`, `1h30m`, `45s`, `0s`; under a second, `250ms`.
pub fn format_duration(duration: Duration) -> String {
    let mut seconds = duration.as_secs();
    if seconds == 0 {
        return match duration.subsec_millis() {
            0 => "0s".to_string(),
            millis => format!("{millis}ms"),
        };
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
            ("1m30s", Some(90)),
            ("", None),
            ("ms", None),
            ("5sm", None),
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
        assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration("1s500ms"), Some(Duration::from_millis(1500)));
        assert_eq!(format_duration(Duration::from_millis(250)), "250ms");
        assert_eq!(format_elapsed(Duration::from_millis(850)), "850ms");
        assert_eq!(format_elapsed(Duration::from_millis(4200)), "4.2s");
        assert_eq!(format_elapsed(Duration::from_secs(65)), "1m05s");
    }
}
