use std::{io, str::FromStr};

use crate::AuditEvent;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportFormat {
    Jsonl,
    Csv,
}

impl FromStr for ExportFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "jsonl" => Ok(Self::Jsonl),
            "csv" => Ok(Self::Csv),
            other => Err(format!(
                "unknown export format `{other}`: use `jsonl` or `csv`"
            )),
        }
    }
}

const COLUMNS: [&str; 8] = [
    "seq",
    "at",
    "kind",
    "actor",
    "request_id",
    "data",
    "prev_hash",
    "hash",
];

pub fn csv_header() -> String {
    COLUMNS.join(",") + "\n"
}

/// One CSV row (RFC 4180 quoting via the `csv` crate), newline-terminated.
pub fn write_csv_row(e: &AuditEvent) -> io::Result<Vec<u8>> {
    let mut w = csv::WriterBuilder::new()
        .has_headers(false)
        .from_writer(Vec::new());
    let seq = e.seq.to_string();
    w.write_record([
        seq.as_str(),
        &e.at,
        &e.kind,
        &e.actor,
        e.request_id.as_deref().unwrap_or(""),
        &e.data,
        &e.prev_hash,
        &e.hash,
    ])?;
    w.into_inner().map_err(|e| io::Error::other(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{AuditDraft, EventKind, GENESIS_HASH};

    #[test]
    fn csv_quotes_json() {
        let e = AuditDraft::new(
            EventKind::RequestCreated,
            "a",
            None,
            serde_json::json!({"x": "a,\"b\""}),
        )
        .seal(1, chrono::Utc::now(), GENESIS_HASH);
        let row = String::from_utf8(write_csv_row(&e).unwrap()).unwrap();
        let mut r = csv::ReaderBuilder::new()
            .has_headers(false)
            .from_reader(row.as_bytes());
        let rec = r.records().next().unwrap().unwrap();
        assert_eq!(&rec[5], e.data);
        assert_eq!(&rec[7], e.hash);
    }
}
