//! The process-wide register of secret values, so redaction can replace a
//! secret by its value wherever it turns up, whatever surrounds it.
//!
//! Every `Secret` registers its value when it is made. Long-lived secrets
//! (tokens, signing secrets, generated passwords) stay registered for the
//! life of the process; per-request credentials that expire (Discord
//! interaction tokens) go to a bounded set of the most recent ones, so a
//! busy adapter does not grow the register without bound. Values shorter
//! than [`MIN_SECRET_LEN`] are not registered: replacing every occurrence
//! of a short word would mangle ordinary text and protect nothing.
//!
//! Besides the value itself, the forms a value takes in URLs (percent
//! encoded) and in JSON (escaped) are registered, so `postgres://u:p%2Fq@h`
//! is caught as well as `p/q`.

use std::collections::{BTreeSet, VecDeque};
use std::sync::{Arc, OnceLock, RwLock};

use aho_corasick::{AhoCorasick, MatchKind};

/// The shortest value worth registering.
pub const MIN_SECRET_LEN: usize = 8;

/// How many short-lived values are kept registered; older ones expired long
/// before this many newer ones arrived.
pub const SHORT_LIVED_CAPACITY: usize = 1024;

/// What replaces a secret.
pub const REDACTED: &str = "[redacted]";

/// Registers `value` for the life of the process.
pub fn register(value: &str) {
    if let Some(forms) = forms_of(value)
        && let Ok(mut registry) = registry().write()
    {
        let before = registry.pinned.len();
        registry.pinned.extend(forms);
        if registry.pinned.len() != before {
            registry.matcher = None;
        }
    }
}

/// Registers `value` among the most recent short-lived secrets; the oldest
/// one is forgotten once [`SHORT_LIVED_CAPACITY`] are registered.
pub fn register_short_lived(value: &str) {
    let Some(forms) = forms_of(value) else {
        return;
    };
    let Ok(mut registry) = registry().write() else {
        return;
    };
    if registry
        .recent
        .iter()
        .any(|known| known.first() == forms.first())
    {
        return;
    }
    registry.recent.push_back(forms);
    while registry.recent.len() > SHORT_LIVED_CAPACITY {
        registry.recent.pop_front();
    }
    registry.matcher = None;
}

/// Replaces every registered value in `text`; `None` when there was
/// nothing to replace.
pub fn replace_values(text: &str) -> Option<String> {
    let matcher = matcher()?;
    if !matcher.is_match(text) {
        return None;
    }
    let mut replaced = String::with_capacity(text.len());
    matcher.replace_all_with(text, &mut replaced, |_, _, out| {
        out.push_str(REDACTED);
        true
    });
    Some(replaced)
}

#[derive(Default)]
struct Registry {
    pinned: BTreeSet<String>,
    recent: VecDeque<Vec<String>>,
    /// Built from the values on first use after a change.
    matcher: Option<Arc<AhoCorasick>>,
}

fn registry() -> &'static RwLock<Registry> {
    static REGISTRY: OnceLock<RwLock<Registry>> = OnceLock::new();
    REGISTRY.get_or_init(|| RwLock::new(Registry::default()))
}

/// The matcher over every registered form, rebuilt when the register
/// changed since it was last built.
fn matcher() -> Option<Arc<AhoCorasick>> {
    if let Ok(registry) = registry().read() {
        if let Some(matcher) = &registry.matcher {
            return Some(Arc::clone(matcher));
        }
        if registry.pinned.is_empty() && registry.recent.is_empty() {
            return None;
        }
    }
    let mut registry = registry().write().ok()?;
    if let Some(matcher) = &registry.matcher {
        return Some(Arc::clone(matcher));
    }
    let patterns: Vec<&String> = registry
        .pinned
        .iter()
        .chain(registry.recent.iter().flatten())
        .collect();
    // Leftmost-longest, so a secret that contains another registered secret
    // is replaced whole rather than leaving its tail behind.
    let built = AhoCorasick::builder()
        .match_kind(MatchKind::LeftmostLongest)
        .build(patterns)
        .ok()?;
    let built = Arc::new(built);
    registry.matcher = Some(Arc::clone(&built));
    Some(built)
}

/// The value and the forms it takes in URLs and JSON, the value first; or
/// `None` for a value too short to register.
fn forms_of(value: &str) -> Option<Vec<String>> {
    if value.trim().chars().count() < MIN_SECRET_LEN {
        return None;
    }
    let mut forms = vec![value.to_string()];
    for form in [
        percent_encoded(value, false),
        percent_encoded(value, true),
        json_escaped(value),
        json_escaped(value).replace('/', "\\/"),
    ] {
        if !forms.contains(&form) {
            forms.push(form);
        }
    }
    Some(forms)
}

/// `value` with every byte outside RFC 3986's unreserved set written as
/// `%XX`, in upper or lower case hex.
fn percent_encoded(value: &str, lower: bool) -> String {
    let mut encoded = String::with_capacity(value.len() * 3);
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            encoded.push(char::from(byte));
        } else if lower {
            encoded.push_str(&format!("%{byte:02x}"));
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

/// `value` as it appears inside a JSON string.
fn json_escaped(value: &str) -> String {
    let quoted = serde_json::to_string(value).unwrap_or_default();
    quoted
        .strip_prefix('"')
        .and_then(|inner| inner.strip_suffix('"'))
        .unwrap_or(value)
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_values_are_not_registered() {
        assert_eq!(forms_of("admin"), None);
        assert_eq!(forms_of("   seven  "), None);
        assert!(forms_of("eight-ch").is_some());
    }

    #[test]
    fn forms_cover_urls_and_json() {
        let forms = forms_of("a/b c\"d@e").expect("long enough");
        assert_eq!(
            forms,
            vec![
                "a/b c\"d@e".to_string(),
                "a%2Fb%20c%22d%40e".to_string(),
                "a%2fb%20c%22d%40e".to_string(),
                "a/b c\\\"d@e".to_string(),
                "a\\/b c\\\"d@e".to_string(),
            ]
        );
    }

    #[test]
    fn registered_values_are_replaced_wherever_they_are() {
        register("registry-test-value-1");
        assert_eq!(
            replace_values("x=registry-test-value-1;registry-test-value-1\n").as_deref(),
            Some("x=[redacted];[redacted]\n")
        );
        assert_eq!(replace_values("nothing registered here"), None);
    }

    #[test]
    fn short_lived_values_are_bounded() {
        let first = "short-lived-first-000000";
        register_short_lived(first);
        assert!(replace_values(first).is_some());
        for index in 0..SHORT_LIVED_CAPACITY {
            register_short_lived(&format!("short-lived-filler-{index:06}"));
        }
        assert_eq!(
            replace_values(first),
            None,
            "the oldest short-lived value is forgotten"
        );
        let recent = format!("short-lived-filler-{:06}", SHORT_LIVED_CAPACITY - 1);
        assert!(replace_values(&recent).is_some());
    }
}
