//! What the billing tests share: the real service in-process on an ephemeral port, on the
//! test's own database, and completed work orders to invoice.

#![allow(dead_code)]

use carerp_billing::events::on_workorder_completed;
use carerp_kit::auth::Role;
use carerp_kit::auth::testing::{self, AuthedChannel};
use carerp_kit::events::{CompletedLaborLine, CompletedPartLine, WorkOrderCompleted};
use carerp_kit::{RequestContext, RunningService, ServiceConfig, TenantSettings};
use carerp_proto::billing::v1 as pb;
use carerp_proto::billing::v1::billing_service_client::BillingServiceClient;
use chrono::Utc;
use sqlx::PgPool;
use uuid::Uuid;

pub struct Harness {
    pub service: RunningService,
    pub client: BillingServiceClient<AuthedChannel>,
    pub pool: PgPool,
}

pub fn settings(tax_rate_bp: i32) -> TenantSettings {
    TenantSettings {
        currency: "EUR".into(),
        tax_rate_bp,
        labor_rate_minor: 9000,
        payment_terms_days: 14,
        timezone: "Europe/Berlin".into(),
        ..Default::default()
    }
}

impl Harness {
    pub async fn start(pool: PgPool, settings: TenantSettings) -> Self {
        let mut config =
            ServiceConfig::for_tests("billing", &carerp_kit::config::test_tenant(), None);
        config.settings = settings;
        let tenant = config.tenant.clone();
        let service = carerp_billing::start_with_pool(config, pool.clone())
            .await
            .unwrap();
        let client = BillingServiceClient::new(
            testing::connect(
                format!("http://{}", service.grpc_addr),
                &tenant,
                Role::Owner,
            )
            .await,
        );
        Self {
            service,
            client,
            pool,
        }
    }

    /// Delivers `workorder.completed` the way a consumer does: in a transaction of its own.
    pub async fn complete(&self, event: &WorkOrderCompleted) -> Result<(), carerp_billing::Error> {
        apply(&self.pool, event).await
    }

    /// Completes a work order and returns its invoice.
    pub async fn invoice(&mut self, event: &WorkOrderCompleted) -> pb::Invoice {
        self.complete(event).await.unwrap();
        self.client
            .get_invoice_by_work_order(pb::GetInvoiceByWorkOrderRequest {
                work_order_id: event.work_order_id.to_string(),
            })
            .await
            .unwrap()
            .into_inner()
    }

    pub async fn outbox_topics(&self, aggregate_id: &str) -> Vec<String> {
        outbox_topics(&self.pool, aggregate_id).await
    }

    /// Moves an invoice `days` into the past, as if that much time had gone by.
    pub async fn age(&self, invoice_id: &str, days: i32) {
        sqlx::query(
            "UPDATE invoices SET issue_date = issue_date - $2, due_date = due_date - $2 WHERE id = $1",
        )
        .bind(Uuid::parse_str(invoice_id).unwrap())
        .bind(days)
        .execute(&self.pool)
        .await
        .unwrap();
    }

    pub async fn pay(
        &mut self,
        invoice_id: &str,
        amount_minor: i64,
    ) -> Result<pb::Invoice, tonic::Status> {
        self.client
            .record_payment(payment(invoice_id, amount_minor))
            .await
            .map(|r| r.into_inner())
    }
}

pub async fn apply(pool: &PgPool, event: &WorkOrderCompleted) -> Result<(), carerp_billing::Error> {
    let mut tx = pool.begin().await.unwrap();
    on_workorder_completed(&mut tx, &RequestContext::new_root(), Uuid::now_v7(), event).await?;
    tx.commit().await.unwrap();
    Ok(())
}

pub async fn outbox_topics(pool: &PgPool, aggregate_id: &str) -> Vec<String> {
    let mut conn = pool.acquire().await.unwrap();
    carerp_kit::outbox::rows_for(&mut conn, aggregate_id)
        .await
        .unwrap()
        .into_iter()
        .map(|row| row.topic)
        .collect()
}

pub fn payment(invoice_id: &str, amount_minor: i64) -> pb::RecordPaymentRequest {
    pb::RecordPaymentRequest {
        invoice_id: invoice_id.into(),
        amount: Some(money(amount_minor)),
        method: pb::PaymentMethod::Card.into(),
        reference: "terminal 1".into(),
        received_at: None,
        idempotency_key: Uuid::now_v7().to_string(),
        pay_balance: false,
    }
}

pub fn money(amount_minor: i64) -> carerp_proto::common::v1::Money {
    carerp_proto::common::v1::Money {
        amount_minor,
        currency: "EUR".into(),
    }
}

pub fn amount(money: &Option<carerp_proto::common::v1::Money>) -> i64 {
    money.as_ref().unwrap().amount_minor
}

pub fn part(name: &str, quantity: i32, unit_price_minor: i64) -> CompletedPartLine {
    CompletedPartLine {
        line_id: Uuid::now_v7(),
        part_id: Uuid::now_v7(),
        sku: format!("SKU-{}", name.len()),
        name: name.into(),
        quantity,
        unit_price_minor,
        line_total_minor: i64::from(quantity) * unit_price_minor,
    }
}

pub fn labor(description: &str, minutes: i32, hourly_rate_minor: i64) -> CompletedLaborLine {
    CompletedLaborLine {
        line_id: Uuid::now_v7(),
        description: description.into(),
        technician: "Sam".into(),
        minutes,
        hourly_rate_minor,
        line_total_minor: i64::from(minutes) * hourly_rate_minor / 60,
    }
}

/// A consistent event: totals are the sums of the lines.
pub fn completed(
    part_lines: Vec<CompletedPartLine>,
    labor_lines: Vec<CompletedLaborLine>,
) -> WorkOrderCompleted {
    let parts_total_minor = part_lines.iter().map(|l| l.line_total_minor).sum();
    let labor_total_minor = labor_lines.iter().map(|l| l.line_total_minor).sum();
    WorkOrderCompleted {
        work_order_id: Uuid::now_v7(),
        number: "WO-2026-000042".into(),
        customer_id: Uuid::now_v7(),
        vehicle_id: Uuid::now_v7(),
        currency: "EUR".into(),
        part_lines,
        labor_lines,
        parts_total_minor,
        labor_total_minor,
        total_minor: parts_total_minor + labor_total_minor,
        completed_at: Utc::now(),
        corrects_invoice_id: None,
    }
}

/// An oil change: 2 × 12.50 filter, 4 × 9.99 oil, 30 minutes at 90.00/h = 109.96 net.
pub fn oil_change() -> WorkOrderCompleted {
    completed(
        vec![part("Oil filter", 2, 1250), part("Engine oil 1l", 4, 999)],
        vec![labor("Oil change", 30, 9000)],
    )
}
