//! Parts, stock and its ledger.

use axum::Json;
use axum::extract::{Path, State};
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

use carerp_proto::inventory::v1 as pb;

use super::customers::PageQuery;
use super::{AppState, Created, IdempotencyKey, created, page};
use crate::body::{JsonBody, QueryParams};
use crate::edge::Ctx;
use crate::models::{AdjustStock, CreatePart, Movement, MovementPage, Part, PartPage, UpdatePart};
use crate::problem::ApiError;

const SERVICE: &str = "inventory";

/// Which parts a list shows.
#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ActiveFilter {
    Active,
    Inactive,
    All,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PartQuery {
    /// Page size: default 50, at most 500.
    #[param(minimum = 0, maximum = 500)]
    pub limit: Option<i32>,
    /// `nextCursor` of the previous page.
    #[param(max_length = 1024, pattern = r"^[A-Za-z0-9_-]*$")]
    pub cursor: Option<String>,
    /// Case-insensitive search over SKU and name.
    #[param(max_length = 200, pattern = r"^[^\x00]*$")]
    pub q: Option<String>,
    #[param(max_length = 200, pattern = r"^[^\x00]*$")]
    pub category: Option<String>,
    /// Only parts at or below their reorder point.
    pub low_stock_only: Option<bool>,
    /// Default: `active`.
    pub active: Option<ActiveFilter>,
}

/// List or search parts.
#[utoipa::path(get, path = "/api/parts", tag = "parts", params(PartQuery),
    responses((status = 200, description = "A page of parts", body = PartPage)))]
pub async fn list_parts(
    State(state): State<AppState>,
    Ctx(ctx): Ctx,
    QueryParams(query): QueryParams<PartQuery>,
) -> Result<Json<PartPage>, ApiError> {
    let clients = &state.clients;
    let active = match query.active {
        None | Some(ActiveFilter::Active) => pb::ActiveFilter::Active,
        Some(ActiveFilter::Inactive) => pb::ActiveFilter::Inactive,
        Some(ActiveFilter::All) => pb::ActiveFilter::All,
    };
    let response = clients
        .inventory
        .clone()
        .list_parts(clients.request(
            &ctx,
            pb::ListPartsRequest {
                page: page(query.limit, query.cursor),
                query: query.q.unwrap_or_default(),
                category: query.category.unwrap_or_default(),
                low_stock_only: query.low_stock_only.unwrap_or(false),
                active: active as i32,
            },
        ))
        .await
        .map_err(ApiError::grpc(SERVICE))?
        .into_inner();
    Ok(Json(PartPage::new(
        response.parts.into_iter().map(Part::from).collect(),
        response.page,
    )))
}

/// Create a part with its opening stock. A retry with the same `Idempotency-Key` returns
/// the first one.
#[utoipa::path(post, path = "/api/parts", tag = "parts", request_body = CreatePart,
    params(("Idempotency-Key" = Option<String>, Header, min_length = 1, max_length = 200, pattern = r"^[!-~]+$", description = "Makes retries safe")),
    responses((status = 201, description = "Created", body = Part, headers(("Location" = String, description = "Where the new record is")))))]
pub async fn create_part(
    State(state): State<AppState>,
    Ctx(ctx): Ctx,
    IdempotencyKey(key): IdempotencyKey,
    JsonBody(body): JsonBody<CreatePart>,
) -> Result<Created<Part>, ApiError> {
    let clients = &state.clients;
    let part = clients
        .inventory
        .clone()
        .create_part(clients.request(
            &ctx,
            pb::CreatePartRequest {
                sku: body.sku,
                name: body.name,
                description: body.description,
                category: body.category,
                unit_cost: Some(body.unit_cost.into()),
                unit_price: Some(body.unit_price.into()),
                location: body.location,
                reorder_point: body.reorder_point,
                reorder_quantity: body.reorder_quantity,
                initial_quantity: body.initial_quantity,
                idempotency_key: key,
            },
        ))
        .await
        .map_err(ApiError::grpc(SERVICE))?
        .into_inner();
    Ok(created(format!("/api/parts/{}", part.id), part.into()))
}

/// Active parts whose available quantity is at or below their reorder point.
#[utoipa::path(get, path = "/api/parts/low-stock", tag = "parts", params(PageQuery),
    responses((status = 200, description = "A page of parts", body = PartPage)))]
pub async fn low_stock(
    State(state): State<AppState>,
    Ctx(ctx): Ctx,
    QueryParams(query): QueryParams<PageQuery>,
) -> Result<Json<PartPage>, ApiError> {
    let clients = &state.clients;
    let response = clients
        .inventory
        .clone()
        .list_low_stock(clients.request(
            &ctx,
            pb::ListLowStockRequest {
                page: page(query.limit, query.cursor),
            },
        ))
        .await
        .map_err(ApiError::grpc(SERVICE))?
        .into_inner();
    Ok(Json(PartPage::new(
        response.parts.into_iter().map(Part::from).collect(),
        response.page,
    )))
}

/// A part with its stock.
#[utoipa::path(get, path = "/api/parts/{id}", tag = "parts",
    params(("id" = String, Path, format = Uuid, description = "Part id")),
    responses((status = 200, description = "The part", body = Part)))]
pub async fn get_part(
    State(state): State<AppState>,
    Ctx(ctx): Ctx,
    Path(id): Path<String>,
) -> Result<Json<Part>, ApiError> {
    let clients = &state.clients;
    let part = clients
        .inventory
        .clone()
        .get_part(clients.request(&ctx, pb::GetPartRequest { id }))
        .await
        .map_err(ApiError::grpc(SERVICE))?
        .into_inner();
    Ok(Json(part.into()))
}

/// Change a part; only the fields present change. Stock changes through adjustments.
#[utoipa::path(put, path = "/api/parts/{id}", tag = "parts", request_body = UpdatePart,
    params(("id" = String, Path, format = Uuid, description = "Part id")),
    responses((status = 200, description = "Updated", body = Part)))]
pub async fn update_part(
    State(state): State<AppState>,
    Ctx(ctx): Ctx,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<UpdatePart>,
) -> Result<Json<Part>, ApiError> {
    let clients = &state.clients;
    let part = clients
        .inventory
        .clone()
        .update_part(clients.request(
            &ctx,
            pb::UpdatePartRequest {
                id,
                name: body.name,
                description: body.description,
                category: body.category,
                unit_cost: body.unit_cost.map(Into::into),
                unit_price: body.unit_price.map(Into::into),
                location: body.location,
                reorder_point: body.reorder_point,
                reorder_quantity: body.reorder_quantity,
                active: body.active,
                expected_version: body.expected_version,
            },
        ))
        .await
        .map_err(ApiError::grpc(SERVICE))?
        .into_inner();
    Ok(Json(part.into()))
}

/// Record goods received or a stock correction. Never below zero or below what is reserved.
#[utoipa::path(post, path = "/api/parts/{id}/stock-adjustments", tag = "parts",
    request_body = AdjustStock,
    params(("id" = String, Path, format = Uuid, description = "Part id"),
        ("Idempotency-Key" = Option<String>, Header, min_length = 1, max_length = 200, pattern = r"^[!-~]+$", description = "Makes retries safe")),
    responses((status = 200, description = "The part with its new stock", body = Part)))]
pub async fn adjust_stock(
    State(state): State<AppState>,
    Ctx(ctx): Ctx,
    Path(id): Path<String>,
    IdempotencyKey(key): IdempotencyKey,
    JsonBody(body): JsonBody<AdjustStock>,
) -> Result<Json<Part>, ApiError> {
    let clients = &state.clients;
    let part = clients
        .inventory
        .clone()
        .adjust_stock(clients.request(
            &ctx,
            pb::AdjustStockRequest {
                part_id: id,
                kind: body.kind.to_proto() as i32,
                delta: body.delta,
                reason: body.reason,
                idempotency_key: key,
            },
        ))
        .await
        .map_err(ApiError::grpc(SERVICE))?
        .into_inner();
    Ok(Json(part.into()))
}

/// A part's stock ledger, newest first.
#[utoipa::path(get, path = "/api/parts/{id}/movements", tag = "parts",
    params(("id" = String, Path, format = Uuid, description = "Part id"), PageQuery),
    responses((status = 200, description = "A page of movements", body = MovementPage)))]
pub async fn list_movements(
    State(state): State<AppState>,
    Ctx(ctx): Ctx,
    Path(id): Path<String>,
    QueryParams(query): QueryParams<PageQuery>,
) -> Result<Json<MovementPage>, ApiError> {
    let clients = &state.clients;
    let response = clients
        .inventory
        .clone()
        .list_movements(clients.request(
            &ctx,
            pb::ListMovementsRequest {
                part_id: id,
                page: page(query.limit, query.cursor),
            },
        ))
        .await
        .map_err(ApiError::grpc(SERVICE))?
        .into_inner();
    Ok(Json(MovementPage::new(
        response.movements.into_iter().map(Movement::from).collect(),
        response.page,
    )))
}
