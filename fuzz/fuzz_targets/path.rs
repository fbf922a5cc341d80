//! The path normaliser: never panics; what it returns is rooted, has no dot
//! or empty segment, no encoded separator, and normalises to itself.
#![no_main]

use authgate::path::normalize;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(path) = std::str::from_utf8(data) else { return };
    let Ok(once) = normalize(path) else { return };
    assert!(once.starts_with('/'), "not rooted: {once:?}");
    assert!(!once.contains("//"), "empty segment: {once:?}");
    for segment in once.split('/') {
        assert!(segment != "." && segment != "..", "dot segment: {once:?}");
        let lower = segment.to_ascii_lowercase();
        assert!(!lower.contains("%2f") && !lower.contains("%5c") && !lower.contains('\\'), "separator: {once:?}");
    }
    assert_eq!(normalize(&once).as_deref(), Ok(once.as_str()), "not idempotent");
});
