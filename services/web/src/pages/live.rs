//! `/live/work-orders`: server-sent events telling an open page that a work order changed
//! (a part line reserved or failed, the order completed, its invoice issued or paid), from
//! the BFF's follower of the tenant's stream ([`carerp_bff::tenant_events::LiveFeed`]).
//!
//! An event carries only the work order's id, never its data: the page fetches the part
//! that changed with its own, permission-checked request (htmx's SSE extension turns the
//! event `changed` into that request). `?id=` narrows the stream to one work order.
//!
//! A page is rendered with the feed's position (`?after=`), and a reconnecting browser sends
//! the last event id it saw (`Last-Event-ID`): either way the stream starts with the changes
//! it missed, so a line reserved between the render and the connection is not lost.
//!
//! The stream ends when the session's access token expires, the session is revoked or the
//! BFF stops; the browser reconnects through the session check, which refreshes the cookie
//! or sends the page to sign-in.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use carerp_bff::tenant_events::{Change, Missed, Subscription};
use futures::{Stream, StreamExt};
use serde::Deserialize;
use tokio::sync::broadcast::error::RecvError;
use uuid::Uuid;

use crate::Web;
use crate::page::{PageError, method};
use crate::session::Caller;

/// The SSE event name pages listen to (`hx-trigger="sse:changed"`; htmx reads no `-` in an event name).
pub const EVENT: &str = "changed";
pub const PATH: &str = "/live/work-orders";

#[derive(Deserialize)]
pub struct LiveQuery {
    id: Option<Uuid>,
    /// The feed's position when the page was rendered ([`carerp_bff::tenant_events::LiveFeed::position`]).
    after: Option<u64>,
}

/// `sse-connect` of a page showing one work order (`Some`) or all (`None`), rendered now.
pub fn connect_url(web: &Web, id: Option<&str>) -> String {
    let after = web.live.position();
    match id {
        Some(id) => format!("{PATH}?id={id}&after={after}"),
        None => format!("{PATH}?after={after}"),
    }
}

pub async fn work_orders(
    State(web): State<Web>,
    caller: Caller,
    Query(query): Query<LiveQuery>,
    headers: http::HeaderMap,
) -> Response {
    if let Err(refused) = caller.require(method::GET_WORK_ORDER) {
        return refused.into_response();
    }
    let Some(principal) = caller.ctx.principal.clone() else {
        return PageError::SignIn.into_response();
    };
    let until = (principal.expires_at - chrono::Utc::now())
        .to_std()
        .unwrap_or_default();
    // A reconnecting browser sends the last id it saw; it wins over the page's position.
    let after = headers
        .get("last-event-id")
        .and_then(|id| id.to_str().ok())
        .and_then(|id| id.parse().ok())
        .or(query.after)
        .unwrap_or_else(|| web.live.position());
    let shutdown = web.shutdown.clone();
    let subscription = web.live.subscribe(after);
    let watch = Watch::new(web, principal.session_id, query.id, subscription);
    let events = watch.into_stream().take_until(async move {
        tokio::select! {
            _ = tokio::time::sleep(until) => {}
            _ = shutdown.cancelled() => {}
        }
    });
    Sse::new(events)
        .keep_alive(KeepAlive::default())
        .into_response()
}

struct Watch {
    changes: tokio::sync::broadcast::Receiver<Change>,
    only: Option<Uuid>,
    /// Events to send before any new change: the position to resume from, then what the
    /// page missed.
    first: VecDeque<Event>,
    web: Web,
    session: Uuid,
}

impl Watch {
    fn new(web: Web, session: Uuid, only: Option<Uuid>, subscription: Subscription) -> Self {
        // An id at once: a browser that saw one sends `Last-Event-ID` when it reconnects,
        // even if nothing changed meanwhile.
        let mut first = VecDeque::from([Event::default()
            .id(subscription.position.to_string())
            .retry(Duration::from_secs(2))]);
        match subscription.missed {
            Missed::Everything => first.push_back(everything()),
            Missed::Changes(changes) => first.extend(
                // The newest is enough: the page fetches the whole part again.
                changes
                    .iter()
                    .rfind(|change| only.is_none_or(|id| id == change.work_order_id))
                    .map(changed),
            ),
        }
        Self {
            changes: subscription.changes,
            only,
            first,
            web,
            session,
        }
    }

    fn into_stream(self) -> impl Stream<Item = Result<Event, Infallible>> {
        futures::stream::unfold(self, |mut watch| async move {
            let event = watch.next().await?;
            Some((Ok(event), watch))
        })
    }

    /// The next event to send, or `None` when the stream must end.
    async fn next(&mut self) -> Option<Event> {
        if let Some(event) = self.first.pop_front() {
            return Some(event);
        }
        loop {
            let change = self.changes.recv().await;
            if self.web.authenticator.is_revoked(self.session) {
                return None;
            }
            match change {
                Ok(change) if self.only.is_none_or(|id| id == change.work_order_id) => {
                    return Some(changed(&change));
                }
                Ok(_) => {}
                // Changes were missed: whatever the page shows may be stale.
                Err(RecvError::Lagged(_)) => return Some(everything()),
                Err(RecvError::Closed) => return None,
            }
        }
    }
}

fn changed(change: &Change) -> Event {
    Event::default()
        .event(EVENT)
        .id(change.sequence.to_string())
        .data(change.work_order_id.to_string())
}

/// "Anything may have changed": the page fetches what it shows again.
fn everything() -> Event {
    Event::default().event(EVENT).data("*")
}
