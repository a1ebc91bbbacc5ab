//! Any bytes on `omni.inbound.<channel>`: an event or a one-line error, never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for channel in ["email", "chat", "social", "voice", "fax"] {
        if let Err(e) = omniroute::domain::wire::decode_inbound(channel, data) {
            assert!(!e.0.contains('\n'), "errors are one line");
        }
    }
});
