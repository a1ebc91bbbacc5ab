//! Request signatures: HMAC-SHA256 over the raw body (the project's chat,
//! generic social, IVR JSON and email webhooks, and Meta's
//! `X-Hub-Signature-256`), HMAC-SHA1 for Twilio's `X-Twilio-Signature`.
//! Comparisons are constant-time (the `hmac` crate's `verify_slice`).

use hmac::{Hmac, Mac};
use sha1::Sha1;
use sha2::Sha256;

/// The header the project's own webhook formats carry: `sha256=<hex>` of
/// HMAC-SHA256(secret, raw body).
pub const SIGNATURE_HEADER: &str = "x-omniroute-signature";
/// Meta's header, same form.
pub const META_SIGNATURE_HEADER: &str = "x-hub-signature-256";
/// Twilio's header: base64 of HMAC-SHA1(auth token, URL + sorted params).
pub const TWILIO_SIGNATURE_HEADER: &str = "x-twilio-signature";

/// `sha256=<hex>` for `body` under `secret` (what a sender computes).
pub fn sha256_header(secret: &[u8], body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).unwrap_or_else(|_| unreachable_mac());
    mac.update(body);
    format!("sha256={}", super::hex(&mac.finalize().into_bytes()))
}

// HMAC accepts keys of any length; this branch cannot be taken.
fn unreachable_mac() -> Hmac<Sha256> {
    match Hmac::<Sha256>::new_from_slice(b"k") {
        Ok(m) => m,
        Err(_) => unreachable!("HMAC takes any key length"),
    }
}

/// Checks a `sha256=<hex>` header value against `body`.
pub fn verify_sha256(secret: &[u8], body: &[u8], header: Option<&str>) -> Result<(), super::AdapterError> {
    let Some(h) = header else {
        return Err(super::AdapterError::Unauthorized("missing signature header".into()));
    };
    let Some(given) = h.trim().strip_prefix("sha256=").and_then(unhex) else {
        return Err(super::AdapterError::Unauthorized(
            "signature header is not sha256=<hex>".into(),
        ));
    };
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret) else {
        return Err(super::AdapterError::Unauthorized("no signing secret".into()));
    };
    mac.update(body);
    mac.verify_slice(&given)
        .map_err(|_| super::AdapterError::Unauthorized("signature does not match the body".into()))
}

/// Twilio's scheme: the full URL Twilio requested, then each POST parameter
/// name immediately followed by its value, sorted by name; HMAC-SHA1 with
/// the auth token; base64.
pub fn twilio_signature(token: &[u8], url: &str, params: &[(String, String)]) -> String {
    use base64::Engine;
    let mut sorted: Vec<&(String, String)> = params.iter().collect();
    sorted.sort();
    let Ok(mut mac) = Hmac::<Sha1>::new_from_slice(token) else {
        return String::new();
    };
    mac.update(url.as_bytes());
    for (k, v) in sorted {
        mac.update(k.as_bytes());
        mac.update(v.as_bytes());
    }
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// Checks `X-Twilio-Signature`.
pub fn verify_twilio(
    token: &[u8],
    url: &str,
    params: &[(String, String)],
    header: Option<&str>,
) -> Result<(), super::AdapterError> {
    use base64::Engine;
    let Some(h) = header else {
        return Err(super::AdapterError::Unauthorized("missing X-Twilio-Signature".into()));
    };
    let Ok(given) = base64::engine::general_purpose::STANDARD.decode(h.trim()) else {
        return Err(super::AdapterError::Unauthorized(
            "X-Twilio-Signature is not base64".into(),
        ));
    };
    let mut sorted: Vec<&(String, String)> = params.iter().collect();
    sorted.sort();
    let Ok(mut mac) = Hmac::<Sha1>::new_from_slice(token) else {
        return Err(super::AdapterError::Unauthorized("no auth token".into()));
    };
    mac.update(url.as_bytes());
    for (k, v) in sorted {
        mac.update(k.as_bytes());
        mac.update(v.as_bytes());
    }
    mac.verify_slice(&given)
        .map_err(|_| super::AdapterError::Unauthorized("X-Twilio-Signature does not match".into()))
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if s.len() % 2 != 0 {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| s.get(i..i + 2).and_then(|b| u8::from_str_radix(b, 16).ok()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_signatures_verify_and_forgeries_do_not() {
        let h = sha256_header(b"s3cret", b"{\"a\":1}");
        assert!(verify_sha256(b"s3cret", b"{\"a\":1}", Some(&h)).is_ok());
        assert!(verify_sha256(b"s3cret", b"{\"a\":2}", Some(&h)).is_err());
        assert!(verify_sha256(b"other", b"{\"a\":1}", Some(&h)).is_err());
        assert!(verify_sha256(b"s3cret", b"{\"a\":1}", None).is_err());
        assert!(verify_sha256(b"s3cret", b"{\"a\":1}", Some("sha256=zz")).is_err());
        assert!(verify_sha256(b"s3cret", b"{\"a\":1}", Some("md5=00")).is_err());
    }

    #[test]
    fn twilio_example_from_their_documentation() {
        // The worked example of Twilio's request-validation snippets.
        let params: Vec<(String, String)> = [
            ("CallSid", "CA1234567890ABCDE"),
            ("Caller", "+14158675309"),
            ("Digits", "1234"),
            ("From", "+14158675309"),
            ("To", "+18005551212"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let url = "https://mycompany.com/myapp.php?foo=1&bar=2";
        let sig = twilio_signature(b"12345", url, &params);
        assert_eq!(sig, "RSOYDt4T1cUTdK1PDd93/VVr8B8=");
        assert!(verify_twilio(b"12345", url, &params, Some(&sig)).is_ok());
        assert!(verify_twilio(b"12346", url, &params, Some(&sig)).is_err());
    }
}
