//! The config parser and validator: never panic, whatever the bytes.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let _ = authgate::config::Config::from_str(&text, Path::new("fuzz.toml"));
});
