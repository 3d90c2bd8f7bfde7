#!/usr/bin/env bash
# Runs the whole test suite: unit tests, the storage contract suite and the
# end-to-end tests, on SQLite and on PostgreSQL, and the API contract
# check (scripts/api-contract.sh: schemathesis against the OpenAPI document).
#
# PostgreSQL must answer at TEST_DATABASE_URL (default
# postgres://postgres@127.0.0.1:5432/test). If it does not and a local
# cluster is installed, this script starts it; the PostgreSQL tests are
# never skipped: if the database cannot be reached, they fail.
set -euo pipefail
cd "$(dirname "$0")/.."

"$(dirname "$0")/services.sh"
# Chromium and chromedriver for the console's browser tests (tests/console.rs).
"$(dirname "$0")/browser.sh"
cargo test --workspace --locked "$@"
# The example plugins' own unit tests (their config parsers), natively.
cargo test --locked --manifest-path plugins/Cargo.toml --target-dir target/plugins \
  -p config-json -p bulk-discount -p quantity-rules
# The service against its own OpenAPI document (schemathesis, both roles).
"$(dirname "$0")/api-contract.sh"
