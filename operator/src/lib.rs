//! The Car ERP operator: the `CarErpTenant` resource, what each tenant becomes, the
//! provisioners of its databases and stream, the controller, and the same tenant run locally.

pub mod config;
pub mod crd;
pub mod desired;
pub mod validate;
