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
    /// The inspection's findings this job was made from, with their photos.
    pub findings: Vec<FindingView>,
}

/// One inspection item as the customer reads it.
pub struct FindingView {
    pub label: String,
    pub rating_label: &'static str,
    pub rating_class: &'static str,
    pub note: String,
    pub photos: Vec<String>,
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
    /// The completed inspection's findings not tied to a job (OK items, and needs not
    /// estimated), by section.
    inspection: Vec<(String, Vec<FindingView>)>,
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
        inspection: Vec::new(),
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
                findings: Vec::new(),
            }
        })
        .collect();
    view.done = view.jobs.iter().all(|job| !job.open);
    view
}

fn finding(t: &'static crate::messages::Messages, item: &pb::InspectionItem) -> FindingView {
    let (_, rating_label, rating_class) = super::inspections::rating_label(t, item.rating);
    FindingView {
        label: item.label.clone(),
        rating_label,
        rating_class,
        note: item.note.clone(),
        photos: item.photos.iter().map(|p| p.id.clone()).collect(),
    }
}

/// The inspection beside the estimate: each job shows the findings it was made from, the
/// rest is listed by section.
fn with_inspection(mut view: ApprovalPage, inspection: pb::Inspection) -> ApprovalPage {
    let t = &EN;
    for item in &inspection.items {
        if let Some(job) = view.jobs.iter_mut().find(|job| job.id == item.job_id) {
            job.findings.push(finding(t, item));
            continue;
        }
        match view.inspection.last_mut() {
            Some((section, findings)) if *section == item.section => {
                findings.push(finding(t, item));
            }
            _ => view
                .inspection
                .push((item.section.clone(), vec![finding(t, item)])),
        }
    }
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
    let (mut estimates, mut inspections) = (clients.workorder.clone(), clients.inspection.clone());
    let (answer, inspection) = tokio::join!(
        estimates.get_estimate_by_link(clients.request(
            &ctx,
            pb::GetEstimateByLinkRequest {
                token: token.clone(),
            },
        )),
        inspections.get_inspection_by_link(clients.request(
            &ctx,
            pb::GetInspectionByLinkRequest {
                token: token.clone(),
            },
        )),
    );
    let found = match answer {
        Ok(found) => found.into_inner(),
        Err(status) => return refused(&web, &token, &status),
    };
    let mut view = with_estimate(page(&web, &token), found);
    match inspection {
        Ok(inspection) => view = with_inspection(view, inspection.into_inner()),
        // No completed inspection: the estimate alone.
        Err(status) if status.code() == tonic::Code::NotFound => {}
        Err(status) => return PageError::from_status(SERVICE, &status).into_response(),
    }
    render(StatusCode::OK, &view)
}

/// A photo of the estimate's inspection, through the link.
pub async fn photo(
    State(web): State<Web>,
    Extension(ctx): Extension<RequestContext>,
    Path((token, photo_id)): Path<(String, String)>,
) -> Response {
    let clients = &web.clients;
    let answer = clients
        .inspection
        .clone()
        .get_photo_by_link(clients.request(&ctx, pb::GetPhotoByLinkRequest { token, photo_id }))
        .await;
    match answer {
        Ok(photo) => carerp_bff::api::inspections::photo_response(photo.into_inner()),
        Err(status) => PageError::from_status(SERVICE, &status).into_response(),
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
