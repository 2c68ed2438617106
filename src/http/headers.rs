//! `verify::RequestHeaders` for axum's header map, so webhook handlers can
//! pass the headers they received straight to the signature checks. Header
//! names are matched case-insensitively, as HTTP requires.

use axum::http::HeaderMap;

use crate::verify::RequestHeaders;

impl RequestHeaders for HeaderMap {
    fn header(&self, name: &str) -> Option<&[u8]> {
        self.get(name).map(|value| value.as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    #[test]
    fn names_match_whatever_their_case() {
        let mut headers = HeaderMap::new();
        headers.insert("x-slack-signature", HeaderValue::from_static("v0=abc"));
        for name in [
            "X-Slack-Signature",
            "x-slack-signature",
            "X-SLACK-SIGNATURE",
        ] {
            assert_eq!(headers.header(name), Some(&b"v0=abc"[..]), "{name}");
        }
        assert_eq!(headers.header("X-Slack-Request-Timestamp"), None);
    }
}
