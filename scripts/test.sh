#!/usr/bin/env bash
# The whole test suite: formatting, lints, Rust tests, then the tests with the official clients.
# It installs what it needs itself (pinned npm packages from the lockfile).
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== cargo test"
cargo test --workspace --locked
