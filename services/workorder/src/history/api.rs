//! gRPC handlers of `carerp.workorder.v1.HistoryService`: a vehicle's history, the
//! recommended work due, and offering a recommendation again.

use carerp_kit::grpc::request_context;
use carerp_kit::idempotency::Key;
use carerp_kit::{TenantSettings, Violations, page};
use carerp_proto::common::v1::{Money, PageResponse};
use carerp_proto::workorder::v1 as pb;
use carerp_proto::workorder::v1::history_service_server::HistoryService;
use chrono::NaiveDate;
use sqlx::PgPool;
use tonic::{Request, Response, Status};

use super::store::{self, Cursor, InspectionSummary};
use super::{lines_to_offer, open_recommendations};
use crate::api::{
    check_expected_version, job_state_to_pb, optional_id, required_id, timestamp, to_pb,
};
use crate::canned::store::{Package, Pricing, add_package};
use crate::error::Error;
use crate::jobs::{self, Job};
use crate::peers::PartCatalogue;
use crate::store::{WorkOrder, today};

/// The idempotency operation of [`HistoryService::offer_again`].
pub const OFFER_AGAIN: &str = "workorder.offer-again";

pub struct HistoryApi {
    pool: PgPool,
    settings: TenantSettings,
    parts: PartCatalogue,
}

impl HistoryApi {
    pub fn new(pool: PgPool, settings: TenantSettings, parts: PartCatalogue) -> Self {
        Self {
            pool,
            settings,
            parts,
        }
    }
}

type Reply<T> = Result<Response<T>, Status>;

#[tonic::async_trait]
impl HistoryService for HistoryApi {
    async fn get_vehicle_history(
        &self,
        request: Request<pb::GetVehicleHistoryRequest>,
    ) -> Reply<pb::VehicleHistory> {
        let vehicle_id = carerp_kit::status::parse_id("vehicle_id", &request.get_ref().vehicle_id)
            .map_err(Error::from)?;
        let history = store::vehicle_history(&self.pool, vehicle_id).await?;
        let recommended = open_recommendations(&history.orders, &history.offered_again_in)
            .into_iter()
            .map(|(order, job)| recommendation(order, job))
            .collect();
        let odometer = history
            .orders
            .iter()
            .rev()
            .map(|order| pb::OdometerReading {
                read_at: Some(timestamp(order.header.created_at)),
                odometer_km: order.header.odometer_km,
                work_order_id: order.id().to_string(),
            })
            .collect();
        let mut inspections = history.inspections;
        let visits = history
            .orders
            .into_iter()
            .map(|order| pb::Visit {
                inspection: inspections.remove(&order.id()).map(summary_to_pb),
                offered_again_in: order
                    .jobs
                    .iter()
                    .filter_map(|job| {
                        let number = history.offered_again_in.get(&job.id)?;
                        Some((job.id.to_string(), number.clone()))
                    })
                    .collect(),
                work_order: Some(to_pb(order)),
            })
            .collect();
        Ok(Response::new(pb::VehicleHistory {
            vehicle_id: vehicle_id.to_string(),
            visits,
            odometer,
            recommended,
        }))
    }

    async fn list_recommended_work(
        &self,
        request: Request<pb::ListRecommendedWorkRequest>,
    ) -> Reply<pb::ListRecommendedWorkResponse> {
        let req = request.into_inner();
        let mut v = Violations::new();
        let page_request = req.page.unwrap_or_default();
        let limit = page::page_size(page_request.page_size).unwrap_or_else(|violation| {
            v.check(Err(violation));
            page::DEFAULT_PAGE_SIZE
        });
        let after: Option<Cursor> =
            page::decode_token(&page_request.page_token).unwrap_or_else(|violation| {
                v.check(Err(violation));
                None
            });
        let vehicle_id = optional_id(&mut v, "vehicle_id", &req.vehicle_id);
        let due_by = match req.due_by.trim() {
            "" => None,
            day => match NaiveDate::parse_from_str(day, "%Y-%m-%d") {
                Ok(day) => Some(day),
                Err(_) => {
                    v.add("due_by", format!("{day:?} is not a day as YYYY-MM-DD"));
                    None
                }
            },
        };
        v.into_result(()).map_err(Error::from)?;
        let due_by = match due_by {
            Some(day) => day,
            None => today(&self.pool, &self.settings.timezone).await?,
        };
        let rows = store::recommended_due(
            &self.pool,
            &self.settings.timezone,
            due_by,
            vehicle_id,
            after,
            limit + 1,
        )
        .await?;
        let (rows, next_page_token) = page::split_page(rows, limit, |due| (due.due, due.job_id));
        let recommended = rows
            .iter()
            .filter_map(|due| {
                let job = due.order.jobs.iter().find(|job| job.id == due.job_id)?;
                Some(recommendation(&due.order, job))
            })
            .collect();
        Ok(Response::new(pb::ListRecommendedWorkResponse {
            recommended,
            page: Some(PageResponse { next_page_token }),
        }))
    }

    async fn offer_again(&self, request: Request<pb::OfferAgainRequest>) -> Reply<pb::WorkOrder> {
        let context = request_context(&request);
        let req = request.into_inner();
        let mut v = Violations::new();
        let id = required_id(&mut v, "work_order_id", &req.work_order_id);
        let job_id = required_id(&mut v, "job_id", &req.job_id);
        check_expected_version(&mut v, req.expected_version);
        let key =
            Key::optional("idempotency_key", &req.idempotency_key).unwrap_or_else(|violation| {
                v.check(Err(violation));
                None
            });
        let (Some(id), Some(job_id)) = (id, job_id) else {
            return Err(Error::Invalid(v).into());
        };
        v.into_result(()).map_err(Error::from)?;
        let target = crate::store::get_work_order(&self.pool, id).await?;
        let earlier = store::order_of_job(&self.pool, job_id).await?;
        let (title, parts, labor) = lines_to_offer(&earlier, job_id, &target)?;
        let quotes = self
            .parts
            .quote_all(
                &context,
                &parts.iter().map(|part| part.part_id).collect::<Vec<_>>(),
            )
            .await?;
        let order = add_package(
            &self.pool,
            id,
            &Package {
                source: job_id,
                title: &title,
                parts: &parts,
                labor: &labor,
                offered_from: Some(job_id),
            },
            &Pricing {
                quotes: &quotes,
                labor_rate_minor: self.settings.labor_rate_minor,
                currency: &self.settings.currency,
            },
            req.expected_version,
            key.as_ref().map(|key| (key, OFFER_AGAIN)),
        )
        .await?;
        Ok(Response::new(to_pb(order)))
    }
}

fn recommendation(order: &WorkOrder, job: &Job) -> pb::Recommendation {
    let decision = job.decision.as_ref();
    pb::Recommendation {
        job_id: job.id.to_string(),
        title: job.title.clone(),
        state: job_state_to_pb(job.state) as i32,
        reason: decision.map(|d| d.reason.clone()).unwrap_or_default(),
        remind_after: decision
            .and_then(|d| d.remind_after)
            .map(|day| day.to_string())
            .unwrap_or_default(),
        decided_at: decision.map(|d| timestamp(d.decided_at)),
        work_order_id: order.id().to_string(),
        work_order_number: order.header.number.clone(),
        customer_id: order.header.customer_id.to_string(),
        vehicle_id: order.header.vehicle_id.to_string(),
        total: Some(Money {
            amount_minor: jobs::job_total_minor(job.id, &order.part_lines, &order.labor_lines),
            currency: order.header.currency.clone(),
        }),
    }
}

fn summary_to_pb(summary: InspectionSummary) -> pb::InspectionSummary {
    let state = match summary.state.as_str() {
        "COMPLETED" => pb::InspectionState::Completed,
        _ => pb::InspectionState::InProgress,
    };
    pb::InspectionSummary {
        id: summary.id.to_string(),
        state: state as i32,
        template_name: summary.template_name,
        ok: summary.ok,
        advise: summary.advise,
        urgent: summary.urgent,
        unrated: summary.unrated,
        completed_at: summary.completed_at.map(timestamp),
    }
}
