//! A `metrics` recorder to read ssh-dial's metrics back in tests, and to
//! show them as Prometheus text.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use metrics::{Counter, Gauge, Histogram, Key, KeyName, Metadata, SharedString, Unit};

/// A [`metrics`](https://docs.rs/metrics) recorder that keeps every series
/// in memory, for tests to read (and for a quick text endpoint). Install it
/// once per process with [`MetricsRecorder::install`]; clones read the
/// same series.
///
/// Needs the cargo features `testing` and `metrics`.
///
/// # Examples
///
/// ```
/// use ssh_dial::testing::MetricsRecorder;
///
/// let metrics = MetricsRecorder::install().expect("no other recorder installed");
/// // ... dial ...
/// assert_eq!(metrics.gauge("ssh_dial_dials_in_flight", &[]).unwrap_or(0.0), 0.0);
/// ```
#[derive(Debug, Clone, Default)]
pub struct MetricsRecorder {
    series: Arc<Mutex<BTreeMap<Series, Value>>>,
}

/// A series: kind, name and sorted labels.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Series {
    kind: Kind,
    name: String,
    labels: Vec<(String, String)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Counter,
    Gauge,
    Histogram,
}

#[derive(Debug, Clone)]
enum Value {
    /// A counter's count, or a gauge's `f64` bits.
    Atomic(Arc<AtomicU64>),
    Histogram(Arc<Samples>),
}

/// A histogram's count and sum.
#[derive(Debug, Default)]
struct Samples(Mutex<(u64, f64)>);

impl metrics::HistogramFn for Samples {
    fn record(&self, value: f64) {
        let mut s = self.0.lock().unwrap_or_else(|e| e.into_inner());
        s.0 += 1;
        s.1 += value;
    }
}

impl MetricsRecorder {
    /// Installs a new recorder as the process's global one and returns it.
    ///
    /// # Errors
    ///
    /// If a global recorder is already installed.
    pub fn install() -> Result<MetricsRecorder, metrics::SetRecorderError<MetricsRecorder>> {
        let recorder = MetricsRecorder::default();
        metrics::set_global_recorder(recorder.clone())?;
        Ok(recorder)
    }

    fn value(&self, kind: Kind, name: &str, labels: &[(&str, &str)]) -> Option<Value> {
        let mut labels: Vec<(String, String)> = labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        labels.sort();
        let series = Series {
            kind,
            name: name.to_owned(),
            labels,
        };
        self.lock().get(&series).cloned()
    }

    /// The counter with this name and exactly these labels, if recorded.
    pub fn counter(&self, name: &str, labels: &[(&str, &str)]) -> Option<u64> {
        match self.value(Kind::Counter, name, labels)? {
            Value::Atomic(a) => Some(a.load(Ordering::Acquire)),
            Value::Histogram(_) => None,
        }
    }

    /// The gauge with this name and exactly these labels, if recorded.
    pub fn gauge(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        match self.value(Kind::Gauge, name, labels)? {
            Value::Atomic(a) => Some(f64::from_bits(a.load(Ordering::Acquire))),
            Value::Histogram(_) => None,
        }
    }

    /// How many samples the histogram with this name and exactly these
    /// labels has, if recorded.
    pub fn histogram_count(&self, name: &str, labels: &[(&str, &str)]) -> Option<u64> {
        match self.value(Kind::Histogram, name, labels)? {
            Value::Histogram(h) => Some(h.0.lock().unwrap_or_else(|e| e.into_inner()).0),
            Value::Atomic(_) => None,
        }
    }

    /// Every series in the Prometheus text format (histograms as their
    /// `_count` and `_sum`), sorted.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for (series, value) in self.lock().iter() {
            let labels = if series.labels.is_empty() {
                String::new()
            } else {
                let pairs: Vec<String> = series
                    .labels
                    .iter()
                    .map(|(k, v)| {
                        format!("{k}=\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\""))
                    })
                    .collect();
                format!("{{{}}}", pairs.join(","))
            };
            let _ = match value {
                Value::Atomic(a) if series.kind == Kind::Counter => {
                    writeln!(out, "{}{labels} {}", series.name, a.load(Ordering::Acquire))
                }
                Value::Atomic(a) => writeln!(
                    out,
                    "{}{labels} {}",
                    series.name,
                    f64::from_bits(a.load(Ordering::Acquire))
                ),
                Value::Histogram(h) => {
                    let (count, sum) = *h.0.lock().unwrap_or_else(|e| e.into_inner());
                    writeln!(out, "{}_count{labels} {count}", series.name)
                        .and_then(|()| writeln!(out, "{}_sum{labels} {sum}", series.name))
                }
            };
        }
        out
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<Series, Value>> {
        self.series.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn register(&self, kind: Kind, key: &Key) -> Value {
        let mut labels: Vec<(String, String)> = key
            .labels()
            .map(|l| (l.key().to_owned(), l.value().to_owned()))
            .collect();
        labels.sort();
        let series = Series {
            kind,
            name: key.name().to_owned(),
            labels,
        };
        self.lock()
            .entry(series)
            .or_insert_with(|| match kind {
                Kind::Histogram => Value::Histogram(Arc::default()),
                _ => Value::Atomic(Arc::new(AtomicU64::new(0))),
            })
            .clone()
    }
}

impl metrics::Recorder for MetricsRecorder {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}

    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        match self.register(Kind::Counter, key) {
            Value::Atomic(a) => Counter::from_arc(a),
            Value::Histogram(_) => Counter::noop(),
        }
    }

    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
        match self.register(Kind::Gauge, key) {
            Value::Atomic(a) => Gauge::from_arc(a),
            Value::Histogram(_) => Gauge::noop(),
        }
    }

    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        match self.register(Kind::Histogram, key) {
            Value::Histogram(h) => Histogram::from_arc(h),
            Value::Atomic(_) => Histogram::noop(),
        }
    }
}
