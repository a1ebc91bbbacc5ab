//! Any text as a configuration file: a config or a list of problems, never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(cfg) = omniroute::config::Config::from_toml_with_env(text, "fuzz", Vec::new()) {
            let _ = cfg.validate();
        }
    }
});
