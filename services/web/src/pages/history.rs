//! A vehicle's visits as its page shows them (jobs with their decisions, the inspection, the
//! invoice), the work recommended at earlier visits and offered again from a later work
//! order, and the front desk's follow-up list of recommended work due (`docs/history.md`).

use askama::Template;
use axum::Form;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use carerp_bff::api::history::{HistoryWithInvoices, with_invoices};
use carerp_proto::common::v1::PageRequest;
use carerp_proto::workorder::v1 as pb;
use http::StatusCode;
use serde::Deserialize;

use super::customers::{InvoiceCell, km};
use super::workorders::{after_write, job_state_label, parties, refusal, status_label};
use crate::Web;
use crate::format;
use crate::messages::{EN, Messages};
use crate::page::{PageError, Shell, is_refusal, method, missing, render};
use crate::session::Caller;

const SERVICE: &str = "workorder";
/// Recommendations per page of the follow-up list.
const SHOWN: i32 = 50;

/// One work order of the vehicle's history.
pub struct VisitRow {
    pub id: String,
    pub number: String,
    pub status: &'static str,
    pub opened: String,
    pub odometer: String,
    pub complaint: String,
    pub jobs: Vec<VisitJob>,
    /// "Multi-point: 20 OK · 2 Advise · 1 Urgent"; `None` without an inspection.
    pub inspection: Option<String>,
    pub invoice: Option<InvoiceCell>,
}

pub struct VisitJob {
    pub title: String,
    pub state: &'static str,
    pub state_class: &'static str,
    pub total: String,
    /// The customer's reason for declining or deferring, and the day to remind them after.
    pub decision: String,
    /// The number of the later work order that offered this job again.
    pub offered_again_in: Option<String>,
}

/// An open recommendation: a declined or deferred job of an earlier visit.
pub struct RecommendationRow {
    pub job_id: String,
    pub title: String,
    pub state: &'static str,
    pub state_class: &'static str,
    pub reason: String,
    /// The remind-after day of a deferred job; "next visit" for a declined one.
    pub due: String,
    pub decided: String,
    pub work_order_id: String,
    pub work_order_number: String,
    pub vehicle_id: String,
    pub total: String,
}

/// What the vehicle page shows of the vehicle's visits.
pub struct VehicleVisits {
    pub visits: Vec<VisitRow>,
    pub recommended: Vec<RecommendationRow>,
    pub missing: Vec<&'static str>,
}

/// The vehicle's visits and open recommendations; invoices only when the caller reads money.
pub async fn visits_of(web: &Web, caller: &Caller, vehicle_id: &str) -> VehicleVisits {
    let t = &EN;
    let clients = &web.clients;
    let history = match clients
        .history
        .clone()
        .get_vehicle_history(clients.request(
            &caller.ctx,
            pb::GetVehicleHistoryRequest {
                vehicle_id: vehicle_id.to_string(),
            },
        ))
        .await
    {
        Ok(history) => history.into_inner(),
        Err(_) => {
            return VehicleVisits {
                visits: Vec::new(),
                recommended: Vec::new(),
                missing: vec![missing(t, SERVICE)],
            };
        }
    };
    let mut absent = Vec::new();
    let HistoryWithInvoices {
        history,
        invoices,
        billing_failure,
    } = if caller.can(method::LIST_INVOICES) {
        with_invoices(clients, &caller.ctx, history).await
    } else {
        HistoryWithInvoices {
            invoices: vec![None; history.visits.len()],
            history,
            billing_failure: None,
        }
    };
    if billing_failure.is_some() {
        absent.push(missing(t, "billing"));
    }
    let recommended = recommendation_rows(t, &web.zone, history.recommended);
    let visits = history
        .visits
        .into_iter()
        .zip(invoices)
        .filter_map(|(visit, invoice)| {
            let order = visit.work_order?;
            Some(VisitRow {
                jobs: order
                    .jobs
                    .iter()
                    .map(|job| {
                        let (state, state_class) = job_state_label(t, job.state);
                        VisitJob {
                            title: job.title.clone(),
                            state,
                            state_class,
                            total: format::money_of(t, job.total.as_ref()),
                            decision: decision_note(t, job.decision.as_ref()),
                            offered_again_in: visit.offered_again_in.get(&job.id).cloned(),
                        }
                    })
                    .collect(),
                inspection: visit.inspection.map(|i| inspection_note(t, &i)),
                invoice: invoice.map(|i| InvoiceCell {
                    status: super::invoices::status_label(t, i.status),
                    total: format::money_of(t, i.total.as_ref()),
                    id: i.id,
                    number: i.number,
                }),
                status: status_label(t, order.status),
                opened: format::date_time(
                    t,
                    &web.zone,
                    order.audit.as_ref().and_then(|a| a.created_at.as_ref()),
                ),
                odometer: km(t, order.odometer_km),
                complaint: order.complaint,
                id: order.id,
                number: order.number,
            })
        })
        .collect();
    VehicleVisits {
        visits,
        recommended,
        missing: absent,
    }
}

/// "Too expensive · remind after 1 Mar 2027": why the customer declined or deferred.
fn decision_note(t: &Messages, decision: Option<&pb::Decision>) -> String {
    let Some(decision) = decision else {
        return String::new();
    };
    let mut note = decision.reason.clone();
    if !decision.remind_after.is_empty() {
        if !note.is_empty() {
            note.push_str(" · ");
        }
        note.push_str(&format!(
            "{} {}",
            t.remind_after,
            format::date(t, &decision.remind_after)
        ));
    }
    note
}

fn inspection_note(t: &Messages, inspection: &pb::InspectionSummary) -> String {
    let mut note = format!(
        "{}: {} {} · {} {} · {} {}",
        inspection.template_name,
        inspection.ok,
        t.rating_ok,
        inspection.advise,
        t.rating_advise,
        inspection.urgent,
        t.rating_urgent
    );
    if inspection.unrated > 0 {
        note.push_str(&format!(" · {} {}", inspection.unrated, t.rating_none));
    }
    note
}

fn recommendation_rows(
    t: &'static Messages,
    zone: &jiff::tz::TimeZone,
    recommended: Vec<pb::Recommendation>,
) -> Vec<RecommendationRow> {
    recommended
        .into_iter()
        .map(|r| {
            let (state, state_class) = job_state_label(t, r.state);
            RecommendationRow {
                due: if r.remind_after.is_empty() {
                    t.due_next_visit.to_string()
                } else {
                    format::date(t, &r.remind_after)
                },
                decided: format::date_time(t, zone, r.decided_at.as_ref()),
                total: format::money_of(t, r.total.as_ref()),
                job_id: r.job_id,
                title: r.title,
                state,
                state_class,
                reason: r.reason,
                work_order_id: r.work_order_id,
                work_order_number: r.work_order_number,
                vehicle_id: r.vehicle_id,
            }
        })
        .collect()
}

/// The open recommendations a work order may take (those of the vehicle's other orders),
/// when the caller may offer work again; empty when the service does not answer, the rest of
/// the page standing.
pub async fn offers_for(
    web: &Web,
    caller: &Caller,
    order: &pb::WorkOrder,
) -> Vec<RecommendationRow> {
    if !caller.can(method::OFFER_AGAIN) {
        return Vec::new();
    }
    let clients = &web.clients;
    let Ok(history) = clients
        .history
        .clone()
        .get_vehicle_history(clients.request(
            &caller.ctx,
            pb::GetVehicleHistoryRequest {
                vehicle_id: order.vehicle_id.clone(),
            },
        ))
        .await
    else {
        return Vec::new();
    };
    let others = history
        .into_inner()
        .recommended
        .into_iter()
        .filter(|r| r.work_order_id != order.id)
        .collect();
    recommendation_rows(&EN, &web.zone, others)
}

#[derive(Deserialize)]
pub struct OfferAgain {
    #[serde(default)]
    job_id: String,
    #[serde(default)]
    idempotency_key: String,
}

/// "Offer again" on the work order page: the recommendation becomes a PROPOSED job here.
pub async fn offer_again(
    State(web): State<Web>,
    caller: Caller,
    Path(id): Path<String>,
    Form(form): Form<OfferAgain>,
) -> Response {
    if let Err(refused) = caller.require(method::OFFER_AGAIN) {
        return refused.into_response();
    }
    let clients = &web.clients;
    let answer = clients
        .history
        .clone()
        .offer_again(clients.request(
            &caller.ctx,
            pb::OfferAgainRequest {
                work_order_id: id.clone(),
                job_id: form.job_id,
                expected_version: 0,
                idempotency_key: form.idempotency_key,
            },
        ))
        .await;
    after_write(&web, &caller, &id, answer).await
}

/// One follow-up row: the recommendation with the vehicle and its owner.
pub struct FollowUpRow {
    pub recommendation: RecommendationRow,
    pub vehicle: String,
    pub customer_id: String,
    pub customer: String,
}

#[derive(Template)]
#[template(path = "recommended_work.html")]
struct RecommendedPage {
    shell: Shell,
    rows: Vec<FollowUpRow>,
    due_by: String,
    /// The query of the next page, when there is one.
    next: Option<String>,
    /// The service's words for a refused `due_by` or cursor.
    refused: Option<String>,
    missing: Vec<&'static str>,
}

#[derive(Deserialize)]
pub struct RecommendedQuery {
    #[serde(default)]
    due_by: String,
    #[serde(default)]
    cursor: String,
}

/// `/recommended-work`: the open recommendations due by a day (default today), oldest due
/// first, with the vehicle and customer to call.
pub async fn recommended_work(
    State(web): State<Web>,
    caller: Caller,
    Query(query): Query<RecommendedQuery>,
) -> Response {
    let t = &EN;
    if let Err(refused) = caller.require(method::LIST_RECOMMENDED_WORK) {
        return refused.into_response();
    }
    let clients = &web.clients;
    let due_by = query.due_by.trim().to_string();
    let answer = clients
        .history
        .clone()
        .list_recommended_work(clients.request(
            &caller.ctx,
            pb::ListRecommendedWorkRequest {
                page: Some(PageRequest {
                    page_size: SHOWN,
                    page_token: query.cursor,
                }),
                due_by: due_by.clone(),
                vehicle_id: String::new(),
            },
        ))
        .await;
    let (listed, refused, code) = match answer {
        Ok(listed) => (listed.into_inner(), None, StatusCode::OK),
        Err(status) if is_refusal(&status) => (
            pb::ListRecommendedWorkResponse::default(),
            Some(refusal(&status)),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        Err(status) => return PageError::from_status(SERVICE, &status).into_response(),
    };
    let (names, plates, customers_down) = parties(
        &web,
        &caller,
        listed
            .recommended
            .iter()
            .map(|r| (r.customer_id.as_str(), r.vehicle_id.as_str())),
    )
    .await;
    let customer_ids: Vec<String> = listed
        .recommended
        .iter()
        .map(|r| r.customer_id.clone())
        .collect();
    let rows = recommendation_rows(t, &web.zone, listed.recommended)
        .into_iter()
        .zip(customer_ids)
        .map(|(recommendation, customer_id)| FollowUpRow {
            vehicle: plates
                .get(&recommendation.vehicle_id)
                .cloned()
                .unwrap_or_default(),
            customer: names.get(&customer_id).cloned().unwrap_or_default(),
            customer_id,
            recommendation,
        })
        .collect();
    let next = listed
        .page
        .map(|p| p.next_page_token)
        .filter(|token| !token.is_empty())
        .map(|cursor| {
            form_urlencoded::Serializer::new(String::new())
                .append_pair("due_by", &due_by)
                .append_pair("cursor", &cursor)
                .finish()
        });
    render(
        code,
        &RecommendedPage {
            shell: Shell::new(Some(&caller), t.recommended_work_title, "recommended-work"),
            rows,
            due_by,
            next,
            refused,
            missing: if customers_down {
                vec![missing(t, "customer")]
            } else {
                Vec::new()
            },
        },
    )
}
