//! The page frame and shared pieces. maud escapes every `(value)`, so request data (reasons,
//! names) can never become markup.

use axum::http::StatusCode;
use brevet_core::Role;
use chrono::{DateTime, Utc};
use maud::{html, Markup, DOCTYPE};

use super::Viewer;

pub fn page(title: &str, viewer: Option<&Viewer>, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · Brevet" }
                link rel="stylesheet" href="/static/portal.css";
                script src="/static/portal.js" defer {}
            }
            body {
                header.top {
                    a.brand href="/" { "Brevet" }
                    @if let Some(v) = viewer {
                        nav {
                            a href="/request" { "Request access" }
                            a href="/access" { "My access" }
                            a href="/requests" { "My requests" }
                            @if v.principal.has_role(Role::Approver) || v.principal.has_role(Role::Admin) {
                                a href="/approvals" { "To approve" }
                            }
                            @if v.principal.has_role(Role::Admin) {
                                a href="/admin/kill" { "Kill switch" }
                                a href="/admin/audit" { "Audit" }
                                a href="/analyzer" { "Analyzer" }
                            }
                        }
                        form.signout method="post" action="/logout" {
                            (csrf(v))
                            span.who { (v.principal.id) }
                            button type="submit" { "Sign out" }
                        }
                    }
                }
                main {
                    h1 { (title) }
                    (body)
                }
            }
        }
    }
}

/// The hidden CSRF field every state-changing form carries.
pub fn csrf(v: &Viewer) -> Markup {
    html! { input type="hidden" name="csrf" value=(v.csrf); }
}

pub fn error_page(status: StatusCode, message: &str) -> Markup {
    page(
        status.canonical_reason().unwrap_or("Error"),
        None,
        html! {
            p.error role="alert" { (message) }
            p { a href="/" { "Back to Brevet" } }
        },
    )
}

pub fn time(t: Option<DateTime<Utc>>) -> Markup {
    match t {
        Some(t) => html! { time datetime=(t.to_rfc3339()) { (t.format("%Y-%m-%d %H:%M:%S UTC")) } },
        None => html! { "—" },
    }
}

/// A live countdown (portal.js ticks it; without script it still shows the expiry time). At zero
/// the browser goes to `then` (a page fetched with GET), to show the grant's new state.
pub fn countdown(expires: Option<DateTime<Utc>>, then: &str) -> Markup {
    match expires {
        Some(t) => {
            let left = (t - Utc::now()).num_seconds().max(0);
            html! {
                span.countdown data-expires=(t.to_rfc3339()) data-then=(then) title=(t.to_rfc3339()) {
                    (format!("{}m {:02}s left", left / 60, left % 60))
                }
            }
        }
        None => html! { "—" },
    }
}

pub fn state_badge(state: &str) -> Markup {
    html! { span class=(format!("state state-{state}")) { (state) } }
}
