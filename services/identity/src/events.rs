//! What identity tells the others, and what it hears.
//!
//! Publishes `identity.session-revoked` (consumed by the BFF, which refuses the session's
//! access tokens from then on) in the transaction that ends the session. Consumes
//! `audit.recorded` from every service into its audit table, where its own entries are
//! written directly.

use carerp_kit::consumer::{EventHandler, HandlerError, handler_error};
use carerp_kit::envelope::CloudEvent;
use carerp_kit::events::{AuditRecorded, SessionRevoked, topic};
use carerp_kit::{RequestContext, outbox};
use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::store::{self, AuditRecord};

/// Why a session ended, as `SessionRevoked::reason` says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RevokeReason {
    SignOut,
    RefreshTokenReused,
    UserDeactivated,
    RoleChanged,
    PasswordReset,
    PasswordChanged,
    ApiTokenRevoked,
}

impl RevokeReason {
    pub fn as_str(self) -> &'static str {
        match self {
            RevokeReason::SignOut => "sign-out",
            RevokeReason::RefreshTokenReused => "refresh-token-reused",
            RevokeReason::UserDeactivated => "user-deactivated",
            RevokeReason::RoleChanged => "role-changed",
            RevokeReason::PasswordReset => "password-reset",
            RevokeReason::PasswordChanged => "password-changed",
            RevokeReason::ApiTokenRevoked => "api-token-revoked",
        }
    }
}

/// Tells the BFF that `session_id` (a session, or an API token) ended at `now`: the access
/// tokens issued for it expire at the latest one lifetime later.
pub async fn session_revoked(
    tx: &mut PgConnection,
    context: &RequestContext,
    session_id: Uuid,
    user_id: Uuid,
    reason: RevokeReason,
    now: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    let data = SessionRevoked {
        session_id,
        user_id,
        reason: reason.as_str().to_string(),
        tokens_expire_by: now + crate::domain::to_delta(carerp_kit::auth::ACCESS_TOKEN_LIFETIME),
    };
    outbox::enqueue(
        tx,
        context,
        topic::SESSION_REVOKED,
        &session_id.to_string(),
        &data,
    )
    .await?;
    Ok(())
}

/// Keeps the `audit.recorded` events of every service in the audit table.
#[derive(Debug, Clone, Copy)]
pub struct AuditEvents;

impl EventHandler for AuditEvents {
    fn topics(&self) -> &'static [&'static str] {
        &[topic::AUDIT_RECORDED]
    }

    async fn handle(
        &self,
        tx: &mut PgConnection,
        _context: &RequestContext,
        event: &CloudEvent,
    ) -> Result<(), HandlerError> {
        let recorded: AuditRecorded = event.data_as()?;
        store::record_audit(
            tx,
            &AuditRecord {
                // The event id: the same event is one entry however often it arrives.
                id: event.id,
                at: recorded.at,
                actor_id: recorded.actor,
                action: recorded.action,
                target: recorded.target,
                service: event.source.clone(),
                details: recorded.details,
                client_address: String::new(),
            },
        )
        .await
        .map_err(handler_error)?;
        Ok(())
    }
}
