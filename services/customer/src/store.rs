//! Customers and vehicles in PostgreSQL. Each function is one use case: its SQL, its
//! transaction, and the events it writes to the outbox in that transaction.

use carerp_kit::RequestContext;
use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use crate::domain::{Address, CustomerFields, VehicleFields, check_mileage_update};
use crate::error::Error;
use crate::events;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct CustomerRow {
    pub id: Uuid,
    pub name: String,
    pub email: String,
    pub phone: String,
    pub address_line1: String,
    pub address_line2: String,
    pub address_postal_code: String,
    pub address_city: String,
    pub address_country: String,
    pub notes: String,
    pub archived: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub version: i64,
}

impl CustomerRow {
    pub fn address(&self) -> Address {
        Address {
            line1: self.address_line1.clone(),
            line2: self.address_line2.clone(),
            postal_code: self.address_postal_code.clone(),
            city: self.address_city.clone(),
            country: self.address_country.clone(),
        }
    }
}

#[derive(Debug, Clone, sqlx::FromRow, serde::Deserialize)]
pub struct VehicleRow {
    pub id: Uuid,
    pub customer_id: Uuid,
    pub vin: String,
    pub make: String,
    pub model: String,
    pub year: i32,
    pub license_plate: String,
    pub mileage: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub version: i64,
}

// Macros rather than consts: sqlx only takes SQL it can see is static, and `concat!` needs literals.
macro_rules! customer_columns {
    () => {
        "id, name, email, phone, address_line1, address_line2, address_postal_code, \
         address_city, address_country, notes, archived, created_at, updated_at, version"
    };
}
macro_rules! vehicle_columns {
    () => {
        "id, customer_id, vin, make, model, year, license_plate, mileage, created_at, updated_at, version"
    };
}

/// Creates a customer, or returns the one created earlier with the same idempotency key.
/// What a create did: inserted a customer, or found the one an earlier call with the same
/// idempotency key inserted (which may have vehicles by now).
pub enum Created {
    New(CustomerRow),
    Earlier(CustomerRow),
}

pub async fn create_customer(
    pool: &PgPool,
    context: &RequestContext,
    fields: &CustomerFields,
    idempotency_key: Option<&str>,
) -> Result<Created, Error> {
    let mut tx = carerp_kit::outbox::begin(pool).await?;
    let inserted: Option<CustomerRow> = sqlx::query_as(concat!("INSERT INTO customers (id, name, email, phone, address_line1, address_line2, address_postal_code,
                                address_city, address_country, notes, idempotency_key)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
         ON CONFLICT (idempotency_key) DO NOTHING
         RETURNING ", customer_columns!()))
    .bind(Uuid::now_v7())
    .bind(&fields.name)
    .bind(&fields.email)
    .bind(&fields.phone)
    .bind(&fields.address.line1)
    .bind(&fields.address.line2)
    .bind(&fields.address.postal_code)
    .bind(&fields.address.city)
    .bind(&fields.address.country)
    .bind(&fields.notes)
    .bind(idempotency_key)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(customer) = inserted else {
        // The key was used before: hand back the first result and write nothing.
        tx.rollback().await?;
        let existing: CustomerRow = sqlx::query_as(concat!(
            "SELECT ",
            customer_columns!(),
            " FROM customers WHERE idempotency_key = $1"
        ))
        .bind(idempotency_key)
        .fetch_one(pool)
        .await?;
        return Ok(Created::Earlier(existing));
    };
    events::customer_created(&mut tx, context, &customer).await?;
    tx.commit().await?;
    Ok(Created::New(customer))
}

pub async fn get_customer(pool: &PgPool, id: Uuid) -> Result<CustomerRow, Error> {
    sqlx::query_as(concat!(
        "SELECT ",
        customer_columns!(),
        " FROM customers WHERE id = $1"
    ))
    .bind(id)
    .fetch_optional(pool)
    .await?
    .ok_or(Error::CustomerNotFound(id))
}

/// A customer and their vehicles (oldest first) in one query, so a read is one round trip to
/// the database rather than two.
pub async fn get_customer_with_vehicles(
    pool: &PgPool,
    id: Uuid,
) -> Result<(CustomerRow, Vec<VehicleRow>), Error> {
    #[derive(sqlx::FromRow)]
    struct Found {
        #[sqlx(flatten)]
        customer: CustomerRow,
        vehicles: sqlx::types::Json<Vec<VehicleRow>>,
    }
    let found: Found = sqlx::query_as(concat!(
        "SELECT ",
        customer_columns!(),
        ", coalesce((SELECT json_agg(v ORDER BY v.id) FROM (SELECT ",
        vehicle_columns!(),
        " FROM vehicles WHERE customer_id = $1) v), '[]') AS vehicles
         FROM customers WHERE id = $1"
    ))
    .bind(id)
    .fetch_optional(pool)
    .await?
    .ok_or(Error::CustomerNotFound(id))?;
    Ok((found.customer, found.vehicles.0))
}

/// Customers in creation order (UUIDv7), after `after`, matching `query` over name, email,
/// phone, licence plate and VIN; a plate matches as typed (`plate_key` of the migrations:
/// without spaces, hyphens and dots, any case). Fetches `limit` rows; callers ask one more to
/// detect a next page.
pub async fn list_customers(
    pool: &PgPool,
    query: &str,
    include_archived: bool,
    after: Option<Uuid>,
    limit: i64,
) -> Result<Vec<CustomerRow>, Error> {
    let pattern = like_pattern(query);
    let compact = compact_pattern(query);
    let rows = sqlx::query_as(concat!(
        "SELECT ",
        customer_columns!(),
        " FROM customers c
         WHERE ($1::uuid IS NULL OR c.id > $1)
           AND ($2 OR NOT c.archived)
           AND ($3::text IS NULL
                OR c.name ILIKE $3 OR c.email ILIKE $3 OR c.phone ILIKE $3
                OR c.phone LIKE $5
                OR EXISTS (SELECT 1 FROM vehicles v
                           WHERE v.customer_id = c.id
                             AND (v.license_plate ILIKE $3 OR v.vin ILIKE $3
                                  OR (plate_key($6) <> ''
                                      AND strpos(plate_key(v.license_plate), plate_key($6)) > 0))))
         ORDER BY c.id
         LIMIT $4"
    ))
    .bind(after)
    .bind(include_archived)
    .bind(pattern)
    .bind(limit)
    .bind(compact)
    .bind(query.trim())
    .fetch_all(pool)
    .await?;
    Ok(rows)
}

/// Replaces a customer's contact fields when `expected_version` (0: any) still holds.
pub async fn update_customer(
    pool: &PgPool,
    context: &RequestContext,
    id: Uuid,
    fields: &CustomerFields,
    expected_version: i64,
) -> Result<CustomerRow, Error> {
    let mut tx = carerp_kit::outbox::begin(pool).await?;
    lock_customer(&mut tx, id, expected_version).await?;
    let customer: CustomerRow = sqlx::query_as(concat!("UPDATE customers SET name = $2, email = $3, phone = $4, address_line1 = $5, address_line2 = $6,
                address_postal_code = $7, address_city = $8, address_country = $9, notes = $10,
                updated_at = now(), version = version + 1
         WHERE id = $1
         RETURNING ", customer_columns!()))
    .bind(id)
    .bind(&fields.name)
    .bind(&fields.email)
    .bind(&fields.phone)
    .bind(&fields.address.line1)
    .bind(&fields.address.line2)
    .bind(&fields.address.postal_code)
    .bind(&fields.address.city)
    .bind(&fields.address.country)
    .bind(&fields.notes)
    .fetch_one(&mut *tx)
    .await?;
    events::customer_updated(&mut tx, context, &customer).await?;
    tx.commit().await?;
    Ok(customer)
}

/// Archived customers leave default lists but stay readable. Archiving twice is a no-op.
pub async fn archive_customer(
    pool: &PgPool,
    context: &RequestContext,
    id: Uuid,
) -> Result<CustomerRow, Error> {
    let mut tx = carerp_kit::outbox::begin(pool).await?;
    let current = lock_customer(&mut tx, id, 0).await?;
    if current.archived {
        tx.rollback().await?;
        return Ok(current);
    }
    let customer: CustomerRow = sqlx::query_as(concat!(
        "UPDATE customers SET archived = true, updated_at = now(), version = version + 1
         WHERE id = $1 RETURNING ",
        customer_columns!()
    ))
    .bind(id)
    .fetch_one(&mut *tx)
    .await?;
    events::customer_updated(&mut tx, context, &customer).await?;
    tx.commit().await?;
    Ok(customer)
}

/// Locks the customer row for the rest of the transaction and checks its version.
async fn lock_customer(
    tx: &mut PgConnection,
    id: Uuid,
    expected_version: i64,
) -> Result<CustomerRow, Error> {
    let current: CustomerRow = sqlx::query_as(concat!(
        "SELECT ",
        customer_columns!(),
        " FROM customers WHERE id = $1 FOR UPDATE"
    ))
    .bind(id)
    .fetch_optional(&mut *tx)
    .await?
    .ok_or(Error::CustomerNotFound(id))?;
    if expected_version != 0 && current.version != expected_version {
        return Err(Error::VersionConflict {
            what: "customer",
            id,
            expected: expected_version,
            actual: current.version,
        });
    }
    Ok(current)
}

/// Adds a vehicle to an active customer; the VIN is unique in the tenant.
pub async fn add_vehicle(
    pool: &PgPool,
    context: &RequestContext,
    customer_id: Uuid,
    fields: &VehicleFields,
    idempotency_key: Option<&str>,
) -> Result<VehicleRow, Error> {
    // A retry finds what the first call added, whatever happened to the customer since.
    if let Some(existing) = vehicle_by_key(pool, idempotency_key).await? {
        return Ok(existing);
    }
    let mut tx = carerp_kit::outbox::begin(pool).await?;
    // The share lock keeps the customer from being archived while the vehicle is added.
    let archived: Option<bool> =
        sqlx::query_scalar("SELECT archived FROM customers WHERE id = $1 FOR SHARE")
            .bind(customer_id)
            .fetch_optional(&mut *tx)
            .await?;
    match archived {
        None => return Err(Error::CustomerNotFound(customer_id)),
        Some(true) => return Err(Error::CustomerArchived(customer_id)),
        Some(false) => {}
    }
    let inserted: Result<Option<VehicleRow>, sqlx::Error> = sqlx::query_as(concat!("INSERT INTO vehicles (id, customer_id, vin, make, model, year, license_plate, mileage, idempotency_key)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
         ON CONFLICT (idempotency_key) DO NOTHING
         RETURNING ", vehicle_columns!()))
    .bind(Uuid::now_v7())
    .bind(customer_id)
    .bind(&fields.vin)
    .bind(&fields.make)
    .bind(&fields.model)
    .bind(fields.year)
    .bind(&fields.license_plate)
    .bind(fields.mileage)
    .bind(idempotency_key)
    .fetch_optional(&mut *tx)
    .await;
    let inserted = match inserted {
        Err(err) if carerp_kit::status::is_unique_violation(&err, "vehicles_vin_unique") => {
            tx.rollback().await?;
            // A concurrent call with the same key may have added this very vehicle.
            return match vehicle_by_key(pool, idempotency_key).await? {
                Some(existing) => Ok(existing),
                None => Err(Error::DuplicateVin(fields.vin.clone())),
            };
        }
        other => other?,
    };
    let Some(vehicle) = inserted else {
        // The key was taken by a concurrent call that committed first.
        tx.rollback().await?;
        return vehicle_by_key(pool, idempotency_key)
            .await?
            .ok_or_else(|| Error::Database(sqlx::Error::RowNotFound));
    };
    events::vehicle_added(&mut tx, context, &vehicle).await?;
    tx.commit().await?;
    Ok(vehicle)
}

/// The vehicle added earlier under `idempotency_key`, if any.
async fn vehicle_by_key(
    pool: &PgPool,
    idempotency_key: Option<&str>,
) -> Result<Option<VehicleRow>, Error> {
    let Some(key) = idempotency_key else {
        return Ok(None);
    };
    Ok(sqlx::query_as(concat!(
        "SELECT ",
        vehicle_columns!(),
        " FROM vehicles WHERE idempotency_key = $1"
    ))
    .bind(key)
    .fetch_optional(pool)
    .await?)
}

/// Replaces a vehicle's description and odometer reading; the VIN and owner stay. The
/// mileage check and the write happen under one row lock, so two updates cannot pass the
/// check against the same old reading.
pub async fn update_vehicle(
    pool: &PgPool,
    id: Uuid,
    fields: &VehicleFields,
    expected_version: i64,
) -> Result<VehicleRow, Error> {
    let mut tx = carerp_kit::outbox::begin(pool).await?;
    let current: VehicleRow = sqlx::query_as(concat!(
        "SELECT ",
        vehicle_columns!(),
        " FROM vehicles WHERE id = $1 FOR UPDATE"
    ))
    .bind(id)
    .fetch_optional(&mut *tx)
    .await?
    .ok_or(Error::VehicleNotFound(id))?;
    if expected_version != 0 && current.version != expected_version {
        return Err(Error::VersionConflict {
            what: "vehicle",
            id,
            expected: expected_version,
            actual: current.version,
        });
    }
    check_mileage_update(current.mileage, fields.mileage)?;
    let vehicle: VehicleRow = sqlx::query_as(concat!(
        "UPDATE vehicles SET make = $2, model = $3, year = $4, license_plate = $5, mileage = $6,
                updated_at = now(), version = version + 1
         WHERE id = $1 RETURNING ",
        vehicle_columns!()
    ))
    .bind(id)
    .bind(&fields.make)
    .bind(&fields.model)
    .bind(fields.year)
    .bind(&fields.license_plate)
    .bind(fields.mileage)
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(vehicle)
}

pub async fn get_vehicle(pool: &PgPool, id: Uuid) -> Result<VehicleRow, Error> {
    sqlx::query_as(concat!(
        "SELECT ",
        vehicle_columns!(),
        " FROM vehicles WHERE id = $1"
    ))
    .bind(id)
    .fetch_optional(pool)
    .await?
    .ok_or(Error::VehicleNotFound(id))
}

/// Vehicles in creation order after `after`, of one customer or of all, and with the plate
/// `plate` as typed when given (compared by `plate_key`, which the index `vehicles_plate_key`
/// holds).
pub async fn list_vehicles(
    pool: &PgPool,
    customer_id: Option<Uuid>,
    plate: Option<&str>,
    after: Option<Uuid>,
    limit: i64,
) -> Result<Vec<VehicleRow>, Error> {
    let rows = sqlx::query_as(concat!(
        "SELECT ",
        vehicle_columns!(),
        " FROM vehicles
         WHERE ($1::uuid IS NULL OR customer_id = $1) AND ($2::uuid IS NULL OR id > $2)
           AND ($4::text IS NULL OR plate_key(license_plate) = plate_key($4))
         ORDER BY id LIMIT $3"
    ))
    .bind(customer_id)
    .bind(after)
    .bind(limit)
    .bind(plate)
    .fetch_all(pool)
    .await?;
    Ok(rows)
}

/// The vehicles of several customers at once, for list pages (one query, not one per row).
pub async fn vehicles_of(pool: &PgPool, customer_ids: &[Uuid]) -> Result<Vec<VehicleRow>, Error> {
    let rows = sqlx::query_as(concat!(
        "SELECT ",
        vehicle_columns!(),
        " FROM vehicles WHERE customer_id = ANY($1) ORDER BY id"
    ))
    .bind(customer_ids)
    .fetch_all(pool)
    .await?;
    Ok(rows)
}

/// The query as phone numbers are stored: letters upper-cased, digits and a leading `+`
/// kept, everything else dropped (`"+44 20 7946"` -> `%+44207946%`). `None` when nothing is left. (Plates compare
/// by `plate_key` in SQL instead.)
fn compact_pattern(query: &str) -> Option<String> {
    let compact: String = query
        .trim()
        .chars()
        .enumerate()
        .filter(|(i, c)| c.is_ascii_alphanumeric() || (*i == 0 && *c == '+'))
        .map(|(_, c)| c.to_ascii_uppercase())
        .collect();
    (!compact.is_empty() && compact != "+").then(|| format!("%{compact}%"))
}

/// `%query%` for ILIKE with the wildcards of the query itself escaped; `None` for no filter.
fn like_pattern(query: &str) -> Option<String> {
    let query = query.trim();
    if query.is_empty() {
        return None;
    }
    let escaped = query
        .replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_");
    Some(format!("%{escaped}%"))
}

#[cfg(test)]
mod tests {
    use super::like_pattern;

    #[test]
    fn like_pattern_escapes_wildcards() {
        assert_eq!(like_pattern("  "), None);
        assert_eq!(like_pattern("50%_off").as_deref(), Some("%50\\%\\_off%"));
    }
}
