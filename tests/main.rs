//! End-to-end tests: the real `commerce` binary, spawned on a random port
//! against a fresh SQLite directory or a fresh PostgreSQL schema, driven
//! over HTTP; and the storage contract suite, run unchanged against both
//! backends.
//!
//! PostgreSQL is required (127.0.0.1:5432, user postgres, database test,
//! or `TEST_DATABASE_URL`): the tests that need it fail loudly when it is
//! unreachable, they are never skipped. Set `TEST_LOG=1` to see the
//! service's logs.

mod api;
mod bench;
mod browser;
mod cart;
mod console;
mod containment;
mod helpers;
mod inventory;
mod lifecycle;
mod money;
mod ops;
mod outbox;
mod payment;
mod plugins;
mod redis_cluster;
mod replicas;
mod rollout;
mod saga;
mod scaffold;
mod store_contract;
mod what_if;
