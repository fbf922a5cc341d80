//! How an error is written for the log: the whole cause chain on one line.
//!
//! A leaf, so every layer (stores, the listener, the doors) can log a
//! failure the same way without importing the error-to-response mapping.

/// `error: cause: cause...`, as far down as the sources go.
pub fn chain(error: &dyn std::error::Error) -> String {
    let mut out = error.to_string();
    let mut source = error.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}
