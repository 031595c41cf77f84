//! Jobs, estimates and the customer's decisions (`docs/estimates.md`); and the approval link's
//! routes, which need no sign-in: the link's token is their authorisation.

use axum::Json;
use axum::extract::{Path, State};

use carerp_proto::workorder::v1 as pb;

use super::workorders::VersionQuery;
use super::{AppState, Created, IdempotencyKey, created};
use carerp_kit::RequestContext;

use crate::body::{JsonBody, QueryParams};
use crate::clients::Clients;
use crate::config::BffConfig;
use crate::edge::Ctx;
use crate::email::{EmailConfig, EstimateEmail, Mailer, NotDelivered, recipient};
use crate::models::{
    AddJob, Approval, CustomerDecision, DecideJob, Delivery, EmailSent, Estimate, EstimateList,
    SendEstimate, SentEstimate, WorkOrder,
};
use crate::problem::ApiError;

const SERVICE: &str = "workorder";

/// Where the customer opens an estimate: the web app's public approval page.
pub fn approval_path(token: &str) -> String {
    format!("/approve/{token}")
}

/// Add a PROPOSED job (a concern to estimate); its lines follow with its `jobId`.
#[utoipa::path(post, path = "/api/work-orders/{id}/jobs", tag = "estimates",
    request_body = AddJob,
    params(("id" = String, Path, format = Uuid, description = "Work order id"),
        ("Idempotency-Key" = Option<String>, Header, min_length = 1, max_length = 200, pattern = r"^[!-~]+$", description = "Makes retries safe: a retry adds no second job")),
    responses((status = 200, description = "The work order", body = WorkOrder)))]
pub async fn add_job(
    State(state): State<AppState>,
    Ctx(ctx): Ctx,
    Path(id): Path<String>,
    IdempotencyKey(key): IdempotencyKey,
    JsonBody(body): JsonBody<AddJob>,
) -> Result<Json<WorkOrder>, ApiError> {
    let clients = &state.clients;
    let order = clients
        .workorder
        .clone()
        .add_job(clients.request(
            &ctx,
            pb::AddJobRequest {
                work_order_id: id,
                title: body.title,
                expected_version: body.expected_version,
                idempotency_key: key,
            },
        ))
        .await
        .map_err(ApiError::grpc(SERVICE))?
        .into_inner();
    Ok(Json(order.into()))
}

/// Remove a PROPOSED job with its lines.
#[utoipa::path(delete, path = "/api/work-orders/{id}/jobs/{jobId}", tag = "estimates",
    params(("id" = String, Path, format = Uuid, description = "Work order id"),
        ("jobId" = String, Path, format = Uuid, description = "Job id"), VersionQuery),
    responses((status = 200, description = "The work order", body = WorkOrder)))]
pub async fn remove_job(
    State(state): State<AppState>,
    Ctx(ctx): Ctx,
    Path((id, job_id)): Path<(String, String)>,
    QueryParams(query): QueryParams<VersionQuery>,
) -> Result<Json<WorkOrder>, ApiError> {
    let clients = &state.clients;
    let order = clients
        .workorder
        .clone()
        .remove_job(clients.request(
            &ctx,
            pb::RemoveJobRequest {
                work_order_id: id,
                job_id,
                expected_version: query.expected_version.unwrap_or(0),
            },
        ))
        .await
        .map_err(ApiError::grpc(SERVICE))?
        .into_inner();
    Ok(Json(order.into()))
}

/// Record the customer's decision on a job, as they told the garage. Approving reserves the
/// job's parts; a declined or deferred job is remembered and never invoiced.
#[utoipa::path(put, path = "/api/work-orders/{id}/jobs/{jobId}/decision", tag = "estimates",
    request_body = DecideJob,
    params(("id" = String, Path, format = Uuid, description = "Work order id"),
        ("jobId" = String, Path, format = Uuid, description = "Job id")),
    responses((status = 200, description = "The work order", body = WorkOrder)))]
pub async fn decide_job(
    State(state): State<AppState>,
    Ctx(ctx): Ctx,
    Path((id, job_id)): Path<(String, String)>,
    JsonBody(body): JsonBody<DecideJob>,
) -> Result<Json<WorkOrder>, ApiError> {
    let clients = &state.clients;
    let order = clients
        .workorder
        .clone()
        .decide_job(clients.request(
            &ctx,
            pb::DecideJobRequest {
                work_order_id: id,
                job_id,
                decision: body.decision.to_proto() as i32,
                channel: body.channel.to_proto() as i32,
                reason: body.reason,
                remind_after: body.remind_after,
                expected_version: body.expected_version,
            },
        ))
        .await
        .map_err(ApiError::grpc(SERVICE))?
        .into_inner();
    Ok(Json(order.into()))
}

/// Send the estimate: the PROPOSED jobs are kept as the next version, an OPEN order moves to
/// ESTIMATE, and the approval link is answered, once. With `"deliver": "EMAIL"` the link is
/// also emailed to the customer: refused (409, nothing sent, no version) when emailing is not
/// configured or the customer has no usable email address. When the mail server fails after
/// the version was saved, the answer is 502 naming the version: the same request with the
/// same `Idempotency-Key` emails that version again (or, with `LINK`, answers its link), with
/// a fresh link and no new version.
#[utoipa::path(post, path = "/api/work-orders/{id}/estimates", tag = "estimates",
    request_body = SendEstimate,
    params(("id" = String, Path, format = Uuid, description = "Work order id"),
        ("Idempotency-Key" = Option<String>, Header, min_length = 1, max_length = 200, pattern = r"^[!-~]+$", description = "Makes retries safe: a retry sends no second version, it answers the first with a fresh link (the link answered before stops working)")),
    responses((status = 201, description = "Sent", body = SentEstimate,
        headers(("Location" = String, description = "The work order's estimates"))),
        (status = 409, description = "Emailing is not configured, or the customer has no email address: nothing was sent", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 502, description = "The estimate version was saved but the mail server did not take its email: retry with the same Idempotency-Key", body = crate::problem::Problem, content_type = "application/problem+json")))]
pub async fn send_estimate(
    State(state): State<AppState>,
    Ctx(ctx): Ctx,
    Path(id): Path<String>,
    IdempotencyKey(key): IdempotencyKey,
    headers: http::HeaderMap,
    JsonBody(body): JsonBody<SendEstimate>,
) -> Result<Created<SentEstimate>, ApiError> {
    let keyed = !key.is_empty();
    let sent = send(
        &state.clients,
        state.delivery.as_ref(),
        &ctx,
        SendRequest {
            work_order_id: id.clone(),
            expected_version: body.expected_version,
            idempotency_key: key,
            deliver: body.deliver,
            origin: crate::email::origin_of(&headers),
        },
    )
    .await?;
    let (Some(order), Some(estimate)) = (sent.sent.work_order, sent.sent.estimate) else {
        return Err(ApiError::Grpc {
            service: SERVICE,
            status: tonic::Status::internal("an estimate was answered without its work order"),
        });
    };
    if let Some(EmailSent {
        to,
        delivered: false,
        error,
    }) = &sent.email
    {
        let retry = if keyed {
            "send the same request again with the same Idempotency-Key to email this version again, or with \"deliver\": \"LINK\" to get its link; neither sends a new version"
        } else {
            "sending again sends a new version (send an Idempotency-Key to retry this one)"
        };
        return Err(ApiError::Status(
            http::StatusCode::BAD_GATEWAY,
            format!(
                "estimate {} of {} was saved, but its email to {to} was not delivered: {}; {retry}",
                estimate.version,
                order.number,
                error.as_deref().unwrap_or("the mail server failed"),
            ),
        ));
    }
    Ok(created(
        format!("/api/work-orders/{id}/estimates"),
        SentEstimate {
            work_order: order.into(),
            estimate: estimate.into(),
            approval_path: approval_path(&sent.sent.approval_token),
            approval_token: sent.sent.approval_token,
            email: sent.email,
        },
    ))
}

/// How estimates are emailed: the mail server, and what the mail says of the garage.
#[derive(Clone, Debug)]
pub struct EstimateMailer {
    mailer: Mailer,
    public_url: Option<String>,
    garage: String,
    zone: jiff::tz::TimeZone,
}

impl EstimateMailer {
    pub fn new(config: &BffConfig, email: &EmailConfig) -> anyhow::Result<Self> {
        let settings = &config.service.settings;
        Ok(Self {
            mailer: Mailer::new(email)?,
            public_url: config.public_url.clone(),
            garage: settings.garage.name.clone(),
            zone: jiff::tz::TimeZone::get(&settings.timezone).unwrap_or(jiff::tz::TimeZone::UTC),
        })
    }

    /// When a link stops working, on the garage's clock: "8 May 2026, 14:30 CEST".
    fn expiry(&self, at: Option<&prost_types::Timestamp>) -> String {
        at.and_then(|t| jiff::Timestamp::new(t.seconds, t.nanos).ok())
            .map(|t| {
                t.to_zoned(self.zone.clone())
                    .strftime("%-d %B %Y, %H:%M %Z")
                    .to_string()
            })
            .unwrap_or_else(|| "7 days from now".into())
    }
}

/// What sending gave: the work order service's answer (with the token, once) and, when
/// emailed, what became of the email.
pub struct Sent {
    pub sent: pb::SendEstimateResponse,
    pub email: Option<EmailSent>,
}

fn refused(detail: String) -> ApiError {
    ApiError::Status(http::StatusCode::CONFLICT, detail)
}

/// One request to send an estimate, from the REST route or the web page.
#[derive(Debug, Clone)]
pub struct SendRequest {
    pub work_order_id: String,
    pub expected_version: i64,
    /// Empty: none. The same key again sends no new version (see [`send_estimate`]).
    pub idempotency_key: String,
    pub deliver: Delivery,
    /// The origin the request came to: where an emailed link points without
    /// `CARERP_PUBLIC_URL`.
    pub origin: Option<String>,
}

/// Sends the estimate, and with [`Delivery::Email`] emails its link: the REST route's and
/// the web page's one way of doing it.
///
/// Everything that can refuse the email is checked first (emailing configured, the
/// customer's address, where the link points), so a refusal sends nothing. Only the mail
/// server's own failure comes after the version exists: it is answered as
/// `delivered: false` for the caller to report (502 from the REST route), and the caller's
/// idempotency key lets a retry email the same version instead of sending a new one.
pub async fn send(
    clients: &Clients,
    mailer: Option<&EstimateMailer>,
    ctx: &RequestContext,
    request: SendRequest,
) -> Result<Sent, ApiError> {
    let id = request.work_order_id.as_str();
    let email = match request.deliver {
        Delivery::Link => None,
        Delivery::Email => Some(prepare_email(clients, mailer, ctx, id, request.origin).await?),
    };
    let sent = clients
        .workorder
        .clone()
        .send_estimate(clients.request(
            ctx,
            pb::SendEstimateRequest {
                work_order_id: id.to_string(),
                expected_version: request.expected_version,
                idempotency_key: request.idempotency_key,
            },
        ))
        .await
        .map_err(ApiError::grpc(SERVICE))?
        .into_inner();
    let Some((mailer, to, customer_name, base)) = email else {
        return Ok(Sent { sent, email: None });
    };
    let estimate = sent.estimate.clone().unwrap_or_default();
    let number = sent
        .work_order
        .as_ref()
        .map(|o| o.number.clone())
        .unwrap_or_default();
    let link = format!("{base}{}", approval_path(&sent.approval_token));
    let expires = mailer.expiry(estimate.link_expires_at.as_ref());
    let mail = EstimateEmail {
        garage: &mailer.garage,
        customer_name: &customer_name,
        number: &number,
        version: estimate.version,
        link: &link,
        expires: &expires,
    };
    let outcome = mailer.mailer.send_estimate(&to, &mail).await;
    let error = match outcome {
        Ok(()) => {
            tracing::info!(work_order = %id, version = estimate.version, "estimate emailed to the customer");
            None
        }
        Err(NotDelivered(reason)) => {
            tracing::warn!(work_order = %id, version = estimate.version, error = %reason,
                "the estimate was sent but its email was not delivered");
            Some(reason)
        }
    };
    Ok(Sent {
        sent,
        email: Some(EmailSent {
            to: to.to_string(),
            delivered: error.is_none(),
            error,
        }),
    })
}

/// Checks everything the email needs before anything is sent: the mailer, the customer's
/// address (through the work order), and the origin links start with.
async fn prepare_email<'m>(
    clients: &Clients,
    mailer: Option<&'m EstimateMailer>,
    ctx: &RequestContext,
    id: &str,
    origin: Option<String>,
) -> Result<(&'m EstimateMailer, lettre::Address, String, String), ApiError> {
    let Some(mailer) = mailer else {
        return Err(refused(
            "email is not configured for this garage: send the estimate and give the customer its link".into(),
        ));
    };
    let Some(base) = mailer.public_url.clone().or(origin) else {
        return Err(refused(format!(
            "the garage's public address is not known ({}), so an emailed link could not be opened",
            crate::email::PUBLIC_URL
        )));
    };
    let order = clients
        .workorder
        .clone()
        .get_work_order(clients.request(ctx, pb::GetWorkOrderRequest { id: id.to_string() }))
        .await
        .map_err(ApiError::grpc(SERVICE))?
        .into_inner();
    let customer = clients
        .customer
        .clone()
        .get_customer(clients.request(
            ctx,
            carerp_proto::customer::v1::GetCustomerRequest {
                id: order.customer_id,
            },
        ))
        .await
        .map_err(ApiError::grpc("customer"))?
        .into_inner();
    if customer.email.trim().is_empty() {
        return Err(refused(format!(
            "the customer {} has no email address: add one to their record, or send the estimate and give them its link",
            customer.name
        )));
    }
    let Some(to) = recipient(&customer.email) else {
        return Err(refused(format!(
            "the customer's email address {:?} cannot receive mail: correct it on their record",
            customer.email
        )));
    };
    Ok((mailer, to, customer.name, base))
}

/// Every estimate sent for a work order, newest first, as each was sent.
#[utoipa::path(get, path = "/api/work-orders/{id}/estimates", tag = "estimates",
    params(("id" = String, Path, format = Uuid, description = "Work order id")),
    responses((status = 200, description = "The estimates", body = EstimateList)))]
pub async fn list_estimates(
    State(state): State<AppState>,
    Ctx(ctx): Ctx,
    Path(id): Path<String>,
) -> Result<Json<EstimateList>, ApiError> {
    let clients = &state.clients;
    let list = clients
        .workorder
        .clone()
        .list_estimates(clients.request(&ctx, pb::ListEstimatesRequest { work_order_id: id }))
        .await
        .map_err(ApiError::grpc(SERVICE))?
        .into_inner();
    Ok(Json(EstimateList {
        items: list.estimates.into_iter().map(Estimate::from).collect(),
    }))
}

/// The estimate an approval link opens, with each job's decision. No sign-in: the token is
/// the authorisation. An unknown token is 404; an expired or outdated one 409.
#[utoipa::path(get, path = "/api/approvals/{token}", tag = "estimates",
    security(()),
    params(("token" = String, Path, min_length = 43, max_length = 43, pattern = r"^[A-Za-z0-9_-]{43}$", description = "The approval link's token")),
    responses((status = 200, description = "The estimate", body = Approval)))]
pub async fn get_approval(
    State(state): State<AppState>,
    Ctx(ctx): Ctx,
    Path(token): Path<String>,
) -> Result<Json<Approval>, ApiError> {
    let clients = &state.clients;
    let found = clients
        .workorder
        .clone()
        .get_estimate_by_link(clients.request(&ctx, pb::GetEstimateByLinkRequest { token }))
        .await
        .map_err(ApiError::grpc(SERVICE))?
        .into_inner();
    Ok(Json(found.into()))
}

/// The customer approves or declines a job of the estimate the link opens.
#[utoipa::path(put, path = "/api/approvals/{token}/jobs/{jobId}", tag = "estimates",
    security(()),
    request_body = CustomerDecision,
    params(("token" = String, Path, min_length = 43, max_length = 43, pattern = r"^[A-Za-z0-9_-]{43}$", description = "The approval link's token"),
        ("jobId" = String, Path, format = Uuid, description = "Job id")),
    responses((status = 200, description = "The estimate with its decisions", body = Approval)))]
pub async fn decide_by_link(
    State(state): State<AppState>,
    Ctx(ctx): Ctx,
    Path((token, job_id)): Path<(String, String)>,
    JsonBody(body): JsonBody<CustomerDecision>,
) -> Result<Json<Approval>, ApiError> {
    let clients = &state.clients;
    let found = clients
        .workorder
        .clone()
        .decide_job_by_link(clients.request(
            &ctx,
            pb::DecideJobByLinkRequest {
                token,
                job_id,
                decision: body.decision.to_proto() as i32,
                reason: body.reason,
            },
        ))
        .await
        .map_err(ApiError::grpc(SERVICE))?
        .into_inner();
    Ok(Json(found.into()))
}
