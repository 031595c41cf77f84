//! Vehicle inspections through the REST API and the pages of a whole garage (real services,
//! PostgreSQL and NATS): photos as raw bodies and as the phone's form upload, the findings on
//! the work order, and the photos on the customer's approval page.

mod common;

use common::*;
use image::ImageEncoder;
use image::codecs::jpeg::JpegEncoder;
use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::PgPool;

fn jpeg(width: u32, height: u32) -> Vec<u8> {
    let pixels = vec![120u8; (width * height * 3) as usize];
    let mut jpeg = Vec::new();
    JpegEncoder::new(&mut jpeg)
        .write_image(&pixels, width, height, image::ExtendedColorType::Rgb8)
        .unwrap();
    jpeg
}

fn item_id(inspection: &Value, label: &str) -> String {
    inspection["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|item| item["label"].as_str().unwrap().starts_with(label))
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string()
}

async fn upload(g: &Garage, path: &str, content_type: &str, body: Vec<u8>) -> (StatusCode, Value) {
    let response = g
        .http
        .post(format!("{}{path}", g.base))
        .bearer_auth(&g.token)
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .unwrap();
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[sqlx::test(migrator = "carerp_identity::MIGRATOR")]
async fn an_inspection_over_rest_takes_photos_as_bodies_and_refuses_what_is_not_one(pool: PgPool) {
    let g = Garage::with_pages(pool).await;
    let order = g.work_order().await;
    let id = order["id"].as_str().unwrap();
    let templates = g
        .get("/api/inspection-templates")
        .await
        .expect(StatusCode::OK);
    assert_eq!(templates["items"][0]["isDefault"], true);
    let inspection = g
        .post(&format!("/api/work-orders/{id}/inspection"), json!({}))
        .await
        .expect(StatusCode::CREATED);
    assert_eq!(inspection["state"], "IN_PROGRESS");
    let brakes = item_id(&inspection, "Front brake pads");

    let rated = g
        .put(
            &format!("/api/work-orders/{id}/inspection/items/{brakes}"),
            json!({"rating": "URGENT", "note": "Metal on metal"}),
        )
        .await
        .expect(StatusCode::OK);
    let item = rated["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["id"] == brakes.as_str())
        .unwrap()
        .clone();
    assert_eq!(item["rating"], "URGENT");
    let refused = g
        .put(
            &format!("/api/work-orders/{id}/inspection/items/{brakes}"),
            json!({"rating": "ADVISE"}),
        )
        .await
        .expect(StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(refused["errors"][0]["field"], "note", "{refused}");
    let refused = g
        .put(
            &format!("/api/work-orders/{id}/inspection/items/{brakes}"),
            json!({"rating": "BROKEN"}),
        )
        .await;
    assert_eq!(
        refused.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        refused.text
    );

    let photos = format!("/api/work-orders/{id}/inspection/items/{brakes}/photos");
    let (status, added) = upload(&g, &photos, "image/jpeg", jpeg(40, 30)).await;
    assert_eq!(status, StatusCode::CREATED, "{added}");
    let photo_id = added["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["id"] == brakes.as_str())
        .unwrap()["photos"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let photo = g
        .http
        .get(format!(
            "{}/api/work-orders/{id}/inspection/photos/{photo_id}",
            g.base
        ))
        .bearer_auth(&g.token)
        .send()
        .await
        .unwrap();
    assert_eq!(photo.status(), StatusCode::OK);
    assert_eq!(photo.headers()["content-type"], "image/jpeg");
    assert!(photo.bytes().await.unwrap().starts_with(&[0xFF, 0xD8]));

    // Declared as something else, not an image, too large: each refused with the reason.
    let (status, problem) = upload(&g, &photos, "application/pdf", b"%PDF-1.7".to_vec()).await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{problem}");
    let (status, problem) = upload(&g, &photos, "image/png", b"%PDF-1.7 disguised".to_vec()).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{problem}");
    assert_eq!(problem["errors"][0]["field"], "content", "{problem}");
    let (status, _) = upload(&g, &photos, "image/jpeg", vec![0xFF; 10 * 1024 * 1024 + 1]).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    // Other routes keep the small limit.
    let mut big = br#"{"rating": "OK", "note": ""#.to_vec();
    big.extend(vec![b'n'; 2 * 1024 * 1024]);
    big.extend(br#""}"#);
    let response = g
        .http
        .put(format!(
            "{}/api/work-orders/{id}/inspection/items/{brakes}",
            g.base
        ))
        .bearer_auth(&g.token)
        .header("content-type", "application/json")
        .body(big)
        .send()
        .await
        .unwrap();
    let status = response.status();
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);

    // Without a token, nothing of the garage's inspections.
    let anonymous = g
        .call_as(
            None,
            reqwest::Method::GET,
            &format!("/api/work-orders/{id}/inspection"),
            None,
        )
        .await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);

    let refused = g
        .post(
            &format!("/api/work-orders/{id}/inspection/complete"),
            json!({}),
        )
        .await
        .expect(StatusCode::CONFLICT);
    assert!(
        refused["detail"]
            .as_str()
            .unwrap()
            .contains("19 items are not rated"),
        "{refused}"
    );
    g.stop().await;
}

#[sqlx::test(migrator = "carerp_identity::MIGRATOR")]
async fn a_technician_inspects_on_the_page_and_the_customer_sees_the_photos(pool: PgPool) {
    let g = Garage::with_pages(pool).await;
    let order = g.work_order().await;
    let id = order["id"].as_str().unwrap();
    let tech = g.browser_as("TECHNICIAN").await;

    let empty = tech.get(&format!("/work-orders/{id}/inspection")).await;
    assert_eq!(empty.status, StatusCode::OK, "{}", empty.html);
    assert!(
        empty.html.contains("id=\"start-inspection\""),
        "{}",
        empty.html
    );
    let started = tech
        .post(
            &format!("/work-orders/{id}/inspection"),
            &[("template_id", "")],
        )
        .await;
    assert_eq!(started.status, StatusCode::SEE_OTHER, "{}", started.html);
    let inspection = g
        .get(&format!("/api/work-orders/{id}/inspection"))
        .await
        .expect(StatusCode::OK);
    let items: Vec<String> = inspection["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap().to_string())
        .collect();
    let wipers = item_id(&inspection, "Wiper blades");

    // A finding that needs work without a note: refused beside its item.
    let refused = tech
        .post(
            &format!("/work-orders/{id}/inspection/items/{wipers}"),
            &[("rating", "ADVISE"), ("note", "")],
        )
        .await;
    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        refused.html.contains(&format!("id=\"error-{wipers}\"")),
        "{}",
        refused.html
    );
    for item in &items {
        let (rating, note) = if *item == wipers {
            ("ADVISE", "Smearing <badly>")
        } else {
            ("OK", "")
        };
        let saved = tech
            .post(
                &format!("/work-orders/{id}/inspection/items/{item}"),
                &[("rating", rating), ("note", note)],
            )
            .await;
        assert_eq!(saved.status, StatusCode::SEE_OTHER, "{}", saved.html);
        assert_eq!(
            saved.location(),
            Some(format!("/work-orders/{id}/inspection#item-{item}").as_str())
        );
    }

    // The phone's upload: a multipart form with the camera's file.
    let form = reqwest::multipart::Form::new().part(
        "photo",
        reqwest::multipart::Part::bytes(jpeg(64, 48))
            .file_name("IMG_0001.jpg")
            .mime_str("image/jpeg")
            .unwrap(),
    );
    let uploaded = Browser::page(
        tech.http
            .post(format!(
                "{}/work-orders/{id}/inspection/items/{wipers}/photos",
                g.base
            ))
            .multipart(form)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(uploaded.status, StatusCode::SEE_OTHER, "{}", uploaded.html);
    let not_image = reqwest::multipart::Form::new().part(
        "photo",
        reqwest::multipart::Part::bytes(b"hello".to_vec()).file_name("notes.jpg"),
    );
    let refused = Browser::page(
        tech.http
            .post(format!(
                "{}/work-orders/{id}/inspection/items/{wipers}/photos",
                g.base
            ))
            .multipart(not_image)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        refused.html.contains("not a JPEG, PNG or WebP"),
        "{}",
        refused.html
    );

    let page = tech.get(&format!("/work-orders/{id}/inspection")).await;
    assert!(
        page.html.contains("Smearing &#60;badly&#62;"),
        "{}",
        page.html
    );
    assert!(page.html.contains("/inspection/photos/"), "{}", page.html);
    let done = tech
        .post(&format!("/work-orders/{id}/inspection/complete"), &[])
        .await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.html);
    let proposed = tech
        .post(&format!("/work-orders/{id}/inspection/jobs"), &[])
        .await;
    assert_eq!(proposed.status, StatusCode::SEE_OTHER, "{}", proposed.html);
    let order = g
        .get(&format!("/api/work-orders/{id}"))
        .await
        .expect(StatusCode::OK);
    let job = order["jobs"][1].clone();
    assert_eq!(
        job["title"],
        "Wiper blades and washer fluid: Smearing <badly>"
    );
    assert_eq!(job["state"], "PROPOSED");
    let job_id = job["id"].as_str().unwrap();
    g.post(
        &format!("/api/work-orders/{id}/labor"),
        json!({"description": "Fit blades", "minutes": 10, "jobId": job_id}),
    )
    .await
    .expect(StatusCode::OK);
    let sent = g
        .post(&format!("/api/work-orders/{id}/estimates"), json!({}))
        .await
        .expect(StatusCode::CREATED);
    let token = sent["approvalToken"].as_str().unwrap();

    // The customer's page: the finding and its photo under the job, the photo through the
    // link alone.
    let customer = Browser::new(&g.base);
    let approval = customer.get(&format!("/approve/{token}")).await;
    assert_eq!(approval.status, StatusCode::OK, "{}", approval.html);
    assert!(
        approval.html.contains("id=\"inspection\""),
        "{}",
        approval.html
    );
    let photo_path = {
        let start = approval
            .html
            .find(&format!("/approve/{token}/photos/"))
            .expect("a photo on the approval page");
        approval.html[start..start + format!("/approve/{token}/photos/").len() + 36].to_string()
    };
    let photo = customer
        .http
        .get(format!("{}{photo_path}", g.base))
        .send()
        .await
        .unwrap();
    assert_eq!(photo.status(), StatusCode::OK);
    assert_eq!(photo.headers()["content-type"], "image/jpeg");
    let forged = customer
        .http
        .get(format!(
            "{}{}",
            g.base,
            photo_path.replace(token, &"A".repeat(43))
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), StatusCode::NOT_FOUND);
    g.stop().await;
}
