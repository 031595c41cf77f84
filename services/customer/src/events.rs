//! What the customer service tells the others. It consumes nothing.

use carerp_kit::events::{CustomerChanged, VehicleAdded, topic};
use carerp_kit::{RequestContext, outbox};
use sqlx::PgConnection;

use crate::store::{CustomerRow, VehicleRow};

pub async fn customer_created(
    tx: &mut PgConnection,
    context: &RequestContext,
    customer: &CustomerRow,
) -> Result<(), sqlx::Error> {
    customer_changed(tx, context, topic::CUSTOMER_CREATED, customer).await
}

pub async fn customer_updated(
    tx: &mut PgConnection,
    context: &RequestContext,
    customer: &CustomerRow,
) -> Result<(), sqlx::Error> {
    customer_changed(tx, context, topic::CUSTOMER_UPDATED, customer).await
}

async fn customer_changed(
    tx: &mut PgConnection,
    context: &RequestContext,
    topic: &str,
    customer: &CustomerRow,
) -> Result<(), sqlx::Error> {
    let data = CustomerChanged {
        customer_id: customer.id,
        name: customer.name.clone(),
        email: customer.email.clone(),
        phone: customer.phone.clone(),
        archived: customer.archived,
    };
    outbox::enqueue(tx, context, topic, &customer.id.to_string(), &data).await?;
    Ok(())
}

pub async fn vehicle_added(
    tx: &mut PgConnection,
    context: &RequestContext,
    vehicle: &VehicleRow,
) -> Result<(), sqlx::Error> {
    let data = VehicleAdded {
        vehicle_id: vehicle.id,
        customer_id: vehicle.customer_id,
        vin: vehicle.vin.clone(),
        make: vehicle.make.clone(),
        model: vehicle.model.clone(),
        year: vehicle.year,
        license_plate: vehicle.license_plate.clone(),
    };
    outbox::enqueue(
        tx,
        context,
        topic::VEHICLE_ADDED,
        &vehicle.id.to_string(),
        &data,
    )
    .await?;
    Ok(())
}
