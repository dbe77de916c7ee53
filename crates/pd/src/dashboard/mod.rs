//! PD's web dashboard under `/dashboard/`: topology, replication health,
//! the certificates every port serves, the TLS audit, security events and
//! a metrics chart, as plain HTML pages rendered here (no build step; the
//! one stylesheet and the one small script are embedded with
//! `include_str!`), plus the same data as JSON under `/dashboard/api/`.
//!
//! ```text
//!  browser ──mTLS (client cert of the cluster CA)──► PD client port (any member)
//!      │                                            serve::accept_loop refuses
//!      │                                            anyone without one
//!      ▼
//!  forward::forward_grpc ── not the leader? ──► the leader, over PD's h2 link
//!      ▼
//!  dashboard::router
//!    /dashboard/               overview::page      members, stores, health
//!    /dashboard/regions        regions::page       voters, pending/down, heat map
//!    /dashboard/certificates   certs::page         dial every port, inspect the chain
//!    /dashboard/audit          certs::audit_page   the `tiox check` probes, on demand
//!    /dashboard/events         events::page        the security audit log's refusals
//!    /dashboard/metrics        metrics::page       counters as rates, inline SVG chart
//!    /dashboard/api/<page>     the same data as JSON
//! ```
//!
//! Access is never anonymous: the client port requires a client
//! certificate of the cluster CA before any HTTP is spoken, so an
//! unauthenticated browser gets a refused handshake, not a page. A PD
//! started with `--insecure` serves no dashboard at all (403). Pages set a
//! strict Content-Security-Policy (no inline script, nothing from other
//! origins) and are never cached.

pub mod certs;
pub mod events;
pub mod metrics;
pub mod overview;
pub mod regions;

use std::fmt::Write;
use std::sync::Arc;

use axum::extract::{Request, State as AxState};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;

use crate::server::State;

type St = AxState<Arc<State>>;

const CSS: &str = include_str!("assets/dashboard.css");
const JS: &str = include_str!("assets/dashboard.js");

/// The pages, in navigation order: (path under `/dashboard/`, title).
pub const PAGES: [(&str, &str); 6] = [
    ("", "Overview"),
    ("regions", "Regions"),
    ("certificates", "Certificates"),
    ("audit", "TLS audit"),
    ("events", "Security events"),
    ("metrics", "Metrics"),
];

/// The dashboard's routes, to be merged into PD's router.
pub fn router(state: Arc<State>) -> Router {
    Router::new()
        .route(
            "/dashboard",
            get(|| async { Redirect::permanent("/dashboard/") }),
        )
        .route("/dashboard/", get(overview::page))
        .route("/dashboard/regions", get(regions::page))
        .route("/dashboard/certificates", get(certs::page))
        .route("/dashboard/audit", get(certs::audit_page))
        .route("/dashboard/events", get(events::page))
        .route("/dashboard/metrics", get(metrics::page))
        .route("/dashboard/assets/dashboard.css", get(css))
        .route("/dashboard/assets/dashboard.js", get(js))
        .route("/dashboard/api/overview", get(overview::api))
        .route("/dashboard/api/regions", get(regions::api))
        .route("/dashboard/api/certificates", get(certs::api))
        .route("/dashboard/api/audit", get(certs::audit_api))
        .route("/dashboard/api/events", get(events::api))
        .route("/dashboard/api/metrics", get(metrics::api))
        .layer(axum::middleware::from_fn_with_state(state.clone(), guard))
        .with_state(state)
}

/// Refuses to serve without TLS, and sets the headers every dashboard
/// answer carries.
async fn guard(AxState(s): St, req: Request, next: Next) -> Response {
    if s.tls().is_none() {
        return (
            StatusCode::FORBIDDEN,
            "the dashboard is served only over mutual TLS; this PD runs with --insecure",
        )
            .into_response();
    }
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
             connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
        ),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    resp
}

async fn css() -> Response {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], CSS).into_response()
}

async fn js() -> Response {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        JS,
    )
        .into_response()
}

/// A JSON answer, or 503 with the reason when the data is not available
/// (no leader elected yet).
pub(crate) fn json<T: Serialize>(data: Result<T, String>) -> Response {
    match data {
        Ok(d) => Json(d).into_response(),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(serde_json::json!({ "error": e })),
        )
            .into_response(),
    }
}

/// Escapes text for HTML content and attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A whole page: the navigation, `body` (already HTML), or the error
/// when the data could not be had.
pub(crate) fn page(s: &State, current: &str, body: Result<String, String>) -> Response {
    let title = PAGES
        .iter()
        .find(|(p, _)| *p == current)
        .map_or("Dashboard", |(_, t)| t);
    let mut html = String::new();
    let _ = write!(
        html,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{title} · tiox PD</title>\
         <link rel=\"stylesheet\" href=\"assets/dashboard.css\">\
         <script src=\"assets/dashboard.js\" defer></script></head>\
         <body data-page=\"{page}\"><header><span class=\"brand\">tiox</span>\
         <span class=\"member\">PD {member}</span><nav>",
        title = esc(title),
        page = esc(if current.is_empty() {
            "overview"
        } else {
            current
        }),
        member = esc(&s.member.name),
    );
    for (path, name) in PAGES {
        let href = if path.is_empty() { "./" } else { path };
        let class = if path == current {
            " class=\"current\""
        } else {
            ""
        };
        let _ = write!(html, "<a href=\"{href}\"{class}>{}</a>", esc(name));
    }
    html.push_str("</nav></header><main>");
    let _ = write!(html, "<h1>{}</h1>", esc(title));
    let status = match body {
        Ok(b) => {
            html.push_str(&b);
            StatusCode::OK
        }
        Err(e) => {
            let _ = write!(html, "<p class=\"error\" id=\"error\">{}</p>", esc(&e));
            StatusCode::SERVICE_UNAVAILABLE
        }
    };
    html.push_str("</main></body></html>\n");
    (
        status,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        html,
    )
        .into_response()
}

/// An HTML table: a header row and rows of cells that are already HTML.
pub(crate) fn table(id: &str, head: &[&str], rows: &[Vec<String>]) -> String {
    let mut out = format!("<table id=\"{}\"><thead><tr>", esc(id));
    for h in head {
        let _ = write!(out, "<th>{}</th>", esc(h));
    }
    out.push_str("</tr></thead><tbody>");
    if rows.is_empty() {
        let _ = write!(
            out,
            "<tr><td colspan=\"{}\" class=\"none\">none</td></tr>",
            head.len()
        );
    }
    for r in rows {
        out.push_str("<tr>");
        for c in r {
            let _ = write!(out, "<td>{c}</td>");
        }
        out.push_str("</tr>");
    }
    out.push_str("</tbody></table>");
    out
}

/// `3h 4m 5s` style durations.
pub fn human_secs(s: u64) -> String {
    if s >= 86_400 {
        format!("{}d {}h", s / 86_400, s / 3600 % 24)
    } else if s >= 3600 {
        format!("{}h {}m", s / 3600, s / 60 % 60)
    } else if s >= 60 {
        format!("{}m {}s", s / 60, s % 60)
    } else {
        format!("{s}s")
    }
}

/// The `host:port` of a URL.
pub(crate) fn authority(url: &str) -> String {
    url.split("://")
        .last()
        .unwrap_or(url)
        .trim_end_matches('/')
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup_in_text_and_attributes() {
        assert_eq!(
            esc("<a href=\"x\">'&'</a>"),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
    }

    #[test]
    fn durations_read_as_people_write_them() {
        assert_eq!(human_secs(59), "59s");
        assert_eq!(human_secs(3725), "1h 2m");
        assert_eq!(human_secs(90_000), "1d 1h");
    }
}
