//! The pages over HTTP on a whole garage: sessions, who sees and may do what, cross-site
//! requests, field errors, and a page with a service down.

mod common;

use common::{Browser, Garage, OWNER_PASSWORD, STAFF_PASSWORD};
use reqwest::StatusCode;
use serde_json::json;
use sqlx::PgPool;

/// An invoice of a work order with one labour line (2 h at 90.00, 20% tax: 216.00).
async fn invoice(garage: &Garage) -> serde_json::Value {
    let order = garage.work_order().await;
    let id = order["id"].as_str().unwrap();
    let order = garage
        .post(
            &format!("/api/work-orders/{id}/labor"),
            json!({"description": "Brake pads", "technician": "Tom", "minutes": 120}),
        )
        .await
        .expect(StatusCode::OK);
    garage.invoice(&order).await;
    let list = garage.get("/api/invoices").await.expect(StatusCode::OK);
    list["items"][0].clone()
}

#[sqlx::test]
async fn signing_in_sets_a_strict_http_only_cookie_and_pages_without_it_go_to_sign_in(
    pool: PgPool,
) {
    let garage = Garage::with_pages(pool).await;
    let anonymous = Browser::new(&garage.base);
    for path in ["/", "/customers", "/invoices"] {
        let page = anonymous.get(path).await;
        assert_eq!(page.status, StatusCode::SEE_OTHER, "{path}");
        assert_eq!(page.location(), Some("/sign-in"), "{path}");
    }
    let form = anonymous.get("/sign-in").await;
    assert_eq!(form.status, StatusCode::OK);
    let csp = form.headers["content-security-policy"].to_str().unwrap();
    assert!(csp.starts_with("default-src 'self'"), "{csp}");
    assert!(!form.html.contains("<script>"), "no inline script");

    let wrong = anonymous
        .post(
            "/sign-in",
            &[("email", &garage.owner_email), ("password", "nope")],
        )
        .await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert!(wrong.html.contains("The email or the password is wrong."));

    let signed_in = anonymous.sign_in(&garage.owner_email, OWNER_PASSWORD).await;
    let cookie = signed_in.set_cookie().unwrap();
    assert!(cookie.starts_with("carerp_session="), "{cookie}");
    assert!(cookie.contains("HttpOnly"), "{cookie}");
    assert!(cookie.contains("SameSite=Strict"), "{cookie}");
    assert!(!cookie.contains("Secure"), "plain HTTP: {cookie}");
    let today = anonymous.get("/").await;
    assert_eq!(today.status, StatusCode::OK, "{}", today.html);
    assert!(today.html.contains("Work orders by status"));
    assert!(today.html.contains("Revenue this month"));

    // Behind TLS the cookie is Secure.
    let tls = anonymous
        .http
        .post(garage.url("/sign-in"))
        .header("x-forwarded-proto", "https")
        .header("origin", garage.base.replace("http://", "https://"))
        .form(&[
            ("email", garage.owner_email.as_str()),
            ("password", OWNER_PASSWORD),
        ])
        .send()
        .await
        .unwrap();
    let cookie = tls.headers()["set-cookie"].to_str().unwrap();
    assert!(cookie.contains("Secure"), "{cookie}");
    garage.stop().await;
}

#[sqlx::test]
async fn a_role_without_record_payment_sees_no_payment_form_and_a_forged_one_is_refused(
    pool: PgPool,
) {
    let garage = Garage::with_pages(pool).await;
    let invoice = invoice(&garage).await;
    let id = invoice["id"].as_str().unwrap();
    let path = format!("/invoices/{id}");

    let owner = garage.owner_browser().await;
    let page = owner.get(&path).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.html);
    assert!(page.html.contains("id=\"payment-form\""));

    let advisor = garage.browser_as("SERVICE_ADVISOR").await;
    let page = advisor.get(&path).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.html);
    assert!(page.html.contains(invoice["number"].as_str().unwrap()));
    assert!(
        !page.html.contains("payment-form"),
        "no payment form for an advisor"
    );
    assert!(!page.html.contains("Record payment"));

    let technician = garage.browser_as("TECHNICIAN").await;
    assert_eq!(technician.get(&path).await.status, StatusCode::FORBIDDEN);
    let today = technician.get("/").await;
    assert!(
        !today.html.contains("Revenue this month"),
        "technicians read no money"
    );
    assert!(!today.html.contains("href=\"/invoices\""));

    for forger in [&advisor, &technician] {
        let forged = forger
            .post(
                &format!("{path}/payments"),
                &[
                    ("amount", "10.00"),
                    ("method", "CASH"),
                    ("idempotency_key", "forged"),
                ],
            )
            .await;
        assert_eq!(forged.status, StatusCode::FORBIDDEN, "{}", forged.html);
        assert!(forged.html.contains("Your role may not do this."));
    }
    let after = garage
        .get(&format!("/api/invoices/{id}"))
        .await
        .expect(StatusCode::OK);
    assert_eq!(after["payments"], json!([]), "nothing recorded: {after}");
    garage.stop().await;
}

#[sqlx::test]
async fn the_owner_records_a_partial_payment_and_a_bad_amount_is_shown_at_its_field(pool: PgPool) {
    let garage = Garage::with_pages(pool).await;
    let invoice = invoice(&garage).await;
    let id = invoice["id"].as_str().unwrap();
    let owner = garage.owner_browser().await;
    let path = format!("/invoices/{id}/payments");

    let bad = owner
        .post(
            &path,
            &[
                ("amount", "12,5x"),
                ("method", "CARD"),
                ("idempotency_key", "k1"),
            ],
        )
        .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(bad.html.contains("id=\"amount-error\""), "{}", bad.html);
    assert!(bad.html.contains("is not an amount"));

    let paid = owner
        .post(
            &path,
            &[
                ("amount", "100.00"),
                ("method", "CARD"),
                ("idempotency_key", "k2"),
            ],
        )
        .await;
    assert_eq!(paid.status, StatusCode::SEE_OTHER, "{}", paid.html);
    let page = owner.get(paid.location().unwrap()).await;
    assert!(page.html.contains("Payment recorded."));
    assert!(page.html.contains("€100.00"), "{}", page.html);
    assert!(page.html.contains("Partially paid"));
    let print = owner.get(&format!("/invoices/{id}/print")).await;
    assert_eq!(print.status, StatusCode::OK);
    assert!(print.html.contains("€216.00"), "{}", print.html);
    for printed in [
        // The labour line: 120 minutes at 90.00 an hour.
        "<td class=\"num\">2 h</td>",
        "Hopper &#38; Sons Motors",
        "<br>12 Harbour Road<br>Portsmouth PO1 3AB",
        "Tax number: GB 123 4567 89",
    ] {
        assert!(print.html.contains(printed), "{printed}: {}", print.html);
    }
    garage.stop().await;
}

#[sqlx::test]
async fn a_form_sent_from_another_site_or_without_an_origin_is_refused(pool: PgPool) {
    let garage = Garage::with_pages(pool).await;
    let owner = garage.owner_browser().await;
    let form = [
        ("name", "Mallory"),
        ("phone", "+4930123456"),
        ("idempotency_key", "x"),
    ];
    let cross_site = owner
        .http
        .post(garage.url("/customers"))
        .header("origin", "https://evil.example")
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(cross_site.status(), StatusCode::FORBIDDEN);
    let fetch_metadata = owner
        .http
        .post(garage.url("/customers"))
        .header("sec-fetch-site", "cross-site")
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(fetch_metadata.status(), StatusCode::FORBIDDEN);
    let no_origin = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .post(garage.url("/sign-in"))
        .form(&[
            ("email", garage.owner_email.as_str()),
            ("password", OWNER_PASSWORD),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(no_origin.status(), StatusCode::FORBIDDEN);
    assert!(no_origin.headers().get("set-cookie").is_none());
    let customers = garage
        .get("/api/customers?q=Mallory")
        .await
        .expect(StatusCode::OK);
    assert_eq!(customers["items"], json!([]), "nothing created");
    garage.stop().await;
}

#[sqlx::test]
async fn field_errors_appear_next_to_their_fields_and_the_form_keeps_what_was_typed(pool: PgPool) {
    let garage = Garage::with_pages(pool).await;
    let owner = garage.owner_browser().await;
    let page = owner
        .post(
            "/customers",
            &[
                ("name", ""),
                ("email", "not-an-email"),
                ("phone", "12"),
                ("idempotency_key", "f1"),
            ],
        )
        .await;
    assert_eq!(
        page.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        page.html
    );
    for field in ["name", "email", "phone"] {
        let input = page.html.find(&format!("id=\"{field}\"")).unwrap();
        let error = page
            .html
            .find(&format!("id=\"{field}-error\""))
            .unwrap_or_else(|| panic!("no error for {field}: {}", page.html));
        assert!(error > input, "{field}'s error follows its input");
    }
    assert!(page.html.contains("value=\"not-an-email\""));

    let created = owner
        .post(
            "/customers",
            &[
                ("name", "Ada <b>Lovelace</b>"),
                ("phone", "+4930123456"),
                ("idempotency_key", "f2"),
            ],
        )
        .await;
    assert_eq!(created.status, StatusCode::SEE_OTHER, "{}", created.html);
    let list = owner.get(created.location().unwrap()).await;
    assert!(list.html.contains("Customer created."));
    assert!(
        list.html.contains("Ada &#60;b&#62;Lovelace&#60;/b&#62;"),
        "escaped: {}",
        list.html
    );
    // htmx's search asks for the results only.
    let results = owner
        .http
        .get(garage.url("/customers?q=lovelace"))
        .header("hx-request", "true")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(results.starts_with("<div id=\"results\""), "{results}");
    assert!(results.contains("Lovelace"));
    garage.stop().await;
}

/// Waits until pages opened with `cookie` (a session since ended) go to sign-in: the BFF
/// hears of a revocation through the tenant's stream, a moment after it happened.
async fn old_cookie_is_refused(garage: &Garage, cookie: &str) {
    for _ in 0..50 {
        let stale = garage
            .http
            .get(garage.url("/"))
            .header("cookie", cookie)
            .send()
            .await
            .unwrap();
        if stale.url().path() == "/sign-in" {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("the old cookie still opens pages");
}

#[sqlx::test]
async fn signing_out_ends_the_session_and_the_old_cookie_no_longer_works(pool: PgPool) {
    let garage = Garage::with_pages(pool).await;
    let browser = Browser::new(&garage.base);
    let signed_in = browser.sign_in(&garage.owner_email, OWNER_PASSWORD).await;
    let cookie = signed_in
        .set_cookie()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let out = browser.post("/sign-out", &[]).await;
    assert_eq!(out.status, StatusCode::SEE_OTHER);
    assert_eq!(out.location(), Some("/sign-in"));
    assert!(out.set_cookie().unwrap().contains("Max-Age=0"));
    // Someone who kept the cookie: the session has ended.
    old_cookie_is_refused(&garage, &cookie).await;
    garage.stop().await;
}

#[sqlx::test]
async fn a_one_time_password_must_be_changed_before_any_other_page(pool: PgPool) {
    let garage = Garage::with_pages(pool).await;
    let created = garage
        .post(
            "/api/users",
            json!({"email": "new@example.com", "displayName": "New Person", "role": "SERVICE_ADVISOR"}),
        )
        .await
        .expect(StatusCode::CREATED);
    let one_time = created["oneTimePassword"].as_str().unwrap();
    let browser = Browser::new(&garage.base);
    let signed_in = browser.sign_in("new@example.com", one_time).await;
    assert_eq!(signed_in.location(), Some("/password"));
    let today = browser.get("/").await;
    assert_eq!(today.location(), Some("/password"));
    let weak = browser
        .post(
            "/password",
            &[("current_password", one_time), ("new_password", "short")],
        )
        .await;
    assert_eq!(weak.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        weak.html.contains("id=\"new_password-error\""),
        "{}",
        weak.html
    );
    let changed = browser
        .post(
            "/password",
            &[
                ("current_password", one_time),
                ("new_password", STAFF_PASSWORD),
            ],
        )
        .await;
    assert_eq!(changed.status, StatusCode::SEE_OTHER, "{}", changed.html);
    assert_eq!(changed.location(), Some("/"));
    assert_eq!(browser.get("/").await.status, StatusCode::OK);
    garage.stop().await;
}

#[sqlx::test]
async fn a_page_whose_service_is_down_says_what_is_missing_and_the_rest_works(pool: PgPool) {
    let mut garage = Garage::with_pages(pool).await;
    let order = garage.work_order().await;
    let owner = garage.owner_browser().await;
    garage.inventory.take().unwrap().stop().await.unwrap();
    let today = owner.get("/").await;
    assert_eq!(today.status, StatusCode::OK, "{}", today.html);
    assert!(today.html.contains("Parts and stock are unavailable"));
    assert!(today.html.contains("Work orders by status"));
    let detail = owner
        .get(&format!("/work-orders/{}", order["id"].as_str().unwrap()))
        .await;
    assert_eq!(detail.status, StatusCode::OK, "{}", detail.html);
    assert!(detail.html.contains("Parts and stock are unavailable"));
    assert!(detail.html.contains("Brakes squeal"));
    garage.billing.take().unwrap().stop().await.unwrap();
    let invoices = owner.get("/invoices").await;
    assert_eq!(invoices.status, StatusCode::OK);
    assert!(invoices.html.contains("Invoices are unavailable"));
    garage.stop().await;
}

#[sqlx::test]
async fn the_board_shows_cards_in_their_columns_and_a_move_follows_the_apis_rules(pool: PgPool) {
    let garage = Garage::with_pages(pool).await;
    let order = garage.work_order().await;
    let id = order["id"].as_str().unwrap();
    let number = order["number"].as_str().unwrap();
    let owner = garage.owner_browser().await;

    let board = owner.get("/work-orders").await;
    assert_eq!(board.status, StatusCode::OK, "{}", board.html);
    for column in [
        "Open",
        "In progress",
        "Awaiting parts",
        "Completed",
        "Invoiced",
    ] {
        assert!(board.html.contains(&format!(">{column} <")), "{column}");
    }
    assert!(
        !board.html.contains("id=\"col-CANCELLED\""),
        "behind the filter"
    );
    let open = board.html.find("id=\"col-OPEN\"").unwrap();
    let card = board.html.find(&format!("id=\"card-{id}\"")).unwrap();
    let next = board.html.find("id=\"col-IN_PROGRESS\"").unwrap();
    assert!(open < card && card < next, "the card is in Open");
    assert!(board.html.contains("Wanda Web"));
    assert!(board.html.contains("B-XY 123"));
    assert!(board.html.contains("Open for 0 min"), "{}", board.html);
    assert!(
        board
            .html
            .contains(&format!("{number}: Move to In progress"))
    );

    let moved = owner
        .post(
            &format!("/work-orders/{id}/status"),
            &[
                ("status", "IN_PROGRESS"),
                ("expected_version", "1"),
                ("back", "board"),
            ],
        )
        .await;
    assert_eq!(moved.status, StatusCode::SEE_OTHER, "{}", moved.html);
    assert_eq!(
        moved.location(),
        Some(format!("/work-orders#card-{id}").as_str())
    );
    let after = garage
        .get(&format!("/api/work-orders/{id}"))
        .await
        .expect(StatusCode::OK);
    assert_eq!(after["status"], "IN_PROGRESS");

    // The card as it was before: its version is stale, and the page offers a reload.
    let stale = owner
        .post(
            &format!("/work-orders/{id}/status"),
            &[
                ("status", "AWAITING_PARTS"),
                ("expected_version", "1"),
                ("back", "board"),
            ],
        )
        .await;
    assert_eq!(
        stale.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        stale.html
    );
    assert!(stale.html.contains("Someone else changed this work order"));
    assert!(stale.html.contains("id=\"reload\""));

    // A move the life cycle refuses comes back in the service's words.
    let refused = owner
        .post(
            &format!("/work-orders/{id}/status"),
            &[("status", "OPEN"), ("back", "board")],
        )
        .await;
    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        refused.html.contains("a work order never returns to OPEN"),
        "{}",
        refused.html
    );

    // A technician may start and complete, not park an order awaiting parts.
    let technician = garage.browser_as("TECHNICIAN").await;
    let board = technician.get("/work-orders").await;
    assert!(board.html.contains(&format!("{number}: Move to Completed")));
    assert!(
        !board
            .html
            .contains(&format!("{number}: Move to Awaiting parts"))
    );

    owner
        .post(
            &format!("/work-orders/{id}/status"),
            &[("status", "CANCELLED"), ("reason", "Customer left")],
        )
        .await;
    let board = owner.get("/work-orders").await;
    assert!(!board.html.contains(&format!("id=\"card-{id}\"")));
    let with_cancelled = owner.get("/work-orders?cancelled=1").await;
    let cancelled = with_cancelled.html.find("id=\"col-CANCELLED\"").unwrap();
    let card = with_cancelled
        .html
        .find(&format!("id=\"card-{id}\""))
        .unwrap();
    assert!(cancelled < card);
    garage.stop().await;
}

/// Polls the work order through the API until its first part line is in `state`.
async fn part_line_becomes(garage: &Garage, id: &str, state: &str) -> serde_json::Value {
    for _ in 0..100 {
        let order = garage
            .get(&format!("/api/work-orders/{id}"))
            .await
            .expect(StatusCode::OK);
        if order["partLines"][0]["reservationState"] == state {
            return order;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("the part line never became {state}");
}

#[sqlx::test]
async fn a_failed_reservation_is_retried_from_the_page_once_stock_has_arrived(pool: PgPool) {
    let garage = Garage::with_pages(pool).await;
    let part = garage.part("PAD-01", 1, 0).await;
    let order = garage.work_order().await;
    let id = order["id"].as_str().unwrap();
    let owner = garage.owner_browser().await;
    let added = owner
        .post(
            &format!("/work-orders/{id}/parts"),
            &[
                ("part_id", part["id"].as_str().unwrap()),
                ("quantity", "3"),
                ("idempotency_key", "p1"),
            ],
        )
        .await;
    assert_eq!(added.status, StatusCode::SEE_OTHER, "{}", added.html);
    part_line_becomes(&garage, id, "FAILED").await;
    let page = owner.get(&format!("/work-orders/{id}")).await;
    assert!(page.html.contains("id=\"retry-form\""), "{}", page.html);
    let technician = garage.browser_as("TECHNICIAN").await;
    let theirs = technician.get(&format!("/work-orders/{id}")).await;
    assert!(
        !theirs.html.contains("retry-form"),
        "technicians may not retry"
    );
    let forged = technician
        .post(
            &format!("/work-orders/{id}/retry"),
            &[("expected_version", "0")],
        )
        .await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);

    garage
        .post(
            &format!(
                "/api/parts/{}/stock-adjustments",
                part["id"].as_str().unwrap()
            ),
            json!({"kind": "RECEIPT", "delta": 5, "reason": "delivery"}),
        )
        .await
        .expect(StatusCode::OK);
    let current = garage
        .get(&format!("/api/work-orders/{id}"))
        .await
        .expect(StatusCode::OK);
    let version = current["audit"]["version"].to_string();
    let retried = owner
        .post(
            &format!("/work-orders/{id}/retry"),
            &[("expected_version", &version)],
        )
        .await;
    assert_eq!(retried.status, StatusCode::SEE_OTHER, "{}", retried.html);
    part_line_becomes(&garage, id, "RESERVED").await;
    garage.stop().await;
}

#[sqlx::test]
async fn lines_are_removed_a_status_change_is_confirmed_first_and_the_job_card_prints(
    pool: PgPool,
) {
    let garage = Garage::with_pages(pool).await;
    let order = garage.work_order().await;
    let id = order["id"].as_str().unwrap();
    let order = garage
        .post(
            &format!("/api/work-orders/{id}/labor"),
            json!({"description": "Brake <pads>", "technician": "Tom", "minutes": 60}),
        )
        .await
        .expect(StatusCode::OK);
    let line = order["laborLines"][0]["id"].as_str().unwrap();
    let owner = garage.owner_browser().await;
    let page = owner.get(&format!("/work-orders/{id}")).await;
    assert!(page.html.contains(&format!("id=\"remove-labor-{line}\"")));

    let print = owner.get(&format!("/work-orders/{id}/print")).await;
    assert_eq!(print.status, StatusCode::OK, "{}", print.html);
    assert!(print.html.contains("Job card"));
    assert!(
        print.html.contains("Hopper &#38; Sons Motors"),
        "{}",
        print.html
    );
    assert!(print.html.contains("Brakes squeal"));
    assert!(print.html.contains("Brake &#60;pads&#62;"), "escaped");
    assert!(print.html.contains("B-XY 123"));
    assert!(print.html.contains("42100 km"));
    assert!(
        print.html.contains("Customer&#39;s signature")
            || print.html.contains("Customer's signature")
    );

    let confirm = owner
        .get(&format!("/work-orders/{id}/status?status=IN_PROGRESS"))
        .await;
    assert_eq!(confirm.status, StatusCode::OK);
    assert!(confirm.html.contains("Change the status?"));
    assert!(confirm.html.contains("id=\"confirm\""));
    let unchanged = garage
        .get(&format!("/api/work-orders/{id}"))
        .await
        .expect(StatusCode::OK);
    assert_eq!(unchanged["status"], "OPEN", "asking changes nothing");
    let version = unchanged["audit"]["version"].to_string();

    let removed = owner
        .post(
            &format!("/work-orders/{id}/labor/{line}/remove"),
            &[("expected_version", &version)],
        )
        .await;
    assert_eq!(removed.status, StatusCode::SEE_OTHER, "{}", removed.html);
    let after = garage
        .get(&format!("/api/work-orders/{id}"))
        .await
        .expect(StatusCode::OK);
    assert_eq!(after["laborLines"], json!([]));

    // The confirmation was read before the removal: its version is stale.
    let stale = owner
        .post(
            &format!("/work-orders/{id}/status"),
            &[("status", "IN_PROGRESS"), ("expected_version", &version)],
        )
        .await;
    assert_eq!(
        stale.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        stale.html
    );
    assert!(stale.html.contains("Someone else changed this work order"));
    assert!(stale.html.contains("id=\"reload\""));
    garage.stop().await;
}

#[sqlx::test]
async fn low_stock_links_from_today_and_lists_the_reorder_quantity(pool: PgPool) {
    let garage = Garage::with_pages(pool).await;
    garage.part("FLT-LOW", 1, 5).await;
    garage.part("FLT-FULL", 50, 5).await;
    let advisor = garage.browser_as("SERVICE_ADVISOR").await;
    let today = advisor.get("/").await;
    assert!(
        today.html.contains("href=\"/parts?low=1\""),
        "{}",
        today.html
    );
    let low = advisor.get("/parts?low=1").await;
    assert_eq!(low.status, StatusCode::OK, "{}", low.html);
    assert!(low.html.contains("FLT-LOW"));
    assert!(!low.html.contains("FLT-FULL"));
    assert!(low.html.contains("Reorder quantity") || low.html.contains("reorder"));
    let row = &low.html[low.html.find("FLT-LOW").unwrap()..];
    assert!(
        row.contains("<td class=\"num\">10</td>"),
        "reorder quantity: {row}"
    );
    let found = advisor.get("/parts?q=full").await;
    assert!(found.html.contains("FLT-FULL"));
    assert!(!found.html.contains("FLT-LOW"));
    assert!(
        !found.html.contains("href=\"/parts/new\""),
        "advisors do not create parts"
    );
    let forged = advisor
        .post("/parts", &[("sku", "X-1"), ("name", "Forged")])
        .await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    garage.stop().await;
}

#[sqlx::test]
async fn a_part_is_created_edited_received_and_adjusted_and_the_ledger_shows_it(pool: PgPool) {
    let garage = Garage::with_pages(pool).await;
    let manager = garage.browser_as("PARTS_MANAGER").await;
    let form = |price: &'static str| {
        vec![
            ("sku", "BRK-100"),
            ("name", "Brake disc"),
            ("category", "brakes"),
            ("unit_cost", "20.00"),
            ("unit_price", price),
            ("location", "B-02"),
            ("reorder_point", "2"),
            ("reorder_quantity", "6"),
            ("initial_quantity", "4"),
            ("idempotency_key", "new-part-1"),
        ]
    };
    let bad = manager.post("/parts", &form("12,5x")).await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    let input = bad.html.find("id=\"unit_price\"").unwrap();
    let error = bad.html.find("id=\"unit_price-error\"").unwrap();
    assert!(input < error, "the error follows its field");
    assert!(
        bad.html.contains("value=\"BRK-100\""),
        "what was typed stays"
    );

    let created = manager.post("/parts", &form("45.00")).await;
    assert_eq!(created.status, StatusCode::SEE_OTHER, "{}", created.html);
    let path = created
        .location()
        .unwrap()
        .split('?')
        .next()
        .unwrap()
        .to_string();
    let page = manager.get(created.location().unwrap()).await;
    assert!(page.html.contains("Saved."), "{}", page.html);
    assert!(page.html.contains("€45.00"));

    let edit = manager.get(&format!("{path}/edit")).await;
    assert!(edit.html.contains("value=\"45.00\""), "{}", edit.html);
    let version = {
        let at = edit
            .html
            .find("name=\"expected_version\" value=\"")
            .unwrap()
            + 31;
        edit.html[at..].split('"').next().unwrap().to_string()
    };
    let edited = manager
        .post(
            &path,
            &[
                ("name", "Brake disc, vented"),
                ("unit_cost", "20.00"),
                ("unit_price", "49.90"),
                ("location", "B-03"),
                ("reorder_point", "2"),
                ("reorder_quantity", "6"),
                ("active", "on"),
                ("expected_version", &version),
            ],
        )
        .await;
    assert_eq!(edited.status, StatusCode::SEE_OTHER, "{}", edited.html);
    let stale = manager
        .post(
            &path,
            &[
                ("name", "Brake disc, old"),
                ("unit_cost", "20.00"),
                ("unit_price", "49.90"),
                ("reorder_point", "2"),
                ("reorder_quantity", "6"),
                ("expected_version", &version),
            ],
        )
        .await;
    assert_eq!(
        stale.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        stale.html
    );
    assert!(stale.html.contains("Someone else changed this part"));
    assert!(stale.html.contains("id=\"reload\""));

    let stock = format!("{path}/stock");
    let received = manager
        .post(
            &stock,
            &[
                ("kind", "RECEIPT"),
                ("delta", "5"),
                ("reason", "Delivery 4711"),
                ("idempotency_key", "r1"),
            ],
        )
        .await;
    assert_eq!(received.status, StatusCode::SEE_OTHER, "{}", received.html);
    let zero = manager
        .post(
            &stock,
            &[
                ("kind", "ADJUSTMENT"),
                ("delta", "0"),
                ("reason", "count"),
                ("idempotency_key", "a0"),
            ],
        )
        .await;
    assert_eq!(zero.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        zero.html.contains("id=\"adjust-delta-error\""),
        "{}",
        zero.html
    );
    assert!(!zero.html.contains("id=\"receive-delta-error\""));
    let adjusted = manager
        .post(
            &stock,
            &[
                ("kind", "ADJUSTMENT"),
                ("delta", "-2"),
                ("reason", "Damaged in storage"),
                ("idempotency_key", "a1"),
            ],
        )
        .await;
    assert_eq!(adjusted.status, StatusCode::SEE_OTHER, "{}", adjusted.html);
    let page = manager.get(&path).await;
    assert!(page.html.contains("Brake disc, vented"));
    assert!(
        page.html.contains("<dd id=\"on-hand\">7</dd>"),
        "{}",
        page.html
    );
    let ledger = &page.html[page.html.find("id=\"movements\"").unwrap()..];
    for text in [
        "Received",
        "Delivery 4711",
        "+5",
        "Adjusted",
        "Damaged in storage",
        "-2",
    ] {
        assert!(ledger.contains(text), "{text}: {ledger}");
    }
    let advisor = garage.browser_as("SERVICE_ADVISOR").await;
    let theirs = advisor.get(&path).await;
    assert!(!theirs.html.contains("receive-form"));
    assert!(!theirs.html.contains("edit-part"));
    garage.stop().await;
}

#[sqlx::test]
async fn a_customer_is_edited_with_errors_beside_their_fields_and_gets_a_vehicle(pool: PgPool) {
    let garage = Garage::with_pages(pool).await;
    let (id, _) = garage
        .customer_with_vehicle("Ada Lovelace", "WVWZZZ1JZ3W000111")
        .await;
    let owner = garage.owner_browser().await;
    let path = format!("/customers/{id}");
    let search = owner.get("/customers?q=lovelace").await;
    assert!(search.html.contains(&format!("href=\"{path}\"")));
    let page = owner.get(&path).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.html);
    assert!(page.html.contains("B-XY 123"));
    assert!(page.html.contains("42,000 km"));

    let edit = owner.get(&format!("{path}/edit")).await;
    assert_eq!(edit.status, StatusCode::OK, "{}", edit.html);
    let form = |email: &'static str, version: &'static str| {
        vec![
            ("name", "Ada King"),
            ("email", email),
            ("phone", "+4930123456"),
            ("city", "London"),
            ("country", "GB"),
            ("line1", "12 St James's Square"),
            ("postal_code", "SW1Y 4JH"),
            ("expected_version", version),
        ]
    };
    let bad = owner.post(&path, &form("not-an-email", "1")).await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", bad.html);
    let input = bad.html.find("id=\"email\"").unwrap();
    let error = bad.html.find("id=\"email-error\"").unwrap();
    assert!(input < error, "the error follows its field");
    assert!(bad.html.contains("value=\"Ada King\""));
    let saved = owner.post(&path, &form("ada@example.com", "1")).await;
    assert_eq!(saved.status, StatusCode::SEE_OTHER, "{}", saved.html);
    let stale = owner.post(&path, &form("ada@example.com", "1")).await;
    assert_eq!(
        stale.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        stale.html
    );
    assert!(stale.html.contains("id=\"reload\""), "{}", stale.html);
    let page = owner.get(saved.location().unwrap()).await;
    assert!(page.html.contains("Ada King"));
    assert!(page.html.contains("London"));

    let vehicles = format!("{path}/vehicles");
    let bad = owner
        .post(
            &vehicles,
            &[
                ("vin", "SHORT"),
                ("make", "Ford"),
                ("model", "Focus"),
                ("year", "2021"),
                ("license_plate", "L-AB 1"),
                ("idempotency_key", "v1"),
            ],
        )
        .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", bad.html);
    let input = bad.html.find("id=\"vin\"").unwrap();
    let error = bad.html.find("id=\"vin-error\"").unwrap();
    assert!(input < error);
    // A North American VIN with one character mistyped: the check digit says which it should be.
    let mistyped = owner
        .post(
            &vehicles,
            &[
                ("vin", "1FADP3F21JL000222"),
                ("make", "Ford"),
                ("model", "Focus"),
                ("year", "2021"),
                ("license_plate", "L-AB 1"),
                ("idempotency_key", "v1"),
            ],
        )
        .await;
    assert_eq!(mistyped.status, StatusCode::UNPROCESSABLE_ENTITY);
    let error = &mistyped.html[mistyped.html.find("id=\"vin-error\"").unwrap()..];
    assert!(
        error.contains("check digit is 9, the VIN says 1"),
        "{}",
        mistyped.html
    );
    let added = owner
        .post(
            &vehicles,
            &[
                ("vin", "1FADP3F29JL000222"),
                ("make", "Ford"),
                ("model", "Focus"),
                ("year", "2021"),
                ("license_plate", "L-AB 1"),
                ("mileage", "1500"),
                ("idempotency_key", "v2"),
            ],
        )
        .await;
    assert_eq!(added.status, StatusCode::SEE_OTHER, "{}", added.html);
    assert!(added.location().unwrap().starts_with("/vehicles/"));
    let page = owner.get(&path).await;
    assert!(page.html.contains("L-AB 1"));
    // The vehicle page shows what the VIN decodes to beside what was typed: year code J with
    // a letter at position 7 is 2018, the form said 2021.
    let vehicle = owner.get(added.location().unwrap()).await;
    let from_vin = &vehicle.html[vehicle.html.find("id=\"from-vin\"").unwrap()..];
    let from_vin = &from_vin[..from_vin.find("</dd>").unwrap()];
    assert!(from_vin.contains("Ford · 2018 (from VIN)"), "{from_vin}");
    assert!(
        from_vin.contains("differs from what was entered: year 2021"),
        "{from_vin}"
    );
    assert!(!from_vin.contains("make"), "{from_vin}");
    let technician = garage.browser_as("TECHNICIAN").await;
    let theirs = technician.get(&path).await;
    assert!(!theirs.html.contains("vehicle-form"));
    assert!(!theirs.html.contains("edit-customer"));
    let forged = technician.post(&format!("{path}/edit"), &[]).await;
    assert_ne!(forged.status, StatusCode::SEE_OTHER);
    let forged = technician.post(&path, &form("x@example.com", "0")).await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    garage.stop().await;
}

#[sqlx::test]
async fn a_vehicle_shows_its_work_orders_with_the_odometer_and_their_invoices(pool: PgPool) {
    let garage = Garage::with_pages(pool).await;
    let mut order = garage.work_order().await;
    let id = order["id"].as_str().unwrap().to_string();
    garage
        .post(
            &format!("/api/work-orders/{id}/labor"),
            json!({"description": "Brake pads", "technician": "Tom", "minutes": 120}),
        )
        .await
        .expect(StatusCode::OK);
    for status in ["IN_PROGRESS", "COMPLETED"] {
        order = garage
            .put(
                &format!("/api/work-orders/{id}/status"),
                json!({"status": status}),
            )
            .await
            .expect(StatusCode::OK);
    }
    garage.invoice(&order).await;
    let list = garage.get("/api/invoices").await.expect(StatusCode::OK);
    let invoice = list["items"][0].clone();
    let path = format!("/vehicles/{}", order["vehicleId"].as_str().unwrap());
    let owner = garage.owner_browser().await;
    let page = owner.get(&path).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.html);
    let history = &page.html[page.html.find("id=\"history\"").unwrap()..];
    assert!(history.contains(order["number"].as_str().unwrap()));
    assert!(history.contains("42,100 km"), "{history}");
    assert!(history.contains("Brakes squeal"));
    assert!(history.contains(invoice["number"].as_str().unwrap()));
    assert!(history.contains("€216.00"));
    assert!(page.html.contains("Wanda Web"), "the owner");
    let technician = garage.browser_as("TECHNICIAN").await;
    let theirs = technician.get(&path).await;
    assert_eq!(theirs.status, StatusCode::OK);
    assert!(theirs.html.contains(order["number"].as_str().unwrap()));
    assert!(
        !theirs.html.contains("€216.00"),
        "technicians read no money"
    );
    garage.stop().await;
}

#[sqlx::test]
async fn an_invoice_is_voided_with_a_reason_and_roles_without_void_get_no_form(pool: PgPool) {
    let garage = Garage::with_pages(pool).await;
    let invoice = invoice(&garage).await;
    let id = invoice["id"].as_str().unwrap();
    let path = format!("/invoices/{id}");
    let advisor = garage.browser_as("SERVICE_ADVISOR").await;
    let theirs = advisor.get(&path).await;
    assert_eq!(theirs.status, StatusCode::OK);
    assert!(!theirs.html.contains("void-form"), "advisors may not void");
    let forged = advisor
        .post(&format!("{path}/void"), &[("reason", "forged")])
        .await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    assert!(forged.html.contains("Your role may not do this."));

    let accountant = garage.browser_as("ACCOUNTANT").await;
    let page = accountant.get(&path).await;
    assert!(page.html.contains("id=\"void-form\""), "{}", page.html);
    let empty = accountant
        .post(
            &format!("{path}/void"),
            &[("reason", ""), ("expected_version", "0")],
        )
        .await;
    assert_eq!(
        empty.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        empty.html
    );
    assert!(
        empty.html.contains("id=\"void-reason-error\""),
        "{}",
        empty.html
    );
    let voided = accountant
        .post(
            &format!("{path}/void"),
            &[
                ("reason", "Issued to the wrong customer"),
                ("expected_version", "0"),
            ],
        )
        .await;
    assert_eq!(voided.status, StatusCode::SEE_OTHER, "{}", voided.html);
    let page = accountant.get(voided.location().unwrap()).await;
    assert!(page.html.contains("Invoice voided."));
    assert!(page.html.contains("Issued to the wrong customer"));
    assert!(!page.html.contains("void-form"), "void once");
    assert!(
        !page.html.contains("payment-form"),
        "a void invoice takes no payment"
    );
    let after = garage
        .get(&format!("/api/invoices/{id}"))
        .await
        .expect(StatusCode::OK);
    assert_eq!(after["status"], "VOID");
    garage.stop().await;
}

/// The one-time password an answer shows once.
fn one_time_password(html: &str) -> String {
    let at = html.find("<code>").expect("a one-time password") + 6;
    html[at..].split("</code>").next().unwrap().to_string()
}

#[sqlx::test]
async fn the_owner_manages_people_and_reads_the_audit_trail_and_no_one_else_may(pool: PgPool) {
    let garage = Garage::with_pages(pool).await;
    let owner = garage.owner_browser().await;
    let today = owner.get("/").await;
    assert!(today.html.contains("href=\"/people\""));
    let created = owner
        .post(
            "/people",
            &[
                ("display_name", "Tina Tech"),
                ("email", "tina@example.com"),
                ("role", "TECHNICIAN"),
                ("idempotency_key", "u1"),
            ],
        )
        .await;
    assert_eq!(created.status, StatusCode::OK, "{}", created.html);
    assert!(created.html.contains("id=\"one-time-password\""));
    let password = one_time_password(&created.html);
    assert!(password.len() >= 12, "{password}");
    let list = owner.get("/people").await;
    assert!(list.html.contains("Tina Tech"));
    assert!(!list.html.contains(&password), "shown once");
    let tina = Browser::new(&garage.base);
    assert_eq!(
        tina.sign_in("tina@example.com", &password).await.location(),
        Some("/password")
    );

    let duplicate = owner
        .post(
            "/people",
            &[
                ("display_name", "Tina Again"),
                ("email", "tina@example.com"),
                ("role", "TECHNICIAN"),
                ("idempotency_key", "u2"),
            ],
        )
        .await;
    assert_eq!(
        duplicate.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        duplicate.html
    );
    assert!(
        duplicate.html.contains("id=\"email-error\""),
        "{}",
        duplicate.html
    );

    let id = {
        let at = list.html.find("Tina Tech").unwrap();
        let link = list.html[..at].rfind("/people/").unwrap() + 8;
        list.html[link..].split('"').next().unwrap().to_string()
    };
    let path = format!("/people/{id}");
    let page = owner.get(&path).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.html);
    let version = {
        let at = page
            .html
            .find("name=\"expected_version\" value=\"")
            .unwrap()
            + 31;
        page.html[at..].split('"').next().unwrap().to_string()
    };
    let changed = owner
        .post(
            &path,
            &[("role", "PARTS_MANAGER"), ("expected_version", &version)],
        )
        .await;
    assert_eq!(changed.status, StatusCode::SEE_OTHER, "{}", changed.html);
    let stale = owner
        .post(
            &path,
            &[("active", "false"), ("expected_version", &version)],
        )
        .await;
    assert_eq!(
        stale.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        stale.html
    );
    assert!(stale.html.contains("id=\"reload\""));
    let page = owner.get(&path).await;
    assert!(
        page.html
            .contains("<dd id=\"person-role\">Parts manager</dd>")
    );
    let version = {
        let at = page
            .html
            .find("name=\"expected_version\" value=\"")
            .unwrap()
            + 31;
        page.html[at..].split('"').next().unwrap().to_string()
    };
    let deactivated = owner
        .post(
            &path,
            &[("active", "false"), ("expected_version", &version)],
        )
        .await;
    assert_eq!(
        deactivated.status,
        StatusCode::SEE_OTHER,
        "{}",
        deactivated.html
    );
    let page = owner.get(&path).await;
    assert!(
        page.html
            .contains("<dd id=\"person-status\">Deactivated</dd>")
    );
    let reset = owner.post(&format!("{path}/password"), &[]).await;
    assert_eq!(reset.status, StatusCode::OK, "{}", reset.html);
    assert_ne!(one_time_password(&reset.html), password);

    let audit = owner.get("/audit").await;
    assert_eq!(audit.status, StatusCode::OK, "{}", audit.html);
    for action in ["user.created", "user.updated", "user.password-reset"] {
        assert!(audit.html.contains(action), "{action}: {}", audit.html);
    }
    let filtered = owner.get("/audit?action=user.password-reset").await;
    let table = &filtered.html[filtered.html.find("id=\"audit\"").unwrap()..];
    assert!(table.contains("user.password-reset"));
    assert!(!table.contains("user.created"), "{table}");
    let bad_date = owner.get("/audit?from=yesterday").await;
    assert_eq!(bad_date.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(bad_date.html.contains("id=\"from-error\""));

    let advisor = garage.browser_as("SERVICE_ADVISOR").await;
    let today = advisor.get("/").await;
    assert!(!today.html.contains("href=\"/people\""));
    assert!(!today.html.contains("href=\"/audit\""));
    for page in ["/people", &path, "/audit"] {
        assert_eq!(
            advisor.get(page).await.status,
            StatusCode::FORBIDDEN,
            "{page}"
        );
    }
    let forged = advisor
        .post(
            "/people",
            &[
                ("display_name", "Mallory"),
                ("email", "m@example.com"),
                ("role", "OWNER"),
            ],
        )
        .await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    let forged = advisor.post(&format!("{path}/password"), &[]).await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    garage.stop().await;
}

/// Reads server-sent events from `stream` until one named `changed` arrives: its `data`;
/// `None` when the stream ends first. Keep-alive comments do not extend the 20 s allowed.
async fn next_change(stream: &mut reqwest::Response, seen: &mut String) -> Option<String> {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        if let Some(at) = seen.find("event: changed\n") {
            let rest = &seen[at..];
            let end = rest.find("\n\n")?;
            let data = rest[..end]
                .lines()
                .find_map(|line| line.strip_prefix("data: "))
                .map(str::to_string);
            *seen = rest[end + 2..].to_string();
            return data;
        }
        let chunk = tokio::time::timeout_at(deadline, stream.chunk())
            .await
            .expect("an event within 20 s")
            .unwrap()?;
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
}

#[sqlx::test]
async fn an_open_work_order_page_hears_of_its_changes_and_of_nothing_else(pool: PgPool) {
    let garage = Garage::with_pages(pool).await;
    let part = garage.part("PAD-01", 10, 0).await;
    let watched = garage.work_order().await;
    let watched = watched["id"].as_str().unwrap();
    let other = garage.work_order().await;
    let other = other["id"].as_str().unwrap();

    let anonymous = Browser::new(&garage.base);
    let refused = anonymous
        .get(&format!("/live/work-orders?id={watched}"))
        .await;
    assert_eq!(
        refused.status,
        StatusCode::SEE_OTHER,
        "no session, no events"
    );

    let owner = garage.owner_browser().await;
    let page = owner.get(&format!("/work-orders/{watched}")).await;
    let connect = format!("sse-connect=\"/live/work-orders?id={watched}&");
    let at = page
        .html
        .find(&connect)
        .expect("the page listens to its order");
    let at = at + page.html[at..].find("after=").unwrap() + "after=".len();
    let rendered_at = &page.html[at..at + page.html[at..].find('"').unwrap()];
    let mut stream = owner
        .http
        .get(garage.url(&format!("/live/work-orders?id={watched}")))
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), StatusCode::OK);
    assert_eq!(stream.headers()["content-type"], "text/event-stream");
    let mut seen = String::new();
    let first = tokio::time::timeout(std::time::Duration::from_secs(10), stream.chunk())
        .await
        .expect("the first event at once")
        .unwrap()
        .unwrap();
    seen.push_str(&String::from_utf8_lossy(&first));
    assert!(seen.starts_with("id: "), "an id to resume from: {seen}");

    // The other order changes first: the stream is in the tenant's order, so had it been
    // passed on, it would come before the watched one's.
    for order in [other, watched] {
        garage
            .post(
                &format!("/api/work-orders/{order}/line-items"),
                json!({"partId": part["id"], "quantity": 1}),
            )
            .await
            .expect(StatusCode::OK);
    }
    assert_eq!(
        next_change(&mut stream, &mut seen).await.as_deref(),
        Some(watched)
    );

    // A page that connects after a change it was rendered before hears of it at once ...
    let mut late = owner
        .http
        .get(garage.url(&format!(
            "/live/work-orders?id={watched}&after={rendered_at}"
        )))
        .send()
        .await
        .unwrap();
    let mut late_seen = String::new();
    assert_eq!(
        next_change(&mut late, &mut late_seen).await.as_deref(),
        Some(watched)
    );
    // ... and so does a browser reconnecting with the last id it saw; one from before a
    // restart of the BFF (beyond what it knows) means "fetch everything again".
    let mut resumed = owner
        .http
        .get(garage.url(&format!("/live/work-orders?id={watched}")))
        .header("last-event-id", rendered_at)
        .send()
        .await
        .unwrap();
    let mut resumed_seen = String::new();
    assert_eq!(
        next_change(&mut resumed, &mut resumed_seen)
            .await
            .as_deref(),
        Some(watched)
    );
    let mut restarted = owner
        .http
        .get(garage.url(&format!("/live/work-orders?id={watched}")))
        .header("last-event-id", "999999999")
        .send()
        .await
        .unwrap();
    let mut restarted_seen = String::new();
    assert_eq!(
        next_change(&mut restarted, &mut restarted_seen)
            .await
            .as_deref(),
        Some("*")
    );

    // The board's stream hears of every order.
    let mut board = owner
        .http
        .get(garage.url("/live/work-orders"))
        .send()
        .await
        .unwrap();
    let mut board_seen = String::new();
    garage
        .post(
            &format!("/api/work-orders/{other}/line-items"),
            json!({"partId": part["id"], "quantity": 2}),
        )
        .await
        .expect(StatusCode::OK);
    // (The watched order's reservation may still be on its way: it is heard too.)
    let mut heard = Vec::new();
    for _ in 0..4 {
        let Some(id) = next_change(&mut board, &mut board_seen).await else {
            break;
        };
        heard.push(id);
        if heard.last().map(String::as_str) == Some(other) {
            break;
        }
    }
    assert_eq!(heard.last().map(String::as_str), Some(other), "{heard:?}");
    assert!(
        heard.iter().all(|id| id == watched || id == other),
        "{heard:?}"
    );
    garage.stop().await;
}

#[sqlx::test]
async fn a_signed_out_session_hears_nothing_more(pool: PgPool) {
    let garage = Garage::with_pages(pool).await;
    let part = garage.part("PAD-01", 10, 0).await;
    let order = garage.work_order().await;
    let order = order["id"].as_str().unwrap();
    let browser = Browser::new(&garage.base);
    let signed_in = browser.sign_in(&garage.owner_email, OWNER_PASSWORD).await;
    let cookie = signed_in
        .set_cookie()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let mut stream = garage
        .http
        .get(garage.url("/live/work-orders"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), StatusCode::OK);
    let out = browser.post("/sign-out", &[]).await;
    assert_eq!(out.status, StatusCode::SEE_OTHER);
    // Once the BFF knows of the revocation (pages with the old cookie go to sign-in) ...
    old_cookie_is_refused(&garage, &cookie).await;
    // ... the next change ends the stream instead of reaching it.
    garage
        .post(
            &format!("/api/work-orders/{order}/line-items"),
            json!({"partId": part["id"], "quantity": 1}),
        )
        .await
        .expect(StatusCode::OK);
    let mut seen = String::new();
    assert_eq!(next_change(&mut stream, &mut seen).await, None, "{seen}");
    garage.stop().await;
}

/// The first `href="<prefix><uuid>"` of `html`.
fn first_link(html: &str, prefix: &str) -> String {
    let needle = format!("href=\"{prefix}");
    html.match_indices(&needle)
        .find_map(|(at, _)| {
            let start = at + needle.len();
            let id = html.get(start..start + 36)?;
            uuid::Uuid::parse_str(id)
                .ok()
                .map(|_| format!("{prefix}{id}"))
        })
        .unwrap_or_else(|| panic!("no link to {prefix}<id>: {html}"))
}

/// Every page with the service `stopped`: each answers, in the layout, and those that need it
/// say what is missing (or, the service's own pages, that it does not answer).
async fn every_page_renders_with_stopped(stopped: &str, pool: PgPool) {
    {
        let mut garage = Garage::with_pages(pool).await;
        garage.part("PAD-01", 5, 1).await;
        let order = invoice(&garage).await;
        assert!(order["id"].is_string(), "{order}");
        let owner = garage.owner_browser().await;
        let mut pages: Vec<String> = [
            "/",
            "/customers",
            "/customers/new",
            "/work-orders",
            "/parts",
            "/parts/new",
            "/invoices",
            "/people",
            "/audit",
            "/password",
        ]
        .map(String::from)
        .to_vec();
        let customer = first_link(&owner.get("/customers").await.html, "/customers/");
        let vehicle = first_link(&owner.get(&customer).await.html, "/vehicles/");
        let work_order = first_link(&owner.get("/work-orders").await.html, "/work-orders/");
        let part = first_link(&owner.get("/parts").await.html, "/parts/");
        let invoice = first_link(&owner.get("/invoices").await.html, "/invoices/");
        pages.extend([
            format!("{customer}/edit"),
            format!("{work_order}/print"),
            format!("{part}/edit"),
            format!("{invoice}/print"),
            customer,
            vehicle,
            work_order,
            part,
            invoice,
        ]);

        match stopped {
            "customer" => garage.customer.take(),
            "workorder" => garage.workorder.take(),
            "inventory" => garage.inventory.take(),
            _ => garage.billing.take(),
        }
        .unwrap()
        .stop()
        .await
        .unwrap();
        let says_missing = match stopped {
            "customer" => "Customers are unavailable",
            "workorder" => "Work orders are unavailable",
            "inventory" => "Parts and stock are unavailable",
            _ => "Invoices are unavailable",
        };
        let mut missing_shown = 0;
        for path in &pages {
            let page = owner.get(path).await;
            match page.status {
                StatusCode::OK => {}
                // The page is the stopped service's own: it says which is missing, and
                // offers a reload and the way back to Today.
                StatusCode::SERVICE_UNAVAILABLE => {
                    for expected in ["does not answer", says_missing, "href=\"/\""] {
                        assert!(
                            page.html.contains(expected),
                            "{stopped} stopped, {path} lacks {expected:?}: {}",
                            page.html
                        );
                    }
                }
                other => panic!("{stopped} stopped, {path} answered {other}: {}", page.html),
            }
            assert!(
                page.status != StatusCode::OK
                    || page.html.contains("aria-label=\"Main\"")
                    || path.ends_with("/print"),
                "{stopped} stopped, {path} lost its navigation: {}",
                page.html
            );
            if page.html.contains(says_missing) || page.status == StatusCode::SERVICE_UNAVAILABLE {
                missing_shown += 1;
            }
        }
        assert!(
            missing_shown > 0,
            "{stopped} stopped: no page said what is missing"
        );
        garage.stop().await;
    }
}

#[sqlx::test]
async fn every_page_renders_with_the_customer_service_stopped(pool: PgPool) {
    every_page_renders_with_stopped("customer", pool).await;
}

#[sqlx::test]
async fn every_page_renders_with_the_work_order_service_stopped(pool: PgPool) {
    every_page_renders_with_stopped("workorder", pool).await;
}

#[sqlx::test]
async fn every_page_renders_with_the_inventory_service_stopped(pool: PgPool) {
    every_page_renders_with_stopped("inventory", pool).await;
}

#[sqlx::test]
async fn every_page_renders_with_the_billing_service_stopped(pool: PgPool) {
    every_page_renders_with_stopped("billing", pool).await;
}

#[sqlx::test]
async fn a_work_order_is_opened_from_its_vehicle_with_errors_beside_their_fields(pool: PgPool) {
    let garage = Garage::with_pages(pool).await;
    let (_, vehicle) = garage
        .customer_with_vehicle("Olga Open", "WVWZZZ1JZ3W000777")
        .await;
    let path = format!("/vehicles/{vehicle}");
    let owner = garage.owner_browser().await;
    let page = owner.get(&path).await;
    assert!(
        page.html.contains("id=\"open-work-order\""),
        "{}",
        page.html
    );
    let key = "open-1";

    let refused = owner
        .post(
            &format!("{path}/work-orders"),
            &[
                ("complaint", "Rattle"),
                ("odometer_km", "lots"),
                ("idempotency_key", key),
            ],
        )
        .await;
    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        refused.html.contains("id=\"odometer_km-error\""),
        "{}",
        refused.html
    );
    assert!(
        refused.html.contains(">Rattle</textarea>"),
        "what was typed stays"
    );
    let refused = owner
        .post(
            &format!("{path}/work-orders"),
            &[
                ("complaint", " "),
                ("odometer_km", "1200"),
                ("idempotency_key", key),
            ],
        )
        .await;
    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        refused.html.contains("id=\"complaint-error\""),
        "{}",
        refused.html
    );

    let opened = owner
        .post(
            &format!("{path}/work-orders"),
            &[
                ("complaint", "Rattle at 50 km/h"),
                ("odometer_km", "1200"),
                ("idempotency_key", key),
            ],
        )
        .await;
    assert_eq!(opened.status, StatusCode::SEE_OTHER, "{}", opened.html);
    let order_path = opened.location().unwrap().to_string();
    assert!(order_path.starts_with("/work-orders/"), "{order_path}");
    // A second submission of the same form (a double click) opens nothing more.
    let again = owner
        .post(
            &format!("{path}/work-orders"),
            &[
                ("complaint", "Rattle at 50 km/h"),
                ("odometer_km", "1200"),
                ("idempotency_key", key),
            ],
        )
        .await;
    assert_eq!(again.location(), Some(order_path.as_str()));
    let order = owner.get(&order_path).await;
    assert!(order.html.contains("Rattle at 50 km/h"));
    assert!(order.html.contains("Olga Open"));

    let technician = garage.browser_as("TECHNICIAN").await;
    let theirs = technician.get(&path).await;
    assert_eq!(theirs.status, StatusCode::OK);
    assert!(
        !theirs.html.contains("open-work-order"),
        "technicians open none"
    );
    let forged = technician
        .post(
            &format!("{path}/work-orders"),
            &[
                ("complaint", "Forged"),
                ("odometer_km", "1"),
                ("idempotency_key", "f"),
            ],
        )
        .await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    garage.stop().await;
}

#[sqlx::test]
async fn notes_are_edited_a_stale_edit_keeps_the_text_and_offers_a_reload(pool: PgPool) {
    let garage = Garage::with_pages(pool).await;
    let order = garage.work_order().await;
    let id = order["id"].as_str().unwrap();
    let version = order["audit"]["version"].to_string();
    let technician = garage.browser_as("TECHNICIAN").await;
    let page = technician.get(&format!("/work-orders/{id}")).await;
    assert!(page.html.contains("id=\"notes-form\""), "{}", page.html);
    let saved = technician
        .post(
            &format!("/work-orders/{id}/notes"),
            &[
                ("notes", "Pads at 2 mm <front>"),
                ("expected_version", &version),
            ],
        )
        .await;
    assert_eq!(saved.status, StatusCode::SEE_OTHER, "{}", saved.html);
    let page = technician.get(&format!("/work-orders/{id}")).await;
    assert!(
        page.html
            .contains(">Pads at 2 mm &#60;front&#62;</textarea>"),
        "{}",
        page.html
    );

    // Someone saved first: the old version is refused, the text typed is kept.
    let stale = technician
        .post(
            &format!("/work-orders/{id}/notes"),
            &[
                ("notes", "Discs scored too"),
                ("expected_version", &version),
            ],
        )
        .await;
    assert_eq!(
        stale.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        stale.html
    );
    assert!(stale.html.contains("id=\"stale\""), "{}", stale.html);
    assert!(
        stale.html.contains(">Discs scored too</textarea>"),
        "{}",
        stale.html
    );

    let parts_manager = garage.browser_as("PARTS_MANAGER").await;
    let theirs = parts_manager.get(&format!("/work-orders/{id}")).await;
    assert!(!theirs.html.contains("notes-form"));
    assert!(
        theirs.html.contains("Pads at 2 mm"),
        "notes are read by all"
    );
    let forged = parts_manager
        .post(
            &format!("/work-orders/{id}/notes"),
            &[("notes", "forged"), ("expected_version", "99")],
        )
        .await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    garage.stop().await;
}

#[sqlx::test]
async fn an_owner_creates_an_api_token_shown_once_and_revokes_it(pool: PgPool) {
    let garage = Garage::with_pages(pool).await;
    let owner = garage.owner_browser().await;
    let page = owner.get("/api-tokens").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.html);
    assert!(
        page.html.contains("href=\"/api-tokens\""),
        "in the owner's menu"
    );

    let refused = owner
        .post(
            "/api-tokens",
            &[
                ("name", "Parts supplier"),
                ("role", "PARTS_MANAGER"),
                ("days", "9999"),
            ],
        )
        .await;
    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        refused.html.contains("id=\"days-error\""),
        "{}",
        refused.html
    );
    assert!(
        refused.html.contains("value=\"Parts supplier\""),
        "what was typed stays"
    );

    let created = owner
        .post(
            "/api-tokens",
            &[
                ("name", "Parts supplier"),
                ("role", "PARTS_MANAGER"),
                ("days", "30"),
            ],
        )
        .await;
    assert_eq!(created.status, StatusCode::OK, "{}", created.html);
    let at = created
        .html
        .find("<code>cet_")
        .expect("the token, shown once")
        + "<code>".len();
    let token = &created.html[at..at + created.html[at..].find('<').unwrap()];
    let with_token = |token: &str| {
        garage
            .http
            .get(garage.url("/api/parts"))
            .bearer_auth(token)
            .send()
    };
    assert_eq!(with_token(token).await.unwrap().status(), StatusCode::OK);
    let listed = owner.get("/api-tokens").await;
    assert!(!listed.html.contains(token), "never shown again");
    let id = listed
        .html
        .split("action=\"/api-tokens/")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .unwrap()
        .to_string();
    let revoked = owner.post(&format!("/api-tokens/{id}/revoke"), &[]).await;
    assert_eq!(revoked.status, StatusCode::SEE_OTHER, "{}", revoked.html);
    assert!(owner.get("/api-tokens").await.html.contains("Revoked"));
    let mut refused_after = false;
    for _ in 0..50 {
        if with_token(token).await.unwrap().status() == StatusCode::UNAUTHORIZED {
            refused_after = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(refused_after, "a revoked token still opens the API");

    let advisor = garage.browser_as("SERVICE_ADVISOR").await;
    let theirs = advisor.get("/").await;
    assert!(!theirs.html.contains("href=\"/api-tokens\""));
    assert_eq!(
        advisor.get("/api-tokens").await.status,
        StatusCode::FORBIDDEN
    );
    let forged = advisor
        .post(
            "/api-tokens",
            &[("name", "Mine"), ("role", "OWNER"), ("days", "30")],
        )
        .await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    garage.stop().await;
}
