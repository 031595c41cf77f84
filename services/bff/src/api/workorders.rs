//! Work orders, and the aggregated view of one with its customer, vehicle and invoice.

use axum::Json;
use axum::extract::{Path, State};
use carerp_kit::RequestContext;
use serde::Deserialize;
use tonic::Code;
use utoipa::IntoParams;

use carerp_proto::billing::v1 as billing;
use carerp_proto::customer::v1 as customer;
use carerp_proto::workorder::v1 as pb;

use super::{AppState, Created, IdempotencyKey, created, page};
use crate::body::{JsonBody, QueryParams};
use crate::edge::Ctx;
use crate::models::{
    AddLaborLine, AddPartLine, ChangeWorkOrderStatus, CreateWorkOrder, Missing, UpdateNotes,
    WorkOrder, WorkOrderPage, WorkOrderStatus, WorkOrderView,
};
use crate::problem::ApiError;

const SERVICE: &str = "workorder";

#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct WorkOrderQuery {
    /// Page size: default 50, at most 500.
    #[param(minimum = 0, maximum = 500)]
    pub limit: Option<i32>,
    /// `nextCursor` of the previous page.
    #[param(max_length = 1024, pattern = r"^[A-Za-z0-9_-]*$")]
    pub cursor: Option<String>,
    /// Comma-separated statuses, e.g. `OPEN,IN_PROGRESS`; absent: any.
    #[param(
        max_length = 200,
        pattern = r"^(OPEN|ESTIMATE|IN_PROGRESS|AWAITING_PARTS|COMPLETED|INVOICED|CANCELLED)(,(OPEN|ESTIMATE|IN_PROGRESS|AWAITING_PARTS|COMPLETED|INVOICED|CANCELLED))*$"
    )]
    pub status: Option<String>,
    #[param(format = Uuid)]
    pub customer_id: Option<String>,
    #[param(format = Uuid)]
    pub vehicle_id: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct VersionQuery {
    /// The work order's `audit.version` the change is based on; absent or 0 skips the check.
    #[param(minimum = 0)]
    pub expected_version: Option<i64>,
}

/// Parses `OPEN,IN_PROGRESS` into statuses, naming the one that is not a status.
fn statuses(param: Option<String>) -> Result<Vec<i32>, ApiError> {
    super::status_filter(
        param,
        "OPEN, ESTIMATE, IN_PROGRESS, AWAITING_PARTS, COMPLETED, INVOICED or CANCELLED",
        |s: WorkOrderStatus| s.to_proto() as i32,
    )
}

/// List work orders, newest first, filtered by status, customer or vehicle.
#[utoipa::path(get, path = "/api/work-orders", tag = "work orders", params(WorkOrderQuery),
    responses((status = 200, description = "A page of work orders", body = WorkOrderPage)))]
pub async fn list_work_orders(
    State(state): State<AppState>,
    Ctx(ctx): Ctx,
    QueryParams(query): QueryParams<WorkOrderQuery>,
) -> Result<Json<WorkOrderPage>, ApiError> {
    let clients = &state.clients;
    let response = clients
        .workorder
        .clone()
        .list_work_orders(clients.request(
            &ctx,
            pb::ListWorkOrdersRequest {
                page: page(query.limit, query.cursor),
                statuses: statuses(query.status)?,
                customer_id: query.customer_id.unwrap_or_default(),
                vehicle_id: query.vehicle_id.unwrap_or_default(),
            },
        ))
        .await
        .map_err(ApiError::grpc(SERVICE))?
        .into_inner();
    Ok(Json(WorkOrderPage::new(
        response
            .work_orders
            .into_iter()
            .map(WorkOrder::from)
            .collect(),
        response.page,
    )))
}

/// Open a work order for a customer's vehicle. A retry with the same `Idempotency-Key`
/// returns the first one.
#[utoipa::path(post, path = "/api/work-orders", tag = "work orders", request_body = CreateWorkOrder,
    params(("Idempotency-Key" = Option<String>, Header, min_length = 1, max_length = 200, pattern = r"^[!-~]+$", description = "Makes retries safe")),
    responses((status = 201, description = "Created", body = WorkOrder, headers(("Location" = String, description = "Where the new record is")))))]
pub async fn create_work_order(
    State(state): State<AppState>,
    Ctx(ctx): Ctx,
    IdempotencyKey(key): IdempotencyKey,
    JsonBody(body): JsonBody<CreateWorkOrder>,
) -> Result<Created<WorkOrder>, ApiError> {
    let clients = &state.clients;
    let order = clients
        .workorder
        .clone()
        .create_work_order(clients.request(
            &ctx,
            pb::CreateWorkOrderRequest {
                customer_id: body.customer_id,
                vehicle_id: body.vehicle_id,
                complaint: body.complaint,
                odometer_km: body.odometer_km,
                notes: body.notes,
                idempotency_key: key,
            },
        ))
        .await
        .map_err(ApiError::grpc(SERVICE))?
        .into_inner();
    Ok(created(
        format!("/api/work-orders/{}", order.id),
        order.into(),
    ))
}

/// A work order with its customer, vehicle and, once invoiced, its invoice. What the
/// customer or billing service could not give is named in `missing`.
#[utoipa::path(get, path = "/api/work-orders/{id}", tag = "work orders",
    params(("id" = String, Path, format = Uuid, description = "Work order id")),
    responses((status = 200, description = "The work order, aggregated", body = WorkOrderView)))]
pub async fn get_work_order(
    State(state): State<AppState>,
    Ctx(ctx): Ctx,
    Path(id): Path<String>,
) -> Result<Json<WorkOrderView>, ApiError> {
    let clients = &state.clients;
    let order = clients
        .workorder
        .clone()
        .get_work_order(clients.request(&ctx, pb::GetWorkOrderRequest { id }))
        .await
        .map_err(ApiError::grpc(SERVICE))?
        .into_inner();
    Ok(Json(aggregate(&state, &ctx, order).await))
}

async fn aggregate(state: &AppState, ctx: &RequestContext, order: pb::WorkOrder) -> WorkOrderView {
    let clients = &state.clients;
    let (mut customers, mut vehicles) = (clients.customer.clone(), clients.customer.clone());
    let customer_call = customers.get_customer(clients.request(
        ctx,
        customer::GetCustomerRequest {
            id: order.customer_id.clone(),
        },
    ));
    let vehicle_call = vehicles.get_vehicle(clients.request(
        ctx,
        customer::GetVehicleRequest {
            id: order.vehicle_id.clone(),
        },
    ));
    let invoice_call = invoice_of(clients, ctx, &order);
    let (customer, vehicle, invoice) = tokio::join!(customer_call, vehicle_call, invoice_call);
    let mut missing = Vec::new();
    let customer = keep(customer, "customer", "customer", &mut missing);
    let vehicle = keep(vehicle, "customer", "vehicle", &mut missing);
    let invoice = invoice.and_then(|result| keep(result, "billing", "invoice", &mut missing));
    WorkOrderView {
        work_order: order.into(),
        customer: customer.map(Into::into),
        vehicle: vehicle.map(Into::into),
        invoice: invoice.map(Into::into),
        missing,
    }
}

/// The invoice of a work order: `None` until it may have one (billing issues the invoice of
/// a completed order before the order records its id), `Some(Err)` when billing failed.
pub async fn invoice_of(
    clients: &crate::clients::Clients,
    ctx: &RequestContext,
    order: &pb::WorkOrder,
) -> Option<Result<tonic::Response<billing::Invoice>, tonic::Status>> {
    let status = pb::WorkOrderStatus::try_from(order.status).ok();
    let may_have_one = !order.invoice_id.is_empty()
        || matches!(
            status,
            Some(pb::WorkOrderStatus::Completed | pb::WorkOrderStatus::Invoiced)
        );
    if !may_have_one {
        return None;
    }
    let mut billing = clients.billing.clone();
    let found = if order.invoice_id.is_empty() {
        billing
            .get_invoice_by_work_order(clients.request(
                ctx,
                billing::GetInvoiceByWorkOrderRequest {
                    work_order_id: order.id.clone(),
                },
            ))
            .await
    } else {
        billing
            .get_invoice(clients.request(
                ctx,
                billing::GetInvoiceRequest {
                    id: order.invoice_id.clone(),
                },
            ))
            .await
    };
    match found {
        // Completed and not invoiced yet.
        Err(status) if status.code() == Code::NotFound && order.invoice_id.is_empty() => None,
        found => Some(found),
    }
}

/// The value of a call an aggregate can do without, noting in `missing` why it is absent.
pub fn keep<T>(
    result: Result<tonic::Response<T>, tonic::Status>,
    service: &str,
    what: &str,
    missing: &mut Vec<Missing>,
) -> Option<T> {
    match result {
        Ok(response) => Some(response.into_inner()),
        Err(status) => {
            tracing::warn!(service, code = ?status.code(), message = status.message(), "{what} missing from an aggregate");
            missing.push(Missing {
                service: service.to_string(),
                reason: describe_failure(what, &status),
            });
            None
        }
    }
}

pub fn describe_failure(what: &str, status: &tonic::Status) -> String {
    match status.code() {
        Code::Unavailable | Code::Cancelled => format!("{what}: service unavailable"),
        Code::DeadlineExceeded => format!("{what}: service did not answer in time"),
        Code::NotFound => format!("{what}: not found"),
        code => format!("{what}: {code:?}"),
    }
}

/// Move a work order through its life cycle. `INVOICED` is reached only through billing.
#[utoipa::path(put, path = "/api/work-orders/{id}/status", tag = "work orders",
    request_body = ChangeWorkOrderStatus,
    params(("id" = String, Path, format = Uuid, description = "Work order id")),
    responses((status = 200, description = "The work order", body = WorkOrder)))]
pub async fn change_status(
    State(state): State<AppState>,
    Ctx(ctx): Ctx,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<ChangeWorkOrderStatus>,
) -> Result<Json<WorkOrder>, ApiError> {
    let clients = &state.clients;
    let order = clients
        .workorder
        .clone()
        .change_status(clients.request(
            &ctx,
            pb::ChangeStatusRequest {
                id,
                status: body.status.to_proto() as i32,
                reason: body.reason,
                expected_version: body.expected_version,
            },
        ))
        .await
        .map_err(ApiError::grpc(SERVICE))?
        .into_inner();
    Ok(Json(order.into()))
}

/// Replace a work order's notes.
#[utoipa::path(put, path = "/api/work-orders/{id}/notes", tag = "work orders",
    request_body = UpdateNotes,
    params(("id" = String, Path, format = Uuid, description = "Work order id")),
    responses((status = 200, description = "The work order", body = WorkOrder)))]
pub async fn update_notes(
    State(state): State<AppState>,
    Ctx(ctx): Ctx,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<UpdateNotes>,
) -> Result<Json<WorkOrder>, ApiError> {
    let clients = &state.clients;
    let order = clients
        .workorder
        .clone()
        .update_notes(clients.request(
            &ctx,
            pb::UpdateNotesRequest {
                id,
                notes: body.notes,
                expected_version: body.expected_version,
            },
        ))
        .await
        .map_err(ApiError::grpc(SERVICE))?
        .into_inner();
    Ok(Json(order.into()))
}

/// Add a part line; inventory then reserves the parts (or the order waits for them).
#[utoipa::path(post, path = "/api/work-orders/{id}/line-items", tag = "work orders",
    request_body = AddPartLine,
    params(("id" = String, Path, format = Uuid, description = "Work order id"),
        ("Idempotency-Key" = Option<String>, Header, min_length = 1, max_length = 200, pattern = r"^[!-~]+$", description = "Makes retries safe: a retry adds no second line")),
    responses((status = 200, description = "The work order", body = WorkOrder)))]
pub async fn add_part_line(
    State(state): State<AppState>,
    Ctx(ctx): Ctx,
    Path(id): Path<String>,
    IdempotencyKey(key): IdempotencyKey,
    JsonBody(body): JsonBody<AddPartLine>,
) -> Result<Json<WorkOrder>, ApiError> {
    let clients = &state.clients;
    let order = clients
        .workorder
        .clone()
        .add_part_line(clients.request(
            &ctx,
            pb::AddPartLineRequest {
                work_order_id: id,
                part_id: body.part_id,
                quantity: body.quantity,
                expected_version: body.expected_version,
                idempotency_key: key,
                job_id: body.job_id,
            },
        ))
        .await
        .map_err(ApiError::grpc(SERVICE))?
        .into_inner();
    Ok(Json(order.into()))
}

/// Remove a part line (its reservation is released).
#[utoipa::path(delete, path = "/api/work-orders/{id}/line-items/{lineId}", tag = "work orders",
    params(("id" = String, Path, format = Uuid, description = "Work order id"),
        ("lineId" = String, Path, format = Uuid, description = "Part line id"), VersionQuery),
    responses((status = 200, description = "The work order", body = WorkOrder)))]
pub async fn remove_part_line(
    State(state): State<AppState>,
    Ctx(ctx): Ctx,
    Path((id, line_id)): Path<(String, String)>,
    QueryParams(query): QueryParams<VersionQuery>,
) -> Result<Json<WorkOrder>, ApiError> {
    let clients = &state.clients;
    let order = clients
        .workorder
        .clone()
        .remove_part_line(clients.request(
            &ctx,
            pb::RemovePartLineRequest {
                work_order_id: id,
                line_id,
                expected_version: query.expected_version.unwrap_or(0),
            },
        ))
        .await
        .map_err(ApiError::grpc(SERVICE))?
        .into_inner();
    Ok(Json(order.into()))
}

/// Add a labour line; without `hourlyRate` the garage's rate applies.
#[utoipa::path(post, path = "/api/work-orders/{id}/labor", tag = "work orders",
    request_body = AddLaborLine,
    params(("id" = String, Path, format = Uuid, description = "Work order id"),
        ("Idempotency-Key" = Option<String>, Header, min_length = 1, max_length = 200, pattern = r"^[!-~]+$", description = "Makes retries safe: a retry adds no second line")),
    responses((status = 200, description = "The work order", body = WorkOrder)))]
pub async fn add_labor_line(
    State(state): State<AppState>,
    Ctx(ctx): Ctx,
    Path(id): Path<String>,
    IdempotencyKey(key): IdempotencyKey,
    JsonBody(body): JsonBody<AddLaborLine>,
) -> Result<Json<WorkOrder>, ApiError> {
    let clients = &state.clients;
    let order = clients
        .workorder
        .clone()
        .add_labor_line(clients.request(
            &ctx,
            pb::AddLaborLineRequest {
                work_order_id: id,
                description: body.description,
                technician: body.technician,
                minutes: body.minutes,
                hourly_rate: body.hourly_rate.map(Into::into),
                expected_version: body.expected_version,
                idempotency_key: key,
                job_id: body.job_id,
            },
        ))
        .await
        .map_err(ApiError::grpc(SERVICE))?
        .into_inner();
    Ok(Json(order.into()))
}

/// Remove a labour line.
#[utoipa::path(delete, path = "/api/work-orders/{id}/labor/{lineId}", tag = "work orders",
    params(("id" = String, Path, format = Uuid, description = "Work order id"),
        ("lineId" = String, Path, format = Uuid, description = "Labour line id"), VersionQuery),
    responses((status = 200, description = "The work order", body = WorkOrder)))]
pub async fn remove_labor_line(
    State(state): State<AppState>,
    Ctx(ctx): Ctx,
    Path((id, line_id)): Path<(String, String)>,
    QueryParams(query): QueryParams<VersionQuery>,
) -> Result<Json<WorkOrder>, ApiError> {
    let clients = &state.clients;
    let order = clients
        .workorder
        .clone()
        .remove_labor_line(clients.request(
            &ctx,
            pb::RemoveLaborLineRequest {
                work_order_id: id,
                line_id,
                expected_version: query.expected_version.unwrap_or(0),
            },
        ))
        .await
        .map_err(ApiError::grpc(SERVICE))?
        .into_inner();
    Ok(Json(order.into()))
}

/// Ask inventory again to reserve the part lines whose reservation failed.
#[utoipa::path(post, path = "/api/work-orders/{id}/retry-reservation", tag = "work orders",
    params(("id" = String, Path, format = Uuid, description = "Work order id"), VersionQuery,
        ("Idempotency-Key" = Option<String>, Header, min_length = 1, max_length = 200, pattern = r"^[!-~]+$", description = "Makes retries safe: a retry announces nothing again")),
    responses((status = 200, description = "The work order", body = WorkOrder)))]
pub async fn retry_reservation(
    State(state): State<AppState>,
    Ctx(ctx): Ctx,
    Path(id): Path<String>,
    IdempotencyKey(key): IdempotencyKey,
    QueryParams(query): QueryParams<VersionQuery>,
) -> Result<Json<WorkOrder>, ApiError> {
    let clients = &state.clients;
    let order = clients
        .workorder
        .clone()
        .retry_reservation(clients.request(
            &ctx,
            pb::RetryReservationRequest {
                id,
                expected_version: query.expected_version.unwrap_or(0),
                idempotency_key: key,
            },
        ))
        .await
        .map_err(ApiError::grpc(SERVICE))?
        .into_inner();
    Ok(Json(order.into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_filters_parse_and_name_the_bad_one() {
        assert_eq!(statuses(None).unwrap(), Vec::<i32>::new());
        assert_eq!(
            statuses(Some("OPEN, IN_PROGRESS".into())).unwrap(),
            vec![
                pb::WorkOrderStatus::Open as i32,
                pb::WorkOrderStatus::InProgress as i32
            ]
        );
        let err = statuses(Some("OPEN,DONE".into())).unwrap_err();
        assert!(
            matches!(&err, ApiError::Invalid(errors) if errors[0].field == "status" && errors[0].message.contains("\"DONE\"")),
            "{err:?}"
        );
    }
}
