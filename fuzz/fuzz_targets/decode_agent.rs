//! Any bytes on `omni.agent.<id>.<type>`: an event or a one-line error, never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for ty in omniroute::domain::wire::AGENT_EVENT_TYPES {
        if let Err(e) = omniroute::domain::wire::decode_agent("a-1", ty, data) {
            assert!(!e.0.contains('\n'), "errors are one line");
        }
    }
});
