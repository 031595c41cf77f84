//! The canned job service's gRPC handlers: decode and validate, ask inventory for the parts,
//! call [`super::store`], encode.

use carerp_kit::grpc::request_context;
use carerp_kit::idempotency::Key;
use carerp_kit::{RequestContext, TenantSettings, Violations};
use carerp_proto::workorder::v1 as pb;
use carerp_proto::workorder::v1::canned_job_service_server::CannedJobService;
use sqlx::PgPool;
use tonic::{Request, Response, Status};

use super::store::{self, CannedJob, Package, Pricing};
use super::{CannedLabor, CannedPart, Draft, check};
use crate::api::{check_expected_version, optional_id, required_id, timestamp, to_pb};
use crate::error::Error;
use crate::peers::{PartCatalogue, Quote};

pub struct CannedJobApi {
    pool: PgPool,
    settings: TenantSettings,
    parts: PartCatalogue,
}

impl CannedJobApi {
    pub fn new(pool: PgPool, settings: TenantSettings, parts: PartCatalogue) -> Self {
        Self {
            pool,
            settings,
            parts,
        }
    }

    async fn quotes(
        &self,
        context: &RequestContext,
        parts: &[CannedPart],
    ) -> Result<Vec<Quote>, Error> {
        self.parts
            .quote_all(
                context,
                &parts.iter().map(|part| part.part_id).collect::<Vec<_>>(),
            )
            .await
    }
}

type Reply<T> = Result<Response<T>, Status>;

#[tonic::async_trait]
impl CannedJobService for CannedJobApi {
    async fn list_canned_jobs(
        &self,
        _request: Request<pb::ListCannedJobsRequest>,
    ) -> Reply<pb::ListCannedJobsResponse> {
        let canned = store::list(&self.pool).await?;
        Ok(Response::new(pb::ListCannedJobsResponse {
            canned_jobs: canned.into_iter().map(canned_to_pb).collect(),
        }))
    }

    async fn save_canned_job(
        &self,
        request: Request<pb::SaveCannedJobRequest>,
    ) -> Reply<pb::CannedJob> {
        let context = request_context(&request);
        let req = request.into_inner();
        let mut v = Violations::new();
        let id = optional_id(&mut v, "id", &req.id);
        let draft = Draft {
            name: &req.name,
            parts: req
                .parts
                .iter()
                .map(|p| (p.part_id.as_str(), p.quantity))
                .collect(),
            labor: req
                .labor
                .iter()
                .map(|l| CannedLabor {
                    description: l.description.clone(),
                    minutes: l.minutes,
                })
                .collect(),
        };
        let (name, parts, labor) = check(&mut v, &draft);
        v.into_result(()).map_err(Error::from)?;
        // Only parts that can be quoted today are kept.
        self.quotes(&context, &parts).await?;
        let saved = store::save(&self.pool, &context, id, &name, &parts, &labor).await?;
        Ok(Response::new(canned_to_pb(saved)))
    }

    async fn remove_canned_job(
        &self,
        request: Request<pb::RemoveCannedJobRequest>,
    ) -> Reply<pb::RemoveCannedJobResponse> {
        let id = carerp_kit::status::parse_id("id", &request.get_ref().id).map_err(Error::from)?;
        store::remove(&self.pool, id).await?;
        Ok(Response::new(pb::RemoveCannedJobResponse {}))
    }

    async fn add_canned_job(
        &self,
        request: Request<pb::AddCannedJobRequest>,
    ) -> Reply<pb::WorkOrder> {
        let context = request_context(&request);
        let req = request.into_inner();
        let mut v = Violations::new();
        let id = required_id(&mut v, "work_order_id", &req.work_order_id);
        let canned_id = required_id(&mut v, "canned_job_id", &req.canned_job_id);
        check_expected_version(&mut v, req.expected_version);
        let key =
            Key::optional("idempotency_key", &req.idempotency_key).unwrap_or_else(|violation| {
                v.check(Err(violation));
                None
            });
        let (Some(id), Some(canned_id)) = (id, canned_id) else {
            return Err(Error::Invalid(v).into());
        };
        v.into_result(()).map_err(Error::from)?;
        let canned = store::get(&self.pool, canned_id).await?;
        let quotes = self.quotes(&context, &canned.parts).await?;
        let pricing = Pricing {
            quotes: &quotes,
            labor_rate_minor: self.settings.labor_rate_minor,
            currency: &self.settings.currency,
        };
        let package = Package {
            source: canned.id,
            title: &canned.name,
            parts: &canned.parts,
            labor: &canned.labor,
            offered_from: None,
        };
        let order = store::add_package(
            &self.pool,
            id,
            &package,
            &pricing,
            req.expected_version,
            key.as_ref().map(|key| (key, store::ADD_CANNED_JOB)),
        )
        .await?;
        Ok(Response::new(to_pb(order)))
    }
}

fn canned_to_pb(canned: CannedJob) -> pb::CannedJob {
    pb::CannedJob {
        id: canned.id.to_string(),
        name: canned.name,
        parts: canned
            .parts
            .into_iter()
            .map(|p| pb::CannedPart {
                part_id: p.part_id.to_string(),
                quantity: p.quantity,
            })
            .collect(),
        labor: canned
            .labor
            .into_iter()
            .map(|l| pb::CannedLabor {
                description: l.description,
                minutes: l.minutes,
            })
            .collect(),
        updated_by: canned.updated_by,
        updated_at: Some(timestamp(canned.updated_at)),
    }
}
