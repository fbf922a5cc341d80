//! Where a configuration problem is: `FILE:LINE:COL: message`.
//!
//! Owns turning byte spans of the TOML source into line and column, and the
//! error type that carries every problem found in one pass. It knows nothing
//! of what the keys mean.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A position in a config file, 1-based like an editor shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    pub file: Arc<Path>,
    pub line: usize,
    pub column: usize,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file.display(), self.line, self.column)
    }
}

/// One problem in a config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub location: Location,
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.location, self.message)
    }
}

/// Every problem found in a config file, in file order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<Diagnostic>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// Maps byte offsets of one source text to locations.
#[derive(Debug, Clone)]
pub struct SourceMap {
    file: Arc<Path>,
    line_starts: Vec<usize>,
    len: usize,
    src: Arc<str>,
}

impl SourceMap {
    pub fn new(file: &Path, src: &str) -> Self {
        let mut line_starts = vec![0];
        line_starts.extend(src.match_indices('\n').map(|(i, _)| i + 1));
        SourceMap { file: Arc::from(file), line_starts, len: src.len(), src: Arc::from(src) }
    }

    pub fn file(&self) -> &Path {
        &self.file
    }

    /// The directory relative paths in the file are resolved against.
    pub fn base_dir(&self) -> PathBuf {
        // `gateway.toml` has the parent "": paths then stay relative to the working directory.
        self.file.parent().map(Path::to_path_buf).unwrap_or_default()
    }

    pub fn location(&self, offset: usize) -> Location {
        let offset = offset.min(self.len);
        let line = match self.line_starts.binary_search(&offset) {
            Ok(i) => i,
            Err(i) => i - 1,
        };
        let start = self.line_starts[line];
        // Columns count characters, as editors do, not bytes.
        let column = self.src.get(start..offset).map_or(offset - start, |s| s.chars().count()) + 1;
        Location { file: self.file.clone(), line: line + 1, column }
    }

    pub fn diagnostic(&self, span: Option<Range<usize>>, message: impl Into<String>) -> Diagnostic {
        Diagnostic { location: self.location(span.map_or(0, |s| s.start)), message: message.into() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_map_to_one_based_line_and_column() {
        let map = SourceMap::new(Path::new("g.toml"), "a = 1\nbé = 2\n");
        assert_eq!(map.location(0).to_string(), "g.toml:1:1");
        assert_eq!(map.location(6).to_string(), "g.toml:2:1");
        // "é" is two bytes but one column.
        assert_eq!(map.location(9).to_string(), "g.toml:2:3");
        assert_eq!(map.location(999).line, 3);
    }
}
