//! Watches, as the real API server serves them: `?watch=true` on a collection
//! answers a stream of JSON lines, one event each (`ADDED`, `MODIFIED`,
//! `DELETED`, `BOOKMARK`, `ERROR`).
//!
//! Without a resourceVersion (or with `0`) the stream starts with an `ADDED`
//! for every object selected now; with one, it replays the changes made after
//! it, or says `410 Expired` in an `ERROR` event when the store has forgotten
//! them. `sendInitialEvents=true` (streaming lists) sends the objects selected
//! now, then a bookmark annotated `k8s.io/initial-events-end`. An object that
//! a change moves into or out of the selection is `ADDED` or `DELETED`.
//! `allowWatchBookmarks=true` adds a bookmark every [`BOOKMARK_INTERVAL`];
//! the stream ends after `timeoutSeconds` (default 30 minutes, the real
//! server's shortest).

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tokio::time::Instant;

use super::Shared;
use super::store::{ApiError, Change, Event, Selection, Store, Target};
use super::types::ResourceType;
use super::{partial, query_value};

/// How often a watch that allows bookmarks gets one while nothing changes
/// (the real server sends one about every minute).
pub const BOOKMARK_INTERVAL: Duration = Duration::from_secs(60);

/// How long a watch lasts when the client sets no `timeoutSeconds`: the
/// real server's `--min-request-timeout` default.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1800);

/// Whether a GET asks for a watch (`watch=true` or `watch=1`).
pub fn wanted(query: &[(String, String)]) -> bool {
    query_value(query, "watch").is_some_and(|w| w == "true" || w == "1")
}

/// Where a watch starts.
enum Start {
    /// With the objects selected now, as `ADDED` events.
    Now,
    /// After this resourceVersion, replaying the changes made since.
    After(u64),
}

/// Answers a watch of `target`: the stream, or the error a bad request gets.
pub fn serve(
    shared: Arc<Shared>,
    store: &Store,
    target: &Target,
    query: &[(String, String)],
    metadata_only: bool,
) -> Result<Response, ApiError> {
    let mut fields = query_value(query, "fieldSelector")
        .unwrap_or_default()
        .to_string();
    // A watch of one named object (the old path form) is a field selection.
    if let Some(name) = &target.name {
        if !fields.is_empty() {
            fields.push(',');
        }
        fields.push_str(&format!("metadata.name={name}"));
    }
    let selection = store.selection(
        target,
        query_value(query, "labelSelector"),
        Some(fields.as_str()),
    )?;
    let bookmarks = query_value(query, "allowWatchBookmarks") == Some("true");
    let initial_events = query_value(query, "sendInitialEvents") == Some("true");
    if initial_events && query_value(query, "resourceVersionMatch") != Some("NotOlderThan") {
        return Err(ApiError::bad_request(
            "sendInitialEvents is forbidden for watch unless resourceVersionMatch is set to NotOlderThan",
        ));
    }
    if initial_events && !bookmarks {
        return Err(ApiError::bad_request(
            "sendInitialEvents requires setting allowWatchBookmarks to true",
        ));
    }
    let start = match query_value(query, "resourceVersion").unwrap_or_default() {
        _ if initial_events => Start::Now,
        "" | "0" => Start::Now,
        text => Start::After(
            text.parse()
                .map_err(|_| ApiError::bad_request(format!("invalid resource version: {text}")))?,
        ),
    };
    let asked = match query_value(query, "timeoutSeconds") {
        Some(text) => Some(
            text.parse()
                .map_err(|_| ApiError::bad_request(format!("invalid timeoutSeconds: {text}")))?,
        ),
        None => None,
    };
    let timeout = asked.map_or(DEFAULT_TIMEOUT, Duration::from_secs);
    let resource = match target.rt.group.as_str() {
        "" => target.rt.plural.clone(),
        group => format!("{}.{group}", target.rt.plural),
    };
    shared
        .watch_timeouts
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .push((resource, asked));
    let mut stream = Stream {
        shared,
        rt: target.rt.clone(),
        selection,
        metadata_only,
        cursor: store.revision(),
        pending: VecDeque::new(),
        changes: store.subscribe(),
        bookmarks,
        bookmark_due: false,
        next_bookmark: Instant::now() + BOOKMARK_INTERVAL,
        deadline: Instant::now() + timeout,
        done: false,
    };
    match start {
        Start::Now => {
            for object in store.selected(target, &stream.selection) {
                let line = stream.event("ADDED", object);
                stream.pending.push_back(line);
            }
            if initial_events {
                let end = stream.bookmark(store.revision(), true);
                stream.pending.push_back(end);
            }
        }
        Start::After(revision) => stream.cursor = revision,
    }
    let body = futures::stream::unfold(stream, |mut stream| async move {
        stream
            .next()
            .await
            .map(|bytes| (Ok::<_, Infallible>(bytes), stream))
    });
    Ok((
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        Body::from_stream(body),
    )
        .into_response())
}

/// One watch under way.
struct Stream {
    shared: Arc<Shared>,
    rt: ResourceType,
    selection: Selection,
    metadata_only: bool,
    /// Every change up to this revision has been looked at.
    cursor: u64,
    /// Event lines not yet sent.
    pending: VecDeque<Value>,
    changes: tokio::sync::watch::Receiver<u64>,
    bookmarks: bool,
    bookmark_due: bool,
    next_bookmark: Instant,
    deadline: Instant,
    /// The stream ends after what is pending.
    done: bool,
}

impl Stream {
    /// The next chunk of event lines, or `None` when the watch is over.
    async fn next(&mut self) -> Option<Bytes> {
        loop {
            if !self.pending.is_empty() {
                return Some(self.lines());
            }
            if self.done || Instant::now() >= self.deadline {
                return None;
            }
            self.catch_up();
            if !self.pending.is_empty() {
                continue;
            }
            tokio::select! {
                changed = self.changes.changed() => if changed.is_err() {
                    return None;
                },
                () = tokio::time::sleep_until(self.next_bookmark), if self.bookmarks => {
                    self.bookmark_due = true;
                    self.next_bookmark = Instant::now() + BOOKMARK_INTERVAL;
                }
                () = tokio::time::sleep_until(self.deadline) => return None,
            }
        }
    }

    /// Queues the selected changes made since the cursor (and a due bookmark).
    fn catch_up(&mut self) {
        let shared = self.shared.clone();
        let store = shared.store();
        let Some(changes) = store.changes_since(&self.selection, self.cursor) else {
            let status = json!({
                "kind": "Status", "apiVersion": "v1", "metadata": {},
                "status": "Failure", "reason": "Expired", "code": 410,
                "message": format!("too old resource version: {}", self.cursor),
            });
            self.pending
                .push_back(json!({"type": "ERROR", "object": status}));
            self.done = true;
            return;
        };
        for change in changes {
            if let Some(line) = self.translate(change) {
                self.pending.push_back(line);
            }
        }
        // Under the same lock: every change up to the store's revision is seen.
        self.cursor = store.revision();
        if self.bookmark_due {
            self.bookmark_due = false;
            let line = self.bookmark(self.cursor, false);
            self.pending.push_back(line);
        }
    }

    /// The event a change is for this selection: an object entering it is
    /// added, one leaving it deleted.
    fn translate(&self, change: Event) -> Option<Value> {
        let was = change
            .previous
            .as_ref()
            .is_some_and(|p| self.selection.matches(p));
        let is = self.selection.matches(&change.object);
        let kind = match (change.change, was, is) {
            (Change::Deleted, _, true) => "DELETED",
            (Change::Deleted, _, false) => return None,
            (_, true, true) => "MODIFIED",
            (_, false, true) => "ADDED",
            (_, true, false) => "DELETED",
            (_, false, false) => return None,
        };
        Some(self.event(kind, change.object))
    }

    fn event(&self, kind: &str, mut object: Value) -> Value {
        object["apiVersion"] = json!(self.rt.api_version());
        if self.metadata_only {
            object = partial(&object);
        }
        json!({"type": kind, "object": object})
    }

    /// A bookmark at `revision`; `initial_end` marks the end of the initial events.
    fn bookmark(&self, revision: u64, initial_end: bool) -> Value {
        let mut metadata = json!({"resourceVersion": revision.to_string()});
        if initial_end {
            metadata["annotations"] = json!({"k8s.io/initial-events-end": "true"});
        }
        let (kind, api_version) = if self.metadata_only {
            (
                "PartialObjectMetadata".to_string(),
                "meta.k8s.io/v1".to_string(),
            )
        } else {
            (self.rt.kind.clone(), self.rt.api_version())
        };
        let object = json!({"kind": kind, "apiVersion": api_version, "metadata": metadata});
        json!({"type": "BOOKMARK", "object": object})
    }

    fn lines(&mut self) -> Bytes {
        let mut out = Vec::new();
        for line in self.pending.drain(..) {
            serde_json::to_writer(&mut out, &line).expect("JSON values serialise");
            out.push(b'\n');
        }
        Bytes::from(out)
    }
}
