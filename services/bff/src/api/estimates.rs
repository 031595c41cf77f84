//! Jobs, estimates and the customer's decisions (`docs/estimates.md`); and the approval link's
//! routes, which need no sign-in: the link's token is their authorisation.

use axum::Json;
use axum::extract::{Path, State};

use carerp_proto::workorder::v1 as pb;

use super::workorders::VersionQuery;
use super::{AppState, Created, IdempotencyKey, created};
use crate::body::{JsonBody, QueryParams};
use crate::edge::Ctx;
use crate::models::{
    AddJob, Approval, CustomerDecision, DecideJob, Estimate, EstimateList, SendEstimate,
    SentEstimate, WorkOrder,
};
use crate::problem::ApiError;

const SERVICE: &str = "workorder";

/// Where the customer opens an estimate: the web app's public approval page.
pub fn approval_path(token: &str) -> String {
    format!("/approve/{token}")
}

/// Add a PROPOSED job (a concern to estimate); its lines follow with its `jobId`.
#[utoipa::path(post, path = "/api/work-orders/{id}/jobs", tag = "estimates",
    request_body = AddJob,
    params(("id" = String, Path, format = Uuid, description = "Work order id"),
        ("Idempotency-Key" = Option<String>, Header, description = "Makes retries safe: a retry adds no second job")),
    responses((status = 200, description = "The work order", body = WorkOrder)))]
pub async fn add_job(
    State(state): State<AppState>,
    Ctx(ctx): Ctx,
    Path(id): Path<String>,
    IdempotencyKey(key): IdempotencyKey,
    JsonBody(body): JsonBody<AddJob>,
) -> Result<Json<WorkOrder>, ApiError> {
    let clients = &state.clients;
    let order = clients
        .workorder
        .clone()
        .add_job(clients.request(
            &ctx,
            pb::AddJobRequest {
                work_order_id: id,
                title: body.title,
                expected_version: body.expected_version,
                idempotency_key: key,
            },
        ))
        .await
        .map_err(ApiError::grpc(SERVICE))?
        .into_inner();
    Ok(Json(order.into()))
}

/// Remove a PROPOSED job with its lines.
#[utoipa::path(delete, path = "/api/work-orders/{id}/jobs/{jobId}", tag = "estimates",
    params(("id" = String, Path, format = Uuid, description = "Work order id"),
        ("jobId" = String, Path, format = Uuid, description = "Job id"), VersionQuery),
    responses((status = 200, description = "The work order", body = WorkOrder)))]
pub async fn remove_job(
    State(state): State<AppState>,
    Ctx(ctx): Ctx,
    Path((id, job_id)): Path<(String, String)>,
    QueryParams(query): QueryParams<VersionQuery>,
) -> Result<Json<WorkOrder>, ApiError> {
    let clients = &state.clients;
    let order = clients
        .workorder
        .clone()
        .remove_job(clients.request(
            &ctx,
            pb::RemoveJobRequest {
                work_order_id: id,
                job_id,
                expected_version: query.expected_version.unwrap_or(0),
            },
        ))
        .await
        .map_err(ApiError::grpc(SERVICE))?
        .into_inner();
    Ok(Json(order.into()))
}

/// Record the customer's decision on a job, as they told the garage. Approving reserves the
/// job's parts; a declined or deferred job is remembered and never invoiced.
#[utoipa::path(put, path = "/api/work-orders/{id}/jobs/{jobId}/decision", tag = "estimates",
    request_body = DecideJob,
    params(("id" = String, Path, format = Uuid, description = "Work order id"),
        ("jobId" = String, Path, format = Uuid, description = "Job id")),
    responses((status = 200, description = "The work order", body = WorkOrder)))]
pub async fn decide_job(
    State(state): State<AppState>,
    Ctx(ctx): Ctx,
    Path((id, job_id)): Path<(String, String)>,
    JsonBody(body): JsonBody<DecideJob>,
) -> Result<Json<WorkOrder>, ApiError> {
    let clients = &state.clients;
    let order = clients
        .workorder
        .clone()
        .decide_job(clients.request(
            &ctx,
            pb::DecideJobRequest {
                work_order_id: id,
                job_id,
                decision: body.decision.to_proto() as i32,
                channel: body.channel.to_proto() as i32,
                reason: body.reason,
                remind_after: body.remind_after,
                expected_version: body.expected_version,
            },
        ))
        .await
        .map_err(ApiError::grpc(SERVICE))?
        .into_inner();
    Ok(Json(order.into()))
}

/// Send the estimate: the PROPOSED jobs are kept as the next version, an OPEN order moves to
/// ESTIMATE, and the approval link is answered, once.
#[utoipa::path(post, path = "/api/work-orders/{id}/estimates", tag = "estimates",
    request_body = SendEstimate,
    params(("id" = String, Path, format = Uuid, description = "Work order id")),
    responses((status = 201, description = "Sent", body = SentEstimate,
        headers(("Location" = String, description = "The work order's estimates")))))]
pub async fn send_estimate(
    State(state): State<AppState>,
    Ctx(ctx): Ctx,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<SendEstimate>,
) -> Result<Created<SentEstimate>, ApiError> {
    let clients = &state.clients;
    let sent = clients
        .workorder
        .clone()
        .send_estimate(clients.request(
            &ctx,
            pb::SendEstimateRequest {
                work_order_id: id.clone(),
                expected_version: body.expected_version,
            },
        ))
        .await
        .map_err(ApiError::grpc(SERVICE))?
        .into_inner();
    let (Some(order), Some(estimate)) = (sent.work_order, sent.estimate) else {
        return Err(ApiError::Grpc {
            service: SERVICE,
            status: tonic::Status::internal("an estimate was answered without its work order"),
        });
    };
    Ok(created(
        format!("/api/work-orders/{id}/estimates"),
        SentEstimate {
            work_order: order.into(),
            estimate: estimate.into(),
            approval_path: approval_path(&sent.approval_token),
            approval_token: sent.approval_token,
        },
    ))
}

/// Every estimate sent for a work order, newest first, as each was sent.
#[utoipa::path(get, path = "/api/work-orders/{id}/estimates", tag = "estimates",
    params(("id" = String, Path, format = Uuid, description = "Work order id")),
    responses((status = 200, description = "The estimates", body = EstimateList)))]
pub async fn list_estimates(
    State(state): State<AppState>,
    Ctx(ctx): Ctx,
    Path(id): Path<String>,
) -> Result<Json<EstimateList>, ApiError> {
    let clients = &state.clients;
    let list = clients
        .workorder
        .clone()
        .list_estimates(clients.request(&ctx, pb::ListEstimatesRequest { work_order_id: id }))
        .await
        .map_err(ApiError::grpc(SERVICE))?
        .into_inner();
    Ok(Json(EstimateList {
        items: list.estimates.into_iter().map(Estimate::from).collect(),
    }))
}

/// The estimate an approval link opens, with each job's decision. No sign-in: the token is
/// the authorisation. An unknown token is 404; an expired or outdated one 409.
#[utoipa::path(get, path = "/api/approvals/{token}", tag = "estimates",
    security(()),
    params(("token" = String, Path, min_length = 43, max_length = 43, pattern = r"^[A-Za-z0-9_-]{43}$", description = "The approval link's token")),
    responses((status = 200, description = "The estimate", body = Approval)))]
pub async fn get_approval(
    State(state): State<AppState>,
    Ctx(ctx): Ctx,
    Path(token): Path<String>,
) -> Result<Json<Approval>, ApiError> {
    let clients = &state.clients;
    let found = clients
        .workorder
        .clone()
        .get_estimate_by_link(clients.request(&ctx, pb::GetEstimateByLinkRequest { token }))
        .await
        .map_err(ApiError::grpc(SERVICE))?
        .into_inner();
    Ok(Json(found.into()))
}

/// The customer approves or declines a job of the estimate the link opens.
#[utoipa::path(put, path = "/api/approvals/{token}/jobs/{jobId}", tag = "estimates",
    security(()),
    request_body = CustomerDecision,
    params(("token" = String, Path, min_length = 43, max_length = 43, pattern = r"^[A-Za-z0-9_-]{43}$", description = "The approval link's token"),
        ("jobId" = String, Path, format = Uuid, description = "Job id")),
    responses((status = 200, description = "The estimate with its decisions", body = Approval)))]
pub async fn decide_by_link(
    State(state): State<AppState>,
    Ctx(ctx): Ctx,
    Path((token, job_id)): Path<(String, String)>,
    JsonBody(body): JsonBody<CustomerDecision>,
) -> Result<Json<Approval>, ApiError> {
    let clients = &state.clients;
    let found = clients
        .workorder
        .clone()
        .decide_job_by_link(clients.request(
            &ctx,
            pb::DecideJobByLinkRequest {
                token,
                job_id,
                decision: body.decision.to_proto() as i32,
                reason: body.reason,
            },
        ))
        .await
        .map_err(ApiError::grpc(SERVICE))?
        .into_inner();
    Ok(Json(found.into()))
}
