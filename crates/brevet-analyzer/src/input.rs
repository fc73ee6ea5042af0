//! Reading an export: JSON from any reader, streamed (never the whole file as a tree of values),
//! with a size limit, and errors that name the file, the line, the column and the field.

use std::cell::Cell;
use std::io::{BufReader, Read};
use std::rc::Rc;

use serde::de::DeserializeOwned;

use crate::AnalyzeError;

/// The largest export read unless the caller says otherwise: 512 MiB, far above the largest
/// real account exports (a few tens of MB), so a runaway or hostile file stops early.
pub const DEFAULT_MAX_INPUT: u64 = 512 * 1024 * 1024;

/// One export to analyse: its name (for errors and reports) and its bytes.
pub struct Input<'a> {
    pub name: String,
    reader: Box<dyn Read + 'a>,
}

impl<'a> Input<'a> {
    pub fn new(name: impl Into<String>, reader: impl Read + 'a) -> Input<'a> {
        Input {
            name: name.into(),
            reader: Box::new(reader),
        }
    }

    pub fn from_bytes(name: impl Into<String>, bytes: &'a [u8]) -> Input<'a> {
        Input::new(name, bytes)
    }
}

/// Counts what has been read and fails once past the limit, remembering that it did so the
/// error can say "too large" rather than "unexpected end of input".
struct Limited<R> {
    inner: R,
    left: u64,
    over: Rc<Cell<bool>>,
}

impl<R: Read> Read for Limited<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.left == 0 {
            // One byte more tells a file of exactly the limit from a longer one.
            let mut probe = [0u8; 1];
            if self.inner.read(&mut probe)? == 0 {
                return Ok(0);
            }
            self.over.set(true);
            return Err(std::io::Error::other("input larger than the limit"));
        }
        let want = buf.len().min(self.left.min(usize::MAX as u64) as usize);
        let n = self.inner.read(&mut buf[..want])?;
        self.left -= n as u64;
        Ok(n)
    }
}

/// Deserialises `T` from the input, streaming. `expected` names the format for errors.
pub(crate) fn parse<T: DeserializeOwned>(
    input: Input<'_>,
    max_bytes: u64,
) -> Result<T, AnalyzeError> {
    let over = Rc::new(Cell::new(false));
    let limited = Limited {
        inner: input.reader,
        left: max_bytes,
        over: over.clone(),
    };
    let mut de = serde_json::Deserializer::from_reader(BufReader::with_capacity(1 << 16, limited));
    let result: Result<T, _> = serde_path_to_error::deserialize(&mut de);
    let value = match result {
        Ok(v) => v,
        Err(e) => {
            if over.get() {
                return Err(AnalyzeError::TooLarge {
                    file: input.name,
                    limit: max_bytes,
                });
            }
            let path = e.path().to_string();
            let inner = e.into_inner();
            return Err(AnalyzeError::Malformed {
                file: input.name,
                line: inner.line(),
                column: inner.column(),
                path: if path == "." {
                    "(top level)".into()
                } else {
                    path
                },
                reason: describe(&inner),
            });
        }
    };
    de.end().map_err(|e| AnalyzeError::Malformed {
        file: input.name.clone(),
        line: e.line(),
        column: e.column(),
        path: "(after the document)".into(),
        reason: "more data after the JSON document: one export per file".into(),
    })?;
    Ok(value)
}

fn describe(e: &serde_json::Error) -> String {
    use serde_json::error::Category;
    let text = e.to_string();
    // serde_json appends " at line L column C"; the error already says where.
    let text = match text.rfind(" at line ") {
        Some(i) => text[..i].to_string(),
        None => text,
    };
    match e.classify() {
        Category::Eof => format!("{text}: the file is cut short (truncated download or copy?)"),
        Category::Syntax => format!("{text}: not valid JSON"),
        _ => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Doc {
        items: Vec<Item>,
    }
    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Item {
        name: String,
    }

    #[test]
    fn errors_name_line_column_and_field() {
        let text = "{\"items\": [\n {\"name\": \"a\"},\n {\"name\": 7}\n]}";
        let err = parse::<Doc>(Input::from_bytes("x.json", text.as_bytes()), 1 << 20)
            .unwrap_err()
            .to_string();
        assert!(err.contains("x.json"), "{err}");
        assert!(err.contains("line 3"), "{err}");
        assert!(err.contains("items[1].name"), "{err}");
    }

    #[test]
    fn truncated_input_says_so() {
        let text = "{\"items\": [ {\"name\": \"a\"}";
        let err = parse::<Doc>(Input::from_bytes("t.json", text.as_bytes()), 1 << 20)
            .unwrap_err()
            .to_string();
        assert!(err.contains("cut short"), "{err}");
    }

    #[test]
    fn over_the_limit_is_too_large_not_malformed() {
        let text = format!("{{\"items\": [{}]}}", "{\"name\": \"a\"},".repeat(100));
        let err = parse::<Doc>(Input::from_bytes("big.json", text.as_bytes()), 64).unwrap_err();
        assert!(
            matches!(err, AnalyzeError::TooLarge { limit: 64, .. }),
            "{err}"
        );
        // Exactly at the limit is fine.
        let small = "{\"items\": []}";
        parse::<Doc>(
            Input::from_bytes("ok.json", small.as_bytes()),
            small.len() as u64,
        )
        .unwrap();
    }

    #[test]
    fn trailing_data_is_refused() {
        let err = parse::<Doc>(Input::from_bytes("two.json", b"{\"items\":[]} {}"), 1 << 20)
            .unwrap_err()
            .to_string();
        assert!(err.contains("one export per file"), "{err}");
    }
}
