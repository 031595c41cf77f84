//! Inspections in PostgreSQL: each public function is one use case with its transaction, as in
//! [`crate::store`]. Writes to an inspection lock its row first, so two technicians rating
//! items of one car at once both land, and a rating never slips in after completion.

use carerp_kit::RequestContext;
use carerp_kit::events::{InspectionCompleted, topic};
use carerp_kit::outbox;
use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use super::photo::{CONTENT_TYPE, StoredPhoto};
use super::{
    InspectionError, InspectionState, MAX_PHOTOS, MAX_PHOTOS_PER_ITEM, Rating, TemplateItem,
    check_order_open, job_title,
};
use crate::approval;
use crate::error::Error;
use crate::store;

#[derive(Debug, Clone)]
pub struct Template {
    pub id: Uuid,
    pub name: String,
    pub is_default: bool,
    pub items: Vec<TemplateItem>,
    pub updated_by: String,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, sqlx::FromRow)]
struct TemplateRow {
    id: Uuid,
    name: String,
    is_default: bool,
    items: sqlx::types::Json<Vec<TemplateItem>>,
    updated_by: String,
    updated_at: DateTime<Utc>,
}

impl From<TemplateRow> for Template {
    fn from(row: TemplateRow) -> Self {
        Self {
            id: row.id,
            name: row.name,
            is_default: row.is_default,
            items: row.items.0,
            updated_by: row.updated_by,
            updated_at: row.updated_at,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Inspection {
    pub id: Uuid,
    pub work_order_id: Uuid,
    pub template_name: String,
    pub state: InspectionState,
    pub items: Vec<Item>,
    pub started_by: String,
    pub started_at: DateTime<Utc>,
    pub completed_by: String,
    pub completed_at: Option<DateTime<Utc>>,
}

impl Inspection {
    /// What the customer is shown: the findings, not who in the garage did what.
    fn for_customer(mut self) -> Self {
        self.started_by.clear();
        self.completed_by.clear();
        for item in &mut self.items {
            item.rated_by.clear();
        }
        self
    }
}

#[derive(Debug, Clone)]
pub struct Item {
    pub id: Uuid,
    pub section: String,
    pub label: String,
    pub rating: Option<Rating>,
    pub note: String,
    pub photos: Vec<PhotoInfo>,
    pub job_id: Option<Uuid>,
    pub rated_by: String,
}

#[derive(Debug, Clone)]
pub struct PhotoInfo {
    pub id: Uuid,
    item_id: Uuid,
    pub width: i32,
    pub height: i32,
    pub size_bytes: i32,
}

#[derive(Debug, sqlx::FromRow)]
struct InspectionRow {
    id: Uuid,
    work_order_id: Uuid,
    template_name: String,
    state: String,
    started_by: String,
    started_at: DateTime<Utc>,
    completed_by: String,
    completed_at: Option<DateTime<Utc>>,
}

#[derive(Debug, sqlx::FromRow)]
struct ItemRow {
    id: Uuid,
    section: String,
    label: String,
    rating: Option<String>,
    note: String,
    job_id: Option<Uuid>,
    rated_by: String,
}

#[derive(Debug, sqlx::FromRow)]
struct PhotoRow {
    id: Uuid,
    item_id: Uuid,
    width: i32,
    height: i32,
    size_bytes: i32,
}

/// Every template, the default first.
pub async fn list_templates(pool: &PgPool) -> Result<Vec<Template>, Error> {
    let rows: Vec<TemplateRow> = sqlx::query_as(
        "SELECT id, name, is_default, items, updated_by, updated_at FROM inspection_templates \
         ORDER BY is_default DESC, lower(name), id",
    )
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().map(Template::from).collect())
}

/// A template as saved: created when `id` is `None`, else replaced. Making one the default
/// takes the flag from the one before; there is always exactly one default.
pub async fn save_template(
    pool: &PgPool,
    context: &RequestContext,
    id: Option<Uuid>,
    name: &str,
    is_default: bool,
    items: &[TemplateItem],
) -> Result<Template, Error> {
    let mut tx = carerp_kit::outbox::begin(pool).await?;
    // One writer of templates at a time: the default moves between rows.
    sqlx::query("LOCK TABLE inspection_templates IN SHARE ROW EXCLUSIVE MODE")
        .execute(&mut *tx)
        .await?;
    let id = match id {
        Some(id) => {
            let was_default: Option<(bool,)> =
                sqlx::query_as("SELECT is_default FROM inspection_templates WHERE id = $1")
                    .bind(id)
                    .fetch_optional(&mut *tx)
                    .await?;
            let (was_default,) = was_default.ok_or(InspectionError::TemplateNotFound(id))?;
            if was_default && !is_default {
                return Err(InspectionError::DefaultRequired.into());
            }
            id
        }
        None => Uuid::now_v7(),
    };
    if is_default {
        sqlx::query(
            "UPDATE inspection_templates SET is_default = false WHERE is_default AND id <> $1",
        )
        .bind(id)
        .execute(&mut *tx)
        .await?;
    }
    let saved: Result<TemplateRow, sqlx::Error> = sqlx::query_as(
        "INSERT INTO inspection_templates (id, name, is_default, items, updated_by) \
         VALUES ($1, $2, $3, $4, $5) \
         ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name, is_default = EXCLUDED.is_default, \
         items = EXCLUDED.items, updated_by = EXCLUDED.updated_by, updated_at = now() \
         RETURNING id, name, is_default, items, updated_by, updated_at",
    )
    .bind(id)
    .bind(name)
    .bind(is_default)
    .bind(sqlx::types::Json(items))
    .bind(context.actor())
    .fetch_one(&mut *tx)
    .await;
    let saved = match saved {
        Err(err) if carerp_kit::status::is_unique_violation(&err, "inspection_templates_name") => {
            return Err(InspectionError::TemplateNameTaken(name.to_string()).into());
        }
        other => other?,
    };
    tx.commit().await?;
    Ok(saved.into())
}

/// Starts the work order's inspection from a template (the default one when `None`).
pub async fn start(
    pool: &PgPool,
    context: &RequestContext,
    work_order_id: Uuid,
    template_id: Option<Uuid>,
) -> Result<Inspection, Error> {
    let mut tx = carerp_kit::outbox::begin(pool).await?;
    let order = store::lock(&mut tx, work_order_id, 0).await?;
    check_order_open(work_order_id, order.status)?;
    let template: Option<TemplateRow> = match template_id {
        Some(id) => {
            let found = sqlx::query_as(
                "SELECT id, name, is_default, items, updated_by, updated_at \
                 FROM inspection_templates WHERE id = $1",
            )
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
            Some(found.ok_or(InspectionError::TemplateNotFound(id))?)
        }
        None => {
            sqlx::query_as(
                "SELECT id, name, is_default, items, updated_by, updated_at \
                 FROM inspection_templates WHERE is_default",
            )
            .fetch_optional(&mut *tx)
            .await?
        }
    };
    let template = template.ok_or(InspectionError::NoDefaultTemplate)?;
    let inspection_id = Uuid::now_v7();
    let inserted = sqlx::query(
        "INSERT INTO inspections (id, work_order_id, template_name, state, started_by) \
         VALUES ($1, $2, $3, 'IN_PROGRESS', $4)",
    )
    .bind(inspection_id)
    .bind(work_order_id)
    .bind(&template.name)
    .bind(context.actor())
    .execute(&mut *tx)
    .await;
    match inserted {
        Err(err) if carerp_kit::status::is_unique_violation(&err, "inspections_one_per_order") => {
            return Err(InspectionError::AlreadyStarted(work_order_id).into());
        }
        other => other?,
    };
    let items = &template.items.0;
    let ids: Vec<Uuid> = items.iter().map(|_| Uuid::now_v7()).collect();
    let positions: Vec<i32> = (0..).take(items.len()).collect();
    let sections: Vec<&str> = items.iter().map(|item| item.section.as_str()).collect();
    let labels: Vec<&str> = items.iter().map(|item| item.label.as_str()).collect();
    sqlx::query(
        "INSERT INTO inspection_items (id, inspection_id, position, section, label) \
         SELECT id, $2, position, section, label \
         FROM UNNEST($1::uuid[], $3::int[], $4::text[], $5::text[]) AS t(id, position, section, label)",
    )
    .bind(&ids)
    .bind(inspection_id)
    .bind(&positions)
    .bind(&sections)
    .bind(&labels)
    .execute(&mut *tx)
    .await?;
    let inspection = load(&mut tx, work_order_id).await?;
    tx.commit().await?;
    Ok(inspection)
}

pub async fn get(pool: &PgPool, work_order_id: Uuid) -> Result<Inspection, Error> {
    let mut tx = store::snapshot(pool).await?;
    let inspection = load(&mut tx, work_order_id).await?;
    tx.commit().await?;
    Ok(inspection)
}

/// Records the technician's finding on one item of the inspection.
pub async fn rate_item(
    pool: &PgPool,
    context: &RequestContext,
    work_order_id: Uuid,
    item_id: Uuid,
    rating: Rating,
    note: &str,
) -> Result<Inspection, Error> {
    let mut tx = carerp_kit::outbox::begin(pool).await?;
    let inspection_id = lock_in_progress(&mut tx, work_order_id).await?;
    let updated = sqlx::query(
        "UPDATE inspection_items SET rating = $3, note = $4, rated_by = $5, rated_at = now() \
         WHERE id = $1 AND inspection_id = $2",
    )
    .bind(item_id)
    .bind(inspection_id)
    .bind(rating.as_str())
    .bind(note)
    .bind(context.actor())
    .execute(&mut *tx)
    .await?;
    if updated.rows_affected() == 0 {
        return Err(InspectionError::ItemNotFound {
            work_order_id,
            item_id,
        }
        .into());
    }
    let inspection = load(&mut tx, work_order_id).await?;
    tx.commit().await?;
    Ok(inspection)
}

/// Keeps a photo (already checked and re-encoded by [`super::photo::prepare`]) on an item.
pub async fn add_photo(
    pool: &PgPool,
    context: &RequestContext,
    work_order_id: Uuid,
    item_id: Uuid,
    photo: &StoredPhoto,
) -> Result<Inspection, Error> {
    let mut tx = carerp_kit::outbox::begin(pool).await?;
    let inspection_id = lock_in_progress(&mut tx, work_order_id).await?;
    let item: Option<(String, i64, i64)> = sqlx::query_as(
        "SELECT i.label, \
                (SELECT count(*) FROM inspection_photos p WHERE p.item_id = i.id), \
                (SELECT count(*) FROM inspection_photos p JOIN inspection_items o ON o.id = p.item_id \
                 WHERE o.inspection_id = i.inspection_id) \
         FROM inspection_items i WHERE i.id = $1 AND i.inspection_id = $2",
    )
    .bind(item_id)
    .bind(inspection_id)
    .fetch_optional(&mut *tx)
    .await?;
    let (label, on_item, on_inspection) = item.ok_or(InspectionError::ItemNotFound {
        work_order_id,
        item_id,
    })?;
    if on_item >= MAX_PHOTOS_PER_ITEM as i64 {
        return Err(InspectionError::TooManyPhotosOnItem {
            label,
            max: MAX_PHOTOS_PER_ITEM,
        }
        .into());
    }
    if on_inspection >= MAX_PHOTOS as i64 {
        return Err(InspectionError::TooManyPhotos { max: MAX_PHOTOS }.into());
    }
    sqlx::query(
        "INSERT INTO inspection_photos (id, item_id, content_type, width, height, content, added_by) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(Uuid::now_v7())
    .bind(item_id)
    .bind(CONTENT_TYPE)
    .bind(i32::try_from(photo.width).unwrap_or(i32::MAX))
    .bind(i32::try_from(photo.height).unwrap_or(i32::MAX))
    .bind(&photo.content)
    .bind(context.actor())
    .execute(&mut *tx)
    .await?;
    let inspection = load(&mut tx, work_order_id).await?;
    tx.commit().await?;
    Ok(inspection)
}

pub async fn remove_photo(
    pool: &PgPool,
    work_order_id: Uuid,
    photo_id: Uuid,
) -> Result<Inspection, Error> {
    let mut tx = carerp_kit::outbox::begin(pool).await?;
    let inspection_id = lock_in_progress(&mut tx, work_order_id).await?;
    let removed = sqlx::query(
        "DELETE FROM inspection_photos p USING inspection_items i \
         WHERE p.id = $1 AND i.id = p.item_id AND i.inspection_id = $2",
    )
    .bind(photo_id)
    .bind(inspection_id)
    .execute(&mut *tx)
    .await?;
    if removed.rows_affected() == 0 {
        return Err(InspectionError::PhotoNotFound {
            work_order_id,
            photo_id,
        }
        .into());
    }
    let inspection = load(&mut tx, work_order_id).await?;
    tx.commit().await?;
    Ok(inspection)
}

/// A stored photo's JPEG bytes, if it is one of the work order's inspection.
pub async fn photo(pool: &PgPool, work_order_id: Uuid, photo_id: Uuid) -> Result<Vec<u8>, Error> {
    let content: Option<(Vec<u8>,)> = sqlx::query_as(
        "SELECT p.content FROM inspection_photos p \
         JOIN inspection_items i ON i.id = p.item_id \
         JOIN inspections n ON n.id = i.inspection_id \
         WHERE p.id = $1 AND n.work_order_id = $2",
    )
    .bind(photo_id)
    .bind(work_order_id)
    .fetch_optional(pool)
    .await?;
    content.map(|(bytes,)| bytes).ok_or_else(|| {
        InspectionError::PhotoNotFound {
            work_order_id,
            photo_id,
        }
        .into()
    })
}

/// Completes the inspection once every item is rated, and announces it.
pub async fn complete(
    pool: &PgPool,
    context: &RequestContext,
    work_order_id: Uuid,
) -> Result<Inspection, Error> {
    let mut tx = carerp_kit::outbox::begin(pool).await?;
    let inspection_id = lock_in_progress(&mut tx, work_order_id).await?;
    let inspection = load(&mut tx, work_order_id).await?;
    let unrated: Vec<&Item> = inspection
        .items
        .iter()
        .filter(|item| item.rating.is_none())
        .collect();
    if let Some(first) = unrated.first() {
        return Err(InspectionError::Unrated {
            count: unrated.len(),
            first: first.label.clone(),
        }
        .into());
    }
    sqlx::query(
        "UPDATE inspections SET state = 'COMPLETED', completed_by = $2, completed_at = now() \
         WHERE id = $1",
    )
    .bind(inspection_id)
    .bind(context.actor())
    .execute(&mut *tx)
    .await?;
    let count = |rating: Rating| {
        let n = inspection
            .items
            .iter()
            .filter(|item| item.rating == Some(rating))
            .count();
        u32::try_from(n).unwrap_or(u32::MAX)
    };
    let data = InspectionCompleted {
        work_order_id,
        inspection_id,
        template_name: inspection.template_name.clone(),
        ok: count(Rating::Ok),
        advise: count(Rating::Advise),
        urgent: count(Rating::Urgent),
        completed_by: context.actor(),
    };
    outbox::enqueue(
        &mut tx,
        context,
        topic::INSPECTION_COMPLETED,
        &work_order_id.to_string(),
        &data,
    )
    .await?;
    let inspection = load(&mut tx, work_order_id).await?;
    tx.commit().await?;
    Ok(inspection)
}

/// A PROPOSED job for each ADVISE or URGENT item without one (urgent first, then in the
/// template's order), each remembered on its item: calling again adds nothing twice.
pub async fn propose_jobs(
    pool: &PgPool,
    work_order_id: Uuid,
    expected_version: i64,
) -> Result<(Inspection, Vec<Uuid>), Error> {
    let mut tx = carerp_kit::outbox::begin(pool).await?;
    let order = store::lock(&mut tx, work_order_id, expected_version).await?;
    store::ensure_lines_editable(&order)?;
    lock(&mut tx, work_order_id).await?;
    let inspection = load(&mut tx, work_order_id).await?;
    let mut needing_work: Vec<&Item> = inspection
        .items
        .iter()
        .filter(|item| item.job_id.is_none() && item.rating.is_some_and(Rating::needs_work))
        .collect();
    needing_work.sort_by_key(|item| item.rating != Some(Rating::Urgent));
    let mut made = Vec::with_capacity(needing_work.len());
    for item in needing_work {
        let title = job_title(&item.label, &item.note);
        let job_id =
            approval::insert_proposed_job(&mut tx, &order, order.jobs.len() + made.len(), &title)
                .await?;
        sqlx::query("UPDATE inspection_items SET job_id = $2 WHERE id = $1")
            .bind(item.id)
            .bind(job_id)
            .execute(&mut *tx)
            .await?;
        made.push(job_id);
    }
    if !made.is_empty() {
        store::mark_estimate_outdated(&mut tx, work_order_id).await?;
        store::touch(&mut tx, work_order_id).await?;
    }
    let inspection = load(&mut tx, work_order_id).await?;
    tx.commit().await?;
    Ok((inspection, made))
}

/// The completed inspection of the estimate an approval link opens, as the customer sees it.
pub async fn by_link(pool: &PgPool, token: &str) -> Result<Inspection, Error> {
    let mut tx = store::snapshot(pool).await?;
    let estimate = approval::estimate_by_token(&mut tx, token).await?;
    let inspection = load(&mut tx, estimate.work_order_id)
        .await
        .map_err(|err| match err {
            Error::Inspection(InspectionError::NotStarted(_)) => {
                Error::Inspection(InspectionError::NoneForCustomer)
            }
            other => other,
        })?;
    tx.commit().await?;
    if inspection.state != InspectionState::Completed {
        return Err(InspectionError::NoneForCustomer.into());
    }
    Ok(inspection.for_customer())
}

/// A photo of that inspection, through the link.
pub async fn photo_by_link(pool: &PgPool, token: &str, photo_id: Uuid) -> Result<Vec<u8>, Error> {
    let inspection = by_link(pool, token).await?;
    photo(pool, inspection.work_order_id, photo_id).await
}

/// Locks the work order's inspection row; refuses when it is completed.
async fn lock_in_progress(conn: &mut PgConnection, work_order_id: Uuid) -> Result<Uuid, Error> {
    let (id, state) = lock(conn, work_order_id).await?;
    if state == InspectionState::Completed {
        return Err(InspectionError::Completed(work_order_id).into());
    }
    Ok(id)
}

async fn lock(
    conn: &mut PgConnection,
    work_order_id: Uuid,
) -> Result<(Uuid, InspectionState), Error> {
    let row: Option<(Uuid, String)> =
        sqlx::query_as("SELECT id, state FROM inspections WHERE work_order_id = $1 FOR UPDATE")
            .bind(work_order_id)
            .fetch_optional(&mut *conn)
            .await?;
    match row {
        Some((id, state)) => Ok((id, parse_state(&state)?)),
        None => Err(not_started(conn, work_order_id).await),
    }
}

/// An unknown work order is "not found", a known one without inspection "not started".
async fn not_started(conn: &mut PgConnection, work_order_id: Uuid) -> Error {
    match store::load(conn, work_order_id).await {
        Ok(_) => InspectionError::NotStarted(work_order_id).into(),
        Err(err) => err,
    }
}

fn parse_state(value: &str) -> Result<InspectionState, Error> {
    InspectionState::parse(value).ok_or_else(|| {
        Error::Conflict(format!(
            "unknown inspection state {value:?} in the database"
        ))
    })
}

async fn load(conn: &mut PgConnection, work_order_id: Uuid) -> Result<Inspection, Error> {
    let row: Option<InspectionRow> = sqlx::query_as(
        "SELECT id, work_order_id, template_name, state, started_by, started_at, completed_by, \
         completed_at FROM inspections WHERE work_order_id = $1",
    )
    .bind(work_order_id)
    .fetch_optional(&mut *conn)
    .await?;
    let Some(row) = row else {
        return Err(not_started(conn, work_order_id).await);
    };
    let items: Vec<ItemRow> = sqlx::query_as(
        "SELECT id, section, label, rating, note, job_id, rated_by FROM inspection_items \
         WHERE inspection_id = $1 ORDER BY position",
    )
    .bind(row.id)
    .fetch_all(&mut *conn)
    .await?;
    let photos: Vec<PhotoRow> = sqlx::query_as(
        "SELECT p.id, p.item_id, p.width, p.height, octet_length(p.content) AS size_bytes \
         FROM inspection_photos p JOIN inspection_items i ON i.id = p.item_id \
         WHERE i.inspection_id = $1 ORDER BY p.added_at, p.id",
    )
    .bind(row.id)
    .fetch_all(&mut *conn)
    .await?;
    let photos: Vec<PhotoInfo> = photos
        .into_iter()
        .map(|p| PhotoInfo {
            id: p.id,
            item_id: p.item_id,
            width: p.width,
            height: p.height,
            size_bytes: p.size_bytes,
        })
        .collect();
    let items = items
        .into_iter()
        .map(|item| {
            let rating = match item.rating.as_deref() {
                None => None,
                Some(value) => Some(Rating::parse(value).ok_or_else(|| {
                    Error::Conflict(format!("unknown rating {value:?} in the database"))
                })?),
            };
            Ok(Item {
                photos: photos
                    .iter()
                    .filter(|p| p.item_id == item.id)
                    .cloned()
                    .collect(),
                id: item.id,
                section: item.section,
                label: item.label,
                rating,
                note: item.note,
                job_id: item.job_id,
                rated_by: item.rated_by,
            })
        })
        .collect::<Result<Vec<_>, Error>>()?;
    Ok(Inspection {
        id: row.id,
        work_order_id: row.work_order_id,
        template_name: row.template_name,
        state: parse_state(&row.state)?,
        items,
        started_by: row.started_by,
        started_at: row.started_at,
        completed_by: row.completed_by,
        completed_at: row.completed_at,
    })
}
