//! `updraft slo check`: holds benchmark results up against service-level objectives written in
//! TOML, and optionally against a baseline run, so a CI job fails when performance drops below
//! a target or regresses past a tolerance. Results are any JSON document: a metric is named by
//! a dotted path into it (`check.releases_10000.rps`, `runs.0.p99_ms`), or by `name` in a list
//! of `{"name", "value"}` objects (the shape many benchmark tools write).
//!
//! Exit codes: 0 every objective holds, 7 at least one is violated, regressed or missing from
//! the results, 2 a file is missing or malformed (the message names the file and the field).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use serde_json::{json, Value};

use crate::exit::coded;

/// Exit code when an objective does not hold. Distinct from every other `updraft` exit code.
pub const VIOLATED: i32 = 7;
/// Exit code for a missing or malformed SLO, results or baseline file.
pub const MALFORMED: i32 = 2;

#[derive(Subcommand)]
pub enum SloCmd {
    /// Check benchmark results against SLOs and, optionally, a baseline run.
    #[command(after_help = CHECK_HELP)]
    Check(CheckArgs),
}

const CHECK_HELP: &str = "\
Example:
  updraft slo check --slos slos.toml --results bench.json --baseline main-bench.json

slos.toml:
  # default tolerance for every objective below that sets none
  max_regression_pct = 10

  [[slo]]
  metric = \"update_check.rps\"          # dotted path into the results JSON
  comparator = \">=\"                    # >=, >, <=, <, ==; also says which way is better
  threshold = 20000                    # optional absolute objective
  max_regression_pct = 5               # optional: allowed worsening vs --baseline, percent
  unit = \"req/s\"                       # optional, for the table

  [[slo]]
  metric = \"update_check.p99_ms\"
  comparator = \"<=\"
  threshold = 2.0

Exit codes: 0 all objectives hold, 7 an objective is violated, regressed or missing,
2 a file is missing or malformed.";

#[derive(Args)]
pub struct CheckArgs {
    /// SLO definitions (TOML).
    #[arg(long, value_name = "FILE")]
    slos: PathBuf,
    /// Benchmark results (JSON).
    #[arg(long, value_name = "FILE")]
    results: PathBuf,
    /// Results of a reference run (JSON, same shape) to measure regressions against.
    #[arg(long, value_name = "FILE")]
    baseline: Option<PathBuf>,
    /// Print the verdicts as JSON instead of a table.
    #[arg(long)]
    json: bool,
}

pub fn run(cmd: SloCmd) -> anyhow::Result<i32> {
    match cmd {
        SloCmd::Check(args) => check_files(&args),
    }
}

fn check_files(args: &CheckArgs) -> anyhow::Result<i32> {
    let read = |path: &Path| std::fs::read_to_string(path).map_err(|e| coded(MALFORMED, format!("{}: cannot read: {e}", path.display())));
    let slos =
        parse_slos(&read(&args.slos)?, &args.slos.display().to_string()).map_err(|problems| coded(MALFORMED, problems.join("\n")))?;
    let results = parse_json(&read(&args.results)?, &args.results.display().to_string())?;
    let baseline = match &args.baseline {
        Some(path) => Some(parse_json(&read(path)?, &path.display().to_string())?),
        None => None,
    };
    let (results_file, baseline_file) = (args.results.display().to_string(), args.baseline.as_ref().map(|b| b.display().to_string()));
    let sources = Sources {
        results: &results,
        results_file: &results_file,
        baseline: baseline.as_ref(),
        baseline_file: baseline_file.as_deref().unwrap_or("baseline"),
    };
    let report = evaluate(&slos, &sources).map_err(|problems| coded(MALFORMED, problems.join("\n")))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report.to_json()).unwrap_or_default());
    } else {
        print!("{}", report.table());
    }
    Ok(if report.passed() { crate::exit::OK } else { VIOLATED })
}

fn parse_json(text: &str, file: &str) -> anyhow::Result<Value> {
    serde_json::from_str(text).map_err(|e| coded(MALFORMED, format!("{file}: not valid JSON: {e}")))
}

// ---- objectives ----

#[derive(Debug, Clone, Copy, PartialEq)]
enum Cmp {
    Ge,
    Gt,
    Le,
    Lt,
    Eq,
}

impl Cmp {
    fn parse(s: &str) -> Option<Cmp> {
        Some(match s {
            ">=" => Cmp::Ge,
            ">" => Cmp::Gt,
            "<=" => Cmp::Le,
            "<" => Cmp::Lt,
            "==" => Cmp::Eq,
            _ => return None,
        })
    }
    fn as_str(self) -> &'static str {
        match self {
            Cmp::Ge => ">=",
            Cmp::Gt => ">",
            Cmp::Le => "<=",
            Cmp::Lt => "<",
            Cmp::Eq => "==",
        }
    }
    fn holds(self, value: f64, threshold: f64) -> bool {
        match self {
            Cmp::Ge => value >= threshold,
            Cmp::Gt => value > threshold,
            Cmp::Le => value <= threshold,
            Cmp::Lt => value < threshold,
            Cmp::Eq => value == threshold,
        }
    }
    /// How much worse `value` is than `baseline`, in percent of the baseline (negative: better).
    /// For `==` any change counts as worse.
    fn worsening_pct(self, value: f64, baseline: f64) -> f64 {
        let delta = (value - baseline) / baseline.abs() * 100.0;
        match self {
            Cmp::Ge | Cmp::Gt => -delta,
            Cmp::Le | Cmp::Lt => delta,
            Cmp::Eq => delta.abs(),
        }
    }
}

#[derive(Debug, Clone)]
struct Slo {
    metric: String,
    cmp: Cmp,
    threshold: Option<f64>,
    max_regression_pct: Option<f64>,
    unit: Option<String>,
}

const SLO_FIELDS: [&str; 6] = ["metric", "comparator", "threshold", "max_regression_pct", "unit", "description"];

/// Parses the SLO file, reporting every problem at once, each naming the file and the field.
fn parse_slos(text: &str, file: &str) -> Result<Vec<Slo>, Vec<String>> {
    let table: toml::Table = text.parse().map_err(|e: toml::de::Error| vec![format!("{file}: not valid TOML: {}", e.message())])?;
    let mut problems = Vec::new();
    let number = |v: &toml::Value| match v {
        toml::Value::Integer(i) => Some(*i as f64),
        toml::Value::Float(f) if f.is_finite() => Some(*f),
        _ => None,
    };
    let mut default_tolerance = None;
    for (key, value) in &table {
        match key.as_str() {
            "slo" => {}
            "max_regression_pct" => match number(value) {
                Some(n) if n >= 0.0 => default_tolerance = Some(n),
                _ => problems.push(format!("{file}: max_regression_pct: expected a number of percent >= 0, found {}", show(value))),
            },
            other => problems.push(format!("{file}: {other}: unknown key (expected [[slo]] entries and max_regression_pct)")),
        }
    }
    let entries = match table.get("slo") {
        Some(toml::Value::Array(a)) => a.as_slice(),
        Some(_) => {
            problems.push(format!("{file}: slo: expected [[slo]] entries (an array of tables)"));
            &[]
        }
        None => {
            problems.push(format!("{file}: no objectives: add at least one [[slo]] entry"));
            &[]
        }
    };
    let mut slos = Vec::new();
    for (i, entry) in entries.iter().enumerate() {
        let Some(t) = entry.as_table() else {
            problems.push(format!("{file}: slo[{i}]: expected a table"));
            continue;
        };
        let metric = t.get("metric").and_then(|v| v.as_str()).map(str::to_owned);
        let at = match &metric {
            Some(m) => format!("{file}: slo[{i}] ({m})"),
            None => format!("{file}: slo[{i}]"),
        };
        let before = problems.len();
        for key in t.keys() {
            if !SLO_FIELDS.contains(&key.as_str()) {
                problems.push(format!("{at}.{key}: unknown field (expected one of {})", SLO_FIELDS.join(", ")));
            }
        }
        match t.get("metric") {
            Some(toml::Value::String(m)) if !m.trim().is_empty() => {}
            Some(v) => problems.push(format!("{at}.metric: expected a non-empty string, found {}", show(v))),
            None => problems.push(format!("{at}.metric: missing")),
        }
        let cmp = match t.get("comparator") {
            Some(toml::Value::String(c)) => Cmp::parse(c.trim()).or_else(|| {
                problems.push(format!("{at}.comparator: expected one of >=, >, <=, <, ==, found {c:?}"));
                None
            }),
            Some(v) => {
                problems.push(format!("{at}.comparator: expected a string such as \">=\", found {}", show(v)));
                None
            }
            None => {
                problems.push(format!("{at}.comparator: missing (one of >=, >, <=, <, ==)"));
                None
            }
        };
        let threshold = t.get("threshold").and_then(|v| {
            number(v).or_else(|| {
                problems.push(format!("{at}.threshold: expected a number, found {}", show(v)));
                None
            })
        });
        let tolerance = match t.get("max_regression_pct") {
            Some(v) => match number(v) {
                Some(n) if n >= 0.0 => Some(n),
                _ => {
                    problems.push(format!("{at}.max_regression_pct: expected a number of percent >= 0, found {}", show(v)));
                    None
                }
            },
            None => default_tolerance,
        };
        let unit = match t.get("unit") {
            Some(toml::Value::String(u)) => Some(u.clone()),
            Some(v) => {
                problems.push(format!("{at}.unit: expected a string, found {}", show(v)));
                None
            }
            None => None,
        };
        if t.get("threshold").is_none() && tolerance.is_none() {
            problems.push(format!("{at}: sets neither threshold nor max_regression_pct, so it checks nothing"));
        }
        if problems.len() == before {
            if let (Some(metric), Some(cmp)) = (metric, cmp) {
                slos.push(Slo { metric, cmp, threshold, max_regression_pct: tolerance, unit });
            }
        }
    }
    if problems.is_empty() {
        Ok(slos)
    } else {
        Err(problems)
    }
}

/// A TOML value as an error message shows it.
fn show(v: &toml::Value) -> String {
    match v {
        toml::Value::String(s) => format!("{s:?}"),
        toml::Value::Integer(i) => i.to_string(),
        toml::Value::Float(f) => f.to_string(),
        toml::Value::Boolean(b) => b.to_string(),
        toml::Value::Datetime(d) => d.to_string(),
        toml::Value::Array(_) => "an array".into(),
        toml::Value::Table(_) => "a table".into(),
    }
}

// ---- finding metrics in JSON ----

#[derive(Debug, PartialEq)]
enum Lookup {
    Found(f64),
    /// The path leads nowhere; the text says where it stopped.
    Missing(String),
    /// The path leads to something that is not a number.
    NotANumber(String),
}

/// Finds a metric by dotted path. Object keys may themselves contain dots (the longest key that
/// matches wins); a segment that is a number indexes an array. A top-level list of
/// `{"name": …, "value": …}` objects is searched by name first.
fn lookup(root: &Value, path: &str) -> Lookup {
    if let Value::Array(items) = root {
        if let Some(item) = items.iter().find(|i| i.get("name").and_then(Value::as_str) == Some(path)) {
            return as_number(item.get("value").unwrap_or(&Value::Null), &format!("{path} (value)"));
        }
    }
    let segments: Vec<&str> = path.split('.').collect();
    let mut node = root;
    let mut i = 0;
    let mut walked = String::new();
    while i < segments.len() {
        let step = match node {
            Value::Object(map) => (i + 1..=segments.len()).rev().find_map(|j| map.get(&segments[i..j].join(".")).map(|next| (next, j))),
            Value::Array(items) => segments[i].parse::<usize>().ok().and_then(|n| items.get(n)).map(|next| (next, i + 1)),
            _ => None,
        };
        let Some((next, j)) = step else {
            let under = if walked.is_empty() { "the top level".to_owned() } else { format!("{walked:?}") };
            return Lookup::Missing(format!("no {:?} under {under}", segments[i]));
        };
        if !walked.is_empty() {
            walked.push('.');
        }
        walked.push_str(&segments[i..j].join("."));
        node = next;
        i = j;
    }
    as_number(node, path)
}

fn as_number(v: &Value, path: &str) -> Lookup {
    match v.as_f64() {
        Some(n) if n.is_finite() => Lookup::Found(n),
        _ => {
            let kind = match v {
                Value::Null => "null",
                Value::Bool(_) => "a boolean",
                Value::Number(_) => "not a finite number",
                Value::String(_) => "a string",
                Value::Array(_) => "an array",
                Value::Object(_) => "an object",
            };
            Lookup::NotANumber(format!("{path:?} is {kind}, not a number"))
        }
    }
}

// ---- verdicts ----

struct Sources<'a> {
    results: &'a Value,
    results_file: &'a str,
    baseline: Option<&'a Value>,
    baseline_file: &'a str,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Verdict {
    Pass,
    /// The absolute threshold does not hold.
    Violated,
    /// Worse than the baseline by more than the tolerance.
    Regressed,
    /// The results do not have the metric.
    Missing,
}

impl Verdict {
    fn as_str(self) -> &'static str {
        match self {
            Verdict::Pass => "pass",
            Verdict::Violated => "VIOLATED",
            Verdict::Regressed => "REGRESSED",
            Verdict::Missing => "MISSING",
        }
    }
}

struct Row {
    slo: Slo,
    value: Option<f64>,
    baseline: Option<f64>,
    /// Signed change from the baseline, percent.
    delta_pct: Option<f64>,
    verdict: Verdict,
    notes: Vec<String>,
}

struct Report {
    rows: Vec<Row>,
}

/// Evaluates every objective. A value that is present but not a number makes the file
/// malformed (every such problem is reported); a metric that is absent is a failed objective.
fn evaluate(slos: &[Slo], src: &Sources<'_>) -> Result<Report, Vec<String>> {
    let mut problems = Vec::new();
    let mut rows = Vec::new();
    for slo in slos {
        let mut notes = Vec::new();
        let value = match lookup(src.results, &slo.metric) {
            Lookup::Found(v) => Some(v),
            Lookup::Missing(why) => {
                notes.push(format!("not in the results: {why}"));
                None
            }
            Lookup::NotANumber(why) => {
                problems.push(format!("{}: {why}", src.results_file));
                None
            }
        };
        let baseline = match src.baseline.map(|b| lookup(b, &slo.metric)) {
            Some(Lookup::Found(v)) => Some(v),
            Some(Lookup::Missing(_)) => {
                if slo.max_regression_pct.is_some() {
                    notes.push("not in the baseline; regression not checked".into());
                }
                None
            }
            Some(Lookup::NotANumber(why)) => {
                problems.push(format!("{}: {why}", src.baseline_file));
                None
            }
            None => None,
        };
        if slo.threshold.is_none() && src.baseline.is_none() {
            problems.push(format!("slo {:?} has no threshold, only max_regression_pct: pass --baseline to check it", slo.metric));
        }
        let delta_pct = match (value, baseline) {
            (Some(v), Some(b)) if b != 0.0 => Some((v - b) / b.abs() * 100.0),
            _ => None,
        };
        let mut verdict = Verdict::Pass;
        if let Some(v) = value {
            if let Some(t) = slo.threshold {
                if !slo.cmp.holds(v, t) {
                    verdict = Verdict::Violated;
                    notes.push(format!("{} is not {} {}", fmt_num(v), slo.cmp.as_str(), fmt_num(t)));
                }
            }
            match (baseline, slo.max_regression_pct) {
                (Some(b), Some(tol)) if b != 0.0 => {
                    let worse = slo.cmp.worsening_pct(v, b);
                    if worse > tol {
                        if verdict == Verdict::Pass {
                            verdict = Verdict::Regressed;
                        }
                        notes.push(format!("{worse:.1}% worse than the baseline (allowed {}%)", fmt_num(tol)));
                    }
                }
                (Some(_), Some(_)) => notes.push("baseline is 0; regression not checked".into()),
                _ => {}
            }
        } else {
            verdict = Verdict::Missing;
        }
        rows.push(Row { slo: slo.clone(), value, baseline, delta_pct, verdict, notes });
    }
    if problems.is_empty() {
        Ok(Report { rows })
    } else {
        Err(problems)
    }
}

fn fmt_num(v: f64) -> String {
    if v == v.trunc() && v.abs() < 1e15 {
        format!("{v:.0}")
    } else if v.abs() >= 100.0 {
        format!("{v:.1}")
    } else {
        let s = format!("{v:.4}");
        s.trim_end_matches('0').trim_end_matches('.').to_owned()
    }
}

impl Report {
    fn passed(&self) -> bool {
        self.rows.iter().all(|r| r.verdict == Verdict::Pass)
    }

    fn table(&self) -> String {
        let header = ["metric", "value", "SLO", "baseline", "delta", "verdict"];
        let mut lines: Vec<[String; 6]> = vec![header.map(str::to_owned)];
        for r in &self.rows {
            let unit = r.slo.unit.as_deref().map(|u| format!(" {u}")).unwrap_or_default();
            let mut slo = match r.slo.threshold {
                Some(t) => format!("{} {}{unit}", r.slo.cmp.as_str(), fmt_num(t)),
                None => format!("{} baseline", r.slo.cmp.as_str()),
            };
            if let Some(tol) = r.slo.max_regression_pct {
                let _ = write!(slo, ", ±{}%", fmt_num(tol));
            }
            let mut verdict = r.verdict.as_str().to_owned();
            if !r.notes.is_empty() {
                let _ = write!(verdict, ": {}", r.notes.join("; "));
            }
            lines.push([
                r.slo.metric.clone(),
                r.value.map(|v| format!("{}{unit}", fmt_num(v))).unwrap_or_else(|| "-".into()),
                slo,
                r.baseline.map(fmt_num).unwrap_or_else(|| "-".into()),
                r.delta_pct.map(|d| format!("{d:+.1}%")).unwrap_or_else(|| "-".into()),
                verdict,
            ]);
        }
        let mut widths = [0usize; 6];
        for line in &lines {
            for (w, cell) in widths.iter_mut().zip(line) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let mut out = String::new();
        for line in &lines {
            let mut text = String::new();
            for (i, (cell, w)) in line.iter().zip(widths).enumerate() {
                if i == 5 {
                    text.push_str(cell);
                } else {
                    let _ = write!(text, "{cell:<w$}  ");
                }
            }
            out.push_str(text.trim_end());
            out.push('\n');
        }
        let failed = self.rows.iter().filter(|r| r.verdict != Verdict::Pass).count();
        if failed == 0 {
            let _ = writeln!(out, "all {} objectives hold", self.rows.len());
        } else {
            let _ = writeln!(out, "{failed} of {} objectives do not hold", self.rows.len());
        }
        out
    }

    fn to_json(&self) -> Value {
        let rows: Vec<Value> = self
            .rows
            .iter()
            .map(|r| {
                json!({
                    "metric": r.slo.metric,
                    "value": r.value,
                    "unit": r.slo.unit,
                    "comparator": r.slo.cmp.as_str(),
                    "threshold": r.slo.threshold,
                    "max_regression_pct": r.slo.max_regression_pct,
                    "baseline": r.baseline,
                    "delta_pct": r.delta_pct,
                    "verdict": r.verdict.as_str().to_ascii_lowercase(),
                    "notes": r.notes,
                })
            })
            .collect();
        json!({ "pass": self.passed(), "objectives": rows })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs a whole check from text; `Err` carries the malformed-input messages.
    fn run_check(slos: &str, results: &str, baseline: Option<&str>) -> Result<Report, Vec<String>> {
        let slos = parse_slos(slos, "slos.toml")?;
        let results: Value = serde_json::from_str(results).map_err(|e| vec![e.to_string()])?;
        let baseline: Option<Value> = baseline.map(|b| serde_json::from_str(b).expect("test baseline is JSON"));
        evaluate(&slos, &Sources { results: &results, results_file: "bench.json", baseline: baseline.as_ref(), baseline_file: "base.json" })
    }

    fn verdicts(report: &Report) -> Vec<(&str, Verdict)> {
        report.rows.iter().map(|r| (r.slo.metric.as_str(), r.verdict)).collect()
    }

    const SLOS: &str = r#"
        max_regression_pct = 10
        [[slo]]
        metric = "check.rps"
        comparator = ">="
        threshold = 1000
        unit = "req/s"
        [[slo]]
        metric = "check.p99_ms"
        comparator = "<="
        threshold = 2
        max_regression_pct = 50
    "#;

    #[test]
    fn passing_set() {
        let report = run_check(SLOS, r#"{"check": {"rps": 1500, "p99_ms": 1.2}}"#, None).unwrap();
        assert!(report.passed());
        assert_eq!(verdicts(&report), [("check.rps", Verdict::Pass), ("check.p99_ms", Verdict::Pass)]);
        let table = report.table();
        assert!(table.contains("check.rps") && table.contains(">= 1000 req/s") && table.contains("all 2 objectives hold"), "{table}");
    }

    #[test]
    fn threshold_violation() {
        let report = run_check(SLOS, r#"{"check": {"rps": 900, "p99_ms": 1.2}}"#, None).unwrap();
        assert!(!report.passed());
        assert_eq!(verdicts(&report), [("check.rps", Verdict::Violated), ("check.p99_ms", Verdict::Pass)]);
        assert!(report.table().contains("900 is not >= 1000"), "{}", report.table());
        let json = report.to_json();
        assert_eq!(json["pass"], false);
        assert_eq!(json["objectives"][0]["verdict"], "violated");
    }

    #[test]
    fn regression_vs_baseline_beyond_tolerance() {
        // 1100 req/s passes the threshold but is 21% below the baseline's 1400 (allowed 10%);
        // p99 rose 40%, within its own 50%.
        let base = r#"{"check": {"rps": 1400, "p99_ms": 1.0}}"#;
        let report = run_check(SLOS, r#"{"check": {"rps": 1100, "p99_ms": 1.4}}"#, Some(base)).unwrap();
        assert_eq!(verdicts(&report), [("check.rps", Verdict::Regressed), ("check.p99_ms", Verdict::Pass)]);
        let rps = &report.rows[0];
        assert!((rps.delta_pct.unwrap() - (-21.43)).abs() < 0.01);
        assert!(rps.notes[0].contains("21.4% worse than the baseline (allowed 10%)"), "{:?}", rps.notes);
        // Within tolerance, and improvements, pass.
        let report = run_check(SLOS, r#"{"check": {"rps": 1300, "p99_ms": 0.5}}"#, Some(base)).unwrap();
        assert!(report.passed());
    }

    #[test]
    fn regression_only_objective_needs_a_baseline() {
        let slos = "[[slo]]\nmetric = \"ir\"\ncomparator = \"<=\"\nmax_regression_pct = 10\n";
        let report = run_check(slos, r#"{"ir": 105}"#, Some(r#"{"ir": 100}"#)).unwrap();
        assert!(report.passed());
        let report = run_check(slos, r#"{"ir": 111}"#, Some(r#"{"ir": 100}"#)).unwrap();
        assert_eq!(verdicts(&report), [("ir", Verdict::Regressed)]);
        let err = run_check(slos, r#"{"ir": 111}"#, None).err().unwrap();
        assert!(err[0].contains("pass --baseline"), "{err:?}");
        // A metric new in this run has no baseline yet: noted, not failed.
        let report = run_check(slos, r#"{"ir": 111}"#, Some(r#"{"other": 1}"#)).unwrap();
        assert!(report.passed());
        assert!(report.rows[0].notes[0].contains("not in the baseline"));
    }

    #[test]
    fn missing_metric_fails_and_says_where_the_path_stopped() {
        let report = run_check(SLOS, r#"{"check": {"rps": 1500}}"#, None).unwrap();
        assert_eq!(verdicts(&report), [("check.rps", Verdict::Pass), ("check.p99_ms", Verdict::Missing)]);
        assert!(report.rows[1].notes[0].contains(r#"no "p99_ms" under "check""#), "{:?}", report.rows[1].notes);
        assert!(!report.passed());
    }

    #[test]
    fn metric_paths() {
        let doc: Value =
            serde_json::from_str(r#"{"a": {"b": [10, {"c": 3.5}]}, "x.y": {"z": 7}, "runs": [{"rps": 1}], "s": "fast", "n": null}"#)
                .unwrap();
        let check = |path: &str, want: Lookup| assert_eq!(lookup(&doc, path), want, "{path}");
        check("a.b.0", Lookup::Found(10.0));
        check("a.b.1.c", Lookup::Found(3.5));
        check("x.y.z", Lookup::Found(7.0));
        check("runs.0.rps", Lookup::Found(1.0));
        check("a.q", Lookup::Missing(r#"no "q" under "a""#.into()));
        check("a.b.7", Lookup::Missing(r#"no "7" under "a.b""#.into()));
        check("nope", Lookup::Missing(r#"no "nope" under the top level"#.into()));
        check("s", Lookup::NotANumber(r#""s" is a string, not a number"#.into()));
        check("n", Lookup::NotANumber(r#""n" is null, not a number"#.into()));
        check("a", Lookup::NotANumber(r#""a" is an object, not a number"#.into()));
        // The list-of-named-values shape other benchmark tools write.
        let list: Value = serde_json::from_str(r#"[{"name": "check rps", "unit": "req/s", "value": 42}]"#).unwrap();
        assert_eq!(lookup(&list, "check rps"), Lookup::Found(42.0));
    }

    #[test]
    fn malformed_slo_files_name_the_file_and_every_bad_field() {
        let check = |text: &str, want: &[&str]| {
            let problems = parse_slos(text, "slos.toml").err().unwrap_or_else(|| panic!("accepted: {text}"));
            for w in want {
                assert!(problems.iter().any(|p| p.contains(w)), "no problem containing {w:?} in {problems:#?}");
            }
            assert!(problems.iter().all(|p| p.starts_with("slos.toml: ")), "{problems:#?}");
        };
        check("this is = not toml [", &["slos.toml: not valid TOML"]);
        check("", &["no objectives"]);
        check(
            "[[slo]]\nmetric = \"a\"\ncomparator = \"=>\"\nthreshold = \"fast\"\n",
            &["slo[0] (a).comparator: expected one of >=, >, <=, <, ==, found \"=>\"", "slo[0] (a).threshold: expected a number"],
        );
        check("[[slo]]\ncomparator = \">=\"\nthreshold = 1\n", &["slo[0].metric: missing"]);
        check("[[slo]]\nmetric = \"a\"\nthreshold = 1\n", &["slo[0] (a).comparator: missing"]);
        check("[[slo]]\nmetric = \"a\"\ncomparator = \">=\"\n", &["sets neither threshold nor max_regression_pct"]);
        check("[[slo]]\nmetric = \"a\"\ncomparator = \">=\"\ntreshold = 1\n", &["slo[0] (a).treshold: unknown field"]);
        check(
            "max_regression_pct = -1\n[[slo]]\nmetric = \"a\"\ncomparator = \">=\"\nthreshold = 1\nmax_regression_pct = \"x\"\n",
            &["slos.toml: max_regression_pct: expected a number", "slo[0] (a).max_regression_pct: expected a number"],
        );
        check("slo = 3\n", &["slo: expected [[slo]] entries"]);
        check("[slos]\n", &["slos: unknown key"]);
    }

    #[test]
    fn malformed_results_name_the_file_and_field() {
        let err = parse_json("{\"check\": ", "bench.json").unwrap_err();
        assert_eq!(crate::exit::code_of(&err), MALFORMED);
        assert!(err.to_string().starts_with("bench.json: not valid JSON"), "{err}");
        let problems = run_check(SLOS, r#"{"check": {"rps": "fast", "p99_ms": [1]}}"#, None).err().unwrap();
        assert_eq!(
            problems,
            [r#"bench.json: "check.rps" is a string, not a number"#, r#"bench.json: "check.p99_ms" is an array, not a number"#]
        );
    }

    #[test]
    fn comparators_and_direction() {
        let check = |cmp: Cmp, v: f64, t: f64, holds: bool| assert_eq!(cmp.holds(v, t), holds, "{v} {} {t}", cmp.as_str());
        check(Cmp::Ge, 1.0, 1.0, true);
        check(Cmp::Gt, 1.0, 1.0, false);
        check(Cmp::Le, 1.0, 1.0, true);
        check(Cmp::Lt, 0.5, 1.0, true);
        check(Cmp::Eq, 2.0, 2.0, true);
        // Higher is better for >=: a drop is a worsening; lower is better for <=.
        assert_eq!(Cmp::Ge.worsening_pct(90.0, 100.0), 10.0);
        assert_eq!(Cmp::Le.worsening_pct(90.0, 100.0), -10.0);
        assert_eq!(Cmp::Eq.worsening_pct(90.0, 100.0), 10.0);
    }
}
