//! `carerp-operator local --seed-demo` (and so `cargo dev`): the demo garage loads through the
//! services' APIs with work orders in different states, and loading it again adds nothing.

use std::time::Duration;

use carerp_e2e::{Platform, eventually};
use carerp_proto::customer::v1 as customer;
use carerp_proto::workorder::v1 as wo;

async fn statuses(p: &mut Platform) -> Vec<wo::WorkOrderStatus> {
    let mut statuses: Vec<_> = p
        .work_orders
        .list_work_orders(wo::ListWorkOrdersRequest::default())
        .await
        .unwrap()
        .into_inner()
        .work_orders
        .iter()
        .map(|o| o.status())
        .collect();
    statuses.sort();
    statuses
}

async fn customer_count(p: &mut Platform) -> usize {
    p.customers
        .list_customers(customer::ListCustomersRequest::default())
        .await
        .unwrap()
        .into_inner()
        .customers
        .len()
}

#[tokio::test]
async fn the_demo_garage_has_work_orders_in_every_state_and_loads_once() {
    let mut p = Platform::start(Default::default()).await.unwrap();
    let urls = p.grpc_urls();

    let summary = carerp_operator::seed::seed_demo(&urls, &p.owner, "EUR")
        .await
        .unwrap();
    assert!(summary.contains("4 work orders"), "{summary}");
    // One person per role, each with a one-time password that signs them in.
    let technician = summary
        .lines()
        .find(|l| l.trim_start().starts_with("TECHNICIAN"))
        .unwrap_or_else(|| panic!("{summary}"));
    let fields: Vec<&str> = technician.split_whitespace().collect();
    let mut identity =
        carerp_proto::identity::v1::identity_service_client::IdentityServiceClient::connect(
            urls[&carerp_operator::crd::Service::Identity].clone(),
        )
        .await
        .unwrap();
    let session = identity
        .login(carerp_proto::identity::v1::LoginRequest {
            email: fields[1].into(),
            password: fields[2].into(),
            client_address: "127.0.0.1".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let user = session.user.unwrap();
    assert_eq!(
        user.role,
        carerp_proto::identity::v1::Role::Technician as i32
    );
    assert!(user.must_change_password);

    // The completed order travels on to INVOICED by itself, through billing.
    use wo::WorkOrderStatus as S;
    let all_states = vec![S::Open, S::InProgress, S::Invoiced, S::Cancelled];
    eventually(
        "the completed demo order is invoiced",
        Duration::from_secs(20),
        async || (statuses(&mut p).await == all_states).then_some(()),
    )
    .await
    .unwrap();
    let customers = customer_count(&mut p).await;
    assert!(customers > 0);

    let again = carerp_operator::seed::seed_demo(&urls, &p.owner, "EUR")
        .await
        .unwrap();
    assert!(again.contains("nothing added"), "{again}");
    assert!(again.contains("(created by an earlier run)"), "{again}");
    assert_eq!(statuses(&mut p).await, all_states);
    assert_eq!(customer_count(&mut p).await, customers);
    p.stop().await.unwrap();
}
