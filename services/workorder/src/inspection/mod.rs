//! Digital vehicle inspections: the technician rates each item of a template OK, ADVISE or
//! URGENT, with a note and photos, and the items that need work become PROPOSED jobs of the
//! work order (see `docs/inspections.md`).
//!
//! This module holds the rules and does no I/O; [`store`] holds the use cases, [`api`] the
//! gRPC handlers and [`photo`] what an uploaded photo must be and becomes.
//!
//! An inspection copies its template's items when it starts: editing a template later
//! changes no inspection under way, and an item is only ever one of its own inspection's.

pub mod api;
pub mod photo;
pub mod store;

use carerp_kit::{FieldViolation, Violations};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::domain::Status;
use crate::jobs;

const MAX_TEMPLATE_NAME: usize = 80;
const MAX_SECTION: usize = 60;
const MAX_LABEL: usize = 120;
pub const MAX_TEMPLATE_ITEMS: usize = 80;
const MAX_NOTE: usize = 1_000;
/// Photos per item and per inspection: enough to show a worn part from a few sides, and a
/// bound on what one approval page loads.
pub const MAX_PHOTOS_PER_ITEM: usize = 6;
pub const MAX_PHOTOS: usize = 60;

/// The technician's finding on one item.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Rating {
    Ok,
    /// Needs attention soon: offered to the customer as a job.
    Advise,
    /// Needs attention now: offered to the customer as a job, first.
    Urgent,
}

impl Rating {
    pub const ALL: [Rating; 3] = [Rating::Ok, Rating::Advise, Rating::Urgent];

    pub fn as_str(self) -> &'static str {
        match self {
            Rating::Ok => "OK",
            Rating::Advise => "ADVISE",
            Rating::Urgent => "URGENT",
        }
    }

    pub fn parse(value: &str) -> Option<Rating> {
        Rating::ALL.into_iter().find(|r| r.as_str() == value)
    }

    /// Whether the item becomes a job the customer decides on.
    pub fn needs_work(self) -> bool {
        matches!(self, Rating::Advise | Rating::Urgent)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InspectionState {
    InProgress,
    Completed,
}

impl InspectionState {
    pub fn as_str(self) -> &'static str {
        match self {
            InspectionState::InProgress => "IN_PROGRESS",
            InspectionState::Completed => "COMPLETED",
        }
    }

    pub fn parse(value: &str) -> Option<InspectionState> {
        [InspectionState::InProgress, InspectionState::Completed]
            .into_iter()
            .find(|s| s.as_str() == value)
    }
}

/// One line of a template, as kept in `inspection_templates.items`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TemplateItem {
    pub section: String,
    pub label: String,
}

/// A template's name and items, trimmed, with what is wrong recorded in `v`: names and texts
/// within their sizes, 1 to [`MAX_TEMPLATE_ITEMS`] items, no label twice in one section.
pub fn check_template(
    v: &mut Violations,
    name: &str,
    items: &[TemplateItem],
) -> (String, Vec<TemplateItem>) {
    let name = v.required_text("name", name, MAX_TEMPLATE_NAME);
    if items.is_empty() {
        v.add("items", "must list at least one item");
    }
    if items.len() > MAX_TEMPLATE_ITEMS {
        v.add(
            "items",
            format!(
                "must list at most {MAX_TEMPLATE_ITEMS} items, lists {}",
                items.len()
            ),
        );
    }
    let mut checked: Vec<TemplateItem> = Vec::with_capacity(items.len());
    for (index, item) in items.iter().enumerate() {
        let section = v.required_text(
            &format!("items[{index}].section"),
            &item.section,
            MAX_SECTION,
        );
        let label = v.required_text(&format!("items[{index}].label"), &item.label, MAX_LABEL);
        let twice = checked.iter().any(|earlier| {
            earlier.section.to_lowercase() == section.to_lowercase()
                && earlier.label.to_lowercase() == label.to_lowercase()
        });
        if twice && !label.is_empty() {
            v.add(
                format!("items[{index}].label"),
                format!("\"{label}\" is already an item of section \"{section}\""),
            );
        }
        checked.push(TemplateItem { section, label });
    }
    (name, checked)
}

/// A rating's note, checked: what the technician saw, required when the item needs work
/// (the customer is asked to pay for it).
pub fn check_note(rating: Rating, note: &str) -> Result<String, FieldViolation> {
    let note = carerp_kit::status::text("note", note, MAX_NOTE, false)?;
    if rating.needs_work() && note.is_empty() {
        return Err(FieldViolation::new(
            "note",
            format!(
                "is required for {}: say what was found, the customer reads it",
                rating.as_str()
            ),
        ));
    }
    Ok(note)
}

/// Inspections are filled while the car is in the workshop: not on orders that are done.
pub fn check_order_open(work_order_id: Uuid, status: Status) -> Result<(), InspectionError> {
    match status {
        Status::Completed | Status::Invoiced | Status::Cancelled => {
            Err(InspectionError::OrderClosed {
                work_order_id,
                status,
            })
        }
        _ => Ok(()),
    }
}

/// The title of the job an item becomes: the item and what was found, as the customer reads
/// it on the estimate ("Front brake pads and discs: 2 mm left on the inner pad").
pub fn job_title(label: &str, note: &str) -> String {
    let note = note.lines().next().unwrap_or("").trim();
    let title = if note.is_empty() {
        label.to_string()
    } else {
        format!("{label}: {note}")
    };
    if title.chars().count() <= jobs::MAX_TITLE {
        return title;
    }
    let mut cut: String = title.chars().take(jobs::MAX_TITLE - 1).collect();
    cut.push('…');
    cut
}

/// What an inspection refuses, in words the technician can act on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InspectionError {
    #[error("work order {0} has no inspection; start one first")]
    NotStarted(Uuid),
    #[error("work order {0} already has an inspection")]
    AlreadyStarted(Uuid),
    #[error("the inspection of work order {0} is completed: its items and photos cannot change")]
    Completed(Uuid),
    #[error(
        "work order {work_order_id} is {status}: an inspection is filled before the work is completed"
    )]
    OrderClosed { work_order_id: Uuid, status: Status },
    #[error("{count} items are not rated yet, the first is \"{first}\"; rate every item first")]
    Unrated { count: usize, first: String },
    #[error("item {item_id} is not an item of the inspection of work order {work_order_id}")]
    ItemNotFound { work_order_id: Uuid, item_id: Uuid },
    #[error("photo {photo_id} not found on the inspection of work order {work_order_id}")]
    PhotoNotFound { work_order_id: Uuid, photo_id: Uuid },
    #[error("item \"{label}\" has {max} photos, the most one item may have; remove one first")]
    TooManyPhotosOnItem { label: String, max: usize },
    #[error("the inspection has {max} photos, the most one inspection may have")]
    TooManyPhotos { max: usize },
    #[error("inspection template {0} not found")]
    TemplateNotFound(Uuid),
    #[error("there is no default inspection template: name one, or make one the default")]
    NoDefaultTemplate,
    #[error("an inspection template named \"{0}\" already exists")]
    TemplateNameTaken(String),
    #[error(
        "the default template cannot stop being the default: make another template the default instead"
    )]
    DefaultRequired,
    /// The link opens an estimate whose order has no completed inspection.
    #[error("there is no completed inspection for this estimate")]
    NoneForCustomer,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(section: &str, label: &str) -> TemplateItem {
        TemplateItem {
            section: section.into(),
            label: label.into(),
        }
    }

    fn checked(
        name: &str,
        items: &[TemplateItem],
    ) -> Result<(String, Vec<TemplateItem>), Violations> {
        let mut v = Violations::new();
        let template = check_template(&mut v, name, items);
        v.into_result(template)
    }

    #[test]
    fn a_template_needs_a_name_and_items_within_their_limits() {
        let err = checked(" ", &[]).unwrap_err();
        let fields: Vec<_> = err.as_slice().iter().map(|f| f.field.as_str()).collect();
        assert_eq!(fields, ["name", "items"]);

        let many: Vec<_> = (0..=MAX_TEMPLATE_ITEMS)
            .map(|i| item("Brakes", &format!("Item {i}")))
            .collect();
        let err = checked("Big", &many).unwrap_err();
        assert!(
            err.as_slice()[0]
                .description
                .contains("at most 80 items, lists 81")
        );

        let err = checked("T", &[item("", "Pads"), item("Brakes", &"x".repeat(121))]).unwrap_err();
        let fields: Vec<_> = err.as_slice().iter().map(|f| f.field.as_str()).collect();
        assert_eq!(fields, ["items[0].section", "items[1].label"]);
    }

    #[test]
    fn a_label_appears_once_per_section_whatever_its_case() {
        let err = checked(
            "T",
            &[
                item("Brakes", "Front pads"),
                item("Tyres", "Front pads"),
                item("brakes", "FRONT PADS"),
            ],
        )
        .unwrap_err();
        assert_eq!(err.as_slice().len(), 1);
        assert_eq!(err.as_slice()[0].field, "items[2].label");

        let (name, items) =
            checked("  Quick check ", &[item(" Brakes ", " Pads ")]).expect("a valid template");
        assert_eq!(name, "Quick check");
        assert_eq!(items, [item("Brakes", "Pads")]);
    }

    #[test]
    fn findings_that_need_work_need_a_note() {
        assert_eq!(check_note(Rating::Ok, "").as_deref(), Ok(""));
        for rating in [Rating::Advise, Rating::Urgent] {
            let err = check_note(rating, "  ").unwrap_err();
            assert!(err.description.contains(rating.as_str()), "{err:?}");
        }
        assert!(check_note(Rating::Ok, &"n".repeat(1_001)).is_err());
        assert!(check_note(Rating::Advise, "bad\u{7}").is_err());
    }

    #[test]
    fn a_job_title_is_the_item_and_the_first_line_of_the_note_within_the_limit() {
        assert_eq!(job_title("Wiper blades", ""), "Wiper blades");
        assert_eq!(
            job_title("Front brake pads", "2 mm left\nphoto 2 shows the disc"),
            "Front brake pads: 2 mm left"
        );
        let long = job_title("Exhaust", &"rust ".repeat(100));
        assert_eq!(long.chars().count(), jobs::MAX_TITLE);
        assert!(long.ends_with('…'));
        assert!(jobs::check_title(&long).is_ok());
    }

    #[test]
    fn done_orders_take_no_inspection() {
        let id = Uuid::nil();
        for status in [Status::Completed, Status::Invoiced, Status::Cancelled] {
            assert!(check_order_open(id, status).is_err());
        }
        for status in [Status::Open, Status::Estimate, Status::InProgress] {
            assert!(check_order_open(id, status).is_ok());
        }
    }

    #[test]
    fn ratings_and_states_round_trip_their_names() {
        for rating in Rating::ALL {
            assert_eq!(Rating::parse(rating.as_str()), Some(rating));
        }
        assert_eq!(Rating::parse("ok"), None);
        assert!(!Rating::Ok.needs_work());
        for state in [InspectionState::InProgress, InspectionState::Completed] {
            assert_eq!(InspectionState::parse(state.as_str()), Some(state));
        }
    }
}
