//! Result tables for the notebooks (feature `tables`): polars data frames built from JSON
//! records, shown as HTML in a notebook cell.
//!
//! ```
//! use revlib_lab::table::frame;
//! let rows = vec![
//!     serde_json::json!({"adjoint": "reversible", "loss": 8.7e-5, "sec": 1.5}),
//!     serde_json::json!({"adjoint": "checkpoint_8", "loss": 8.7e-5, "sec": null}),
//! ];
//! let df = frame(&rows, &["adjoint", "loss", "sec"]).unwrap();
//! assert_eq!(df.shape(), (2, 3));
//! ```

use crate::error::{Error, Result};
pub use crate::notebook::fmt_num;
pub use polars;
pub use serde_json;
use polars::prelude::{AnyValue, Column, DataFrame};

/// A data frame with the named fields of `records` as columns, in the given order. A column
/// is numeric (f64, nulls allowed) when every present value is a number, text otherwise
/// (numbers printed, missing values null).
///
/// # Errors
/// [`Error::Table`] if polars rejects the frame.
pub fn frame(records: &[serde_json::Value], columns: &[&str]) -> Result<DataFrame> {
    let cols: Vec<Column> = columns
        .iter()
        .map(|&name| {
            let vals: Vec<&serde_json::Value> = records.iter().map(|r| r.get(name).unwrap_or(&serde_json::Value::Null)).collect();
            if vals.iter().all(|v| v.is_number() || v.is_null()) {
                Column::new(name.into(), vals.iter().map(|v| v.as_f64()).collect::<Vec<Option<f64>>>())
            } else {
                let text: Vec<Option<String>> = vals
                    .iter()
                    .map(|v| match v {
                        serde_json::Value::Null => None,
                        serde_json::Value::String(s) => Some(s.clone()),
                        other => Some(other.to_string()),
                    })
                    .collect();
                Column::new(name.into(), text)
            }
        })
        .collect();
    DataFrame::new(records.len(), cols).map_err(Error::from)
}

/// An HTML table of a data frame (numbers to 3 significant digits, nulls as "—").
pub fn to_html(df: &DataFrame) -> String {
    let mut s = String::from("<table class=\"revlib-table\"><thead><tr>");
    for c in df.columns() {
        s += &format!("<th>{}</th>", escape(c.name().as_str()));
    }
    s += "</tr></thead><tbody>";
    for i in 0..df.height() {
        s += "<tr>";
        for c in df.columns() {
            let cell = match c.get(i) {
                Ok(AnyValue::Null) | Err(_) => "—".to_string(),
                Ok(AnyValue::Float64(x)) => fmt_num(x),
                Ok(AnyValue::String(t)) => t.to_string(),
                Ok(v) => v.to_string(),
            };
            s += &format!("<td>{}</td>", escape(&cell));
        }
        s += "</tr>";
    }
    s + "</tbody></table>"
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// Display a data frame in a notebook cell (HTML; one rich output per cell in evcxr).
pub fn show(df: &DataFrame) {
    println!("EVCXR_BEGIN_CONTENT text/html\n{}\nEVCXR_END_CONTENT", to_html(df));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_render_as_html() {
        let rows = vec![serde_json::json!({"a": "x<y", "b": 0.000123456}), serde_json::json!({"a": 3, "b": null})];
        let df = frame(&rows, &["a", "b"]).unwrap();
        let html = to_html(&df);
        assert!(html.contains("<td>x&lt;y</td><td>1.23e-4</td>"), "{html}");
        assert!(html.contains("<td>3</td><td>—</td>"), "{html}");
        assert_eq!(fmt_num(1.7449), "1.74");
        assert_eq!(fmt_num(263.97), "264");
        assert_eq!(fmt_num(1000.0), "1000");
        assert_eq!(fmt_num(0.0123), "0.0123");
    }
}
