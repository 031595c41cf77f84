//! The gRPC handlers: decode and validate the request, call the store, encode the answer.

use carerp_kit::convert::audit;
use carerp_kit::grpc::request_context;
use carerp_kit::status::parse_id;
use carerp_kit::{Violations, page};
use carerp_proto::common::v1::PageResponse;
use carerp_proto::customer::v1 as pb;
use carerp_proto::customer::v1::customer_service_server::CustomerService;
use sqlx::PgPool;
use tonic::{Request, Response, Status};
use uuid::Uuid;

use crate::domain::{Address, CustomerFields, VehicleFields, vin};
use crate::error::Error;
use crate::store::{self, CustomerRow, VehicleRow};

pub struct CustomerApi {
    pool: PgPool,
}

impl CustomerApi {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }

    async fn customer_with_vehicles(&self, row: CustomerRow) -> Result<pb::Customer, Error> {
        let vehicles = store::vehicles_of(&self.pool, &[row.id]).await?;
        Ok(customer_to_pb(row, vehicles))
    }
}

type Reply<T> = Result<Response<T>, Status>;

#[tonic::async_trait]
impl CustomerService for CustomerApi {
    async fn create_customer(
        &self,
        request: Request<pb::CreateCustomerRequest>,
    ) -> Reply<pb::Customer> {
        let context = request_context(&request);
        let req = request.into_inner();
        let fields = CustomerFields::validate(customer_fields(
            req.name,
            req.email,
            req.phone,
            req.address,
            req.notes,
        ))
        .map_err(Error::from)?;
        let key = non_empty(&req.idempotency_key);
        let customer = match store::create_customer(&self.pool, &context, &fields, key).await? {
            // Nothing can have added a vehicle yet: no query for them (issue 16).
            store::Created::New(row) => customer_to_pb(row, Vec::new()),
            store::Created::Earlier(row) => self.customer_with_vehicles(row).await?,
        };
        Ok(Response::new(customer))
    }

    async fn get_customer(&self, request: Request<pb::GetCustomerRequest>) -> Reply<pb::Customer> {
        let id = parse_id("id", &request.get_ref().id).map_err(Error::from)?;
        let (row, vehicles) = store::get_customer_with_vehicles(&self.pool, id).await?;
        Ok(Response::new(customer_to_pb(row, vehicles)))
    }

    async fn list_customers(
        &self,
        request: Request<pb::ListCustomersRequest>,
    ) -> Reply<pb::ListCustomersResponse> {
        let req = request.into_inner();
        let (limit, after) = page_of(req.page.as_ref())?;
        let rows = store::list_customers(
            &self.pool,
            &req.query,
            req.include_archived,
            after,
            limit + 1,
        )
        .await?;
        let (rows, next_page_token) = page::split_page(rows, limit, |row| row.id);
        let ids: Vec<Uuid> = rows.iter().map(|row| row.id).collect();
        let mut vehicles = store::vehicles_of(&self.pool, &ids).await?;
        let customers = rows
            .into_iter()
            .map(|row| {
                let (own, rest): (Vec<_>, Vec<_>) =
                    vehicles.drain(..).partition(|v| v.customer_id == row.id);
                vehicles = rest;
                customer_to_pb(row, own)
            })
            .collect();
        Ok(Response::new(pb::ListCustomersResponse {
            customers,
            page: Some(PageResponse { next_page_token }),
        }))
    }

    async fn update_customer(
        &self,
        request: Request<pb::UpdateCustomerRequest>,
    ) -> Reply<pb::Customer> {
        let context = request_context(&request);
        let req = request.into_inner();
        let id = parse_id("id", &req.id);
        let fields = CustomerFields::validate(customer_fields(
            req.name,
            req.email,
            req.phone,
            req.address,
            req.notes,
        ));
        let (id, fields) = both(id, fields)?;
        let row =
            store::update_customer(&self.pool, &context, id, &fields, req.expected_version).await?;
        Ok(Response::new(self.customer_with_vehicles(row).await?))
    }

    async fn archive_customer(
        &self,
        request: Request<pb::ArchiveCustomerRequest>,
    ) -> Reply<pb::Customer> {
        let context = request_context(&request);
        let id = parse_id("id", &request.get_ref().id).map_err(Error::from)?;
        let row = store::archive_customer(&self.pool, &context, id).await?;
        Ok(Response::new(self.customer_with_vehicles(row).await?))
    }

    async fn add_vehicle(&self, request: Request<pb::AddVehicleRequest>) -> Reply<pb::Vehicle> {
        let context = request_context(&request);
        let req = request.into_inner();
        let customer_id = parse_id("customer_id", &req.customer_id);
        let fields = VehicleFields::validate(
            VehicleFields {
                vin: req.vin,
                make: req.make,
                model: req.model,
                year: req.year,
                license_plate: req.license_plate,
                mileage: req.mileage,
            },
            current_year(),
        );
        let (customer_id, fields) = both(customer_id, fields)?;
        let key = non_empty(&req.idempotency_key);
        let row = store::add_vehicle(&self.pool, &context, customer_id, &fields, key).await?;
        Ok(Response::new(vehicle_to_pb(row)))
    }

    async fn update_vehicle(
        &self,
        request: Request<pb::UpdateVehicleRequest>,
    ) -> Reply<pb::Vehicle> {
        let req = request.into_inner();
        let id = parse_id("id", &req.id).map_err(Error::from)?;
        let current = store::get_vehicle(&self.pool, id).await?;
        let fields = VehicleFields::validate_update(
            VehicleFields {
                vin: current.vin,
                make: req.make,
                model: req.model,
                year: req.year,
                license_plate: req.license_plate,
                mileage: req.mileage,
            },
            current_year(),
        )
        .map_err(Error::from)?;
        let row = store::update_vehicle(&self.pool, id, &fields, req.expected_version).await?;
        Ok(Response::new(vehicle_to_pb(row)))
    }

    async fn get_vehicle(&self, request: Request<pb::GetVehicleRequest>) -> Reply<pb::Vehicle> {
        let id = parse_id("id", &request.get_ref().id).map_err(Error::from)?;
        Ok(Response::new(vehicle_to_pb(
            store::get_vehicle(&self.pool, id).await?,
        )))
    }

    async fn list_vehicles(
        &self,
        request: Request<pb::ListVehiclesRequest>,
    ) -> Reply<pb::ListVehiclesResponse> {
        let req = request.into_inner();
        let customer_id = match req.customer_id.as_str() {
            "" => None,
            id => {
                let id = parse_id("customer_id", id).map_err(Error::from)?;
                // An unknown customer is an error, not an empty list.
                store::get_customer(&self.pool, id).await?;
                Some(id)
            }
        };
        let (limit, after) = page_of(req.page.as_ref())?;
        let plate = non_empty(&req.license_plate);
        let rows = store::list_vehicles(&self.pool, customer_id, plate, after, limit + 1).await?;
        let (rows, next_page_token) = page::split_page(rows, limit, |row| row.id);
        Ok(Response::new(pb::ListVehiclesResponse {
            vehicles: rows.into_iter().map(vehicle_to_pb).collect(),
            page: Some(PageResponse { next_page_token }),
        }))
    }
}

/// Page size and the id after which the page starts.
fn page_of(
    page: Option<&carerp_proto::common::v1::PageRequest>,
) -> Result<(i64, Option<Uuid>), Error> {
    let mut v = Violations::new();
    let (size, token) = page.map_or((0, ""), |p| (p.page_size, p.page_token.as_str()));
    let limit = page::page_size(size)
        .map_err(|e| v.check(Err(e)))
        .unwrap_or(0);
    let after = page::decode_token::<Uuid>(token)
        .map_err(|e| v.check(Err(e)))
        .unwrap_or(None);
    Ok(v.into_result((limit, after))?)
}

/// Both results, or every violation of both.
fn both<A, B>(
    a: Result<A, carerp_kit::FieldViolation>,
    b: Result<B, Violations>,
) -> Result<(A, B), Error> {
    match (a, b) {
        (Ok(a), Ok(b)) => Ok((a, b)),
        (a, b) => {
            let mut v = Violations::new();
            if let Err(e) = a {
                v.check(Err(e));
            }
            if let Err(errs) = b {
                for e in errs.as_slice() {
                    v.check(Err(e.clone()));
                }
            }
            Err(Error::Invalid(v))
        }
    }
}

fn non_empty(value: &str) -> Option<&str> {
    let value = value.trim();
    (!value.is_empty()).then_some(value)
}

fn current_year() -> i32 {
    use chrono::Datelike;
    chrono::Utc::now().year()
}

fn customer_fields(
    name: String,
    email: String,
    phone: String,
    address: Option<pb::Address>,
    notes: String,
) -> CustomerFields {
    let address = address.unwrap_or_default();
    CustomerFields {
        name,
        email,
        phone,
        address: Address {
            line1: address.line1,
            line2: address.line2,
            postal_code: address.postal_code,
            city: address.city,
            country: address.country,
        },
        notes,
    }
}

fn customer_to_pb(row: CustomerRow, vehicles: Vec<VehicleRow>) -> pb::Customer {
    let address = row.address();
    pb::Customer {
        id: row.id.to_string(),
        name: row.name,
        email: row.email,
        phone: row.phone,
        address: Some(pb::Address {
            line1: address.line1,
            line2: address.line2,
            postal_code: address.postal_code,
            city: address.city,
            country: address.country,
        }),
        notes: row.notes,
        archived: row.archived,
        vehicles: vehicles.into_iter().map(vehicle_to_pb).collect(),
        audit: Some(audit(row.created_at, row.updated_at, row.version)),
    }
}

fn vehicle_to_pb(row: VehicleRow) -> pb::Vehicle {
    let vin_decoding =
        vin::decode(&row.vin, &row.make, row.year, current_year()).map(|d| pb::VinDecoding {
            manufacturer: d.manufacturer.unwrap_or_default().to_string(),
            model_year: d.model_year.map_or(0, |m| m.year),
            model_year_certain: d.model_year.is_some_and(|m| m.certain),
            check_digit: match d.check_digit {
                vin::CheckDigit::NotUsed => pb::CheckDigit::NotUsed,
                vin::CheckDigit::Valid => pb::CheckDigit::Valid,
                vin::CheckDigit::Invalid { .. } => pb::CheckDigit::Invalid,
            }
            .into(),
            make_differs: d.make_differs,
            year_differs: d.year_differs,
        });
    pb::Vehicle {
        vin_decoding,
        id: row.id.to_string(),
        customer_id: row.customer_id.to_string(),
        vin: row.vin,
        make: row.make,
        model: row.model,
        year: row.year,
        license_plate: row.license_plate,
        mileage: row.mileage,
        audit: Some(audit(row.created_at, row.updated_at, row.version)),
    }
}
