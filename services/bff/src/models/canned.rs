//! Canned jobs (`docs/canned-jobs.md`): a garage's named service packages.

use carerp_proto::workorder::v1 as workorder;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::time;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CannedPart {
    #[schema(format = Uuid)]
    pub part_id: String,
    #[schema(minimum = 1, maximum = 10000)]
    pub quantity: i32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CannedLabor {
    #[schema(min_length = 1, max_length = 500, pattern = r"\S")]
    pub description: String,
    #[schema(minimum = 1, maximum = 44_640)]
    pub minutes: i32,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CannedJob {
    pub id: String,
    pub name: String,
    pub parts: Vec<CannedPart>,
    pub labor: Vec<CannedLabor>,
    pub updated_by: String,
    pub updated_at: Option<DateTime<Utc>>,
}

impl From<workorder::CannedJob> for CannedJob {
    fn from(c: workorder::CannedJob) -> Self {
        Self {
            id: c.id,
            name: c.name,
            parts: c
                .parts
                .into_iter()
                .map(|p| CannedPart {
                    part_id: p.part_id,
                    quantity: p.quantity,
                })
                .collect(),
            labor: c
                .labor
                .into_iter()
                .map(|l| CannedLabor {
                    description: l.description,
                    minutes: l.minutes,
                })
                .collect(),
            updated_by: c.updated_by,
            updated_at: time(c.updated_at),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CannedJobList {
    /// By name.
    pub items: Vec<CannedJob>,
}

/// A canned job to create or replace: at least one line; every part must be active.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SaveCannedJob {
    #[schema(min_length = 1, max_length = 80, pattern = r"\S")]
    pub name: String,
    #[serde(default)]
    #[schema(max_items = 20)]
    pub parts: Vec<CannedPart>,
    #[serde(default)]
    #[schema(max_items = 10)]
    pub labor: Vec<CannedLabor>,
}

impl SaveCannedJob {
    pub fn into_proto(self, id: String) -> workorder::SaveCannedJobRequest {
        workorder::SaveCannedJobRequest {
            id,
            name: self.name,
            parts: self
                .parts
                .into_iter()
                .map(|p| workorder::CannedPart {
                    part_id: p.part_id,
                    quantity: p.quantity,
                })
                .collect(),
            labor: self
                .labor
                .into_iter()
                .map(|l| workorder::CannedLabor {
                    description: l.description,
                    minutes: l.minutes,
                })
                .collect(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AddCannedJob {
    #[schema(format = Uuid)]
    pub canned_job_id: String,
    /// The work order's version (0 skips the check).
    #[serde(default)]
    #[schema(minimum = 0)]
    pub expected_version: i64,
}
