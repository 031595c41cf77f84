//! The gRPC handlers: decode and validate the request, call the store, encode the answer.

use carerp_kit::grpc::{principal, request_context};
use carerp_kit::idempotency::Key;
use carerp_kit::permissions;
use carerp_kit::status::parse_id;
use carerp_kit::{TenantSettings, Violations, page};
use carerp_proto::common::v1::{Audit, Money, PageResponse};
use carerp_proto::workorder::v1 as pb;
use carerp_proto::workorder::v1::work_order_service_server::WorkOrderService;
use chrono::{DateTime, Utc};
use sqlx::PgPool;
use tonic::{Request, Response, Status};
use uuid::Uuid;

use crate::approval::{self, Estimate, ForCustomer};
use crate::domain::{self, Intake, NewLabor, ReservationState, Status as WoStatus};
use crate::error::Error;
use crate::jobs::{self, Channel, Job, JobState, Verdict};
use crate::peers::Peers;
use crate::store::{self, ListFilter, NewPartLine, NewWorkOrder, WorkOrder};

pub struct WorkOrderApi {
    pool: PgPool,
    settings: TenantSettings,
    peers: Peers,
}

impl WorkOrderApi {
    pub fn new(pool: PgPool, settings: TenantSettings, peers: Peers) -> Self {
        Self {
            pool,
            settings,
            peers,
        }
    }

    /// Today in the garage's time zone (checked at start, see [`store::usable_timezone`]): a
    /// deferral's reminder day must come after it.
    async fn today(&self) -> Result<chrono::NaiveDate, Error> {
        store::today(&self.pool, &self.settings.timezone).await
    }
}

type Reply<T> = Result<Response<T>, Status>;

fn reply(order: WorkOrder) -> Reply<pb::WorkOrder> {
    Ok(Response::new(to_pb(order)))
}

#[tonic::async_trait]
impl WorkOrderService for WorkOrderApi {
    async fn create_work_order(
        &self,
        request: Request<pb::CreateWorkOrderRequest>,
    ) -> Reply<pb::WorkOrder> {
        let context = request_context(&request);
        let req = request.into_inner();
        let mut v = Violations::new();
        let customer_id = required_id(&mut v, "customer_id", &req.customer_id);
        let vehicle_id = required_id(&mut v, "vehicle_id", &req.vehicle_id);
        let intake = Intake::validate(&req.complaint, req.odometer_km, &req.notes)
            .map_err(|violations| {
                for violation in violations.as_slice() {
                    v.check(Err(violation.clone()));
                }
            })
            .ok();
        let key = idempotency_key(&mut v, &req.idempotency_key);
        let (Some(customer_id), Some(vehicle_id), Some(intake)) = (customer_id, vehicle_id, intake)
        else {
            return Err(Error::Invalid(v).into());
        };
        v.into_result(()).map_err(Error::from)?;
        // A retried create returns what the first one made, even if the customer service is
        // down by now.
        let key = key.as_ref().map(Key::as_str);
        if let Some(key) = key
            && let Some(existing) = store::find_by_idempotency_key(&self.pool, key).await?
        {
            return reply(existing);
        }
        self.peers
            .customers
            .check_vehicle_of(&context, customer_id, vehicle_id)
            .await?;
        let new = NewWorkOrder {
            customer_id,
            vehicle_id,
            intake,
            currency: self.settings.currency.clone(),
            timezone: self.settings.timezone.clone(),
        };
        reply(store::create_work_order(&self.pool, &context, &new, key).await?)
    }

    async fn get_work_order(
        &self,
        request: Request<pb::GetWorkOrderRequest>,
    ) -> Reply<pb::WorkOrder> {
        let id = parse_id("id", &request.get_ref().id).map_err(Error::from)?;
        reply(store::get_work_order(&self.pool, id).await?)
    }

    async fn list_work_orders(
        &self,
        request: Request<pb::ListWorkOrdersRequest>,
    ) -> Reply<pb::ListWorkOrdersResponse> {
        let req = request.into_inner();
        let mut v = Violations::new();
        let page_request = req.page.unwrap_or_default();
        let limit = page::page_size(page_request.page_size).unwrap_or_else(|violation| {
            v.check(Err(violation));
            page::DEFAULT_PAGE_SIZE
        });
        let after: Option<Uuid> =
            page::decode_token(&page_request.page_token).unwrap_or_else(|violation| {
                v.check(Err(violation));
                None
            });
        let mut statuses = Vec::new();
        for (index, value) in req.statuses.iter().enumerate() {
            match status_from_pb(*value) {
                Some(status) => statuses.push(status),
                None => v.add(
                    format!("statuses[{index}]"),
                    format!("{value} is not a work order status"),
                ),
            }
        }
        let customer_id = optional_id(&mut v, "customer_id", &req.customer_id);
        let vehicle_id = optional_id(&mut v, "vehicle_id", &req.vehicle_id);
        let filter = v
            .into_result(ListFilter {
                statuses,
                customer_id,
                vehicle_id,
            })
            .map_err(Error::from)?;
        let rows = store::list_work_orders(&self.pool, &filter, after, limit + 1).await?;
        let (rows, next_page_token) = page::split_page(rows, limit, |order| order.id());
        Ok(Response::new(pb::ListWorkOrdersResponse {
            work_orders: rows.into_iter().map(to_pb).collect(),
            page: Some(PageResponse { next_page_token }),
        }))
    }

    async fn count_work_orders(
        &self,
        _request: Request<pb::CountWorkOrdersRequest>,
    ) -> Reply<pb::CountWorkOrdersResponse> {
        let counted = store::count_by_status(&self.pool).await?;
        let count_of = |status: WoStatus| {
            counted
                .iter()
                .find(|(name, _)| name == status.as_str())
                .map_or(0, |(_, count)| *count)
        };
        Ok(Response::new(pb::CountWorkOrdersResponse {
            counts: WoStatus::ALL
                .into_iter()
                .map(|status| pb::StatusCount {
                    status: status_to_pb(status) as i32,
                    count: count_of(status),
                })
                .collect(),
        }))
    }

    async fn change_status(
        &self,
        request: Request<pb::ChangeStatusRequest>,
    ) -> Reply<pb::WorkOrder> {
        let context = request_context(&request);
        let req = request.into_inner();
        let mut v = Violations::new();
        let id = required_id(&mut v, "id", &req.id);
        let to = match status_from_pb(req.status) {
            Some(status) => Some(status),
            None if req.status == 0 => {
                v.add("status", "is required");
                None
            }
            None => {
                v.add(
                    "status",
                    format!("{} is not a work order status", req.status),
                );
                None
            }
        };
        let reason = if to == Some(WoStatus::Cancelled) {
            domain::check_cancellation_reason(&req.reason).unwrap_or_else(|violation| {
                v.check(Err(violation));
                String::new()
            })
        } else {
            String::new()
        };
        check_expected_version(&mut v, req.expected_version);
        let (Some(id), Some(to)) = (id, to) else {
            return Err(Error::Invalid(v).into());
        };
        // Technicians move work along (start, complete); cancelling or reopening is the
        // front desk's.
        if let Some(principal) = &context.principal
            && !matches!(to, WoStatus::InProgress | WoStatus::Completed)
        {
            permissions::require(principal.role, permissions::rule::WORK_ORDER_ANY_STATUS)?;
        }
        v.into_result(()).map_err(Error::from)?;
        reply(
            store::change_status(&self.pool, &context, id, to, &reason, req.expected_version)
                .await?,
        )
    }

    async fn add_part_line(
        &self,
        request: Request<pb::AddPartLineRequest>,
    ) -> Reply<pb::WorkOrder> {
        let context = request_context(&request);
        let req = request.into_inner();
        let mut v = Violations::new();
        let id = required_id(&mut v, "work_order_id", &req.work_order_id);
        let part_id = required_id(&mut v, "part_id", &req.part_id);
        v.check(domain::check_quantity(req.quantity));
        check_expected_version(&mut v, req.expected_version);
        let key = idempotency_key(&mut v, &req.idempotency_key);
        let job_id = optional_id(&mut v, "job_id", &req.job_id);
        let (Some(id), Some(part_id)) = (id, part_id) else {
            return Err(Error::Invalid(v).into());
        };
        v.into_result(()).map_err(Error::from)?;
        // A PROPOSED job's part is quoted at its current price, asked before the write.
        let quote = match job_id {
            Some(job_id)
                if store::job_state(&self.pool, id, job_id).await? == JobState::Proposed =>
            {
                Some(self.peers.parts.quote(&context, part_id).await?)
            }
            _ => None,
        };
        let line = NewPartLine {
            part_id,
            quantity: req.quantity,
            job_id,
            quote,
        };
        reply(
            store::add_part_line(
                &self.pool,
                &context,
                id,
                &line,
                req.expected_version,
                key.as_ref(),
            )
            .await?,
        )
    }

    async fn remove_part_line(
        &self,
        request: Request<pb::RemovePartLineRequest>,
    ) -> Reply<pb::WorkOrder> {
        let context = request_context(&request);
        let req = request.into_inner();
        let (id, line_id) = ids_of_line(&req.work_order_id, &req.line_id, req.expected_version)?;
        reply(
            store::remove_part_line(&self.pool, &context, id, line_id, req.expected_version)
                .await?,
        )
    }

    async fn add_labor_line(
        &self,
        request: Request<pb::AddLaborLineRequest>,
    ) -> Reply<pb::WorkOrder> {
        let principal = principal(&request)?;
        let req = request.into_inner();
        // Prices are not the workshop's: a technician's labour is at the tenant's rate.
        if req.hourly_rate.is_some() {
            permissions::require(principal.role, permissions::rule::LABOR_RATE)?;
        }
        let mut v = Violations::new();
        let id = required_id(&mut v, "work_order_id", &req.work_order_id);
        let rate = req
            .hourly_rate
            .as_ref()
            .map(|money| (money.amount_minor, money.currency.as_str()));
        let labor = NewLabor::validate(
            &req.description,
            &req.technician,
            req.minutes,
            rate,
            self.settings.labor_rate_minor,
            &self.settings.currency,
        );
        if let Err(violations) = &labor {
            for violation in violations.as_slice() {
                v.check(Err(violation.clone()));
            }
        }
        check_expected_version(&mut v, req.expected_version);
        let key = idempotency_key(&mut v, &req.idempotency_key);
        let job_id = optional_id(&mut v, "job_id", &req.job_id);
        let (Some(id), Ok(labor)) = (id, labor) else {
            return Err(Error::Invalid(v).into());
        };
        v.into_result(()).map_err(Error::from)?;
        reply(
            store::add_labor_line(
                &self.pool,
                id,
                job_id,
                &labor,
                &self.settings.currency,
                req.expected_version,
                key.as_ref(),
            )
            .await?,
        )
    }

    async fn remove_labor_line(
        &self,
        request: Request<pb::RemoveLaborLineRequest>,
    ) -> Reply<pb::WorkOrder> {
        let req = request.into_inner();
        let (id, line_id) = ids_of_line(&req.work_order_id, &req.line_id, req.expected_version)?;
        reply(store::remove_labor_line(&self.pool, id, line_id, req.expected_version).await?)
    }

    async fn update_notes(&self, request: Request<pb::UpdateNotesRequest>) -> Reply<pb::WorkOrder> {
        let context = request_context(&request);
        let req = request.into_inner();
        let mut v = Violations::new();
        let id = required_id(&mut v, "id", &req.id);
        let notes = domain::check_notes(&req.notes).unwrap_or_else(|violation| {
            v.check(Err(violation));
            String::new()
        });
        check_expected_version(&mut v, req.expected_version);
        let Some(id) = id else {
            return Err(Error::Invalid(v).into());
        };
        v.into_result(()).map_err(Error::from)?;
        reply(store::update_notes(&self.pool, &context, id, &notes, req.expected_version).await?)
    }

    async fn retry_reservation(
        &self,
        request: Request<pb::RetryReservationRequest>,
    ) -> Reply<pb::WorkOrder> {
        let context = request_context(&request);
        let req = request.into_inner();
        let mut v = Violations::new();
        let id = required_id(&mut v, "id", &req.id);
        check_expected_version(&mut v, req.expected_version);
        let key = idempotency_key(&mut v, &req.idempotency_key);
        let Some(id) = id else {
            return Err(Error::Invalid(v).into());
        };
        v.into_result(()).map_err(Error::from)?;
        reply(
            store::retry_reservation(&self.pool, &context, id, req.expected_version, key.as_ref())
                .await?,
        )
    }

    async fn add_job(&self, request: Request<pb::AddJobRequest>) -> Reply<pb::WorkOrder> {
        let req = request.into_inner();
        let mut v = Violations::new();
        let id = required_id(&mut v, "work_order_id", &req.work_order_id);
        let title = jobs::check_title(&req.title).unwrap_or_else(|violation| {
            v.check(Err(violation));
            String::new()
        });
        check_expected_version(&mut v, req.expected_version);
        let key = idempotency_key(&mut v, &req.idempotency_key);
        let Some(id) = id else {
            return Err(Error::Invalid(v).into());
        };
        v.into_result(()).map_err(Error::from)?;
        reply(approval::add_job(&self.pool, id, &title, req.expected_version, key.as_ref()).await?)
    }

    async fn remove_job(&self, request: Request<pb::RemoveJobRequest>) -> Reply<pb::WorkOrder> {
        let req = request.into_inner();
        let mut v = Violations::new();
        let id = required_id(&mut v, "work_order_id", &req.work_order_id);
        let job_id = required_id(&mut v, "job_id", &req.job_id);
        check_expected_version(&mut v, req.expected_version);
        let (Some(id), Some(job_id)) = (id, job_id) else {
            return Err(Error::Invalid(v).into());
        };
        v.into_result(()).map_err(Error::from)?;
        reply(approval::remove_job(&self.pool, id, job_id, req.expected_version).await?)
    }

    async fn decide_job(&self, request: Request<pb::DecideJobRequest>) -> Reply<pb::WorkOrder> {
        let context = request_context(&request);
        let req = request.into_inner();
        let mut v = Violations::new();
        let id = required_id(&mut v, "work_order_id", &req.work_order_id);
        let job_id = required_id(&mut v, "job_id", &req.job_id);
        let today = self.today().await?;
        let verdict = verdict(&mut v, req.decision, &req.reason, &req.remind_after, today);
        let channel = match channel_from_pb(req.channel) {
            Some(channel @ (Channel::InPerson | Channel::Phone | Channel::Email)) => Some(channel),
            _ => {
                v.add(
                    "channel",
                    "must be IN_PERSON, PHONE or EMAIL: how the customer told the garage",
                );
                None
            }
        };
        check_expected_version(&mut v, req.expected_version);
        let (Some(id), Some(job_id), Some(verdict), Some(channel)) = (id, job_id, verdict, channel)
        else {
            return Err(Error::Invalid(v).into());
        };
        v.into_result(()).map_err(Error::from)?;
        reply(
            approval::decide_job(
                &self.pool,
                &context,
                id,
                job_id,
                &verdict,
                channel,
                req.expected_version,
            )
            .await?,
        )
    }

    async fn send_estimate(
        &self,
        request: Request<pb::SendEstimateRequest>,
    ) -> Reply<pb::SendEstimateResponse> {
        let context = request_context(&request);
        let req = request.into_inner();
        let mut v = Violations::new();
        let id = required_id(&mut v, "work_order_id", &req.work_order_id);
        check_expected_version(&mut v, req.expected_version);
        let key = idempotency_key(&mut v, &req.idempotency_key);
        let Some(id) = id else {
            return Err(Error::Invalid(v).into());
        };
        v.into_result(()).map_err(Error::from)?;
        let sent =
            approval::send_estimate(&self.pool, &context, id, req.expected_version, key.as_ref())
                .await?;
        Ok(Response::new(pb::SendEstimateResponse {
            work_order: Some(to_pb(sent.order)),
            estimate: Some(estimate_to_pb(sent.estimate)),
            approval_token: sent.token,
        }))
    }

    async fn list_estimates(
        &self,
        request: Request<pb::ListEstimatesRequest>,
    ) -> Reply<pb::ListEstimatesResponse> {
        let id =
            parse_id("work_order_id", &request.get_ref().work_order_id).map_err(Error::from)?;
        let estimates = approval::list_estimates(&self.pool, id).await?;
        Ok(Response::new(pb::ListEstimatesResponse {
            estimates: estimates.into_iter().map(estimate_to_pb).collect(),
        }))
    }

    async fn get_estimate_by_link(
        &self,
        request: Request<pb::GetEstimateByLinkRequest>,
    ) -> Reply<pb::EstimateForCustomer> {
        let token = link_token(&request.get_ref().token)?;
        let found = approval::estimate_by_link(&self.pool, token).await?;
        Ok(Response::new(for_customer_to_pb(found)))
    }

    async fn decide_job_by_link(
        &self,
        request: Request<pb::DecideJobByLinkRequest>,
    ) -> Reply<pb::EstimateForCustomer> {
        let context = request_context(&request);
        let req = request.into_inner();
        let token = link_token(&req.token)?;
        let mut v = Violations::new();
        let job_id = required_id(&mut v, "job_id", &req.job_id);
        // On the link the customer approves or declines; deferring is agreed with the garage.
        let decision = match job_state_from_pb(req.decision) {
            Some(state @ (JobState::Approved | JobState::Declined)) => state,
            _ => {
                v.add("decision", "must be APPROVED or DECLINED");
                JobState::Approved
            }
        };
        let reason = if decision == JobState::Declined && req.reason.trim().is_empty() {
            // The customer need not explain a no.
            "declined by the customer"
        } else {
            req.reason.as_str()
        };
        let verdict = verdict(
            &mut v,
            job_state_to_pb(decision) as i32,
            reason,
            "",
            self.today().await?,
        );
        let (Some(job_id), Some(verdict)) = (job_id, verdict) else {
            return Err(Error::Invalid(v).into());
        };
        v.into_result(()).map_err(Error::from)?;
        let found = approval::decide_by_link(&self.pool, &context, token, job_id, &verdict).await?;
        Ok(Response::new(for_customer_to_pb(found)))
    }
}

/// A link token as [`approval::send_estimate`] makes them ([`approval::TOKEN_LENGTH`] URL-safe characters); anything
/// else is not one, and gets the answer an unknown token gets.
pub(crate) fn link_token(token: &str) -> Result<&str, Error> {
    let plausible = token.len() == approval::TOKEN_LENGTH
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if plausible {
        Ok(token)
    } else {
        Err(Error::Link(crate::error::LinkError::Unknown))
    }
}

fn verdict(
    v: &mut Violations,
    decision: i32,
    reason: &str,
    remind_after: &str,
    today: chrono::NaiveDate,
) -> Option<Verdict> {
    let Some(state) = job_state_from_pb(decision) else {
        v.add("decision", "must be APPROVED, DECLINED or DEFERRED");
        return None;
    };
    Verdict::validate(state, reason, remind_after, today)
        .map_err(|violations| {
            for violation in violations.as_slice() {
                v.check(Err(violation.clone()));
            }
        })
        .ok()
}

fn ids_of_line(
    work_order_id: &str,
    line_id: &str,
    expected_version: i64,
) -> Result<(Uuid, Uuid), Error> {
    let mut v = Violations::new();
    let id = required_id(&mut v, "work_order_id", work_order_id);
    let line_id = required_id(&mut v, "line_id", line_id);
    check_expected_version(&mut v, expected_version);
    match (id, line_id) {
        (Some(id), Some(line_id)) if v.is_empty() => Ok((id, line_id)),
        _ => Err(Error::Invalid(v)),
    }
}

pub(crate) fn required_id(v: &mut Violations, field: &str, value: &str) -> Option<Uuid> {
    parse_id(field, value)
        .map_err(|violation| v.check(Err(violation)))
        .ok()
}

/// An id filter: empty means "any".
pub(crate) fn optional_id(v: &mut Violations, field: &str, value: &str) -> Option<Uuid> {
    if value.trim().is_empty() {
        None
    } else {
        required_id(v, field, value)
    }
}

pub(crate) fn check_expected_version(v: &mut Violations, expected_version: i64) {
    if expected_version < 0 {
        v.add(
            "expected_version",
            format!("must not be negative (0 skips the check), is {expected_version}"),
        );
    }
}

/// The request's idempotency key, if it has one (the kit's rules: visible ASCII, at most
/// 200 characters).
fn idempotency_key(v: &mut Violations, value: &str) -> Option<Key> {
    Key::optional("idempotency_key", value).unwrap_or_else(|violation| {
        v.check(Err(violation));
        None
    })
}

pub fn status_from_pb(value: i32) -> Option<WoStatus> {
    match pb::WorkOrderStatus::try_from(value).ok()? {
        pb::WorkOrderStatus::Unspecified => None,
        pb::WorkOrderStatus::Open => Some(WoStatus::Open),
        pb::WorkOrderStatus::Estimate => Some(WoStatus::Estimate),
        pb::WorkOrderStatus::InProgress => Some(WoStatus::InProgress),
        pb::WorkOrderStatus::AwaitingParts => Some(WoStatus::AwaitingParts),
        pb::WorkOrderStatus::Completed => Some(WoStatus::Completed),
        pb::WorkOrderStatus::Invoiced => Some(WoStatus::Invoiced),
        pb::WorkOrderStatus::Cancelled => Some(WoStatus::Cancelled),
    }
}

pub fn status_to_pb(status: WoStatus) -> pb::WorkOrderStatus {
    match status {
        WoStatus::Open => pb::WorkOrderStatus::Open,
        WoStatus::Estimate => pb::WorkOrderStatus::Estimate,
        WoStatus::InProgress => pb::WorkOrderStatus::InProgress,
        WoStatus::AwaitingParts => pb::WorkOrderStatus::AwaitingParts,
        WoStatus::Completed => pb::WorkOrderStatus::Completed,
        WoStatus::Invoiced => pb::WorkOrderStatus::Invoiced,
        WoStatus::Cancelled => pb::WorkOrderStatus::Cancelled,
    }
}

fn reservation_to_pb(state: ReservationState) -> pb::ReservationState {
    match state {
        ReservationState::Quoted => pb::ReservationState::Quoted,
        ReservationState::Pending => pb::ReservationState::Pending,
        ReservationState::Reserved => pb::ReservationState::Reserved,
        ReservationState::Failed => pb::ReservationState::Failed,
    }
}

pub fn job_state_from_pb(value: i32) -> Option<JobState> {
    match pb::JobState::try_from(value).ok()? {
        pb::JobState::Unspecified => None,
        pb::JobState::Proposed => Some(JobState::Proposed),
        pb::JobState::Approved => Some(JobState::Approved),
        pb::JobState::Declined => Some(JobState::Declined),
        pb::JobState::Deferred => Some(JobState::Deferred),
    }
}

pub fn job_state_to_pb(state: JobState) -> pb::JobState {
    match state {
        JobState::Proposed => pb::JobState::Proposed,
        JobState::Approved => pb::JobState::Approved,
        JobState::Declined => pb::JobState::Declined,
        JobState::Deferred => pb::JobState::Deferred,
    }
}

fn channel_from_pb(value: i32) -> Option<Channel> {
    match pb::DecisionChannel::try_from(value).ok()? {
        pb::DecisionChannel::Unspecified => None,
        pb::DecisionChannel::InPerson => Some(Channel::InPerson),
        pb::DecisionChannel::Phone => Some(Channel::Phone),
        pb::DecisionChannel::Email => Some(Channel::Email),
        pb::DecisionChannel::Link => Some(Channel::Link),
        pb::DecisionChannel::Intake => Some(Channel::Intake),
    }
}

fn channel_to_pb(channel: Channel) -> pb::DecisionChannel {
    match channel {
        Channel::InPerson => pb::DecisionChannel::InPerson,
        Channel::Phone => pb::DecisionChannel::Phone,
        Channel::Email => pb::DecisionChannel::Email,
        Channel::Link => pb::DecisionChannel::Link,
        Channel::Intake => pb::DecisionChannel::Intake,
    }
}

fn job_to_pb(job: &Job, order: &WorkOrder, money: &impl Fn(i64) -> Money) -> pb::Job {
    pb::Job {
        id: job.id.to_string(),
        title: job.title.clone(),
        state: job_state_to_pb(job.state) as i32,
        intake: job.intake,
        decision: job.decision.as_ref().map(|decision| pb::Decision {
            decided_by: decision.decided_by.clone(),
            channel: channel_to_pb(decision.channel) as i32,
            decided_at: Some(timestamp(decision.decided_at)),
            reason: decision.reason.clone(),
            remind_after: decision
                .remind_after
                .map(|day| day.to_string())
                .unwrap_or_default(),
            estimate_version: decision.estimate_version,
        }),
        total: Some(money(jobs::job_total_minor(
            job.id,
            &order.part_lines,
            &order.labor_lines,
        ))),
    }
}

fn estimate_to_pb(estimate: Estimate) -> pb::Estimate {
    let currency = estimate.content.currency.clone();
    let money = |amount_minor: i64| Money {
        amount_minor,
        currency: currency.clone(),
    };
    pb::Estimate {
        id: estimate.id.to_string(),
        version: estimate.version,
        sent_by: estimate.sent_by,
        sent_at: Some(timestamp(estimate.sent_at)),
        jobs: estimate
            .content
            .jobs
            .iter()
            .map(|job| pb::EstimateJob {
                job_id: job.job_id.to_string(),
                title: job.title.clone(),
                lines: job
                    .lines
                    .iter()
                    .map(|line| pb::EstimateLine {
                        description: line.description.clone(),
                        total: Some(money(line.total_minor)),
                    })
                    .collect(),
                total: Some(money(job.total_minor)),
            })
            .collect(),
        total: Some(money(estimate.content.total_minor)),
        link_expires_at: Some(timestamp(estimate.link_expires_at)),
        outdated: estimate.outdated,
    }
}

fn for_customer_to_pb(found: ForCustomer) -> pb::EstimateForCustomer {
    pb::EstimateForCustomer {
        work_order_number: found.number,
        decisions: found
            .decisions
            .iter()
            .map(|(job_id, state)| pb::JobDecision {
                job_id: job_id.to_string(),
                state: job_state_to_pb(*state) as i32,
            })
            .collect(),
        estimate: Some(estimate_to_pb(found.estimate)),
    }
}

pub(crate) fn timestamp(at: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: at.timestamp(),
        nanos: i32::try_from(at.timestamp_subsec_nanos()).unwrap_or(0),
    }
}

pub(crate) fn to_pb(order: WorkOrder) -> pb::WorkOrder {
    let totals = order.totals();
    let currency = order.header.currency.clone();
    let money = |amount_minor: i64| Money {
        amount_minor,
        currency: currency.clone(),
    };
    let part_lines = order
        .part_lines
        .iter()
        .map(|line| pb::PartLine {
            id: line.id.to_string(),
            part_id: line.part_id.to_string(),
            quantity: line.quantity,
            reservation_state: reservation_to_pb(line.state) as i32,
            failure_reason: line.failure_reason.clone(),
            sku: line.sku.clone(),
            name: line.name.clone(),
            unit_price: line.unit_price_minor.map(money),
            line_total: line.line_total_minor().map(money),
            job_id: line.job_id.to_string(),
        })
        .collect();
    let labor_lines = order
        .labor_lines
        .iter()
        .map(|line| pb::LaborLine {
            id: line.id.to_string(),
            description: line.description.clone(),
            technician: line.technician.clone(),
            minutes: line.minutes,
            hourly_rate: Some(money(line.hourly_rate_minor)),
            line_total: Some(money(line.line_total_minor())),
            job_id: line.job_id.to_string(),
        })
        .collect();
    let jobs = order
        .jobs
        .iter()
        .map(|job| job_to_pb(job, &order, &money))
        .collect();
    let (estimate_version, estimate_outdated) = order
        .latest_estimate
        .map_or((0, false), |mark| (mark.version, mark.outdated));
    let h = order.header;
    pb::WorkOrder {
        id: h.id.to_string(),
        number: h.number,
        customer_id: h.customer_id.to_string(),
        vehicle_id: h.vehicle_id.to_string(),
        complaint: h.complaint,
        odometer_km: h.odometer_km,
        notes: h.notes,
        status: status_to_pb(order.status) as i32,
        part_lines,
        labor_lines,
        totals: Some(pb::Totals {
            parts: Some(money(totals.parts_minor)),
            labor: Some(money(totals.labor_minor)),
            estimated_total: Some(money(totals.estimated_minor)),
            proposed: Some(money(totals.proposed_minor)),
        }),
        jobs,
        estimate_version,
        estimate_outdated,
        started_at: h.started_at.map(timestamp),
        completed_at: h.completed_at.map(timestamp),
        invoiced_at: h.invoiced_at.map(timestamp),
        cancelled_at: h.cancelled_at.map(timestamp),
        cancellation_reason: h.cancellation_reason,
        status_changed_by: h.status_changed_by,
        notes_updated_by: h.notes_updated_by,
        invoice_id: h.invoice_id.map(|id| id.to_string()).unwrap_or_default(),
        audit: Some(Audit {
            created_at: Some(timestamp(h.created_at)),
            updated_at: Some(timestamp(h.updated_at)),
            version: h.version,
        }),
    }
}
