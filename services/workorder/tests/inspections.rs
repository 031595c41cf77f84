//! Vehicle inspections over gRPC against a real database and the real customer and inventory
//! services: the technician's loop (rate, photograph, complete, findings to jobs), what the
//! customer sees through the approval link, the owners' templates, and every bad input.

mod common;

use std::io::Cursor;

use carerp_kit::auth::Role;
use carerp_kit::auth::testing::AuthedChannel;
use carerp_proto::workorder::v1 as pb;
use carerp_proto::workorder::v1::inspection_service_client::InspectionServiceClient;
use carerp_proto::workorder::v1::{JobState as J, Rating as R, WorkOrderStatus as S};
use common::*;
use image::codecs::jpeg::JpegEncoder;
use image::{ImageEncoder, Rgb, RgbImage};
use sqlx::PgPool;
use tonic::Code;

type Inspections = InspectionServiceClient<AuthedChannel>;

/// A phone photo: 2400 × 1800 pixels, an EXIF block with a location marker.
fn phone_photo() -> Vec<u8> {
    let pixels = RgbImage::from_fn(2400, 1800, |x, y| {
        Rgb([(x % 255) as u8, (y % 255) as u8, 80])
    });
    let mut jpeg = Vec::new();
    let mut encoder = JpegEncoder::new(&mut jpeg);
    let mut exif = b"II\x2a\x00\x08\x00\x00\x00\x00\x00".to_vec();
    exif.extend_from_slice(b"GPSLatitude 48.8584");
    encoder.set_exif_metadata(exif).unwrap();
    encoder.encode_image(&pixels).unwrap();
    jpeg
}

async fn start(tech: &mut Inspections, id: &str) -> pb::Inspection {
    tech.start_inspection(pb::StartInspectionRequest {
        work_order_id: id.into(),
        template_id: String::new(),
    })
    .await
    .unwrap()
    .into_inner()
}

async fn rate(
    tech: &mut Inspections,
    id: &str,
    item_id: &str,
    rating: R,
    note: &str,
) -> Result<pb::Inspection, tonic::Status> {
    tech.rate_item(pb::RateItemRequest {
        work_order_id: id.into(),
        item_id: item_id.into(),
        rating: rating as i32,
        note: note.into(),
    })
    .await
    .map(tonic::Response::into_inner)
}

async fn add_photo(
    tech: &mut Inspections,
    id: &str,
    item_id: &str,
    content: Vec<u8>,
) -> Result<pb::Inspection, tonic::Status> {
    tech.add_photo(pb::AddPhotoRequest {
        work_order_id: id.into(),
        item_id: item_id.into(),
        content,
    })
    .await
    .map(tonic::Response::into_inner)
}

async fn complete(tech: &mut Inspections, id: &str) -> Result<pb::Inspection, tonic::Status> {
    tech.complete_inspection(pb::CompleteInspectionRequest {
        work_order_id: id.into(),
    })
    .await
    .map(tonic::Response::into_inner)
}

/// Rates every item OK but the brakes (URGENT) and the wipers (ADVISE).
async fn rate_all(tech: &mut Inspections, inspection: &pb::Inspection) -> (String, String) {
    let id = &inspection.work_order_id;
    let find = |label: &str| {
        inspection
            .items
            .iter()
            .find(|item| item.label.starts_with(label))
            .unwrap()
            .id
            .clone()
    };
    let (brakes, wipers) = (find("Front brake pads"), find("Wiper blades"));
    for item in &inspection.items {
        let (rating, note) = if item.id == brakes {
            (R::Urgent, "2 mm left on the inner pad\nsee photo")
        } else if item.id == wipers {
            (R::Advise, "Smearing")
        } else {
            (R::Ok, "")
        };
        rate(tech, id, &item.id, rating, note).await.unwrap();
    }
    (brakes, wipers)
}

#[sqlx::test(migrator = "carerp_workorder::MIGRATOR")]
async fn a_technician_inspects_with_photos_and_the_findings_become_proposed_jobs(pool: PgPool) {
    let mut g = Garage::start(pool).await;
    let mut tech = g.inspections_as(Role::Technician).await;
    let order = g.order().await;
    let inspection = start(&mut tech, &order.id).await;
    assert_eq!(inspection.template_name, "Multi-point inspection");
    assert_eq!(inspection.items.len(), 20);
    assert_eq!(inspection.state, pb::InspectionState::InProgress as i32);
    assert!(!inspection.started_by.is_empty());

    // Completing before every item is rated is refused, naming how many are left.
    let err = complete(&mut tech, &order.id).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(err.message().contains("20 items are not rated"), "{err:?}");

    let (brakes, wipers) = rate_all(&mut tech, &inspection).await;
    let upload = phone_photo();
    assert!(upload.windows(11).any(|w| w == b"GPSLatitude"));
    let with_photo = add_photo(&mut tech, &order.id, &brakes, upload)
        .await
        .unwrap();
    let item = with_photo.items.iter().find(|i| i.id == brakes).unwrap();
    assert_eq!(item.rating, R::Urgent as i32);
    let photo = &item.photos[0];
    // Scaled to fit 1600 px, its aspect kept.
    assert_eq!((photo.width, photo.height), (1600, 1200));

    let stored = tech
        .get_photo(pb::GetPhotoRequest {
            work_order_id: order.id.clone(),
            photo_id: photo.id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(stored.content_type, "image/jpeg");
    assert_eq!(stored.content.len() as i32, photo.size_bytes);
    assert!(!stored.content.windows(11).any(|w| w == b"GPSLatitude"));
    assert!(!stored.content.windows(4).any(|w| w == b"Exif"));
    let decoded = image::ImageReader::new(Cursor::new(&stored.content))
        .with_guessed_format()
        .unwrap()
        .decode()
        .unwrap();
    assert_eq!((decoded.width(), decoded.height()), (1600, 1200));

    let done = complete(&mut tech, &order.id).await.unwrap();
    assert_eq!(done.state, pb::InspectionState::Completed as i32);
    let events = g.events(&order.id).await;
    let (_, completed) = events
        .iter()
        .find(|(topic, _)| topic == "inspection.completed")
        .expect("inspection.completed in the outbox");
    assert_eq!(completed["ok"], 18);
    assert_eq!(completed["advise"], 1);
    assert_eq!(completed["urgent"], 1);
    assert_eq!(completed["workOrderId"], order.id.as_str());

    // A completed inspection no longer changes.
    let err = rate(&mut tech, &order.id, &brakes, R::Ok, "")
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(err.message().contains("is completed"), "{err:?}");
    let err = add_photo(&mut tech, &order.id, &brakes, phone_photo())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);

    // Findings to jobs: urgent first, titled by the item and the note's first line.
    let proposed = tech
        .propose_jobs(pb::ProposeJobsRequest {
            work_order_id: order.id.clone(),
            expected_version: 0,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(proposed.job_ids.len(), 2);
    let order_now = g.get(&order.id).await;
    let titles: Vec<_> = order_now
        .jobs
        .iter()
        .skip(1)
        .map(|j| j.title.as_str())
        .collect();
    assert_eq!(
        titles,
        [
            "Front brake pads and discs: 2 mm left on the inner pad",
            "Wiper blades and washer fluid: Smearing"
        ]
    );
    assert!(
        order_now.jobs[1..]
            .iter()
            .all(|j| j.state == J::Proposed as i32)
    );
    let linked = proposed.inspection.unwrap();
    let job_of = |id: &str| {
        linked
            .items
            .iter()
            .find(|i| i.id == id)
            .unwrap()
            .job_id
            .clone()
    };
    assert_eq!(job_of(&brakes), proposed.job_ids[0]);
    assert_eq!(job_of(&wipers), proposed.job_ids[1]);
    // Again: nothing twice.
    let again = tech
        .propose_jobs(pb::ProposeJobsRequest {
            work_order_id: order.id.clone(),
            expected_version: 0,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(again.job_ids.is_empty());
    assert_eq!(g.get(&order.id).await.jobs.len(), 3);
}

#[sqlx::test(migrator = "carerp_workorder::MIGRATOR")]
async fn the_customer_sees_the_completed_inspection_through_the_link_and_nothing_else(
    pool: PgPool,
) {
    let mut g = Garage::start(pool).await;
    let mut tech = g.inspections_as(Role::Technician).await;
    let order = g.order().await;
    let other = g.order().await;
    let inspection = start(&mut tech, &order.id).await;
    let (brakes, _) = rate_all(&mut tech, &inspection).await;
    add_photo(&mut tech, &order.id, &brakes, phone_photo())
        .await
        .unwrap();
    tech.propose_jobs(pb::ProposeJobsRequest {
        work_order_id: order.id.clone(),
        expected_version: 0,
    })
    .await
    .unwrap();
    // The other order's photo, which the link must not open.
    let other_inspection = start(&mut tech, &other.id).await;
    let other_item = other_inspection.items[0].id.clone();
    let other_photo = add_photo(&mut tech, &other.id, &other_item, phone_photo())
        .await
        .unwrap()
        .items[0]
        .photos[0]
        .id
        .clone();

    let order_now = g.get(&order.id).await;
    for job in &order_now.jobs[1..] {
        g.client
            .add_labor_line(pb::AddLaborLineRequest {
                work_order_id: order.id.clone(),
                description: "Work".into(),
                minutes: 30,
                job_id: job.id.clone(),
                ..Default::default()
            })
            .await
            .unwrap();
    }
    let token = g
        .client
        .send_estimate(pb::SendEstimateRequest {
            work_order_id: order.id.clone(),
            expected_version: 0,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .approval_token;

    let mut public = g.inspections_as(Role::Technician).await;
    // Not completed yet: the customer sees the estimate alone.
    let err = public
        .get_inspection_by_link(pb::GetInspectionByLinkRequest {
            token: token.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    complete(&mut tech, &order.id).await.unwrap();

    let seen = public
        .get_inspection_by_link(pb::GetInspectionByLinkRequest {
            token: token.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(seen.items.len(), 20);
    assert!(seen.started_by.is_empty() && seen.completed_by.is_empty());
    assert!(seen.items.iter().all(|item| item.rated_by.is_empty()));
    let brakes_seen = seen.items.iter().find(|i| i.id == brakes).unwrap();
    assert_eq!(brakes_seen.rating, R::Urgent as i32);
    let photo_id = brakes_seen.photos[0].id.clone();
    let photo = public
        .get_photo_by_link(pb::GetPhotoByLinkRequest {
            token: token.clone(),
            photo_id,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(photo.content.starts_with(&[0xFF, 0xD8]));

    // Another order's photo, a forged token, a malformed one: nothing.
    let err = public
        .get_photo_by_link(pb::GetPhotoByLinkRequest {
            token: token.clone(),
            photo_id: other_photo,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    let forged: String = token.chars().rev().collect();
    for bad in [forged.as_str(), "short", ""] {
        let err = public
            .get_inspection_by_link(pb::GetInspectionByLinkRequest { token: bad.into() })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::NotFound, "{bad}");
        assert_eq!(err.message(), "this approval link is not valid");
    }

    // The estimate changes: the link, and with it the inspection, no longer opens.
    g.client
        .add_job(pb::AddJobRequest {
            work_order_id: order.id.clone(),
            title: "Something new".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let err = public
        .get_inspection_by_link(pb::GetInspectionByLinkRequest { token })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(err.message().contains("changed"), "{err:?}");
}

#[sqlx::test(migrator = "carerp_workorder::MIGRATOR")]
async fn bad_photos_items_and_orders_are_refused_with_the_reason(pool: PgPool) {
    let mut g = Garage::start(pool).await;
    let mut tech = g.inspections_as(Role::Technician).await;
    let order = g.order().await;
    let other = g.order().await;
    let inspection = start(&mut tech, &order.id).await;
    let item = inspection.items[0].id.clone();
    let other_item = start(&mut tech, &other.id).await.items[0].id.clone();

    // A second inspection of one order.
    let err = tech
        .start_inspection(pb::StartInspectionRequest {
            work_order_id: order.id.clone(),
            template_id: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::AlreadyExists);

    // An item of another inspection, an unknown order, an order without inspection.
    let err = rate(&mut tech, &order.id, &other_item, R::Ok, "")
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    assert!(
        err.message().contains("is not an item of the inspection"),
        "{err:?}"
    );
    let unknown = uuid::Uuid::now_v7().to_string();
    let err = rate(&mut tech, &unknown, &item, R::Ok, "")
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    assert!(err.message().contains("work order"), "{err:?}");
    let fresh = g.order().await;
    let err = rate(&mut tech, &fresh.id, &item, R::Ok, "")
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    assert!(err.message().contains("has no inspection"), "{err:?}");

    // A finding that needs work needs a note; a rating must be one.
    let err = rate(&mut tech, &order.id, &item, R::Urgent, " ")
        .await
        .unwrap_err();
    assert_eq!(fields(&err), ["note"]);
    let err = rate(&mut tech, &order.id, &item, R::Unspecified, "")
        .await
        .unwrap_err();
    assert_eq!(fields(&err), ["rating"]);
    let err = rate(&mut tech, &order.id, "not-an-id", R::Ok, "")
        .await
        .unwrap_err();
    assert_eq!(fields(&err), ["item_id"]);

    // Photos: not an image, a truncated one, an unsupported type, too large, empty.
    let mut truncated = phone_photo();
    truncated.truncate(truncated.len() / 3);
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (b"%PDF-1.7\n%\xe2\xe3".to_vec(), "not a JPEG, PNG or WebP"),
        (truncated, "cut off"),
        (
            b"GIF89a\x01\x00\x01\x00\x00\x00\x00;".to_vec(),
            "gif images are not taken",
        ),
        (
            vec![0xFF; 10 * 1024 * 1024 + 1],
            "the most taken is 10485760 bytes",
        ),
        (Vec::new(), "empty"),
    ];
    for (content, expected) in cases {
        let err = add_photo(&mut tech, &order.id, &item, content)
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{expected}: {err:?}");
        assert_eq!(fields(&err), ["content"]);
        let message = &carerp_kit::status::field_violations(&err)[0].description;
        assert!(message.contains(expected), "{expected}: {message}");
    }
    assert_eq!(g.count("inspection_photos").await, 0);

    // Six photos per item, then a clear no.
    let small = {
        let mut jpeg = Vec::new();
        JpegEncoder::new(&mut jpeg)
            .write_image(&[128u8; 8 * 8 * 3], 8, 8, image::ExtendedColorType::Rgb8)
            .unwrap();
        jpeg
    };
    for _ in 0..6 {
        add_photo(&mut tech, &order.id, &item, small.clone())
            .await
            .unwrap();
    }
    let err = add_photo(&mut tech, &order.id, &item, small)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(err.message().contains("6 photos"), "{err:?}");

    // Who may do what: an accountant reads, never inspects.
    let mut accountant = g.inspections_as(Role::Accountant).await;
    let err = rate(&mut accountant, &order.id, &item, R::Ok, "")
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    accountant
        .get_inspection(pb::GetInspectionRequest {
            work_order_id: order.id.clone(),
        })
        .await
        .unwrap();

    // A done order takes no inspection.
    let cancelled = g.order().await;
    g.status(&cancelled.id, S::Cancelled).await;
    let err = tech
        .start_inspection(pb::StartInspectionRequest {
            work_order_id: cancelled.id.clone(),
            template_id: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(err.message().contains("CANCELLED"), "{err:?}");
}

#[sqlx::test(migrator = "carerp_workorder::MIGRATOR")]
async fn owners_keep_the_templates_and_an_inspection_keeps_the_items_it_started_with(pool: PgPool) {
    let mut g = Garage::start(pool).await;
    let mut owner = g.inspections_as(Role::Owner).await;
    let mut tech = g.inspections_as(Role::Technician).await;
    let item = |section: &str, label: &str| pb::TemplateItem {
        section: section.into(),
        label: label.into(),
    };
    let quick = pb::SaveTemplateRequest {
        id: String::new(),
        name: "Quick check".into(),
        is_default: false,
        items: vec![item("Brakes", "Pads"), item("Tyres", "Tread")],
    };

    let err = tech.save_template(quick.clone()).await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    let saved = owner
        .save_template(quick.clone())
        .await
        .unwrap()
        .into_inner();
    assert!(!saved.is_default);
    let err = owner
        .save_template(pb::SaveTemplateRequest {
            name: "QUICK CHECK".into(),
            ..quick.clone()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::AlreadyExists);
    let err = owner
        .save_template(pb::SaveTemplateRequest {
            name: String::new(),
            items: vec![item("Brakes", "Pads"), item("brakes", "PADS")],
            ..quick.clone()
        })
        .await
        .unwrap_err();
    assert_eq!(fields(&err), ["name", "items[1].label"]);

    // Started from the quick check, then the template changes: the inspection does not.
    let order = g.order().await;
    let inspection = tech
        .start_inspection(pb::StartInspectionRequest {
            work_order_id: order.id.clone(),
            template_id: saved.id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(inspection.items.len(), 2);
    owner
        .save_template(pb::SaveTemplateRequest {
            id: saved.id.clone(),
            is_default: true,
            items: vec![item("Brakes", "Pads")],
            ..quick.clone()
        })
        .await
        .unwrap();
    let still = tech
        .get_inspection(pb::GetInspectionRequest {
            work_order_id: order.id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(still.items.len(), 2);

    // One default: the new one took the flag, and the default cannot be unset.
    let listed = owner
        .list_templates(pb::ListTemplatesRequest {})
        .await
        .unwrap()
        .into_inner()
        .templates;
    let defaults: Vec<_> = listed
        .iter()
        .filter(|t| t.is_default)
        .map(|t| &t.name)
        .collect();
    assert_eq!(defaults, ["Quick check"]);
    assert_eq!(listed[0].name, "Quick check");
    let err = owner
        .save_template(pb::SaveTemplateRequest {
            id: saved.id.clone(),
            is_default: false,
            ..quick.clone()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    let err = owner
        .save_template(pb::SaveTemplateRequest {
            id: uuid::Uuid::now_v7().to_string(),
            ..quick
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    // A new order starts from the new default.
    let next = g.order().await;
    assert_eq!(start(&mut tech, &next.id).await.items.len(), 1);
}
