#!/usr/bin/env bash
# The whole test suite: formatting, lints, Rust tests, then the end-to-end tests with the official
# clients. It installs what it needs itself: npm packages pinned in tests/js/package-lock.json.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== cargo test"
cargo test --workspace --locked
echo "== build the example servers"
cargo build --workspace --bins --locked

echo "== Chromium for the browser tests (Debian's package)"
if [ ! -x "${CHROMIUM:-/usr/bin/chromium}" ]; then
  sudo_cmd=""
  if [ "$(id -u)" != "0" ]; then sudo_cmd="sudo"; fi
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq chromium > /dev/null
fi

echo "== npm ci (tests/js)"
(cd tests/js && npm ci --no-audit --no-fund --loglevel=error)
echo "== end-to-end tests with the official clients"
# --test-force-exit: a client library's lingering handle must not keep the run alive.
(cd tests/js && timeout 900 node --test --test-concurrency=1 --test-timeout=60000 --test-force-exit .)

echo "== python venv (tests/python/requirements.txt)"
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/pip install --quiet --disable-pip-version-check -r tests/python/requirements.txt
echo "== end-to-end tests with python-socketio"
timeout 600 .venv/bin/python -m pytest -q tests/python
