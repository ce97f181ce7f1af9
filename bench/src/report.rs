//! Results: one row per target × scenario, printed for people and as JSON.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::load::Measurement;

/// One measured (or median) row, as `--json` prints it.
#[derive(Debug, Clone, Serialize)]
pub struct BenchResult {
    pub target: String,
    pub scenario: String,
    pub concurrency: usize,
    /// Successful operations per second in the window.
    pub ops_per_sec: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    /// Failed operations by key (HTTP status, `io`, `timeout`, …).
    pub errors: BTreeMap<String, u64>,
    /// Successful operations in the window.
    pub ops: u64,
    pub duration_s: f64,
    /// CPU seconds of the server process (tree) in the window, when local.
    pub server_cpu_s: Option<f64>,
    /// Server CPU milliseconds per successful operation.
    pub cpu_ms_per_op: Option<f64>,
    /// CPU seconds of the load generator in the window.
    pub client_cpu_s: Option<f64>,
    /// How many runs this row is the median of.
    pub runs: usize,
    /// ops/s of each run, when `runs` > 1.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ops_per_sec_runs: Vec<f64>,
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

fn ms(micros: u64) -> f64 {
    round3(micros as f64 / 1000.0)
}

impl BenchResult {
    /// Summarizes a measurement.
    pub fn from_measurement(
        target: &str,
        scenario: &str,
        concurrency: usize,
        m: &Measurement,
    ) -> Self {
        let h = &m.latency_us;
        let secs = m.window.as_secs_f64();
        let (p50, p90, p99, max) = if h.is_empty() {
            (0, 0, 0, 0)
        } else {
            (
                h.value_at_quantile(0.50),
                h.value_at_quantile(0.90),
                h.value_at_quantile(0.99),
                h.max(),
            )
        };
        Self {
            target: target.to_owned(),
            scenario: scenario.to_owned(),
            concurrency,
            ops_per_sec: round3(m.ok as f64 / secs),
            p50_ms: ms(p50),
            p90_ms: ms(p90),
            p99_ms: ms(p99),
            max_ms: ms(max),
            errors: m.errors.clone(),
            ops: m.ok,
            duration_s: round3(secs),
            server_cpu_s: m.server_cpu_s.map(round3),
            cpu_ms_per_op: m
                .server_cpu_s
                .filter(|_| m.ok > 0)
                .map(|cpu| round3(cpu * 1000.0 / m.ok as f64)),
            client_cpu_s: m.client_cpu_s.map(round3),
            runs: 1,
            ops_per_sec_runs: Vec::new(),
        }
    }

    /// One line for people.
    pub fn human(&self) -> String {
        let errors = if self.errors.is_empty() {
            "no errors".to_owned()
        } else {
            let parts: Vec<String> = self
                .errors
                .iter()
                .map(|(k, n)| format!("{k}×{n}"))
                .collect();
            format!("errors {}", parts.join(" "))
        };
        let cpu = match (self.server_cpu_s, self.cpu_ms_per_op) {
            (Some(s), Some(per)) => format!("  server CPU {s:.2} s ({per:.3} ms/op)"),
            (Some(s), None) => format!("  server CPU {s:.2} s"),
            _ => String::new(),
        };
        let runs = if self.runs > 1 {
            format!("  [median of {}]", self.runs)
        } else {
            String::new()
        };
        format!(
            "{:<24} {:<12} c={:<3} {:>9.1} ops/s  p50 {:>7.2} ms  p90 {:>7.2} ms  p99 {:>7.2} ms  max {:>8.2} ms  {errors}{cpu}{runs}",
            self.target,
            self.scenario,
            self.concurrency,
            self.ops_per_sec,
            self.p50_ms,
            self.p90_ms,
            self.p99_ms,
            self.max_ms
        )
    }
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n == 0 {
        0.0
    } else if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

/// Per target and scenario (in first-seen order), the median of each figure across
/// runs; errors are summed.
pub fn medians(all: &[BenchResult]) -> Vec<BenchResult> {
    let mut keys: Vec<(String, String, usize)> = Vec::new();
    for r in all {
        let key = (r.target.clone(), r.scenario.clone(), r.concurrency);
        if !keys.contains(&key) {
            keys.push(key);
        }
    }
    keys.into_iter()
        .map(|(target, scenario, concurrency)| {
            let rows: Vec<&BenchResult> = all
                .iter()
                .filter(|r| {
                    r.target == target && r.scenario == scenario && r.concurrency == concurrency
                })
                .collect();
            let of =
                |f: fn(&BenchResult) -> f64| round3(median(rows.iter().map(|r| f(r)).collect()));
            let of_opt = |f: fn(&BenchResult) -> Option<f64>| {
                let values: Vec<f64> = rows.iter().filter_map(|r| f(r)).collect();
                (values.len() == rows.len()).then(|| round3(median(values)))
            };
            let mut errors = BTreeMap::new();
            for r in &rows {
                for (k, n) in &r.errors {
                    *errors.entry(k.clone()).or_default() += n;
                }
            }
            BenchResult {
                target,
                scenario,
                concurrency,
                ops_per_sec: of(|r| r.ops_per_sec),
                p50_ms: of(|r| r.p50_ms),
                p90_ms: of(|r| r.p90_ms),
                p99_ms: of(|r| r.p99_ms),
                max_ms: of(|r| r.max_ms),
                errors,
                ops: of(|r| r.ops as f64) as u64,
                duration_s: of(|r| r.duration_s),
                server_cpu_s: of_opt(|r| r.server_cpu_s),
                cpu_ms_per_op: of_opt(|r| r.cpu_ms_per_op),
                client_cpu_s: of_opt(|r| r.client_cpu_s),
                runs: rows.len(),
                ops_per_sec_runs: if rows.len() > 1 {
                    rows.iter().map(|r| r.ops_per_sec).collect()
                } else {
                    Vec::new()
                },
            }
        })
        .collect()
}

/// A Markdown table of `rows` (for `docs/performance.md`).
pub fn markdown(rows: &[BenchResult]) -> String {
    let mut out = String::from(
        "| target | scenario | c | ops/s | p50 ms | p90 ms | p99 ms | server CPU ms/op | errors |\n\
         |---|---|---:|---:|---:|---:|---:|---:|---|\n",
    );
    for r in rows {
        let cpu = r
            .cpu_ms_per_op
            .map_or_else(|| "–".to_owned(), |c| format!("{c:.3}"));
        let errors = if r.errors.is_empty() {
            "0".to_owned()
        } else {
            let parts: Vec<String> = r.errors.iter().map(|(k, n)| format!("{k}: {n}")).collect();
            parts.join(", ")
        };
        out.push_str(&format!(
            "| {} | {} | {} | {:.0} | {:.2} | {:.2} | {:.2} | {cpu} | {errors} |\n",
            r.target, r.scenario, r.concurrency, r.ops_per_sec, r.p50_ms, r.p90_ms, r.p99_ms
        ));
    }
    out
}

/// The `--json` line: `{"results": [...]}`.
pub fn json_line(rows: &[BenchResult]) -> String {
    serde_json::json!({ "results": rows }).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(target: &str, ops: f64, cpu: Option<f64>) -> BenchResult {
        BenchResult {
            target: target.into(),
            scenario: "read".into(),
            concurrency: 16,
            ops_per_sec: ops,
            p50_ms: ops / 1000.0,
            p90_ms: 0.0,
            p99_ms: 0.0,
            max_ms: 0.0,
            errors: BTreeMap::from([("500".to_owned(), 1)]),
            ops: ops as u64,
            duration_s: 1.0,
            server_cpu_s: cpu,
            cpu_ms_per_op: cpu,
            client_cpu_s: None,
            runs: 1,
            ops_per_sec_runs: vec![],
        }
    }

    #[test]
    fn medians_per_target_and_scenario() {
        let all = [
            row("a", 300.0, Some(1.0)),
            row("b", 5.0, None),
            row("a", 100.0, Some(3.0)),
            row("a", 200.0, Some(2.0)),
        ];
        let m = medians(&all);
        assert_eq!(m.len(), 2);
        assert_eq!((m[0].target.as_str(), m[0].ops_per_sec), ("a", 200.0));
        assert_eq!(m[0].server_cpu_s, Some(2.0));
        assert_eq!(m[0].errors["500"], 3);
        assert_eq!(m[0].runs, 3);
        assert_eq!(m[1].server_cpu_s, None);
        let line = json_line(&m);
        let parsed: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(parsed["results"][0]["scenario"], "read");
        assert!(markdown(&m).contains("| a | read | 16 | 200 |"));
    }
}
