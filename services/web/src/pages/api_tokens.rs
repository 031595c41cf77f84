//! API tokens of the garage's integrations, for owners: the list (with when each was last
//! used), creating one (the token is shown once, on the answer to the form, never in a URL;
//! only its hash is kept) and revoking one. Other roles get no menu entry and a 403 page
//! before any call (identity refuses them anyway).

use askama::Template;
use axum::Form;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use carerp_proto::identity::v1 as pb;
use http::StatusCode;
use serde::Deserialize;

use crate::Web;
use crate::format;
use crate::messages::EN;
use crate::page::{FieldErrors, PageError, Shell, is_refusal, method, missing, render};
use crate::pages::people::{parse_role, role_choices, role_label};
use crate::session::Caller;

const SERVICE: &str = "identity";
/// How long a new token lives unless the owner says otherwise.
const DEFAULT_DAYS: i64 = 90;

pub struct Row {
    pub id: String,
    pub name: String,
    pub role: &'static str,
    pub expires: String,
    pub last_used: String,
    pub revoked: bool,
}

#[derive(Default, Deserialize)]
pub struct NewToken {
    #[serde(default)]
    name: String,
    #[serde(default)]
    role: String,
    #[serde(default)]
    days: String,
}

#[derive(Template)]
#[template(path = "api_tokens.html")]
struct ListPage {
    shell: Shell,
    rows: Vec<Row>,
    form: NewToken,
    roles: Vec<(&'static str, &'static str, bool)>,
    errors: FieldErrors,
    others: Vec<String>,
    /// The token just created, shown this once.
    created: Option<(String, String)>,
    missing: Vec<&'static str>,
}

async fn list_page(
    web: &Web,
    caller: &Caller,
    form: NewToken,
    errors: FieldErrors,
    created: Option<(String, String)>,
    code: StatusCode,
) -> Response {
    let t = &EN;
    let clients = &web.clients;
    let listed = clients
        .identity
        .clone()
        .list_api_tokens(clients.request(
            &caller.ctx,
            pb::ListApiTokensRequest {
                include_revoked: true,
            },
        ))
        .await;
    let (rows, absent) = match listed {
        Ok(list) => (
            list.into_inner()
                .api_tokens
                .into_iter()
                .map(|token| Row {
                    role: role_label(t, token.role),
                    expires: format::date_time(t, &web.zone, token.expires_at.as_ref()),
                    last_used: format::date_time(t, &web.zone, token.last_used_at.as_ref()),
                    revoked: token.revoked_at.is_some(),
                    id: token.id,
                    name: token.name,
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
            shell: Shell::new(Some(caller), t.api_tokens_title, "api-tokens"),
            rows,
            roles: role_choices(selected),
            others: errors.others(&["name", "role", "days"]),
            form,
            errors,
            created,
            missing: absent,
        },
    )
}

fn fresh_form() -> NewToken {
    NewToken {
        days: DEFAULT_DAYS.to_string(),
        ..NewToken::default()
    }
}

pub async fn list(State(web): State<Web>, caller: Caller) -> Response {
    if let Err(refused) = caller.require(method::LIST_API_TOKENS) {
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
    Form(form): Form<NewToken>,
) -> Response {
    let t = &EN;
    if let Err(refused) = caller.require(method::CREATE_API_TOKEN) {
        return refused.into_response();
    }
    let Some(days) = form
        .days
        .trim()
        .parse::<i64>()
        .ok()
        .filter(|d| (1..=365).contains(d))
    else {
        let mut errors = FieldErrors::default();
        errors.add("days", t.api_token_days_invalid);
        return list_page(
            &web,
            &caller,
            form,
            errors,
            None,
            StatusCode::UNPROCESSABLE_ENTITY,
        )
        .await;
    };
    let expires_at = chrono::Utc::now() + chrono::Duration::days(days);
    let clients = &web.clients;
    let answer = clients
        .identity
        .clone()
        .create_api_token(clients.request(
            &caller.ctx,
            pb::CreateApiTokenRequest {
                name: form.name.trim().to_string(),
                role: parse_role(&form.role).map(|r| r as i32).unwrap_or_default(),
                expires_at: Some(prost_types::Timestamp {
                    seconds: expires_at.timestamp(),
                    nanos: 0,
                }),
            },
        ))
        .await;
    match answer {
        Ok(created) => {
            let created = created.into_inner();
            let name = created.api_token.map(|a| a.name).unwrap_or_default();
            let shown = Some((name, created.token));
            list_page(
                &web,
                &caller,
                fresh_form(),
                FieldErrors::default(),
                shown,
                StatusCode::OK,
            )
            .await
        }
        Err(status) if is_refusal(&status) => {
            let mut errors = FieldErrors::from_status(&status);
            if errors.is_empty() {
                errors.add("name", status.message());
            }
            list_page(
                &web,
                &caller,
                form,
                errors,
                None,
                StatusCode::UNPROCESSABLE_ENTITY,
            )
            .await
        }
        Err(status) => PageError::from_status(SERVICE, &status).into_response(),
    }
}

pub async fn revoke(State(web): State<Web>, caller: Caller, Path(id): Path<String>) -> Response {
    if let Err(refused) = caller.require(method::REVOKE_API_TOKEN) {
        return refused.into_response();
    }
    let clients = &web.clients;
    match clients
        .identity
        .clone()
        .revoke_api_token(clients.request(&caller.ctx, pb::RevokeApiTokenRequest { id }))
        .await
    {
        Ok(_) => Redirect::to("/api-tokens").into_response(),
        Err(status) => PageError::from_status(SERVICE, &status).into_response(),
    }
}
