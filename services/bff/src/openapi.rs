//! The OpenAPI 3.1 document, generated from the handlers' annotations, with the error
//! responses every operation can give added in one place.

use utoipa::openapi::path::Operation;
use utoipa::openapi::{ContentBuilder, HttpMethod, Ref, ResponseBuilder};
use utoipa::{Modify, OpenApi};

use crate::api;
use crate::problem::PROBLEM_CONTENT_TYPE;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Car ERP",
        description = "The REST API of a garage: customers and vehicles, work orders, parts and invoices. \
JSON in camelCase; money as {amountMinor, currency}; timestamps RFC 3339; lists are cursor-paginated \
(limit, cursor, nextCursor); errors are application/problem+json (RFC 9457). Send Idempotency-Key on POSTs \
to make retries safe; x-correlation-id is accepted or generated and returned on every response."
    ),
    paths(
        api::customers::list_customers,
        api::customers::create_customer,
        api::customers::get_customer,
        api::customers::update_customer,
        api::customers::archive_customer,
        api::customers::list_customer_vehicles,
        api::customers::add_vehicle,
        api::customers::list_vehicles,
        api::customers::get_vehicle,
        api::customers::update_vehicle,
        api::workorders::list_work_orders,
        api::workorders::create_work_order,
        api::workorders::get_work_order,
        api::workorders::change_status,
        api::workorders::update_notes,
        api::workorders::add_part_line,
        api::workorders::remove_part_line,
        api::workorders::add_labor_line,
        api::workorders::remove_labor_line,
        api::workorders::retry_reservation,
        api::estimates::add_job,
        api::estimates::remove_job,
        api::estimates::decide_job,
        api::estimates::send_estimate,
        api::estimates::list_estimates,
        api::estimates::get_approval,
        api::estimates::decide_by_link,
        api::canned_jobs::list_canned_jobs,
        api::canned_jobs::create_canned_job,
        api::canned_jobs::update_canned_job,
        api::canned_jobs::remove_canned_job,
        api::canned_jobs::add_canned_job,
        api::history::vehicle_history,
        api::history::recommended_work,
        api::history::offer_again,
        api::inspections::list_templates,
        api::inspections::create_template,
        api::inspections::update_template,
        api::inspections::start_inspection,
        api::inspections::get_inspection,
        api::inspections::rate_item,
        api::inspections::add_photo,
        api::inspections::get_photo,
        api::inspections::remove_photo,
        api::inspections::complete_inspection,
        api::inspections::propose_jobs,
        api::inspections::inspection_by_link,
        api::inspections::photo_by_link,
        api::parts::list_parts,
        api::parts::create_part,
        api::parts::low_stock,
        api::parts::get_part,
        api::parts::update_part,
        api::parts::adjust_stock,
        api::parts::list_movements,
        api::invoices::list_invoices,
        api::invoices::get_invoice,
        api::invoices::change_status,
        api::invoices::record_payment,
        api::invoices::void_invoice,
        api::dashboard::dashboard,
        api::auth::login,
        api::auth::refresh,
        api::auth::logout,
        api::auth::me,
        api::auth::change_password,
        api::people::list_users,
        api::people::create_user,
        api::people::get_user,
        api::people::update_user,
        api::people::reset_password,
        api::people::list_api_tokens,
        api::people::create_api_token,
        api::people::revoke_api_token,
        api::people::list_audit,
        api::dead_letters::list_dead_letters,
        api::dead_letters::get_dead_letter,
        api::dead_letters::replay_dead_letter,
    ),
    components(schemas(
        crate::problem::Problem,
        crate::problem::FieldError,
        api::parts::ActiveFilter
    )),
    modifiers(
        &BearerAuth,
        &ErrorResponses,
        &FreeText,
        &VehicleYear,
        &ContactRule,
        &StockDelta,
        &RequiredWhen,
        &ClosedBodies
    ),
    security(("bearer" = [])),
    tags(
        (name = "customers", description = "Customers and their vehicles"),
        (name = "work orders", description = "Repair orders from intake to invoice"),
        (name = "estimates", description = "Jobs, estimates and the customer's approval (the approval routes need no sign-in)"),
        (name = "canned jobs", description = "The garage's service packages, added to a work order in one action"),
        (name = "history", description = "A vehicle's visits, and the work declined or deferred there, offered again at the next visit"),
        (name = "inspections", description = "Vehicle inspections: templates, findings with photos, findings turned into jobs (the approval routes need no sign-in)"),
        (name = "parts", description = "Parts, stock and its ledger"),
        (name = "invoices", description = "Invoices and payments"),
        (name = "dashboard", description = "The garage at a glance"),
        (name = "auth", description = "Signing in and out; your own password"),
        (name = "people", description = "People, API tokens and the audit trail (owners)"),
        (name = "dead letters", description = "Events a service gave up on: look at them, replay them (owners)"),
    )
)]
pub struct ApiDoc;

/// The document as served at `/docs/openapi.json`.
pub fn document() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

/// Every route but sign-in and refresh needs `Authorization: Bearer <token>`: a user's access
/// token (a JWT from `/api/auth/login`) or an integration's API token.
struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        let mut scheme = Http::new(HttpAuthScheme::Bearer);
        scheme.bearer_format = Some("JWT".into());
        scheme.description = Some(
            "A user's access token from POST /api/auth/login (15 minutes; POST /api/auth/refresh \
             renews it), or an integration's API token (cet_...)."
                .into(),
        );
        components.add_security_scheme("bearer", SecurityScheme::Http(scheme));
    }
}

/// The control characters free text may not hold: all of Unicode's (`char::is_control`) but
/// tab and the line breaks, as `carerp_kit::status::text` refuses them.
const CONTROL: &str = r"\u0000-\u0008\u000B\u000C\u000E-\u001F\u007F-\u009F";

/// Free text as the services take it (`carerp_kit::status::text`): no control characters but
/// tab and line breaks, and, where it is required, something other than white space. The
/// annotations mark a required text field with `pattern = r"\S"` and an optional one with a
/// `max_length` alone (no `format`, `enum` or `pattern` of its own); this writes both rules
/// out, as a pattern, on every string property of a component schema so marked.
struct FreeText;

impl FreeText {
    fn text() -> String {
        format!("^[^{CONTROL}]*$")
    }

    fn required_text() -> String {
        format!("^[^{CONTROL}]*[^\\s{CONTROL}][^{CONTROL}]*$")
    }

    fn apply(schema: &mut utoipa::openapi::schema::Schema) {
        use utoipa::openapi::RefOr;
        use utoipa::openapi::schema::{Schema, SchemaType, Type};
        match schema {
            Schema::Object(object) => {
                let is_string = match &object.schema_type {
                    SchemaType::Type(t) => *t == Type::String,
                    SchemaType::Array(types) => types.contains(&Type::String),
                    SchemaType::AnyValue => false,
                };
                if is_string && object.format.is_none() && object.enum_values.is_none() {
                    match object.pattern.as_deref() {
                        Some(r"\S") => object.pattern = Some(Self::required_text()),
                        None if object.max_length.is_some() => object.pattern = Some(Self::text()),
                        _ => {}
                    }
                }
                for property in object.properties.values_mut() {
                    if let RefOr::T(property) = property {
                        Self::apply(property);
                    }
                }
            }
            Schema::Array(array) => {
                if let utoipa::openapi::schema::ArrayItems::RefOrSchema(items) = &mut array.items
                    && let RefOr::T(items) = items.as_mut()
                {
                    Self::apply(items);
                }
            }
            Schema::OneOf(one_of) => one_of.items.iter_mut().for_each(|item| {
                if let RefOr::T(item) = item {
                    Self::apply(item);
                }
            }),
            Schema::AllOf(all_of) => all_of.items.iter_mut().for_each(|item| {
                if let RefOr::T(item) = item {
                    Self::apply(item);
                }
            }),
            Schema::AnyOf(any_of) => any_of.items.iter_mut().for_each(|item| {
                if let RefOr::T(item) = item {
                    Self::apply(item);
                }
            }),
            _ => {}
        }
    }
}

impl Modify for FreeText {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let Some(components) = openapi.components.as_mut() else {
            return;
        };
        for schema in components.schemas.values_mut() {
            if let utoipa::openapi::RefOr::T(schema) = schema {
                Self::apply(schema);
            }
        }
    }
}

/// Request bodies refuse fields they do not know (`deny_unknown_fields`, 422 naming the
/// field): the document says so with `additionalProperties: false` on every object a request
/// body is made of, its own and those it refers to. The alternatives of a rule (`anyOf`) stay
/// open: they constrain some fields of a body, not the body's fields.
struct ClosedBodies;

impl ClosedBodies {
    fn name(reference: &utoipa::openapi::Ref) -> Option<String> {
        reference
            .ref_location
            .strip_prefix("#/components/schemas/")
            .map(str::to_string)
    }

    /// The components `schema` refers to, at any depth of its own (inline) parts.
    fn refers_to(
        schema: &utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>,
        found: &mut Vec<String>,
    ) {
        use utoipa::openapi::RefOr;
        use utoipa::openapi::schema::{ArrayItems, Schema};
        let schema = match schema {
            RefOr::Ref(reference) => return found.extend(Self::name(reference)),
            RefOr::T(schema) => schema,
        };
        match schema {
            Schema::Object(object) => object
                .properties
                .values()
                .for_each(|p| Self::refers_to(p, found)),
            Schema::Array(array) => {
                if let ArrayItems::RefOrSchema(items) = &array.items {
                    Self::refers_to(items, found);
                }
            }
            Schema::OneOf(one_of) => one_of.items.iter().for_each(|i| Self::refers_to(i, found)),
            Schema::AllOf(all_of) => all_of.items.iter().for_each(|i| Self::refers_to(i, found)),
            Schema::AnyOf(any_of) => any_of.items.iter().for_each(|i| Self::refers_to(i, found)),
            _ => {}
        }
    }

    fn close(schema: &mut utoipa::openapi::schema::Schema) {
        use utoipa::openapi::RefOr;
        use utoipa::openapi::schema::{AdditionalProperties, ArrayItems, Schema};
        match schema {
            Schema::Object(object) if !object.properties.is_empty() => {
                object
                    .additional_properties
                    .get_or_insert_with(|| Box::new(AdditionalProperties::FreeForm(false)));
                for property in object.properties.values_mut() {
                    if let RefOr::T(property) = property {
                        Self::close(property);
                    }
                }
            }
            Schema::Array(array) => {
                if let ArrayItems::RefOrSchema(items) = &mut array.items
                    && let RefOr::T(items) = items.as_mut()
                {
                    Self::close(items);
                }
            }
            Schema::AllOf(all_of) => all_of.items.iter_mut().for_each(|item| {
                if let RefOr::T(item) = item {
                    Self::close(item);
                }
            }),
            _ => {}
        }
    }
}

impl Modify for ClosedBodies {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::RefOr;
        let mut pending = Vec::new();
        for item in openapi.paths.paths.values() {
            for operation in [&item.get, &item.post, &item.put, &item.delete] {
                let Some(RefOr::T(body)) = operation.as_ref().and_then(|o| o.request_body.as_ref())
                else {
                    continue;
                };
                for content in body.content.values() {
                    if let RefOr::T(content) = content
                        && let Some(schema) = &content.schema
                    {
                        Self::refers_to(schema, &mut pending);
                    }
                }
            }
        }
        let Some(components) = openapi.components.as_mut() else {
            return;
        };
        let mut closed = std::collections::BTreeSet::new();
        while let Some(name) = pending.pop() {
            if !closed.insert(name.clone()) {
                continue;
            }
            if let Some(schema) = components.schemas.get_mut(&name) {
                Self::refers_to(schema, &mut pending);
                if let RefOr::T(schema) = schema {
                    Self::close(schema);
                }
            }
        }
    }
}

/// A vehicle's year is from 1886 to next year, as the customer service checks it
/// (`check_year`, in UTC): the document is written when it is served, so its maximum moves
/// with the calendar.
struct VehicleYear;

impl Modify for VehicleYear {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use chrono::Datelike;
        use utoipa::openapi::RefOr;
        use utoipa::openapi::schema::Schema;
        let Some(components) = openapi.components.as_mut() else {
            return;
        };
        let next_year = chrono::Utc::now().year() + 1;
        for body in ["CreateVehicle", "UpdateVehicle"] {
            if let Some(RefOr::T(Schema::Object(object))) = components.schemas.get_mut(body)
                && let Some(RefOr::T(Schema::Object(year))) = object.properties.get_mut("year")
            {
                year.maximum = Some(next_year.into());
            }
        }
    }
}

/// A customer is reachable: an email address or a phone number, at least one of them. Each
/// field may be empty on its own, so the rule is on the body (`CreateCustomer`,
/// `UpdateCustomer`), as the customer service checks it (`CustomerFields::validate`).
struct ContactRule;

impl Modify for ContactRule {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::schema::{AllOfBuilder, AnyOfBuilder, ObjectBuilder, Type};
        let Some(components) = openapi.components.as_mut() else {
            return;
        };
        // Typed, so the document reads back (utoipa, strict clients): `field` is present and
        // not empty, at most `max_length` long as the field's own rule says.
        let given = |field: &str, max_length: usize| {
            ObjectBuilder::new()
                .schema_type(Type::Object)
                .property(
                    field,
                    ObjectBuilder::new()
                        .schema_type(Type::String)
                        .min_length(Some(1))
                        .max_length(Some(max_length)),
                )
                .required(field)
        };
        for body in ["CreateCustomer", "UpdateCustomer"] {
            let Some(fields) = components.schemas.remove(body) else {
                continue;
            };
            let reachable = AnyOfBuilder::new()
                .item(given("email", 254))
                .item(given("phone", 40))
                .description(Some("An email address or a phone number is required"));
            components.schemas.insert(
                body.to_string(),
                AllOfBuilder::new().item(fields).item(reachable).into(),
            );
        }
    }
}

/// A stock adjustment's delta by its kind, as the inventory service checks it
/// (`Adjustment::validate`): a receipt adds stock (`delta` 1 or more), an adjustment changes
/// it either way (not 0). So: `delta` positive, or an `ADJUSTMENT` with `delta` negative.
struct StockDelta;

impl Modify for StockDelta {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::schema::{AllOfBuilder, AnyOfBuilder, ObjectBuilder, Type};
        let Some(components) = openapi.components.as_mut() else {
            return;
        };
        let Some(fields) = components.schemas.remove("AdjustStock") else {
            return;
        };
        // Within the fields' own range, -1,000,000 to 1,000,000.
        let delta = |minimum: i32, maximum: i32| {
            ObjectBuilder::new()
                .schema_type(Type::Integer)
                .minimum(Some(minimum))
                .maximum(Some(maximum))
        };
        let adds = ObjectBuilder::new()
            .schema_type(Type::Object)
            .property("delta", delta(1, 1_000_000))
            .required("delta");
        let takes = ObjectBuilder::new()
            .schema_type(Type::Object)
            .property(
                "kind",
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .enum_values(Some(["ADJUSTMENT"])),
            )
            .property("delta", delta(-1_000_000, -1))
            .required("kind")
            .required("delta");
        let by_kind = AnyOfBuilder::new().item(adds).item(takes).description(Some(
            "A receipt adds stock (delta 1 or more); an adjustment may take it away (not 0)",
        ));
        components.schemas.insert(
            "AdjustStock".to_string(),
            AllOfBuilder::new().item(fields).item(by_kind).into(),
        );
    }
}

/// Free text a body needs for some values of another field, as the services check it:
/// `(body, field, the values that need no text, the text field, its maximum length)`.
const REQUIRED_WHEN: &[(&str, &str, &[&str], &str, usize)] = &[
    // A reason to cancel (`workorder` domain, `check_cancellation_reason`).
    (
        "ChangeWorkOrderStatus",
        "status",
        &[
            "OPEN",
            "ESTIMATE",
            "IN_PROGRESS",
            "AWAITING_PARTS",
            "COMPLETED",
            "INVOICED",
        ],
        "reason",
        500,
    ),
    // A note on what was found, for ADVISE and URGENT (`inspection::rate`).
    ("RateItem", "rating", &["OK"], "note", 1000),
    // A reason to decline, on the approval page (`Verdict::validate`).
    ("CustomerDecision", "decision", &["APPROVED"], "reason", 500),
];

/// [`REQUIRED_WHEN`] written out: the body is its fields and either one of the values that
/// need no text or the text.
struct RequiredWhen;

impl Modify for RequiredWhen {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::schema::{AllOfBuilder, AnyOfBuilder, ObjectBuilder, Type};
        let Some(components) = openapi.components.as_mut() else {
            return;
        };
        for &(body, field, without, text, max_length) in REQUIRED_WHEN {
            let Some(fields) = components.schemas.remove(body) else {
                continue;
            };
            let needs_none = ObjectBuilder::new()
                .schema_type(Type::Object)
                .property(
                    field,
                    ObjectBuilder::new()
                        .schema_type(Type::String)
                        .enum_values(Some(without.iter().copied())),
                )
                .required(field);
            let given = ObjectBuilder::new()
                .schema_type(Type::Object)
                .property(
                    text,
                    ObjectBuilder::new()
                        .schema_type(Type::String)
                        .min_length(Some(1))
                        .max_length(Some(max_length))
                        .pattern(Some(FreeText::required_text())),
                )
                .required(text);
            let rule = AnyOfBuilder::new()
                .item(needs_none)
                .item(given)
                .description(Some(format!(
                    "`{text}` is required unless `{field}` is {}",
                    without.join(", ")
                )));
            components.schemas.insert(
                body.to_string(),
                AllOfBuilder::new().item(fields).item(rule).into(),
            );
        }
    }
}

/// Adds to every operation the problem responses it can give.
struct ErrorResponses;

impl Modify for ErrorResponses {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for (path, item) in openapi.paths.paths.iter_mut() {
            let has_path_params = path.contains('{');
            let is_dashboard = path == "/api/dashboard";
            for (method, operation) in [
                (HttpMethod::Get, item.get.as_mut()),
                (HttpMethod::Post, item.post.as_mut()),
                (HttpMethod::Put, item.put.as_mut()),
                (HttpMethod::Delete, item.delete.as_mut()),
            ] {
                let Some(operation) = operation else { continue };
                let has_body = operation.request_body.is_some();
                let writes = method != HttpMethod::Get;
                // A record the request names, in its path, a filter or its body, may not exist;
                // `/api/auth/...` answers 404 to an API token, which is no user.
                let names_a_record = has_path_params
                    || has_body
                    || path.starts_with("/api/auth/")
                    || operation.parameters.iter().flatten().any(
                        |p| matches!(p, utoipa::openapi::RefOr::T(p) if p.name.ends_with("Id")),
                    );
                let mut add = |status: &str, description: &str| add(operation, status, description);
                if has_body {
                    add("400", "The body is not valid JSON");
                    add("413", "The body is larger than 1 MiB");
                    add("415", "The body is not application/json");
                }
                if !is_dashboard {
                    add(
                        "422",
                        "A field, parameter or the body's shape is invalid (unknown fields are named); `errors` lists each",
                    );
                }
                if names_a_record {
                    add(
                        "404",
                        "No such resource, or a record the request names does not exist",
                    );
                }
                if !crate::auth::is_public(path) {
                    add(
                        "401",
                        "No valid token: missing, malformed, expired, revoked or another tenant's",
                    );
                    add(
                        "403",
                        "The caller's role lacks the permission; the detail names it",
                    );
                }
                if writes {
                    add(
                        "409",
                        "Refused in the record's current state, a duplicate, or a stale expectedVersion",
                    );
                }
                add(
                    "429",
                    "Too many requests; Retry-After says when to come back",
                );
                add(
                    "500",
                    "Internal error; the correlation id finds it in the logs",
                );
                if !is_dashboard {
                    add("503", "A service this request needs is unavailable");
                    add("504", "A service did not answer in time");
                }
            }
        }
    }
}

fn add(operation: &mut Operation, status: &str, description: &str) {
    operation
        .responses
        .responses
        .entry(status.to_string())
        .or_insert_with(|| {
            ResponseBuilder::new()
                .description(description)
                .content(
                    PROBLEM_CONTENT_TYPE,
                    ContentBuilder::new()
                        .schema(Some(Ref::from_schema_name("Problem")))
                        .build(),
                )
                .into()
        });
}
