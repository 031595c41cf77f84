//! Invoices and payments in PostgreSQL. Each function is one use case: its SQL, its
//! transaction, and the events it writes to the outbox in that transaction.

use std::collections::HashMap;

use carerp_kit::idempotency::{self, Claimed, Key};
use carerp_kit::{RequestContext, TenantSettings};
use chrono::{DateTime, NaiveDate, Utc};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use crate::domain::{self, InvoiceStatus, PaymentMethod, PricedLine, Totals};
use crate::error::Error;
use crate::events;

// ---- settings and the tenant's calendar ----

/// What the billing rules need of the tenant's settings, as stored at start.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct BillingSettings {
    pub currency: String,
    pub tax_rate_bp: i32,
    pub payment_terms_days: i32,
    pub timezone: String,
}

/// Writes the tenant's settings, after checking that the database knows its time zone (it
/// is PostgreSQL's IANA time zone database that turns instants into the tenant's dates).
pub async fn save_settings(pool: &PgPool, settings: &TenantSettings) -> Result<(), Error> {
    today(pool, &settings.timezone).await?;
    sqlx::query(
        "INSERT INTO billing_settings (singleton, currency, tax_rate_bp, payment_terms_days, timezone)
         VALUES (true, $1, $2, $3, $4)
         ON CONFLICT (singleton) DO UPDATE
         SET currency = EXCLUDED.currency, tax_rate_bp = EXCLUDED.tax_rate_bp,
             payment_terms_days = EXCLUDED.payment_terms_days, timezone = EXCLUDED.timezone,
             updated_at = now()",
    )
    .bind(&settings.currency)
    .bind(settings.tax_rate_bp)
    .bind(settings.payment_terms_days)
    .bind(&settings.timezone)
    .execute(pool)
    .await?;
    Ok(())
}

pub async fn load_settings(conn: &mut PgConnection) -> Result<BillingSettings, Error> {
    sqlx::query_as(
        "SELECT currency, tax_rate_bp, payment_terms_days, timezone FROM billing_settings WHERE singleton",
    )
    .fetch_optional(conn)
    .await?
    .ok_or(Error::NotConfigured)
}

/// Today's date in `timezone`, at the start of the current transaction.
pub async fn today<'c, E>(executor: E, timezone: &str) -> Result<NaiveDate, Error>
where
    E: sqlx::PgExecutor<'c>,
{
    sqlx::query_scalar("SELECT (now() AT TIME ZONE $1)::date")
        .bind(timezone)
        .fetch_one(executor)
        .await
        .map_err(|err| match &err {
            // invalid_parameter_value: "time zone ... not recognized"
            sqlx::Error::Database(db) if db.code().as_deref() == Some("22023") => {
                Error::InvalidTimezone(timezone.to_string())
            }
            _ => Error::Database(err),
        })
}

// ---- rows ----

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct InvoiceRow {
    pub id: Uuid,
    pub number: String,
    pub work_order_id: Uuid,
    pub work_order_number: String,
    pub customer_id: Uuid,
    pub vehicle_id: Uuid,
    pub currency: String,
    pub tax_rate_bp: i32,
    pub subtotal_minor: i64,
    pub tax_minor: i64,
    pub total_minor: i64,
    pub paid_minor: i64,
    pub issue_date: NaiveDate,
    pub due_date: NaiveDate,
    pub status: String,
    pub void_reason: String,
    /// The user or API token that voided it.
    pub voided_by: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub version: i64,
}

impl InvoiceRow {
    pub fn status(&self) -> InvoiceStatus {
        // The column's CHECK constraint admits only the four names.
        InvoiceStatus::parse(&self.status).unwrap_or(InvoiceStatus::Issued)
    }

    pub fn balance_minor(&self) -> i64 {
        match self.status() {
            InvoiceStatus::Void => 0,
            _ => self.total_minor - self.paid_minor,
        }
    }
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct LineRow {
    pub invoice_id: Uuid,
    pub position: i32,
    pub kind: String,
    pub source_line_id: Uuid,
    pub part_id: Option<Uuid>,
    pub description: String,
    pub quantity: i32,
    pub unit_price_minor: i64,
    pub line_total_minor: i64,
    pub tax_minor: i64,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct PaymentRow {
    pub id: Uuid,
    pub invoice_id: Uuid,
    pub amount_minor: i64,
    pub currency: String,
    pub method: String,
    pub reference: String,
    pub received_at: DateTime<Utc>,
    /// The user or API token that recorded it.
    pub recorded_by: String,
}

/// An invoice with its lines (in order) and payments (oldest first).
#[derive(Debug, Clone)]
pub struct Invoice {
    pub row: InvoiceRow,
    pub lines: Vec<LineRow>,
    pub payments: Vec<PaymentRow>,
}

// Column lists as macros, so that every query stays a `&'static str` (no SQL is built at run time).
macro_rules! invoice_columns {
    () => {
        "id, number, work_order_id, work_order_number, customer_id, vehicle_id, currency, \
     tax_rate_bp, subtotal_minor, tax_minor, total_minor, paid_minor, issue_date, due_date, status, void_reason, voided_by, \
     created_at, updated_at, version"
    };
}
macro_rules! line_columns {
    () => {
        "invoice_id, position, kind, source_line_id, part_id, description, quantity, \
     unit_price_minor, line_total_minor, tax_minor"
    };
}
macro_rules! payment_columns {
    () => {
        "id, invoice_id, amount_minor, currency, method, reference, received_at, recorded_by"
    };
}

/// Adds lines and payments to invoice rows, in two queries whatever the number of rows.
async fn complete(conn: &mut PgConnection, rows: Vec<InvoiceRow>) -> Result<Vec<Invoice>, Error> {
    let ids: Vec<Uuid> = rows.iter().map(|r| r.id).collect();
    let lines: Vec<LineRow> = sqlx::query_as(concat!(
        "SELECT ",
        line_columns!(),
        " FROM invoice_lines WHERE invoice_id = ANY($1) ORDER BY invoice_id, position"
    ))
    .bind(&ids)
    .fetch_all(&mut *conn)
    .await?;
    let payments: Vec<PaymentRow> = sqlx::query_as(concat!(
        "SELECT ",
        payment_columns!(),
        " FROM payments WHERE invoice_id = ANY($1) ORDER BY invoice_id, received_at, id"
    ))
    .bind(&ids)
    .fetch_all(&mut *conn)
    .await?;
    let mut lines_of: HashMap<Uuid, Vec<LineRow>> = HashMap::new();
    for line in lines {
        lines_of.entry(line.invoice_id).or_default().push(line);
    }
    let mut payments_of: HashMap<Uuid, Vec<PaymentRow>> = HashMap::new();
    for payment in payments {
        payments_of
            .entry(payment.invoice_id)
            .or_default()
            .push(payment);
    }
    Ok(rows
        .into_iter()
        .map(|row| Invoice {
            lines: lines_of.remove(&row.id).unwrap_or_default(),
            payments: payments_of.remove(&row.id).unwrap_or_default(),
            row,
        })
        .collect())
}

pub async fn get_invoice(pool: &PgPool, id: Uuid) -> Result<Invoice, Error> {
    let mut conn = pool.acquire().await?;
    let row: InvoiceRow = sqlx::query_as(concat!(
        "SELECT ",
        invoice_columns!(),
        " FROM invoices WHERE id = $1"
    ))
    .bind(id)
    .fetch_optional(&mut *conn)
    .await?
    .ok_or(Error::InvoiceNotFound(id))?;
    one(complete(&mut conn, vec![row]).await?, id)
}

pub async fn get_invoice_by_work_order(
    pool: &PgPool,
    work_order_id: Uuid,
) -> Result<Invoice, Error> {
    let mut conn = pool.acquire().await?;
    // The current invoice; while a correction is pending, the newest voided one.
    let row: InvoiceRow = sqlx::query_as(concat!(
        "SELECT ",
        invoice_columns!(),
        " FROM invoices WHERE work_order_id = $1 ORDER BY status = 'VOID', id DESC LIMIT 1"
    ))
    .bind(work_order_id)
    .fetch_optional(&mut *conn)
    .await?
    .ok_or(Error::NoInvoiceForWorkOrder(work_order_id))?;
    let id = row.id;
    one(complete(&mut conn, vec![row]).await?, id)
}

fn one(mut invoices: Vec<Invoice>, id: Uuid) -> Result<Invoice, Error> {
    invoices.pop().ok_or(Error::InvoiceNotFound(id))
}

/// What a list is narrowed to; every filter is optional.
#[derive(Debug, Clone, Default)]
pub struct ListFilter {
    pub statuses: Vec<InvoiceStatus>,
    pub customer_id: Option<Uuid>,
    /// Open invoices whose due date is before this day.
    pub overdue_before: Option<NaiveDate>,
    pub issued_from: Option<NaiveDate>,
    pub issued_to: Option<NaiveDate>,
}

/// Newest first (UUIDv7 ids grow with time), after the id `after`; at most `limit` rows.
pub async fn list_invoices(
    pool: &PgPool,
    filter: &ListFilter,
    after: Option<Uuid>,
    limit: i64,
) -> Result<Vec<Invoice>, Error> {
    let mut conn = pool.acquire().await?;
    let statuses: Option<Vec<String>> = (!filter.statuses.is_empty()).then(|| {
        filter
            .statuses
            .iter()
            .map(|s| s.as_str().to_string())
            .collect()
    });
    let rows: Vec<InvoiceRow> = sqlx::query_as(concat!(
        "SELECT ",
        invoice_columns!(),
        " FROM invoices
         WHERE ($1::uuid IS NULL OR id < $1)
           AND ($2::text[] IS NULL OR status = ANY($2))
           AND ($3::uuid IS NULL OR customer_id = $3)
           AND ($4::date IS NULL OR (status IN ('ISSUED', 'PARTIALLY_PAID') AND due_date < $4))
           AND ($5::date IS NULL OR issue_date >= $5)
           AND ($6::date IS NULL OR issue_date <= $6)
         ORDER BY id DESC
         LIMIT $7"
    ))
    .bind(after)
    .bind(statuses)
    .bind(filter.customer_id)
    .bind(filter.overdue_before)
    .bind(filter.issued_from)
    .bind(filter.issued_to)
    .bind(limit)
    .fetch_all(&mut *conn)
    .await?;
    complete(&mut conn, rows).await
}

// ---- creating an invoice (the work order handler's steps) ----

/// Serialises everything done for one work order until the caller's transaction ends, so
/// that duplicated events handled at the same time see each other's invoice.
pub async fn lock_work_order(conn: &mut PgConnection, work_order_id: Uuid) -> Result<(), Error> {
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1::text, 0))")
        .bind(work_order_id.to_string())
        .execute(conn)
        .await?;
    Ok(())
}

/// The work order's invoice that is not void, if any.
pub async fn invoice_for_work_order(
    conn: &mut PgConnection,
    work_order_id: Uuid,
) -> Result<Option<InvoiceRow>, Error> {
    Ok(sqlx::query_as(concat!(
        "SELECT ",
        invoice_columns!(),
        " FROM invoices WHERE work_order_id = $1 AND status <> 'VOID'"
    ))
    .bind(work_order_id)
    .fetch_optional(conn)
    .await?)
}

/// The number of a voided invoice of the work order that billed a completion at or after
/// `completed_at`: that completion was invoiced already, and its invoice voided since. An
/// invoice from before completions were recorded counts from when it was created.
pub async fn voided_invoice_of_completion(
    conn: &mut PgConnection,
    work_order_id: Uuid,
    completed_at: DateTime<Utc>,
) -> Result<Option<String>, Error> {
    Ok(sqlx::query_scalar(
        "SELECT number FROM invoices
         WHERE work_order_id = $1 AND status = 'VOID'
           AND COALESCE(work_order_completed_at, created_at) >= $2
         ORDER BY id DESC LIMIT 1",
    )
    .bind(work_order_id)
    .bind(completed_at)
    .fetch_optional(conn)
    .await?)
}

/// The next number of `year`, counted in the caller's transaction: the counter row stays
/// locked until it ends, and a rollback hands the number back.
pub async fn next_invoice_number(conn: &mut PgConnection, year: i32) -> Result<String, Error> {
    let sequence: i32 = sqlx::query_scalar(
        "INSERT INTO invoice_counters (year, last_number) VALUES ($1, 1)
         ON CONFLICT (year) DO UPDATE SET last_number = invoice_counters.last_number + 1
         RETURNING last_number",
    )
    .bind(year)
    .fetch_one(conn)
    .await?;
    Ok(domain::invoice_number(year, sequence))
}

/// Everything an invoice is created with.
#[derive(Debug, Clone)]
pub struct NewInvoice<'a> {
    pub number: String,
    pub work_order_id: Uuid,
    pub work_order_number: &'a str,
    pub customer_id: Uuid,
    pub vehicle_id: Uuid,
    pub currency: &'a str,
    pub tax_rate_bp: i32,
    pub lines: &'a [PricedLine],
    pub totals: Totals,
    pub issue_date: NaiveDate,
    pub due_date: NaiveDate,
    /// `completedAt` of the completion it bills.
    pub work_order_completed_at: DateTime<Utc>,
    /// The voided invoice it replaces.
    pub corrects_invoice_id: Option<Uuid>,
}

pub async fn insert_invoice(
    conn: &mut PgConnection,
    new: &NewInvoice<'_>,
) -> Result<InvoiceRow, Error> {
    let status = domain::status_for(new.totals.total_minor, 0);
    let row: InvoiceRow = sqlx::query_as(concat!("INSERT INTO invoices (id, number, work_order_id, work_order_number, customer_id, vehicle_id, currency,
                               tax_rate_bp, subtotal_minor, tax_minor, total_minor, issue_date, due_date, status,
                               work_order_completed_at, corrects_invoice_id)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)
         RETURNING ", invoice_columns!()
    ))
    .bind(Uuid::now_v7())
    .bind(&new.number)
    .bind(new.work_order_id)
    .bind(new.work_order_number)
    .bind(new.customer_id)
    .bind(new.vehicle_id)
    .bind(new.currency)
    .bind(new.tax_rate_bp)
    .bind(new.totals.subtotal_minor)
    .bind(new.totals.tax_minor)
    .bind(new.totals.total_minor)
    .bind(new.issue_date)
    .bind(new.due_date)
    .bind(status.as_str())
    .bind(new.work_order_completed_at)
    .bind(new.corrects_invoice_id)
    .fetch_one(&mut *conn)
    .await?;
    for (position, priced) in new.lines.iter().enumerate() {
        let line = &priced.line;
        sqlx::query(
            "INSERT INTO invoice_lines (invoice_id, position, kind, source_line_id, part_id, description, quantity,
                                        unit_price_minor, line_total_minor, tax_minor)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(row.id)
        .bind(i32::try_from(position + 1).unwrap_or(i32::MAX))
        .bind(line.kind.as_str())
        .bind(line.source_line_id)
        .bind(line.part_id)
        .bind(&line.description)
        .bind(line.quantity)
        .bind(line.unit_price_minor)
        .bind(line.line_total_minor)
        .bind(priced.tax_minor)
        .execute(&mut *conn)
        .await?;
    }
    Ok(row)
}

// ---- payments ----

/// A validated payment request.
#[derive(Debug, Clone)]
pub struct NewPayment {
    pub invoice_id: Uuid,
    /// `None`: the balance at the moment the payment is recorded.
    pub amount_minor: Option<i64>,
    /// Empty: the invoice's currency.
    pub currency: String,
    pub method: PaymentMethod,
    pub reference: String,
    pub received_at: DateTime<Utc>,
    /// Required: a retried payment must not be paid twice (`kit::idempotency`).
    pub idempotency_key: Key,
    /// Of the request as sent: the same key with another request is refused.
    pub fingerprint: String,
}

/// Records a payment, or does nothing when the same payment was recorded before under the
/// same idempotency key (the kit's mechanism: a different payment under it is refused).
///
/// The invoice row is locked first, so concurrent payments on one invoice run one after the
/// other and each sees the balance the previous one left: together they can never overpay.
/// The operation payments are fingerprinted under.
pub const PAYMENT_OPERATION: &str = "billing.record-payment";

pub async fn record_payment(
    pool: &PgPool,
    context: &RequestContext,
    payment: &NewPayment,
) -> Result<(), Error> {
    let mut tx = carerp_kit::outbox::begin(pool).await?;
    // The key first (a repeat waits here for the first call), then the invoice.
    let claimed: Claimed<Uuid> = idempotency::begin(
        &mut tx,
        &payment.idempotency_key,
        PAYMENT_OPERATION,
        &payment.fingerprint,
    )
    .await?;
    if let Claimed::Replay(payment_id) = claimed {
        tx.rollback().await?;
        tracing::info!(%payment_id, key = %payment.idempotency_key, "payment repeated under its key; recorded once");
        return Ok(());
    }
    let invoice: InvoiceRow = sqlx::query_as(concat!(
        "SELECT ",
        invoice_columns!(),
        " FROM invoices WHERE id = $1 FOR UPDATE"
    ))
    .bind(payment.invoice_id)
    .fetch_optional(&mut *tx)
    .await?
    .ok_or(Error::InvoiceNotFound(payment.invoice_id))?;
    if !payment.currency.is_empty() && payment.currency != invoice.currency {
        return Err(carerp_kit::FieldViolation::new(
            "amount.currency",
            format!(
                "is {:?}, the invoice is in {:?}",
                payment.currency, invoice.currency
            ),
        )
        .into());
    }
    // Read under the row lock, so no concurrent payment can change it before ours lands.
    let amount_minor = payment
        .amount_minor
        .unwrap_or(invoice.total_minor - invoice.paid_minor);
    let after = domain::apply_payment(
        invoice.status(),
        invoice.total_minor,
        invoice.paid_minor,
        amount_minor,
        &invoice.currency,
    )
    .map_err(|reason| Error::PaymentRefused {
        number: invoice.number.clone(),
        reason,
    })?;
    let payment_id = Uuid::now_v7();
    sqlx::query(concat!(
        "INSERT INTO payments (",
        payment_columns!(),
        ", idempotency_key)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
    ))
    .bind(payment_id)
    .bind(invoice.id)
    .bind(amount_minor)
    .bind(&invoice.currency)
    .bind(payment.method.as_str())
    .bind(&payment.reference)
    .bind(payment.received_at)
    .bind(context.actor())
    .bind(payment.idempotency_key.as_str())
    .execute(&mut *tx)
    .await?;
    idempotency::finish(&mut tx, &payment.idempotency_key, &payment_id).await?;
    let updated: InvoiceRow = sqlx::query_as(concat!("UPDATE invoices SET paid_minor = $2, status = $3, updated_at = now(), version = version + 1
         WHERE id = $1 RETURNING ", invoice_columns!()
    ))
    .bind(invoice.id)
    .bind(after.paid_minor)
    .bind(after.status.as_str())
    .fetch_one(&mut *tx)
    .await?;
    if after.status == InvoiceStatus::Paid {
        events::invoice_paid(&mut tx, context, &updated).await?;
    }
    carerp_kit::outbox::audit(
        &mut tx,
        context,
        "invoice.payment-recorded",
        format!("invoice/{}", invoice.id),
        serde_json::json!({
            "number": invoice.number,
            "amountMinor": amount_minor,
            "currency": invoice.currency,
            "method": payment.method.as_str(),
            "status": after.status.as_str(),
        }),
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

// ---- voiding ----

pub async fn void_invoice(
    pool: &PgPool,
    context: &RequestContext,
    id: Uuid,
    reason: &str,
    expected_version: i64,
) -> Result<(), Error> {
    let mut tx = carerp_kit::outbox::begin(pool).await?;
    let invoice: InvoiceRow = sqlx::query_as(concat!(
        "SELECT ",
        invoice_columns!(),
        " FROM invoices WHERE id = $1 FOR UPDATE"
    ))
    .bind(id)
    .fetch_optional(&mut *tx)
    .await?
    .ok_or(Error::InvoiceNotFound(id))?;
    // The same void again (a retry after a lost answer) is done already, whatever version
    // the caller saw before its first try.
    if invoice.status() == InvoiceStatus::Void && invoice.void_reason == reason {
        tx.rollback().await?;
        return Ok(());
    }
    if expected_version != 0 && expected_version != invoice.version {
        return Err(Error::VersionConflict {
            id,
            expected: expected_version,
            actual: invoice.version,
        });
    }
    domain::check_void(invoice.status(), invoice.paid_minor, &invoice.currency).map_err(
        |reason| Error::VoidRefused {
            number: invoice.number.clone(),
            reason,
        },
    )?;
    let voided: InvoiceRow = sqlx::query_as(concat!("UPDATE invoices SET status = 'VOID', void_reason = $2, voided_by = $3, voided_at = now(), updated_at = now(),
                             version = version + 1
         WHERE id = $1 RETURNING ", invoice_columns!()
    ))
    .bind(id)
    .bind(reason)
    .bind(context.actor())
    .fetch_one(&mut *tx)
    .await?;
    events::invoice_voided(&mut tx, context, &voided).await?;
    carerp_kit::outbox::audit(
        &mut tx,
        context,
        "invoice.voided",
        format!("invoice/{id}"),
        serde_json::json!({ "number": voided.number, "reason": reason }),
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

// ---- the dashboard ----

#[derive(Debug, Clone, Copy, PartialEq, Eq, sqlx::FromRow)]
pub struct SummaryRow {
    pub unpaid_minor: i64,
    pub unpaid_count: i64,
    pub overdue_minor: i64,
    pub overdue_count: i64,
    pub revenue_minor: i64,
}

/// Open balances (overdue ones: due before `today`) and the net revenue of the invoices
/// issued from `from` to `to` inclusive, void ones excluded.
pub async fn summary(
    pool: &PgPool,
    today: NaiveDate,
    from: NaiveDate,
    to: NaiveDate,
) -> Result<SummaryRow, Error> {
    Ok(sqlx::query_as(
        "SELECT
            COALESCE(SUM(total_minor - paid_minor) FILTER (WHERE status IN ('ISSUED', 'PARTIALLY_PAID')), 0)::BIGINT
                AS unpaid_minor,
            COUNT(*) FILTER (WHERE status IN ('ISSUED', 'PARTIALLY_PAID')) AS unpaid_count,
            COALESCE(SUM(total_minor - paid_minor)
                FILTER (WHERE status IN ('ISSUED', 'PARTIALLY_PAID') AND due_date < $1), 0)::BIGINT AS overdue_minor,
            COUNT(*) FILTER (WHERE status IN ('ISSUED', 'PARTIALLY_PAID') AND due_date < $1) AS overdue_count,
            COALESCE(SUM(subtotal_minor)
                FILTER (WHERE status <> 'VOID' AND issue_date BETWEEN $2 AND $3), 0)::BIGINT AS revenue_minor
         FROM invoices",
    )
    .bind(today)
    .bind(from)
    .bind(to)
    .fetch_one(pool)
    .await?)
}
