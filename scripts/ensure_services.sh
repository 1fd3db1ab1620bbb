#!/usr/bin/env bash
# Make sure PostgreSQL (127.0.0.1:5432, user postgres, trust auth) and Redis (127.0.0.1:6379) answer.
# Idempotent: a no-op when both already answer; starts them when installed but down; installs them
# (Debian packages) when missing. Never stops anything: other test runs on this machine share them.
# Also installs (never starts) the nginx and pgbouncer binaries: the cluster tests run private ones.
#
#   scripts/ensure_services.sh
# env: ENSURE_SERVICES_TIMEOUT_S (default 60); ENSURE_PG_PORT / ENSURE_REDIS_PORT change the ports checked
# (and the port a started Redis gets), for trying the script without touching the shared services.
set -euo pipefail

PG_HOST=127.0.0.1
PG_PORT="${ENSURE_PG_PORT:-5432}"
REDIS_HOST=127.0.0.1
REDIS_PORT="${ENSURE_REDIS_PORT:-6379}"
TIMEOUT_S="${ENSURE_SERVICES_TIMEOUT_S:-60}"

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
        echo "ensure_services: not root and no sudo; cannot start or install services" >&2
    fi
fi

log() { echo "ensure_services: $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

pg_answers() {
    command -v pg_isready >/dev/null 2>&1 && pg_isready -q -h "$PG_HOST" -p "$PG_PORT" -U postgres
}
redis_answers() {
    command -v redis-cli >/dev/null 2>&1 &&
        [ "$(redis-cli -h "$REDIS_HOST" -p "$REDIS_PORT" ping 2>/dev/null)" = "PONG" ]
}

APT_UPDATED=0
apt_install() {
    if [ "$APT_UPDATED" -eq 0 ]; then
        log "apt-get update"
        $SUDO apt-get update -qq
        APT_UPDATED=1
    fi
    log "apt-get install $*"
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

# Newest installed PostgreSQL major version (the directory names under /etc/postgresql).
pg_version() {
    ls /etc/postgresql 2>/dev/null | sort -V | tail -n 1
}

# A fresh install only trusts local sockets by peer; tests connect over TCP as postgres without a password.
pg_trust_loopback() {
    local hba="/etc/postgresql/$1/main/pg_hba.conf"
    if ! $SUDO grep -Eq '^host\s+all\s+all\s+127\.0\.0\.1/32\s+trust' "$hba"; then
        log "trusting 127.0.0.1 and ::1 in $hba"
        # Prepended: pg_hba.conf is first-match, so these must come before the default scram lines.
        $SUDO sed -i '1i host all all 127.0.0.1/32 trust\nhost all all ::1/128 trust' "$hba"
    fi
}

ensure_postgres() {
    pg_answers && { log "PostgreSQL answers on $PG_HOST:$PG_PORT"; return; }
    local fresh=0
    if ! command -v pg_ctlcluster >/dev/null 2>&1 || [ -z "$(pg_version)" ]; then
        apt_install postgresql
        fresh=1
    fi
    local version
    version="$(pg_version)"
    [ -n "$version" ] || die "PostgreSQL installed but no version under /etc/postgresql"
    if [ ! -d "/etc/postgresql/$version/main" ]; then
        log "creating cluster $version/main"
        $SUDO pg_createcluster "$version" main
    fi
    [ "$fresh" -eq 1 ] && pg_trust_loopback "$version"
    log "starting PostgreSQL $version/main"
    # "already running" is fine (it may be listening elsewhere); the wait below is the real check.
    $SUDO pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
    if [ "$fresh" -eq 1 ]; then
        $SUDO pg_ctlcluster --skip-systemctl-redirect "$version" main reload || true
    fi
}

ensure_redis() {
    redis_answers && { log "Redis answers on $REDIS_HOST:$REDIS_PORT"; return; }
    command -v redis-server >/dev/null 2>&1 || apt_install redis-server
    $SUDO mkdir -p /var/lib/redis /var/log/redis
    log "starting Redis"
    # No persistence: the CI Redis holds only leases, streams and caches.
    $SUDO redis-server --daemonize yes --bind 127.0.0.1 -::1 --port "$REDIS_PORT" --save "" \
        --appendonly no --dir /var/lib/redis --logfile /var/log/redis/ci.log
}

# Binaries the cluster tests start privately (on free ports, with their own configs). Installed with
# services kept from starting: a system-wide nginx on :80 or PgBouncer on :6432 is not wanted here.
ensure_binary() {
    local binary="$1" package="$2"
    if command -v "$binary" >/dev/null 2>&1 || [ -x "/usr/sbin/$binary" ]; then return; fi
    local policy=/usr/sbin/policy-rc.d added_policy=0 status=0
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$policy" >/dev/null
        $SUDO chmod +x "$policy"
        added_policy=1
    fi
    apt_install "$package" || status=$?
    if [ "$added_policy" -eq 1 ]; then $SUDO rm -f "$policy"; fi
    [ "$status" -eq 0 ] || die "could not install $package"
    log "installed $package"
}

wait_for() {
    local name="$1" check="$2" logs="$3" deadline=$((SECONDS + TIMEOUT_S))
    until "$check"; do
        [ "$SECONDS" -lt "$deadline" ] || die "$name does not answer after ${TIMEOUT_S}s; see $logs"
        sleep 0.5
    done
}

ensure_postgres
ensure_redis
ensure_binary nginx nginx
ensure_binary pgbouncer pgbouncer
ensure_binary bwrap bubblewrap  # the custom tools' sandbox (R23); the security tests run real bwrap
# As root the sandbox runs tools as an unprivileged uid, which cannot read an interpreter under /root (pyenv's):
# the test servers then give tools the system Python (tests/servers.py), so make sure there is one.
if [ "$(id -u)" -eq 0 ] && [ ! -x /usr/bin/python3 ]; then apt_install python3; fi
wait_for "PostgreSQL on $PG_HOST:$PG_PORT" pg_answers "/var/log/postgresql/"
wait_for "Redis on $REDIS_HOST:$REDIS_PORT" redis_answers "/var/log/redis/ci.log"
# Answering is not enough: the tests log in over TCP as postgres with no password.
if command -v psql >/dev/null 2>&1 && ! psql -w -h "$PG_HOST" -p "$PG_PORT" -U postgres -tAc 'select 1' >/dev/null 2>&1; then
    log "WARNING: PostgreSQL answers but 'psql -h $PG_HOST -U postgres' without a password fails;" \
        "add 'host all all 127.0.0.1/32 trust' to pg_hba.conf"
fi
log "PostgreSQL and Redis are up"
