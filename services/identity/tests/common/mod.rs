//! What the identity tests share: the real service in-process on an ephemeral port, on the
//! test's own database, with a first owner whose password the tests know.

#![allow(dead_code)]

use carerp_identity::{IdentityConfig, OwnerBootstrap};
use carerp_kit::auth::{Secret, testing};
use carerp_kit::{RunningService, ServiceConfig};
use carerp_proto::identity::v1 as pb;
use carerp_proto::identity::v1::identity_service_client::IdentityServiceClient;
use sqlx::PgPool;
use tonic::transport::Channel;

pub const OWNER_EMAIL: &str = "owner@garage.example";
pub const OWNER_PASSWORD: &str = "Vq7#mZ2!pL9x-garage";
pub const NEW_PASSWORD: &str = "correct-horse-battery-staple-9";

pub fn owner(temporary: bool) -> OwnerBootstrap {
    OwnerBootstrap {
        email: OWNER_EMAIL.into(),
        display_name: "Olga Owner".into(),
        password: Secret::new(OWNER_PASSWORD),
        temporary,
    }
}

pub fn config(tenant: &str, owner: Option<OwnerBootstrap>) -> IdentityConfig {
    IdentityConfig {
        service: ServiceConfig::for_tests("identity", tenant, None),
        signing_key: testing::signing_key().clone(),
        owner,
    }
}

pub struct Harness {
    pub service: RunningService,
    pub client: IdentityServiceClient<Channel>,
    pub pool: PgPool,
    pub tenant: String,
}

impl Harness {
    /// A tenant whose owner's password is not temporary.
    pub async fn start(pool: PgPool) -> Self {
        Self::start_with(pool, &carerp_kit::config::test_tenant(), Some(owner(false))).await
    }

    pub async fn start_with(pool: PgPool, tenant: &str, owner: Option<OwnerBootstrap>) -> Self {
        let service = carerp_identity::start_with_pool(config(tenant, owner), pool.clone())
            .await
            .unwrap();
        let client = IdentityServiceClient::connect(format!("http://{}", service.grpc_addr))
            .await
            .unwrap();
        Self {
            service,
            client,
            pool,
            tenant: tenant.to_string(),
        }
    }

    pub async fn login(
        &mut self,
        email: &str,
        password: &str,
    ) -> Result<pb::Session, tonic::Status> {
        self.login_from(email, password, "203.0.113.7").await
    }

    pub async fn login_from(
        &mut self,
        email: &str,
        password: &str,
        address: &str,
    ) -> Result<pb::Session, tonic::Status> {
        self.client
            .login(pb::LoginRequest {
                email: email.into(),
                password: password.into(),
                client_address: address.into(),
            })
            .await
            .map(|r| r.into_inner())
    }

    pub async fn owner_session(&mut self) -> pb::Session {
        self.login(OWNER_EMAIL, OWNER_PASSWORD).await.unwrap()
    }

    pub async fn refresh(&mut self, refresh_token: &str) -> Result<pb::Session, tonic::Status> {
        self.client
            .refresh(pb::RefreshRequest {
                refresh_token: refresh_token.into(),
                client_address: String::new(),
            })
            .await
            .map(|r| r.into_inner())
    }

    /// A user created by the owner, with the one-time password they were given.
    pub async fn create_user(
        &mut self,
        owner: &pb::Session,
        email: &str,
        role: pb::Role,
    ) -> pb::CreateUserResponse {
        self.client
            .create_user(as_(
                owner,
                pb::CreateUserRequest {
                    email: email.into(),
                    display_name: "Tom Technician".into(),
                    role: role.into(),
                    idempotency_key: String::new(),
                },
            ))
            .await
            .unwrap()
            .into_inner()
    }

    /// Sets `active` of a user, as the owner.
    pub async fn set_active(&mut self, owner: &pb::Session, id: &str, active: bool) -> pb::User {
        self.client
            .update_user(as_(
                owner,
                pb::UpdateUserRequest {
                    id: id.into(),
                    active: Some(active),
                    ..Default::default()
                },
            ))
            .await
            .unwrap()
            .into_inner()
    }

    pub async fn outbox(&self, aggregate_id: &str) -> Vec<carerp_kit::outbox::OutboxRow> {
        let mut conn = self.pool.acquire().await.unwrap();
        carerp_kit::outbox::rows_for(&mut conn, aggregate_id)
            .await
            .unwrap()
    }

    pub async fn audit(&mut self, owner: &pb::Session, action: &str) -> Vec<pb::AuditEntry> {
        self.client
            .list_audit(as_(
                owner,
                pb::ListAuditRequest {
                    action: action.into(),
                    ..Default::default()
                },
            ))
            .await
            .unwrap()
            .into_inner()
            .entries
    }
}

/// `message` sent with the session's access token.
pub fn as_<T>(session: &pb::Session, message: T) -> tonic::Request<T> {
    testing::request(&Secret::new(session.access_token.clone()), message)
}
