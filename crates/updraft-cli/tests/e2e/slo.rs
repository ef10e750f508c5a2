//! `updraft slo check` through the binary: exit codes and what a CI log shows.

use std::process::Command;

use crate::harness::bin;

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
"#;

/// Runs `updraft slo check` on the given file contents; returns (exit code, stdout, stderr).
fn slo_check(slos: &str, results: &str, baseline: Option<&str>, json: bool) -> (i32, String, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let write = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).expect("write");
        p
    };
    let mut cmd = Command::new(bin());
    cmd.args(["slo", "check", "--slos"]).arg(write("slos.toml", slos)).arg("--results").arg(write("bench.json", results));
    if let Some(b) = baseline {
        cmd.arg("--baseline").arg(write("base.json", b));
    }
    if json {
        cmd.arg("--json");
    }
    let out = cmd.output().expect("run updraft");
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn slo_check_exit_codes_pass_violation_regression_malformed() {
    let (code, out, _) = slo_check(SLOS, r#"{"check": {"rps": 1500, "p99_ms": 1.2}}"#, None, false);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("all 2 objectives hold"), "{out}");

    let (code, out, _) = slo_check(SLOS, r#"{"check": {"rps": 900, "p99_ms": 1.2}}"#, None, false);
    assert_eq!(code, 7, "{out}");
    assert!(out.contains("VIOLATED: 900 is not >= 1000"), "{out}");

    let base = r#"{"check": {"rps": 1400, "p99_ms": 1.0}}"#;
    let (code, out, _) = slo_check(SLOS, r#"{"check": {"rps": 1100, "p99_ms": 1.05}}"#, Some(base), true);
    assert_eq!(code, 7, "{out}");
    let v: serde_json::Value = serde_json::from_str(&out).expect("--json prints JSON");
    assert_eq!(v["pass"], false);
    assert_eq!(v["objectives"][0]["verdict"], "regressed");
    assert_eq!(v["objectives"][1]["verdict"], "pass");

    let (code, _, err) = slo_check("[[slo]]\nmetric = \"check.rps\"\ncomparator = \"=>\"\nthreshold = 1\n", "{}", None, false);
    assert_eq!(code, 2);
    assert!(err.contains("slos.toml: slo[0] (check.rps).comparator"), "{err}");

    let (code, _, err) = slo_check(SLOS, r#"{"check": {"rps": "fast", "p99_ms": 1}}"#, None, false);
    assert_eq!(code, 2);
    assert!(err.contains("bench.json: \"check.rps\" is a string, not a number"), "{err}");

    let (code, _, err) = slo_check(SLOS, "{not json", None, false);
    assert_eq!(code, 2);
    assert!(err.contains("bench.json: not valid JSON"), "{err}");
}
