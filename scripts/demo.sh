#!/usr/bin/env bash
# `make demo`: a whole local stack (Dendrite, Prosody, the bridge, the XMPP
# connector) on loopback with SQLite. Expects `make build` to have run.
# DEMO_EXIT_AFTER_PROOF=1 stops it once the proof is shown (for tests/CI).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/prerequisites.sh --demo
# exec: Ctrl-C then reaches the demo alone, which stops its servers in order.
exec ./bin/dmbridge-demo "$@"
