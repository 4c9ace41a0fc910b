#!/usr/bin/env bash
# Makes a fresh machine ready for the test suite. Safe to run again.
# With --demo, only what `make demo` needs: Prosody (the demo builds
# Dendrite itself, saying so, and runs on SQLite).
set -euo pipefail
demo_only=false
[ "${1:-}" = "--demo" ] && demo_only=true

as_root() {
	if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

# PostgreSQL: the database tests run on it as well as on SQLite.
if ! $demo_only && ! pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then
	if command -v pg_ctlcluster >/dev/null 2>&1 && [ -d /etc/postgresql ]; then
		echo "prerequisites: starting PostgreSQL"
		as_root pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start || true
	fi
	for _ in $(seq 1 30); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 1; done
	pg_isready -h 127.0.0.1 -p 5432 || { echo "prerequisites: PostgreSQL is not reachable on 127.0.0.1:5432" >&2; exit 1; }
fi

# Prosody: the XMPP connector's tests run against a real XMPP server.
if ! command -v prosody >/dev/null 2>&1; then
	echo "prerequisites: installing prosody"
	export DEBIAN_FRONTEND=noninteractive
	as_root apt-get update -qq
	as_root apt-get install -y -qq prosody >/dev/null
	# The package starts a system instance; the tests run their own.
	as_root pkill -x prosody 2>/dev/null || true
	as_root pkill -f '/usr/bin/prosody' 2>/dev/null || true
fi

# The encrypted-DM tests use an independent E2EE client as the user: Debian's
# matrix-nio with python-olm, run with the system python3.
if ! $demo_only && ! /usr/bin/python3 -c 'import nio, olm' >/dev/null 2>&1; then
	echo "prerequisites: installing python3-matrix-nio and python3-olm"
	export DEBIAN_FRONTEND=noninteractive
	as_root apt-get update -qq
	as_root apt-get install -y -qq python3-matrix-nio python3-olm >/dev/null
fi

# Dendrite: built once from the module proxy and cached; the test harness
# would build it too, this only moves the wait out of the first test.
$demo_only && exit 0
go run ./internal/tesths/cmd/build-dendrite
