//! The garage at a glance, from all services at once.

use axum::Json;
use axum::extract::State;
use carerp_kit::RequestContext;
use carerp_proto::billing::v1 as billing;
use carerp_proto::common::v1::PageRequest;
use carerp_proto::inventory::v1 as inventory;
use carerp_proto::workorder::v1 as workorder;

use super::AppState;
use super::workorders::describe_failure;
use crate::edge::Ctx;
use crate::models::{
    Dashboard, InvoiceTotals, LowStock, Missing, Part, WorkOrderCounts, WorkOrderStatus,
};

/// Rows fetched per call when collecting the low-stock parts.
const LOW_STOCK_PAGE: i32 = 500;
/// Low-stock parts listed on the dashboard.
const LOW_STOCK_SHOWN: usize = 20;

/// Work orders by status, parts at or below their reorder point, unpaid and overdue totals
/// and this month's revenue. The three services are asked concurrently; when one does not
/// answer, its section is null and `missing` names it, and the rest is still served.
#[utoipa::path(get, path = "/api/dashboard", tag = "dashboard",
    responses((status = 200, description = "The dashboard, possibly partial", body = Dashboard)))]
pub async fn dashboard(State(state): State<AppState>, Ctx(ctx): Ctx) -> Json<Dashboard> {
    let (orders, low_stock, invoices) = tokio::join!(
        work_order_counts(&state, &ctx),
        low_stock(&state, &ctx),
        invoice_totals(&state, &ctx),
    );
    let mut missing = Vec::new();
    let work_orders_by_status = keep(orders, &mut missing, "workorder", "work orders by status");
    let low_stock = keep(low_stock, &mut missing, "inventory", "low stock");
    let invoices = keep(invoices, &mut missing, "billing", "invoice totals");
    Json(Dashboard {
        work_orders_by_status,
        low_stock,
        invoices,
        complete: missing.is_empty(),
        missing,
    })
}

/// A section's value, or `None` with a note in `missing` of why it is absent.
fn keep<T>(
    result: Result<T, tonic::Status>,
    missing: &mut Vec<Missing>,
    service: &str,
    what: &str,
) -> Option<T> {
    match result {
        Ok(value) => Some(value),
        Err(status) => {
            tracing::warn!(service, code = ?status.code(), message = status.message(), "dashboard without {what}");
            missing.push(Missing {
                service: service.into(),
                reason: describe_failure(what, &status),
            });
            None
        }
    }
}

async fn work_order_counts(
    state: &AppState,
    ctx: &RequestContext,
) -> Result<WorkOrderCounts, tonic::Status> {
    let clients = &state.clients;
    let response = clients
        .workorder
        .clone()
        .count_work_orders(clients.request(ctx, workorder::CountWorkOrdersRequest {}))
        .await?
        .into_inner();
    let mut counts = WorkOrderCounts::default();
    for counted in response.counts {
        let count = u64::try_from(counted.count).unwrap_or(0);
        match WorkOrderStatus::from_proto(counted.status) {
            Some(WorkOrderStatus::Open) => counts.open = count,
            Some(WorkOrderStatus::Estimate) => counts.estimate = count,
            Some(WorkOrderStatus::InProgress) => counts.in_progress = count,
            Some(WorkOrderStatus::AwaitingParts) => counts.awaiting_parts = count,
            Some(WorkOrderStatus::Completed) => counts.completed = count,
            Some(WorkOrderStatus::Invoiced) => counts.invoiced = count,
            Some(WorkOrderStatus::Cancelled) => counts.cancelled = count,
            // A status this BFF does not know yet: not shown rather than miscounted.
            None => {}
        }
    }
    Ok(counts)
}

async fn low_stock(state: &AppState, ctx: &RequestContext) -> Result<LowStock, tonic::Status> {
    let clients = &state.clients;
    let mut parts = Vec::new();
    let mut count = 0u64;
    let mut token = String::new();
    loop {
        let response = clients
            .inventory
            .clone()
            .list_low_stock(clients.request(
                ctx,
                inventory::ListLowStockRequest {
                    page: Some(PageRequest {
                        page_size: LOW_STOCK_PAGE,
                        page_token: token,
                    }),
                },
            ))
            .await?
            .into_inner();
        count += response.parts.len() as u64;
        for part in response.parts {
            if parts.len() < LOW_STOCK_SHOWN {
                parts.push(Part::from(part));
            }
        }
        token = response.page.map(|p| p.next_page_token).unwrap_or_default();
        if token.is_empty() {
            return Ok(LowStock { count, parts });
        }
    }
}

async fn invoice_totals(
    state: &AppState,
    ctx: &RequestContext,
) -> Result<InvoiceTotals, tonic::Status> {
    let clients = &state.clients;
    // Empty period: billing takes the current month in the garage's time zone.
    let summary = clients
        .billing
        .clone()
        .get_summary(clients.request(ctx, billing::GetSummaryRequest::default()))
        .await?
        .into_inner();
    Ok(InvoiceTotals {
        unpaid_total: summary.unpaid_total.map(Into::into),
        unpaid_count: summary.unpaid_count,
        overdue_total: summary.overdue_total.map(Into::into),
        overdue_count: summary.overdue_count,
        revenue_this_month: summary.revenue.map(Into::into),
        period_from: summary.period_from,
        period_to: summary.period_to,
    })
}
