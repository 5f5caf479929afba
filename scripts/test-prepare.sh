#!/usr/bin/env bash
# nextest's setup script (.config/nextest.toml): prepare the shared test database once per run
# (crates/testkit/src/prepare.rs). Runs the binary that the build of the integration tests already made
# (cargo builds a package's binaries for its integration tests), so the setup never compiles: `cargo run -p`
# resolves the workspace's features differently and rebuilt a dozen crates, past the setup's time limit on a
# busy 2-core CI machine. Falls back to cargo run when the binary is missing.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bin="${CARGO_TARGET_DIR:-target}/debug/flashsale-test-prepare"
if [[ -x $bin ]]; then
    exec "$bin"
fi
exec cargo run --quiet --package flashsale-testkit --bin flashsale-test-prepare
