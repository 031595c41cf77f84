//! The customer service over gRPC, served in-process on an ephemeral port, on a real
//! PostgreSQL database of its own per test.

use std::collections::HashSet;

use carerp_kit::auth::Role;
use carerp_kit::auth::testing::{self, AuthedChannel};
use carerp_kit::status::field_violations;
use carerp_kit::{RunningService, ServiceConfig};
use carerp_proto::common::v1::PageRequest;
use carerp_proto::customer::v1 as pb;
use carerp_proto::customer::v1::customer_service_client::CustomerServiceClient;
use sqlx::PgPool;
use tonic::Code;
use tonic::transport::Channel;

struct Harness {
    service: RunningService,
    tenant: String,
    client: CustomerServiceClient<AuthedChannel>,
    pool: PgPool,
}

impl Harness {
    async fn start(pool: PgPool) -> Self {
        let config = ServiceConfig::for_tests("customer", &carerp_kit::config::test_tenant(), None);
        let config_tenant = config.tenant.clone();
        let service = carerp_customer::start_with_pool(config, pool.clone())
            .await
            .unwrap();
        let client = CustomerServiceClient::new(
            testing::connect(
                format!("http://{}", service.grpc_addr),
                &config_tenant,
                Role::Owner,
            )
            .await,
        );
        Self {
            service,
            tenant: config_tenant,
            client,
            pool,
        }
    }

    async fn outbox_topics(&self, aggregate_id: &str) -> Vec<String> {
        let mut conn = self.pool.acquire().await.unwrap();
        carerp_kit::outbox::rows_for(&mut conn, aggregate_id)
            .await
            .unwrap()
            .into_iter()
            .map(|row| row.topic)
            .collect()
    }

    async fn count(&self, table: &str) -> i64 {
        let sql = match table {
            "customers" => "SELECT count(*) FROM customers",
            "vehicles" => "SELECT count(*) FROM vehicles",
            _ => "SELECT count(*) FROM outbox",
        };
        sqlx::query_scalar(sql).fetch_one(&self.pool).await.unwrap()
    }

    async fn create(&mut self, name: &str) -> pb::Customer {
        self.client
            .create_customer(new_customer(name))
            .await
            .unwrap()
            .into_inner()
    }

    async fn add_vehicle(&mut self, customer_id: &str, vin: &str) -> pb::Vehicle {
        self.client
            .add_vehicle(new_vehicle(customer_id, vin))
            .await
            .unwrap()
            .into_inner()
    }
}

fn new_customer(name: &str) -> pb::CreateCustomerRequest {
    pb::CreateCustomerRequest {
        name: name.into(),
        email: format!("{}@example.com", name.to_lowercase().replace(' ', ".")),
        phone: "+49 30 1234567".into(),
        address: Some(pb::Address {
            line1: "Hauptstr. 1".into(),
            city: "Berlin".into(),
            postal_code: "10115".into(),
            country: "de".into(),
            ..Default::default()
        }),
        notes: String::new(),
        idempotency_key: String::new(),
    }
}

fn new_vehicle(customer_id: &str, vin: &str) -> pb::AddVehicleRequest {
    pb::AddVehicleRequest {
        customer_id: customer_id.into(),
        vin: vin.into(),
        make: "Volkswagen".into(),
        model: "Golf".into(),
        year: 2019,
        license_plate: "B-CE 2019".into(),
        mileage: 42_000,
        idempotency_key: String::new(),
    }
}

const VIN: &str = "WVWZZZ1KZAW000001";

/// The status is `code` and its field violations name exactly `fields`.
fn assert_invalid(status: tonic::Status, fields: &[&str]) {
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    let named: Vec<String> = field_violations(&status)
        .into_iter()
        .map(|v| v.field)
        .collect();
    assert_eq!(named, fields, "{}", status.message());
}

#[sqlx::test(migrator = "carerp_customer::MIGRATOR")]
async fn create_get_update_archive_round_trip(pool: PgPool) {
    let mut h = Harness::start(pool).await;
    let created = h.create("Jane Doe").await;
    assert_eq!(created.name, "Jane Doe");
    assert_eq!(created.phone, "+49301234567");
    assert_eq!(created.address.as_ref().unwrap().country, "DE");
    assert_eq!(created.audit.as_ref().unwrap().version, 1);
    assert!(
        uuid::Uuid::parse_str(&created.id)
            .unwrap()
            .get_version_num()
            == 7
    );

    let vehicle = h.add_vehicle(&created.id, "wvwzzz1kzaw000001").await;
    assert_eq!(vehicle.vin, VIN);
    let got = h
        .client
        .get_customer(pb::GetCustomerRequest {
            id: created.id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got.vehicles.len(), 1);
    assert_eq!(got.vehicles[0].id, vehicle.id);

    let updated = h
        .client
        .update_customer(pb::UpdateCustomerRequest {
            id: created.id.clone(),
            name: "Jane Roe".into(),
            email: "jane.roe@example.com".into(),
            phone: String::new(),
            address: None,
            notes: "prefers calls in the morning".into(),
            expected_version: 1,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(updated.name, "Jane Roe");
    assert_eq!(updated.phone, "");
    assert_eq!(updated.audit.as_ref().unwrap().version, 2);

    let archived = h
        .client
        .archive_customer(pb::ArchiveCustomerRequest {
            id: created.id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(archived.archived);
    assert_eq!(
        h.outbox_topics(&created.id).await,
        ["customer.created", "customer.updated", "customer.updated"]
    );
    assert_eq!(h.outbox_topics(&vehicle.id).await, ["vehicle.added"]);
    h.service.stop().await.unwrap();
}

#[sqlx::test(migrator = "carerp_customer::MIGRATOR")]
async fn every_invalid_customer_field_is_named(pool: PgPool) {
    let mut h = Harness::start(pool).await;
    let cases: Vec<(pb::CreateCustomerRequest, Vec<&str>)> = vec![
        (
            pb::CreateCustomerRequest {
                name: "  ".into(),
                ..new_customer("x")
            },
            vec!["name"],
        ),
        (
            pb::CreateCustomerRequest {
                email: "not-an-email".into(),
                ..new_customer("x")
            },
            vec!["email"],
        ),
        (
            pb::CreateCustomerRequest {
                phone: "030 1234567".into(),
                ..new_customer("x")
            },
            vec!["phone"],
        ),
        (
            pb::CreateCustomerRequest {
                email: "".into(),
                phone: "".into(),
                ..new_customer("x")
            },
            vec!["email"],
        ),
        (
            pb::CreateCustomerRequest {
                address: Some(pb::Address {
                    country: "Germany".into(),
                    ..Default::default()
                }),
                ..new_customer("x")
            },
            vec!["address.country"],
        ),
        (
            pb::CreateCustomerRequest {
                name: "".into(),
                email: "@".into(),
                phone: "+0".into(),
                ..new_customer("x")
            },
            vec!["name", "email", "phone"],
        ),
    ];
    for (request, fields) in cases {
        let status = h.client.create_customer(request).await.unwrap_err();
        assert_invalid(status, &fields);
    }
    assert_eq!(h.count("customers").await, 0);
    assert_eq!(h.count("outbox").await, 0);
}

#[sqlx::test(migrator = "carerp_customer::MIGRATOR")]
async fn every_invalid_vehicle_field_is_named(pool: PgPool) {
    let mut h = Harness::start(pool).await;
    let customer = h.create("Max Mustermann").await;
    let id = customer.id.as_str();
    let cases: Vec<(pb::AddVehicleRequest, Vec<&str>)> = vec![
        (new_vehicle(id, "WVWZZZ1KZAW00000"), vec!["vin"]),
        (new_vehicle(id, "WVWZZZ1KZAW00000I"), vec!["vin"]),
        (new_vehicle(id, "WVWZZZ1KZAW00000O"), vec!["vin"]),
        (new_vehicle(id, "WVWZZZ1KZAW00000Q"), vec!["vin"]),
        (
            pb::AddVehicleRequest {
                year: 1885,
                ..new_vehicle(id, VIN)
            },
            vec!["year"],
        ),
        (
            pb::AddVehicleRequest {
                year: 2100,
                ..new_vehicle(id, VIN)
            },
            vec!["year"],
        ),
        (
            pb::AddVehicleRequest {
                make: "".into(),
                model: " ".into(),
                ..new_vehicle(id, VIN)
            },
            vec!["make", "model"],
        ),
        (
            pb::AddVehicleRequest {
                mileage: -5,
                ..new_vehicle(id, VIN)
            },
            vec!["mileage"],
        ),
        (new_vehicle("not-a-uuid", VIN), vec!["customer_id"]),
        (new_vehicle("", ""), vec!["customer_id", "vin"]),
    ];
    for (request, fields) in cases {
        let status = h.client.add_vehicle(request).await.unwrap_err();
        assert_invalid(status, &fields);
    }
    assert_eq!(h.count("vehicles").await, 0);
}

/// A real Honda Accord's VIN (check digit 3), and the same with its last digit mistyped.
const GOOD_US_VIN: &str = "1HGCM82633A004352";
const MISTYPED_US_VIN: &str = "1HGCM82633A004353";

#[sqlx::test(migrator = "carerp_customer::MIGRATOR")]
async fn a_vin_with_a_wrong_check_digit_is_refused_and_says_which_digit(pool: PgPool) {
    let mut h = Harness::start(pool).await;
    let customer = h.create("Carla Check").await;
    let status = h
        .client
        .add_vehicle(new_vehicle(&customer.id, MISTYPED_US_VIN))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    let violations = field_violations(&status);
    assert_eq!(violations.len(), 1, "{violations:?}");
    assert_eq!(violations[0].field, "vin");
    assert!(
        violations[0]
            .description
            .starts_with("check digit is 5, the VIN says 3"),
        "{}",
        violations[0].description
    );
    // A Chinese VIN carries one too.
    let status = h
        .client
        .add_vehicle(new_vehicle(&customer.id, "LRW3E7EK0NC000000"))
        .await
        .unwrap_err();
    assert!(
        field_violations(&status)[0]
            .description
            .contains("check digit is 3")
    );
    // A character outside the alphabet is named with its position.
    let status = h
        .client
        .add_vehicle(new_vehicle(&customer.id, "1HGCM8263OA004352"))
        .await
        .unwrap_err();
    assert!(
        field_violations(&status)[0]
            .description
            .contains("'O' at position 10")
    );
    assert_eq!(h.count("vehicles").await, 0);

    let honda = h
        .client
        .add_vehicle(pb::AddVehicleRequest {
            make: "Honda".into(),
            model: "Accord".into(),
            year: 2003,
            ..new_vehicle(&customer.id, &GOOD_US_VIN.to_lowercase())
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(honda.vin, GOOD_US_VIN);
    let decoded = honda.vin_decoding.unwrap();
    assert_eq!(decoded.manufacturer, "Honda");
    assert_eq!(decoded.model_year, 2003);
    assert!(decoded.model_year_certain);
    assert_eq!(decoded.check_digit(), pb::CheckDigit::Valid);
    assert!(!decoded.make_differs && !decoded.year_differs);
}

#[sqlx::test(migrator = "carerp_customer::MIGRATOR")]
async fn a_vehicle_shows_what_its_vin_says_beside_what_was_typed(pool: PgPool) {
    let mut h = Harness::start(pool).await;
    let customer = h.create("Vera Vin").await;
    // Year code K of a European VIN: 2019 (1989 is a cycle earlier), not settled by position 7.
    let typed_agrees = h
        .client
        .add_vehicle(pb::AddVehicleRequest {
            make: "VW".into(),
            year: 2019,
            ..new_vehicle(&customer.id, "WVWZZZAUZKW000001")
        })
        .await
        .unwrap()
        .into_inner();
    let decoded = typed_agrees.vin_decoding.unwrap();
    assert_eq!(
        (decoded.manufacturer.as_str(), decoded.model_year),
        ("Volkswagen", 2019)
    );
    assert!(!decoded.model_year_certain);
    assert_eq!(decoded.check_digit(), pb::CheckDigit::NotUsed);
    assert!(!decoded.make_differs && !decoded.year_differs);

    let typed_differs = h
        .client
        .add_vehicle(pb::AddVehicleRequest {
            make: "Audi".into(),
            year: 2018,
            ..new_vehicle(&customer.id, "WVWZZZAUZKW000002")
        })
        .await
        .unwrap()
        .into_inner();
    // What was typed is kept; the decoding says where it disagrees.
    assert_eq!(
        (typed_differs.make.as_str(), typed_differs.year),
        ("Audi", 2018)
    );
    let decoded = typed_differs.vin_decoding.unwrap();
    assert_eq!(decoded.model_year, 2019);
    assert!(decoded.make_differs && decoded.year_differs);

    // An unknown WMI and a position 10 without a year code decode to nothing, not an error.
    let unknown = h
        .add_vehicle(&customer.id, "AAAZZZAUZZW000003")
        .await
        .vin_decoding
        .unwrap();
    assert_eq!((unknown.manufacturer.as_str(), unknown.model_year), ("", 0));
    assert!(!unknown.make_differs && !unknown.year_differs);
}

#[sqlx::test(migrator = "carerp_customer::MIGRATOR")]
async fn a_vin_stored_before_the_check_digit_rule_stays_readable_and_editable(pool: PgPool) {
    let mut h = Harness::start(pool).await;
    let customer = h.create("Olaf Old").await;
    // As a row written before the rule (the migration judged no stored VIN).
    let id = uuid::Uuid::now_v7();
    sqlx::query(
        "INSERT INTO vehicles (id, customer_id, vin, make, model, year, license_plate, mileage)
         VALUES ($1, $2, $3, 'Honda', 'Accord', 2003, 'HH-OL 1', 1000)",
    )
    .bind(id)
    .bind(uuid::Uuid::parse_str(&customer.id).unwrap())
    .bind(MISTYPED_US_VIN)
    .execute(&h.pool)
    .await
    .unwrap();
    let stored = h
        .client
        .get_vehicle(pb::GetVehicleRequest { id: id.to_string() })
        .await
        .unwrap()
        .into_inner();
    let decoded = stored.vin_decoding.unwrap();
    assert_eq!(decoded.check_digit(), pb::CheckDigit::Invalid);
    assert_eq!(decoded.manufacturer, "Honda");
    let updated = h
        .client
        .update_vehicle(pb::UpdateVehicleRequest {
            id: id.to_string(),
            make: "Honda".into(),
            model: "Accord".into(),
            year: 2003,
            license_plate: "HH-OL 1".into(),
            mileage: 2000,
            expected_version: 0,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (updated.vin.as_str(), updated.mileage),
        (MISTYPED_US_VIN, 2000)
    );
    // The same VIN is refused for a new vehicle (here: before its duplicate would be).
    let status = h
        .client
        .add_vehicle(new_vehicle(&customer.id, MISTYPED_US_VIN))
        .await
        .unwrap_err();
    assert_invalid(status, &["vin"]);
}

#[sqlx::test(migrator = "carerp_customer::MIGRATOR")]
async fn plates_are_found_as_typed(pool: PgPool) {
    let mut h = Harness::start(pool).await;
    let owner = h.create("Petra Plate").await;
    let other = h.create("Otto Other").await;
    let wanted = h
        .client
        .add_vehicle(pb::AddVehicleRequest {
            license_plate: "B-AB 123".into(),
            ..new_vehicle(&owner.id, "WVWZZZ1KZAW000011")
        })
        .await
        .unwrap()
        .into_inner();
    for (plate, vin) in [
        ("M-AB 1234", "WVWZZZ1KZAW000012"),
        ("", "WVWZZZ1KZAW000013"),
    ] {
        h.client
            .add_vehicle(pb::AddVehicleRequest {
                license_plate: plate.into(),
                ..new_vehicle(&other.id, vin)
            })
            .await
            .unwrap();
    }
    let by_plate = |plate: &str| pb::ListVehiclesRequest {
        license_plate: plate.into(),
        ..Default::default()
    };
    for typed in ["b-ab 123", "BAB123", "B AB 123", "B-AB 123", " b.ab-123 "] {
        let found: Vec<String> = h
            .client
            .list_vehicles(by_plate(typed))
            .await
            .unwrap()
            .into_inner()
            .vehicles
            .into_iter()
            .map(|v| v.id)
            .collect();
        assert_eq!(found, std::slice::from_ref(&wanted.id), "plate {typed:?}");
    }
    for typed in ["B-AB 12", "BA B1 23 4X"] {
        let found = h.client.list_vehicles(by_plate(typed)).await.unwrap();
        assert!(found.into_inner().vehicles.is_empty(), "plate {typed:?}");
    }
    // Empty or only separators: no plate filter, every vehicle.
    let all = h.client.list_vehicles(by_plate(" ")).await.unwrap();
    assert_eq!(all.into_inner().vehicles.len(), 3);
    // The customer search finds the owner by the plate as typed, and part of it.
    for query in ["b-ab 123", "BAB123", "B AB 123", "ab 12"] {
        let found: Vec<String> = h
            .client
            .list_customers(pb::ListCustomersRequest {
                query: query.into(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .customers
            .into_iter()
            .map(|c| c.name)
            .collect();
        let expected: &[&str] = if query == "ab 12" {
            &["Petra Plate", "Otto Other"]
        } else {
            &["Petra Plate", "Otto Other"][..1]
        };
        assert_eq!(found, expected, "query {query:?}");
    }
}

#[sqlx::test(migrator = "carerp_customer::MIGRATOR")]
async fn the_plate_lookup_is_served_by_the_index(pool: PgPool) {
    let mut conn = pool.acquire().await.unwrap();
    sqlx::query("SET enable_seqscan = off")
        .execute(&mut *conn)
        .await
        .unwrap();
    let plan: Vec<String> = sqlx::query_scalar(
        "EXPLAIN SELECT id FROM vehicles WHERE plate_key(license_plate) = plate_key('b-ab 123')",
    )
    .fetch_all(&mut *conn)
    .await
    .unwrap();
    assert!(
        plan.iter().any(|line| line.contains("vehicles_plate_key")),
        "{plan:#?}"
    );
    let key: String = sqlx::query_scalar("SELECT plate_key(' b.Ab-1 23\t')")
        .fetch_one(&mut *conn)
        .await
        .unwrap();
    assert_eq!(key, "BAB123");
}

#[sqlx::test(migrator = "carerp_customer::MIGRATOR")]
async fn unknown_ids_are_not_found(pool: PgPool) {
    let mut h = Harness::start(pool).await;
    let unknown = uuid::Uuid::now_v7().to_string();
    let c = &mut h.client;
    let statuses = vec![
        c.get_customer(pb::GetCustomerRequest {
            id: unknown.clone(),
        })
        .await
        .unwrap_err(),
        c.get_vehicle(pb::GetVehicleRequest {
            id: unknown.clone(),
        })
        .await
        .unwrap_err(),
        c.archive_customer(pb::ArchiveCustomerRequest {
            id: unknown.clone(),
        })
        .await
        .unwrap_err(),
        c.update_customer(pb::UpdateCustomerRequest {
            id: unknown.clone(),
            name: "A".into(),
            email: "a@b.de".into(),
            ..Default::default()
        })
        .await
        .unwrap_err(),
        c.add_vehicle(new_vehicle(&unknown, VIN)).await.unwrap_err(),
        c.update_vehicle(pb::UpdateVehicleRequest {
            id: unknown.clone(),
            make: "VW".into(),
            model: "Golf".into(),
            year: 2019,
            ..Default::default()
        })
        .await
        .unwrap_err(),
        c.list_vehicles(pb::ListVehiclesRequest {
            customer_id: unknown.clone(),
            page: None,
            ..Default::default()
        })
        .await
        .unwrap_err(),
    ];
    for status in statuses {
        assert_eq!(status.code(), Code::NotFound, "{status:?}");
        assert!(status.message().contains(&unknown), "{}", status.message());
    }
    let status = c
        .get_customer(pb::GetCustomerRequest { id: "42".into() })
        .await
        .unwrap_err();
    assert_invalid(status, &["id"]);
}

#[sqlx::test(migrator = "carerp_customer::MIGRATOR")]
async fn a_duplicate_vin_is_refused_and_writes_nothing(pool: PgPool) {
    let mut h = Harness::start(pool).await;
    let first = h.create("First Owner").await;
    let second = h.create("Second Owner").await;
    h.add_vehicle(&first.id, VIN).await;
    let outbox_before = h.count("outbox").await;

    let status = h
        .client
        .add_vehicle(new_vehicle(&second.id, VIN))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::AlreadyExists);
    assert!(status.message().contains(VIN), "{}", status.message());
    assert_eq!(h.count("vehicles").await, 1);
    // The outbox row exists exactly when the change committed.
    assert_eq!(h.count("outbox").await, outbox_before);
    assert!(h.outbox_topics(&second.id).await == ["customer.created"]);
}

#[sqlx::test(migrator = "carerp_customer::MIGRATOR")]
async fn mileage_never_decreases(pool: PgPool) {
    let mut h = Harness::start(pool).await;
    let customer = h.create("Odo Meter").await;
    let vehicle = h.add_vehicle(&customer.id, VIN).await;
    let update = |mileage| pb::UpdateVehicleRequest {
        id: vehicle.id.clone(),
        make: "Volkswagen".into(),
        model: "Golf".into(),
        year: 2019,
        license_plate: "B-CE 2019".into(),
        mileage,
        expected_version: 0,
    };
    let status = h.client.update_vehicle(update(41_999)).await.unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert!(
        status.message().contains("42000") && status.message().contains("41999"),
        "{}",
        status.message()
    );

    let updated = h
        .client
        .update_vehicle(update(50_000))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(updated.mileage, 50_000);
    assert_eq!(updated.vin, VIN);
    assert_eq!(updated.audit.unwrap().version, 2);

    let got = h
        .client
        .get_vehicle(pb::GetVehicleRequest {
            id: vehicle.id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got.mileage, 50_000);
}

#[sqlx::test(migrator = "carerp_customer::MIGRATOR")]
async fn archived_customers_leave_default_lists_but_stay_readable(pool: PgPool) {
    let mut h = Harness::start(pool).await;
    let kept = h.create("Kept Customer").await;
    let gone = h.create("Gone Customer").await;
    h.client
        .archive_customer(pb::ArchiveCustomerRequest {
            id: gone.id.clone(),
        })
        .await
        .unwrap();
    // Archiving twice is harmless and writes no second event.
    h.client
        .archive_customer(pb::ArchiveCustomerRequest {
            id: gone.id.clone(),
        })
        .await
        .unwrap();
    assert_eq!(
        h.outbox_topics(&gone.id).await,
        ["customer.created", "customer.updated"]
    );

    let list = |include_archived| pb::ListCustomersRequest {
        page: None,
        query: String::new(),
        include_archived,
    };
    let default: Vec<String> = h
        .client
        .list_customers(list(false))
        .await
        .unwrap()
        .into_inner()
        .customers
        .into_iter()
        .map(|c| c.id)
        .collect();
    assert_eq!(default, vec![kept.id.clone()]);
    let all = h
        .client
        .list_customers(list(true))
        .await
        .unwrap()
        .into_inner()
        .customers;
    assert_eq!(all.len(), 2);
    let got = h
        .client
        .get_customer(pb::GetCustomerRequest {
            id: gone.id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(got.archived);

    let status = h
        .client
        .add_vehicle(new_vehicle(&gone.id, VIN))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert!(status.message().contains("archived"));
}

#[sqlx::test(migrator = "carerp_customer::MIGRATOR")]
async fn an_idempotent_retry_creates_nothing_new(pool: PgPool) {
    let mut h = Harness::start(pool).await;
    let request = pb::CreateCustomerRequest {
        idempotency_key: "req-123".into(),
        ..new_customer("Retry Once")
    };
    let first = h
        .client
        .create_customer(request.clone())
        .await
        .unwrap()
        .into_inner();
    let second = h
        .client
        .create_customer(request)
        .await
        .unwrap()
        .into_inner();
    assert_eq!(first.id, second.id);
    assert_eq!(h.count("customers").await, 1);
    assert_eq!(h.outbox_topics(&first.id).await, ["customer.created"]);

    let vehicle = pb::AddVehicleRequest {
        idempotency_key: "veh-1".into(),
        ..new_vehicle(&first.id, VIN)
    };
    let a = h
        .client
        .add_vehicle(vehicle.clone())
        .await
        .unwrap()
        .into_inner();
    let b = h
        .client
        .add_vehicle(vehicle.clone())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(a.id, b.id);
    assert_eq!(h.count("vehicles").await, 1);
    // Concurrent retries of one add: one vehicle, and each hears of it, not "VIN exists".
    let retries: Vec<_> = (0..6)
        .map(|_| {
            let mut client = h.client.clone();
            let request = pb::AddVehicleRequest {
                idempotency_key: "veh-2".into(),
                ..new_vehicle(&first.id, "WVWZZZ1KZAW000777")
            };
            tokio::spawn(async move { client.add_vehicle(request).await })
        })
        .collect();
    let mut ids = std::collections::HashSet::new();
    for retry in retries {
        ids.insert(retry.await.unwrap().unwrap().into_inner().id);
    }
    assert_eq!(ids.len(), 1);
    assert_eq!(h.count("vehicles").await, 2);
    // A retry after the customer was archived still answers with what the first call added.
    h.client
        .archive_customer(pb::ArchiveCustomerRequest {
            id: first.id.clone(),
        })
        .await
        .unwrap();
    let after_archive = h.client.add_vehicle(vehicle).await.unwrap().into_inner();
    assert_eq!(after_archive.id, a.id);

    // Concurrent retries with one key also create one customer.
    let request = pb::CreateCustomerRequest {
        idempotency_key: "req-456".into(),
        ..new_customer("Racing")
    };
    let calls = (0..8).map(|_| {
        let mut client = h.client.clone();
        let request = request.clone();
        async move {
            client
                .create_customer(request)
                .await
                .unwrap()
                .into_inner()
                .id
        }
    });
    let ids: HashSet<String> = futures::future::join_all(calls).await.into_iter().collect();
    assert_eq!(ids.len(), 1);
    assert_eq!(h.count("customers").await, 2);
}

#[sqlx::test(migrator = "carerp_customer::MIGRATOR")]
async fn pagination_walks_250_customers_without_gaps_or_repeats(pool: PgPool) {
    let mut h = Harness::start(pool).await;
    let mut created = Vec::new();
    for i in 0..250 {
        created.push(h.create(&format!("Customer {i:03}")).await.id);
    }
    let mut seen = Vec::new();
    let mut token = String::new();
    let mut pages = 0;
    loop {
        let response = h
            .client
            .list_customers(pb::ListCustomersRequest {
                page: Some(PageRequest {
                    page_size: 40,
                    page_token: token.clone(),
                }),
                query: String::new(),
                include_archived: false,
            })
            .await
            .unwrap()
            .into_inner();
        pages += 1;
        assert!(response.customers.len() <= 40);
        seen.extend(response.customers.into_iter().map(|c| c.id));
        token = response.page.unwrap().next_page_token;
        if token.is_empty() {
            break;
        }
    }
    assert_eq!(pages, 7);
    assert_eq!(seen, created);

    let bad = h
        .client
        .list_customers(pb::ListCustomersRequest {
            page: Some(PageRequest {
                page_size: -1,
                page_token: "garbage!".into(),
            }),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_invalid(bad, &["page.page_size", "page.page_token"]);
}

#[sqlx::test(migrator = "carerp_customer::MIGRATOR")]
async fn search_covers_name_email_phone_plate_and_vin(pool: PgPool) {
    let mut h = Harness::start(pool).await;
    let anna = h
        .client
        .create_customer(pb::CreateCustomerRequest {
            name: "Anna Schmidt".into(),
            email: "anna@schmidt.example".into(),
            phone: "+44 20 7946 0958".into(),
            ..new_customer("x")
        })
        .await
        .unwrap()
        .into_inner();
    let _other = h.create("Bob Jones").await;
    h.client
        .add_vehicle(pb::AddVehicleRequest {
            license_plate: "M-XY 99".into(),
            ..new_vehicle(&anna.id, VIN)
        })
        .await
        .unwrap();
    for query in [
        "schmidt",
        "ANNA@",
        "2079460958",
        // As people type them: spaced phone numbers, plates without their dashes.
        "+44 20 7946 0958",
        "20 7946",
        "m-xy",
        "MXY99",
        "mxy 99",
        "kzaw000001",
        "%",
        "_",
    ] {
        let found: Vec<String> = h
            .client
            .list_customers(pb::ListCustomersRequest {
                query: query.into(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .customers
            .into_iter()
            .map(|c| c.id)
            .collect();
        let expected: Vec<String> = if query == "%" || query == "_" {
            vec![]
        } else {
            vec![anna.id.clone()]
        };
        assert_eq!(found, expected, "query {query:?}");
    }
}

#[sqlx::test(migrator = "carerp_customer::MIGRATOR")]
async fn a_stale_version_is_aborted_and_concurrent_updates_have_one_winner(pool: PgPool) {
    let mut h = Harness::start(pool).await;
    let customer = h.create("Version Check").await;
    let update = |name: &str, expected_version| pb::UpdateCustomerRequest {
        id: customer.id.clone(),
        name: name.into(),
        email: "v@example.com".into(),
        expected_version,
        ..Default::default()
    };
    h.client.update_customer(update("First", 1)).await.unwrap();
    let stale = h
        .client
        .update_customer(update("Stale", 1))
        .await
        .unwrap_err();
    assert_eq!(stale.code(), Code::Aborted);
    assert!(
        stale
            .message()
            .contains("expected version 1, current version 2"),
        "{}",
        stale.message()
    );

    let calls = (0..6).map(|i| {
        let mut client = h.client.clone();
        let request = update(&format!("Writer {i}"), 2);
        async move { client.update_customer(request).await }
    });
    let results = futures::future::join_all(calls).await;
    let winners: Vec<_> = results.iter().filter(|r| r.is_ok()).collect();
    assert_eq!(winners.len(), 1);
    for result in &results {
        if let Err(status) = result {
            assert_eq!(status.code(), Code::Aborted);
        }
    }
    let got = h
        .client
        .get_customer(pb::GetCustomerRequest {
            id: customer.id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got.audit.unwrap().version, 3);
    assert_eq!(&got.name, &winners[0].as_ref().unwrap().get_ref().name);
}

#[sqlx::test(migrator = "carerp_customer::MIGRATOR")]
async fn list_vehicles_of_a_customer_and_of_the_tenant(pool: PgPool) {
    let mut h = Harness::start(pool).await;
    let a = h.create("Owner A").await;
    let b = h.create("Owner B").await;
    h.add_vehicle(&a.id, "WVWZZZ1KZAW000001").await;
    h.add_vehicle(&a.id, "WVWZZZ1KZAW000002").await;
    h.add_vehicle(&b.id, "WVWZZZ1KZAW000003").await;
    let of_a = h
        .client
        .list_vehicles(pb::ListVehiclesRequest {
            customer_id: a.id.clone(),
            page: None,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .vehicles;
    assert_eq!(of_a.len(), 2);
    assert!(of_a.iter().all(|v| v.customer_id == a.id));
    let page = h
        .client
        .list_vehicles(pb::ListVehiclesRequest {
            customer_id: String::new(),
            page: Some(PageRequest {
                page_size: 2,
                page_token: String::new(),
            }),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(page.vehicles.len(), 2);
    let rest = h
        .client
        .list_vehicles(pb::ListVehiclesRequest {
            customer_id: String::new(),
            page: Some(PageRequest {
                page_size: 2,
                page_token: page.page.unwrap().next_page_token,
            }),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(rest.vehicles.len(), 1);
    assert!(rest.page.unwrap().next_page_token.is_empty());
}

#[sqlx::test(migrator = "carerp_customer::MIGRATOR")]
async fn health_reflection_readiness_and_metrics_are_served(pool: PgPool) {
    let mut h = Harness::start(pool).await;
    h.create("Metered").await;
    let channel = Channel::from_shared(format!("http://{}", h.service.grpc_addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
    let serving = health
        .check(tonic_health::pb::HealthCheckRequest {
            service: carerp_customer::SERVICE_NAME.into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        serving.status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );

    let readyz = http_get(h.service.admin_addr, "/readyz").await;
    assert!(readyz.starts_with("HTTP/1.1 200"), "{readyz}");
    let metrics = http_get(h.service.admin_addr, "/metrics").await;
    assert!(
        metrics.contains("carerp_grpc_server_requests_total{method=\"/carerp.customer.v1.CustomerService/CreateCustomer\",code=\"Ok\"} 1"),
        "{metrics}"
    );
    h.service.stop().await.unwrap();
}

async fn http_get(addr: std::net::SocketAddr, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    response
}

/// Calls that skip the BFF meet the same checks: no token, another tenant's token or a
/// forged one is UNAUTHENTICATED, a role without the permission PERMISSION_DENIED, and
/// nothing is written.
#[sqlx::test(migrator = "carerp_customer::MIGRATOR")]
async fn calls_without_a_valid_token_or_the_permission_are_refused(pool: PgPool) {
    let mut h = Harness::start(pool).await;
    let url = format!("http://{}", h.service.grpc_addr);
    let mut anonymous = CustomerServiceClient::connect(url.clone()).await.unwrap();
    let err = anonymous
        .create_customer(new_customer("Ann Anon"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated, "{err:?}");
    assert!(err.message().contains("no access token"), "{err:?}");

    let mut foreign = CustomerServiceClient::new(
        testing::connect(url.clone(), "another-garage", Role::Owner).await,
    );
    let err = foreign
        .list_customers(pb::ListCustomersRequest::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated, "{err:?}");
    assert!(err.message().contains("another tenant"), "{err:?}");

    let stranger = carerp_kit::auth::SigningKey::generate("test");
    let (forged, _) = stranger
        .issue(
            &h.tenant,
            uuid::Uuid::now_v7(),
            Role::Owner,
            uuid::Uuid::now_v7(),
            chrono::Utc::now(),
        )
        .unwrap();
    let mut forger = CustomerServiceClient::new(testing::connect_with(url.clone(), &forged).await);
    let err = forger
        .create_customer(new_customer("Fay Forged"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated, "{err:?}");

    let mut technician =
        CustomerServiceClient::new(testing::connect(url, &h.tenant, Role::Technician).await);
    let err = technician
        .create_customer(new_customer("Tom Tech"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
    assert!(
        err.message()
            .contains("carerp.customer.v1.CustomerService/CreateCustomer"),
        "{err:?}"
    );
    assert_eq!(h.count("customers").await, 0);
    // Reading is a technician's to do.
    h.create("Rita Read").await;
    let page = technician
        .list_customers(pb::ListCustomersRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(page.customers.len(), 1);
}

/// A customer read in one query carries their vehicles exactly as the vehicle calls answer
/// them (every field, the timestamps to the microsecond, oldest first), and none for a
/// customer without any.
#[sqlx::test(migrator = "carerp_customer::MIGRATOR")]
async fn a_customer_is_read_with_their_vehicles_as_the_vehicle_calls_answer_them(pool: PgPool) {
    let mut h = Harness::start(pool).await;
    let owner = h.create("Owner A").await;
    let nobody = h.create("Owner B").await;
    let first = h.add_vehicle(&owner.id, "WVWZZZ1KZAW000001").await;
    let second = h.add_vehicle(&owner.id, "WVWZZZ1KZAW000002").await;
    let get = |id: &str| pb::GetCustomerRequest { id: id.into() };
    let read = h
        .client
        .get_customer(get(&owner.id))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(read.vehicles, vec![first, second]);
    let listed = h
        .client
        .list_vehicles(pb::ListVehiclesRequest {
            customer_id: owner.id.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .vehicles;
    assert_eq!(read.vehicles, listed);
    let without = h
        .client
        .get_customer(get(&nobody.id))
        .await
        .unwrap()
        .into_inner();
    assert!(without.vehicles.is_empty());
    assert_eq!(without.name, "Owner B");
}
