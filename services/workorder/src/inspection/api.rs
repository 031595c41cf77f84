//! The inspection service's gRPC handlers: decode and validate, call [`super::store`], encode.

use carerp_kit::Violations;
use carerp_kit::grpc::request_context;
use carerp_proto::workorder::v1 as pb;
use carerp_proto::workorder::v1::inspection_service_server::InspectionService;
use sqlx::PgPool;
use tonic::{Request, Response, Status};
use uuid::Uuid;

use super::photo::{self, CONTENT_TYPE};
use super::store::{self, Inspection, Template};
use super::{InspectionState, Rating, TemplateItem, check_note, check_template};
use crate::api::{check_expected_version, link_token, optional_id, required_id, timestamp};
use crate::error::Error;

/// The largest request the service decodes: a photo at its limit and the request around it.
pub const MAX_REQUEST_BYTES: usize = photo::MAX_UPLOAD_BYTES + 64 * 1024;

pub struct InspectionApi {
    pool: PgPool,
}

impl InspectionApi {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }
}

type Reply<T> = Result<Response<T>, Status>;

fn reply(inspection: Inspection) -> Reply<pb::Inspection> {
    Ok(Response::new(to_pb(inspection)))
}

/// The work order id every inspection request names, and what else is wrong with it.
fn work_order(v: &mut Violations, value: &str) -> Result<Uuid, Status> {
    required_id(v, "work_order_id", value).ok_or_else(|| Error::Invalid(v.clone()).into())
}

#[tonic::async_trait]
impl InspectionService for InspectionApi {
    async fn list_templates(
        &self,
        _request: Request<pb::ListTemplatesRequest>,
    ) -> Reply<pb::ListTemplatesResponse> {
        let templates = store::list_templates(&self.pool).await?;
        Ok(Response::new(pb::ListTemplatesResponse {
            templates: templates.into_iter().map(template_to_pb).collect(),
        }))
    }

    async fn save_template(
        &self,
        request: Request<pb::SaveTemplateRequest>,
    ) -> Reply<pb::InspectionTemplate> {
        let context = request_context(&request);
        let req = request.into_inner();
        let mut v = Violations::new();
        let id = optional_id(&mut v, "id", &req.id);
        let items: Vec<TemplateItem> = req
            .items
            .into_iter()
            .map(|item| TemplateItem {
                section: item.section,
                label: item.label,
            })
            .collect();
        let (name, items) = check_template(&mut v, &req.name, &items);
        v.into_result(()).map_err(Error::from)?;
        let saved =
            store::save_template(&self.pool, &context, id, &name, req.is_default, &items).await?;
        Ok(Response::new(template_to_pb(saved)))
    }

    async fn start_inspection(
        &self,
        request: Request<pb::StartInspectionRequest>,
    ) -> Reply<pb::Inspection> {
        let context = request_context(&request);
        let req = request.into_inner();
        let mut v = Violations::new();
        let template_id = optional_id(&mut v, "template_id", &req.template_id);
        let id = work_order(&mut v, &req.work_order_id)?;
        v.into_result(()).map_err(Error::from)?;
        reply(store::start(&self.pool, &context, id, template_id).await?)
    }

    async fn get_inspection(
        &self,
        request: Request<pb::GetInspectionRequest>,
    ) -> Reply<pb::Inspection> {
        let mut v = Violations::new();
        let id = work_order(&mut v, &request.get_ref().work_order_id)?;
        reply(store::get(&self.pool, id).await?)
    }

    async fn rate_item(&self, request: Request<pb::RateItemRequest>) -> Reply<pb::Inspection> {
        let context = request_context(&request);
        let req = request.into_inner();
        let mut v = Violations::new();
        let item_id = required_id(&mut v, "item_id", &req.item_id);
        let rating = rating_from_pb(req.rating);
        let note = match rating {
            Some(rating) => check_note(rating, &req.note)
                .map_err(|violation| v.check(Err(violation)))
                .ok(),
            None => {
                v.add("rating", "must be OK, ADVISE or URGENT");
                None
            }
        };
        let id = work_order(&mut v, &req.work_order_id)?;
        let (Some(item_id), Some(rating), Some(note)) = (item_id, rating, note) else {
            return Err(Error::Invalid(v).into());
        };
        v.into_result(()).map_err(Error::from)?;
        reply(store::rate_item(&self.pool, &context, id, item_id, rating, &note).await?)
    }

    async fn add_photo(&self, request: Request<pb::AddPhotoRequest>) -> Reply<pb::Inspection> {
        let context = request_context(&request);
        let req = request.into_inner();
        let mut v = Violations::new();
        let item_id = required_id(&mut v, "item_id", &req.item_id);
        let id = work_order(&mut v, &req.work_order_id)?;
        let Some(item_id) = item_id else {
            return Err(Error::Invalid(v).into());
        };
        // Decoding takes a core for a few hundred milliseconds: not on the async workers.
        let content = req.content;
        let stored = tokio::task::spawn_blocking(move || photo::prepare(&content))
            .await
            .map_err(|err| Status::internal(format!("the photo could not be processed: {err}")))?
            .map_err(Error::from)?;
        reply(store::add_photo(&self.pool, &context, id, item_id, &stored).await?)
    }

    async fn remove_photo(
        &self,
        request: Request<pb::RemovePhotoRequest>,
    ) -> Reply<pb::Inspection> {
        let req = request.into_inner();
        let mut v = Violations::new();
        let photo_id = required_id(&mut v, "photo_id", &req.photo_id);
        let id = work_order(&mut v, &req.work_order_id)?;
        let Some(photo_id) = photo_id else {
            return Err(Error::Invalid(v).into());
        };
        reply(store::remove_photo(&self.pool, id, photo_id).await?)
    }

    async fn get_photo(&self, request: Request<pb::GetPhotoRequest>) -> Reply<pb::Photo> {
        let req = request.into_inner();
        let mut v = Violations::new();
        let photo_id = required_id(&mut v, "photo_id", &req.photo_id);
        let id = work_order(&mut v, &req.work_order_id)?;
        let Some(photo_id) = photo_id else {
            return Err(Error::Invalid(v).into());
        };
        let content = store::photo(&self.pool, id, photo_id).await?;
        Ok(Response::new(photo_to_pb(photo_id, content)))
    }

    async fn complete_inspection(
        &self,
        request: Request<pb::CompleteInspectionRequest>,
    ) -> Reply<pb::Inspection> {
        let context = request_context(&request);
        let mut v = Violations::new();
        let id = work_order(&mut v, &request.get_ref().work_order_id)?;
        reply(store::complete(&self.pool, &context, id).await?)
    }

    async fn propose_jobs(
        &self,
        request: Request<pb::ProposeJobsRequest>,
    ) -> Reply<pb::ProposeJobsResponse> {
        let req = request.into_inner();
        let mut v = Violations::new();
        check_expected_version(&mut v, req.expected_version);
        let id = work_order(&mut v, &req.work_order_id)?;
        v.into_result(()).map_err(Error::from)?;
        let (inspection, made) = store::propose_jobs(&self.pool, id, req.expected_version).await?;
        Ok(Response::new(pb::ProposeJobsResponse {
            inspection: Some(to_pb(inspection)),
            job_ids: made.iter().map(Uuid::to_string).collect(),
        }))
    }

    async fn get_inspection_by_link(
        &self,
        request: Request<pb::GetInspectionByLinkRequest>,
    ) -> Reply<pb::Inspection> {
        let token = link_token(&request.get_ref().token)?;
        reply(store::by_link(&self.pool, token).await?)
    }

    async fn get_photo_by_link(
        &self,
        request: Request<pb::GetPhotoByLinkRequest>,
    ) -> Reply<pb::Photo> {
        let req = request.into_inner();
        let token = link_token(&req.token)?;
        let photo_id =
            carerp_kit::status::parse_id("photo_id", &req.photo_id).map_err(Error::from)?;
        let content = store::photo_by_link(&self.pool, token, photo_id).await?;
        Ok(Response::new(photo_to_pb(photo_id, content)))
    }
}

pub fn rating_from_pb(value: i32) -> Option<Rating> {
    match pb::Rating::try_from(value).ok()? {
        pb::Rating::Ok => Some(Rating::Ok),
        pb::Rating::Advise => Some(Rating::Advise),
        pb::Rating::Urgent => Some(Rating::Urgent),
        pb::Rating::Unspecified => None,
    }
}

fn rating_to_pb(rating: Option<Rating>) -> pb::Rating {
    match rating {
        Some(Rating::Ok) => pb::Rating::Ok,
        Some(Rating::Advise) => pb::Rating::Advise,
        Some(Rating::Urgent) => pb::Rating::Urgent,
        None => pb::Rating::Unspecified,
    }
}

fn photo_to_pb(id: Uuid, content: Vec<u8>) -> pb::Photo {
    pb::Photo {
        id: id.to_string(),
        content_type: CONTENT_TYPE.to_string(),
        content,
    }
}

fn template_to_pb(template: Template) -> pb::InspectionTemplate {
    pb::InspectionTemplate {
        id: template.id.to_string(),
        name: template.name,
        is_default: template.is_default,
        items: template
            .items
            .into_iter()
            .map(|item| pb::TemplateItem {
                section: item.section,
                label: item.label,
            })
            .collect(),
        updated_by: template.updated_by,
        updated_at: Some(timestamp(template.updated_at)),
    }
}

fn to_pb(inspection: Inspection) -> pb::Inspection {
    pb::Inspection {
        id: inspection.id.to_string(),
        work_order_id: inspection.work_order_id.to_string(),
        template_name: inspection.template_name,
        state: match inspection.state {
            InspectionState::InProgress => pb::InspectionState::InProgress,
            InspectionState::Completed => pb::InspectionState::Completed,
        } as i32,
        items: inspection
            .items
            .into_iter()
            .map(|item| pb::InspectionItem {
                id: item.id.to_string(),
                section: item.section,
                label: item.label,
                rating: rating_to_pb(item.rating) as i32,
                note: item.note,
                photos: item
                    .photos
                    .into_iter()
                    .map(|photo| pb::PhotoInfo {
                        id: photo.id.to_string(),
                        width: photo.width,
                        height: photo.height,
                        size_bytes: photo.size_bytes,
                    })
                    .collect(),
                job_id: item.job_id.map(|id| id.to_string()).unwrap_or_default(),
                rated_by: item.rated_by,
            })
            .collect(),
        started_by: inspection.started_by,
        started_at: Some(timestamp(inspection.started_at)),
        completed_by: inspection.completed_by,
        completed_at: inspection.completed_at.map(timestamp),
    }
}
