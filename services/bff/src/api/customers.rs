//! Customers and their vehicles.

use axum::Json;
use axum::extract::{Path, State};
use serde::Deserialize;
use utoipa::IntoParams;

use carerp_proto::customer::v1 as pb;

use super::{AppState, Created, IdempotencyKey, created, page};
use crate::body::{JsonBody, QueryParams};
use crate::edge::Ctx;
use crate::models::{
    CreateCustomer, CreateVehicle, Customer, CustomerPage, UpdateCustomer, UpdateVehicle, Vehicle,
    VehiclePage,
};
use crate::problem::ApiError;

const SERVICE: &str = "customer";

#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct CustomerQuery {
    /// Page size: default 50, at most 500.
    #[param(minimum = 0, maximum = 500)]
    pub limit: Option<i32>,
    /// `nextCursor` of the previous page.
    #[param(max_length = 1024, pattern = r"^[A-Za-z0-9_-]*$")]
    pub cursor: Option<String>,
    /// Case-insensitive search over name, email, phone, licence plate and VIN; plates match
    /// as typed (spaces, hyphens and dots ignored).
    #[param(max_length = 200, pattern = r"^[^\x00]*$")]
    pub q: Option<String>,
    /// Include archived customers.
    pub include_archived: Option<bool>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// Page size: default 50, at most 500.
    #[param(minimum = 0, maximum = 500)]
    pub limit: Option<i32>,
    /// `nextCursor` of the previous page.
    #[param(max_length = 1024, pattern = r"^[A-Za-z0-9_-]*$")]
    pub cursor: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct VehicleQuery {
    #[param(minimum = 0, maximum = 500)]
    pub limit: Option<i32>,
    #[param(max_length = 1024, pattern = r"^[A-Za-z0-9_-]*$")]
    pub cursor: Option<String>,
    /// Only this customer's vehicles.
    #[param(format = Uuid)]
    pub customer_id: Option<String>,
    /// Only vehicles with this licence plate, as typed: spaces, hyphens, dots and case are
    /// ignored (`b-ab 123`, `BAB123` and `B AB 123` find `B-AB 123`).
    #[param(max_length = 32, pattern = r"^[^\x00]*$")]
    pub plate: Option<String>,
}

/// List or search customers.
#[utoipa::path(get, path = "/api/customers", tag = "customers", params(CustomerQuery),
    responses((status = 200, description = "A page of customers", body = CustomerPage)))]
pub async fn list_customers(
    State(state): State<AppState>,
    Ctx(ctx): Ctx,
    QueryParams(query): QueryParams<CustomerQuery>,
) -> Result<Json<CustomerPage>, ApiError> {
    let clients = &state.clients;
    let response = clients
        .customer
        .clone()
        .list_customers(clients.request(
            &ctx,
            pb::ListCustomersRequest {
                page: page(query.limit, query.cursor),
                query: query.q.unwrap_or_default(),
                include_archived: query.include_archived.unwrap_or(false),
            },
        ))
        .await
        .map_err(ApiError::grpc(SERVICE))?
        .into_inner();
    Ok(Json(CustomerPage::new(
        response.customers.into_iter().map(Customer::from).collect(),
        response.page,
    )))
}

/// Create a customer. A retry with the same `Idempotency-Key` returns the first one.
#[utoipa::path(post, path = "/api/customers", tag = "customers", request_body = CreateCustomer,
    params(("Idempotency-Key" = Option<String>, Header, min_length = 1, max_length = 200, pattern = r"^[!-~]+$", description = "Makes retries safe")),
    responses((status = 201, description = "Created", body = Customer, headers(("Location" = String, description = "Where the new record is")))))]
pub async fn create_customer(
    State(state): State<AppState>,
    Ctx(ctx): Ctx,
    IdempotencyKey(key): IdempotencyKey,
    JsonBody(body): JsonBody<CreateCustomer>,
) -> Result<Created<Customer>, ApiError> {
    let clients = &state.clients;
    let customer = clients
        .customer
        .clone()
        .create_customer(clients.request(
            &ctx,
            pb::CreateCustomerRequest {
                name: body.name,
                email: body.email,
                phone: body.phone,
                address: body.address.map(Into::into),
                notes: body.notes,
                idempotency_key: key,
            },
        ))
        .await
        .map_err(ApiError::grpc(SERVICE))?
        .into_inner();
    Ok(created(
        format!("/api/customers/{}", customer.id),
        customer.into(),
    ))
}

/// A customer with their vehicles; archived customers stay readable.
#[utoipa::path(get, path = "/api/customers/{id}", tag = "customers",
    params(("id" = String, Path, format = Uuid, description = "Customer id")),
    responses((status = 200, description = "The customer", body = Customer)))]
pub async fn get_customer(
    State(state): State<AppState>,
    Ctx(ctx): Ctx,
    Path(id): Path<String>,
) -> Result<Json<Customer>, ApiError> {
    let clients = &state.clients;
    let customer = clients
        .customer
        .clone()
        .get_customer(clients.request(&ctx, pb::GetCustomerRequest { id }))
        .await
        .map_err(ApiError::grpc(SERVICE))?
        .into_inner();
    Ok(Json(customer.into()))
}

/// Replace a customer's contact fields.
#[utoipa::path(put, path = "/api/customers/{id}", tag = "customers", request_body = UpdateCustomer,
    params(("id" = String, Path, format = Uuid, description = "Customer id")),
    responses((status = 200, description = "Updated", body = Customer)))]
pub async fn update_customer(
    State(state): State<AppState>,
    Ctx(ctx): Ctx,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<UpdateCustomer>,
) -> Result<Json<Customer>, ApiError> {
    let clients = &state.clients;
    let customer = clients
        .customer
        .clone()
        .update_customer(clients.request(
            &ctx,
            pb::UpdateCustomerRequest {
                id,
                name: body.name,
                email: body.email,
                phone: body.phone,
                address: body.address.map(Into::into),
                notes: body.notes,
                expected_version: body.expected_version,
            },
        ))
        .await
        .map_err(ApiError::grpc(SERVICE))?
        .into_inner();
    Ok(Json(customer.into()))
}

/// Archive a customer: hidden from lists by default, still readable.
#[utoipa::path(delete, path = "/api/customers/{id}", tag = "customers",
    params(("id" = String, Path, format = Uuid, description = "Customer id")),
    responses((status = 200, description = "Archived", body = Customer)))]
pub async fn archive_customer(
    State(state): State<AppState>,
    Ctx(ctx): Ctx,
    Path(id): Path<String>,
) -> Result<Json<Customer>, ApiError> {
    let clients = &state.clients;
    let customer = clients
        .customer
        .clone()
        .archive_customer(clients.request(&ctx, pb::ArchiveCustomerRequest { id }))
        .await
        .map_err(ApiError::grpc(SERVICE))?
        .into_inner();
    Ok(Json(customer.into()))
}

/// A customer's vehicles.
#[utoipa::path(get, path = "/api/customers/{id}/vehicles", tag = "customers",
    params(("id" = String, Path, format = Uuid, description = "Customer id"), PageQuery),
    responses((status = 200, description = "A page of vehicles", body = VehiclePage)))]
pub async fn list_customer_vehicles(
    State(state): State<AppState>,
    Ctx(ctx): Ctx,
    Path(id): Path<String>,
    QueryParams(query): QueryParams<PageQuery>,
) -> Result<Json<VehiclePage>, ApiError> {
    // An empty customer id would list every vehicle of the garage.
    if id.trim().is_empty() {
        return Err(ApiError::field("id", "is required"));
    }
    list(&state, &ctx, query.limit, query.cursor, id, String::new()).await
}

/// Every vehicle of the garage, or one customer's, or those with a plate as typed.
#[utoipa::path(get, path = "/api/vehicles", tag = "customers", params(VehicleQuery),
    responses((status = 200, description = "A page of vehicles", body = VehiclePage)))]
pub async fn list_vehicles(
    State(state): State<AppState>,
    Ctx(ctx): Ctx,
    QueryParams(query): QueryParams<VehicleQuery>,
) -> Result<Json<VehiclePage>, ApiError> {
    list(
        &state,
        &ctx,
        query.limit,
        query.cursor,
        query.customer_id.unwrap_or_default(),
        query.plate.unwrap_or_default(),
    )
    .await
}

async fn list(
    state: &AppState,
    ctx: &carerp_kit::RequestContext,
    limit: Option<i32>,
    cursor: Option<String>,
    customer_id: String,
    license_plate: String,
) -> Result<Json<VehiclePage>, ApiError> {
    let clients = &state.clients;
    let response = clients
        .customer
        .clone()
        .list_vehicles(clients.request(
            ctx,
            pb::ListVehiclesRequest {
                page: page(limit, cursor),
                customer_id,
                license_plate,
            },
        ))
        .await
        .map_err(ApiError::grpc(SERVICE))?
        .into_inner();
    Ok(Json(VehiclePage::new(
        response.vehicles.into_iter().map(Vehicle::from).collect(),
        response.page,
    )))
}

/// Add a vehicle to a customer. A retry with the same `Idempotency-Key` returns the first one.
#[utoipa::path(post, path = "/api/customers/{id}/vehicles", tag = "customers",
    request_body = CreateVehicle,
    params(("id" = String, Path, format = Uuid, description = "Customer id"),
        ("Idempotency-Key" = Option<String>, Header, min_length = 1, max_length = 200, pattern = r"^[!-~]+$", description = "Makes retries safe")),
    responses((status = 201, description = "Added", body = Vehicle, headers(("Location" = String, description = "Where the new record is")))))]
pub async fn add_vehicle(
    State(state): State<AppState>,
    Ctx(ctx): Ctx,
    Path(id): Path<String>,
    IdempotencyKey(key): IdempotencyKey,
    JsonBody(body): JsonBody<CreateVehicle>,
) -> Result<Created<Vehicle>, ApiError> {
    let clients = &state.clients;
    let vehicle = clients
        .customer
        .clone()
        .add_vehicle(clients.request(
            &ctx,
            pb::AddVehicleRequest {
                customer_id: id,
                vin: body.vin,
                make: body.make,
                model: body.model,
                year: body.year,
                license_plate: body.license_plate,
                mileage: body.mileage,
                idempotency_key: key,
            },
        ))
        .await
        .map_err(ApiError::grpc(SERVICE))?
        .into_inner();
    Ok(created(
        format!("/api/vehicles/{}", vehicle.id),
        vehicle.into(),
    ))
}

/// A vehicle.
#[utoipa::path(get, path = "/api/vehicles/{id}", tag = "customers",
    params(("id" = String, Path, format = Uuid, description = "Vehicle id")),
    responses((status = 200, description = "The vehicle", body = Vehicle)))]
pub async fn get_vehicle(
    State(state): State<AppState>,
    Ctx(ctx): Ctx,
    Path(id): Path<String>,
) -> Result<Json<Vehicle>, ApiError> {
    let clients = &state.clients;
    let vehicle = clients
        .customer
        .clone()
        .get_vehicle(clients.request(&ctx, pb::GetVehicleRequest { id }))
        .await
        .map_err(ApiError::grpc(SERVICE))?
        .into_inner();
    Ok(Json(vehicle.into()))
}

/// Replace a vehicle's fields (not its VIN or owner).
#[utoipa::path(put, path = "/api/vehicles/{id}", tag = "customers", request_body = UpdateVehicle,
    params(("id" = String, Path, format = Uuid, description = "Vehicle id")),
    responses((status = 200, description = "Updated", body = Vehicle)))]
pub async fn update_vehicle(
    State(state): State<AppState>,
    Ctx(ctx): Ctx,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<UpdateVehicle>,
) -> Result<Json<Vehicle>, ApiError> {
    let clients = &state.clients;
    let vehicle = clients
        .customer
        .clone()
        .update_vehicle(clients.request(
            &ctx,
            pb::UpdateVehicleRequest {
                id,
                make: body.make,
                model: body.model,
                year: body.year,
                license_plate: body.license_plate,
                mileage: body.mileage,
                expected_version: body.expected_version,
            },
        ))
        .await
        .map_err(ApiError::grpc(SERVICE))?
        .into_inner();
    Ok(Json(vehicle.into()))
}
