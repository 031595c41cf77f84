//! Inspections (`docs/inspections.md`): templates, the technician's findings and their photos.

use carerp_proto::workorder::v1 as workorder;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{non_empty, time};

api_enum! {
    /// The technician's finding: `OK`; `ADVISE` (soon) or `URGENT` (now), both offered to the
    /// customer as jobs.
    Rating: workorder::Rating {
        Ok = Ok,
        Advise = Advise,
        Urgent = Urgent,
    }
}

api_enum! {
    InspectionState: workorder::InspectionState {
        InProgress = InProgress,
        Completed = Completed,
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TemplateItem {
    /// 1–60 characters, e.g. `Brakes`.
    #[schema(min_length = 1, max_length = 60, pattern = r"\S", example = "Brakes")]
    pub section: String,
    /// 1–120 characters, unique within its section.
    #[schema(
        min_length = 1,
        max_length = 120,
        pattern = r"\S",
        example = "Front brake pads and discs"
    )]
    pub label: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct InspectionTemplate {
    pub id: String,
    pub name: String,
    pub is_default: bool,
    pub items: Vec<TemplateItem>,
    pub updated_by: String,
    pub updated_at: Option<DateTime<Utc>>,
}

impl From<workorder::InspectionTemplate> for InspectionTemplate {
    fn from(t: workorder::InspectionTemplate) -> Self {
        Self {
            id: t.id,
            name: t.name,
            is_default: t.is_default,
            items: t
                .items
                .into_iter()
                .map(|item| TemplateItem {
                    section: item.section,
                    label: item.label,
                })
                .collect(),
            updated_by: t.updated_by,
            updated_at: time(t.updated_at),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct InspectionTemplateList {
    /// The default first, then by name.
    pub items: Vec<InspectionTemplate>,
}

/// A template to create or replace. Inspections already started keep their items.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SaveTemplate {
    #[schema(min_length = 1, max_length = 80, pattern = r"\S")]
    pub name: String,
    /// Making a template the default takes the flag from the previous default.
    #[serde(default)]
    pub is_default: bool,
    /// 1–80 items, in order.
    #[schema(min_items = 1, max_items = 80)]
    pub items: Vec<TemplateItem>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PhotoInfo {
    pub id: String,
    pub width: i32,
    pub height: i32,
    pub size_bytes: i32,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct InspectionItem {
    pub id: String,
    pub section: String,
    pub label: String,
    /// Null until rated.
    pub rating: Option<Rating>,
    pub note: String,
    pub photos: Vec<PhotoInfo>,
    /// The PROPOSED job made from the item.
    pub job_id: Option<String>,
    /// Empty through the approval link.
    pub rated_by: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Inspection {
    pub id: String,
    pub work_order_id: String,
    pub template_name: String,
    pub state: Option<InspectionState>,
    pub items: Vec<InspectionItem>,
    pub started_by: String,
    pub started_at: Option<DateTime<Utc>>,
    pub completed_by: String,
    pub completed_at: Option<DateTime<Utc>>,
}

impl From<workorder::Inspection> for Inspection {
    fn from(i: workorder::Inspection) -> Self {
        Self {
            id: i.id,
            work_order_id: i.work_order_id,
            template_name: i.template_name,
            state: InspectionState::from_proto(i.state),
            items: i
                .items
                .into_iter()
                .map(|item| InspectionItem {
                    id: item.id,
                    section: item.section,
                    label: item.label,
                    rating: Rating::from_proto(item.rating),
                    note: item.note,
                    photos: item
                        .photos
                        .into_iter()
                        .map(|p| PhotoInfo {
                            id: p.id,
                            width: p.width,
                            height: p.height,
                            size_bytes: p.size_bytes,
                        })
                        .collect(),
                    job_id: non_empty(item.job_id),
                    rated_by: item.rated_by,
                })
                .collect(),
            started_by: i.started_by,
            started_at: time(i.started_at),
            completed_by: i.completed_by,
            completed_at: time(i.completed_at),
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct StartInspection {
    /// Omit for the default template.
    #[schema(format = Uuid)]
    pub template_id: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RateItem {
    pub rating: Rating,
    /// Up to 1,000 characters; required for `ADVISE` and `URGENT` (the customer reads it).
    #[serde(default)]
    #[schema(max_length = 1000)]
    pub note: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct ProposeJobs {
    /// The work order's version (0 skips the check).
    #[schema(minimum = 0)]
    pub expected_version: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProposedJobs {
    pub inspection: Inspection,
    /// The jobs made by this call; empty when every finding already has its job.
    pub job_ids: Vec<String>,
}
