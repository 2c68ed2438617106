//! `verify::RequestHeaders` for axum's `HeaderMap`, so webhook handlers can
//! hand their request headers to the signature checks. Kept here, once,
//! because only `http` and the adapters' HTTP parts name axum.

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
    fn header_lookup_ignores_case() {
        let mut headers = HeaderMap::new();
        headers.insert(
            "x-signature-timestamp",
            "1700000000".parse().expect("a valid header value"),
        );
        assert_eq!(
            RequestHeaders::header(&headers, "X-Signature-Timestamp"),
            Some(&b"1700000000"[..])
        );
        assert_eq!(RequestHeaders::header(&headers, "X-Missing"), None);
    }
}
