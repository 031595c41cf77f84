//! Today: the dashboard the REST API computes (`carerp_bff::api::dashboard`), each number
//! linking to the list behind it. Sections the role may not read are left out; a service
//! that does not answer leaves its section out with a note.

use askama::Template;
use axum::Json;
use axum::extract::State;
use axum::response::Response;
use carerp_bff::AppState;
use carerp_bff::edge::Ctx;
use carerp_bff::models::Money;
use http::StatusCode;

use crate::Web;
use crate::format;
use crate::messages::{EN, Messages};
use crate::page::{Shell, method, missing, render};
use crate::session::Caller;

pub struct Count {
    pub label: &'static str,
    pub count: u64,
    pub href: &'static str,
}

pub struct LowPart {
    pub sku: String,
    pub name: String,
    pub available: i32,
    pub reorder_point: i32,
    pub reorder_quantity: i32,
}

pub struct Money2 {
    pub label: &'static str,
    pub count: Option<i32>,
    pub amount: String,
    pub href: Option<&'static str>,
}

#[derive(Template)]
#[template(path = "today.html")]
struct TodayPage {
    shell: Shell,
    statuses: Option<Vec<Count>>,
    waiting: Option<Count>,
    low_stock: Option<(u64, Vec<LowPart>)>,
    money: Option<Vec<Money2>>,
    missing: Vec<&'static str>,
}

fn amount(t: &Messages, money: &Option<Money>) -> String {
    money
        .as_ref()
        .map(|m| format::money(t, m.amount_minor, &m.currency))
        .unwrap_or_default()
}

pub async fn today(State(web): State<Web>, caller: Caller) -> Response {
    let t = &EN;
    let state = AppState {
        clients: web.clients.clone(),
        delivery: None,
    };
    let Json(dashboard) =
        carerp_bff::api::dashboard::dashboard(axum::extract::State(state), Ctx(caller.ctx.clone()))
            .await;
    let reads_money = caller.can(method::GET_SUMMARY);
    let statuses = dashboard.work_orders_by_status.as_ref().map(|c| {
        vec![
            Count {
                label: t.status_open,
                count: c.open,
                href: "/work-orders?status=OPEN",
            },
            Count {
                label: t.status_estimate,
                count: c.estimate,
                href: "/work-orders?status=ESTIMATE",
            },
            Count {
                label: t.status_in_progress,
                count: c.in_progress,
                href: "/work-orders?status=IN_PROGRESS",
            },
            Count {
                label: t.status_awaiting_parts,
                count: c.awaiting_parts,
                href: "/work-orders?status=AWAITING_PARTS",
            },
            Count {
                label: t.status_completed,
                count: c.completed,
                href: "/work-orders?status=COMPLETED",
            },
            Count {
                label: t.status_invoiced,
                count: c.invoiced,
                href: "/work-orders?status=INVOICED",
            },
        ]
    });
    let waiting = dashboard.work_orders_by_status.as_ref().map(|c| Count {
        label: t.waiting_on_parts,
        count: c.awaiting_parts,
        href: "/work-orders?status=AWAITING_PARTS",
    });
    let low_stock = dashboard.low_stock.as_ref().map(|low| {
        (
            low.count,
            low.parts
                .iter()
                .map(|p| LowPart {
                    sku: p.sku.clone(),
                    name: p.name.clone(),
                    available: p.quantity_available,
                    reorder_point: p.reorder_point,
                    reorder_quantity: p.reorder_quantity,
                })
                .collect(),
        )
    });
    let money = dashboard
        .invoices
        .as_ref()
        .filter(|_| reads_money)
        .map(|i| {
            vec![
                Money2 {
                    label: t.unpaid_invoices,
                    count: Some(i.unpaid_count),
                    amount: amount(t, &i.unpaid_total),
                    href: Some("/invoices?filter=unpaid"),
                },
                Money2 {
                    label: t.overdue_invoices,
                    count: Some(i.overdue_count),
                    amount: amount(t, &i.overdue_total),
                    href: Some("/invoices?filter=overdue"),
                },
                Money2 {
                    label: t.revenue_this_month,
                    count: None,
                    amount: amount(t, &i.revenue_this_month),
                    href: None,
                },
            ]
        });
    let missing = dashboard
        .missing
        .iter()
        .filter(|m| m.service != "billing" || reads_money)
        .map(|m| missing(t, &m.service))
        .collect();
    render(
        StatusCode::OK,
        &TodayPage {
            shell: Shell::new(Some(&caller), t.today_title, "today"),
            statuses,
            waiting,
            low_stock,
            money,
            missing,
        },
    )
}
