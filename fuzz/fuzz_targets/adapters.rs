//! Any bytes at any adapter decoder (chat, Meta, generic social, IVR JSON,
//! IVR form, raw mail): events the router accepts, or an error, never a
//! panic.
#![no_main]
use libfuzzer_sys::fuzz_target;
use omniroute::adapters::{chat, email, ivr, social, Defaults};
use omniroute::domain::wire::decode_inbound;

fuzz_target!(|data: &[u8]| {
    let now = chrono::DateTime::from_timestamp(1_790_000_000, 0).expect("time");
    let d = Defaults::default();
    let ivr_settings = ivr::IvrSettings::default();
    let email_settings = email::EmailSettings::default();
    let params: Vec<(String, String)> = serde_urlencoded::from_bytes(data).unwrap_or_default();
    let results = [
        ("chat", chat::decode(data, "f", &d, now)),
        ("social", social::decode_meta(data, "f", &d, now)),
        ("social", social::decode_generic(data, "f", &d, now)),
        ("voice", ivr::decode_json(data, &ivr_settings, now)),
        ("voice", ivr::decode_twilio(&params, &ivr_settings, now)),
        ("email", email::decode(data, &email_settings, now)),
    ];
    for (channel, r) in results {
        if let Ok(decoded) = r {
            for e in decoded.events {
                assert!(decode_inbound(channel, &e.to_json()).is_ok(), "the router accepts every event");
            }
        }
    }
});
