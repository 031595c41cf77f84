//! Canned jobs (`docs/canned-jobs.md`): the garage's service packages, and adding one to a
//! work order as a PROPOSED job priced today.

use axum::Json;
use axum::extract::{Path, State};
use http::StatusCode;

use carerp_proto::workorder::v1 as pb;

use super::{AppState, Created, IdempotencyKey, created};
use crate::body::JsonBody;
use crate::edge::Ctx;
use crate::models::{AddCannedJob, CannedJob, CannedJobList, SaveCannedJob, WorkOrder};
use crate::problem::ApiError;

const SERVICE: &str = "workorder";

#[utoipa::path(get, path = "/api/canned-jobs", tag = "canned jobs",
    responses((status = 200, description = "The canned jobs", body = CannedJobList)))]
pub async fn list_canned_jobs(
    State(state): State<AppState>,
    Ctx(ctx): Ctx,
) -> Result<Json<CannedJobList>, ApiError> {
    let clients = &state.clients;
    let list = clients
        .canned
        .clone()
        .list_canned_jobs(clients.request(&ctx, pb::ListCannedJobsRequest {}))
        .await
        .map_err(ApiError::grpc(SERVICE))?
        .into_inner();
    Ok(Json(CannedJobList {
        items: list.canned_jobs.into_iter().map(Into::into).collect(),
    }))
}

/// Create a canned job (owners and advisors); every part must exist and be active.
#[utoipa::path(post, path = "/api/canned-jobs", tag = "canned jobs",
    request_body = SaveCannedJob,
    responses((status = 201, description = "Created", body = CannedJob,
        headers(("Location" = String, description = "The new canned job")))))]
pub async fn create_canned_job(
    State(state): State<AppState>,
    Ctx(ctx): Ctx,
    JsonBody(body): JsonBody<SaveCannedJob>,
) -> Result<Created<CannedJob>, ApiError> {
    let clients = &state.clients;
    let saved = clients
        .canned
        .clone()
        .save_canned_job(clients.request(&ctx, body.into_proto(String::new())))
        .await
        .map_err(ApiError::grpc(SERVICE))?
        .into_inner();
    Ok(created(
        format!("/api/canned-jobs/{}", saved.id),
        saved.into(),
    ))
}

/// Replace a canned job's name and lines.
#[utoipa::path(put, path = "/api/canned-jobs/{id}", tag = "canned jobs",
    request_body = SaveCannedJob,
    params(("id" = String, Path, format = Uuid, description = "Canned job id")),
    responses((status = 200, description = "The canned job", body = CannedJob)))]
pub async fn update_canned_job(
    State(state): State<AppState>,
    Ctx(ctx): Ctx,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<SaveCannedJob>,
) -> Result<Json<CannedJob>, ApiError> {
    let clients = &state.clients;
    let saved = clients
        .canned
        .clone()
        .save_canned_job(clients.request(&ctx, body.into_proto(id)))
        .await
        .map_err(ApiError::grpc(SERVICE))?
        .into_inner();
    Ok(Json(saved.into()))
}

#[utoipa::path(delete, path = "/api/canned-jobs/{id}", tag = "canned jobs",
    params(("id" = String, Path, format = Uuid, description = "Canned job id")),
    responses((status = 204, description = "Removed")))]
pub async fn remove_canned_job(
    State(state): State<AppState>,
    Ctx(ctx): Ctx,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let clients = &state.clients;
    clients
        .canned
        .clone()
        .remove_canned_job(clients.request(&ctx, pb::RemoveCannedJobRequest { id }))
        .await
        .map_err(ApiError::grpc(SERVICE))?;
    Ok(StatusCode::NO_CONTENT)
}

/// Add a canned job to a work order: a PROPOSED job, its parts quoted at today's prices,
/// its labour at the tenant's rate. `Idempotency-Key` makes retries safe.
#[utoipa::path(post, path = "/api/work-orders/{id}/canned-jobs", tag = "canned jobs",
    request_body = AddCannedJob,
    params(("id" = String, Path, format = Uuid, description = "Work order id"),
        ("Idempotency-Key" = Option<String>, Header, min_length = 1, max_length = 200, pattern = r"^[!-~]+$", description = "Makes retries safe: a retry adds the job once")),
    responses((status = 200, description = "The work order", body = WorkOrder)))]
pub async fn add_canned_job(
    State(state): State<AppState>,
    Ctx(ctx): Ctx,
    Path(id): Path<String>,
    IdempotencyKey(key): IdempotencyKey,
    JsonBody(body): JsonBody<AddCannedJob>,
) -> Result<Json<WorkOrder>, ApiError> {
    let clients = &state.clients;
    let order = clients
        .canned
        .clone()
        .add_canned_job(clients.request(
            &ctx,
            pb::AddCannedJobRequest {
                work_order_id: id,
                canned_job_id: body.canned_job_id,
                expected_version: body.expected_version,
                idempotency_key: key,
            },
        ))
        .await
        .map_err(ApiError::grpc(SERVICE))?
        .into_inner();
    Ok(Json(order.into()))
}
