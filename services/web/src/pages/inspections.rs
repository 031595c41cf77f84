//! The vehicle inspection of a work order, `/work-orders/{id}/inspection`, laid out for a
//! technician's phone at the car: one item per card, the three findings as large buttons, the
//! camera behind the photo button; and the owners' template manager, `/inspection-templates`.
//! Every form works without script: a write answers with a redirect back to its item.

use askama::Template;
use axum::Form;
use axum::extract::{Multipart, Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use carerp_proto::workorder::v1 as pb;
use http::StatusCode;
use serde::Deserialize;

use crate::Web;
use crate::messages::{EN, Messages};
use crate::page::{FieldErrors, PageError, Shell, is_refusal, method, render};
use crate::session::Caller;

const SERVICE: &str = "workorder";
/// The multipart field of the photo form.
const PHOTO_FIELD: &str = "photo";

pub struct ItemView {
    pub id: String,
    pub label: String,
    /// `OK`, `ADVISE`, `URGENT`, or empty when not rated.
    pub rating: &'static str,
    pub rating_label: &'static str,
    pub rating_class: &'static str,
    pub note: String,
    pub photos: Vec<String>,
    pub has_job: bool,
    /// A refusal of this item's last write, in the service's words.
    pub error: Option<String>,
}

pub struct SectionView {
    pub name: String,
    pub items: Vec<ItemView>,
}

pub struct InspectionView {
    pub template_name: String,
    pub completed: bool,
    pub rated: usize,
    pub total: usize,
    pub needing_work: usize,
    pub without_job: usize,
    pub sections: Vec<SectionView>,
}

#[derive(Template)]
#[template(path = "inspection.html")]
struct InspectionPage {
    shell: Shell,
    id: String,
    number: String,
    complaint: String,
    inspection: Option<InspectionView>,
    templates: Vec<(String, String)>,
    can_start: bool,
    can_write: bool,
    can_propose: bool,
    can_manage_templates: bool,
    /// A refusal not tied to one item (start, complete, propose).
    error: Option<String>,
    ratings: [(&'static str, &'static str, &'static str); 3],
}

/// The finding's name, its words and its badge class.
pub fn rating_label(
    t: &'static Messages,
    rating: i32,
) -> (&'static str, &'static str, &'static str) {
    match pb::Rating::try_from(rating) {
        Ok(pb::Rating::Ok) => ("OK", t.rating_ok, "ok"),
        Ok(pb::Rating::Advise) => ("ADVISE", t.rating_advise, "wait"),
        Ok(pb::Rating::Urgent) => ("URGENT", t.rating_urgent, "bad"),
        _ => ("", t.rating_none, ""),
    }
}

/// The items of an inspection by section, in the template's order.
pub fn sections(t: &'static Messages, inspection: &pb::Inspection) -> Vec<SectionView> {
    let mut sections: Vec<SectionView> = Vec::new();
    for item in &inspection.items {
        let (rating, rating_label, rating_class) = rating_label(t, item.rating);
        let view = ItemView {
            id: item.id.clone(),
            label: item.label.clone(),
            rating,
            rating_label,
            rating_class,
            note: item.note.clone(),
            photos: item.photos.iter().map(|p| p.id.clone()).collect(),
            has_job: !item.job_id.is_empty(),
            error: None,
        };
        match sections.last_mut() {
            Some(section) if section.name == item.section => section.items.push(view),
            _ => sections.push(SectionView {
                name: item.section.clone(),
                items: vec![view],
            }),
        }
    }
    sections
}

fn inspection_view(inspection: &pb::Inspection) -> InspectionView {
    let t = &EN;
    let needs_work = |item: &&pb::InspectionItem| {
        matches!(
            pb::Rating::try_from(item.rating),
            Ok(pb::Rating::Advise | pb::Rating::Urgent)
        )
    };
    InspectionView {
        template_name: inspection.template_name.clone(),
        completed: inspection.state == pb::InspectionState::Completed as i32,
        rated: inspection
            .items
            .iter()
            .filter(|item| item.rating != pb::Rating::Unspecified as i32)
            .count(),
        total: inspection.items.len(),
        needing_work: inspection.items.iter().filter(needs_work).count(),
        without_job: inspection
            .items
            .iter()
            .filter(needs_work)
            .filter(|item| item.job_id.is_empty())
            .count(),
        sections: sections(t, inspection),
    }
}

/// Where an item's refusal is shown: on its card, else at the top.
enum Refusal {
    None,
    Page(String),
    Item { item_id: String, message: String },
}

async fn inspection_page(web: &Web, caller: &Caller, id: &str, refusal: Refusal) -> Response {
    let t = &EN;
    let clients = &web.clients;
    let (mut orders, mut inspections, mut templates) = (
        clients.workorder.clone(),
        clients.inspection.clone(),
        clients.inspection.clone(),
    );
    let (order, inspection, listed) = tokio::join!(
        orders.get_work_order(
            clients.request(&caller.ctx, pb::GetWorkOrderRequest { id: id.to_string() })
        ),
        inspections.get_inspection(clients.request(
            &caller.ctx,
            pb::GetInspectionRequest {
                work_order_id: id.to_string()
            }
        )),
        templates.list_templates(clients.request(&caller.ctx, pb::ListTemplatesRequest {})),
    );
    let order = match order {
        Ok(order) => order.into_inner(),
        Err(status) => return PageError::from_status(SERVICE, &status).into_response(),
    };
    let inspection = match inspection {
        Ok(found) => Some(found.into_inner()),
        Err(status) if status.code() == tonic::Code::NotFound => None,
        Err(status) => return PageError::from_status(SERVICE, &status).into_response(),
    };
    let templates = listed
        .map(|list| {
            list.into_inner()
                .templates
                .into_iter()
                .map(|template| (template.id, template.name))
                .collect()
        })
        .unwrap_or_default();
    let mut view = inspection.as_ref().map(inspection_view);
    let mut error = None;
    match refusal {
        Refusal::None => {}
        Refusal::Page(message) => error = Some(message),
        Refusal::Item { item_id, message } => {
            let item = view.as_mut().and_then(|view| {
                view.sections
                    .iter_mut()
                    .flat_map(|section| section.items.iter_mut())
                    .find(|item| item.id == item_id)
            });
            match item {
                Some(item) => item.error = Some(message),
                None => error = Some(message),
            }
        }
    }
    let code = if error.is_some()
        || view.as_ref().is_some_and(|v| {
            v.sections
                .iter()
                .any(|s| s.items.iter().any(|i| i.error.is_some()))
        }) {
        StatusCode::UNPROCESSABLE_ENTITY
    } else {
        StatusCode::OK
    };
    let in_progress = view.as_ref().is_some_and(|v| !v.completed);
    render(
        code,
        &InspectionPage {
            shell: Shell::new(
                Some(caller),
                format!("{} · {}", t.inspection_title, order.number),
                "work-orders",
            ),
            id: id.to_string(),
            number: order.number,
            complaint: order.complaint,
            can_start: view.is_none() && caller.can(method::START_INSPECTION),
            can_write: in_progress && caller.can(method::RATE_ITEM),
            can_propose: view.as_ref().is_some_and(|v| v.without_job > 0)
                && caller.can(method::PROPOSE_JOBS),
            can_manage_templates: caller.can(method::SAVE_TEMPLATE),
            inspection: view,
            templates,
            error,
            ratings: [
                ("OK", t.rating_ok, "ok"),
                ("ADVISE", t.rating_advise, "wait"),
                ("URGENT", t.rating_urgent, "bad"),
            ],
        },
    )
}

/// What a refused write shows: the field's words when the service named fields.
fn refusal_message(status: &tonic::Status) -> String {
    let errors = FieldErrors::from_status(status);
    if errors.is_empty() {
        status.message().to_string()
    } else {
        errors.others(&[]).join("; ")
    }
}

/// A write's answer: back to the item (or the page) it changed, or the page with the refusal.
async fn after_write<T>(
    web: &Web,
    caller: &Caller,
    id: &str,
    item_id: Option<&str>,
    answer: Result<tonic::Response<T>, tonic::Status>,
) -> Response {
    match answer {
        Ok(_) => {
            let anchor = item_id
                .map(|item| format!("#item-{item}"))
                .unwrap_or_default();
            Redirect::to(&format!("/work-orders/{id}/inspection{anchor}")).into_response()
        }
        Err(status) if is_refusal(&status) || status.code() == tonic::Code::NotFound => {
            let message = refusal_message(&status);
            let refusal = match item_id {
                Some(item_id) => Refusal::Item {
                    item_id: item_id.to_string(),
                    message,
                },
                None => Refusal::Page(message),
            };
            inspection_page(web, caller, id, refusal).await
        }
        Err(status) => PageError::from_status(SERVICE, &status).into_response(),
    }
}

pub async fn show(State(web): State<Web>, caller: Caller, Path(id): Path<String>) -> Response {
    inspection_page(&web, &caller, &id, Refusal::None).await
}

#[derive(Deserialize)]
pub struct Start {
    #[serde(default)]
    template_id: String,
}

pub async fn start(
    State(web): State<Web>,
    caller: Caller,
    Path(id): Path<String>,
    Form(form): Form<Start>,
) -> Response {
    if let Err(refused) = caller.require(method::START_INSPECTION) {
        return refused.into_response();
    }
    let clients = &web.clients;
    let answer = clients
        .inspection
        .clone()
        .start_inspection(clients.request(
            &caller.ctx,
            pb::StartInspectionRequest {
                work_order_id: id.clone(),
                template_id: form.template_id,
            },
        ))
        .await;
    after_write(&web, &caller, &id, None, answer).await
}

#[derive(Deserialize)]
pub struct Rate {
    #[serde(default)]
    rating: String,
    #[serde(default)]
    note: String,
}

pub async fn rate(
    State(web): State<Web>,
    caller: Caller,
    Path((id, item_id)): Path<(String, String)>,
    Form(form): Form<Rate>,
) -> Response {
    if let Err(refused) = caller.require(method::RATE_ITEM) {
        return refused.into_response();
    }
    let rating = match form.rating.as_str() {
        "OK" => pb::Rating::Ok,
        "ADVISE" => pb::Rating::Advise,
        "URGENT" => pb::Rating::Urgent,
        _ => pb::Rating::Unspecified,
    };
    let clients = &web.clients;
    let answer = clients
        .inspection
        .clone()
        .rate_item(clients.request(
            &caller.ctx,
            pb::RateItemRequest {
                work_order_id: id.clone(),
                item_id: item_id.clone(),
                rating: rating as i32,
                note: form.note,
            },
        ))
        .await;
    after_write(&web, &caller, &id, Some(&item_id), answer).await
}

pub async fn add_photo(
    State(web): State<Web>,
    caller: Caller,
    Path((id, item_id)): Path<(String, String)>,
    mut multipart: Multipart,
) -> Response {
    if let Err(refused) = caller.require(method::ADD_PHOTO) {
        return refused.into_response();
    }
    let mut content = None;
    loop {
        match multipart.next_field().await {
            Ok(Some(field)) if field.name() == Some(PHOTO_FIELD) => match field.bytes().await {
                Ok(bytes) => {
                    content = Some(bytes.to_vec());
                    break;
                }
                Err(err) => return multipart_refused(&web, &caller, &id, &item_id, &err).await,
            },
            Ok(Some(_)) => {}
            Ok(None) => break,
            Err(err) => return multipart_refused(&web, &caller, &id, &item_id, &err).await,
        }
    }
    let Some(content) = content.filter(|bytes| !bytes.is_empty()) else {
        let refusal = Refusal::Item {
            item_id,
            message: EN.photo_missing.to_string(),
        };
        return inspection_page(&web, &caller, &id, refusal).await;
    };
    let clients = &web.clients;
    let answer = clients
        .inspection
        .clone()
        .add_photo(clients.request(
            &caller.ctx,
            pb::AddPhotoRequest {
                work_order_id: id.clone(),
                item_id: item_id.clone(),
                content,
            },
        ))
        .await;
    after_write(&web, &caller, &id, Some(&item_id), answer).await
}

async fn multipart_refused(
    web: &Web,
    caller: &Caller,
    id: &str,
    item_id: &str,
    err: &axum::extract::multipart::MultipartError,
) -> Response {
    let refusal = Refusal::Item {
        item_id: item_id.to_string(),
        message: format!("{}: {}", EN.photo_unreadable, err.body_text()),
    };
    inspection_page(web, caller, id, refusal).await
}

pub async fn remove_photo(
    State(web): State<Web>,
    caller: Caller,
    Path((id, photo_id)): Path<(String, String)>,
) -> Response {
    if let Err(refused) = caller.require(method::REMOVE_PHOTO) {
        return refused.into_response();
    }
    let clients = &web.clients;
    let answer = clients
        .inspection
        .clone()
        .remove_photo(clients.request(
            &caller.ctx,
            pb::RemovePhotoRequest {
                work_order_id: id.clone(),
                photo_id,
            },
        ))
        .await;
    after_write(&web, &caller, &id, None, answer).await
}

pub async fn photo(
    State(web): State<Web>,
    caller: Caller,
    Path((id, photo_id)): Path<(String, String)>,
) -> Response {
    let clients = &web.clients;
    let answer = clients
        .inspection
        .clone()
        .get_photo(clients.request(
            &caller.ctx,
            pb::GetPhotoRequest {
                work_order_id: id,
                photo_id,
            },
        ))
        .await;
    match answer {
        Ok(photo) => carerp_bff::api::inspections::photo_response(photo.into_inner()),
        Err(status) => PageError::from_status(SERVICE, &status).into_response(),
    }
}

pub async fn complete(State(web): State<Web>, caller: Caller, Path(id): Path<String>) -> Response {
    if let Err(refused) = caller.require(method::COMPLETE_INSPECTION) {
        return refused.into_response();
    }
    let clients = &web.clients;
    let answer = clients
        .inspection
        .clone()
        .complete_inspection(clients.request(
            &caller.ctx,
            pb::CompleteInspectionRequest {
                work_order_id: id.clone(),
            },
        ))
        .await;
    after_write(&web, &caller, &id, None, answer).await
}

/// Findings to PROPOSED jobs, then the work order, where the jobs take their lines.
pub async fn propose_jobs(
    State(web): State<Web>,
    caller: Caller,
    Path(id): Path<String>,
) -> Response {
    if let Err(refused) = caller.require(method::PROPOSE_JOBS) {
        return refused.into_response();
    }
    let clients = &web.clients;
    let answer = clients
        .inspection
        .clone()
        .propose_jobs(clients.request(
            &caller.ctx,
            pb::ProposeJobsRequest {
                work_order_id: id.clone(),
                expected_version: 0,
            },
        ))
        .await;
    match answer {
        Ok(_) => Redirect::to(&format!("/work-orders/{id}#jobs")).into_response(),
        Err(status) => after_write::<()>(&web, &caller, &id, None, Err(status)).await,
    }
}

// ---------------------------------------------------------------------------------------
// templates (owners)

/// A template form the service refused, as it was typed, and why.
#[derive(Clone)]
pub struct Refused {
    /// The template's id; empty for a new one.
    pub id: String,
    pub name: String,
    pub lines: String,
    pub why: String,
}

pub struct TemplateView {
    pub id: String,
    pub name: String,
    pub is_default: bool,
    /// One item per line, `Section: Label`.
    pub lines: String,
    pub count: usize,
    pub refused: Option<Refused>,
}

#[derive(Template)]
#[template(path = "inspection_templates.html")]
struct TemplatesPage {
    shell: Shell,
    templates: Vec<TemplateView>,
    can_edit: bool,
    /// The new-template form, refused.
    refused_new: Option<Refused>,
}

fn template_lines(items: &[pb::TemplateItem]) -> String {
    items
        .iter()
        .map(|item| format!("{}: {}", item.section, item.label))
        .collect::<Vec<_>>()
        .join("\n")
}

/// `Section: Label` per line; a line without a section takes the one above it.
fn parse_lines(lines: &str) -> Vec<pb::TemplateItem> {
    let mut section = String::new();
    let mut items = Vec::new();
    for line in lines.lines().map(str::trim).filter(|line| !line.is_empty()) {
        let label = match line.split_once(':') {
            Some((named, label)) => {
                section = named.trim().to_string();
                label.trim()
            }
            None => line,
        };
        items.push(pb::TemplateItem {
            section: section.clone(),
            label: label.to_string(),
        });
    }
    items
}

async fn templates_page(web: &Web, caller: &Caller, refused: Option<Refused>) -> Response {
    let clients = &web.clients;
    let listed = clients
        .inspection
        .clone()
        .list_templates(clients.request(&caller.ctx, pb::ListTemplatesRequest {}))
        .await;
    let templates = match listed {
        Ok(list) => list.into_inner().templates,
        Err(status) => return PageError::from_status(SERVICE, &status).into_response(),
    };
    let code = if refused.is_some() {
        StatusCode::UNPROCESSABLE_ENTITY
    } else {
        StatusCode::OK
    };
    render(
        code,
        &TemplatesPage {
            shell: Shell::new(Some(caller), EN.inspection_templates_title, "work-orders"),
            templates: templates
                .into_iter()
                .map(|template| TemplateView {
                    lines: template_lines(&template.items),
                    count: template.items.len(),
                    refused: refused.clone().filter(|r| r.id == template.id),
                    id: template.id,
                    name: template.name,
                    is_default: template.is_default,
                })
                .collect(),
            can_edit: caller.can(method::SAVE_TEMPLATE),
            refused_new: refused.filter(|r| r.id.is_empty()),
        },
    )
}

pub async fn templates(State(web): State<Web>, caller: Caller) -> Response {
    templates_page(&web, &caller, None).await
}

#[derive(Deserialize)]
pub struct SaveTemplate {
    #[serde(default)]
    name: String,
    #[serde(default)]
    is_default: Option<String>,
    #[serde(default)]
    lines: String,
}

pub async fn create_template(
    State(web): State<Web>,
    caller: Caller,
    Form(form): Form<SaveTemplate>,
) -> Response {
    save_template(&web, &caller, String::new(), form).await
}

pub async fn update_template(
    State(web): State<Web>,
    caller: Caller,
    Path(id): Path<String>,
    Form(form): Form<SaveTemplate>,
) -> Response {
    save_template(&web, &caller, id, form).await
}

async fn save_template(web: &Web, caller: &Caller, id: String, form: SaveTemplate) -> Response {
    if let Err(refused) = caller.require(method::SAVE_TEMPLATE) {
        return refused.into_response();
    }
    let is_default = form.is_default.is_some();
    let clients = &web.clients;
    let answer = clients
        .inspection
        .clone()
        .save_template(clients.request(
            &caller.ctx,
            pb::SaveTemplateRequest {
                id: id.clone(),
                name: form.name.clone(),
                is_default,
                items: parse_lines(&form.lines),
            },
        ))
        .await;
    match answer {
        Ok(_) => Redirect::to("/inspection-templates").into_response(),
        Err(status) if is_refusal(&status) || status.code() == tonic::Code::NotFound => {
            let why = refusal_message(&status);
            let refused = Refused {
                id,
                name: form.name,
                lines: form.lines,
                why,
            };
            templates_page(web, caller, Some(refused)).await
        }
        Err(status) => PageError::from_status(SERVICE, &status).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_lines_name_their_section_once_and_round_trip() {
        let items = parse_lines("Brakes: Front pads\n  Rear pads \n\nTyres: Front left\n");
        let pairs: Vec<_> = items
            .iter()
            .map(|i| (i.section.as_str(), i.label.as_str()))
            .collect();
        assert_eq!(
            pairs,
            [
                ("Brakes", "Front pads"),
                ("Brakes", "Rear pads"),
                ("Tyres", "Front left")
            ]
        );
        assert_eq!(parse_lines(&template_lines(&items)), items);
        // A line before any section has none: the service refuses it, naming the item.
        assert_eq!(parse_lines("Wipers")[0].section, "");
    }
}
