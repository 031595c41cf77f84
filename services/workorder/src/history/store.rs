//! A vehicle's history and the recommended work in PostgreSQL: read in one snapshot each, as
//! in [`crate::store`].

use std::collections::HashMap;

use chrono::{DateTime, NaiveDate, Utc};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use super::MAX_VISITS;
use crate::error::Error;
use crate::store::{self, ListFilter, WorkOrder};

/// What an order's inspection came to, counted by rating.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct InspectionSummary {
    pub work_order_id: Uuid,
    pub id: Uuid,
    pub state: String,
    pub template_name: String,
    pub completed_at: Option<DateTime<Utc>>,
    pub ok: i32,
    pub advise: i32,
    pub urgent: i32,
    pub unrated: i32,
}

pub struct History {
    /// Newest first.
    pub orders: Vec<WorkOrder>,
    /// By work order.
    pub inspections: HashMap<Uuid, InspectionSummary>,
    /// Jobs of these orders offered again: job id -> the number of the order offering it.
    pub offered_again_in: HashMap<Uuid, String>,
}

pub async fn vehicle_history(pool: &PgPool, vehicle_id: Uuid) -> Result<History, Error> {
    let filter = ListFilter {
        statuses: Vec::new(),
        customer_id: None,
        vehicle_id: Some(vehicle_id),
    };
    let mut conn = store::snapshot(pool).await?;
    let orders = store::list_work_orders_in(&mut conn, &filter, None, MAX_VISITS).await?;
    let order_ids: Vec<Uuid> = orders.iter().map(WorkOrder::id).collect();
    let summaries: Vec<InspectionSummary> = sqlx::query_as(
        "SELECT i.work_order_id, i.id, i.state, i.template_name, i.completed_at,
                (count(*) FILTER (WHERE it.rating = 'OK'))::int4 AS ok,
                (count(*) FILTER (WHERE it.rating = 'ADVISE'))::int4 AS advise,
                (count(*) FILTER (WHERE it.rating = 'URGENT'))::int4 AS urgent,
                (count(*) FILTER (WHERE it.rating IS NULL))::int4 AS unrated
         FROM inspections i JOIN inspection_items it ON it.inspection_id = i.id
         WHERE i.work_order_id = ANY($1)
         GROUP BY i.id",
    )
    .bind(&order_ids)
    .fetch_all(&mut *conn)
    .await?;
    let job_ids: Vec<Uuid> = orders
        .iter()
        .flat_map(|order| order.jobs.iter().map(|job| job.id))
        .collect();
    let offered_again_in = offered_again_in(&mut conn, &job_ids).await?;
    conn.commit().await?;
    Ok(History {
        orders,
        inspections: summaries
            .into_iter()
            .map(|summary| (summary.work_order_id, summary))
            .collect(),
        offered_again_in,
    })
}

/// Which of `job_ids` a later job offers again, with that job's work order number.
pub async fn offered_again_in(
    conn: &mut PgConnection,
    job_ids: &[Uuid],
) -> Result<HashMap<Uuid, String>, Error> {
    let rows: Vec<(Uuid, String)> = sqlx::query_as(
        "SELECT later.offered_from, w.number
         FROM jobs later JOIN work_orders w ON w.id = later.work_order_id
         WHERE later.offered_from = ANY($1)",
    )
    .bind(job_ids)
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows.into_iter().collect())
}

/// Where a page of recommended work goes on from: the last one's due day and job id.
pub type Cursor = (NaiveDate, Uuid);

/// One open recommendation: the job of its order, and the day it is due.
pub struct Due {
    pub order: WorkOrder,
    pub job_id: Uuid,
    pub due: NaiveDate,
}

/// Open recommendations due by `due_by` (declined ones from the day they were declined,
/// deferred ones from their remind-after day), by due day, then job id.
pub async fn recommended_due(
    pool: &PgPool,
    timezone: &str,
    due_by: NaiveDate,
    vehicle_id: Option<Uuid>,
    after: Option<Cursor>,
    limit: i64,
) -> Result<Vec<Due>, Error> {
    let mut conn = store::snapshot(pool).await?;
    let rows: Vec<(Uuid, Uuid, NaiveDate)> = sqlx::query_as(
        "SELECT id, work_order_id, due FROM (
             SELECT j.id, j.work_order_id,
                    COALESCE(j.remind_after, (j.decided_at AT TIME ZONE $1)::date) AS due
             FROM jobs j JOIN work_orders w ON w.id = j.work_order_id
             WHERE j.state IN ('DECLINED', 'DEFERRED')
               AND w.status <> 'CANCELLED'
               AND ($3::uuid IS NULL OR w.vehicle_id = $3)
               AND NOT EXISTS (SELECT 1 FROM jobs later WHERE later.offered_from = j.id)
         ) open
         WHERE due <= $2
           AND ($4::date IS NULL OR (due, id) > ($4, $5))
         ORDER BY due, id
         LIMIT $6",
    )
    .bind(timezone)
    .bind(due_by)
    .bind(vehicle_id)
    .bind(after.map(|(due, _)| due))
    .bind(after.map(|(_, id)| id))
    .bind(limit)
    .fetch_all(&mut *conn)
    .await?;
    let order_ids: Vec<Uuid> = rows.iter().map(|(_, order_id, _)| *order_id).collect();
    let orders: HashMap<Uuid, WorkOrder> = store::load_all(&mut conn, &order_ids)
        .await?
        .into_iter()
        .map(|order| (order.id(), order))
        .collect();
    conn.commit().await?;
    Ok(rows
        .into_iter()
        .filter_map(|(job_id, order_id, due)| {
            // An order with two jobs due is cloned for the second: a page holds few.
            let order = orders.get(&order_id)?.clone();
            Some(Due { order, job_id, due })
        })
        .collect())
}

/// The work order holding `job_id`, read to offer the job again.
pub async fn order_of_job(pool: &PgPool, job_id: Uuid) -> Result<WorkOrder, Error> {
    let mut conn = store::snapshot(pool).await?;
    let order_id: Option<(Uuid,)> = sqlx::query_as("SELECT work_order_id FROM jobs WHERE id = $1")
        .bind(job_id)
        .fetch_optional(&mut *conn)
        .await?;
    let (order_id,) = order_id.ok_or(Error::EarlierJobNotFound(job_id))?;
    let order = store::load(&mut conn, order_id).await?;
    conn.commit().await?;
    Ok(order)
}
