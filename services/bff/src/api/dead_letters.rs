//! The tenant's dead letters for its owners: list, show, replay. The BFF reads the
//! dead-letter stream itself (there is no service behind these routes), so it checks the
//! permission rules [`rule::DEAD_LETTERS_READ`] and [`rule::DEAD_LETTERS_REPLAY`] here; the
//! work is the kit's ([`carerp_kit::dead_letter`]), as for `carerp-operator dlq`.

use async_nats::jetstream;
use axum::Json;
use axum::extract::{Extension, Path};
use chrono::{DateTime, Utc};
use http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use carerp_kit::dead_letter::{self, DeadLetterError};
use carerp_kit::permissions::{self, rule};

use crate::body::QueryParams;
use crate::edge::Ctx;
use crate::problem::ApiError;

/// The tenant's JetStream, for the dead-letter routes (an extension the BFF adds).
#[derive(Clone)]
pub struct DeadLetterStore {
    pub jetstream: jetstream::Context,
    pub tenant: String,
}

/// An event a consumer gave up on.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeadLetter {
    /// Its sequence in the dead-letter stream; names it to show or replay it.
    #[schema(minimum = 1)]
    pub sequence: u64,
    /// The consuming service that gave up on it.
    pub consumer: String,
    pub topic: String,
    #[schema(format = Uuid)]
    pub event_id: Option<String>,
    pub error: String,
    /// Deliveries before the consumer gave up.
    pub attempts: i64,
    pub dead_lettered_at: Option<DateTime<Utc>>,
    pub original_subject: String,
    /// The CloudEvent as it arrived (only on `GET /api/dead-letters/{sequence}`).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub event: Option<serde_json::Value>,
}

impl DeadLetter {
    fn from_kit(letter: dead_letter::DeadLetter, with_event: bool) -> Self {
        Self {
            sequence: letter.sequence,
            consumer: letter.consumer,
            topic: letter.topic,
            event_id: letter.event_id.map(|id| id.to_string()),
            error: letter.error,
            attempts: letter.attempts,
            dead_lettered_at: letter.dead_lettered_at,
            original_subject: letter.original_subject,
            event: with_event.then_some(letter.event),
        }
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DeadLetterQuery {
    /// Only this consuming service's.
    #[param(pattern = "^[a-z0-9-]{1,40}$")]
    pub consumer: Option<String>,
    /// Only those after this sequence (the last of the previous page).
    #[param(minimum = 0)]
    pub after: Option<u64>,
    /// At most this many (default and most: 200).
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<u16>,
}

fn require(ctx: &carerp_kit::RequestContext, rule: &str) -> Result<(), ApiError> {
    let Some(principal) = ctx.principal.as_ref() else {
        return Err(ApiError::Status(
            StatusCode::UNAUTHORIZED,
            "sign in first".into(),
        ));
    };
    permissions::require(principal.role, rule).map_err(ApiError::grpc("bff"))
}

fn failed(err: DeadLetterError) -> ApiError {
    match err {
        DeadLetterError::Consumer(_) => ApiError::field("consumer", err.to_string()),
        DeadLetterError::NotReplayable { .. } => {
            ApiError::Status(StatusCode::CONFLICT, err.to_string())
        }
        DeadLetterError::Stream { .. } | DeadLetterError::Nats { .. } => {
            tracing::warn!(action = "dead_letters", error = %err, "the dead-letter stream failed");
            ApiError::Status(
                StatusCode::SERVICE_UNAVAILABLE,
                "the dead letters cannot be read now; try again".into(),
            )
        }
    }
}

/// A sequence from the path: a positive integer, refused as 422 like any invalid parameter.
fn sequence(raw: &str) -> Result<u64, ApiError> {
    raw.parse::<u64>()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| ApiError::field("sequence", "must be a positive integer"))
}

fn not_found(sequence: u64) -> ApiError {
    ApiError::Status(
        StatusCode::NOT_FOUND,
        format!("no dead letter {sequence} (never was, replayed, or expired)"),
    )
}

/// The dead letters, oldest first (owners).
#[utoipa::path(get, path = "/api/dead-letters", tag = "dead letters", params(DeadLetterQuery),
    responses((status = 200, description = "Dead letters, without their events", body = [DeadLetter])))]
pub async fn list_dead_letters(
    Extension(store): Extension<DeadLetterStore>,
    Ctx(ctx): Ctx,
    QueryParams(query): QueryParams<DeadLetterQuery>,
) -> Result<Json<Vec<DeadLetter>>, ApiError> {
    require(&ctx, rule::DEAD_LETTERS_READ)?;
    if query.limit.is_some_and(|n| !(1..=200).contains(&n)) {
        return Err(ApiError::field("limit", "must be 1 to 200"));
    }
    let filter = dead_letter::Filter {
        consumer: query.consumer,
        after: query.after.unwrap_or(0),
        limit: usize::from(query.limit.unwrap_or(0)),
    };
    let letters = dead_letter::list(&store.jetstream, &store.tenant, &filter)
        .await
        .map_err(failed)?;
    Ok(Json(
        letters
            .into_iter()
            .map(|l| DeadLetter::from_kit(l, false))
            .collect(),
    ))
}

/// One dead letter with its event (owners).
#[utoipa::path(get, path = "/api/dead-letters/{sequence}", tag = "dead letters",
    params(("sequence" = u64, Path, minimum = 1, description = "Its sequence")),
    responses((status = 200, description = "The dead letter", body = DeadLetter)))]
pub async fn get_dead_letter(
    Extension(store): Extension<DeadLetterStore>,
    Ctx(ctx): Ctx,
    Path(raw): Path<String>,
) -> Result<Json<DeadLetter>, ApiError> {
    require(&ctx, rule::DEAD_LETTERS_READ)?;
    let sequence = sequence(&raw)?;
    dead_letter::get(&store.jetstream, &store.tenant, sequence)
        .await
        .map_err(failed)?
        .map(|l| Json(DeadLetter::from_kit(l, true)))
        .ok_or_else(|| not_found(sequence))
}

/// Publish the event again to its topic, through every consumer of it as any event (one
/// that handled it already ignores it), and remove the dead letter (owners).
#[utoipa::path(post, path = "/api/dead-letters/{sequence}/replay", tag = "dead letters",
    params(("sequence" = u64, Path, minimum = 1, description = "Its sequence")),
    responses((status = 200, description = "Replayed; the dead letter as it was", body = DeadLetter)))]
pub async fn replay_dead_letter(
    Extension(store): Extension<DeadLetterStore>,
    Ctx(ctx): Ctx,
    Path(raw): Path<String>,
) -> Result<Json<DeadLetter>, ApiError> {
    require(&ctx, rule::DEAD_LETTERS_REPLAY)?;
    let sequence = sequence(&raw)?;
    let letter = dead_letter::replay(&store.jetstream, &store.tenant, sequence)
        .await
        .map_err(failed)?
        .ok_or_else(|| not_found(sequence))?;
    tracing::info!(action = "dead_letters.replay", sequence, topic = %letter.topic, consumer = %letter.consumer, "dead letter replayed");
    Ok(Json(DeadLetter::from_kit(letter, false)))
}
