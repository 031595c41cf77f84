//! `--seed-demo`: a believable garage, loaded through the services' own gRPC APIs so every
//! rule and event applies as if staff had typed it in.
//!
//! The seed signs in as the first owner and acts as them. People (one per role), customers,
//! vehicles and parts carry idempotency keys; work orders are only seeded into a tenant
//! without customers, so running `local --seed-demo` again adds nothing.

use std::collections::HashMap;

use anyhow::Context;
use carerp_proto::common::v1::{Money, PageRequest};
use carerp_proto::customer::v1::customer_service_client::CustomerServiceClient;
use carerp_proto::customer::v1::{
    AddVehicleRequest, Address, CreateCustomerRequest, ListCustomersRequest,
};
use carerp_proto::inventory::v1::CreatePartRequest;
use carerp_proto::inventory::v1::inventory_service_client::InventoryServiceClient;
use carerp_proto::workorder::v1::work_order_service_client::WorkOrderServiceClient;
use carerp_proto::workorder::v1::{
    AddLaborLineRequest, AddPartLineRequest, ChangeStatusRequest, CreateWorkOrderRequest,
    GetWorkOrderRequest, PartLine, ReservationState, WorkOrderStatus,
};

use carerp_kit::auth::{AuthedChannel, Role, with_token};
use carerp_proto::identity::v1::identity_service_client::IdentityServiceClient;
use carerp_proto::identity::v1::{CreateUserRequest, LoginRequest};

use crate::crd::Service;
use crate::local::OwnerAccess;

struct DemoCustomer {
    name: &'static str,
    email: &'static str,
    phone: &'static str,
    street: &'static str,
    postal_code: &'static str,
    city: &'static str,
    vehicles: &'static [(
        &'static str,
        &'static str,
        &'static str,
        i32,
        &'static str,
        i64,
    )],
}

const CUSTOMERS: &[DemoCustomer] = &[
    DemoCustomer {
        name: "Anna Schmidt",
        email: "anna.schmidt@example.com",
        phone: "+49 30 1234567",
        street: "Kastanienallee 12",
        postal_code: "10435",
        city: "Berlin",
        vehicles: &[(
            "WVWZZZ1KZAW000001",
            "Volkswagen",
            "Golf",
            2019,
            "B-AS 1912",
            48_200,
        )],
    },
    DemoCustomer {
        name: "Jonas Weber",
        email: "jonas.weber@example.com",
        phone: "+49 40 7654321",
        street: "Elbchaussee 101",
        postal_code: "22763",
        city: "Hamburg",
        vehicles: &[
            (
                "WBA8E9C50GK000002",
                "BMW",
                "320d",
                2016,
                "HH-JW 320",
                131_500,
            ),
            (
                "VF1RFB00X60000003",
                "Renault",
                "Clio",
                2021,
                "HH-JW 21",
                22_800,
            ),
        ],
    },
    DemoCustomer {
        name: "Müller Logistik GmbH",
        email: "fuhrpark@mueller-logistik.example.com",
        phone: "+49 89 5550100",
        street: "Industriestraße 4",
        postal_code: "80939",
        city: "München",
        vehicles: &[(
            "WDB9066331S000004",
            "Mercedes-Benz",
            "Sprinter",
            2020,
            "M-ML 4040",
            187_300,
        )],
    },
    DemoCustomer {
        name: "Lena Fischer",
        email: "lena.fischer@example.com",
        phone: "+49 221 998877",
        street: "Aachener Straße 55",
        postal_code: "50674",
        city: "Köln",
        vehicles: &[(
            "TMBJJ7NE0J0000005",
            "Škoda",
            "Octavia",
            2018,
            "K-LF 718",
            96_400,
        )],
    },
];

/// SKU, name, category, cost, price (minor units), stock, reorder point.
const PARTS: &[(&str, &str, &str, i64, i64, i32, i32)] = &[
    (
        "OIL-5W30-5L",
        "Engine oil 5W-30, 5 l",
        "Fluids",
        2_450,
        4_990,
        24,
        6,
    ),
    (
        "FLT-OIL-VW1",
        "Oil filter (VW group)",
        "Filters",
        590,
        1_290,
        18,
        5,
    ),
    (
        "FLT-AIR-BM2",
        "Air filter (BMW 3 series)",
        "Filters",
        1_100,
        2_390,
        6,
        3,
    ),
    (
        "BRK-PAD-F01",
        "Brake pads, front axle set",
        "Brakes",
        3_200,
        6_900,
        8,
        4,
    ),
    (
        "BRK-DSC-F01",
        "Brake disc, front, 288 mm",
        "Brakes",
        4_100,
        8_900,
        4,
        4,
    ),
    (
        "WIP-BLD-600",
        "Wiper blade 600 mm",
        "Body",
        650,
        1_490,
        30,
        10,
    ),
    (
        "BAT-AGM-70",
        "Battery AGM 70 Ah",
        "Electrical",
        9_800,
        17_900,
        2,
        2,
    ),
];

/// Vehicle index, complaint, parts (SKU, quantity), labour minutes, statuses to walk through.
type DemoWorkOrder = (
    usize,
    &'static str,
    &'static [(&'static str, i32)],
    i32,
    &'static [WorkOrderStatus],
);

/// Waits until inventory has answered for every part line of a work order.
async fn wait_for_reservations(
    workorders: &mut WorkOrderServiceClient<AuthedChannel>,
    id: &str,
    number: &str,
) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + RESERVATION_WAIT;
    loop {
        let order = workorders
            .get_work_order(GetWorkOrderRequest { id: id.into() })
            .await
            .with_context(|| format!("reading work order {number}"))?
            .into_inner();
        let state = |line: &PartLine| line.reservation_state();
        if let Some(failed) = order
            .part_lines
            .iter()
            .find(|l| state(l) == ReservationState::Failed)
        {
            anyhow::bail!(
                "inventory could not reserve part line {} of work order {number}: {}",
                failed.id,
                failed.failure_reason
            );
        }
        if order
            .part_lines
            .iter()
            .all(|l| state(l) == ReservationState::Reserved)
        {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            anyhow::bail!(
                "the parts of work order {number} were not reserved within {} s: is inventory consuming events?",
                RESERVATION_WAIT.as_secs()
            );
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

const RESERVATION_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// The demo garage's people: one per role but the owner's, named after their role.
const PEOPLE: &[(Role, &str, &str)] = &[
    (Role::ServiceAdvisor, "advisor", "Sara Advisor"),
    (Role::Technician, "technician", "Max Becker"),
    (Role::PartsManager, "parts", "Paul Parts"),
    (Role::Accountant, "accountant", "Alex Accountant"),
];

/// A channel to `url` whose calls carry `token`.
async fn channel(url: &str, token: &carerp_kit::auth::Secret) -> anyhow::Result<AuthedChannel> {
    let channel = tonic::transport::Endpoint::from_shared(url.to_string())
        .with_context(|| format!("invalid service URL {url}"))?
        .connect()
        .await
        .with_context(|| format!("connecting to {url}"))?;
    Ok(with_token(channel, token)?)
}

/// Signs in as the owner, adds one person per role (their one-time passwords go into the
/// summary: on this machine a newcomer signs in as each), and loads the demo garage through
/// whichever services run; `urls` maps a service to its gRPC URL.
pub async fn seed_demo(
    urls: &HashMap<Service, String>,
    owner: &OwnerAccess,
    currency: &str,
) -> anyhow::Result<String> {
    let identity_url = urls
        .get(&Service::Identity)
        .context("the identity service is not running: nobody can sign in to seed")?;
    let mut identity = IdentityServiceClient::connect(identity_url.clone())
        .await
        .context("connecting to the identity service")?;
    let session = identity
        .login(LoginRequest {
            email: owner.email.clone(),
            password: owner.password.expose().to_string(),
            client_address: "127.0.0.1".into(),
        })
        .await
        .with_context(|| {
            format!(
                "signing in as {} (an owner created by an earlier run keeps its password)",
                owner.email
            )
        })?
        .into_inner();
    let token = carerp_kit::auth::Secret::new(session.access_token);
    let people = seed_people(
        IdentityServiceClient::new(channel(identity_url, &token).await?),
        owner,
    )
    .await?;

    let customer_url = urls
        .get(&Service::Customer)
        .context("the customer service is not running: nothing to seed")?;
    let mut customers = CustomerServiceClient::new(channel(customer_url, &token).await?);
    let summary = seed_garage(&mut customers, urls, &token, currency).await?;
    Ok(format!("{summary}\n{people}"))
}

/// One person per role; an earlier run's people are kept (their passwords are not shown
/// again: an owner resets them in the app).
async fn seed_people(
    mut identity: IdentityServiceClient<AuthedChannel>,
    owner: &OwnerAccess,
) -> anyhow::Result<String> {
    let domain = owner.email.split('@').nth(1).unwrap_or("garage.local");
    let mut lines = vec![
        "people (sign in with these; one-time passwords, changed at first sign-in):".to_string(),
    ];
    for (role, local, name) in PEOPLE {
        let email = format!("{local}@{domain}");
        let created = identity
            .create_user(CreateUserRequest {
                email: email.clone(),
                display_name: (*name).into(),
                role: role.to_proto() as i32,
                idempotency_key: format!("demo-user-{local}"),
            })
            .await;
        let password = match created {
            Ok(answer) => {
                let answer = answer.into_inner();
                if answer.one_time_password.is_empty() {
                    "(created by an earlier run)".to_string()
                } else {
                    answer.one_time_password
                }
            }
            Err(status) if status.code() == tonic::Code::AlreadyExists => {
                "(created by an earlier run)".to_string()
            }
            Err(status) => return Err(status).with_context(|| format!("creating {email}")),
        };
        lines.push(format!("  {:<16} {email:<32} {password}", role.as_str()));
    }
    Ok(lines.join("\n"))
}

/// Customers, vehicles, parts and work orders, unless the tenant has customers already.
async fn seed_garage(
    customers: &mut CustomerServiceClient<AuthedChannel>,
    urls: &HashMap<Service, String>,
    token: &carerp_kit::auth::Secret,
    currency: &str,
) -> anyhow::Result<String> {
    let existing = customers
        .list_customers(ListCustomersRequest {
            page: Some(PageRequest {
                page_size: 1,
                page_token: String::new(),
            }),
            ..ListCustomersRequest::default()
        })
        .await
        .context("listing customers")?
        .into_inner();
    if !existing.customers.is_empty() {
        return Ok("demo data: the tenant already has customers, nothing added".into());
    }

    let mut vehicles = Vec::new();
    for (i, c) in CUSTOMERS.iter().enumerate() {
        let customer = customers
            .create_customer(CreateCustomerRequest {
                name: c.name.into(),
                email: c.email.into(),
                phone: c.phone.into(),
                address: Some(Address {
                    line1: c.street.into(),
                    line2: String::new(),
                    postal_code: c.postal_code.into(),
                    city: c.city.into(),
                    country: "DE".into(),
                }),
                notes: String::new(),
                idempotency_key: format!("demo-customer-{i}"),
            })
            .await
            .with_context(|| format!("creating customer {}", c.name))?
            .into_inner();
        for (j, (vin, make, model, year, plate, mileage)) in c.vehicles.iter().enumerate() {
            let vehicle = customers
                .add_vehicle(AddVehicleRequest {
                    customer_id: customer.id.clone(),
                    vin: (*vin).into(),
                    make: (*make).into(),
                    model: (*model).into(),
                    year: *year,
                    license_plate: (*plate).into(),
                    mileage: *mileage,
                    idempotency_key: format!("demo-vehicle-{i}-{j}"),
                })
                .await
                .with_context(|| format!("adding vehicle {plate}"))?
                .into_inner();
            vehicles.push((customer.id.clone(), vehicle.id, *mileage));
        }
    }
    let mut summary = format!(
        "demo data: {} customers, {} vehicles",
        CUSTOMERS.len(),
        vehicles.len()
    );

    let Some(inventory_url) = urls.get(&Service::Inventory) else {
        return Ok(summary);
    };
    let mut inventory = InventoryServiceClient::new(channel(inventory_url, token).await?);
    let money = |amount_minor| {
        Some(Money {
            amount_minor,
            currency: currency.into(),
        })
    };
    let mut parts = HashMap::new();
    for (sku, name, category, cost, price, stock, reorder) in PARTS {
        let part = inventory
            .create_part(CreatePartRequest {
                sku: (*sku).into(),
                name: (*name).into(),
                description: String::new(),
                category: (*category).into(),
                unit_cost: money(*cost),
                unit_price: money(*price),
                location: format!("Shelf {}", &category[..1]),
                reorder_point: *reorder,
                reorder_quantity: reorder * 3,
                initial_quantity: *stock,
                idempotency_key: format!("demo-part-{sku}"),
            })
            .await
            .with_context(|| format!("creating part {sku}"))?
            .into_inner();
        parts.insert(*sku, part.id);
    }
    summary.push_str(&format!(", {} parts with stock", parts.len()));

    let Some(workorder_url) = urls.get(&Service::Workorder) else {
        return Ok(summary);
    };
    let mut workorders = WorkOrderServiceClient::new(channel(workorder_url, token).await?);
    let plans: [DemoWorkOrder; 4] = [
        (0, "Squealing noise when braking", &[], 30, &[]),
        (
            1,
            "Annual service: oil and filters",
            &[("OIL-5W30-5L", 1), ("FLT-AIR-BM2", 1)],
            90,
            &[WorkOrderStatus::InProgress],
        ),
        (
            3,
            "Front brakes worn",
            &[("BRK-PAD-F01", 1), ("BRK-DSC-F01", 2)],
            120,
            &[WorkOrderStatus::InProgress, WorkOrderStatus::Completed],
        ),
        (
            4,
            "Wipers smear, battery weak in the morning",
            &[("WIP-BLD-600", 2)],
            20,
            &[WorkOrderStatus::Cancelled],
        ),
    ];
    let mut created = 0;
    for (i, (vehicle, complaint, lines, minutes, statuses)) in plans.iter().enumerate() {
        let Some((customer_id, vehicle_id, mileage)) = vehicles.get(*vehicle) else {
            continue;
        };
        let wo = workorders
            .create_work_order(CreateWorkOrderRequest {
                customer_id: customer_id.clone(),
                vehicle_id: vehicle_id.clone(),
                complaint: (*complaint).into(),
                odometer_km: *mileage,
                notes: String::new(),
                idempotency_key: format!("demo-workorder-{i}"),
            })
            .await
            .with_context(|| format!("creating work order {complaint:?}"))?
            .into_inner();
        for (sku, quantity) in *lines {
            let Some(part_id) = parts.get(sku) else {
                continue;
            };
            workorders
                .add_part_line(AddPartLineRequest {
                    work_order_id: wo.id.clone(),
                    part_id: part_id.clone(),
                    quantity: *quantity,
                    expected_version: 0,
                    idempotency_key: format!("demo-workorder-{i}-part-{sku}"),
                    job_id: String::new(),
                })
                .await
                .with_context(|| format!("adding {sku} to work order {}", wo.number))?;
        }
        workorders
            .add_labor_line(AddLaborLineRequest {
                work_order_id: wo.id.clone(),
                description: (*complaint).into(),
                technician: "Max Becker".into(),
                minutes: *minutes,
                hourly_rate: None,
                expected_version: 0,
                idempotency_key: format!("demo-workorder-{i}-labour"),
                job_id: String::new(),
            })
            .await
            .with_context(|| format!("adding labour to work order {}", wo.number))?;
        if statuses.contains(&WorkOrderStatus::Completed) {
            // Completing needs every part line reserved, and inventory answers by event.
            wait_for_reservations(&mut workorders, &wo.id, &wo.number).await?;
        }
        for status in *statuses {
            workorders
                .change_status(ChangeStatusRequest {
                    id: wo.id.clone(),
                    status: *status as i32,
                    reason: if *status == WorkOrderStatus::Cancelled {
                        "customer postponed".into()
                    } else {
                        String::new()
                    },
                    expected_version: 0,
                })
                .await
                .with_context(|| format!("moving work order {} to {status:?}", wo.number))?;
        }
        created += 1;
    }
    summary.push_str(&format!(", {created} work orders in different states"));
    Ok(summary)
}
