//! Work orders in PostgreSQL. Each public write is one use case: its SQL, its transaction,
//! the version check, and the events it writes to the outbox in that transaction.
//!
//! Every write first locks the work order row (`FOR UPDATE`) and then compares versions, so
//! of two concurrent writes the second sees the first's result: a stale `expected_version`
//! is refused, and without one the rules are checked against the current state.

use carerp_kit::RequestContext;
use carerp_kit::idempotency::{self, Claimed, Key};
use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use crate::domain::{
    self, Cause, Intake, LaborLine, MAX_LABOR_LINES, MAX_PART_LINES, NewLabor, PartLine,
    ReservationState, Status, Totals,
};
use crate::error::Error;
use crate::events;
use crate::jobs::{self, Channel, Decision, Job, JobState};
use crate::peers::Quote;

/// The work order row, without its lines.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Header {
    pub id: Uuid,
    pub number: String,
    pub customer_id: Uuid,
    pub vehicle_id: Uuid,
    pub complaint: String,
    pub odometer_km: i64,
    pub notes: String,
    pub status: String,
    pub currency: String,
    pub started_at: Option<DateTime<Utc>>,
    pub completed_at: Option<DateTime<Utc>>,
    pub invoiced_at: Option<DateTime<Utc>>,
    pub cancelled_at: Option<DateTime<Utc>>,
    pub cancellation_reason: String,
    pub invoice_id: Option<Uuid>,
    pub status_changed_by: String,
    pub notes_updated_by: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub version: i64,
}

/// A work order with its jobs and lines, as read in one transaction.
#[derive(Debug, Clone)]
pub struct WorkOrder {
    pub header: Header,
    pub status: Status,
    /// The intake job first, then in the order they were added.
    pub jobs: Vec<Job>,
    pub part_lines: Vec<PartLine>,
    pub labor_lines: Vec<LaborLine>,
    /// The last estimate sent, if any.
    pub latest_estimate: Option<EstimateMark>,
}

/// Which estimate version was sent last, and whether it still stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EstimateMark {
    pub version: i32,
    pub outdated: bool,
}

impl WorkOrder {
    pub fn id(&self) -> Uuid {
        self.header.id
    }

    pub fn totals(&self) -> Totals {
        domain::totals(&self.jobs, &self.part_lines, &self.labor_lines)
    }

    /// The job a line is for: the named one, or the intake job.
    pub fn job(&self, job_id: Option<Uuid>) -> Result<&Job, Error> {
        let found = match job_id {
            Some(job_id) => self.jobs.iter().find(|job| job.id == job_id),
            None => self.jobs.iter().find(|job| job.intake),
        };
        found.ok_or_else(|| Error::JobNotFound {
            work_order_id: self.id(),
            job_id: job_id.unwrap_or_default(),
        })
    }
}

#[derive(Debug, sqlx::FromRow)]
struct PartLineRow {
    id: Uuid,
    job_id: Uuid,
    work_order_id: Uuid,
    part_id: Uuid,
    quantity: i32,
    reservation_state: String,
    failure_reason: String,
    sku: String,
    name: String,
    unit_price_minor: Option<i64>,
}

#[derive(Debug, sqlx::FromRow)]
struct LaborLineRow {
    id: Uuid,
    job_id: Uuid,
    work_order_id: Uuid,
    description: String,
    technician: String,
    minutes: i32,
    hourly_rate_minor: i64,
}

// A macro rather than a const: `concat!` needs literals.
macro_rules! header_columns {
    () => {
        "id, number, customer_id, vehicle_id, complaint, odometer_km, notes, status, currency, \
         started_at, completed_at, invoiced_at, cancelled_at, cancellation_reason, invoice_id, \
         status_changed_by, notes_updated_by, created_at, updated_at, version"
    };
}

/// What a new work order is made of, checked by the caller (including with the customer
/// service).
#[derive(Debug, Clone)]
pub struct NewWorkOrder {
    pub customer_id: Uuid,
    pub vehicle_id: Uuid,
    pub intake: Intake,
    pub currency: String,
    /// The tenant's IANA time zone: the number's year is the garage's local year.
    pub timezone: String,
}

/// The tenant's time zone if PostgreSQL knows it, else UTC (with a warning), checked once at
/// start so that creating a work order cannot fail on a misspelt zone.
pub async fn usable_timezone(pool: &PgPool, timezone: &str) -> String {
    match sqlx::query("SELECT now() AT TIME ZONE $1")
        .bind(timezone)
        .execute(pool)
        .await
    {
        Ok(_) => timezone.to_string(),
        Err(err) => {
            tracing::warn!(timezone, error = %err, "unknown time zone: work order numbers use the UTC year");
            "UTC".to_string()
        }
    }
}

/// Today's date in `timezone`.
pub async fn today(pool: &PgPool, timezone: &str) -> Result<chrono::NaiveDate, Error> {
    let (today,): (chrono::NaiveDate,) = sqlx::query_as("SELECT (now() AT TIME ZONE $1)::date")
        .bind(timezone)
        .fetch_one(pool)
        .await?;
    Ok(today)
}

/// The work order created earlier with this idempotency key, if any.
pub async fn find_by_idempotency_key(pool: &PgPool, key: &str) -> Result<Option<WorkOrder>, Error> {
    let mut conn = snapshot(pool).await?;
    let header: Option<Header> = sqlx::query_as(concat!(
        "SELECT ",
        header_columns!(),
        " FROM work_orders WHERE idempotency_key = $1"
    ))
    .bind(key)
    .fetch_optional(&mut *conn)
    .await?;
    let found = match header {
        Some(header) => Some(with_lines(&mut conn, vec![header]).await?.remove(0)),
        None => None,
    };
    conn.commit().await?;
    Ok(found)
}

/// A read-only transaction that sees one snapshot: a work order's header (with its version)
/// and its lines are read in several statements, and must agree with each other.
pub(crate) async fn snapshot(
    pool: &PgPool,
) -> Result<sqlx::Transaction<'static, sqlx::Postgres>, Error> {
    let mut tx = pool.begin().await?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .execute(&mut *tx)
        .await?;
    Ok(tx)
}

/// Creates a work order with the next number of the current year, or returns the one
/// created earlier with the same idempotency key (then no number is used up).
pub async fn create_work_order(
    pool: &PgPool,
    context: &RequestContext,
    new: &NewWorkOrder,
    idempotency_key: Option<&str>,
) -> Result<WorkOrder, Error> {
    let mut tx = carerp_kit::outbox::begin(pool).await?;
    let (year,): (i32,) = sqlx::query_as("SELECT EXTRACT(YEAR FROM now() AT TIME ZONE $1)::int")
        .bind(&new.timezone)
        .fetch_one(&mut *tx)
        .await?;
    let sequence = allocate_number(&mut tx, year).await?;
    let number = domain::format_number(year, sequence);
    let id = Uuid::now_v7();
    let inserted = sqlx::query(
        "INSERT INTO work_orders (id, number, customer_id, vehicle_id, complaint, odometer_km, notes,
                                  status, currency, idempotency_key)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
         ON CONFLICT (idempotency_key) DO NOTHING",
    )
    .bind(id)
    .bind(&number)
    .bind(new.customer_id)
    .bind(new.vehicle_id)
    .bind(&new.intake.complaint)
    .bind(new.intake.odometer_km)
    .bind(&new.intake.notes)
    .bind(Status::Open.as_str())
    .bind(&new.currency)
    .bind(idempotency_key)
    .execute(&mut *tx)
    .await?;
    if inserted.rows_affected() == 0 {
        // Created concurrently or earlier with this key: give the number back by rolling back.
        tx.rollback().await?;
        let key = idempotency_key.unwrap_or_default();
        return find_by_idempotency_key(pool, key)
            .await?
            .ok_or_else(|| Error::Conflict(format!("idempotency key {key:?} vanished")));
    }
    // The intake job: the complaint the order was opened for, authorised at intake.
    sqlx::query(
        "INSERT INTO jobs (id, work_order_id, title, state, intake, decided_by, decided_via, decided_at)
         VALUES ($1, $2, $3, 'APPROVED', true, $4, 'INTAKE', now())",
    )
    .bind(Uuid::now_v7())
    .bind(id)
    .bind(intake_title(&new.intake.complaint))
    .bind(context.actor())
    .execute(&mut *tx)
    .await?;
    let order = load(&mut tx, id).await?;
    events::work_order_created(&mut tx, context, &order).await?;
    tx.commit().await?;
    Ok(order)
}

/// The complaint, shortened to a job's title where it is longer.
fn intake_title(complaint: &str) -> String {
    match complaint.char_indices().nth(jobs::MAX_TITLE - 1) {
        Some((cut, _)) => format!("{}…", &complaint[..cut]),
        None => complaint.to_string(),
    }
}

/// Takes the next number of `year`; the counter row stays locked until the transaction
/// ends, so numbers are handed out in commit order without gaps.
async fn allocate_number(conn: &mut PgConnection, year: i32) -> Result<i64, Error> {
    let (number,): (i64,) = sqlx::query_as(
        "INSERT INTO work_order_counters (year, last_number) VALUES ($1, 1)
         ON CONFLICT (year) DO UPDATE SET last_number = work_order_counters.last_number + 1
         RETURNING last_number",
    )
    .bind(year)
    .fetch_one(conn)
    .await?;
    Ok(number)
}

pub async fn get_work_order(pool: &PgPool, id: Uuid) -> Result<WorkOrder, Error> {
    let mut tx = snapshot(pool).await?;
    let order = load(&mut tx, id).await?;
    tx.commit().await?;
    Ok(order)
}

/// Which work orders a list shows; empty fields do not filter.
#[derive(Debug, Clone, Default)]
pub struct ListFilter {
    pub statuses: Vec<Status>,
    pub customer_id: Option<Uuid>,
    pub vehicle_id: Option<Uuid>,
}

/// Newest first (ids are UUIDv7, so id order is creation order); `after` is the last id of
/// the previous page.
pub async fn list_work_orders(
    pool: &PgPool,
    filter: &ListFilter,
    after: Option<Uuid>,
    limit: i64,
) -> Result<Vec<WorkOrder>, Error> {
    let mut conn = snapshot(pool).await?;
    let orders = list_work_orders_in(&mut conn, filter, after, limit).await?;
    conn.commit().await?;
    Ok(orders)
}

/// [`list_work_orders`] within the caller's transaction.
pub async fn list_work_orders_in(
    conn: &mut PgConnection,
    filter: &ListFilter,
    after: Option<Uuid>,
    limit: i64,
) -> Result<Vec<WorkOrder>, Error> {
    let statuses: Vec<&str> = filter.statuses.iter().map(|s| s.as_str()).collect();
    let headers: Vec<Header> = sqlx::query_as(concat!(
        "SELECT ",
        header_columns!(),
        " FROM work_orders
          WHERE (cardinality($1::text[]) = 0 OR status = ANY($1))
            AND ($2::uuid IS NULL OR customer_id = $2)
            AND ($3::uuid IS NULL OR vehicle_id = $3)
            AND ($4::uuid IS NULL OR id < $4)
          ORDER BY id DESC
          LIMIT $5"
    ))
    .bind(&statuses)
    .bind(filter.customer_id)
    .bind(filter.vehicle_id)
    .bind(after)
    .bind(limit)
    .fetch_all(&mut *conn)
    .await?;
    with_lines(conn, headers).await
}

/// How many work orders are in each status that has any.
pub async fn count_by_status(pool: &PgPool) -> Result<Vec<(String, i64)>, Error> {
    Ok(
        sqlx::query_as("SELECT status, count(*) FROM work_orders GROUP BY status")
            .fetch_all(pool)
            .await?,
    )
}

/// Reads a work order and its lines.
/// The work orders with these ids that exist, newest first.
pub async fn load_all(conn: &mut PgConnection, ids: &[Uuid]) -> Result<Vec<WorkOrder>, Error> {
    let headers: Vec<Header> = sqlx::query_as(concat!(
        "SELECT ",
        header_columns!(),
        " FROM work_orders WHERE id = ANY($1) ORDER BY id DESC"
    ))
    .bind(ids)
    .fetch_all(&mut *conn)
    .await?;
    with_lines(conn, headers).await
}

pub async fn load(conn: &mut PgConnection, id: Uuid) -> Result<WorkOrder, Error> {
    let header: Option<Header> = sqlx::query_as(concat!(
        "SELECT ",
        header_columns!(),
        " FROM work_orders WHERE id = $1"
    ))
    .bind(id)
    .fetch_optional(&mut *conn)
    .await?;
    let header = header.ok_or(Error::WorkOrderNotFound(id))?;
    Ok(with_lines(conn, vec![header]).await?.remove(0))
}

/// Locks a work order for a write and checks the version the caller based it on
/// (`expected_version` 0 skips the check).
pub async fn lock(
    conn: &mut PgConnection,
    id: Uuid,
    expected_version: i64,
) -> Result<WorkOrder, Error> {
    let header: Option<Header> = sqlx::query_as(concat!(
        "SELECT ",
        header_columns!(),
        " FROM work_orders WHERE id = $1 FOR UPDATE"
    ))
    .bind(id)
    .fetch_optional(&mut *conn)
    .await?;
    let header = header.ok_or(Error::WorkOrderNotFound(id))?;
    check_version(&header, expected_version)?;
    Ok(with_lines(conn, vec![header]).await?.remove(0))
}

fn check_version(header: &Header, expected_version: i64) -> Result<(), Error> {
    if expected_version != 0 && header.version != expected_version {
        return Err(Error::VersionConflict {
            id: header.id,
            expected: expected_version,
            actual: header.version,
        });
    }
    Ok(())
}

/// The operations whose retries the kit's idempotency recognises (`kit::idempotency`).
pub const ADD_PART_LINE: &str = "workorder.add-part-line";
pub const ADD_LABOR_LINE: &str = "workorder.add-labor-line";
pub const RETRY_RESERVATION: &str = "workorder.retry-reservation";

/// What locking a work order for a keyed write found.
pub(crate) enum Keyed {
    /// The order, locked, its version checked: do the write.
    Write(WorkOrder),
    /// The key already did this request: the order as it is now, nothing to write.
    Repeated(WorkOrder),
}

/// Claims the request's key (if any), then locks the work order. A key that already did this
/// request is recognised before the version and status checks: the first call moved the
/// version on (and the order may have moved on since), yet its retry must still get the
/// order, not an error. The same key with a different request is refused, naming the key.
pub(crate) async fn lock_keyed(
    conn: &mut PgConnection,
    id: Uuid,
    expected_version: i64,
    key: Option<(&Key, &str, String)>,
) -> Result<Keyed, Error> {
    if let Some((key, operation, fingerprint)) = &key {
        let claimed: Claimed<serde_json::Value> =
            idempotency::begin(conn, key, operation, fingerprint).await?;
        if let Claimed::Replay(_) = claimed {
            return Ok(Keyed::Repeated(load(conn, id).await?));
        }
    }
    let order = lock(conn, id, 0).await?;
    check_version(&order.header, expected_version)?;
    ensure_lines_editable(&order)?;
    Ok(Keyed::Write(order))
}

/// Records that the work order changed: every write ends here, so the version moves once
/// per write whatever it touched.
pub async fn touch(conn: &mut PgConnection, id: Uuid) -> Result<(), Error> {
    sqlx::query("UPDATE work_orders SET version = version + 1, updated_at = now() WHERE id = $1")
        .bind(id)
        .execute(conn)
        .await?;
    Ok(())
}

#[derive(Debug, sqlx::FromRow)]
struct JobRow {
    id: Uuid,
    work_order_id: Uuid,
    title: String,
    state: String,
    intake: bool,
    decided_by: String,
    decided_via: String,
    decided_at: Option<DateTime<Utc>>,
    decision_reason: String,
    remind_after: Option<chrono::NaiveDate>,
    estimate_version: i32,
}

impl JobRow {
    fn into_job(self) -> Result<Job, Error> {
        let state = JobState::parse(&self.state)
            .ok_or_else(|| corrupt(format!("unknown job state {:?}", self.state)))?;
        let decision = match self.decided_at {
            None => None,
            Some(decided_at) => Some(Decision {
                decided_by: self.decided_by,
                channel: Channel::parse(&self.decided_via).ok_or_else(|| {
                    corrupt(format!("unknown decision channel {:?}", self.decided_via))
                })?,
                decided_at,
                reason: self.decision_reason,
                remind_after: self.remind_after,
                estimate_version: self.estimate_version,
            }),
        };
        Ok(Job {
            id: self.id,
            title: self.title,
            state,
            intake: self.intake,
            decision,
        })
    }
}

async fn with_lines(
    conn: &mut PgConnection,
    headers: Vec<Header>,
) -> Result<Vec<WorkOrder>, Error> {
    let ids: Vec<Uuid> = headers.iter().map(|h| h.id).collect();
    let job_rows: Vec<JobRow> = sqlx::query_as(
        "SELECT id, work_order_id, title, state, intake, decided_by, decided_via, decided_at,
                decision_reason, remind_after, estimate_version
         FROM jobs WHERE work_order_id = ANY($1) ORDER BY intake DESC, created_at, id",
    )
    .bind(&ids)
    .fetch_all(&mut *conn)
    .await?;
    let parts: Vec<PartLineRow> = sqlx::query_as(
        "SELECT id, job_id, work_order_id, part_id, quantity, reservation_state, failure_reason,
                sku, name, unit_price_minor
         FROM part_lines WHERE work_order_id = ANY($1) ORDER BY id",
    )
    .bind(&ids)
    .fetch_all(&mut *conn)
    .await?;
    let labor: Vec<LaborLineRow> = sqlx::query_as(
        "SELECT id, job_id, work_order_id, description, technician, minutes, hourly_rate_minor
         FROM labor_lines WHERE work_order_id = ANY($1) ORDER BY id",
    )
    .bind(&ids)
    .fetch_all(&mut *conn)
    .await?;
    let estimates: Vec<(Uuid, i32, bool)> = sqlx::query_as(
        "SELECT DISTINCT ON (work_order_id) work_order_id, version, outdated_at IS NOT NULL
         FROM estimates WHERE work_order_id = ANY($1) ORDER BY work_order_id, version DESC",
    )
    .bind(&ids)
    .fetch_all(&mut *conn)
    .await?;
    let mut jobs_of: std::collections::HashMap<Uuid, Vec<Job>> = Default::default();
    for row in job_rows {
        let work_order_id = row.work_order_id;
        jobs_of
            .entry(work_order_id)
            .or_default()
            .push(row.into_job()?);
    }
    headers
        .into_iter()
        .map(|header| {
            let status = Status::parse(&header.status)
                .ok_or_else(|| corrupt(format!("unknown status {:?}", header.status)))?;
            let part_lines = parts
                .iter()
                .filter(|row| row.work_order_id == header.id)
                .map(|row| {
                    Ok(PartLine {
                        id: row.id,
                        job_id: row.job_id,
                        part_id: row.part_id,
                        quantity: row.quantity,
                        state: ReservationState::parse(&row.reservation_state).ok_or_else(
                            || {
                                corrupt(format!(
                                    "unknown reservation state {:?}",
                                    row.reservation_state
                                ))
                            },
                        )?,
                        failure_reason: row.failure_reason.clone(),
                        sku: row.sku.clone(),
                        name: row.name.clone(),
                        unit_price_minor: row.unit_price_minor,
                    })
                })
                .collect::<Result<Vec<_>, Error>>()?;
            let labor_lines = labor
                .iter()
                .filter(|row| row.work_order_id == header.id)
                .map(|row| LaborLine {
                    id: row.id,
                    job_id: row.job_id,
                    description: row.description.clone(),
                    technician: row.technician.clone(),
                    minutes: row.minutes,
                    hourly_rate_minor: row.hourly_rate_minor,
                })
                .collect();
            let latest_estimate = estimates
                .iter()
                .find(|(work_order_id, _, _)| *work_order_id == header.id)
                .map(|&(_, version, outdated)| EstimateMark { version, outdated });
            Ok(WorkOrder {
                jobs: jobs_of.remove(&header.id).unwrap_or_default(),
                header,
                status,
                part_lines,
                labor_lines,
                latest_estimate,
            })
        })
        .collect()
}

/// A value the schema's CHECK constraints should have kept out.
fn corrupt(message: String) -> Error {
    Error::Database(sqlx::Error::Decode(message.into()))
}

/// Moves a work order through its life cycle at someone's request; completing and cancelling
/// tell the other services.
pub async fn change_status(
    pool: &PgPool,
    context: &RequestContext,
    id: Uuid,
    to: Status,
    reason: &str,
    expected_version: i64,
) -> Result<WorkOrder, Error> {
    let mut tx = carerp_kit::outbox::begin(pool).await?;
    let order = lock(&mut tx, id, expected_version).await?;
    // Asking for the status the order already has is a retry whose first answer was lost:
    // it is done, and answered with the order as it is.
    if order.status == to {
        tx.rollback().await?;
        return Ok(order);
    }
    domain::check_transition(
        order.status,
        to,
        Cause::Request,
        order.header.started_at.is_some(),
        &order.jobs,
        &order.part_lines,
    )?;
    set_status(&mut tx, context, id, to, reason).await?;
    touch(&mut tx, id).await?;
    let order = load(&mut tx, id).await?;
    match to {
        Status::Completed => events::work_order_completed(&mut tx, context, &order).await?,
        Status::Cancelled => {
            events::work_order_cancelled(&mut tx, context, &order).await?;
            carerp_kit::outbox::audit(
                &mut tx,
                context,
                "workorder.cancelled",
                format!("work-order/{id}"),
                serde_json::json!({ "number": order.header.number, "reason": reason }),
            )
            .await?;
        }
        _ => {}
    }
    tx.commit().await?;
    Ok(order)
}

/// Writes a status, the timestamp that goes with it, and who asked for it. `started_at`
/// keeps the first start.
pub(crate) async fn set_status(
    conn: &mut PgConnection,
    context: &RequestContext,
    id: Uuid,
    to: Status,
    cancellation_reason: &str,
) -> Result<(), Error> {
    sqlx::query(
        "UPDATE work_orders SET
            status = $2,
            started_at = CASE WHEN $2 = 'IN_PROGRESS' THEN COALESCE(started_at, now()) ELSE started_at END,
            completed_at = CASE WHEN $2 = 'COMPLETED' THEN now() ELSE completed_at END,
            invoiced_at = CASE WHEN $2 = 'INVOICED' THEN now() ELSE invoiced_at END,
            cancelled_at = CASE WHEN $2 = 'CANCELLED' THEN now() ELSE cancelled_at END,
            cancellation_reason = CASE WHEN $2 = 'CANCELLED' THEN $3 ELSE cancellation_reason END,
            status_changed_by = $4
         WHERE id = $1",
    )
    .bind(id)
    .bind(to.as_str())
    .bind(cancellation_reason)
    .bind(context.actor())
    .execute(conn)
    .await?;
    Ok(())
}

pub(crate) fn ensure_lines_editable(order: &WorkOrder) -> Result<(), Error> {
    if order.status.allows_line_changes() {
        Ok(())
    } else {
        Err(Error::LinesLocked {
            id: order.id(),
            status: order.status,
        })
    }
}

/// The state of a job, read before a write that depends on it asks another service (a part
/// is quoted for a PROPOSED job only); the write checks it again under the lock.
pub async fn job_state(pool: &PgPool, id: Uuid, job_id: Uuid) -> Result<JobState, Error> {
    let state: Option<(String,)> =
        sqlx::query_as("SELECT state FROM jobs WHERE id = $1 AND work_order_id = $2")
            .bind(job_id)
            .bind(id)
            .fetch_optional(pool)
            .await?;
    let (state,) = state.ok_or(Error::JobNotFound {
        work_order_id: id,
        job_id,
    })?;
    JobState::parse(&state).ok_or_else(|| corrupt(format!("unknown job state {state:?}")))
}

/// A part line to add: which part, how many, for which job (`None`: the intake job), and its
/// quote when the job is PROPOSED.
#[derive(Debug, Clone)]
pub struct NewPartLine {
    pub part_id: Uuid,
    pub quantity: i32,
    pub job_id: Option<Uuid>,
    pub quote: Option<Quote>,
}

/// Adds a part line. For an APPROVED job it is PENDING until inventory reserves it, and
/// inventory is asked to; for a PROPOSED job it is QUOTED at the part's current price and
/// reserved once the customer approves. A retry with the same idempotency key writes nothing
/// and returns the order as it is now.
pub async fn add_part_line(
    pool: &PgPool,
    context: &RequestContext,
    id: Uuid,
    line: &NewPartLine,
    expected_version: i64,
    idempotency_key: Option<&Key>,
) -> Result<WorkOrder, Error> {
    let (part_id, quantity) = (line.part_id, line.quantity);
    let mut tx = carerp_kit::outbox::begin(pool).await?;
    let key = idempotency_key.map(|key| {
        let fingerprint =
            idempotency::fingerprint(ADD_PART_LINE, &(id, part_id, quantity, line.job_id));
        (key, ADD_PART_LINE, fingerprint)
    });
    let order = match lock_keyed(&mut tx, id, expected_version, key).await? {
        Keyed::Write(order) => order,
        Keyed::Repeated(order) => {
            tx.rollback().await?;
            return Ok(order);
        }
    };
    if order.part_lines.len() >= MAX_PART_LINES {
        return Err(Error::TooManyLines {
            id,
            kind: "part",
            max: MAX_PART_LINES,
        });
    }
    let job = order.job(line.job_id)?;
    jobs::check_lines_editable(job)?;
    let (job_id, job_state) = (job.id, job.state);
    let state = match (job_state, &line.quote) {
        (JobState::Approved, _) => ReservationState::Pending,
        (_, Some(_)) => ReservationState::Quoted,
        // Approved meanwhile is handled above; any other change was refused; so this is a
        // PROPOSED job that the caller did not quote for.
        (_, None) => {
            return Err(Error::Conflict(format!(
                "job {job_id} is PROPOSED: its part lines are quoted, and part {part_id} was not"
            )));
        }
    };
    if let Some(quote) = &line.quote
        && quote.currency != order.header.currency
    {
        return Err(Error::Conflict(format!(
            "inventory prices part {part_id} in {}, but work order {id} is kept in {}",
            quote.currency, order.header.currency
        )));
    }
    let line_id = insert_part_line(
        &mut tx,
        id,
        job_id,
        part_id,
        quantity,
        state,
        line.quote.as_ref(),
    )
    .await?;
    if let Some(key) = idempotency_key {
        idempotency::finish(&mut tx, key, &line_id).await?;
    }
    if job_state == JobState::Proposed {
        mark_estimate_outdated(&mut tx, id).await?;
    }
    touch(&mut tx, id).await?;
    let order = load(&mut tx, id).await?;
    if state == ReservationState::Pending {
        let new_lines: Vec<&PartLine> = order
            .part_lines
            .iter()
            .filter(|l| l.id == line_id)
            .collect();
        events::parts_added(&mut tx, context, id, &new_lines).await?;
    }
    tx.commit().await?;
    Ok(order)
}

/// The last estimate sent no longer shows what the PROPOSED jobs are: its link stops working.
pub(crate) async fn mark_estimate_outdated(conn: &mut PgConnection, id: Uuid) -> Result<(), Error> {
    sqlx::query(
        "UPDATE estimates SET outdated_at = now() WHERE work_order_id = $1 AND outdated_at IS NULL",
    )
    .bind(id)
    .execute(conn)
    .await?;
    Ok(())
}

/// Whether changing a line of `job_id` is allowed, and whether it changes the estimate.
async fn check_line_change(
    conn: &mut PgConnection,
    order: &WorkOrder,
    job_id: Uuid,
) -> Result<(), Error> {
    let job = order.job(Some(job_id))?;
    jobs::check_lines_editable(job)?;
    if job.state == JobState::Proposed {
        mark_estimate_outdated(conn, order.id()).await?;
    }
    Ok(())
}

/// Removes a part line before the work is completed. A line that inventory reserved, or may
/// still reserve (PENDING), is announced as removed, so its stock is released at once rather
/// than when the order is completed or cancelled.
pub async fn remove_part_line(
    pool: &PgPool,
    context: &RequestContext,
    id: Uuid,
    line_id: Uuid,
    expected_version: i64,
) -> Result<WorkOrder, Error> {
    let mut tx = carerp_kit::outbox::begin(pool).await?;
    let order = lock(&mut tx, id, expected_version).await?;
    ensure_lines_editable(&order)?;
    if let Some(line) = order.part_lines.iter().find(|line| line.id == line_id) {
        check_line_change(&mut tx, &order, line.job_id).await?;
    }
    let held = order.part_lines.iter().find(|line| {
        line.id == line_id
            && matches!(
                line.state,
                ReservationState::Reserved | ReservationState::Pending
            )
    });
    if let Some(line) = held {
        events::parts_removed(&mut tx, context, id, &[line]).await?;
    }
    let deleted = sqlx::query("DELETE FROM part_lines WHERE id = $1 AND work_order_id = $2")
        .bind(line_id)
        .bind(id)
        .execute(&mut *tx)
        .await?;
    if deleted.rows_affected() == 0 {
        return Err(Error::PartLineNotFound {
            work_order_id: id,
            line_id,
        });
    }
    touch(&mut tx, id).await?;
    let order = load(&mut tx, id).await?;
    tx.commit().await?;
    Ok(order)
}

/// Adds a labour line; `labor` was validated against `currency`, the tenant's currency.
/// A retry with the same idempotency key writes nothing and returns the order as it is now.
/// Inserts a part line (its price, when quoted, is the quote's); the caller checks the
/// order's limits and the job, and touches the order.
pub(crate) async fn insert_part_line(
    conn: &mut PgConnection,
    id: Uuid,
    job_id: Uuid,
    part_id: Uuid,
    quantity: i32,
    state: ReservationState,
    quote: Option<&Quote>,
) -> Result<Uuid, Error> {
    let line_id = Uuid::now_v7();
    sqlx::query(
        "INSERT INTO part_lines (id, work_order_id, job_id, part_id, quantity, reservation_state,
                                 sku, name, unit_price_minor)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(line_id)
    .bind(id)
    .bind(job_id)
    .bind(part_id)
    .bind(quantity)
    .bind(state.as_str())
    .bind(quote.map_or("", |q| q.sku.as_str()))
    .bind(quote.map_or("", |q| q.name.as_str()))
    .bind(quote.map(|q| q.unit_price_minor))
    .execute(conn)
    .await?;
    Ok(line_id)
}

/// Inserts a labour line; as [`insert_part_line`], the caller checks and touches.
pub(crate) async fn insert_labor_line(
    conn: &mut PgConnection,
    id: Uuid,
    job_id: Uuid,
    labor: &NewLabor,
) -> Result<Uuid, Error> {
    let line_id = Uuid::now_v7();
    sqlx::query(
        "INSERT INTO labor_lines (id, work_order_id, job_id, description, technician, minutes,
                                  hourly_rate_minor)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(line_id)
    .bind(id)
    .bind(job_id)
    .bind(&labor.description)
    .bind(&labor.technician)
    .bind(labor.minutes)
    .bind(labor.hourly_rate_minor)
    .execute(conn)
    .await?;
    Ok(line_id)
}

pub async fn add_labor_line(
    pool: &PgPool,
    id: Uuid,
    job_id: Option<Uuid>,
    labor: &NewLabor,
    currency: &str,
    expected_version: i64,
    idempotency_key: Option<&Key>,
) -> Result<WorkOrder, Error> {
    let mut tx = carerp_kit::outbox::begin(pool).await?;
    let key = idempotency_key.map(|key| {
        let fingerprint = idempotency::fingerprint(
            ADD_LABOR_LINE,
            &(
                id,
                &labor.description,
                &labor.technician,
                labor.minutes,
                labor.hourly_rate_minor,
                job_id,
            ),
        );
        (key, ADD_LABOR_LINE, fingerprint)
    });
    let order = match lock_keyed(&mut tx, id, expected_version, key).await? {
        Keyed::Write(order) => order,
        Keyed::Repeated(order) => {
            tx.rollback().await?;
            return Ok(order);
        }
    };
    if order.labor_lines.len() >= MAX_LABOR_LINES {
        return Err(Error::TooManyLines {
            id,
            kind: "labour",
            max: MAX_LABOR_LINES,
        });
    }
    if order.header.currency != currency {
        return Err(Error::Conflict(format!(
            "work order {id} is kept in {}, but the tenant now uses {currency}: labour cannot be added at a {currency} rate",
            order.header.currency
        )));
    }
    let job_id = order.job(job_id)?.id;
    check_line_change(&mut tx, &order, job_id).await?;
    let line_id = insert_labor_line(&mut tx, id, job_id, labor).await?;
    if let Some(key) = idempotency_key {
        idempotency::finish(&mut tx, key, &line_id).await?;
    }
    touch(&mut tx, id).await?;
    let order = load(&mut tx, id).await?;
    tx.commit().await?;
    Ok(order)
}

pub async fn remove_labor_line(
    pool: &PgPool,
    id: Uuid,
    line_id: Uuid,
    expected_version: i64,
) -> Result<WorkOrder, Error> {
    let mut tx = carerp_kit::outbox::begin(pool).await?;
    let order = lock(&mut tx, id, expected_version).await?;
    ensure_lines_editable(&order)?;
    if let Some(line) = order.labor_lines.iter().find(|line| line.id == line_id) {
        check_line_change(&mut tx, &order, line.job_id).await?;
    }
    let deleted = sqlx::query("DELETE FROM labor_lines WHERE id = $1 AND work_order_id = $2")
        .bind(line_id)
        .bind(id)
        .execute(&mut *tx)
        .await?;
    if deleted.rows_affected() == 0 {
        return Err(Error::LaborLineNotFound {
            work_order_id: id,
            line_id,
        });
    }
    touch(&mut tx, id).await?;
    let order = load(&mut tx, id).await?;
    tx.commit().await?;
    Ok(order)
}

/// Notes are the garage's own remarks and may change in any status.
pub async fn update_notes(
    pool: &PgPool,
    context: &RequestContext,
    id: Uuid,
    notes: &str,
    expected_version: i64,
) -> Result<WorkOrder, Error> {
    let mut tx = carerp_kit::outbox::begin(pool).await?;
    lock(&mut tx, id, expected_version).await?;
    sqlx::query("UPDATE work_orders SET notes = $2, notes_updated_by = $3 WHERE id = $1")
        .bind(id)
        .bind(notes)
        .bind(context.actor())
        .execute(&mut *tx)
        .await?;
    touch(&mut tx, id).await?;
    let order = load(&mut tx, id).await?;
    tx.commit().await?;
    Ok(order)
}

/// Puts the FAILED part lines back to PENDING and announces them again, so inventory retries
/// them (after stock arrived, for instance).
pub async fn retry_reservation(
    pool: &PgPool,
    context: &RequestContext,
    id: Uuid,
    expected_version: i64,
    idempotency_key: Option<&Key>,
) -> Result<WorkOrder, Error> {
    let mut tx = carerp_kit::outbox::begin(pool).await?;
    let key = idempotency_key.map(|key| {
        let fingerprint = idempotency::fingerprint(RETRY_RESERVATION, &id);
        (key, RETRY_RESERVATION, fingerprint)
    });
    let order = match lock_keyed(&mut tx, id, expected_version, key).await? {
        Keyed::Write(order) => order,
        Keyed::Repeated(order) => {
            tx.rollback().await?;
            return Ok(order);
        }
    };
    if let Some(key) = idempotency_key {
        idempotency::finish(&mut tx, key, &id).await?;
    }
    let failed: Vec<Uuid> = order
        .part_lines
        .iter()
        .filter(|line| line.state == ReservationState::Failed)
        .map(|line| line.id)
        .collect();
    if failed.is_empty() {
        return Err(Error::NothingToRetry(id));
    }
    sqlx::query(
        "UPDATE part_lines SET reservation_state = 'PENDING', failure_reason = ''
         WHERE work_order_id = $1 AND id = ANY($2)",
    )
    .bind(id)
    .bind(&failed)
    .execute(&mut *tx)
    .await?;
    touch(&mut tx, id).await?;
    let order = load(&mut tx, id).await?;
    let retried: Vec<&PartLine> = order
        .part_lines
        .iter()
        .filter(|line| failed.contains(&line.id))
        .collect();
    events::parts_added(&mut tx, context, id, &retried).await?;
    tx.commit().await?;
    Ok(order)
}

/// Records inventory's reservation of one line: snapshot of SKU, name and price.
pub(crate) async fn mark_reserved(
    conn: &mut PgConnection,
    line_id: Uuid,
    sku: &str,
    name: &str,
    unit_price_minor: i64,
) -> Result<(), Error> {
    sqlx::query(
        // A quoted line keeps the price the customer approved.
        "UPDATE part_lines SET reservation_state = 'RESERVED', failure_reason = '',
                sku = $2, name = $3, unit_price_minor = COALESCE(unit_price_minor, $4)
         WHERE id = $1",
    )
    .bind(line_id)
    .bind(sku)
    .bind(name)
    .bind(unit_price_minor)
    .execute(conn)
    .await?;
    Ok(())
}

pub(crate) async fn mark_failed(
    conn: &mut PgConnection,
    line_id: Uuid,
    reason: &str,
) -> Result<(), Error> {
    sqlx::query(
        "UPDATE part_lines SET reservation_state = 'FAILED', failure_reason = $2 WHERE id = $1",
    )
    .bind(line_id)
    .bind(reason)
    .execute(conn)
    .await?;
    Ok(())
}

/// Forgets the order's invoice (it was voided): the order waits for the corrected one.
pub(crate) async fn clear_invoice(conn: &mut PgConnection, id: Uuid) -> Result<(), Error> {
    sqlx::query("UPDATE work_orders SET invoice_id = NULL, invoiced_at = NULL WHERE id = $1")
        .bind(id)
        .execute(conn)
        .await?;
    Ok(())
}

pub(crate) async fn set_invoice(
    conn: &mut PgConnection,
    id: Uuid,
    invoice_id: Uuid,
) -> Result<(), Error> {
    sqlx::query("UPDATE work_orders SET invoice_id = $2 WHERE id = $1")
        .bind(id)
        .bind(invoice_id)
        .execute(conn)
        .await?;
    Ok(())
}
