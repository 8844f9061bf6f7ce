//! Prometheus metrics, written by hand in the text exposition format (the
//! server needs a handful of counters and histograms, not a metrics crate).

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// Upper bounds of the latency buckets, in seconds.
const SECONDS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// Upper bounds of the batch-size buckets (inputs per batch).
const INPUTS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0];
/// Upper bounds of the batch-token buckets.
const TOKENS: &[f64] = &[
    16.0, 64.0, 256.0, 512.0, 1024.0, 2048.0, 4096.0, 8192.0, 16384.0, 32768.0,
];

/// A cumulative histogram over fixed buckets.
#[derive(Debug)]
struct Histogram {
    bounds: &'static [f64],
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Self {
        Histogram {
            bounds,
            counts: vec![0; bounds.len()],
            sum: 0.0,
            count: 0,
        }
    }

    fn observe(&mut self, v: f64) {
        if let Some(i) = self.bounds.iter().position(|&b| v <= b) {
            self.counts[i] += 1;
        }
        self.sum += v;
        self.count += 1;
    }

    fn write(&self, out: &mut String, name: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        let mut cumulative = 0;
        for (b, c) in self.bounds.iter().zip(&self.counts) {
            cumulative += c;
            let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{b}\"}} {cumulative}");
        }
        let _ = writeln!(
            out,
            "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {}",
            self.count
        );
        let braces = |s: &str| {
            if s.is_empty() {
                String::new()
            } else {
                format!("{{{s}}}")
            }
        };
        let _ = writeln!(out, "{name}_sum{} {}", braces(labels), self.sum);
        let _ = writeln!(out, "{name}_count{} {}", braces(labels), self.count);
    }
}

/// Everything `/metrics` reports.
#[derive(Debug)]
pub struct Metrics {
    requests: Mutex<BTreeMap<(String, u16), u64>>,
    latency: Mutex<BTreeMap<String, Histogram>>,
    queue_wait: Mutex<Histogram>,
    inference: Mutex<Histogram>,
    batch_inputs: Mutex<Histogram>,
    batch_tokens: Mutex<Histogram>,
    /// Jobs waiting in the queue.
    pub queue_depth: AtomicUsize,
    tokens_total: AtomicU64,
    inputs_total: AtomicU64,
    /// Jobs dropped before computing because their client went away.
    pub cancelled_total: AtomicU64,
    /// Jobs turned away with 429 because the queue was full.
    pub rejected_total: AtomicU64,
    /// Tokens/s of the last batch, as f64 bits.
    last_tokens_per_second: AtomicU64,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            requests: Mutex::default(),
            latency: Mutex::default(),
            queue_wait: Mutex::new(Histogram::new(SECONDS)),
            inference: Mutex::new(Histogram::new(SECONDS)),
            batch_inputs: Mutex::new(Histogram::new(INPUTS)),
            batch_tokens: Mutex::new(Histogram::new(TOKENS)),
            queue_depth: AtomicUsize::new(0),
            tokens_total: AtomicU64::new(0),
            inputs_total: AtomicU64::new(0),
            cancelled_total: AtomicU64::new(0),
            rejected_total: AtomicU64::new(0),
            last_tokens_per_second: AtomicU64::new(0),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Metrics {
    /// Counts one finished request and its latency.
    pub fn request(&self, route: &str, status: u16, seconds: f64) {
        *lock(&self.requests)
            .entry((route.to_owned(), status))
            .or_default() += 1;
        lock(&self.latency)
            .entry(route.to_owned())
            .or_insert_with(|| Histogram::new(SECONDS))
            .observe(seconds);
    }

    /// Records one computed batch.
    pub fn batch(&self, inputs: usize, tokens: usize, queue_wait: &[f64], seconds: f64) {
        lock(&self.batch_inputs).observe(inputs as f64);
        lock(&self.batch_tokens).observe(tokens as f64);
        lock(&self.inference).observe(seconds);
        let mut qw = lock(&self.queue_wait);
        for w in queue_wait {
            qw.observe(*w);
        }
        self.tokens_total
            .fetch_add(tokens as u64, Ordering::Relaxed);
        self.inputs_total
            .fetch_add(inputs as u64, Ordering::Relaxed);
        if seconds > 0.0 {
            self.last_tokens_per_second
                .store((tokens as f64 / seconds).to_bits(), Ordering::Relaxed);
        }
    }

    /// Records one chunked document request (computed outside the batcher).
    pub fn chunked(&self, tokens: usize, seconds: f64) {
        lock(&self.inference).observe(seconds);
        self.tokens_total
            .fetch_add(tokens as u64, Ordering::Relaxed);
    }

    /// The text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = String::new();
        out.push_str("# HELP kiln_requests_total HTTP requests by route and gRPC calls by method, by status.\n");
        out.push_str("# TYPE kiln_requests_total counter\n");
        for ((route, status), n) in lock(&self.requests).iter() {
            let _ = writeln!(
                out,
                "kiln_requests_total{{route=\"{route}\",status=\"{status}\"}} {n}"
            );
        }
        out.push_str("# HELP kiln_request_duration_seconds Time from request to response.\n");
        out.push_str("# TYPE kiln_request_duration_seconds histogram\n");
        for (route, h) in lock(&self.latency).iter() {
            h.write(
                &mut out,
                "kiln_request_duration_seconds",
                &format!("route=\"{route}\""),
            );
        }
        let gauge = |out: &mut String, name: &str, help: &str, kind: &str, v: String| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}"
            );
        };
        gauge(
            &mut out,
            "kiln_queue_depth",
            "Requests waiting for the batching worker.",
            "gauge",
            self.queue_depth.load(Ordering::Relaxed).to_string(),
        );
        gauge(
            &mut out,
            "kiln_tokens_total",
            "Tokens embedded.",
            "counter",
            self.tokens_total.load(Ordering::Relaxed).to_string(),
        );
        gauge(
            &mut out,
            "kiln_inputs_total",
            "Inputs (texts or token arrays) embedded.",
            "counter",
            self.inputs_total.load(Ordering::Relaxed).to_string(),
        );
        gauge(
            &mut out,
            "kiln_tokens_per_second",
            "Throughput of the last batch.",
            "gauge",
            f64::from_bits(self.last_tokens_per_second.load(Ordering::Relaxed)).to_string(),
        );
        gauge(
            &mut out,
            "kiln_cancelled_total",
            "Queued requests dropped because the client went away.",
            "counter",
            self.cancelled_total.load(Ordering::Relaxed).to_string(),
        );
        gauge(
            &mut out,
            "kiln_rejected_total",
            "Requests refused with 429 because the queue was full.",
            "counter",
            self.rejected_total.load(Ordering::Relaxed).to_string(),
        );
        let hist = |out: &mut String, name: &str, help: &str, h: &Mutex<Histogram>| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
            lock(h).write(out, name, "");
        };
        hist(
            &mut out,
            "kiln_batch_inputs",
            "Inputs per computed batch.",
            &self.batch_inputs,
        );
        hist(
            &mut out,
            "kiln_batch_tokens",
            "Tokens per computed batch.",
            &self.batch_tokens,
        );
        hist(
            &mut out,
            "kiln_queue_wait_seconds",
            "Time a request waited in the queue.",
            &self.queue_wait,
        );
        hist(
            &mut out,
            "kiln_inference_seconds",
            "Time to compute one batch.",
            &self.inference,
        );
        out
    }
}

/// What a decoder's `/metrics` reports: the continuous-batching loop's
/// occupancy and each generation's figures.
#[derive(Debug)]
pub struct GenMetrics {
    requests_total: AtomicU64,
    prompt_tokens_total: AtomicU64,
    generated_tokens_total: AtomicU64,
    rejected_total: AtomicU64,
    ttft: Mutex<Histogram>,
    queue: Mutex<Histogram>,
}

impl Default for GenMetrics {
    fn default() -> Self {
        GenMetrics {
            requests_total: AtomicU64::new(0),
            prompt_tokens_total: AtomicU64::new(0),
            generated_tokens_total: AtomicU64::new(0),
            rejected_total: AtomicU64::new(0),
            ttft: Mutex::new(Histogram::new(SECONDS)),
            queue: Mutex::new(Histogram::new(SECONDS)),
        }
    }
}

impl GenMetrics {
    /// A finished generation: its tokens and the time it waited for a slot.
    pub fn finished(&self, prompt_tokens: usize, generated_tokens: usize, queue_seconds: f64) {
        self.requests_total.fetch_add(1, Ordering::Relaxed);
        self.prompt_tokens_total
            .fetch_add(prompt_tokens as u64, Ordering::Relaxed);
        self.generated_tokens_total
            .fetch_add(generated_tokens as u64, Ordering::Relaxed);
        lock(&self.queue).observe(queue_seconds);
    }

    /// A generation's first token arrived `seconds` after its request.
    pub fn first_token(&self, seconds: f64) {
        lock(&self.ttft).observe(seconds);
    }

    /// A request refused with 429.
    pub fn rejected(&self) {
        self.rejected_total.fetch_add(1, Ordering::Relaxed);
    }

    /// The text exposition, with the loop's `active` and `waiting` counts.
    pub fn render(&self, active: usize, waiting: usize) -> String {
        let mut out = String::new();
        let mut one = |name: &str, help: &str, kind: &str, v: String| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}"
            );
        };
        one(
            "kiln_generations_active",
            "Generations decoding in the batch now.",
            "gauge",
            active.to_string(),
        );
        one(
            "kiln_generations_waiting",
            "Generations waiting for a batch slot.",
            "gauge",
            waiting.to_string(),
        );
        for (name, help, v) in [
            (
                "kiln_generations_total",
                "Generations finished.",
                &self.requests_total,
            ),
            (
                "kiln_prompt_tokens_total",
                "Prompt tokens of finished generations.",
                &self.prompt_tokens_total,
            ),
            (
                "kiln_generated_tokens_total",
                "Tokens generated by finished generations (rate() gives tokens/s).",
                &self.generated_tokens_total,
            ),
            (
                "kiln_generations_rejected_total",
                "Generations refused with 429.",
                &self.rejected_total,
            ),
        ] {
            one(name, help, "counter", v.load(Ordering::Relaxed).to_string());
        }
        for (name, help, h) in [
            (
                "kiln_time_to_first_token_seconds",
                "From request to first generated token.",
                &self.ttft,
            ),
            (
                "kiln_generation_queue_seconds",
                "Time a generation waited for a batch slot.",
                &self.queue,
            ),
        ] {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
            lock(h).write(&mut out, name, "");
        }
        out
    }
}

/// Several models' expositions as one: every sample gets a
/// `model="ID"` label, and each metric family keeps one `# HELP`/`# TYPE`
/// header with the samples of every model under it (Prometheus refuses a
/// family declared twice).
pub fn combine<'a>(parts: impl IntoIterator<Item = (&'a str, String)>) -> String {
    // (family name, header lines, sample lines), in order of first sight.
    let mut families: Vec<(String, Vec<String>, Vec<String>)> = Vec::new();
    for (model, text) in parts {
        let label = format!("model=\"{}\"", escape_label(model));
        let mut current: Option<usize> = None;
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# HELP ") {
                let name = rest.split(' ').next().unwrap_or(rest);
                let at = families.iter().position(|f| f.0 == name);
                current = Some(at.unwrap_or_else(|| {
                    families.push((name.to_owned(), vec![line.to_owned()], Vec::new()));
                    families.len() - 1
                }));
                continue;
            }
            let Some(i) = current else { continue };
            if line.starts_with('#') {
                if !families[i].1.iter().any(|l| l == line) {
                    families[i].1.push(line.to_owned());
                }
                continue;
            }
            families[i].2.push(with_label(line, &label));
        }
    }
    let mut out = String::new();
    for (_, head, samples) in families {
        for l in head.iter().chain(&samples) {
            out.push_str(l);
            out.push('\n');
        }
    }
    out
}

/// A sample line with `label` first among its labels.
fn with_label(line: &str, label: &str) -> String {
    match line.find(['{', ' ']) {
        Some(i) if line[i..].starts_with("{}") => {
            format!("{}{{{label}}}{}", &line[..i], &line[i + 2..])
        }
        Some(i) if line[i..].starts_with('{') => {
            format!("{}{{{label},{}", &line[..i], &line[i + 1..])
        }
        Some(i) => format!("{}{{{label}}}{}", &line[..i], &line[i..]),
        None => line.to_owned(),
    }
}

/// A label value as the exposition format writes it.
fn escape_label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_is_cumulative() {
        let m = Metrics::default();
        m.batch(3, 100, &[0.002, 0.2], 0.01);
        m.batch(1, 10, &[], 0.5);
        let text = m.render();
        assert!(
            text.contains("kiln_batch_inputs_bucket{le=\"1\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("kiln_batch_inputs_bucket{le=\"4\"} 2\n"),
            "{text}"
        );
        assert!(text.contains("kiln_batch_inputs_count 2\n"), "{text}");
        assert!(text.contains("kiln_tokens_total 110\n"), "{text}");
        assert!(text.contains("kiln_queue_wait_seconds_count 2\n"), "{text}");
    }

    #[test]
    fn requests_by_route_and_status() {
        let m = Metrics::default();
        m.request("/embed", 200, 0.003);
        m.request("/embed", 200, 0.003);
        m.request("/embed", 429, 0.0001);
        let text = m.render();
        assert!(text.contains("kiln_requests_total{route=\"/embed\",status=\"200\"} 2\n"));
        assert!(text.contains("kiln_requests_total{route=\"/embed\",status=\"429\"} 1\n"));
        assert!(text.contains("kiln_request_duration_seconds_count{route=\"/embed\"} 3\n"));
    }

    #[test]
    fn combined_families_are_declared_once_with_model_labels() {
        let a = Metrics::default();
        a.request("/embed", 200, 0.003);
        a.batch(1, 10, &[0.001], 0.01);
        let b = Metrics::default();
        b.batch(2, 30, &[], 0.01);
        let text = combine([("minilm", a.render()), ("gemma", b.render())]);
        assert_eq!(
            text.matches("# HELP kiln_tokens_total ").count(),
            1,
            "{text}"
        );
        assert!(
            text.contains("kiln_tokens_total{model=\"minilm\"} 10\n"),
            "{text}"
        );
        assert!(
            text.contains("kiln_tokens_total{model=\"gemma\"} 30\n"),
            "{text}"
        );
        assert!(
            text.contains(
                "kiln_requests_total{model=\"minilm\",route=\"/embed\",status=\"200\"} 1\n"
            ),
            "{text}"
        );
        assert!(
            text.contains("kiln_batch_inputs_bucket{model=\"gemma\",le=\"2\"} 1\n"),
            "{text}"
        );
        // Every sample line carries a model label.
        for l in text.lines().filter(|l| !l.starts_with('#')) {
            assert!(l.contains("{model=\""), "{l}");
        }
        let g = GenMetrics::default();
        let text = combine([("gemma3", g.render(1, 2))]);
        assert!(
            text.contains("kiln_generations_active{model=\"gemma3\"} 1\n"),
            "{text}"
        );
        assert_eq!(escape_label("a\"b\\"), "a\\\"b\\\\");
    }
}
