//! The OpenAPI document: it parses, lists exactly the routes the router serves, and every
//! route it lists is served. The interactive page is served from the crate's own assets.

use std::collections::BTreeSet;

use carerp_bff::BffConfig;
use reqwest::StatusCode;
use serde_json::Value;

/// A BFF whose services are all unreachable: enough to tell served routes from unknown ones.
async fn lone_bff() -> carerp_bff::RunningBff {
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    carerp_bff::start(BffConfig::for_tests(
        "bff-docs",
        url.clone(),
        url.clone(),
        url.clone(),
        url.clone(),
        url,
    ))
    .await
    .unwrap()
}

fn owner_bearer() -> String {
    let token = carerp_kit::auth::testing::token("bff-docs", carerp_kit::auth::Role::Owner);
    format!("Bearer {}", token.expose())
}

fn refs(value: &Value, found: &mut BTreeSet<String>) {
    match value {
        Value::Object(map) => {
            for (key, value) in map {
                if key == "$ref"
                    && let Some(target) = value.as_str()
                {
                    found.insert(target.to_string());
                }
                refs(value, found);
            }
        }
        Value::Array(items) => items.iter().for_each(|v| refs(v, found)),
        _ => {}
    }
}

#[tokio::test]
async fn the_document_lists_exactly_the_routes_the_router_serves() {
    let bff = lone_bff().await;
    let base = format!("http://{}", bff.http_addr);
    let http = reqwest::Client::new();
    let response = http
        .get(format!("{base}/docs/openapi.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let text = response.text().await.unwrap();
    // It parses as an OpenAPI 3.1 document.
    let parsed: utoipa::openapi::OpenApi = serde_json::from_str(&text).unwrap();
    assert_eq!(serde_json::to_value(&parsed.openapi).unwrap(), "3.1.0");
    let doc: Value = serde_json::from_str(&text).unwrap();

    let mut documented = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            if !["get", "post", "put", "delete", "patch"].contains(&method.as_str()) {
                continue;
            }
            documented.insert((method.to_uppercase(), path.clone()));
            let responses = operation["responses"].as_object().unwrap();
            for status in ["429", "500"] {
                assert!(
                    responses.contains_key(status),
                    "{method} {path} lacks {status}"
                );
            }
            if operation.get("requestBody").is_some() {
                for status in ["400", "413", "415", "422"] {
                    assert!(
                        responses.contains_key(status),
                        "{method} {path} lacks {status}"
                    );
                }
            }
            assert!(
                responses.keys().any(|s| s.starts_with('2')),
                "{method} {path} has no success response"
            );
            // Every route but sign-in, refresh and the approval link declares the bearer scheme and
            // its refusals.
            let public = carerp_bff::auth::is_public(path);
            let security = operation.get("security").or(doc.get("security"));
            let open = security.is_some_and(|s| {
                s.as_array().is_some_and(|a| {
                    a.iter()
                        .any(|r| r.as_object().is_some_and(|o| o.is_empty()))
                })
            });
            assert_eq!(open, public, "{method} {path}: security {security:?}");
            // Sign-in answers 401 for a wrong password, but never 403.
            assert_eq!(responses.contains_key("403"), !public, "{method} {path}");
            assert!(public || responses.contains_key("401"), "{method} {path}");
        }
    }
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"], "bearer",
        "{}",
        doc["components"]["securitySchemes"]
    );
    let routed: BTreeSet<(String, String)> = carerp_bff::api::routes()
        .iter()
        .map(|r| (r.method.to_string(), r.path.to_string()))
        .collect();
    assert_eq!(documented, routed);

    // Every schema the document refers to is defined in it.
    let mut targets = BTreeSet::new();
    refs(&doc, &mut targets);
    for target in targets {
        let name = target.strip_prefix("#/components/schemas/").unwrap();
        assert!(
            doc["components"]["schemas"].get(name).is_some(),
            "{target} is not defined"
        );
    }

    // Every documented route is served: neither an unknown route (404 about:blank) nor 405.
    for (method, path) in &documented {
        let concrete = path
            .replace("{id}", "0192f0c1-6b2a-7c3d-8e4f-0123456789ab")
            .replace("{lineId}", "0192f0c1-6b2a-7c3d-8e4f-0123456789ac");
        let request = http
            .request(method.parse().unwrap(), format!("{base}{concrete}"))
            .header("authorization", owner_bearer())
            .header("content-type", "application/json")
            .body("{}");
        let response = request.send().await.unwrap();
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        assert_ne!(status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
        assert!(
            !(status == StatusCode::NOT_FOUND && body["type"] == "about:blank"),
            "{method} {path} is not routed"
        );
    }
    bff.stop().await.unwrap();
}

#[tokio::test]
async fn the_interactive_page_and_its_assets_are_served_locally() {
    let bff = lone_bff().await;
    let base = format!("http://{}", bff.http_addr);
    let http = reqwest::Client::new();
    let page = http.get(format!("{base}/docs")).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    assert!(
        page.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let html = page.text().await.unwrap();
    assert!(html.contains("/docs/openapi.json"), "{html}");
    assert!(html.contains("/docs/swagger-ui-bundle.js"), "{html}");
    // No asset comes from elsewhere.
    assert!(!html.contains("https://"), "{html}");
    for asset in ["/docs/swagger-ui-bundle.js", "/docs/swagger-ui.css"] {
        let response = http.get(format!("{base}{asset}")).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{asset}");
        assert!(response.bytes().await.unwrap().len() > 10_000, "{asset}");
    }
    bff.stop().await.unwrap();
}

/// What a JSON body's property lacks of the rules the API enforces, by its kind: ids are
/// UUIDs, integers have a minimum, free text has a maximum length and a pattern (the
/// services refuse control characters, the database a NUL), and an object refuses fields it
/// does not know (`deny_unknown_fields`). The alternatives of a rule between fields (`anyOf`)
/// constrain some fields of their body: they are open, and need no pattern of their own.
fn missing_rules(schemas: &Value, schema: &Value, at: &str, found: &mut Vec<String>) {
    missing_rules_in(schemas, schema, at, false, found)
}

fn missing_rules_in(
    schemas: &Value,
    schema: &Value,
    at: &str,
    in_rule: bool,
    found: &mut Vec<String>,
) {
    let missing_rules = |schemas: &Value, schema: &Value, at: &str, found: &mut Vec<String>| {
        missing_rules_in(schemas, schema, at, in_rule, found)
    };
    if let Some(target) = schema["$ref"].as_str() {
        let name = target.trim_start_matches("#/components/schemas/");
        return missing_rules(schemas, &schemas[name], &format!("{at}<{name}>"), found);
    }
    for key in ["oneOf", "anyOf", "allOf"] {
        for variant in schema[key].as_array().into_iter().flatten() {
            missing_rules_in(schemas, variant, at, in_rule || key == "anyOf", found);
        }
    }
    let types: Vec<&str> = match &schema["type"] {
        Value::String(t) => vec![t.as_str()],
        Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    if types.contains(&"object") {
        if !in_rule && schema.get("properties").is_some() && schema["additionalProperties"] != false
        {
            found.push(format!(
                "{at}: unknown fields not refused (additionalProperties)"
            ));
        }
        for (name, property) in schema["properties"].as_object().into_iter().flatten() {
            missing_rules(schemas, property, &format!("{at}.{name}"), found);
        }
    }
    if types.contains(&"array") {
        missing_rules(schemas, &schema["items"], &format!("{at}[]"), found);
        if schema.get("maxItems").is_none() {
            found.push(format!("{at}: no maxItems"));
        }
    }
    if types.contains(&"integer") && schema.get("minimum").is_none() {
        found.push(format!("{at}: no minimum"));
    }
    if types.contains(&"string") && schema.get("enum").is_none() {
        let name = at.rsplit('.').next().unwrap_or_default();
        let format = schema["format"].as_str();
        if (name.ends_with("Id") || name == "id") && format != Some("uuid") {
            found.push(format!("{at}: an id without format uuid"));
        } else if format.is_none()
            && schema.get("maxLength").is_none()
            && schema.get("pattern").is_none()
        {
            found.push(format!("{at}: free text without maxLength or pattern"));
        } else if format.is_none() && !in_rule && schema.get("pattern").is_none() {
            found.push(format!("{at}: free text without a pattern"));
        }
    }
}

#[test]
fn every_request_body_carries_the_rules_the_api_enforces() {
    let doc = serde_json::to_value(carerp_bff::openapi::document()).unwrap();
    let schemas = &doc["components"]["schemas"];
    let mut found = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            for parameter in operation["parameters"].as_array().into_iter().flatten() {
                let name = parameter["name"].as_str().unwrap_or_default();
                if parameter["in"] == "header" {
                    continue;
                }
                missing_rules(
                    schemas,
                    &parameter["schema"],
                    &format!("{method} {path} ({name}).{name}"),
                    &mut found,
                );
            }
            let body = &operation["requestBody"]["content"]["application/json"]["schema"];
            if !body.is_null() {
                missing_rules(schemas, body, &format!("{method} {path}"), &mut found);
            }
        }
    }
    found.sort();
    found.dedup();
    assert!(found.is_empty(), "{}", found.join("\n"));
}

#[test]
fn a_customer_body_needs_an_email_or_a_phone_as_the_service_does() {
    let doc = serde_json::to_value(carerp_bff::openapi::document()).unwrap();
    for body in ["CreateCustomer", "UpdateCustomer"] {
        let parts = doc["components"]["schemas"][body]["allOf"]
            .as_array()
            .unwrap_or_else(|| panic!("{body} is not fields plus the contact rule"));
        let rule = parts
            .iter()
            .find_map(|part| part["anyOf"].as_array())
            .unwrap_or_else(|| panic!("{body} has no anyOf"));
        let required: Vec<&str> = rule
            .iter()
            .map(|branch| branch["required"][0].as_str().unwrap())
            .collect();
        assert_eq!(required, ["email", "phone"], "{body}");
        for (branch, field) in rule.iter().zip(["email", "phone"]) {
            assert_eq!(
                branch["properties"][field]["minLength"], 1,
                "{body}.{field}"
            );
        }
    }
}

/// The component `name` of the document as served.
fn component(name: &str) -> Value {
    let doc = serde_json::to_value(carerp_bff::openapi::document()).unwrap();
    doc["components"]["schemas"][name].clone()
}

#[test]
fn free_text_refuses_control_characters_as_the_services_do() {
    let control = r"\u0000-\u0008\u000B\u000C\u000E-\u001F\u007F-\u009F";
    let fields = &component("CreateWorkOrder")["properties"];
    // Required (`pattern = r"\S"` in the annotation): something but white space, no controls.
    assert_eq!(
        fields["complaint"]["pattern"],
        format!("^[^{control}]*[^\\s{control}][^{control}]*$")
    );
    // Optional (a `max_length` alone): no controls.
    assert_eq!(fields["notes"]["pattern"], format!("^[^{control}]*$"));
}

#[test]
fn a_vehicle_year_goes_up_to_next_year() {
    use chrono::Datelike;
    let next_year = chrono::Utc::now().year() + 1;
    for body in ["CreateVehicle", "UpdateVehicle"] {
        let year = &component(body)["properties"]["year"];
        assert_eq!(year["minimum"], 1886, "{body}");
        assert_eq!(year["maximum"], next_year, "{body}");
    }
}

/// The alternatives of a rule between fields, under `allOf` beside the fields.
fn rule(body: &str) -> Vec<Value> {
    let schema = component(body);
    let parts = schema["allOf"]
        .as_array()
        .unwrap_or_else(|| panic!("{body} is not fields plus a rule"));
    parts
        .iter()
        .find_map(|part| part["anyOf"].as_array().cloned())
        .unwrap_or_else(|| panic!("{body} has no anyOf"))
}

#[test]
fn text_some_values_need_is_required_for_exactly_those() {
    for (body, field, without, text) in [
        (
            "ChangeWorkOrderStatus",
            "status",
            vec![
                "OPEN",
                "ESTIMATE",
                "IN_PROGRESS",
                "AWAITING_PARTS",
                "COMPLETED",
                "INVOICED",
            ],
            "reason",
        ),
        ("RateItem", "rating", vec!["OK"], "note"),
        ("CustomerDecision", "decision", vec!["APPROVED"], "reason"),
    ] {
        let rule = rule(body);
        assert_eq!(
            rule[0]["properties"][field]["enum"],
            serde_json::json!(without),
            "{body}"
        );
        assert_eq!(rule[0]["required"], serde_json::json!([field]), "{body}");
        assert_eq!(rule[1]["required"], serde_json::json!([text]), "{body}");
        assert_eq!(rule[1]["properties"][text]["minLength"], 1, "{body}");
    }
}

#[test]
fn a_receipt_adds_stock_and_an_adjustment_changes_it() {
    let rule = rule("AdjustStock");
    assert_eq!(rule[0]["properties"]["delta"]["minimum"], 1);
    assert_eq!(
        rule[1]["properties"]["kind"]["enum"],
        serde_json::json!(["ADJUSTMENT"])
    );
    assert_eq!(rule[1]["properties"]["delta"]["maximum"], -1);
}

#[test]
fn a_request_sends_only_the_decisions_and_channels_it_may() {
    let values = |name: &str| component(name)["enum"].clone();
    assert_eq!(
        values("StaffDecision"),
        serde_json::json!(["APPROVED", "DECLINED", "DEFERRED"])
    );
    assert_eq!(
        values("StaffChannel"),
        serde_json::json!(["IN_PERSON", "PHONE", "EMAIL"])
    );
    assert_eq!(
        values("CustomerChoice"),
        serde_json::json!(["APPROVED", "DECLINED"])
    );
}
