//! The garage's canned jobs, `/canned-jobs`: each a name with part and labour lines, kept by
//! the front desk and added to work orders from their page. A form has a row per line; a
//! refused form comes back as it was typed, with the service's words.

use askama::Template;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use carerp_proto::common::v1::PageRequest;
use carerp_proto::inventory::v1 as inventory;
use carerp_proto::workorder::v1 as pb;
use http::StatusCode;

use super::workorders::PartChoice;
use crate::Web;
use crate::messages::EN;
use crate::page::{FieldErrors, PageError, Shell, is_refusal, method, render};
use crate::session::Caller;

const SERVICE: &str = "workorder";
/// Blank rows a form offers beyond the lines it has.
const SPARE_PART_ROWS: usize = 2;
const SPARE_LABOR_ROWS: usize = 1;

/// A canned job as its form shows it: typed or saved.
#[derive(Clone, Default)]
pub struct Form {
    pub id: String,
    pub name: String,
    /// (part id, quantity) per row.
    pub parts: Vec<(String, String)>,
    /// (description, minutes) per row.
    pub labor: Vec<(String, String)>,
    /// Why the service refused it.
    pub refused: Option<String>,
}

impl Form {
    fn with_spare_rows(mut self) -> Self {
        self.parts.extend(std::iter::repeat_n(
            (String::new(), String::new()),
            SPARE_PART_ROWS,
        ));
        self.labor.extend(std::iter::repeat_n(
            (String::new(), String::new()),
            SPARE_LABOR_ROWS,
        ));
        self
    }

    fn from_saved(canned: pb::CannedJob) -> Self {
        Self {
            id: canned.id,
            name: canned.name,
            parts: canned
                .parts
                .into_iter()
                .map(|p| (p.part_id, p.quantity.to_string()))
                .collect(),
            labor: canned
                .labor
                .into_iter()
                .map(|l| (l.description, l.minutes.to_string()))
                .collect(),
            refused: None,
        }
        .with_spare_rows()
    }

    /// The form's fields: `name`, then `part_id`/`quantity` and `labor_description`/
    /// `labor_minutes` once per row, in order.
    fn parse(id: String, body: &[u8]) -> Self {
        let mut form = Form {
            id,
            ..Form::default()
        };
        let (mut part_ids, mut quantities, mut descriptions, mut minutes) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for (key, value) in form_urlencoded::parse(body) {
            let value = value.into_owned();
            match key.as_ref() {
                "name" => form.name = value,
                "part_id" => part_ids.push(value),
                "quantity" => quantities.push(value),
                "labor_description" => descriptions.push(value),
                "labor_minutes" => minutes.push(value),
                _ => {}
            }
        }
        form.parts = part_ids.into_iter().zip(quantities).collect();
        form.labor = descriptions.into_iter().zip(minutes).collect();
        form
    }

    /// The request; blank rows are left out, a number that is not one is sent as 0 so the
    /// service names the row.
    fn request(&self) -> pb::SaveCannedJobRequest {
        let number = |text: &str| text.trim().parse::<i32>().unwrap_or(0);
        pb::SaveCannedJobRequest {
            id: self.id.clone(),
            name: self.name.clone(),
            parts: self
                .parts
                .iter()
                .filter(|(part_id, _)| !part_id.is_empty())
                .map(|(part_id, quantity)| pb::CannedPart {
                    part_id: part_id.clone(),
                    quantity: number(quantity),
                })
                .collect(),
            labor: self
                .labor
                .iter()
                .filter(|(description, _)| !description.trim().is_empty())
                .map(|(description, minutes)| pb::CannedLabor {
                    description: description.clone(),
                    minutes: number(minutes),
                })
                .collect(),
        }
    }
}

#[derive(Template)]
#[template(path = "canned_jobs.html")]
struct CannedJobsPage {
    shell: Shell,
    forms: Vec<Form>,
    new_form: Form,
    parts: Vec<PartChoice>,
    can_edit: bool,
}

async fn page(web: &Web, caller: &Caller, refused: Option<Form>) -> Response {
    let clients = &web.clients;
    let (mut canned, mut catalogue) = (clients.canned.clone(), clients.inventory.clone());
    let (listed, parts) = tokio::join!(
        canned.list_canned_jobs(clients.request(&caller.ctx, pb::ListCannedJobsRequest {})),
        catalogue.list_parts(clients.request(
            &caller.ctx,
            inventory::ListPartsRequest {
                page: Some(PageRequest {
                    page_size: 500,
                    page_token: String::new(),
                }),
                active: inventory::ActiveFilter::Active as i32,
                ..Default::default()
            },
        )),
    );
    let listed = match listed {
        Ok(listed) => listed.into_inner().canned_jobs,
        Err(status) => return PageError::from_status(SERVICE, &status).into_response(),
    };
    let parts = match parts {
        Ok(parts) => parts.into_inner().parts,
        Err(status) => return PageError::from_status("inventory", &status).into_response(),
    };
    let refused_id = refused.as_ref().map(|form| form.id.clone());
    let mut forms: Vec<Form> = listed.into_iter().map(Form::from_saved).collect();
    let mut new_form = Form::default().with_spare_rows();
    if let Some(typed) = refused {
        match forms
            .iter_mut()
            .find(|form| Some(&form.id) == refused_id.as_ref())
        {
            Some(form) => *form = typed.with_spare_rows(),
            None => new_form = typed.with_spare_rows(),
        }
    }
    let code = if forms.iter().chain([&new_form]).any(|f| f.refused.is_some()) {
        StatusCode::UNPROCESSABLE_ENTITY
    } else {
        StatusCode::OK
    };
    render(
        code,
        &CannedJobsPage {
            shell: Shell::new(Some(caller), EN.canned_jobs_title, "work-orders"),
            forms,
            new_form,
            parts: parts
                .into_iter()
                .map(|p| PartChoice {
                    label: format!("{} · {}", p.sku, p.name),
                    id: p.id,
                })
                .collect(),
            can_edit: caller.can(method::SAVE_CANNED_JOB),
        },
    )
}

pub async fn list(State(web): State<Web>, caller: Caller) -> Response {
    page(&web, &caller, None).await
}

pub async fn create(State(web): State<Web>, caller: Caller, body: Bytes) -> Response {
    save(&web, &caller, Form::parse(String::new(), &body)).await
}

pub async fn update(
    State(web): State<Web>,
    caller: Caller,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    save(&web, &caller, Form::parse(id, &body)).await
}

async fn save(web: &Web, caller: &Caller, mut form: Form) -> Response {
    if let Err(refused) = caller.require(method::SAVE_CANNED_JOB) {
        return refused.into_response();
    }
    let clients = &web.clients;
    let answer = clients
        .canned
        .clone()
        .save_canned_job(clients.request(&caller.ctx, form.request()))
        .await;
    match answer {
        Ok(_) => Redirect::to("/canned-jobs").into_response(),
        Err(status) if is_refusal(&status) || status.code() == tonic::Code::NotFound => {
            let errors = FieldErrors::from_status(&status);
            form.refused = Some(if errors.is_empty() {
                status.message().to_string()
            } else {
                errors.others(&[]).join("; ")
            });
            page(web, caller, Some(form)).await
        }
        Err(status) => PageError::from_status(SERVICE, &status).into_response(),
    }
}

pub async fn remove(State(web): State<Web>, caller: Caller, Path(id): Path<String>) -> Response {
    if let Err(refused) = caller.require(method::SAVE_CANNED_JOB) {
        return refused.into_response();
    }
    let clients = &web.clients;
    let answer = clients
        .canned
        .clone()
        .remove_canned_job(clients.request(&caller.ctx, pb::RemoveCannedJobRequest { id }))
        .await;
    match answer {
        Ok(_) => Redirect::to("/canned-jobs").into_response(),
        Err(status) => PageError::from_status(SERVICE, &status).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_pair_up_in_order_and_blank_rows_are_left_out() {
        let form = Form::parse(
            String::new(),
            b"name=Oil+service&part_id=a&quantity=1&part_id=&quantity=&part_id=b&quantity=x\
              &labor_description=Oil+change&labor_minutes=30&labor_description=+&labor_minutes=",
        );
        assert_eq!(form.name, "Oil service");
        let request = form.request();
        let parts: Vec<_> = request
            .parts
            .iter()
            .map(|p| (p.part_id.as_str(), p.quantity))
            .collect();
        assert_eq!(parts, [("a", 1), ("b", 0)]);
        assert_eq!(request.labor.len(), 1);
        assert_eq!(request.labor[0].minutes, 30);
    }
}
