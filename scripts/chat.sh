#!/usr/bin/env bash
# Starts the chat example on http://localhost:3000 (PORT to change it), with its SQLite database in
# examples/chat/chat.sqlite. Installs the browser client bundle it serves from npm (pinned) first.
set -euo pipefail
cd "$(dirname "$0")/../examples/chat"
npm ci --no-audit --no-fund --loglevel=error
exec cargo run -p chat
