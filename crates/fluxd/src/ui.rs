//! The dashboard: a page served at `/` from assets built into the binary
//! (no CDN, nothing fetched from elsewhere, so it works on an air-gapped
//! cluster), and the stream of changes it follows.
//!
//! Every URL the page uses is relative to it (`ui/assets/app.js`,
//! `api/v1/...`), so it works under a path prefix and through
//! `kubectl port-forward` alike; `/ui` and `/ui/` send the browser back to
//! the page.

use std::collections::HashMap;
use std::convert::Infallible;
use std::hash::{DefaultHasher, Hash, Hasher};

use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use flux_api::Workload;
use futures::Stream;
use serde::Serialize;
use tokio::sync::watch;

use crate::jobs::Jobs;
use crate::server::View;

const INDEX: &str = include_str!("../ui/index.html");
const SCRIPT: &str = include_str!("../ui/app.js");
const STYLE: &str = include_str!("../ui/style.css");

/// The page and its assets. Each answer says not to cache it past the
/// binary that served it: an upgraded fluxd serves its own page.
pub fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route(
            "/",
            get(|| async { asset("text/html; charset=utf-8", INDEX) }),
        )
        .route("/ui", get(|| async { back_to_page("./") }))
        .route("/ui/", get(|| async { back_to_page("../") }))
        .route(
            "/ui/assets/app.js",
            get(|| async { asset("text/javascript; charset=utf-8", SCRIPT) }),
        )
        .route(
            "/ui/assets/style.css",
            get(|| async { asset("text/css; charset=utf-8", STYLE) }),
        )
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
            // The page loads nothing from anywhere else; say so to the browser.
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'",
            ),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        body,
    )
        .into_response()
}

/// A relative redirect, so a path prefix in front of fluxd is kept.
fn back_to_page(location: &'static str) -> Response {
    (StatusCode::FOUND, [(header::LOCATION, location)]).into_response()
}

/// What a `workloads` event says.
#[derive(Debug, Serialize)]
struct WorkloadsChanged {
    /// The revision read, when git has been read.
    revision: Option<String>,
    /// Workloads that are new or differ from the last event's.
    changed: Vec<String>,
    /// Workloads gone since the last event.
    removed: Vec<String>,
    /// Whether the images (tags, policies' admissions) changed.
    images: bool,
}

/// The workloads as one event left them: each id with a hash of the rest,
/// so a client's stream keeps a few bytes per workload, not a copy.
struct Seen {
    workloads: HashMap<String, u64>,
    images: crate::view::Images,
}

impl Seen {
    fn of(view: &View) -> Seen {
        Seen {
            workloads: view
                .workloads
                .iter()
                .map(|w| {
                    let hash = fingerprint(&w);
                    (w.id, hash)
                })
                .collect(),
            images: view.images.clone(),
        }
    }

    /// What differs in `view` from what was seen; `None` when nothing does.
    fn update(&mut self, view: &View) -> Option<WorkloadsChanged> {
        let now = Seen::of(view);
        let changed: Vec<String> = now
            .workloads
            .iter()
            .filter(|(id, hash)| self.workloads.get(*id) != Some(hash))
            .map(|(id, _)| id.clone())
            .collect();
        let removed: Vec<String> = self
            .workloads
            .keys()
            .filter(|id| !now.workloads.contains_key(*id))
            .cloned()
            .collect();
        let images = !self.images.same(&now.images);
        *self = now;
        if changed.is_empty() && removed.is_empty() && !images {
            return None;
        }
        Some(WorkloadsChanged {
            revision: view.read.as_ref().ok().map(|r| r.revision.clone()),
            changed,
            removed,
            images,
        })
    }
}

fn fingerprint(workload: &Workload) -> u64 {
    let mut hasher = DefaultHasher::new();
    workload.hash(&mut hasher);
    hasher.finish()
}

/// Follows the view and the jobs for one client.
struct Following {
    view: watch::Receiver<View>,
    jobs: watch::Receiver<u64>,
    queue: Jobs,
    seen: Seen,
}

impl Following {
    /// The next event; `None` once fluxd is stopping, so a client's open
    /// stream never holds up a shutdown.
    async fn next(&mut self) -> Option<Event> {
        loop {
            tokio::select! {
                biased;
                () = self.queue.stopped() => return None,
                changed = self.view.changed() => {
                    changed.ok()?;
                    let view = self.view.borrow_and_update();
                    let Some(change) = self.seen.update(&view) else { continue };
                    // Plain data always serializes.
                    return Event::default().event("workloads").json_data(change).ok();
                }
                changed = self.jobs.changed() => {
                    changed.ok()?;
                    self.jobs.borrow_and_update();
                    return Some(Event::default().event("jobs").data("{}"));
                }
            }
        }
    }
}

/// The server-sent events of `GET /api/v1/stream`: `workloads` each time
/// the view changes (with what changed), `jobs` each time a job moves.
pub fn changes(
    view: &watch::Receiver<View>,
    jobs: &Jobs,
) -> Sse<impl Stream<Item = Result<Event, Infallible>> + use<>> {
    let mut view = view.clone();
    let seen = Seen::of(&view.borrow_and_update());
    let following = Following {
        view,
        jobs: jobs.subscribe(),
        queue: jobs.clone(),
        seen,
    };
    let hello = Event::default().event("hello").data("{}");
    let events = futures::stream::unfold(Some((following, Some(hello))), |state| async move {
        let (mut following, hello) = state?;
        if let Some(hello) = hello {
            return Some((Ok(hello), Some((following, None))));
        }
        let event = following.next().await?;
        Some((Ok(event), Some((following, None))))
    });
    Sse::new(events).keep_alive(KeepAlive::default())
}
