//! `verify::RequestHeaders` for axum's `HeaderMap`, so the signature checks read request
//! headers without naming a web framework. Header names compare case-insensitively, as
//! HTTP requires.

use axum::http::HeaderMap;

use crate::verify::RequestHeaders;

impl RequestHeaders for HeaderMap {
    fn header(&self, name: &str) -> Option<&[u8]> {
        self.get(name).map(|value| value.as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_compare_case_insensitively() {
        let mut headers = HeaderMap::new();
        headers.insert(
            "x-pagerduty-signature",
            "v1=00".parse().expect("a header value"),
        );
        assert_eq!(
            RequestHeaders::header(&headers, "X-PagerDuty-Signature"),
            Some(&b"v1=00"[..])
        );
        assert_eq!(RequestHeaders::header(&headers, "X-Webhook-Id"), None);
    }
}
