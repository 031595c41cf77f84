//! The gRPC handlers: decode a request, call the store, map the result to the contract.

use carerp_kit::grpc::request_context;
use carerp_kit::page::{decode_token, page_size, split_page};
use carerp_kit::status::{database_error, invalid_argument, parse_id};
use carerp_kit::{FieldViolation, TenantSettings, Violations};
use carerp_proto::common::v1::{Audit, Money, PageRequest, PageResponse};
use carerp_proto::inventory::v1 as pb;
use carerp_proto::inventory::v1::inventory_service_server::InventoryService;
use sqlx::PgPool;
use tonic::{Request, Response, Status};

use crate::domain::{Adjustment, MovementKind, NewPart, PartChanges, RawMoney};
use crate::store::{self, Error, PartFilter};

// The kit's bound on idempotency keys, one for every service.
use carerp_kit::idempotency::MAX_KEY as MAX_IDEMPOTENCY_KEY;

impl From<Error> for Status {
    fn from(err: Error) -> Self {
        match err {
            Error::Invalid(violations) => invalid_argument(&violations),
            Error::NotFound(message) => Status::not_found(message),
            Error::AlreadyExists(message) => Status::already_exists(message),
            Error::FailedPrecondition(message) => Status::failed_precondition(message),
            Error::Aborted(message) => Status::aborted(message),
            Error::Database(err) => database_error(&err),
        }
    }
}

impl From<FieldViolation> for Error {
    fn from(violation: FieldViolation) -> Self {
        Error::Invalid(violation.into())
    }
}

/// The `InventoryService` implementation.
#[derive(Clone)]
pub struct InventoryApi {
    pool: PgPool,
    settings: TenantSettings,
}

impl InventoryApi {
    pub fn new(pool: PgPool, settings: TenantSettings) -> Self {
        Self { pool, settings }
    }
}

#[tonic::async_trait]
impl InventoryService for InventoryApi {
    async fn create_part(
        &self,
        request: Request<pb::CreatePartRequest>,
    ) -> Result<Response<pb::Part>, Status> {
        let ctx = request_context(&request);
        let req = request.into_inner();
        let mut violations = Violations::new();
        let key = idempotency_key(&mut violations, &req.idempotency_key);
        let validated = NewPart {
            sku: req.sku,
            name: req.name,
            description: req.description,
            category: req.category,
            unit_cost: req.unit_cost.map(raw_money),
            unit_price: req.unit_price.map(raw_money),
            location: req.location,
            reorder_point: req.reorder_point,
            reorder_quantity: req.reorder_quantity,
            initial_quantity: req.initial_quantity,
        }
        .validate(&self.settings.currency);
        let (fields, initial) = all_valid(violations, validated)?;
        let part = store::create_part(
            &self.pool,
            &ctx,
            &fields,
            initial,
            &self.settings.currency,
            key,
        )
        .await?;
        tracing::info!(part_id = %part.id, sku = %part.sku, "part created");
        Ok(Response::new(to_proto(&part)))
    }

    async fn get_part(
        &self,
        request: Request<pb::GetPartRequest>,
    ) -> Result<Response<pb::Part>, Status> {
        let id = parse_id("id", &request.get_ref().id).map_err(Error::from)?;
        let mut conn = self.pool.acquire().await.map_err(Error::from)?;
        let part = store::get_part(&mut conn, id).await?;
        Ok(Response::new(to_proto(&part)))
    }

    async fn list_parts(
        &self,
        request: Request<pb::ListPartsRequest>,
    ) -> Result<Response<pb::ListPartsResponse>, Status> {
        let req = request.into_inner();
        let active = match pb::ActiveFilter::try_from(req.active) {
            Ok(pb::ActiveFilter::Unspecified | pb::ActiveFilter::Active) => Some(true),
            Ok(pb::ActiveFilter::Inactive) => Some(false),
            Ok(pb::ActiveFilter::All) => None,
            Err(_) => {
                return Err(Error::from(FieldViolation::new(
                    "active",
                    format!("{} is not an ActiveFilter", req.active),
                ))
                .into());
            }
        };
        let filter = PartFilter {
            query: req.query,
            category: req.category,
            low_stock_only: req.low_stock_only,
            active,
        };
        self.list(&filter, req.page).await.map(Response::new)
    }

    async fn update_part(
        &self,
        request: Request<pb::UpdatePartRequest>,
    ) -> Result<Response<pb::Part>, Status> {
        let req = request.into_inner();
        let id = parse_id("id", &req.id).map_err(Error::from)?;
        if req.expected_version < 0 {
            return Err(Error::from(FieldViolation::new(
                "expected_version",
                format!("must not be negative, is {}", req.expected_version),
            ))
            .into());
        }
        let changes = PartChanges {
            name: req.name,
            description: req.description,
            category: req.category,
            unit_cost: req.unit_cost.map(raw_money),
            unit_price: req.unit_price.map(raw_money),
            location: req.location,
            reorder_point: req.reorder_point,
            reorder_quantity: req.reorder_quantity,
            active: req.active,
        };
        let part = store::update_part(&self.pool, id, changes, req.expected_version).await?;
        tracing::info!(part_id = %part.id, version = part.version, "part updated");
        Ok(Response::new(to_proto(&part)))
    }

    async fn adjust_stock(
        &self,
        request: Request<pb::AdjustStockRequest>,
    ) -> Result<Response<pb::Part>, Status> {
        let ctx = request_context(&request);
        let req = request.into_inner();
        let mut violations = Violations::new();
        let id =
            parse_id("part_id", &req.part_id).map_err(|v| violations.add(v.field, v.description));
        let kind = match pb::AdjustmentKind::try_from(req.kind) {
            Ok(pb::AdjustmentKind::Receipt) => Some(MovementKind::Receipt),
            Ok(pb::AdjustmentKind::Adjustment) => Some(MovementKind::Adjustment),
            _ => None,
        };
        let adjustment = Adjustment::validate(kind, req.delta, &req.reason, &ctx.actor());
        let key = idempotency_key(&mut violations, &req.idempotency_key);
        // A bad id is already among the violations.
        let both = adjustment.and_then(|adjustment| {
            id.map(|id| (id, adjustment))
                .map_err(|()| Violations::new())
        });
        let (id, adjustment) = all_valid(violations, both)?;
        let part = store::adjust_stock(&self.pool, &ctx, id, &adjustment, key).await?;
        tracing::info!(
            part_id = %part.id,
            delta = adjustment.delta,
            on_hand = part.quantity_on_hand,
            "stock adjusted"
        );
        Ok(Response::new(to_proto(&part)))
    }

    async fn list_low_stock(
        &self,
        request: Request<pb::ListLowStockRequest>,
    ) -> Result<Response<pb::ListPartsResponse>, Status> {
        let filter = PartFilter {
            low_stock_only: true,
            active: Some(true),
            ..PartFilter::default()
        };
        self.list(&filter, request.into_inner().page)
            .await
            .map(Response::new)
    }

    async fn list_movements(
        &self,
        request: Request<pb::ListMovementsRequest>,
    ) -> Result<Response<pb::ListMovementsResponse>, Status> {
        let req = request.into_inner();
        let mut violations = Violations::new();
        let part_id = parse_id("part_id", &req.part_id).map_err(|v| violations.check(Err(v)));
        let page = read_page::<i64>(&mut violations, req.page);
        let (Ok(part_id), Some((limit, after))) = (part_id, page) else {
            return Err(invalid_argument(&violations));
        };
        let rows = store::list_movements(&self.pool, part_id, after, limit).await?;
        let (rows, next_page_token) = split_page(rows, limit, |row| row.seq);
        Ok(Response::new(pb::ListMovementsResponse {
            movements: rows.iter().map(movement_to_proto).collect(),
            page: Some(PageResponse { next_page_token }),
        }))
    }

    async fn reconcile(
        &self,
        request: Request<pb::ReconcileRequest>,
    ) -> Result<Response<pb::ReconcileResponse>, Status> {
        let part_id = match request.get_ref().part_id.trim() {
            "" => None,
            given => Some(parse_id("part_id", given).map_err(Error::from)?),
        };
        let rows = store::reconcile(&self.pool, part_id).await?;
        let parts: Vec<pb::PartReconciliation> = rows
            .iter()
            .map(|row| pb::PartReconciliation {
                part_id: row.part_id.to_string(),
                sku: row.sku.clone(),
                quantity_on_hand: row.quantity_on_hand,
                ledger_on_hand: saturate(row.ledger_on_hand),
                quantity_reserved: row.quantity_reserved,
                ledger_reserved: saturate(row.ledger_reserved),
                consistent: row.consistent(),
            })
            .collect();
        let inconsistent = parts.iter().filter(|part| !part.consistent).count();
        if inconsistent > 0 {
            tracing::error!(
                inconsistent,
                "parts whose quantities differ from their ledger"
            );
        }
        Ok(Response::new(pb::ReconcileResponse {
            parts,
            inconsistent: i32::try_from(inconsistent).unwrap_or(i32::MAX),
        }))
    }
}

impl InventoryApi {
    async fn list(
        &self,
        filter: &PartFilter,
        page: Option<PageRequest>,
    ) -> Result<pb::ListPartsResponse, Status> {
        let mut violations = Violations::new();
        let Some((limit, after)) = read_page::<String>(&mut violations, page) else {
            return Err(invalid_argument(&violations));
        };
        let rows = store::list_parts(&self.pool, filter, after.as_deref(), limit).await?;
        let (rows, next_page_token) = split_page(rows, limit, |part| part.sku.clone());
        Ok(pb::ListPartsResponse {
            parts: rows.iter().map(to_proto).collect(),
            page: Some(PageResponse { next_page_token }),
        })
    }
}

/// The page size and the cursor of a list request; `None` after recording violations.
fn read_page<C: serde::de::DeserializeOwned>(
    violations: &mut Violations,
    page: Option<PageRequest>,
) -> Option<(i64, Option<C>)> {
    let page = page.unwrap_or_default();
    let size = page_size(page.page_size).map_err(|v| violations.check(Err(v)));
    let cursor = decode_token::<C>(&page.page_token).map_err(|v| violations.check(Err(v)));
    match (size, cursor) {
        (Ok(size), Ok(cursor)) if violations.is_empty() => Some((size, cursor)),
        _ => None,
    }
}

/// The value when no violation was recorded anywhere, else every violation at once.
fn all_valid<T>(mut violations: Violations, result: Result<T, Violations>) -> Result<T, Status> {
    match result {
        Ok(value) if violations.is_empty() => Ok(value),
        Ok(_) => Err(invalid_argument(&violations)),
        Err(more) => {
            for v in more.as_slice() {
                violations.add(v.field.clone(), v.description.clone());
            }
            Err(invalid_argument(&violations))
        }
    }
}

/// Keys are stored and indexed: bounded like any other text.
fn idempotency_key<'a>(violations: &mut Violations, raw: &'a str) -> Option<&'a str> {
    let key = non_empty(raw);
    if let Some(key) = key
        && key.chars().count() > MAX_IDEMPOTENCY_KEY
    {
        violations.add(
            "idempotency_key",
            format!(
                "must be at most {MAX_IDEMPOTENCY_KEY} characters, is {}",
                key.chars().count()
            ),
        );
    }
    key
}

fn saturate(value: i64) -> i32 {
    i32::try_from(value).unwrap_or(if value < 0 { i32::MIN } else { i32::MAX })
}

fn non_empty(value: &str) -> Option<&str> {
    Some(value.trim()).filter(|value| !value.is_empty())
}

fn raw_money(money: Money) -> RawMoney {
    RawMoney {
        amount_minor: money.amount_minor,
        currency: money.currency,
    }
}

fn timestamp(at: chrono::DateTime<chrono::Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: at.timestamp(),
        nanos: at.timestamp_subsec_nanos() as i32,
    }
}

pub fn to_proto(part: &store::Part) -> pb::Part {
    let money = |amount_minor| Money {
        amount_minor,
        currency: part.currency.clone(),
    };
    pb::Part {
        id: part.id.to_string(),
        sku: part.sku.clone(),
        name: part.name.clone(),
        description: part.description.clone(),
        category: part.category.clone(),
        unit_cost: Some(money(part.unit_cost_minor)),
        unit_price: Some(money(part.unit_price_minor)),
        location: part.location.clone(),
        reorder_point: part.reorder_point,
        reorder_quantity: part.reorder_quantity,
        active: part.active,
        quantity_on_hand: part.quantity_on_hand,
        quantity_reserved: part.quantity_reserved,
        quantity_available: part.stock().available(),
        audit: Some(Audit {
            created_at: Some(timestamp(part.created_at)),
            updated_at: Some(timestamp(part.updated_at)),
            version: part.version,
        }),
    }
}

fn movement_to_proto(movement: &store::Movement) -> pb::Movement {
    let kind = match MovementKind::parse(&movement.kind) {
        Some(MovementKind::Receipt) => pb::MovementKind::Receipt,
        Some(MovementKind::Adjustment) => pb::MovementKind::Adjustment,
        Some(MovementKind::Reservation) => pb::MovementKind::Reservation,
        Some(MovementKind::Release) => pb::MovementKind::Release,
        Some(MovementKind::Consumption) => pb::MovementKind::Consumption,
        None => pb::MovementKind::Unspecified,
    };
    pb::Movement {
        id: movement.id.to_string(),
        part_id: movement.part_id.to_string(),
        kind: kind as i32,
        on_hand_delta: movement.on_hand_delta,
        reserved_delta: movement.reserved_delta,
        work_order_id: movement
            .work_order_id
            .map(|id| id.to_string())
            .unwrap_or_default(),
        line_id: movement
            .line_id
            .map(|id| id.to_string())
            .unwrap_or_default(),
        reason: movement.reason.clone(),
        actor: movement.actor.clone(),
        at: Some(timestamp(movement.at)),
    }
}
