//! Problems found while loading config and command files, each pointing at a
//! file and line, and the TOML source those lines come from.
//!
//! Validation collects every problem before refusing to start, so one
//! `deckhand check` shows all of them. This module knows nothing about what
//! the files mean; it only locates keys in them.

use std::fmt;
use std::path::{Path, PathBuf};

/// One thing wrong with a config or command file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The file, as given on the command line or found in the commands folder.
    pub file: PathBuf,
    /// 1-based line of the offending key, when it could be located.
    pub line: Option<usize>,
    /// The key path as the user wrote it (`environments.staging.host`), or empty.
    pub key: String,
    /// What is wrong and what would be accepted.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(formatter, ":{line}")?;
        }
        if !self.key.is_empty() {
            write!(formatter, ": {}", self.key)?;
        }
        write!(formatter, ": {}", self.message)
    }
}

/// Every problem found in a set of files, in the order they were found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Problems(pub Vec<Problem>);

impl Problems {
    /// Whether nothing was found.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Adds the problems of another pass.
    pub fn extend(&mut self, other: Problems) {
        self.0.extend(other.0);
    }
}

impl fmt::Display for Problems {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        for problem in &self.0 {
            writeln!(formatter, "{problem}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Problems {}

/// One segment of a key path: a table key or an index into an array.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    /// A key of a table.
    Key(String),
    /// An index into an array or array of tables.
    Index(usize),
}

/// A key path under construction, written the way a user reads it:
/// `steps[2].service`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyPath(Vec<Segment>);

impl KeyPath {
    /// The path of the document root.
    pub fn root() -> KeyPath {
        KeyPath(Vec::new())
    }

    /// This path with a key appended.
    pub fn key(&self, key: &str) -> KeyPath {
        let mut segments = self.0.clone();
        segments.push(Segment::Key(key.to_string()));
        KeyPath(segments)
    }

    /// This path with an array index appended.
    pub fn index(&self, index: usize) -> KeyPath {
        let mut segments = self.0.clone();
        segments.push(Segment::Index(index));
        KeyPath(segments)
    }
}

impl fmt::Display for KeyPath {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (segment_idx, segment) in self.0.iter().enumerate() {
            match segment {
                Segment::Key(key) if segment_idx == 0 => write!(formatter, "{key}")?,
                Segment::Key(key) => write!(formatter, ".{key}")?,
                Segment::Index(index) => write!(formatter, "[{index}]")?,
            }
        }
        Ok(())
    }
}

/// A TOML file's text, kept to turn key paths into line numbers.
pub struct Source {
    path: PathBuf,
    text: String,
    document: Option<toml_edit::ImDocument<String>>,
}

impl Source {
    /// Wraps a file's text; the text need not be valid TOML.
    pub fn new(path: &Path, text: String) -> Source {
        let document = toml_edit::ImDocument::parse(text.clone()).ok();
        Source {
            path: path.to_path_buf(),
            text,
            document,
        }
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The file's text.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// A problem at `key`, located as precisely as the document allows: the
    /// key itself, else its closest enclosing table, else the top of the
    /// file (a top-level key that is missing).
    pub fn problem(&self, key: &KeyPath, message: impl Into<String>) -> Problem {
        Problem {
            file: self.path.clone(),
            line: Some(self.line_of(key).unwrap_or(1)),
            key: key.to_string(),
            message: message.into(),
        }
    }

    /// A problem reported by the TOML deserializer, at the line its byte
    /// span starts on (the top of the file when it gives none).
    pub fn problem_from_toml(&self, error: &toml::de::Error) -> Problem {
        let line = Some(error.span().map_or(1, |span| self.line_at(span.start)));
        Problem {
            file: self.path.clone(),
            line,
            key: String::new(),
            message: error.message().trim_end_matches('.').trim().to_string(),
        }
    }

    fn line_at(&self, offset: usize) -> usize {
        let end = offset.min(self.text.len());
        self.text.as_bytes()[..end]
            .iter()
            .filter(|byte| **byte == b'\n')
            .count()
            + 1
    }

    fn line_of(&self, key: &KeyPath) -> Option<usize> {
        let document = self.document.as_ref()?;
        let mut best: Option<std::ops::Range<usize>> = None;
        let mut cursor = Cursor::Item(document.as_item());
        for segment in &key.0 {
            let next = match segment {
                Segment::Key(name) => cursor.table_like().and_then(|table| {
                    let (found_key, found_item) = table.get_key_value(name)?;
                    best = found_key
                        .span()
                        .or_else(|| found_item.span())
                        .or(best.clone());
                    Some(Cursor::Item(found_item))
                }),
                Segment::Index(index) => cursor.element(*index).inspect(|element| {
                    best = element.span().or(best.clone());
                }),
            };
            match next {
                Some(next) => cursor = next,
                None => break,
            }
        }
        best.map(|span| self.line_at(span.start))
    }
}

/// A position in a parsed TOML document while walking a key path.
#[derive(Clone, Copy)]
enum Cursor<'a> {
    Item(&'a toml_edit::Item),
    Table(&'a toml_edit::Table),
    Value(&'a toml_edit::Value),
}

impl<'a> Cursor<'a> {
    fn table_like(self) -> Option<&'a dyn toml_edit::TableLike> {
        match self {
            Cursor::Item(item) => item.as_table_like(),
            Cursor::Table(table) => Some(table),
            Cursor::Value(value) => value
                .as_inline_table()
                .map(|table| table as &dyn toml_edit::TableLike),
        }
    }

    fn element(self, index: usize) -> Option<Cursor<'a>> {
        match self {
            Cursor::Item(item) => {
                if let Some(tables) = item.as_array_of_tables() {
                    return tables.get(index).map(Cursor::Table);
                }
                item.as_array()?.get(index).map(Cursor::Value)
            }
            Cursor::Value(value) => value.as_array()?.get(index).map(Cursor::Value),
            Cursor::Table(_) => None,
        }
    }

    fn span(self) -> Option<std::ops::Range<usize>> {
        match self {
            Cursor::Item(item) => item.span(),
            Cursor::Table(table) => table.span(),
            Cursor::Value(value) => value.span(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(text: &str) -> Source {
        Source::new(Path::new("config/deckhand.toml"), text.to_string())
    }

    #[test]
    fn locates_nested_keys() {
        let file = source("[store]\nurl = \"x\"\n\n[environments.staging]\nhost = \"stg-1\"\n");
        let key = KeyPath::root()
            .key("environments")
            .key("staging")
            .key("host");
        let problem = file.problem(&key, "no Docker host named \"stg-1\"");
        assert_eq!(
            problem.to_string(),
            "config/deckhand.toml:5: environments.staging.host: no Docker host named \"stg-1\""
        );
    }

    #[test]
    fn locates_arrays_of_tables() {
        let file = source("name = \"x\"\n\n[[args]]\nname = \"a\"\n\n[[args]]\nname = \"b\"\n");
        let key = KeyPath::root().key("args").index(1).key("rule");
        assert_eq!(file.line_of(&key), Some(6));
        let inline = source("values = [\"a\",\n  \"b\"]\n");
        assert_eq!(
            inline.line_of(&KeyPath::root().key("values").index(1)),
            Some(2)
        );
    }
}
