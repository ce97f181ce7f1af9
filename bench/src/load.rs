//! The load generator: C workers, each looping over its own operations on its own
//! keep-alive connection, for a warm-up and then a measured window.

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

use hdrhistogram::Histogram;
use tokio::time::Instant;

/// How long and how wide one measurement is.
#[derive(Debug, Clone, Copy)]
pub struct LoadOptions {
    /// Workers running at once, each with one request in flight.
    pub concurrency: usize,
    /// The measured window.
    pub duration: Duration,
    /// Load before the window, not measured (connections open, caches fill).
    pub warmup: Duration,
}

/// How long a worker may go on past the window to finish its cycle (a link waiting for
/// its unlink), so the data is left as it was found.
const CYCLE_GRACE: Duration = Duration::from_secs(10);

/// One worker: performs operations one after another.
pub trait Worker: Send + 'static {
    /// Performs one operation; `Err` carries the error's key (an HTTP status such as
    /// `"409"`, or `"io"`, `"timeout"` …) as counted in the report.
    fn op(&mut self) -> impl Future<Output = Result<(), String>> + Send;

    /// Whether the worker may stop before its next operation (it is between cycles).
    fn at_cycle_start(&self) -> bool {
        true
    }
}

/// What one measurement saw.
#[derive(Debug)]
pub struct Measurement {
    /// Operations that succeeded inside the window.
    pub ok: u64,
    /// Failed operations inside the window, by key.
    pub errors: BTreeMap<String, u64>,
    /// Latency of every operation completed inside the window, in microseconds.
    pub latency_us: Histogram<u64>,
    /// The window's length.
    pub window: Duration,
    /// CPU seconds the server used during the window, when it could be read.
    pub server_cpu_s: Option<f64>,
    /// CPU seconds this process (the load generator) used during the window.
    pub client_cpu_s: Option<f64>,
}

pub(crate) fn new_histogram() -> Histogram<u64> {
    // 1 µs … 5 min, 3 significant digits.
    Histogram::new_with_bounds(1, 300_000_000, 3).expect("valid histogram bounds")
}

struct WorkerReport {
    ok: u64,
    errors: BTreeMap<String, u64>,
    latency_us: Histogram<u64>,
}

async fn drive<W: Worker>(mut worker: W, measure_from: Instant, end: Instant) -> WorkerReport {
    let mut report = WorkerReport {
        ok: 0,
        errors: BTreeMap::new(),
        latency_us: new_histogram(),
    };
    let hard_end = end + CYCLE_GRACE;
    loop {
        let now = Instant::now();
        if now >= end && (worker.at_cycle_start() || now >= hard_end) {
            break;
        }
        let started = Instant::now();
        let outcome = worker.op().await;
        let done = Instant::now();
        if done < measure_from || done >= end {
            continue;
        }
        let micros = u64::try_from((done - started).as_micros()).unwrap_or(u64::MAX);
        report.latency_us.saturating_record(micros.max(1));
        match outcome {
            Ok(()) => report.ok += 1,
            Err(key) => *report.errors.entry(key).or_default() += 1,
        }
    }
    report
}

/// Runs `workers` (one task each) for the warm-up then the window, sampling the
/// server's CPU seconds with `server_cpu` at both edges of the window.
pub async fn run<W: Worker>(
    options: &LoadOptions,
    workers: Vec<W>,
    server_cpu: impl Fn() -> Option<f64>,
) -> Measurement {
    let measure_from = Instant::now() + options.warmup;
    let end = measure_from + options.duration;
    let tasks: Vec<_> = workers
        .into_iter()
        .map(|w| tokio::spawn(drive(w, measure_from, end)))
        .collect();
    tokio::time::sleep_until(measure_from).await;
    let (server0, client0) = (server_cpu(), crate::cpu::own_seconds());
    tokio::time::sleep_until(end).await;
    let (server1, client1) = (server_cpu(), crate::cpu::own_seconds());

    let mut total = Measurement {
        ok: 0,
        errors: BTreeMap::new(),
        latency_us: new_histogram(),
        window: options.duration,
        server_cpu_s: server0.zip(server1).map(|(a, b)| b - a),
        client_cpu_s: client0.zip(client1).map(|(a, b)| b - a),
    };
    for task in tasks {
        match task.await {
            Ok(report) => {
                total.ok += report.ok;
                for (key, n) in report.errors {
                    *total.errors.entry(key).or_default() += n;
                }
                let _ = total.latency_us.add(&report.latency_us);
            }
            Err(_) => *total.errors.entry("worker panicked".into()).or_default() += 1,
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Sleeper(u32);

    impl Worker for Sleeper {
        async fn op(&mut self) -> Result<(), String> {
            self.0 += 1;
            tokio::time::sleep(Duration::from_millis(2)).await;
            if self.0 % 4 == 0 {
                Err("418".into())
            } else {
                Ok(())
            }
        }

        fn at_cycle_start(&self) -> bool {
            self.0 % 2 == 0
        }
    }

    #[tokio::test]
    async fn counts_successes_errors_and_latency() {
        let options = LoadOptions {
            concurrency: 3,
            duration: Duration::from_millis(300),
            warmup: Duration::from_millis(50),
        };
        let m = run(&options, (0..3).map(|_| Sleeper(0)).collect(), || Some(1.0)).await;
        assert!(m.ok > 30, "{m:?}");
        assert!(m.errors["418"] > 10);
        assert!(m.latency_us.value_at_quantile(0.5) >= 2000);
        assert_eq!(m.server_cpu_s, Some(0.0));
    }
}
