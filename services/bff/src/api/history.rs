//! A vehicle's history and the work recommended at earlier visits (`docs/history.md`).

use axum::Json;
use axum::extract::{Path, State};
use futures::{StreamExt, stream};
use serde::Deserialize;
use tonic::Code;
use utoipa::IntoParams;

use carerp_kit::RequestContext;
use carerp_proto::billing::v1 as billing;
use carerp_proto::customer::v1 as customer;
use carerp_proto::workorder::v1 as pb;

use super::workorders::{describe_failure, invoice_of};
use super::{AppState, IdempotencyKey, page};
use crate::body::{JsonBody, QueryParams};
use crate::clients::Clients;
use crate::edge::Ctx;
use crate::models::{
    InvoiceSummary, Missing, OdometerReading, OfferAgain, Recommendation, RecommendationPage,
    VehicleHistory, Visit, WorkOrder, time,
};
use crate::problem::ApiError;

const SERVICE: &str = "workorder";

/// Invoices asked of billing at once for one history.
const INVOICE_CALLS_AT_ONCE: usize = 8;

/// Every work order of the vehicle with its jobs and decisions, inspection and invoice, the
/// odometer over time and the recommendations still open. Invoices are billing's: when it
/// does not answer (or the caller may not read invoices) the visits carry none and
/// `missing` says why.
#[utoipa::path(get, path = "/api/vehicles/{id}/history", tag = "history",
    params(("id" = String, Path, format = Uuid, description = "Vehicle id")),
    responses((status = 200, description = "The vehicle's history", body = VehicleHistory)))]
pub async fn vehicle_history(
    State(state): State<AppState>,
    Ctx(ctx): Ctx,
    Path(id): Path<String>,
) -> Result<Json<VehicleHistory>, ApiError> {
    let clients = &state.clients;
    let (mut customers, mut history) = (clients.customer.clone(), clients.history.clone());
    let (vehicle, found) = tokio::join!(
        customers
            .get_vehicle(clients.request(&ctx, customer::GetVehicleRequest { id: id.clone() })),
        history.get_vehicle_history(clients.request(
            &ctx,
            pb::GetVehicleHistoryRequest {
                vehicle_id: id.clone(),
            },
        )),
    );
    let mut missing = Vec::new();
    match vehicle {
        Ok(_) => {}
        // The work order service knows no vehicles: an unknown one would have an empty
        // history rather than be refused.
        Err(status) if matches!(status.code(), Code::NotFound | Code::InvalidArgument) => {
            return Err(ApiError::grpc("customer")(status));
        }
        Err(status) => missing.push(Missing {
            service: "customer".into(),
            reason: describe_failure("vehicle", &status),
        }),
    }
    let found = found.map_err(ApiError::grpc(SERVICE))?.into_inner();
    let HistoryWithInvoices {
        history: found,
        invoices,
        billing_failure,
    } = with_invoices(clients, &ctx, found).await;
    if let Some(status) = billing_failure {
        missing.push(Missing {
            service: "billing".into(),
            reason: describe_failure("invoices", &status),
        });
    }
    let visits = found
        .visits
        .into_iter()
        .zip(invoices)
        .filter_map(|(visit, invoice)| {
            Some(Visit {
                work_order: WorkOrder::from(visit.work_order?),
                inspection: visit.inspection.map(Into::into),
                offered_again_in: visit.offered_again_in.into_iter().collect(),
                invoice: invoice.map(InvoiceSummary::from),
            })
        })
        .collect();
    Ok(Json(VehicleHistory {
        vehicle_id: found.vehicle_id,
        visits,
        odometer: found
            .odometer
            .into_iter()
            .map(|r| OdometerReading {
                read_at: time(r.read_at),
                odometer_km: r.odometer_km,
                work_order_id: r.work_order_id,
            })
            .collect(),
        recommended: found.recommended.into_iter().map(Into::into).collect(),
        missing,
    }))
}

/// A vehicle's history with the invoice of each visit, as the REST route and the vehicle
/// page show it.
pub struct HistoryWithInvoices {
    pub history: pb::VehicleHistory,
    /// One per visit of `history`: `None` before invoicing or when billing failed.
    pub invoices: Vec<Option<billing::Invoice>>,
    /// Why some invoices are absent (billing down, or the caller may not read invoices).
    pub billing_failure: Option<tonic::Status>,
}

/// Asks billing for the invoice of every visit, a few at a time.
pub async fn with_invoices(
    clients: &Clients,
    ctx: &RequestContext,
    history: pb::VehicleHistory,
) -> HistoryWithInvoices {
    // Collected before awaiting: a closure held across the await would make the handler's
    // future not `Send` for every lifetime, which axum needs.
    let calls: Vec<_> = history
        .visits
        .iter()
        .map(|visit| async move {
            match &visit.work_order {
                Some(order) => invoice_of(clients, ctx, order).await,
                None => None,
            }
        })
        .collect();
    let answers: Vec<_> = stream::iter(calls)
        .buffered(INVOICE_CALLS_AT_ONCE)
        .collect()
        .await;
    let mut billing_failure = None;
    let invoices = answers
        .into_iter()
        .map(|answer| match answer {
            Some(Ok(invoice)) => Some(invoice.into_inner()),
            Some(Err(status)) => {
                if billing_failure.is_none() {
                    tracing::warn!(code = ?status.code(), message = status.message(), "vehicle history without invoices");
                }
                billing_failure = Some(status);
                None
            }
            None => None,
        })
        .collect();
    HistoryWithInvoices {
        history,
        invoices,
        billing_failure,
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct RecommendedQuery {
    /// Page size: default 50, at most 500.
    #[param(minimum = 0, maximum = 500)]
    pub limit: Option<i32>,
    /// `nextCursor` of the previous page.
    #[param(max_length = 1024, pattern = r"^[A-Za-z0-9_-]*$")]
    pub cursor: Option<String>,
    /// `YYYY-MM-DD`; absent: today in the garage's time zone.
    #[param(format = Date)]
    pub due_by: Option<String>,
    /// Only this vehicle's.
    #[param(format = Uuid)]
    pub vehicle_id: Option<String>,
}

/// The open recommendations due by a day, oldest due first: declined jobs from the day they
/// were declined, deferred ones from their remind-after day. The front desk's follow-up list.
#[utoipa::path(get, path = "/api/recommended-work", tag = "history", params(RecommendedQuery),
    responses((status = 200, description = "A page of recommendations", body = RecommendationPage)))]
pub async fn recommended_work(
    State(state): State<AppState>,
    Ctx(ctx): Ctx,
    QueryParams(query): QueryParams<RecommendedQuery>,
) -> Result<Json<RecommendationPage>, ApiError> {
    let clients = &state.clients;
    let response = clients
        .history
        .clone()
        .list_recommended_work(clients.request(
            &ctx,
            pb::ListRecommendedWorkRequest {
                page: page(query.limit, query.cursor),
                due_by: query.due_by.unwrap_or_default(),
                vehicle_id: query.vehicle_id.unwrap_or_default(),
            },
        ))
        .await
        .map_err(ApiError::grpc(SERVICE))?
        .into_inner();
    Ok(Json(RecommendationPage::new(
        response
            .recommended
            .into_iter()
            .map(Recommendation::from)
            .collect(),
        response.page,
    )))
}

/// Offer a declined or deferred job of an earlier visit of the same vehicle again: a
/// PROPOSED job of this work order with the same title and lines, its parts quoted at
/// today's prices and its labour at the tenant's rate. `Idempotency-Key` makes retries safe.
#[utoipa::path(post, path = "/api/work-orders/{id}/recommended-jobs", tag = "history",
    request_body = OfferAgain,
    params(("id" = String, Path, format = Uuid, description = "Work order id"),
        ("Idempotency-Key" = Option<String>, Header, min_length = 1, max_length = 200, pattern = r"^[!-~]+$", description = "Makes retries safe: a retry adds the job once")),
    responses((status = 200, description = "The work order", body = WorkOrder)))]
pub async fn offer_again(
    State(state): State<AppState>,
    Ctx(ctx): Ctx,
    Path(id): Path<String>,
    IdempotencyKey(key): IdempotencyKey,
    JsonBody(body): JsonBody<OfferAgain>,
) -> Result<Json<WorkOrder>, ApiError> {
    let clients = &state.clients;
    let order = clients
        .history
        .clone()
        .offer_again(clients.request(
            &ctx,
            pb::OfferAgainRequest {
                work_order_id: id,
                job_id: body.job_id,
                expected_version: body.expected_version,
                idempotency_key: key,
            },
        ))
        .await
        .map_err(ApiError::grpc(SERVICE))?
        .into_inner();
    Ok(Json(order.into()))
}
