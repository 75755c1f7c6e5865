//! Result tables for the notebooks (feature `tables`): polars data frames built from JSON
//! records, shown as HTML in a notebook cell, and the summaries of training runs over seeds
//! next to the talk's numbers as polars queries ([`summarise`]: group by, aggregate, join).
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
use crate::experiments::{lm::LmResult, train::RunRecord, Published};
pub use crate::notebook::fmt_num;
pub use polars;
use polars::prelude::{col, len, lit, AnyValue, Column, DataFrame, Expr, IntoLazy, JoinArgs, JoinType, LazyFrame, SortMultipleOptions};
pub use serde_json;

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

/// The population standard deviation of a column within a group (the authors' tables use it),
/// null for a group of one: one seed has no spread.
fn spread(name: &str) -> Expr {
    polars::prelude::when(len().gt(lit(1))).then(col(name).std(0)).otherwise(lit(polars::prelude::NULL))
}

/// One row per training run: `system`, `solver`, `adjoint`, `seed`, `steps`, `best_loss`,
/// `train_sec`, `first_grad_rel_err`, `stored_states`, `stored_bytes`, `peak_rss_bytes` (null
/// when not recorded), `accepted_steps`.
///
/// # Errors
/// [`Error::Table`] if polars rejects the frame.
pub fn runs_frame(runs: &[RunRecord]) -> Result<DataFrame> {
    let text = |f: &dyn Fn(&RunRecord) -> String| runs.iter().map(f).collect::<Vec<String>>();
    let num = |f: &dyn Fn(&RunRecord) -> f64| runs.iter().map(f).collect::<Vec<f64>>();
    let cols = vec![
        Column::new("system".into(), text(&|r| r.spec.system.key().to_string())),
        Column::new("solver".into(), text(&|r| r.spec.solver.clone())),
        Column::new("adjoint".into(), text(&|r| r.spec.adjoint.key())),
        Column::new("seed".into(), runs.iter().map(|r| r.spec.seed).collect::<Vec<u64>>()),
        Column::new("steps".into(), runs.iter().map(|r| r.spec.train_steps as u64).collect::<Vec<u64>>()),
        Column::new("best_loss".into(), num(&|r| r.best_loss)),
        Column::new("train_sec".into(), num(&|r| r.train_sec)),
        Column::new("first_grad_rel_err".into(), num(&|r| r.first_grad_rel_err)),
        Column::new("stored_states".into(), runs.iter().map(|r| r.peak_stored_states as u64).collect::<Vec<u64>>()),
        Column::new("stored_bytes".into(), runs.iter().map(|r| r.peak_stored_bytes as u64).collect::<Vec<u64>>()),
        Column::new("peak_rss_bytes".into(), runs.iter().map(|r| r.peak_rss_bytes).collect::<Vec<Option<u64>>>()),
        Column::new("accepted_steps".into(), num(&|r| r.mean_accepted_steps)),
    ];
    DataFrame::new(runs.len(), cols).map_err(Error::from)
}

/// The published numbers, one row each: `system`, `solver`, `adjoint`, `metric`, `mean`, `std`.
///
/// # Errors
/// [`Error::Table`] if polars rejects the frame.
pub fn published_frame(published: &[Published]) -> Result<DataFrame> {
    let text = |f: &dyn Fn(&Published) -> &str| published.iter().map(|p| f(p).to_string()).collect::<Vec<String>>();
    let cols = vec![
        Column::new("system".into(), text(&|p| &p.system)),
        Column::new("solver".into(), text(&|p| &p.solver)),
        Column::new("adjoint".into(), text(&|p| &p.adjoint)),
        Column::new("metric".into(), text(&|p| &p.metric)),
        Column::new("mean".into(), published.iter().map(|p| p.mean).collect::<Vec<f64>>()),
        Column::new("std".into(), published.iter().map(|p| p.std).collect::<Vec<Option<f64>>>()),
    ];
    DataFrame::new(published.len(), cols).map_err(Error::from)
}

/// Training runs summarised over seeds, one row per (system, solver, adjoint, steps) in
/// first-seen order, joined with the talk's numbers for the same cell of its tables and with the
/// reversible run of the same system, solver and steps.
///
/// Columns: the four keys; `seeds`; `loss`, `loss_sd` (mean and population standard deviation
/// of the best loss, as the authors' tables; null for one seed); `sec`, `sec_sd` (training time);
/// `first_grad_rel_err`, `stored_states`, `stored_bytes`, `peak_rss_bytes` (largest over seeds);
/// `accepted_steps` (mean); `talk_loss`, `talk_loss_sd`, `talk_min`, `talk_min_sd` (published,
/// null where the talk has no number); `rev_loss`, `rev_sec`; `x_reversible` (our time ÷ our
/// reversible run's) and `talk_x_reversible` (the same ratio of the talk's times).
///
/// # Errors
/// [`Error::Table`] if a query fails.
pub fn summarise(runs: &[RunRecord], published: &[Published]) -> Result<DataFrame> {
    let keys = || [col("system"), col("solver"), col("adjoint")];
    let left = || JoinArgs::new(JoinType::Left);
    let talk = |metric: &str, name: &str| -> Result<LazyFrame> {
        Ok(published_frame(published)?.lazy().filter(col("metric").eq(lit(metric))).select([
            col("system"),
            col("solver"),
            col("adjoint"),
            col("mean").alias(name),
            col("std").alias(format!("{name}_sd")),
        ]))
    };
    let sums = runs_frame(runs)?
        .lazy()
        .group_by_stable([col("system"), col("solver"), col("adjoint"), col("steps")])
        .agg([
            len().alias("seeds"),
            col("best_loss").mean().alias("loss"),
            spread("best_loss").alias("loss_sd"),
            col("train_sec").mean().alias("sec"),
            spread("train_sec").alias("sec_sd"),
            col("first_grad_rel_err").max(),
            col("stored_states").max(),
            col("stored_bytes").max(),
            col("peak_rss_bytes").max(),
            col("accepted_steps").mean(),
        ])
        .with_row_index("order", None)
        .join(talk("best_loss", "talk_loss")?, keys(), keys(), left())
        .join(talk("runtime", "talk_min")?, keys(), keys(), left());
    let by = || [col("system"), col("solver"), col("steps")];
    let reversible = sums.clone().filter(col("adjoint").eq(lit("reversible"))).select([
        col("system"),
        col("solver"),
        col("steps"),
        col("loss").alias("rev_loss"),
        col("sec").alias("rev_sec"),
        col("talk_min").alias("rev_talk_min"),
    ]);
    sums.join(reversible, by(), by(), left())
        .with_columns([(col("sec") / col("rev_sec")).alias("x_reversible"), (col("talk_min") / col("rev_talk_min")).alias("talk_x_reversible")])
        .sort(["order"], SortMultipleOptions::default())
        .drop(polars::prelude::by_name(["order", "rev_talk_min"], true, false))
        .collect()
        .map_err(Error::from)
}

/// The columns of a [`summarise`] frame that a notebook shows, with readable names (stored
/// bytes in kB, peak RSS in MB).
///
/// # Errors
/// [`Error::Table`] if a column is missing.
pub fn summary_view(sums: &DataFrame) -> Result<DataFrame> {
    let named = |c: &str, name: &str| -> Expr { col(c).alias(name) };
    sums.clone()
        .lazy()
        .select([
            col("system"),
            col("solver"),
            col("adjoint"),
            col("seeds"),
            col("steps"),
            named("loss", "best loss"),
            named("loss_sd", "± sd"),
            named("talk_loss", "talk: loss"),
            named("talk_loss_sd", "talk: ± sd"),
            named("sec", "time (s)"),
            named("x_reversible", "× reversible"),
            named("talk_x_reversible", "talk: × reversible"),
            named("talk_min", "talk: time (min)"),
            named("stored_states", "stored carries"),
            (col("stored_bytes").cast(polars::prelude::DataType::Float64) / lit(1e3)).alias("stored kB"),
            (col("peak_rss_bytes").cast(polars::prelude::DataType::Float64) / lit(1e6)).alias("peak RSS (MB)"),
            named("accepted_steps", "accepted steps"),
            named("first_grad_rel_err", "1st grad rel err"),
        ])
        .collect()
        .map_err(Error::from)
}

/// The perplexity study's models grouped by family (first-seen order; a model without a family
/// is its own): `family`, `seeds`, `ppl` (the test perplexities, a list), `ppl_mean`,
/// `ppl_sd` (population standard deviation; null for one seed), `nfe` (largest forward
/// evaluations per token).
///
/// # Errors
/// [`Error::Table`] if a query fails.
pub fn lm_families(runs: &[LmResult]) -> Result<DataFrame> {
    let cols = vec![
        Column::new("family".into(), runs.iter().map(|r| if r.spec.family.is_empty() { r.name.clone() } else { r.spec.family.clone() }).collect::<Vec<String>>()),
        Column::new("test_ppl".into(), runs.iter().map(|r| r.test_ppl).collect::<Vec<f64>>()),
        Column::new("forward_nfe".into(), runs.iter().map(|r| r.forward_nfe).collect::<Vec<f64>>()),
    ];
    DataFrame::new(runs.len(), cols)?
        .lazy()
        .group_by_stable([col("family")])
        .agg([
            len().alias("seeds"),
            col("test_ppl").alias("ppl"),
            col("test_ppl").mean().alias("ppl_mean"),
            spread("test_ppl").alias("ppl_sd"),
            col("forward_nfe").max().alias("nfe"),
        ])
        .collect()
        .map_err(Error::from)
}

/// The rows of a list-of-f64 column of `df` (nulls as empty lists).
///
/// # Errors
/// [`Error::Table`] if the column is missing or not a list of numbers.
pub fn list_column(df: &DataFrame, name: &str) -> Result<Vec<Vec<f64>>> {
    let lists = df.column(name)?.list()?;
    (0..lists.len())
        .map(|i| match lists.get_as_series(i) {
            Some(s) => Ok(s.cast(&polars::prelude::DataType::Float64)?.f64()?.iter().map(|v| v.unwrap_or(f64::NAN)).collect()),
            None => Ok(Vec::new()),
        })
        .collect()
}

/// The values of a numeric column of `df` as f64 (nulls as NaN).
///
/// # Errors
/// [`Error::Table`] if the column is missing or not numeric.
pub fn f64_column(df: &DataFrame, name: &str) -> Result<Vec<f64>> {
    let c = df.column(name)?.cast(&polars::prelude::DataType::Float64)?;
    Ok(c.f64()?.iter().map(|v| v.unwrap_or(f64::NAN)).collect())
}

/// The values of a text column of `df` (nulls as "").
///
/// # Errors
/// [`Error::Table`] if the column is missing or not text.
pub fn str_column(df: &DataFrame, name: &str) -> Result<Vec<String>> {
    Ok(df.column(name)?.str()?.iter().map(|v| v.unwrap_or("").to_string()).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::experiments::train::{RunSpec, System};
    use revlib::adjoint::Adjoint;

    fn run(adjoint: Adjoint, seed: u64, best_loss: f64, train_sec: f64) -> RunRecord {
        let spec = RunSpec { system: System::Oscillator, solver: "midpoint".into(), adjoint, seed, train_steps: 10 };
        serde_json::from_value(serde_json::json!({
            "key": spec.key(), "spec": spec, "solver_name": "x", "best_loss": best_loss, "final_loss": best_loss, "losses": [],
            "log_every": 1, "train_sec": train_sec, "first_grad_rel_err": 1e-16 * seed as f64, "peak_stored_states": 1 + seed as usize,
            "peak_stored_bytes": 64, "recomputed_steps": 0.0, "mean_accepted_steps": 499.0, "field_evals_per_grad": 1.0,
            "peak_rss_bytes": null, "data_source": "test",
        }))
        .unwrap()
    }

    #[test]
    fn summaries_group_seeds_and_join_the_talks_numbers() {
        let runs = [
            run(Adjoint::Checkpoint(4), 0, 1.0, 30.0),
            run(Adjoint::Reversible, 0, 2.0, 10.0),
            run(Adjoint::Checkpoint(4), 1, 3.0, 50.0),
            run(Adjoint::Reversible, 1, 4.0, 10.0),
        ];
        let talk = |adjoint: &str, metric: &str, mean: f64, std: Option<f64>| Published {
            experiment: "physical".into(), system: "oscillator".into(), solver: "midpoint".into(), adjoint: adjoint.into(),
            metric: metric.into(), mean, std, unit: "".into(), note: None,
        };
        let published = [talk("reversible", "runtime", 5.0, None), talk("checkpoint_4", "runtime", 20.0, Some(1.0)), talk("checkpoint_4", "best_loss", 0.5, Some(0.1))];
        let s = summarise(&runs, &published).unwrap();
        // First-seen order, two seeds each; population std.
        assert_eq!(str_column(&s, "adjoint").unwrap(), ["checkpoint_4", "reversible"]);
        assert_eq!(f64_column(&s, "seeds").unwrap(), [2.0, 2.0]);
        assert_eq!(f64_column(&s, "loss").unwrap(), [2.0, 3.0]);
        assert_eq!(f64_column(&s, "loss_sd").unwrap(), [1.0, 1.0]);
        assert_eq!(f64_column(&s, "sec").unwrap(), [40.0, 10.0]);
        assert_eq!(f64_column(&s, "stored_states").unwrap(), [2.0, 2.0]);
        assert_eq!(f64_column(&s, "first_grad_rel_err").unwrap(), [1e-16, 1e-16]);
        // Joined: our time ÷ our reversible run's, the talk's ÷ the talk's.
        assert_eq!(f64_column(&s, "x_reversible").unwrap(), [4.0, 1.0]);
        assert_eq!(f64_column(&s, "talk_x_reversible").unwrap(), [4.0, 1.0]);
        assert_eq!(f64_column(&s, "rev_loss").unwrap(), [3.0, 3.0]);
        let talk_loss = f64_column(&s, "talk_loss").unwrap();
        assert_eq!(talk_loss[0], 0.5);
        assert!(talk_loss[1].is_nan(), "no published loss for the reversible row");
        let view = summary_view(&s).unwrap();
        assert!(f64_column(&s, "peak_rss_bytes").unwrap().iter().all(|v| v.is_nan()), "not recorded: null");
        assert_eq!(view.width(), 18);
        assert!(to_html(&view).contains("<td>checkpoint_4</td>"));
    }

    #[test]
    fn families_agree_with_a_direct_computation() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../results/full/lm-study.jsonl");
        let runs: Vec<LmResult> = crate::experiments::read_jsonl(&path).unwrap();
        assert!(runs.len() >= 5, "the committed study");
        let fams = lm_families(&runs).unwrap();
        let (names, lists, means, sds) = (str_column(&fams, "family").unwrap(), list_column(&fams, "ppl").unwrap(), f64_column(&fams, "ppl_mean").unwrap(), f64_column(&fams, "ppl_sd").unwrap());
        assert_eq!(lists.iter().map(Vec::len).sum::<usize>(), runs.len());
        for (i, name) in names.iter().enumerate() {
            let ppl: Vec<f64> = runs.iter().filter(|r| if r.spec.family.is_empty() { &r.name == name } else { &r.spec.family == name }).map(|r| r.test_ppl).collect();
            let (m, sd) = crate::experiments::mean_std(&ppl);
            assert_eq!(lists[i], ppl, "{name}: the list keeps the runs' order");
            assert!((means[i] - m).abs() <= 1e-12 * m, "{name}");
            if ppl.len() > 1 {
                assert!((sds[i] - sd).abs() <= 1e-9 * m, "{name}: {} vs {sd}", sds[i]);
            } else {
                assert!(sds[i].is_nan(), "{name}: one seed has no spread");
            }
        }
    }

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
