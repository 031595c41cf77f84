//! Canned jobs: a garage's named service packages ("Oil service 5W-30": a filter, 5 L of oil,
//! half an hour), added to a work order in one action as a PROPOSED job whose parts are quoted
//! at their current prices and whose labour is at the tenant's rate (see
//! `docs/canned-jobs.md`). This module holds the rules and does no I/O; [`store`] the use
//! cases, [`api`] the gRPC handlers.

pub mod api;
pub mod store;

use carerp_kit::Violations;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::domain::{self, MAX_LABOR_LINES, MAX_PART_LINES, NewLabor};

const MAX_NAME: usize = 80;
/// Lines of one canned job: a service package, not a whole order.
pub const MAX_PARTS: usize = 20;
pub const MAX_LABOR: usize = 10;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CannedPart {
    pub part_id: Uuid,
    pub quantity: i32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CannedLabor {
    pub description: String,
    pub minutes: i32,
}

/// A canned job's name and lines as asked for, before they are checked.
pub struct Draft<'a> {
    pub name: &'a str,
    /// Part ids as sent, with their quantities.
    pub parts: Vec<(&'a str, i32)>,
    pub labor: Vec<CannedLabor>,
}

/// A canned job's name and lines, checked; what is wrong is recorded in `v`, each field named
/// by its place (`parts[1].quantity`). Whether the parts exist and are active is inventory's
/// to say, asked by the caller.
pub fn check(v: &mut Violations, draft: &Draft<'_>) -> (String, Vec<CannedPart>, Vec<CannedLabor>) {
    let name = v.required_text("name", draft.name, MAX_NAME);
    if draft.parts.is_empty() && draft.labor.is_empty() {
        v.add(
            "parts",
            "a canned job needs at least one part or labour line",
        );
    }
    if draft.parts.len() > MAX_PARTS {
        v.add(
            "parts",
            format!(
                "must list at most {MAX_PARTS} parts, lists {}",
                draft.parts.len()
            ),
        );
    }
    if draft.labor.len() > MAX_LABOR {
        v.add(
            "labor",
            format!(
                "must list at most {MAX_LABOR} labour lines, lists {}",
                draft.labor.len()
            ),
        );
    }
    let mut parts: Vec<CannedPart> = Vec::with_capacity(draft.parts.len());
    for (index, (part_id, quantity)) in draft.parts.iter().enumerate() {
        let field = format!("parts[{index}]");
        match carerp_kit::status::parse_id(&format!("{field}.part_id"), part_id) {
            Ok(part_id) if parts.iter().any(|p| p.part_id == part_id) => v.add(
                format!("{field}.part_id"),
                format!("part {part_id} is listed twice: give it one line with the total quantity"),
            ),
            Ok(part_id) => parts.push(CannedPart {
                part_id,
                quantity: *quantity,
            }),
            Err(violation) => v.check(Err(violation)),
        }
        if let Err(violation) = domain::check_quantity(*quantity) {
            v.add(format!("{field}.quantity"), violation.description);
        }
    }
    let mut labor = Vec::with_capacity(draft.labor.len());
    for (index, line) in draft.labor.iter().enumerate() {
        // The rate is the tenant's when the job is added, so any rate checks the rest here.
        match NewLabor::validate(&line.description, "", line.minutes, None, 0, "") {
            Ok(checked) => labor.push(CannedLabor {
                description: checked.description,
                minutes: checked.minutes,
            }),
            Err(violations) => {
                for violation in violations.as_slice() {
                    v.add(
                        format!("labor[{index}].{}", violation.field),
                        violation.description.clone(),
                    );
                }
            }
        }
    }
    (name, parts, labor)
}

/// Whether a work order with `parts` and `labor` lines has room for the canned job's.
pub fn check_room(
    work_order_id: Uuid,
    parts: (usize, usize),
    labor: (usize, usize),
) -> Result<(), crate::error::Error> {
    for (kind, (has, adds), max) in [
        ("part", parts, MAX_PART_LINES),
        ("labour", labor, MAX_LABOR_LINES),
    ] {
        if has + adds > max {
            return Err(crate::error::Error::TooManyLines {
                id: work_order_id,
                kind,
                max,
            });
        }
    }
    Ok(())
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CannedJobError {
    #[error("canned job {0} not found")]
    NotFound(Uuid),
    #[error("a canned job named \"{0}\" already exists")]
    NameTaken(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labor(description: &str, minutes: i32) -> CannedLabor {
        CannedLabor {
            description: description.into(),
            minutes,
        }
    }

    fn checked(
        draft: &Draft<'_>,
    ) -> Result<(String, Vec<CannedPart>, Vec<CannedLabor>), Violations> {
        let mut v = Violations::new();
        let result = check(&mut v, draft);
        v.into_result(result)
    }

    #[test]
    fn a_canned_job_names_its_lines_and_each_error_its_place() {
        let filter = Uuid::now_v7().to_string();
        let err = checked(&Draft {
            name: "",
            parts: vec![(&filter, 1), ("nope", 0), (&filter, 2)],
            labor: vec![labor("", 30), labor("Oil change", 0)],
        })
        .unwrap_err();
        let fields: Vec<_> = err.as_slice().iter().map(|f| f.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "name",
                "parts[1].part_id",
                "parts[1].quantity",
                "parts[2].part_id",
                "labor[0].description",
                "labor[1].minutes"
            ]
        );
        let err = checked(&Draft {
            name: "Empty",
            parts: vec![],
            labor: vec![],
        })
        .unwrap_err();
        assert!(err.as_slice()[0].description.contains("at least one"));
    }

    #[test]
    fn a_valid_canned_job_is_trimmed() {
        let filter = Uuid::now_v7();
        let (name, parts, labor_lines) = checked(&Draft {
            name: "  Oil service 5W-30 ",
            parts: vec![(&filter.to_string(), 5)],
            labor: vec![labor(" Oil change ", 30)],
        })
        .unwrap();
        assert_eq!(name, "Oil service 5W-30");
        assert_eq!(
            parts,
            [CannedPart {
                part_id: filter,
                quantity: 5
            }]
        );
        assert_eq!(labor_lines, [labor("Oil change", 30)]);
    }

    #[test]
    fn an_order_must_have_room_for_every_line() {
        let id = Uuid::nil();
        assert!(check_room(id, (95, 5), (0, 1)).is_ok());
        assert!(check_room(id, (96, 5), (0, 1)).is_err());
        assert!(check_room(id, (0, 1), (100, 1)).is_err());
    }
}
