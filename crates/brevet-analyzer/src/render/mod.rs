//! A report as text, JSON, SARIF 2.1.0 or a self-contained HTML page (inline CSS and SVG, no
//! script, nothing fetched: it can be mailed or attached to a ticket).

mod html;
mod sarif;
mod svg;
mod text;

use std::io::Write as _;

use crate::report::Report;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Text,
    Json,
    Sarif,
    Html,
}

impl Format {
    pub fn parse(s: &str) -> Option<Format> {
        match s {
            "text" => Some(Format::Text),
            "json" => Some(Format::Json),
            "sarif" => Some(Format::Sarif),
            "html" => Some(Format::Html),
            _ => None,
        }
    }
}

/// Writes the report. JSON is streamed (a large account's graph runs to hundreds of MB).
pub fn render_to(
    report: &Report,
    format: Format,
    inputs: &[String],
    out: &mut dyn std::io::Write,
) -> std::io::Result<()> {
    if format == Format::Json {
        let mut w = std::io::BufWriter::new(out);
        serde_json::to_writer(&mut w, report).map_err(std::io::Error::other)?;
        w.write_all(b"\n")?;
        return w.flush();
    }
    out.write_all(render(report, format, inputs).as_bytes())
}

/// Renders the report. `inputs` names the files analysed (SARIF locations, the HTML header).
pub fn render(report: &Report, format: Format, inputs: &[String]) -> String {
    match format {
        Format::Text => text::render(report),
        Format::Json => {
            serde_json::to_string_pretty(report).expect("a report is plain data") + "\n"
        }
        Format::Sarif => sarif::render(report, inputs),
        Format::Html => html::render(report, inputs),
    }
}

pub use svg::{graph_svg, summary_svg};

/// Short display name of a principal id: the last ARN segment, a GCP member's e-mail, an
/// Azure display name from the report.
pub fn short(report: &Report, id: &str) -> String {
    if id.starts_with("arn:") {
        // `user/alice`, `role/path/name`: the kind tells a group and a user of one name apart.
        return id.splitn(6, ':').nth(5).unwrap_or(id).to_string();
    }
    if let Some(p) = report.principal(id) {
        if !p.name.is_empty() {
            return p.name.clone();
        }
    }
    id.rsplit('/').next().unwrap_or(id).to_string()
}
