//! The metrics page: PD's own `/metrics` counters turned into per-second
//! rates and drawn as inline SVG line charts (drawn here, so the page needs
//! no charting library; the page's script only refreshes the chart
//! fragment every two seconds).
//!
//! Samples are taken from the same Prometheus text `/metrics` serves, every
//! [`SAMPLE_EVERY`], by one task started on the first dashboard visit; it
//! ends when the server's state is dropped. [`KEPT`] samples are kept.
//!
//! PD exports counters, not latency histograms, so there are no latency
//! percentiles here yet.

use std::collections::{HashMap, VecDeque};
use std::fmt::Write;
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

use axum::extract::{Query, State as AxState};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use super::{esc, table, St};
use crate::server::{now_ms, State};

/// Time between samples.
pub const SAMPLE_EVERY: Duration = Duration::from_secs(2);
/// Samples kept (five minutes).
pub const KEPT: usize = 150;

/// The series drawn: (id, title, metric name summed over its labels).
pub const SERIES: [(&str, &str, &str); 5] = [
    ("tso", "TSO requests / s", "pd_tso_requests_total"),
    ("grpc", "gRPC calls / s", "pd_grpc_requests_total"),
    ("http", "HTTP API requests / s", "pd_http_requests_total"),
    (
        "handshakes",
        "TLS handshakes / s",
        "tiox_tls_handshakes_total",
    ),
    (
        "failures",
        "TLS handshake failures / s",
        "tiox_tls_handshake_failures_total",
    ),
];

/// One sample: unix ms and the summed counter of each series.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Sample {
    /// Unix ms.
    pub t_ms: u64,
    /// Per [`SERIES`].
    pub values: [f64; SERIES.len()],
}

type Histories = Mutex<HashMap<u64, VecDeque<Sample>>>;

fn histories() -> &'static Histories {
    static H: OnceLock<Histories> = OnceLock::new();
    H.get_or_init(Histories::default)
}

/// Sums each series' metric over its label sets in Prometheus text.
pub fn sample_of(text: &str, t_ms: u64) -> Sample {
    let mut values = [0.0; SERIES.len()];
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((name_labels, v)) = line.rsplit_once(' ') else {
            continue;
        };
        let name = name_labels.split('{').next().unwrap_or_default();
        let Ok(v) = v.parse::<f64>() else { continue };
        for (i, (_, _, metric)) in SERIES.iter().enumerate() {
            if name == *metric {
                values[i] += v;
            }
        }
    }
    Sample { t_ms, values }
}

fn take_sample(s: &State) {
    let sample = sample_of(&crate::http::metrics_text(s), now_ms());
    let mut h = histories().lock().unwrap_or_else(|p| p.into_inner());
    let q = h.entry(s.member.member_id).or_default();
    q.push_back(sample);
    while q.len() > KEPT {
        q.pop_front();
    }
}

/// Starts the sampler for this member once (on the first visit).
pub fn ensure_sampler(s: &Arc<State>) {
    {
        let h = histories().lock().unwrap_or_else(|p| p.into_inner());
        if h.contains_key(&s.member.member_id) {
            return;
        }
    }
    take_sample(s);
    let weak: Weak<State> = Arc::downgrade(s);
    let id = s.member.member_id;
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(SAMPLE_EVERY).await;
            let Some(s) = weak.upgrade() else {
                histories()
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&id);
                return;
            };
            take_sample(&s);
        }
    });
}

/// A series as rates: (seconds before now, per-second rate).
pub fn rates(samples: &[Sample], series: usize) -> Vec<(f64, f64)> {
    let Some(last) = samples.last() else {
        return Vec::new();
    };
    samples
        .windows(2)
        .filter_map(|w| {
            let dt = w[1].t_ms.saturating_sub(w[0].t_ms) as f64 / 1000.0;
            if dt <= 0.0 {
                return None;
            }
            // A counter that went down was reset (restart): no rate.
            let dv = (w[1].values[series] - w[0].values[series]).max(0.0);
            Some((last.t_ms.saturating_sub(w[1].t_ms) as f64 / 1000.0, dv / dt))
        })
        .collect()
}

/// The metrics view.
#[derive(Clone, Debug, Serialize)]
pub struct MetricsView {
    /// Series ids and titles, in order.
    pub series: Vec<(String, String)>,
    /// The samples, oldest first.
    pub samples: Vec<Sample>,
}

fn gather(s: &Arc<State>) -> MetricsView {
    ensure_sampler(s);
    let samples = histories()
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(&s.member.member_id)
        .map(|q| q.iter().copied().collect())
        .unwrap_or_default();
    MetricsView {
        series: SERIES
            .iter()
            .map(|(id, title, _)| (id.to_string(), title.to_string()))
            .collect(),
        samples,
    }
}

const W: f64 = 560.0;
const H: f64 = 120.0;

/// One chart: the rate over the kept window, newest at the right.
pub fn chart(id: &str, title: &str, points: &[(f64, f64)]) -> String {
    // The x axis spans the samples there are (at least 30 s), so a fresh
    // sampler's few points are not squeezed into the right edge.
    let span = points.first().map_or(0.0, |p| p.0).max(30.0);
    let max = points.iter().map(|p| p.1).fold(0.0f64, f64::max);
    let top = if max > 0.0 { max * 1.1 } else { 1.0 };
    let now = points.last().map_or(0.0, |p| p.1);
    let mut out = format!(
        "<figure class=\"chart\"><figcaption>{} <span class=\"now\" id=\"now-{}\">{:.1}</span></figcaption>\
         <svg id=\"chart-{}\" viewBox=\"0 0 {W} {H}\" width=\"{W}\" height=\"{H}\" role=\"img\">\
         <rect class=\"frame\" x=\"0\" y=\"0\" width=\"{W}\" height=\"{H}\"/>\
         <text class=\"axis\" x=\"4\" y=\"12\">{:.1}/s</text>\
         <text class=\"axis\" x=\"4\" y=\"{}\">−{}s</text>",
        esc(title),
        esc(id),
        now,
        esc(id),
        top,
        H - 4.0,
        span as u64
    );
    if points.len() >= 2 {
        let mut path = String::new();
        for (i, (ago, v)) in points.iter().enumerate() {
            let x = W - ago / span * W;
            let y = H - v / top * (H - 16.0);
            let _ = write!(path, "{}{x:.1},{y:.1}", if i == 0 { "" } else { " " });
        }
        let _ = write!(out, "<polyline class=\"line\" points=\"{path}\"/>");
    } else {
        out.push_str("<text class=\"axis\" x=\"200\" y=\"64\">collecting samples…</text>");
    }
    out.push_str("</svg></figure>");
    out
}

fn render_charts(v: &MetricsView) -> String {
    let mut out = String::from("<div id=\"charts\" class=\"charts\">");
    for (i, (id, title)) in v.series.iter().enumerate() {
        out.push_str(&chart(id, title, &rates(&v.samples, i)));
    }
    out.push_str("</div>");
    out
}

fn render(s: &State, v: &MetricsView) -> String {
    let mut out = format!(
        "<p class=\"note\">Rates from this member's <a href=\"/metrics\">/metrics</a>, sampled \
         every {} s; the last {} minutes. PD exports no latency histograms yet.</p>",
        SAMPLE_EVERY.as_secs(),
        KEPT as u64 * SAMPLE_EVERY.as_secs() / 60
    );
    out.push_str(&render_charts(v));
    out.push_str("<h2>Counters now</h2>");
    let now = sample_of(&crate::http::metrics_text(s), now_ms());
    let rows: Vec<Vec<String>> = SERIES
        .iter()
        .zip(now.values)
        .map(|((_, _, metric), v)| vec![format!("<code>{metric}</code>"), format!("{v}")])
        .collect();
    out.push_str(&table(
        "counters",
        &["metric (summed over labels)", "value"],
        &rows,
    ));
    out
}

/// `?chart=1` returns only the charts (for the page's refresh).
#[derive(Debug, Default, Deserialize)]
pub struct Fragment {
    chart: Option<String>,
}

/// `GET /dashboard/metrics[?chart=1]`.
pub async fn page(AxState(s): St, Query(q): Query<Fragment>) -> Response {
    let v = gather(&s);
    if q.chart.is_some() {
        return (
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            render_charts(&v),
        )
            .into_response();
    }
    super::page(&s, "metrics", Ok(render(&s, &v)))
}

/// `GET /dashboard/api/metrics`.
pub async fn api(AxState(s): St) -> Response {
    super::json(Ok::<_, String>(gather(&s)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_a_metric_over_its_labels() {
        let text = "# HELP x\npd_tso_requests_total 7\n\
                    pd_grpc_requests_total{method=\"Tso\"} 3\n\
                    pd_grpc_requests_total{method=\"GetRegion\"} 4\n";
        let s = sample_of(text, 5);
        assert_eq!(s.values[0], 7.0);
        assert_eq!(s.values[1], 7.0);
        assert_eq!(s.values[2], 0.0);
    }

    #[test]
    fn rates_are_per_second_and_a_reset_counter_is_not_negative() {
        let mk = |t, v| Sample {
            t_ms: t,
            values: [v, 0.0, 0.0, 0.0, 0.0],
        };
        let r = rates(&[mk(0, 0.0), mk(2000, 10.0), mk(4000, 4.0)], 0);
        assert_eq!(r, vec![(2.0, 5.0), (0.0, 0.0)]);
    }
}
