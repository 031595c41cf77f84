//! The permission table: which role may call which gRPC method. One table, here, for the whole
//! product: every service enforces it on every call (in [`crate::grpc`]'s request layer),
//! the BFF checks it before calling a service, and the web app hides what a role may not do
//! by asking it. `docs/permissions.md` lists the same table for people; a test keeps the two
//! equal.
//!
//! A method missing from the table is refused to everyone: a new RPC is closed until someone
//! decides who may call it. A few rules finer than a method live in the handler that knows
//! the request (a technician moves a work order only to IN_PROGRESS or COMPLETED, and adds
//! labour only at the tenant's rate); they name the permission they enforce the same way.

use crate::auth::Role;

/// Who may call a method.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// No token needed: how a token is had in the first place.
    Public,
    /// A valid token of one of these roles.
    Roles(&'static [Role]),
}

use Role::{
    Accountant as ACC, Owner as OWN, PartsManager as PM, ServiceAdvisor as ADV, Technician as TEC,
};

const EVERYONE: Access = Access::Roles(&Role::ALL);
const OWNERS: Access = Access::Roles(&[OWN]);
const FRONT_DESK: Access = Access::Roles(&[OWN, ADV]);
const WORKSHOP: Access = Access::Roles(&[OWN, ADV, TEC]);
const STOCK: Access = Access::Roles(&[OWN, PM]);
const MONEY_READ: Access = Access::Roles(&[OWN, ADV, ACC]);
const MONEY_WRITE: Access = Access::Roles(&[OWN, ACC]);
const RESERVATIONS: Access = Access::Roles(&[OWN, ADV, PM]);

/// Every gRPC method of the product and who may call it, by full method path.
pub const TABLE: &[(&str, Access)] = &[
    // customers and vehicles
    (
        "/carerp.customer.v1.CustomerService/CreateCustomer",
        FRONT_DESK,
    ),
    ("/carerp.customer.v1.CustomerService/GetCustomer", EVERYONE),
    (
        "/carerp.customer.v1.CustomerService/ListCustomers",
        EVERYONE,
    ),
    (
        "/carerp.customer.v1.CustomerService/UpdateCustomer",
        FRONT_DESK,
    ),
    (
        "/carerp.customer.v1.CustomerService/ArchiveCustomer",
        FRONT_DESK,
    ),
    ("/carerp.customer.v1.CustomerService/AddVehicle", FRONT_DESK),
    (
        "/carerp.customer.v1.CustomerService/UpdateVehicle",
        FRONT_DESK,
    ),
    ("/carerp.customer.v1.CustomerService/GetVehicle", EVERYONE),
    ("/carerp.customer.v1.CustomerService/ListVehicles", EVERYONE),
    // work orders
    (
        "/carerp.workorder.v1.WorkOrderService/CreateWorkOrder",
        FRONT_DESK,
    ),
    (
        "/carerp.workorder.v1.WorkOrderService/GetWorkOrder",
        EVERYONE,
    ),
    (
        "/carerp.workorder.v1.WorkOrderService/ListWorkOrders",
        EVERYONE,
    ),
    (
        "/carerp.workorder.v1.WorkOrderService/CountWorkOrders",
        EVERYONE,
    ),
    (
        "/carerp.workorder.v1.WorkOrderService/ChangeStatus",
        WORKSHOP,
    ),
    (
        "/carerp.workorder.v1.WorkOrderService/AddPartLine",
        WORKSHOP,
    ),
    (
        "/carerp.workorder.v1.WorkOrderService/RemovePartLine",
        WORKSHOP,
    ),
    (
        "/carerp.workorder.v1.WorkOrderService/AddLaborLine",
        WORKSHOP,
    ),
    (
        "/carerp.workorder.v1.WorkOrderService/RemoveLaborLine",
        WORKSHOP,
    ),
    (
        "/carerp.workorder.v1.WorkOrderService/UpdateNotes",
        WORKSHOP,
    ),
    (
        "/carerp.workorder.v1.WorkOrderService/RetryReservation",
        RESERVATIONS,
    ),
    // jobs and estimates: the workshop proposes jobs, the front desk sends the estimate and
    // records the customer's decisions; the customer decides through the approval link,
    // whose token is the authorisation (no sign-in).
    ("/carerp.workorder.v1.WorkOrderService/AddJob", WORKSHOP),
    ("/carerp.workorder.v1.WorkOrderService/RemoveJob", WORKSHOP),
    (
        "/carerp.workorder.v1.WorkOrderService/DecideJob",
        FRONT_DESK,
    ),
    (
        "/carerp.workorder.v1.WorkOrderService/SendEstimate",
        FRONT_DESK,
    ),
    (
        "/carerp.workorder.v1.WorkOrderService/ListEstimates",
        EVERYONE,
    ),
    (
        "/carerp.workorder.v1.WorkOrderService/GetEstimateByLink",
        Access::Public,
    ),
    (
        "/carerp.workorder.v1.WorkOrderService/DecideJobByLink",
        Access::Public,
    ),
    // inspections: owners keep the templates, the workshop inspects, the front desk turns
    // findings into jobs; the customer sees the completed inspection through the approval
    // link.
    (
        "/carerp.workorder.v1.InspectionService/ListTemplates",
        EVERYONE,
    ),
    (
        "/carerp.workorder.v1.InspectionService/SaveTemplate",
        OWNERS,
    ),
    (
        "/carerp.workorder.v1.InspectionService/StartInspection",
        WORKSHOP,
    ),
    (
        "/carerp.workorder.v1.InspectionService/GetInspection",
        EVERYONE,
    ),
    ("/carerp.workorder.v1.InspectionService/RateItem", WORKSHOP),
    ("/carerp.workorder.v1.InspectionService/AddPhoto", WORKSHOP),
    (
        "/carerp.workorder.v1.InspectionService/RemovePhoto",
        WORKSHOP,
    ),
    ("/carerp.workorder.v1.InspectionService/GetPhoto", EVERYONE),
    (
        "/carerp.workorder.v1.InspectionService/CompleteInspection",
        WORKSHOP,
    ),
    (
        "/carerp.workorder.v1.InspectionService/ProposeJobs",
        WORKSHOP,
    ),
    (
        "/carerp.workorder.v1.InspectionService/GetInspectionByLink",
        Access::Public,
    ),
    (
        "/carerp.workorder.v1.InspectionService/GetPhotoByLink",
        Access::Public,
    ),
    // canned jobs: the front desk keeps the garage's service packages, the workshop adds
    // them to work orders.
    (
        "/carerp.workorder.v1.CannedJobService/ListCannedJobs",
        EVERYONE,
    ),
    (
        "/carerp.workorder.v1.CannedJobService/SaveCannedJob",
        FRONT_DESK,
    ),
    (
        "/carerp.workorder.v1.CannedJobService/RemoveCannedJob",
        FRONT_DESK,
    ),
    (
        "/carerp.workorder.v1.CannedJobService/AddCannedJob",
        WORKSHOP,
    ),
    // a vehicle's history is read by everyone; following up recommended work is the front
    // desk's; offering a recommendation again is adding a job.
    (
        "/carerp.workorder.v1.HistoryService/GetVehicleHistory",
        EVERYONE,
    ),
    (
        "/carerp.workorder.v1.HistoryService/ListRecommendedWork",
        FRONT_DESK,
    ),
    ("/carerp.workorder.v1.HistoryService/OfferAgain", WORKSHOP),
    // parts and stock
    ("/carerp.inventory.v1.InventoryService/CreatePart", STOCK),
    ("/carerp.inventory.v1.InventoryService/GetPart", EVERYONE),
    ("/carerp.inventory.v1.InventoryService/ListParts", EVERYONE),
    ("/carerp.inventory.v1.InventoryService/UpdatePart", STOCK),
    ("/carerp.inventory.v1.InventoryService/AdjustStock", STOCK),
    (
        "/carerp.inventory.v1.InventoryService/ListLowStock",
        EVERYONE,
    ),
    (
        "/carerp.inventory.v1.InventoryService/ListMovements",
        EVERYONE,
    ),
    ("/carerp.inventory.v1.InventoryService/Reconcile", STOCK),
    // invoices and payments
    ("/carerp.billing.v1.BillingService/GetInvoice", MONEY_READ),
    (
        "/carerp.billing.v1.BillingService/GetInvoiceByWorkOrder",
        MONEY_READ,
    ),
    ("/carerp.billing.v1.BillingService/ListInvoices", MONEY_READ),
    (
        "/carerp.billing.v1.BillingService/RecordPayment",
        MONEY_WRITE,
    ),
    ("/carerp.billing.v1.BillingService/VoidInvoice", MONEY_WRITE),
    ("/carerp.billing.v1.BillingService/GetSummary", MONEY_READ),
    // people, sessions, tokens, audit
    ("/carerp.identity.v1.IdentityService/Login", Access::Public),
    (
        "/carerp.identity.v1.IdentityService/Refresh",
        Access::Public,
    ),
    (
        "/carerp.identity.v1.IdentityService/AuthenticateApiToken",
        Access::Public,
    ),
    ("/carerp.identity.v1.IdentityService/Logout", EVERYONE),
    ("/carerp.identity.v1.IdentityService/GetMe", EVERYONE),
    (
        "/carerp.identity.v1.IdentityService/ChangePassword",
        EVERYONE,
    ),
    ("/carerp.identity.v1.IdentityService/ListUsers", OWNERS),
    ("/carerp.identity.v1.IdentityService/GetUser", OWNERS),
    ("/carerp.identity.v1.IdentityService/CreateUser", OWNERS),
    ("/carerp.identity.v1.IdentityService/UpdateUser", OWNERS),
    ("/carerp.identity.v1.IdentityService/ResetPassword", OWNERS),
    ("/carerp.identity.v1.IdentityService/CreateApiToken", OWNERS),
    ("/carerp.identity.v1.IdentityService/ListApiTokens", OWNERS),
    ("/carerp.identity.v1.IdentityService/RevokeApiToken", OWNERS),
    ("/carerp.identity.v1.IdentityService/ListAudit", OWNERS),
];

/// Rules finer than a method, enforced by the handler that can read the request. Each is
/// named like a method so a refusal names it the same way.
pub mod rule {
    use super::*;

    /// Moving a work order to a status other than IN_PROGRESS or COMPLETED (cancelling,
    /// reopening): front desk only.
    pub const WORK_ORDER_ANY_STATUS: &str = "workorder.ChangeStatus:any-status";
    /// Setting a labour line's hourly rate instead of the tenant's: prices are front desk's.
    pub const LABOR_RATE: &str = "workorder.AddLaborLine:hourly-rate";
    /// Reading the tenant's dead letters (events and errors of every service): owners. The
    /// BFF serves them from the dead-letter stream and checks it itself.
    pub const DEAD_LETTERS_READ: &str = "bff.DeadLetters:read";
    /// Replaying a dead letter through the consumers: owners.
    pub const DEAD_LETTERS_REPLAY: &str = "bff.DeadLetters:replay";

    pub const RULES: &[(&str, Access)] = &[
        (WORK_ORDER_ANY_STATUS, FRONT_DESK),
        (LABOR_RATE, FRONT_DESK),
        (DEAD_LETTERS_READ, OWNERS),
        (DEAD_LETTERS_REPLAY, OWNERS),
    ];
}

/// Who may call `method` (a full gRPC path, or a [`rule`] name); `None` when it is unknown.
pub fn access(method: &str) -> Option<Access> {
    TABLE
        .iter()
        .chain(rule::RULES)
        .find(|(name, _)| *name == method)
        .map(|(_, access)| *access)
}

/// Whether `role` may call `method`; unknown methods are refused.
pub fn allows(role: Role, method: &str) -> bool {
    match access(method) {
        Some(Access::Public) => true,
        Some(Access::Roles(roles)) => roles.contains(&role),
        None => false,
    }
}

/// Whether `method` needs no token.
pub fn is_public(method: &str) -> bool {
    access(method) == Some(Access::Public)
}

/// The refusal of a call the role may not make; it names the permission.
pub fn denied(role: Role, method: &str) -> tonic::Status {
    tonic::Status::permission_denied(format!(
        "role {role} lacks the permission {}",
        method.trim_start_matches('/')
    ))
}

/// `Ok` when `role` may call `method`, else the refusal naming it.
pub fn require(role: Role, method: &str) -> Result<(), tonic::Status> {
    if allows(role, method) {
        Ok(())
    } else {
        Err(denied(role, method))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_method_of_every_contract_is_in_the_table_once() {
        use prost::Message;
        let set =
            prost_types::FileDescriptorSet::decode(carerp_proto::FILE_DESCRIPTOR_SET).unwrap();
        let mut methods = Vec::new();
        for file in &set.file {
            for service in &file.service {
                for method in &service.method {
                    methods.push(format!(
                        "/{}.{}/{}",
                        file.package(),
                        service.name(),
                        method.name()
                    ));
                }
            }
        }
        assert!(methods.len() > 40, "{methods:?}");
        for method in &methods {
            let listed = TABLE.iter().filter(|(name, _)| name == method).count();
            assert_eq!(listed, 1, "{method} is listed {listed} times");
        }
        for (name, _) in TABLE {
            assert!(methods.contains(&name.to_string()), "{name} is no method");
        }
    }

    #[test]
    fn the_table_is_the_one_people_read_in_docs() {
        let doc = include_str!("../../../docs/permissions.md");
        let row = |name: &str, access: &Access| {
            let roles = match access {
                Access::Public => "public".to_string(),
                Access::Roles(roles) => Role::ALL
                    .iter()
                    .filter(|r| roles.contains(r))
                    .map(|r| r.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            };
            format!("| `{}` | {roles} |", name.trim_start_matches('/'))
        };
        for (name, access) in TABLE.iter().chain(rule::RULES) {
            let expected = row(name, access);
            assert!(
                doc.contains(&expected),
                "docs/permissions.md lacks: {expected}"
            );
        }
        let rows = doc.lines().filter(|l| l.starts_with("| `")).count();
        assert_eq!(
            rows,
            TABLE.len() + rule::RULES.len(),
            "docs/permissions.md has extra rows"
        );
    }

    #[test]
    fn unknown_methods_are_refused_to_everyone() {
        for role in Role::ALL {
            assert!(!allows(
                role,
                "/carerp.billing.v1.BillingService/DeleteEverything"
            ));
        }
        assert!(!is_public(
            "/carerp.billing.v1.BillingService/DeleteEverything"
        ));
    }

    #[test]
    fn a_refusal_names_the_permission() {
        let status = require(
            Role::Technician,
            "/carerp.billing.v1.BillingService/RecordPayment",
        )
        .unwrap_err();
        assert_eq!(status.code(), tonic::Code::PermissionDenied);
        assert!(
            status
                .message()
                .contains("carerp.billing.v1.BillingService/RecordPayment")
        );
        assert!(status.message().contains("TECHNICIAN"));
    }
}
