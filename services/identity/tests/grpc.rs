//! The identity service over gRPC, served in-process on an ephemeral port, on a real
//! PostgreSQL database of its own per test.

mod common;

use carerp_kit::auth::{Role, testing};
use carerp_kit::status::field_violations;
use carerp_proto::common::v1::PageRequest;
use carerp_proto::identity::v1 as pb;
use common::*;
use sqlx::PgPool;
use tonic::Code;
use tonic_types::StatusExt;

fn assert_code<T: std::fmt::Debug>(result: Result<T, tonic::Status>, code: Code) -> tonic::Status {
    let status = result.unwrap_err();
    assert_eq!(status.code(), code, "{status:?}");
    status
}

fn fields(status: &tonic::Status) -> Vec<String> {
    field_violations(status)
        .into_iter()
        .map(|v| v.field)
        .collect()
}

#[sqlx::test(migrator = "carerp_identity::MIGRATOR")]
async fn signing_in_gives_a_verified_access_token_and_a_refresh_token(pool: PgPool) {
    let mut h = Harness::start(pool).await;
    let session = h
        .login(" Owner@Garage.EXAMPLE ", OWNER_PASSWORD)
        .await
        .unwrap();
    let principal = testing::verifying_keys(&h.tenant)
        .verify(&session.access_token)
        .unwrap();
    let user = session.user.clone().unwrap();
    assert_eq!(principal.subject.to_string(), user.id);
    assert_eq!(principal.role, Role::Owner);
    assert_eq!(principal.session_id.to_string(), session.session_id);
    assert_eq!(user.email, OWNER_EMAIL);
    assert!(!user.must_change_password);
    assert!(user.last_sign_in_at.is_some());
    assert_eq!(session.refresh_token.len(), 43);
    // Only a hash of the refresh token is stored.
    let stored: Vec<Vec<u8>> = sqlx::query_scalar("SELECT hash FROM refresh_tokens")
        .fetch_all(&h.pool)
        .await
        .unwrap();
    assert_eq!(stored.len(), 1);
    assert_ne!(stored[0], session.refresh_token.as_bytes());

    let me = h
        .client
        .get_me(as_(&session, pb::GetMeRequest {}))
        .await
        .unwrap();
    assert_eq!(me.into_inner().id, user.id);
    let sign_ins = h.audit(&session, "auth.sign-in").await;
    assert_eq!(sign_ins.len(), 1);
    assert_eq!(sign_ins[0].actor_id, user.id);
    assert_eq!(sign_ins[0].client_address, "203.0.113.7");
}

#[sqlx::test(migrator = "carerp_identity::MIGRATOR")]
async fn a_wrong_password_and_an_unknown_email_get_the_same_answer(pool: PgPool) {
    let mut h = Harness::start(pool).await;
    let wrong = assert_code(
        h.login(OWNER_EMAIL, "not-the-password").await,
        Code::Unauthenticated,
    );
    let unknown = assert_code(
        h.login("nobody@garage.example", OWNER_PASSWORD).await,
        Code::Unauthenticated,
    );
    assert_eq!(wrong.message(), "email or password is wrong");
    assert_eq!(unknown.message(), wrong.message());
    let owner = h.owner_session().await;
    let failures = h.audit(&owner, "auth.sign-in-failed").await;
    assert_eq!(failures.len(), 2);
    // Newest first: the unknown email has no actor.
    assert_eq!(failures[0].actor_id, "");
    assert_eq!(failures[1].actor_id, owner.user.unwrap().id);
    assert!(!failures[1].details_json.contains("not-the-password"));
}

#[sqlx::test(migrator = "carerp_identity::MIGRATOR")]
async fn an_inactive_user_is_refused_like_a_wrong_password(pool: PgPool) {
    let mut h = Harness::start(pool).await;
    let owner = h.owner_session().await;
    let created = h
        .create_user(&owner, "tom@garage.example", pb::Role::Technician)
        .await;
    let tom = created.user.unwrap();
    h.set_active(&owner, &tom.id, false).await;
    let status = assert_code(
        h.login("tom@garage.example", &created.one_time_password)
            .await,
        Code::Unauthenticated,
    );
    assert_eq!(status.message(), "email or password is wrong");
}

#[sqlx::test(migrator = "carerp_identity::MIGRATOR")]
async fn a_throttled_account_is_refused_even_with_the_right_password(pool: PgPool) {
    let mut h = Harness::start(pool).await;
    // The fifth failure (from several addresses) locks the account for a second.
    for n in 0..5 {
        let address = format!("198.51.100.{n}");
        assert_code(
            h.login_from(OWNER_EMAIL, "guess-guess-guess", &address)
                .await,
            Code::Unauthenticated,
        );
    }
    let status = assert_code(
        h.login_from(OWNER_EMAIL, OWNER_PASSWORD, "192.0.2.1").await,
        Code::ResourceExhausted,
    );
    let retry = status.get_details_retry_info().expect("retry info");
    let delay = retry.retry_delay.expect("retry delay");
    assert_eq!(delay.as_secs(), 1, "{delay:?}");
    // Only the account is locked: another account from a fresh address signs in.
    let other = h.owner_session_from_other_account().await;
    assert!(other.is_ok(), "{other:?}");
}

impl Harness {
    /// A second user signing in from an address of their own.
    async fn owner_session_from_other_account(&mut self) -> Result<pb::Session, tonic::Status> {
        let token = testing::token(&self.tenant, Role::Owner);
        let created = self
            .client
            .create_user(testing::request(
                &token,
                pb::CreateUserRequest {
                    email: "ada@garage.example".into(),
                    display_name: "Ada Advisor".into(),
                    role: pb::Role::ServiceAdvisor.into(),
                    idempotency_key: String::new(),
                },
            ))
            .await?
            .into_inner();
        self.login_from(
            "ada@garage.example",
            &created.one_time_password,
            "192.0.2.99",
        )
        .await
    }
}

#[sqlx::test(migrator = "carerp_identity::MIGRATOR")]
async fn a_client_address_with_many_failures_is_throttled_for_every_account(pool: PgPool) {
    let mut h = Harness::start(pool).await;
    for n in 0..5 {
        let email = format!("guess{n}@garage.example");
        assert_code(
            h.login_from(&email, "guess-guess-guess", "198.51.100.66")
                .await,
            Code::Unauthenticated,
        );
    }
    let status = assert_code(
        h.login_from(OWNER_EMAIL, OWNER_PASSWORD, "198.51.100.66")
            .await,
        Code::ResourceExhausted,
    );
    assert!(status.get_details_retry_info().is_some());
}

#[sqlx::test(migrator = "carerp_identity::MIGRATOR")]
async fn refresh_rotates_and_a_reused_token_ends_the_session(pool: PgPool) {
    let mut h = Harness::start(pool).await;
    let first = h.owner_session().await;
    let second = h.refresh(&first.refresh_token).await.unwrap();
    assert_eq!(second.session_id, first.session_id);
    assert_ne!(second.refresh_token, first.refresh_token);
    assert!(
        testing::verifying_keys(&h.tenant)
            .verify(&second.access_token)
            .is_ok()
    );

    let reused = assert_code(h.refresh(&first.refresh_token).await, Code::Unauthenticated);
    assert!(reused.message().contains("already used"), "{reused:?}");
    // The newest token of the session is refused too, from then on.
    assert_code(
        h.refresh(&second.refresh_token).await,
        Code::Unauthenticated,
    );
    let events = h.outbox(&first.session_id).await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].topic, "identity.session-revoked");
    assert_eq!(events[0].data["reason"], "refresh-token-reused");
    let owner = h.owner_session().await;
    assert_eq!(h.audit(&owner, "auth.refresh-reused").await.len(), 1);
    assert_code(h.refresh("not-a-token").await, Code::Unauthenticated);
    assert_code(h.refresh("").await, Code::InvalidArgument);
}

#[sqlx::test(migrator = "carerp_identity::MIGRATOR")]
async fn a_deactivated_users_sessions_end_at_once(pool: PgPool) {
    let mut h = Harness::start(pool).await;
    let owner = h.owner_session().await;
    let created = h
        .create_user(&owner, "tom@garage.example", pb::Role::Technician)
        .await;
    let tom = h
        .login("tom@garage.example", &created.one_time_password)
        .await
        .unwrap();
    assert!(tom.user.as_ref().unwrap().must_change_password);
    h.set_active(&owner, &created.user.unwrap().id, false).await;
    assert_code(h.refresh(&tom.refresh_token).await, Code::Unauthenticated);
    let events = h.outbox(&tom.session_id).await;
    assert_eq!(events[0].data["reason"], "user-deactivated");
    let updates = h.audit(&owner, "user.updated").await;
    assert_eq!(
        updates[0].details_json,
        r#"{"active":{"from":true,"to":false}}"#
    );
}

#[sqlx::test(migrator = "carerp_identity::MIGRATOR")]
async fn logout_ends_the_callers_session(pool: PgPool) {
    let mut h = Harness::start(pool).await;
    let session = h.owner_session().await;
    h.client
        .logout(as_(&session, pb::LogoutRequest {}))
        .await
        .unwrap();
    assert_code(
        h.refresh(&session.refresh_token).await,
        Code::Unauthenticated,
    );
    let events = h.outbox(&session.session_id).await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].data["reason"], "sign-out");
    let owner = h.owner_session().await;
    assert_eq!(h.audit(&owner, "auth.sign-out").await.len(), 1);
}

#[sqlx::test(migrator = "carerp_identity::MIGRATOR")]
async fn changing_the_password_checks_the_current_one_and_the_new_ones_strength(pool: PgPool) {
    let mut h = Harness::start(pool).await;
    let owner = h.owner_session().await;
    let created = h
        .create_user(&owner, "tom@garage.example", pb::Role::Technician)
        .await;
    let tom = h
        .login("tom@garage.example", &created.one_time_password)
        .await
        .unwrap();
    let change = |current: &str, new: &str| {
        as_(
            &tom,
            pb::ChangePasswordRequest {
                current_password: current.into(),
                new_password: new.into(),
            },
        )
    };
    let otp = created.one_time_password.as_str();
    let cases = [
        (otp, "short", vec!["new_password"], "at least 12 characters"),
        (
            otp,
            "password1234",
            vec!["new_password"],
            "too easy to guess",
        ),
        (
            "wrong-current-1",
            NEW_PASSWORD,
            vec!["current_password"],
            "not your current password",
        ),
    ];
    for (current, new, expected, why) in cases {
        let status = assert_code(
            h.client.change_password(change(current, new)).await,
            Code::InvalidArgument,
        );
        assert_eq!(fields(&status), expected);
        assert!(status.message().contains(why), "{status:?}");
        assert!(
            !status.message().contains(new) || new == NEW_PASSWORD,
            "{status:?}"
        );
    }
    let user = h
        .client
        .change_password(change(otp, NEW_PASSWORD))
        .await
        .unwrap()
        .into_inner();
    assert!(!user.must_change_password);
    assert_code(
        h.login("tom@garage.example", otp).await,
        Code::Unauthenticated,
    );
    let again = h.login("tom@garage.example", NEW_PASSWORD).await.unwrap();
    assert!(!again.user.unwrap().must_change_password);
    assert_eq!(h.audit(&owner, "user.password-changed").await.len(), 1);
}

#[sqlx::test(migrator = "carerp_identity::MIGRATOR")]
async fn the_first_owner_is_created_once(pool: PgPool) {
    let tenant = carerp_kit::config::test_tenant();
    let h = Harness::start_with(pool.clone(), &tenant, Some(owner(true))).await;
    h.service.stop().await.unwrap();
    // A restart (or a second replica) with other settings creates nobody.
    let mut other = owner(true);
    other.email = "second@garage.example".into();
    let mut h = Harness::start_with(pool.clone(), &tenant, Some(other)).await;
    let owners: Vec<String> = sqlx::query_scalar("SELECT email FROM users WHERE role = 'OWNER'")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(owners, [OWNER_EMAIL]);
    // A temporary password signs in, and says it must be changed.
    let session = h.owner_session().await;
    assert!(session.user.unwrap().must_change_password);
}

#[sqlx::test(migrator = "carerp_identity::MIGRATOR")]
async fn without_an_owner_password_nobody_is_created(pool: PgPool) {
    let _h = Harness::start_with(pool.clone(), &carerp_kit::config::test_tenant(), None).await;
    let users: i64 = sqlx::query_scalar("SELECT count(*) FROM users")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(users, 0);
}

#[sqlx::test(migrator = "carerp_identity::MIGRATOR")]
async fn emails_are_unique_whatever_their_case_and_creates_are_idempotent(pool: PgPool) {
    let mut h = Harness::start(pool).await;
    let owner = h.owner_session().await;
    let request = |email: &str, key: &str| {
        as_(
            &owner,
            pb::CreateUserRequest {
                email: email.into(),
                display_name: "Ada Advisor".into(),
                role: pb::Role::ServiceAdvisor.into(),
                idempotency_key: key.into(),
            },
        )
    };
    let first = h
        .client
        .create_user(request("ada@garage.example", "k1"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(first.one_time_password.len(), 16);
    let repeat = h
        .client
        .create_user(request("ada@garage.example", "k1"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(repeat.user, first.user);
    assert_eq!(repeat.one_time_password, "");
    let status = assert_code(
        h.client
            .create_user(request("ADA@Garage.Example", ""))
            .await,
        Code::AlreadyExists,
    );
    assert!(
        status.message().contains("ADA@Garage.Example"),
        "{status:?}"
    );
    let invalid = assert_code(
        h.client
            .create_user(as_(
                &owner,
                pb::CreateUserRequest {
                    email: "nope".into(),
                    ..Default::default()
                },
            ))
            .await,
        Code::InvalidArgument,
    );
    assert_eq!(fields(&invalid), ["email", "display_name", "role"]);
    let listed = h
        .client
        .list_users(as_(
            &owner,
            pb::ListUsersRequest {
                page: Some(PageRequest {
                    page_size: 1,
                    page_token: String::new(),
                }),
                include_inactive: false,
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.users.len(), 1);
    assert!(!listed.page.unwrap().next_page_token.is_empty());
}

#[sqlx::test(migrator = "carerp_identity::MIGRATOR")]
async fn an_update_at_a_stale_version_is_aborted(pool: PgPool) {
    let mut h = Harness::start(pool).await;
    let owner = h.owner_session().await;
    let tom = h
        .create_user(&owner, "tom@garage.example", pb::Role::Technician)
        .await
        .user
        .unwrap();
    let update = |version: i64| {
        as_(
            &owner,
            pb::UpdateUserRequest {
                id: tom.id.clone(),
                display_name: Some("Tom T.".into()),
                expected_version: Some(version),
                ..Default::default()
            },
        )
    };
    let updated = h.client.update_user(update(1)).await.unwrap().into_inner();
    assert_eq!(updated.audit.unwrap().version, 2);
    let status = assert_code(h.client.update_user(update(1)).await, Code::Aborted);
    assert!(
        status
            .message()
            .contains("expected version 1, current version 2"),
        "{status:?}"
    );
}

#[sqlx::test(migrator = "carerp_identity::MIGRATOR")]
async fn owners_cannot_demote_themselves_nor_the_last_owner(pool: PgPool) {
    let mut h = Harness::start(pool).await;
    let owner = h.owner_session().await;
    let owner_id = owner.user.clone().unwrap().id;
    let demote = |session: &pb::Session| {
        as_(
            session,
            pb::UpdateUserRequest {
                id: owner_id.clone(),
                role: Some(pb::Role::Technician.into()),
                ..Default::default()
            },
        )
    };
    let status = assert_code(
        h.client.update_user(demote(&owner)).await,
        Code::FailedPrecondition,
    );
    assert!(status.message().contains("yourself"), "{status:?}");
    // Someone else with the owner role (an API token, say) cannot remove the last owner.
    let token = testing::token(&h.tenant, Role::Owner);
    let by_other = testing::request(&token, demote(&owner).into_inner());
    let status = assert_code(
        h.client.update_user(by_other).await,
        Code::FailedPrecondition,
    );
    assert!(status.message().contains("last active owner"), "{status:?}");
    // With a second owner, the first may be demoted; their sessions end.
    let second = h
        .create_user(&owner, "second@garage.example", pb::Role::Owner)
        .await;
    let second = h
        .login("second@garage.example", &second.one_time_password)
        .await
        .unwrap();
    let demoted = h
        .client
        .update_user(demote(&second))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(demoted.role(), pb::Role::Technician);
    assert_code(h.refresh(&owner.refresh_token).await, Code::Unauthenticated);
    assert_eq!(
        h.outbox(&owner.session_id).await[0].data["reason"],
        "role-changed"
    );
}

#[sqlx::test(migrator = "carerp_identity::MIGRATOR")]
async fn reset_password_gives_a_new_one_time_password_and_ends_sessions(pool: PgPool) {
    let mut h = Harness::start(pool).await;
    let owner = h.owner_session().await;
    let created = h
        .create_user(&owner, "tom@garage.example", pb::Role::Technician)
        .await;
    let tom = h
        .login("tom@garage.example", &created.one_time_password)
        .await
        .unwrap();
    let reset = h
        .client
        .reset_password(as_(
            &owner,
            pb::ResetPasswordRequest {
                id: created.user.unwrap().id,
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_ne!(reset.one_time_password, created.one_time_password);
    assert_code(h.refresh(&tom.refresh_token).await, Code::Unauthenticated);
    assert_code(
        h.login("tom@garage.example", &created.one_time_password)
            .await,
        Code::Unauthenticated,
    );
    let again = h
        .login("tom@garage.example", &reset.one_time_password)
        .await
        .unwrap();
    assert!(again.user.unwrap().must_change_password);
    assert_eq!(h.audit(&owner, "user.password-reset").await.len(), 1);
}

#[sqlx::test(migrator = "carerp_identity::MIGRATOR")]
async fn api_tokens_authenticate_until_revoked_or_expired(pool: PgPool) {
    let mut h = Harness::start(pool).await;
    let owner = h.owner_session().await;
    let in_days = |days: i64| {
        Some(carerp_kit::convert::timestamp(
            chrono::Utc::now() + chrono::TimeDelta::days(days),
        ))
    };
    let create = |name: &str, days: i64| {
        as_(
            &owner,
            pb::CreateApiTokenRequest {
                name: name.into(),
                role: pb::Role::PartsManager.into(),
                expires_at: in_days(days),
            },
        )
    };
    let created = h
        .client
        .create_api_token(create("parts import", 30))
        .await
        .unwrap()
        .into_inner();
    let api_token = created.api_token.unwrap();
    assert!(created.token.starts_with(&format!(
        "cet_{}_",
        uuid::Uuid::parse_str(&api_token.id).unwrap().simple()
    )));
    let authenticate = |token: &str| pb::AuthenticateApiTokenRequest {
        token: token.into(),
        client_address: String::new(),
    };
    let access = h
        .client
        .authenticate_api_token(authenticate(&created.token))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(access.subject, api_token.id);
    assert_eq!(access.role(), pb::Role::PartsManager);
    let principal = testing::verifying_keys(&h.tenant)
        .verify(&access.access_token)
        .unwrap();
    assert_eq!(principal.subject.to_string(), api_token.id);
    assert_eq!(principal.session_id.to_string(), api_token.id);
    let listed = h
        .client
        .list_api_tokens(as_(
            &owner,
            pb::ListApiTokensRequest {
                include_revoked: false,
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(listed.api_tokens[0].last_used_at.is_some());

    // A wrong secret for a real id, and garbage, are refused alike.
    let forged = format!("{}x", &created.token[..created.token.len() - 1]);
    assert_code(
        h.client.authenticate_api_token(authenticate(&forged)).await,
        Code::Unauthenticated,
    );
    assert_code(
        h.client
            .authenticate_api_token(authenticate("cet_nope"))
            .await,
        Code::Unauthenticated,
    );

    h.client
        .revoke_api_token(as_(
            &owner,
            pb::RevokeApiTokenRequest {
                id: api_token.id.clone(),
            },
        ))
        .await
        .unwrap();
    let status = assert_code(
        h.client
            .authenticate_api_token(authenticate(&created.token))
            .await,
        Code::Unauthenticated,
    );
    assert!(status.message().contains("revoked"), "{status:?}");
    assert_eq!(
        h.outbox(&api_token.id).await[0].data["reason"],
        "api-token-revoked"
    );
    let listed = h
        .client
        .list_api_tokens(as_(
            &owner,
            pb::ListApiTokensRequest {
                include_revoked: false,
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(listed.api_tokens.is_empty());

    let expiring = h
        .client
        .create_api_token(create("old", 1))
        .await
        .unwrap()
        .into_inner();
    sqlx::query(
        "UPDATE api_tokens SET expires_at = now() - interval '1 second' WHERE name = 'old'",
    )
    .execute(&h.pool)
    .await
    .unwrap();
    let status = assert_code(
        h.client
            .authenticate_api_token(authenticate(&expiring.token))
            .await,
        Code::Unauthenticated,
    );
    assert!(status.message().contains("expired"), "{status:?}");

    for days in [-1, 400] {
        let status = assert_code(
            h.client.create_api_token(create("bad", days)).await,
            Code::InvalidArgument,
        );
        assert_eq!(fields(&status), ["expires_at"]);
    }
    let actions: Vec<String> = h
        .audit(&owner, "")
        .await
        .into_iter()
        .map(|e| e.action)
        .collect();
    assert!(actions.contains(&"api-token.created".to_string()));
    assert!(actions.contains(&"api-token.revoked".to_string()));
}

#[sqlx::test(migrator = "carerp_identity::MIGRATOR")]
async fn the_kit_layer_refuses_callers_without_a_token_or_the_role(pool: PgPool) {
    let mut h = Harness::start(pool).await;
    let technician = testing::token(&h.tenant, Role::Technician);
    let status = assert_code(
        h.client
            .list_users(testing::request(
                &technician,
                pb::ListUsersRequest::default(),
            ))
            .await,
        Code::PermissionDenied,
    );
    assert!(
        status.message().contains("IdentityService/ListUsers"),
        "{status:?}"
    );
    assert_code(
        h.client.list_users(pb::ListUsersRequest::default()).await,
        Code::Unauthenticated,
    );
    assert_code(
        h.client.get_me(pb::GetMeRequest {}).await,
        Code::Unauthenticated,
    );
    // A token of another tenant is worth nothing here.
    let foreign = testing::token("other-garage", Role::Owner);
    assert_code(
        h.client
            .list_users(testing::request(&foreign, pb::ListUsersRequest::default()))
            .await,
        Code::Unauthenticated,
    );
}

#[sqlx::test(migrator = "carerp_identity::MIGRATOR")]
async fn the_audit_trail_is_listed_newest_first_and_filtered(pool: PgPool) {
    let mut h = Harness::start(pool).await;
    let _ = h.login(OWNER_EMAIL, "wrong-wrong-wrong").await;
    let owner = h.owner_session().await;
    let owner_id = owner.user.clone().unwrap().id;
    h.create_user(&owner, "tom@garage.example", pb::Role::Technician)
        .await;
    let list = |req: pb::ListAuditRequest| as_(&owner, req);
    let all = h
        .client
        .list_audit(list(pb::ListAuditRequest::default()))
        .await
        .unwrap()
        .into_inner()
        .entries;
    let actions: Vec<&str> = all.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(
        actions,
        [
            "user.created",
            "auth.sign-in",
            "auth.sign-in-failed",
            "user.created"
        ]
    );
    assert!(all.iter().all(|e| e.service == "identity"));
    let by_owner = h
        .client
        .list_audit(list(pb::ListAuditRequest {
            actor_id: owner_id.clone(),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner()
        .entries;
    assert_eq!(by_owner.len(), 3);
    let page = h
        .client
        .list_audit(list(pb::ListAuditRequest {
            page: Some(PageRequest {
                page_size: 2,
                page_token: String::new(),
            }),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(page.entries.len(), 2);
    let rest = h
        .client
        .list_audit(list(pb::ListAuditRequest {
            page: Some(PageRequest {
                page_size: 2,
                page_token: page.page.unwrap().next_page_token,
            }),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        rest.entries
            .iter()
            .map(|e| e.action.as_str())
            .collect::<Vec<_>>(),
        ["auth.sign-in-failed", "user.created"]
    );
    let future = Some(carerp_kit::convert::timestamp(
        chrono::Utc::now() + chrono::TimeDelta::hours(1),
    ));
    let none = h
        .client
        .list_audit(list(pb::ListAuditRequest {
            from: future,
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    assert!(none.entries.is_empty());
}

#[sqlx::test(migrator = "carerp_identity::MIGRATOR")]
async fn audit_events_of_other_services_are_kept(pool: PgPool) {
    use carerp_kit::envelope::{CloudEvent, subject};
    let tenant = carerp_kit::config::test_tenant();
    let jetstream = carerp_kit::messaging::connect("nats://127.0.0.1:4222")
        .await
        .unwrap();
    carerp_kit::stream::ensure_stream(&jetstream, &tenant, &Default::default())
        .await
        .unwrap();
    let mut h = Harness::start_with(pool, &tenant, Some(owner(false))).await;
    let owner = h.owner_session().await;
    let recorded = carerp_kit::events::AuditRecorded::new(
        uuid::Uuid::now_v7().to_string(),
        "invoice.payment-recorded",
        "invoice/42".into(),
        serde_json::json!({ "amountMinor": 1000 }),
    );
    let event = CloudEvent {
        specversion: "1.0".into(),
        id: uuid::Uuid::now_v7(),
        source: "billing".into(),
        event_type: "audit.recorded".into(),
        subject: "invoice/42".into(),
        time: chrono::Utc::now(),
        datacontenttype: "application/json".into(),
        data: serde_json::to_value(&recorded).unwrap(),
        tenant: tenant.clone(),
        correlationid: "c-1".into(),
        traceparent: String::new(),
    };
    // Delivered twice: kept once.
    for _ in 0..2 {
        jetstream
            .publish(
                subject(&tenant, "audit.recorded"),
                serde_json::to_vec(&event).unwrap().into(),
            )
            .await
            .unwrap()
            .await
            .unwrap();
    }
    let mut entries = Vec::new();
    for _ in 0..100 {
        entries = h.audit(&owner, "invoice.payment-recorded").await;
        if !entries.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(entries.len(), 1, "the event was not consumed");
    assert_eq!(entries[0].service, "billing");
    assert_eq!(entries[0].actor_id, recorded.actor);
    assert_eq!(entries[0].target, "invoice/42");
    assert_eq!(entries[0].id, event.id.to_string());
    assert_eq!(entries[0].details_json, r#"{"amountMinor":1000}"#);
}
