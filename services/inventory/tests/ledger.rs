//! Property: after any sequence of receipts, adjustments, reservations, releases and
//! consumptions, a part's quantities equal the sums of its ledger, agree with a simple
//! model, never go negative, and low stock was raised once per crossing.

mod common;

use carerp_inventory::domain::{Adjustment, MovementKind};
use carerp_inventory::store::{self, Error};
use carerp_kit::RequestContext;
use carerp_kit::events::{RequestedPart, topic};
use common::{completed, parts_added};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use uuid::Uuid;

/// Work orders in flight at once.
const SLOTS: usize = 3;

#[derive(Debug, Clone)]
enum Op {
    Receipt(i32),
    Adjust(i32),
    Reserve { slot: usize, quantity: i32 },
    Release(usize),
    Consume(usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (1..15i32).prop_map(Op::Receipt),
        (-12..12i32)
            .prop_filter("non-zero", |d| *d != 0)
            .prop_map(Op::Adjust),
        (0..SLOTS, 1..8i32).prop_map(|(slot, quantity)| Op::Reserve { slot, quantity }),
        (0..SLOTS).prop_map(Op::Release),
        (0..SLOTS).prop_map(Op::Consume),
    ]
}

#[derive(Debug, Clone)]
struct Case {
    initial: i32,
    reorder_point: i32,
    ops: Vec<Op>,
}

fn case() -> impl Strategy<Value = Case> {
    (0..20i32, 0..8i32, prop::collection::vec(op(), 1..30)).prop_map(
        |(initial, reorder_point, ops)| Case {
            initial,
            reorder_point,
            ops,
        },
    )
}

/// A work order in flight: its id and the lines reserved for it.
struct Slot {
    work_order_id: Uuid,
    lines: Vec<RequestedPart>,
}

impl Slot {
    fn new() -> Self {
        Self {
            work_order_id: Uuid::now_v7(),
            lines: vec![],
        }
    }

    fn reserved(&self) -> i32 {
        self.lines.iter().map(|line| line.quantity).sum()
    }
}

/// What the quantities must be, computed without the database.
struct Model {
    on_hand: i32,
    slots: Vec<Slot>,
    reorder_point: i32,
    low_raised: bool,
    low_events: usize,
}

impl Model {
    fn reserved(&self) -> i32 {
        self.slots.iter().map(Slot::reserved).sum()
    }

    fn available(&self) -> i32 {
        self.on_hand - self.reserved()
    }

    /// Once per crossing: usage that leaves the part at or below the point raises it unless
    /// already raised; rising above the point clears it.
    fn after_change(&mut self, usage: bool) {
        if self.available() > self.reorder_point {
            self.low_raised = false;
        } else if usage && !self.low_raised {
            self.low_raised = true;
            self.low_events += 1;
        }
    }
}

#[sqlx::test(migrator = "carerp_inventory::MIGRATOR")]
async fn the_ledger_always_explains_the_quantities(
    pool_options: PgPoolOptions,
    connect: PgConnectOptions,
) {
    // The runner is synchronous; it drives the async cases on a runtime of its own.
    tokio::task::spawn_blocking(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let pool = runtime
            .block_on(pool_options.max_connections(4).connect_with(connect))
            .unwrap();
        let mut runner = TestRunner::new(Config {
            cases: 40,
            failure_persistence: None,
            ..Config::default()
        });
        let result = runner.run(&case(), |case| runtime.block_on(run_case(&pool, case)));
        runtime.block_on(pool.close());
        if let Err(failure) = result {
            panic!("{failure}");
        }
    })
    .await
    .unwrap();
}

async fn run_case(pool: &PgPool, case: Case) -> Result<(), TestCaseError> {
    let sku = format!("P-{}", Uuid::now_v7().simple());
    let part = common::part(pool, &sku, case.initial, case.reorder_point).await;
    let ctx = RequestContext::new_root();
    let mut model = Model {
        on_hand: case.initial,
        slots: (0..SLOTS).map(|_| Slot::new()).collect(),
        reorder_point: case.reorder_point,
        low_raised: case.initial <= case.reorder_point,
        low_events: 0,
    };
    for op in &case.ops {
        match *op {
            Op::Receipt(quantity) => {
                adjust(pool, &ctx, part.id, MovementKind::Receipt, quantity)
                    .await
                    .unwrap();
                model.on_hand += quantity;
                model.after_change(false);
            }
            Op::Adjust(delta) => {
                let allowed = model.on_hand + delta >= model.reserved();
                match adjust(pool, &ctx, part.id, MovementKind::Adjustment, delta).await {
                    Ok(()) => {
                        prop_assert!(
                            allowed,
                            "adjustment {delta} accepted but the model refuses it"
                        );
                        model.on_hand += delta;
                        model.after_change(delta < 0);
                    }
                    Err(Error::FailedPrecondition(_)) => {
                        prop_assert!(
                            !allowed,
                            "adjustment {delta} refused but the model allows it"
                        )
                    }
                    Err(other) => {
                        return Err(TestCaseError::fail(format!("adjustment failed: {other}")));
                    }
                }
            }
            Op::Reserve { slot, quantity } => {
                let fits = quantity <= model.available();
                let line = common::line(part.id, quantity);
                let work_order_id = model.slots[slot].work_order_id;
                common::reserve(
                    pool,
                    Uuid::now_v7(),
                    &parts_added(work_order_id, vec![line.clone()]),
                )
                .await;
                let reserved: i32 = sqlx::query_scalar(
                    "SELECT count(*)::int FROM reservations WHERE line_id = $1 AND status = 'reserved'",
                )
                .bind(line.line_id)
                .fetch_one(pool)
                .await
                .unwrap();
                prop_assert_eq!(
                    reserved == 1,
                    fits,
                    "reserving {} with {} available",
                    quantity,
                    model.available()
                );
                if fits {
                    model.slots[slot].lines.push(line);
                }
                model.after_change(false);
            }
            Op::Release(slot) => {
                common::cancel(pool, model.slots[slot].work_order_id).await;
                model.slots[slot] = Slot::new();
                model.after_change(false);
            }
            Op::Consume(slot) => {
                let finished = std::mem::replace(&mut model.slots[slot], Slot::new());
                common::complete(pool, &completed(finished.work_order_id, &finished.lines)).await;
                model.on_hand -= finished.reserved();
                model.after_change(!finished.lines.is_empty());
            }
        }
        let now = common::get(pool, part.id).await;
        prop_assert_eq!(
            now.quantity_on_hand,
            model.on_hand,
            "on hand after {:?}",
            op
        );
        prop_assert_eq!(
            now.quantity_reserved,
            model.reserved(),
            "reserved after {:?}",
            op
        );
        prop_assert!(now.quantity_reserved >= 0 && now.quantity_reserved <= now.quantity_on_hand);
        let ledger = store::reconcile(pool, Some(part.id)).await.unwrap();
        prop_assert!(
            ledger[0].consistent(),
            "ledger differs after {:?}: {:?}",
            op,
            ledger[0]
        );
    }
    let low = common::events(pool, part.id, topic::INVENTORY_LOW_STOCK).await;
    prop_assert_eq!(low.len(), model.low_events, "low-stock events");
    Ok(())
}

async fn adjust(
    pool: &PgPool,
    ctx: &RequestContext,
    part_id: Uuid,
    kind: MovementKind,
    delta: i32,
) -> Result<(), Error> {
    let adjustment = Adjustment::validate(Some(kind), delta, "count", "prop").unwrap();
    store::adjust_stock(pool, ctx, part_id, &adjustment, None)
        .await
        .map(|_| ())
}
