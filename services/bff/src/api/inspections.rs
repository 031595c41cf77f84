//! Vehicle inspections (`docs/inspections.md`): templates, the technician's findings with
//! photos, the findings turned into PROPOSED jobs; and the customer's view of them through an
//! approval link, which needs no sign-in.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, StatusCode, header};

use carerp_proto::workorder::v1 as pb;

use super::{AppState, Created, created};
use crate::body::JsonBody;
use crate::edge::Ctx;
use crate::models::{
    Inspection, InspectionTemplate, InspectionTemplateList, ProposeJobs, ProposedJobs, RateItem,
    SaveTemplate, StartInspection,
};
use crate::problem::ApiError;

const SERVICE: &str = "workorder";

/// The photo types taken, by `Content-Type`; the service checks the content itself.
const PHOTO_TYPES: &[&str] = &["image/jpeg", "image/png", "image/webp"];

/// The body limit of the upload route: a photo at the service's limit.
pub const MAX_PHOTO_BODY_BYTES: usize = carerp_kit::MAX_PHOTO_BYTES;

/// Every inspection template, the default first.
#[utoipa::path(get, path = "/api/inspection-templates", tag = "inspections",
    responses((status = 200, description = "The templates", body = InspectionTemplateList)))]
pub async fn list_templates(
    State(state): State<AppState>,
    Ctx(ctx): Ctx,
) -> Result<Json<InspectionTemplateList>, ApiError> {
    let clients = &state.clients;
    let list = clients
        .inspection
        .clone()
        .list_templates(clients.request(&ctx, pb::ListTemplatesRequest {}))
        .await
        .map_err(ApiError::grpc(SERVICE))?
        .into_inner();
    Ok(Json(InspectionTemplateList {
        items: list.templates.into_iter().map(Into::into).collect(),
    }))
}

/// Create a template (owners).
#[utoipa::path(post, path = "/api/inspection-templates", tag = "inspections",
    request_body = SaveTemplate,
    responses((status = 201, description = "Created", body = InspectionTemplate,
        headers(("Location" = String, description = "The templates")))))]
pub async fn create_template(
    State(state): State<AppState>,
    Ctx(ctx): Ctx,
    JsonBody(body): JsonBody<SaveTemplate>,
) -> Result<Created<InspectionTemplate>, ApiError> {
    let saved = save_template(&state, &ctx, String::new(), body).await?;
    Ok(created("/api/inspection-templates".into(), saved))
}

/// Replace a template's name, items and default flag (owners). Inspections already started
/// keep the items they started with.
#[utoipa::path(put, path = "/api/inspection-templates/{id}", tag = "inspections",
    request_body = SaveTemplate,
    params(("id" = String, Path, format = Uuid, description = "Template id")),
    responses((status = 200, description = "The template", body = InspectionTemplate)))]
pub async fn update_template(
    State(state): State<AppState>,
    Ctx(ctx): Ctx,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<SaveTemplate>,
) -> Result<Json<InspectionTemplate>, ApiError> {
    Ok(Json(save_template(&state, &ctx, id, body).await?))
}

async fn save_template(
    state: &AppState,
    ctx: &carerp_kit::RequestContext,
    id: String,
    body: SaveTemplate,
) -> Result<InspectionTemplate, ApiError> {
    let clients = &state.clients;
    let saved = clients
        .inspection
        .clone()
        .save_template(
            clients.request(
                ctx,
                pb::SaveTemplateRequest {
                    id,
                    name: body.name,
                    is_default: body.is_default,
                    items: body
                        .items
                        .into_iter()
                        .map(|item| pb::TemplateItem {
                            section: item.section,
                            label: item.label,
                        })
                        .collect(),
                },
            ),
        )
        .await
        .map_err(ApiError::grpc(SERVICE))?
        .into_inner();
    Ok(saved.into())
}

/// Start the work order's inspection from a template (the default when none is named).
#[utoipa::path(post, path = "/api/work-orders/{id}/inspection", tag = "inspections",
    request_body = StartInspection,
    params(("id" = String, Path, format = Uuid, description = "Work order id")),
    responses((status = 201, description = "Started", body = Inspection,
        headers(("Location" = String, description = "The inspection")))))]
pub async fn start_inspection(
    State(state): State<AppState>,
    Ctx(ctx): Ctx,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<StartInspection>,
) -> Result<Created<Inspection>, ApiError> {
    let clients = &state.clients;
    let inspection = clients
        .inspection
        .clone()
        .start_inspection(clients.request(
            &ctx,
            pb::StartInspectionRequest {
                work_order_id: id.clone(),
                template_id: body.template_id.unwrap_or_default(),
            },
        ))
        .await
        .map_err(ApiError::grpc(SERVICE))?
        .into_inner();
    Ok(created(
        format!("/api/work-orders/{id}/inspection"),
        inspection.into(),
    ))
}

#[utoipa::path(get, path = "/api/work-orders/{id}/inspection", tag = "inspections",
    params(("id" = String, Path, format = Uuid, description = "Work order id")),
    responses((status = 200, description = "The inspection", body = Inspection)))]
pub async fn get_inspection(
    State(state): State<AppState>,
    Ctx(ctx): Ctx,
    Path(id): Path<String>,
) -> Result<Json<Inspection>, ApiError> {
    let clients = &state.clients;
    let inspection = clients
        .inspection
        .clone()
        .get_inspection(clients.request(&ctx, pb::GetInspectionRequest { work_order_id: id }))
        .await
        .map_err(ApiError::grpc(SERVICE))?
        .into_inner();
    Ok(Json(inspection.into()))
}

/// Rate one item: `OK`, `ADVISE` or `URGENT`, with what was found.
#[utoipa::path(put, path = "/api/work-orders/{id}/inspection/items/{itemId}", tag = "inspections",
    request_body = RateItem,
    params(("id" = String, Path, format = Uuid, description = "Work order id"),
        ("itemId" = String, Path, format = Uuid, description = "Item id")),
    responses((status = 200, description = "The inspection", body = Inspection)))]
pub async fn rate_item(
    State(state): State<AppState>,
    Ctx(ctx): Ctx,
    Path((id, item_id)): Path<(String, String)>,
    JsonBody(body): JsonBody<RateItem>,
) -> Result<Json<Inspection>, ApiError> {
    let clients = &state.clients;
    let inspection = clients
        .inspection
        .clone()
        .rate_item(clients.request(
            &ctx,
            pb::RateItemRequest {
                work_order_id: id,
                item_id,
                rating: body.rating.to_proto() as i32,
                note: body.note,
            },
        ))
        .await
        .map_err(ApiError::grpc(SERVICE))?
        .into_inner();
    Ok(Json(inspection.into()))
}

/// Add a photo to an item: the body is the image itself (`image/jpeg`, `image/png` or
/// `image/webp`, at most 10 MiB). It is checked, turned upright, scaled to fit 1600 px and
/// kept as JPEG without its metadata.
#[utoipa::path(post, path = "/api/work-orders/{id}/inspection/items/{itemId}/photos", tag = "inspections",
    request_body(content = Vec<u8>, content_type = "image/jpeg", description = "The photo: image/jpeg, image/png or image/webp"),
    params(("id" = String, Path, format = Uuid, description = "Work order id"),
        ("itemId" = String, Path, format = Uuid, description = "Item id")),
    responses((status = 201, description = "Added", body = Inspection,
        headers(("Location" = String, description = "The inspection")))))]
pub async fn add_photo(
    State(state): State<AppState>,
    Ctx(ctx): Ctx,
    Path((id, item_id)): Path<(String, String)>,
    headers: HeaderMap,
    content: Bytes,
) -> Result<Created<Inspection>, ApiError> {
    check_photo_type(&headers)?;
    let clients = &state.clients;
    let inspection = clients
        .inspection
        .clone()
        .add_photo(clients.request(
            &ctx,
            pb::AddPhotoRequest {
                work_order_id: id.clone(),
                item_id,
                content: content.to_vec(),
            },
        ))
        .await
        .map_err(ApiError::grpc(SERVICE))?
        .into_inner();
    Ok(created(
        format!("/api/work-orders/{id}/inspection"),
        inspection.into(),
    ))
}

fn check_photo_type(headers: &HeaderMap) -> Result<(), ApiError> {
    let essence = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .map(|value| value.trim().to_ascii_lowercase())
        .unwrap_or_default();
    if PHOTO_TYPES.contains(&essence.as_str()) {
        Ok(())
    } else {
        Err(ApiError::UnsupportedMediaType(format!(
            "a photo is sent as its bytes with Content-Type {}; got {:?}",
            PHOTO_TYPES.join(", "),
            essence
        )))
    }
}

/// A photo of the inspection, as kept (JPEG).
#[utoipa::path(get, path = "/api/work-orders/{id}/inspection/photos/{photoId}", tag = "inspections",
    params(("id" = String, Path, format = Uuid, description = "Work order id"),
        ("photoId" = String, Path, format = Uuid, description = "Photo id")),
    responses((status = 200, description = "The photo", content_type = "image/jpeg", body = Vec<u8>)))]
pub async fn get_photo(
    State(state): State<AppState>,
    Ctx(ctx): Ctx,
    Path((id, photo_id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let clients = &state.clients;
    let photo = clients
        .inspection
        .clone()
        .get_photo(clients.request(
            &ctx,
            pb::GetPhotoRequest {
                work_order_id: id,
                photo_id,
            },
        ))
        .await
        .map_err(ApiError::grpc(SERVICE))?
        .into_inner();
    Ok(photo_response(photo))
}

/// A photo's bytes. A photo never changes under its id, so browsers may keep it; `private`,
/// because it is the tenant's.
pub fn photo_response(photo: pb::Photo) -> Response {
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, photo.content_type),
            (header::CACHE_CONTROL, "private, max-age=86400".to_string()),
        ],
        photo.content,
    )
        .into_response()
}

/// Remove a photo (while the inspection is in progress).
#[utoipa::path(delete, path = "/api/work-orders/{id}/inspection/photos/{photoId}", tag = "inspections",
    params(("id" = String, Path, format = Uuid, description = "Work order id"),
        ("photoId" = String, Path, format = Uuid, description = "Photo id")),
    responses((status = 200, description = "The inspection", body = Inspection)))]
pub async fn remove_photo(
    State(state): State<AppState>,
    Ctx(ctx): Ctx,
    Path((id, photo_id)): Path<(String, String)>,
) -> Result<Json<Inspection>, ApiError> {
    let clients = &state.clients;
    let inspection = clients
        .inspection
        .clone()
        .remove_photo(clients.request(
            &ctx,
            pb::RemovePhotoRequest {
                work_order_id: id,
                photo_id,
            },
        ))
        .await
        .map_err(ApiError::grpc(SERVICE))?
        .into_inner();
    Ok(Json(inspection.into()))
}

/// Complete the inspection: every item must be rated. Publishes `inspection.completed`.
#[utoipa::path(post, path = "/api/work-orders/{id}/inspection/complete", tag = "inspections",
    params(("id" = String, Path, format = Uuid, description = "Work order id")),
    responses((status = 200, description = "The inspection", body = Inspection)))]
pub async fn complete_inspection(
    State(state): State<AppState>,
    Ctx(ctx): Ctx,
    Path(id): Path<String>,
) -> Result<Json<Inspection>, ApiError> {
    let clients = &state.clients;
    let inspection = clients
        .inspection
        .clone()
        .complete_inspection(
            clients.request(&ctx, pb::CompleteInspectionRequest { work_order_id: id }),
        )
        .await
        .map_err(ApiError::grpc(SERVICE))?
        .into_inner();
    Ok(Json(inspection.into()))
}

/// Turn every `ADVISE` and `URGENT` finding without a job into a PROPOSED job (urgent first);
/// calling again adds nothing twice.
#[utoipa::path(post, path = "/api/work-orders/{id}/inspection/jobs", tag = "inspections",
    request_body = ProposeJobs,
    params(("id" = String, Path, format = Uuid, description = "Work order id")),
    responses((status = 200, description = "The inspection and the jobs made", body = ProposedJobs)))]
pub async fn propose_jobs(
    State(state): State<AppState>,
    Ctx(ctx): Ctx,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<ProposeJobs>,
) -> Result<Json<ProposedJobs>, ApiError> {
    let clients = &state.clients;
    let proposed = clients
        .inspection
        .clone()
        .propose_jobs(clients.request(
            &ctx,
            pb::ProposeJobsRequest {
                work_order_id: id,
                expected_version: body.expected_version,
            },
        ))
        .await
        .map_err(ApiError::grpc(SERVICE))?
        .into_inner();
    let Some(inspection) = proposed.inspection else {
        return Err(ApiError::Grpc {
            service: SERVICE,
            status: tonic::Status::internal("jobs were proposed without their inspection"),
        });
    };
    Ok(Json(ProposedJobs {
        inspection: inspection.into(),
        job_ids: proposed.job_ids,
    }))
}

/// The completed inspection of the estimate an approval link opens, without who did what.
/// No sign-in: the token is the authorisation.
#[utoipa::path(get, path = "/api/approvals/{token}/inspection", tag = "inspections",
    security(()),
    params(("token" = String, Path, min_length = 43, max_length = 43, pattern = r"^[A-Za-z0-9_-]{43}$", description = "The approval link's token")),
    responses((status = 200, description = "The inspection", body = Inspection)))]
pub async fn inspection_by_link(
    State(state): State<AppState>,
    Ctx(ctx): Ctx,
    Path(token): Path<String>,
) -> Result<Json<Inspection>, ApiError> {
    let clients = &state.clients;
    let inspection = clients
        .inspection
        .clone()
        .get_inspection_by_link(clients.request(&ctx, pb::GetInspectionByLinkRequest { token }))
        .await
        .map_err(ApiError::grpc(SERVICE))?
        .into_inner();
    Ok(Json(inspection.into()))
}

/// A photo of that inspection.
#[utoipa::path(get, path = "/api/approvals/{token}/photos/{photoId}", tag = "inspections",
    security(()),
    params(("token" = String, Path, min_length = 43, max_length = 43, pattern = r"^[A-Za-z0-9_-]{43}$", description = "The approval link's token"),
        ("photoId" = String, Path, format = Uuid, description = "Photo id")),
    responses((status = 200, description = "The photo", content_type = "image/jpeg", body = Vec<u8>)))]
pub async fn photo_by_link(
    State(state): State<AppState>,
    Ctx(ctx): Ctx,
    Path((token, photo_id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let clients = &state.clients;
    let photo = clients
        .inspection
        .clone()
        .get_photo_by_link(clients.request(&ctx, pb::GetPhotoByLinkRequest { token, photo_id }))
        .await
        .map_err(ApiError::grpc(SERVICE))?
        .into_inner();
    Ok(photo_response(photo))
}
