//! The customer's approval page, `/approve/{token}`: no sign-in, the link's token is the
//! authorisation (checked by the work order service). It shows the garage's name, the order's
//! number and the estimate as sent with each job's decision, and lets the customer approve or
//! decline each job still open; nothing else of the garage.

use askama::Template;
use axum::Form;
use axum::extract::{Extension, Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use carerp_kit::RequestContext;
use carerp_proto::workorder::v1 as pb;
use http::StatusCode;
use serde::Deserialize;

use crate::Web;
use crate::format;
use crate::messages::EN;
use crate::page::{PageError, Shell, render};

const SERVICE: &str = "workorder";

pub struct JobView {
    pub id: String,
    pub title: String,
    pub lines: Vec<(String, String)>,
    pub total: String,
    pub state: &'static str,
    pub state_class: &'static str,
    pub open: bool,
}

#[derive(Template)]
#[template(path = "approval.html")]
struct ApprovalPage {
    shell: Shell,
    garage: String,
    token: String,
    number: String,
    version: i32,
    jobs: Vec<JobView>,
    total: String,
    /// Why the link does not work (expired, changed, unknown), in the service's words.
    refused: Option<String>,
    done: bool,
}

fn page(web: &Web, token: &str) -> ApprovalPage {
    ApprovalPage {
        shell: Shell::new(None, EN.approval_title, ""),
        garage: web.settings.garage.name.clone(),
        token: token.to_string(),
        number: String::new(),
        version: 0,
        jobs: Vec::new(),
        total: String::new(),
        refused: None,
        done: false,
    }
}

fn with_estimate(mut view: ApprovalPage, found: pb::EstimateForCustomer) -> ApprovalPage {
    let t = &EN;
    let estimate = found.estimate.unwrap_or_default();
    view.number = found.work_order_number;
    view.version = estimate.version;
    view.total = format::money_of(t, estimate.total.as_ref());
    view.jobs = estimate
        .jobs
        .into_iter()
        .map(|job| {
            let state = found
                .decisions
                .iter()
                .find(|d| d.job_id == job.job_id)
                .map_or(pb::JobState::Proposed as i32, |d| d.state);
            let (label, class) = super::workorders::job_state_label(t, state);
            JobView {
                id: job.job_id,
                title: job.title,
                lines: job
                    .lines
                    .into_iter()
                    .map(|line| (line.description, format::money_of(t, line.total.as_ref())))
                    .collect(),
                total: format::money_of(t, job.total.as_ref()),
                state: label,
                state_class: class,
                open: state == pb::JobState::Proposed as i32,
            }
        })
        .collect();
    view.done = view.jobs.iter().all(|job| !job.open);
    view
}

/// A refusal of the link as the customer reads it; anything else is the error page.
fn refused(web: &Web, token: &str, status: &tonic::Status) -> Response {
    use tonic::Code;
    match status.code() {
        Code::NotFound | Code::FailedPrecondition | Code::InvalidArgument => {
            let code = if status.code() == Code::NotFound {
                StatusCode::NOT_FOUND
            } else {
                StatusCode::CONFLICT
            };
            let mut view = page(web, token);
            view.refused = Some(status.message().to_string());
            render(code, &view)
        }
        _ => PageError::from_status(SERVICE, status).into_response(),
    }
}

pub async fn show(
    State(web): State<Web>,
    Extension(ctx): Extension<RequestContext>,
    Path(token): Path<String>,
) -> Response {
    let clients = &web.clients;
    let answer = clients
        .workorder
        .clone()
        .get_estimate_by_link(clients.request(
            &ctx,
            pb::GetEstimateByLinkRequest {
                token: token.clone(),
            },
        ))
        .await;
    match answer {
        Ok(found) => render(
            StatusCode::OK,
            &with_estimate(page(&web, &token), found.into_inner()),
        ),
        Err(status) => refused(&web, &token, &status),
    }
}

#[derive(Deserialize)]
pub struct Decide {
    #[serde(default)]
    decision: String,
}

pub async fn decide(
    State(web): State<Web>,
    Extension(ctx): Extension<RequestContext>,
    Path((token, job_id)): Path<(String, String)>,
    Form(form): Form<Decide>,
) -> Response {
    let decision = match form.decision.as_str() {
        "APPROVED" => pb::JobState::Approved,
        "DECLINED" => pb::JobState::Declined,
        _ => pb::JobState::Unspecified,
    };
    let clients = &web.clients;
    let answer = clients
        .workorder
        .clone()
        .decide_job_by_link(clients.request(
            &ctx,
            pb::DecideJobByLinkRequest {
                token: token.clone(),
                job_id,
                decision: decision as i32,
                reason: String::new(),
            },
        ))
        .await;
    match answer {
        Ok(_) => Redirect::to(&format!("/approve/{token}")).into_response(),
        Err(status) => refused(&web, &token, &status),
    }
}
