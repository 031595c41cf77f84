//! Canned jobs in PostgreSQL, and adding one to a work order: one transaction each, as in
//! [`crate::store`].

use carerp_kit::RequestContext;
use carerp_kit::idempotency::{self, Key};
use chrono::{DateTime, Utc};
use sqlx::PgPool;
use uuid::Uuid;

use super::{CannedJobError, CannedLabor, CannedPart, check_room};
use crate::approval;
use crate::domain::{NewLabor, ReservationState};
use crate::error::Error;
use crate::peers::Quote;
use crate::store::{self, Keyed, WorkOrder};

pub const ADD_CANNED_JOB: &str = "workorder.add-canned-job";

#[derive(Debug, Clone)]
pub struct CannedJob {
    pub id: Uuid,
    pub name: String,
    pub parts: Vec<CannedPart>,
    pub labor: Vec<CannedLabor>,
    pub updated_by: String,
    pub updated_at: DateTime<Utc>,
}

#[derive(sqlx::FromRow)]
struct Row {
    id: Uuid,
    name: String,
    parts: sqlx::types::Json<Vec<CannedPart>>,
    labor: sqlx::types::Json<Vec<CannedLabor>>,
    updated_by: String,
    updated_at: DateTime<Utc>,
}

impl From<Row> for CannedJob {
    fn from(row: Row) -> Self {
        Self {
            id: row.id,
            name: row.name,
            parts: row.parts.0,
            labor: row.labor.0,
            updated_by: row.updated_by,
            updated_at: row.updated_at,
        }
    }
}

pub async fn list(pool: &PgPool) -> Result<Vec<CannedJob>, Error> {
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT id, name, parts, labor, updated_by, updated_at FROM canned_jobs \
         ORDER BY lower(name), id",
    )
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().map(CannedJob::from).collect())
}

pub async fn get(pool: &PgPool, id: Uuid) -> Result<CannedJob, Error> {
    let row: Option<Row> = sqlx::query_as(
        "SELECT id, name, parts, labor, updated_by, updated_at FROM canned_jobs WHERE id = $1",
    )
    .bind(id)
    .fetch_optional(pool)
    .await?;
    Ok(row.ok_or(CannedJobError::NotFound(id))?.into())
}

/// Creates (`id` is `None`) or replaces a canned job whose parts the caller found active.
pub async fn save(
    pool: &PgPool,
    context: &RequestContext,
    id: Option<Uuid>,
    name: &str,
    parts: &[CannedPart],
    labor: &[CannedLabor],
) -> Result<CannedJob, Error> {
    let saved: Result<Option<Row>, sqlx::Error> = match id {
        Some(id) => {
            sqlx::query_as(
                "UPDATE canned_jobs SET name = $2, parts = $3, labor = $4, updated_by = $5, \
                 updated_at = now() WHERE id = $1 \
                 RETURNING id, name, parts, labor, updated_by, updated_at",
            )
            .bind(id)
            .bind(name)
            .bind(sqlx::types::Json(parts))
            .bind(sqlx::types::Json(labor))
            .bind(context.actor())
            .fetch_optional(pool)
            .await
        }
        None => {
            sqlx::query_as(
                "INSERT INTO canned_jobs (id, name, parts, labor, updated_by) \
                 VALUES ($1, $2, $3, $4, $5) \
                 RETURNING id, name, parts, labor, updated_by, updated_at",
            )
            .bind(Uuid::now_v7())
            .bind(name)
            .bind(sqlx::types::Json(parts))
            .bind(sqlx::types::Json(labor))
            .bind(context.actor())
            .fetch_optional(pool)
            .await
        }
    };
    match saved {
        Err(err) if carerp_kit::status::is_unique_violation(&err, "canned_jobs_name") => {
            Err(CannedJobError::NameTaken(name.to_string()).into())
        }
        Err(err) => Err(err.into()),
        Ok(None) => Err(CannedJobError::NotFound(id.unwrap_or_default()).into()),
        Ok(Some(row)) => Ok(row.into()),
    }
}

pub async fn remove(pool: &PgPool, id: Uuid) -> Result<(), Error> {
    let removed = sqlx::query("DELETE FROM canned_jobs WHERE id = $1")
        .bind(id)
        .execute(pool)
        .await?;
    if removed.rows_affected() == 0 {
        return Err(CannedJobError::NotFound(id).into());
    }
    Ok(())
}

/// What adding a canned job needs besides the job: each part's quote (in the canned job's
/// order), the tenant's labour rate and currency.
pub struct Pricing<'a> {
    pub quotes: &'a [Quote],
    pub labor_rate_minor: i64,
    pub currency: &'a str,
}

/// Lines to add to a work order as one PROPOSED job: a canned job, or a job declined or
/// deferred at an earlier visit and offered again.
pub struct Package<'a> {
    /// What the idempotency fingerprint names besides the order: the canned job or the job.
    pub source: Uuid,
    pub title: &'a str,
    pub parts: &'a [CannedPart],
    pub labor: &'a [CannedLabor],
    /// The earlier job this one offers again; it must still be DECLINED or DEFERRED and not
    /// offered again already.
    pub offered_from: Option<Uuid>,
}

/// The package as a PROPOSED job of the order: its parts QUOTED, its labour at the rate.
/// `idempotency` is the caller's key and the name of its operation.
pub async fn add_package(
    pool: &PgPool,
    id: Uuid,
    package: &Package<'_>,
    pricing: &Pricing<'_>,
    expected_version: i64,
    idempotency: Option<(&Key, &'static str)>,
) -> Result<WorkOrder, Error> {
    let mut tx = carerp_kit::outbox::begin(pool).await?;
    let key = idempotency.map(|(key, operation)| {
        let fingerprint = idempotency::fingerprint(operation, &(id, package.source));
        (key, operation, fingerprint)
    });
    let order = match store::lock_keyed(&mut tx, id, expected_version, key).await? {
        Keyed::Write(order) => order,
        Keyed::Repeated(order) => {
            tx.rollback().await?;
            return Ok(order);
        }
    };
    check_room(
        id,
        (order.part_lines.len(), package.parts.len()),
        (order.labor_lines.len(), package.labor.len()),
    )?;
    for currency in pricing
        .quotes
        .iter()
        .map(|q| q.currency.as_str())
        .chain([pricing.currency])
    {
        if currency != order.header.currency {
            return Err(Error::Conflict(format!(
                "\"{}\" is priced in {currency}, but work order {id} is kept in {}",
                package.title, order.header.currency
            )));
        }
    }
    let job_id =
        approval::insert_proposed_job(&mut tx, &order, order.jobs.len(), package.title).await?;
    if let Some(earlier) = package.offered_from {
        mark_offered_again(&mut tx, job_id, earlier).await?;
    }
    for (part, quote) in package.parts.iter().zip(pricing.quotes) {
        store::insert_part_line(
            &mut tx,
            id,
            job_id,
            part.part_id,
            part.quantity,
            ReservationState::Quoted,
            Some(quote),
        )
        .await?;
    }
    for line in package.labor {
        let labor = NewLabor {
            description: line.description.clone(),
            technician: String::new(),
            minutes: line.minutes,
            hourly_rate_minor: pricing.labor_rate_minor,
        };
        store::insert_labor_line(&mut tx, id, job_id, &labor).await?;
    }
    if let Some((key, _)) = idempotency {
        idempotency::finish(&mut tx, key, &job_id).await?;
    }
    store::mark_estimate_outdated(&mut tx, id).await?;
    store::touch(&mut tx, id).await?;
    let order = store::load(&mut tx, id).await?;
    tx.commit().await?;
    Ok(order)
}

/// Records that `job_id` offers `earlier` again, while `earlier` is still declined or
/// deferred; the unique index on `offered_from` keeps a second offer from succeeding.
async fn mark_offered_again(
    tx: &mut sqlx::PgConnection,
    job_id: Uuid,
    earlier: Uuid,
) -> Result<(), Error> {
    let marked = sqlx::query(
        "UPDATE jobs SET offered_from = $2 WHERE id = $1
           AND EXISTS (SELECT 1 FROM jobs WHERE id = $2 AND state IN ('DECLINED', 'DEFERRED'))",
    )
    .bind(job_id)
    .bind(earlier)
    .execute(&mut *tx)
    .await;
    let refused = || {
        Error::Conflict(format!(
            "job {earlier} is no longer recommended: it was offered again on another work \
             order, or decided since"
        ))
    };
    match marked {
        Ok(done) if done.rows_affected() == 1 => Ok(()),
        Ok(_) => Err(refused()),
        Err(err) if carerp_kit::status::is_unique_violation(&err, "jobs_offered_from") => {
            Err(refused())
        }
        Err(err) => Err(err.into()),
    }
}
