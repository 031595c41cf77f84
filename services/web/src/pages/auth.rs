//! Signing in and out, and changing one's password (forced after a one-time password).

use askama::Template;
use axum::Form;
use axum::extract::State;
use axum::response::{IntoResponse, Redirect, Response};
use carerp_bff::edge::ClientAddress;
use carerp_kit::RequestContext;
use carerp_proto::identity::v1 as pb;
use http::{HeaderMap, StatusCode, header};
use serde::Deserialize;

use crate::Web;
use crate::page::{FieldErrors, PageError, Shell, render};
use crate::session::{Caller, Tokens, is_tls, set_cookie};

pub const SIGN_IN_PATH: &str = "/sign-in";
pub const PASSWORD_PATH: &str = "/password";

#[derive(Template)]
#[template(path = "sign_in.html")]
struct SignInPage {
    shell: Shell,
    email: String,
    error: Option<&'static str>,
}

pub async fn sign_in_form() -> Response {
    render(StatusCode::OK, &sign_in_page(String::new(), None))
}

fn sign_in_page(email: String, error: Option<&'static str>) -> SignInPage {
    let shell = Shell::new(None, crate::messages::EN.sign_in_title, "sign-in");
    SignInPage {
        shell,
        email,
        error,
    }
}

#[derive(Deserialize)]
pub struct SignIn {
    email: String,
    password: String,
}

pub async fn sign_in(
    State(web): State<Web>,
    client: ClientAddress,
    ctx: Option<axum::Extension<RequestContext>>,
    headers: HeaderMap,
    Form(form): Form<SignIn>,
) -> Response {
    let ctx = ctx.map(|c| c.0).unwrap_or_else(RequestContext::new_root);
    let t = &crate::messages::EN;
    let clients = &web.clients;
    let answer = clients
        .identity
        .clone()
        .login(clients.request(
            &ctx,
            pb::LoginRequest {
                email: form.email.clone(),
                password: form.password,
                client_address: client.to_string(),
            },
        ))
        .await;
    let session = match answer {
        Ok(session) => session.into_inner(),
        Err(status) => {
            let (code, message) = match status.code() {
                tonic::Code::ResourceExhausted => {
                    (StatusCode::TOO_MANY_REQUESTS, t.sign_in_throttled)
                }
                tonic::Code::Unavailable | tonic::Code::DeadlineExceeded => {
                    (StatusCode::SERVICE_UNAVAILABLE, t.missing_identity)
                }
                _ => (StatusCode::UNAUTHORIZED, t.sign_in_failed),
            };
            return render(code, &sign_in_page(form.email, Some(message)));
        }
    };
    let must_change = session
        .user
        .as_ref()
        .is_some_and(|user| user.must_change_password);
    let tokens = Tokens::from_session(&session, must_change);
    let to = if must_change { PASSWORD_PATH } else { "/" };
    let mut response = Redirect::to(to).into_response();
    response.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(Some(&tokens), is_tls(&headers)),
    );
    response
}

/// Ends the session at the identity service (its tokens are refused from now on, also by
/// this BFF) and clears the cookie.
pub async fn sign_out(State(web): State<Web>, caller: Caller, headers: HeaderMap) -> Response {
    let clients = &web.clients;
    let ended = clients
        .identity
        .clone()
        .logout(clients.request(&caller.ctx, pb::LogoutRequest {}))
        .await;
    if let Err(status) = ended {
        return PageError::from_status("identity", &status).into_response();
    }
    let mut response = Redirect::to(SIGN_IN_PATH).into_response();
    response
        .headers_mut()
        .append(header::SET_COOKIE, set_cookie(None, is_tls(&headers)));
    response
}

#[derive(Template)]
#[template(path = "password.html")]
struct PasswordPage {
    shell: Shell,
    forced: bool,
    done: bool,
    errors: FieldErrors,
}

pub async fn password_form(caller: Caller) -> Response {
    render(
        StatusCode::OK,
        &password_page(&caller, false, FieldErrors::default()),
    )
}

fn password_page(caller: &Caller, done: bool, errors: FieldErrors) -> PasswordPage {
    PasswordPage {
        shell: Shell::new(Some(caller), crate::messages::EN.password_title, "password"),
        forced: caller.tokens.must_change_password,
        done,
        errors,
    }
}

#[derive(Deserialize)]
pub struct ChangePassword {
    current_password: String,
    new_password: String,
}

pub async fn change_password(
    State(web): State<Web>,
    caller: Caller,
    headers: HeaderMap,
    Form(form): Form<ChangePassword>,
) -> Response {
    let clients = &web.clients;
    let answer = clients
        .identity
        .clone()
        .change_password(clients.request(
            &caller.ctx,
            pb::ChangePasswordRequest {
                current_password: form.current_password,
                new_password: form.new_password,
            },
        ))
        .await;
    match answer {
        Ok(_) => {
            let was_forced = caller.tokens.must_change_password;
            let mut tokens = caller.tokens.clone();
            tokens.must_change_password = false;
            let mut response = if was_forced {
                Redirect::to("/").into_response()
            } else {
                let mut caller = caller;
                caller.tokens = tokens.clone();
                render(
                    StatusCode::OK,
                    &password_page(&caller, true, FieldErrors::default()),
                )
            };
            response.headers_mut().append(
                header::SET_COOKIE,
                set_cookie(Some(&tokens), is_tls(&headers)),
            );
            response
        }
        Err(status) if status.code() == tonic::Code::InvalidArgument => render(
            StatusCode::UNPROCESSABLE_ENTITY,
            &password_page(&caller, false, FieldErrors::from_status(&status)),
        ),
        Err(status) => PageError::from_status("identity", &status).into_response(),
    }
}
