//! The REST API of a tenant.
