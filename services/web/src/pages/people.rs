//! People and the audit trail, for owners: the list, creating a person (the one-time
//! password is shown once, on the answer to the form, never in a URL), changing a role,
//! deactivating and reactivating, resetting a password; the audit trail with filters by
//! person, action and dates in the tenant's zone. Other roles get no menu entry, and a 403
//! page before any call (identity refuses them anyway).

use askama::Template;
use axum::Form;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use carerp_proto::common::v1::PageRequest;
use carerp_proto::identity::v1 as pb;
use http::StatusCode;
use serde::Deserialize;

use crate::Web;
use crate::format;
use crate::messages::{EN, Messages};
use crate::page::{FieldErrors, PageError, Shell, is_refusal, method, missing, render};
use crate::session::Caller;

const SERVICE: &str = "identity";

const ROLES: &[pb::Role] = &[
    pb::Role::Owner,
    pb::Role::ServiceAdvisor,
    pb::Role::Technician,
    pb::Role::PartsManager,
    pb::Role::Accountant,
];

pub fn role_label(t: &'static Messages, role: i32) -> &'static str {
    match pb::Role::try_from(role) {
        Ok(pb::Role::Owner) => t.role_owner,
        Ok(pb::Role::ServiceAdvisor) => t.role_service_advisor,
        Ok(pb::Role::Technician) => t.role_technician,
        Ok(pb::Role::PartsManager) => t.role_parts_manager,
        Ok(pb::Role::Accountant) => t.role_accountant,
        _ => "",
    }
}

pub fn parse_role(name: &str) -> Option<pb::Role> {
    ROLES.iter().copied().find(|r| r.as_str_name() == name)
}

/// The role choices of a form: (value, label, selected).
pub fn role_choices(selected: i32) -> Vec<(&'static str, &'static str, bool)> {
    ROLES
        .iter()
        .map(|r| {
            (
                r.as_str_name(),
                role_label(&EN, *r as i32),
                *r as i32 == selected,
            )
        })
        .collect()
}

pub struct Row {
    pub id: String,
    pub name: String,
    pub email: String,
    pub role: &'static str,
    pub active: bool,
    pub must_change: bool,
    pub last_sign_in: String,
}

#[derive(Default, Deserialize)]
pub struct NewPerson {
    #[serde(default)]
    email: String,
    #[serde(default)]
    display_name: String,
    #[serde(default)]
    role: String,
    #[serde(default)]
    idempotency_key: String,
}

#[derive(Template)]
#[template(path = "people.html")]
struct ListPage {
    shell: Shell,
    rows: Vec<Row>,
    form: NewPerson,
    roles: Vec<(&'static str, &'static str, bool)>,
    errors: FieldErrors,
    others: Vec<String>,
    /// The person just created and their one-time password, shown this once.
    created: Option<(String, String)>,
    missing: Vec<&'static str>,
}

async fn users(web: &Web, caller: &Caller) -> Result<Vec<pb::User>, tonic::Status> {
    let clients = &web.clients;
    Ok(clients
        .identity
        .clone()
        .list_users(clients.request(
            &caller.ctx,
            pb::ListUsersRequest {
                page: Some(PageRequest {
                    page_size: 500,
                    page_token: String::new(),
                }),
                include_inactive: true,
            },
        ))
        .await?
        .into_inner()
        .users)
}

async fn list_page(
    web: &Web,
    caller: &Caller,
    form: NewPerson,
    errors: FieldErrors,
    created: Option<(String, String)>,
    code: StatusCode,
) -> Response {
    let t = &EN;
    let (rows, absent) = match users(web, caller).await {
        Ok(users) => (
            users
                .into_iter()
                .map(|u| Row {
                    role: role_label(t, u.role),
                    last_sign_in: format::date_time(t, &web.zone, u.last_sign_in_at.as_ref()),
                    active: u.active,
                    must_change: u.must_change_password,
                    id: u.id,
                    name: u.display_name,
                    email: u.email,
                })
                .collect(),
            Vec::new(),
        ),
        Err(status) => match PageError::from_status(SERVICE, &status) {
            PageError::Unavailable(service) => (Vec::new(), vec![missing(t, service)]),
            other => return other.into_response(),
        },
    };
    let selected = parse_role(&form.role).unwrap_or(pb::Role::ServiceAdvisor) as i32;
    render(
        code,
        &ListPage {
            shell: Shell::new(Some(caller), t.people_title, "people"),
            rows,
            roles: role_choices(selected),
            others: errors.others(&["email", "display_name", "role"]),
            form,
            errors,
            created,
            missing: absent,
        },
    )
}

fn fresh_form() -> NewPerson {
    NewPerson {
        idempotency_key: uuid::Uuid::now_v7().to_string(),
        ..NewPerson::default()
    }
}

pub async fn list(State(web): State<Web>, caller: Caller) -> Response {
    if let Err(refused) = caller.require(method::LIST_USERS) {
        return refused.into_response();
    }
    list_page(
        &web,
        &caller,
        fresh_form(),
        FieldErrors::default(),
        None,
        StatusCode::OK,
    )
    .await
}

pub async fn create(
    State(web): State<Web>,
    caller: Caller,
    Form(form): Form<NewPerson>,
) -> Response {
    if let Err(refused) = caller.require(method::CREATE_USER) {
        return refused.into_response();
    }
    let clients = &web.clients;
    let answer = clients
        .identity
        .clone()
        .create_user(clients.request(
            &caller.ctx,
            pb::CreateUserRequest {
                email: form.email.trim().to_string(),
                display_name: form.display_name.clone(),
                role: parse_role(&form.role).map(|r| r as i32).unwrap_or_default(),
                idempotency_key: form.idempotency_key.clone(),
            },
        ))
        .await;
    match answer {
        Ok(created) => {
            let created = created.into_inner();
            let name = created.user.map(|u| u.display_name).unwrap_or_default();
            list_page(
                &web,
                &caller,
                fresh_form(),
                FieldErrors::default(),
                Some((name, created.one_time_password)),
                StatusCode::OK,
            )
            .await
        }
        Err(status) if is_refusal(&status) => {
            list_page(
                &web,
                &caller,
                form,
                refusal_errors(&status, "email"),
                None,
                StatusCode::UNPROCESSABLE_ENTITY,
            )
            .await
        }
        Err(status) => PageError::from_status(SERVICE, &status).into_response(),
    }
}

fn refusal_errors(status: &tonic::Status, field: &str) -> FieldErrors {
    let mut errors = FieldErrors::from_status(status);
    if status.code() == tonic::Code::Aborted {
        errors.add("version", EN.stale_write_person);
    } else if errors.is_empty() {
        errors.add(field, status.message());
    }
    errors
}

#[derive(Template)]
#[template(path = "person.html")]
struct PersonPage {
    shell: Shell,
    user: pb::User,
    role: &'static str,
    version: i64,
    is_self: bool,
    roles: Vec<(&'static str, &'static str, bool)>,
    saved: bool,
    one_time_password: Option<String>,
    errors: FieldErrors,
}

async fn person_page(
    web: &Web,
    caller: &Caller,
    id: &str,
    saved: bool,
    one_time_password: Option<String>,
    errors: FieldErrors,
    code: StatusCode,
) -> Response {
    let t = &EN;
    let clients = &web.clients;
    let user = match clients
        .identity
        .clone()
        .get_user(clients.request(&caller.ctx, pb::GetUserRequest { id: id.to_string() }))
        .await
    {
        Ok(user) => user.into_inner(),
        Err(status) => return PageError::from_status(SERVICE, &status).into_response(),
    };
    render(
        code,
        &PersonPage {
            shell: Shell::new(Some(caller), user.display_name.clone(), "people"),
            role: role_label(t, user.role),
            version: user.audit.as_ref().map(|a| a.version).unwrap_or_default(),
            is_self: caller.ctx.actor() == user.id,
            roles: role_choices(user.role),
            saved,
            one_time_password,
            errors,
            user,
        },
    )
}

#[derive(Deserialize)]
pub struct Saved {
    #[serde(default)]
    saved: String,
}

pub async fn person(
    State(web): State<Web>,
    caller: Caller,
    Path(id): Path<String>,
    Query(query): Query<Saved>,
) -> Response {
    if let Err(refused) = caller.require(method::LIST_USERS) {
        return refused.into_response();
    }
    person_page(
        &web,
        &caller,
        &id,
        !query.saved.is_empty(),
        None,
        FieldErrors::default(),
        StatusCode::OK,
    )
    .await
}

#[derive(Default, Deserialize)]
pub struct Change {
    #[serde(default)]
    role: String,
    #[serde(default)]
    active: String,
    #[serde(default)]
    expected_version: i64,
}

/// A role change (`role` set) or (de)activation (`active` is `true` or `false`).
pub async fn update(
    State(web): State<Web>,
    caller: Caller,
    Path(id): Path<String>,
    Form(form): Form<Change>,
) -> Response {
    if let Err(refused) = caller.require(method::UPDATE_USER) {
        return refused.into_response();
    }
    let role = parse_role(&form.role).map(|r| r as i32);
    let active = match form.active.as_str() {
        "true" => Some(true),
        "false" => Some(false),
        _ => None,
    };
    let clients = &web.clients;
    let answer = clients
        .identity
        .clone()
        .update_user(clients.request(
            &caller.ctx,
            pb::UpdateUserRequest {
                id: id.clone(),
                display_name: None,
                role,
                active,
                expected_version: Some(form.expected_version),
            },
        ))
        .await;
    match answer {
        Ok(_) => Redirect::to(&format!("/people/{id}?saved=1")).into_response(),
        Err(status) if is_refusal(&status) => {
            person_page(
                &web,
                &caller,
                &id,
                false,
                None,
                refusal_errors(&status, "role"),
                StatusCode::UNPROCESSABLE_ENTITY,
            )
            .await
        }
        Err(status) => PageError::from_status(SERVICE, &status).into_response(),
    }
}

/// A new one-time password, shown this once on the answer.
pub async fn reset_password(
    State(web): State<Web>,
    caller: Caller,
    Path(id): Path<String>,
) -> Response {
    if let Err(refused) = caller.require(method::RESET_PASSWORD) {
        return refused.into_response();
    }
    let clients = &web.clients;
    let answer = clients
        .identity
        .clone()
        .reset_password(clients.request(&caller.ctx, pb::ResetPasswordRequest { id: id.clone() }))
        .await;
    match answer {
        Ok(reset) => {
            let password = reset.into_inner().one_time_password;
            person_page(
                &web,
                &caller,
                &id,
                false,
                Some(password),
                FieldErrors::default(),
                StatusCode::OK,
            )
            .await
        }
        Err(status) if is_refusal(&status) => {
            person_page(
                &web,
                &caller,
                &id,
                false,
                None,
                refusal_errors(&status, "password"),
                StatusCode::UNPROCESSABLE_ENTITY,
            )
            .await
        }
        Err(status) => PageError::from_status(SERVICE, &status).into_response(),
    }
}

pub struct AuditRow {
    pub at: String,
    pub actor: String,
    pub action: String,
    pub target: String,
    pub service: String,
    pub details: String,
}

#[derive(Default, Deserialize)]
pub struct AuditQuery {
    #[serde(default)]
    actor: String,
    #[serde(default)]
    action: String,
    #[serde(default)]
    from: String,
    #[serde(default)]
    to: String,
}

#[derive(Template)]
#[template(path = "audit.html")]
struct AuditPage {
    shell: Shell,
    query: AuditQuery,
    people: Vec<(String, String, bool)>,
    rows: Vec<AuditRow>,
    errors: FieldErrors,
    missing: Vec<&'static str>,
}

/// The start of an ISO day in `zone` (`days` later), as a proto timestamp.
fn day_start(iso: &str, days: i64, zone: &jiff::tz::TimeZone) -> Option<prost_types::Timestamp> {
    let date: jiff::civil::Date = iso.trim().parse().ok()?;
    let date = date.checked_add(jiff::Span::new().days(days)).ok()?;
    let at = date.to_zoned(zone.clone()).ok()?.timestamp();
    Some(prost_types::Timestamp {
        seconds: at.as_second(),
        nanos: 0,
    })
}

pub async fn audit(
    State(web): State<Web>,
    caller: Caller,
    Query(query): Query<AuditQuery>,
) -> Response {
    let t = &EN;
    if let Err(refused) = caller.require(method::LIST_AUDIT) {
        return refused.into_response();
    }
    let mut errors = FieldErrors::default();
    let mut bound = |field: &str, typed: &str, days: i64| {
        if typed.trim().is_empty() {
            return None;
        }
        let at = day_start(typed, days, &web.zone);
        if at.is_none() {
            errors.add(field, t.date_invalid);
        }
        at
    };
    let from = bound("from", &query.from, 0);
    let to = bound("to", &query.to, 1);
    let clients = &web.clients;
    let mut identity = clients.identity.clone();
    let (people, entries) = tokio::join!(
        users(&web, &caller),
        identity.list_audit(clients.request(
            &caller.ctx,
            pb::ListAuditRequest {
                page: Some(PageRequest {
                    page_size: 200,
                    page_token: String::new(),
                }),
                actor_id: query.actor.trim().to_string(),
                action: query.action.trim().to_string(),
                from,
                to,
            },
        )),
    );
    let people = people.unwrap_or_default();
    let name_of = |id: &str| {
        people
            .iter()
            .find(|u| u.id == id)
            .map(|u| u.display_name.clone())
            .unwrap_or_else(|| id.to_string())
    };
    let mut absent = Vec::new();
    let rows = match entries {
        Ok(list) => list
            .into_inner()
            .entries
            .into_iter()
            .map(|e| AuditRow {
                at: format::date_time(t, &web.zone, e.at.as_ref()),
                actor: name_of(&e.actor_id),
                action: e.action,
                target: e.target,
                service: e.service,
                details: e.details_json,
            })
            .collect(),
        Err(status) => match PageError::from_status(SERVICE, &status) {
            PageError::Unavailable(service) => {
                absent.push(missing(t, service));
                Vec::new()
            }
            PageError::Conflict(why) => {
                errors.add("action", why);
                Vec::new()
            }
            other => return other.into_response(),
        },
    };
    let people = people
        .iter()
        .map(|u| (u.id.clone(), u.display_name.clone(), u.id == query.actor))
        .collect();
    render(
        if errors.is_empty() {
            StatusCode::OK
        } else {
            StatusCode::UNPROCESSABLE_ENTITY
        },
        &AuditPage {
            shell: Shell::new(Some(&caller), t.audit_title, "audit"),
            query,
            people,
            rows,
            errors,
            missing: absent,
        },
    )
}
