//! Jobs, estimates and the customer's decisions in PostgreSQL: each public function is one use
//! case with its transaction and the events it writes to the outbox, as in [`crate::store`].
//!
//! An estimate is kept as sent (`estimates.content`), with the SHA-256 of its approval link's
//! token. The link works until it expires, or until a PROPOSED job changes or a newer
//! version is sent (`outdated_at`): what the customer approves is always what they were shown.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use carerp_kit::RequestContext;
use carerp_kit::events::{EstimateSent, JobDecided, Money, topic};
use carerp_kit::idempotency::{self, Key};
use carerp_kit::outbox;
use chrono::{DateTime, Utc};
use rand::RngCore;
use sha2::{Digest, Sha256};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use crate::domain::{Cause, PartLine, Status};
use crate::error::{Error, LinkError};
use crate::events;
use crate::jobs::{self, CUSTOMER_ACTOR, Channel, EstimateContent, JobState, MAX_JOBS, Verdict};
use crate::store::{self, Keyed, WorkOrder};

pub const ADD_JOB: &str = "workorder.add-job";
pub const SEND_ESTIMATE: &str = "workorder.send-estimate";

/// An approval link's secret: 32 random bytes, sent as 43 characters of URL-safe base64.
const TOKEN_BYTES: usize = 32;
pub const TOKEN_LENGTH: usize = (TOKEN_BYTES * 4).div_ceil(3);

/// An estimate as it was sent.
#[derive(Debug, Clone)]
pub struct Estimate {
    pub id: Uuid,
    pub work_order_id: Uuid,
    pub version: i32,
    pub sent_by: String,
    pub sent_at: DateTime<Utc>,
    pub content: EstimateContent,
    pub link_expires_at: DateTime<Utc>,
    pub outdated: bool,
}

#[derive(Debug, sqlx::FromRow)]
struct EstimateRow {
    id: Uuid,
    work_order_id: Uuid,
    version: i32,
    sent_by: String,
    sent_at: DateTime<Utc>,
    content: sqlx::types::Json<EstimateContent>,
    link_expires_at: DateTime<Utc>,
    outdated: bool,
}

impl From<EstimateRow> for Estimate {
    fn from(row: EstimateRow) -> Self {
        Self {
            id: row.id,
            work_order_id: row.work_order_id,
            version: row.version,
            sent_by: row.sent_by,
            sent_at: row.sent_at,
            content: row.content.0,
            link_expires_at: row.link_expires_at,
            outdated: row.outdated,
        }
    }
}

macro_rules! estimate_columns {
    () => {
        "id, work_order_id, version, sent_by, sent_at, content, link_expires_at, \
         outdated_at IS NOT NULL AS outdated"
    };
}

/// Adds a PROPOSED job; its lines are added next, and the customer decides on it.
pub async fn add_job(
    pool: &PgPool,
    id: Uuid,
    title: &str,
    expected_version: i64,
    idempotency_key: Option<&Key>,
) -> Result<WorkOrder, Error> {
    let mut tx = carerp_kit::outbox::begin(pool).await?;
    let key = idempotency_key.map(|key| {
        let fingerprint = idempotency::fingerprint(ADD_JOB, &(id, title));
        (key, ADD_JOB, fingerprint)
    });
    let order = match store::lock_keyed(&mut tx, id, expected_version, key).await? {
        Keyed::Write(order) => order,
        Keyed::Repeated(order) => {
            tx.rollback().await?;
            return Ok(order);
        }
    };
    let job_id = insert_proposed_job(&mut tx, &order, order.jobs.len(), title).await?;
    if let Some(key) = idempotency_key {
        idempotency::finish(&mut tx, key, &job_id).await?;
    }
    store::mark_estimate_outdated(&mut tx, id).await?;
    store::touch(&mut tx, id).await?;
    let order = store::load(&mut tx, id).await?;
    tx.commit().await?;
    Ok(order)
}

/// Inserts a PROPOSED job into a locked order that has `jobs` jobs so far (the caller may
/// add several in one transaction); the caller outdates the estimate and touches the order.
pub(crate) async fn insert_proposed_job(
    conn: &mut PgConnection,
    order: &WorkOrder,
    jobs: usize,
    title: &str,
) -> Result<Uuid, Error> {
    if jobs >= MAX_JOBS {
        return Err(Error::TooManyJobs {
            id: order.id(),
            max: MAX_JOBS,
        });
    }
    let job_id = Uuid::now_v7();
    sqlx::query(
        "INSERT INTO jobs (id, work_order_id, title, state) VALUES ($1, $2, $3, 'PROPOSED')",
    )
    .bind(job_id)
    .bind(order.id())
    .bind(title)
    .execute(conn)
    .await?;
    Ok(job_id)
}

/// Removes a PROPOSED job with its lines (quoted, so nothing is reserved).
pub async fn remove_job(
    pool: &PgPool,
    id: Uuid,
    job_id: Uuid,
    expected_version: i64,
) -> Result<WorkOrder, Error> {
    let mut tx = carerp_kit::outbox::begin(pool).await?;
    let order = store::lock(&mut tx, id, expected_version).await?;
    store::ensure_lines_editable(&order)?;
    jobs::check_removable(order.job(Some(job_id))?)?;
    for delete in [
        "DELETE FROM part_lines WHERE job_id = $1",
        "DELETE FROM labor_lines WHERE job_id = $1",
    ] {
        sqlx::query(delete).bind(job_id).execute(&mut *tx).await?;
    }
    sqlx::query("DELETE FROM jobs WHERE id = $1")
        .bind(job_id)
        .execute(&mut *tx)
        .await?;
    store::mark_estimate_outdated(&mut tx, id).await?;
    store::touch(&mut tx, id).await?;
    let order = store::load(&mut tx, id).await?;
    tx.commit().await?;
    Ok(order)
}

/// Records a decision the garage was told (in person, by phone, by email).
pub async fn decide_job(
    pool: &PgPool,
    context: &RequestContext,
    id: Uuid,
    job_id: Uuid,
    verdict: &Verdict,
    channel: Channel,
    expected_version: i64,
) -> Result<WorkOrder, Error> {
    let mut tx = carerp_kit::outbox::begin(pool).await?;
    let order = store::lock(&mut tx, id, expected_version).await?;
    let estimate_version = latest_version_with(&mut tx, id, job_id).await?;
    let decided_by = context.actor();
    apply_decision(
        &mut tx,
        context,
        &order,
        job_id,
        verdict,
        channel,
        &decided_by,
        estimate_version,
    )
    .await?;
    let order = store::load(&mut tx, id).await?;
    tx.commit().await?;
    Ok(order)
}

/// The latest estimate version that asked about `job_id`; 0 if none did.
async fn latest_version_with(
    conn: &mut PgConnection,
    id: Uuid,
    job_id: Uuid,
) -> Result<i32, Error> {
    let (version,): (Option<i32>,) = sqlx::query_as(
        "SELECT max(version) FROM estimates
         WHERE work_order_id = $1
           AND content->'jobs' @> jsonb_build_array(jsonb_build_object('jobId', $2::text))",
    )
    .bind(id)
    .bind(job_id)
    .fetch_one(conn)
    .await?;
    Ok(version.unwrap_or(0))
}

/// The one way a decision is written: checked against the job, recorded with who, how and on
/// which estimate, announced; an approved job's quoted parts go to inventory for reservation.
#[allow(clippy::too_many_arguments)]
async fn apply_decision(
    tx: &mut PgConnection,
    context: &RequestContext,
    order: &WorkOrder,
    job_id: Uuid,
    verdict: &Verdict,
    channel: Channel,
    decided_by: &str,
    estimate_version: i32,
) -> Result<(), Error> {
    if !order.status.allows_line_changes() {
        return Err(jobs::JobError::OrderClosed {
            status: order.status,
        }
        .into());
    }
    let job = order.job(Some(job_id))?;
    jobs::check_decision(job, verdict.state)?;
    sqlx::query(
        "UPDATE jobs SET state = $2, decided_by = $3, decided_via = $4, decided_at = now(),
                decision_reason = $5, remind_after = $6, estimate_version = $7
         WHERE id = $1",
    )
    .bind(job_id)
    .bind(verdict.state.as_str())
    .bind(decided_by)
    .bind(channel.as_str())
    .bind(&verdict.reason)
    .bind(verdict.remind_after)
    .bind(estimate_version)
    .execute(&mut *tx)
    .await?;
    if verdict.state == JobState::Approved {
        // A job's part lines are all QUOTED until it is approved.
        let lines: Vec<&PartLine> = order
            .part_lines
            .iter()
            .filter(|line| line.job_id == job_id)
            .collect();
        if !lines.is_empty() {
            sqlx::query("UPDATE part_lines SET reservation_state = 'PENDING' WHERE job_id = $1")
                .bind(job_id)
                .execute(&mut *tx)
                .await?;
            events::parts_added(tx, context, order.id(), &lines).await?;
        }
    }
    let event_topic = match verdict.state {
        JobState::Approved => topic::JOB_APPROVED,
        JobState::Declined => topic::JOB_DECLINED,
        // Verdict::validate refuses PROPOSED.
        JobState::Deferred | JobState::Proposed => topic::JOB_DEFERRED,
    };
    let data = JobDecided {
        work_order_id: order.id(),
        job_id,
        title: job.title.clone(),
        channel: channel.as_str().to_string(),
        decided_by: decided_by.to_string(),
        reason: verdict.reason.clone(),
        remind_after: verdict.remind_after,
        estimate_version,
    };
    outbox::enqueue(tx, context, event_topic, &order.id().to_string(), &data).await?;
    store::touch(tx, order.id()).await?;
    Ok(())
}

/// What sending an estimate produced: the order, the estimate as kept, and the approval
/// link's token, which exists nowhere else.
#[derive(Debug)]
pub struct Sent {
    pub order: WorkOrder,
    pub estimate: Estimate,
    pub token: String,
}

/// Keeps the PROPOSED jobs as the next estimate version, outdates the earlier ones, moves an
/// OPEN order to ESTIMATE and announces `estimate.sent`.
///
/// With an idempotency key, a retry (the BFF's email failed, or its answer was lost) sends no
/// second version: [`reissue_link`] answers the version the key sent with a fresh token.
pub async fn send_estimate(
    pool: &PgPool,
    context: &RequestContext,
    id: Uuid,
    expected_version: i64,
    idempotency_key: Option<&Key>,
) -> Result<Sent, Error> {
    let mut tx = carerp_kit::outbox::begin(pool).await?;
    if let Some(key) = idempotency_key {
        let fingerprint = idempotency::fingerprint(SEND_ESTIMATE, &(id, expected_version));
        let claimed = idempotency::begin(&mut tx, key, SEND_ESTIMATE, &fingerprint).await?;
        if let idempotency::Claimed::Replay(estimate_id) = claimed {
            let sent = reissue_link(&mut tx, id, estimate_id).await?;
            tx.commit().await?;
            return Ok(sent);
        }
    }
    let order = store::lock(&mut tx, id, expected_version).await?;
    store::ensure_lines_editable(&order)?;
    let content = jobs::estimate_content(
        id,
        &order.header.currency,
        &order.jobs,
        &order.part_lines,
        &order.labor_lines,
    )?;
    let version = order.latest_estimate.map_or(0, |mark| mark.version) + 1;
    let token = new_token();
    let estimate_id = Uuid::now_v7();
    let expires_at = Utc::now() + jobs::LINK_LIFETIME;
    store::mark_estimate_outdated(&mut tx, id).await?;
    sqlx::query(
        "INSERT INTO estimates (id, work_order_id, version, sent_by, content, total_minor,
                                link_token_sha256, link_expires_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(estimate_id)
    .bind(id)
    .bind(version)
    .bind(context.actor())
    .bind(sqlx::types::Json(&content))
    .bind(content.total_minor)
    .bind(token_digest(&token))
    .bind(expires_at)
    .execute(&mut *tx)
    .await?;
    if order.status == Status::Open {
        crate::domain::check_transition(
            order.status,
            Status::Estimate,
            Cause::EstimateSent,
            order.header.started_at.is_some(),
            &order.jobs,
            &order.part_lines,
        )?;
        store::set_status(&mut tx, context, id, Status::Estimate, "").await?;
    }
    store::touch(&mut tx, id).await?;
    let data = EstimateSent {
        work_order_id: id,
        estimate_id,
        version,
        job_ids: content.jobs.iter().map(|job| job.job_id).collect(),
        total: Money::new(content.total_minor, content.currency.clone()),
        link_expires_at: expires_at,
    };
    outbox::enqueue(
        &mut tx,
        context,
        topic::ESTIMATE_SENT,
        &id.to_string(),
        &data,
    )
    .await?;
    if let Some(key) = idempotency_key {
        idempotency::finish(&mut tx, key, &estimate_id).await?;
    }
    let estimate = estimate_by_id(&mut tx, estimate_id).await?;
    let order = store::load(&mut tx, id).await?;
    tx.commit().await?;
    Ok(Sent {
        order,
        estimate,
        token,
    })
}

/// A new random token for an estimate already sent, replacing its digest: the link answered
/// before stops working, the version, its content and expiry stay, and nothing is announced
/// (the estimate was sent once). Refused when the estimate is outdated, for then its link
/// would open nothing.
async fn reissue_link(conn: &mut PgConnection, id: Uuid, estimate_id: Uuid) -> Result<Sent, Error> {
    // Serialises with every other write of the order (a job changing outdates the estimate).
    store::lock(conn, id, 0).await?;
    let estimate = estimate_by_id(conn, estimate_id).await?;
    if estimate.work_order_id != id {
        return Err(Error::Conflict(format!(
            "the idempotency key sent an estimate of another work order ({})",
            estimate.work_order_id
        )));
    }
    if estimate.link_expires_at <= Utc::now() {
        return Err(Error::Conflict(format!(
            "the link of estimate {} sent with this idempotency key has expired: send the estimate again with a new key",
            estimate.version
        )));
    }
    if estimate.outdated {
        return Err(Error::Conflict(format!(
            "estimate {} sent with this idempotency key has changed since, or a newer one was sent: send the estimate again with a new key",
            estimate.version
        )));
    }
    let token = new_token();
    sqlx::query("UPDATE estimates SET link_token_sha256 = $2 WHERE id = $1")
        .bind(estimate_id)
        .bind(token_digest(&token))
        .execute(&mut *conn)
        .await?;
    let order = store::load(conn, id).await?;
    Ok(Sent {
        order,
        estimate,
        token,
    })
}

/// An approval link's secret, fresh from the operating system's generator.
fn new_token() -> String {
    let mut secret = [0u8; TOKEN_BYTES];
    rand::rng().fill_bytes(&mut secret);
    URL_SAFE_NO_PAD.encode(secret)
}

fn token_digest(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

async fn estimate_by_id(conn: &mut PgConnection, estimate_id: Uuid) -> Result<Estimate, Error> {
    let row: EstimateRow = sqlx::query_as(concat!(
        "SELECT ",
        estimate_columns!(),
        " FROM estimates WHERE id = $1"
    ))
    .bind(estimate_id)
    .fetch_one(conn)
    .await?;
    Ok(row.into())
}

/// Every estimate of a work order, newest first.
pub async fn list_estimates(pool: &PgPool, id: Uuid) -> Result<Vec<Estimate>, Error> {
    let mut tx = store::snapshot(pool).await?;
    // Unknown ids are NotFound, not an empty list.
    store::load(&mut tx, id).await?;
    let rows: Vec<EstimateRow> = sqlx::query_as(concat!(
        "SELECT ",
        estimate_columns!(),
        " FROM estimates WHERE work_order_id = $1 ORDER BY version DESC"
    ))
    .bind(id)
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(rows.into_iter().map(Estimate::from).collect())
}

/// What the customer sees through the link: the estimate as sent, the order's number and the
/// jobs' decisions now.
#[derive(Debug)]
pub struct ForCustomer {
    pub estimate: Estimate,
    pub number: String,
    pub decisions: Vec<(Uuid, JobState)>,
}

/// The estimate the token opens, if it still stands (not expired, not outdated).
pub(crate) async fn estimate_by_token(
    conn: &mut PgConnection,
    token: &str,
) -> Result<Estimate, Error> {
    let row: Option<EstimateRow> = sqlx::query_as(concat!(
        "SELECT ",
        estimate_columns!(),
        " FROM estimates WHERE link_token_sha256 = $1"
    ))
    .bind(token_digest(token))
    .fetch_optional(&mut *conn)
    .await?;
    let estimate: Estimate = row.ok_or(Error::Link(LinkError::Unknown))?.into();
    if estimate.link_expires_at <= Utc::now() {
        return Err(Error::Link(LinkError::Expired(estimate.link_expires_at)));
    }
    if estimate.link_expires_at <= Utc::now() {
        return Err(Error::Conflict(format!(
            "the link of estimate {} sent with this idempotency key has expired: send the estimate again with a new key",
            estimate.version
        )));
    }
    if estimate.outdated {
        return Err(Error::Link(LinkError::Outdated));
    }
    Ok(estimate)
}

fn for_customer(estimate: Estimate, order: &WorkOrder) -> ForCustomer {
    let decisions = estimate
        .content
        .jobs
        .iter()
        .filter_map(|sent| {
            order
                .jobs
                .iter()
                .find(|job| job.id == sent.job_id)
                .map(|job| (job.id, job.state))
        })
        .collect();
    ForCustomer {
        estimate,
        number: order.header.number.clone(),
        decisions,
    }
}

pub async fn estimate_by_link(pool: &PgPool, token: &str) -> Result<ForCustomer, Error> {
    let mut tx = store::snapshot(pool).await?;
    let estimate = estimate_by_token(&mut tx, token).await?;
    let order = store::load(&mut tx, estimate.work_order_id).await?;
    tx.commit().await?;
    Ok(for_customer(estimate, &order))
}

/// The customer's own decision on a job of the estimate the link opens.
pub async fn decide_by_link(
    pool: &PgPool,
    context: &RequestContext,
    token: &str,
    job_id: Uuid,
    verdict: &Verdict,
) -> Result<ForCustomer, Error> {
    let mut tx = carerp_kit::outbox::begin(pool).await?;
    let found = estimate_by_token(&mut tx, token).await?;
    // Locked, then the link checked again: a change committed meanwhile outdates it.
    let order = store::lock(&mut tx, found.work_order_id, 0).await?;
    let estimate = estimate_by_token(&mut tx, token).await?;
    if !estimate.content.jobs.iter().any(|job| job.job_id == job_id) {
        return Err(Error::Link(LinkError::JobNotInEstimate(job_id)));
    }
    apply_decision(
        &mut tx,
        context,
        &order,
        job_id,
        verdict,
        Channel::Link,
        CUSTOMER_ACTOR,
        estimate.version,
    )
    .await?;
    let order = store::load(&mut tx, order.id()).await?;
    tx.commit().await?;
    Ok(for_customer(estimate, &order))
}
