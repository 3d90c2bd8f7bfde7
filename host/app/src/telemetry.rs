//! Every metric family the dashboards and alerts read, present from
//! start-up: a quiet replica exports zero-valued series for the labels it
//! knows (outcomes, operations, saga types), so panels show 0 rather than
//! "no data" and `rate()` alerts can fire from the first scrape. Series
//! whose labels only exist later (a plugin's name, an HTTP route) start
//! when those do: plugins when they are loaded (the plugin runtime).

use crate::cart::{CART_CHECKOUTS, CARTS_ABANDONED, CARTS_CREATED};
use crate::inventory::{CACHE_MISMATCHES, CLAIM_REREADS, INVENTORY_UPDATE_DURATION};
use crate::orders::{ORDER_PROCESSING, ORDERS};
use crate::outbox::{LAG, PUBLISHED};
use crate::saga::runner::{PAYMENT_CALLS, SAGA_CONFLICTS, SAGA_DURATION, SAGAS_FINISHED};
use crate::saga::worker::{SAGAS_NEEDING_ATTENTION, SAGAS_RESUMED};
use commerce_domain::saga::{FULFILMENT, REFUND};

/// Order outcomes counted by [`ORDERS`].
const ORDER_OUTCOMES: [&str; 6] = [
    "placed",
    "confirmed",
    "failed",
    "cancelled",
    "rejected",
    "refunded",
];
/// How an order left processing ([`ORDER_PROCESSING`]).
const PROCESSING_OUTCOMES: [&str; 3] = ["confirmed", "failed", "cancelled"];
/// Stock operations ([`INVENTORY_UPDATE_DURATION`]).
const STOCK_OPERATIONS: [&str; 5] = ["hold", "release", "commit", "restock", "adjust"];
/// Gateway operations and their results ([`PAYMENT_CALLS`]).
const PAYMENT_OPERATIONS: [&str; 4] = ["authorize", "capture", "void", "refund"];
const PAYMENT_RESULTS: [&str; 4] = ["ok", "declined", "transient", "rejected"];
/// How a saga run ends ([`SAGAS_FINISHED`]).
const SAGA_OUTCOMES: [&str; 3] = ["completed", "compensated", "needs_attention"];

/// Registers every known series at zero in the process's recorder (call
/// it once the recorder is installed).
pub fn zero_series() {
    for outcome in ORDER_OUTCOMES {
        metrics::counter!(ORDERS, "outcome" => outcome).increment(0);
    }
    for outcome in PROCESSING_OUTCOMES {
        let _ = metrics::histogram!(ORDER_PROCESSING, "outcome" => outcome);
    }
    for operation in STOCK_OPERATIONS {
        let _ = metrics::histogram!(INVENTORY_UPDATE_DURATION, "operation" => operation);
    }
    for operation in PAYMENT_OPERATIONS {
        for result in PAYMENT_RESULTS {
            metrics::counter!(PAYMENT_CALLS, "operation" => operation, "result" => result)
                .increment(0);
        }
    }
    for saga_type in [FULFILMENT.saga_type, REFUND.saga_type] {
        for outcome in SAGA_OUTCOMES {
            metrics::counter!(SAGAS_FINISHED, "saga_type" => saga_type, "outcome" => outcome)
                .increment(0);
            let _ =
                metrics::histogram!(SAGA_DURATION, "saga_type" => saga_type, "outcome" => outcome);
        }
    }
    for name in [
        CART_CHECKOUTS,
        CARTS_ABANDONED,
        CARTS_CREATED,
        CACHE_MISMATCHES,
        CLAIM_REREADS,
        PUBLISHED,
        SAGA_CONFLICTS,
        SAGAS_RESUMED,
    ] {
        metrics::counter!(name).increment(0);
    }
    metrics::gauge!(SAGAS_NEEDING_ATTENTION).increment(0.0);
    metrics::gauge!(LAG).increment(0.0);
}
