#!/usr/bin/env bash
# Make sure everything `make test` needs is here and running:
#   - the cargo toolchain and cargo-nextest,
#   - PostgreSQL (127.0.0.1:5432, user postgres, trust auth) with databases flashsale and flashsale_test,
#   - Redis (127.0.0.1:6379),
#   - RabbitMQ (127.0.0.1:5672, guest/guest).
# A stopped service is started; a missing one is installed with apt-get when we are root (else we say how).
# Idempotent, and fast (well under 2 s) when everything is already up.
#
# Hosts and ports are the defaults only, on purpose: the tests and config/default.toml use them.
# Environment: FLASHSALE_SKIP_SERVICES=1 skips every check (for machines where someone else provides them).
set -euo pipefail

# rabbitmq-server, pg_ctlcluster & co live in sbin, which a CI environment may not have on PATH.
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"

readonly HOST=127.0.0.1
readonly PG_PORT=5432 REDIS_PORT=6379 AMQP_PORT=5672
readonly WAIT_SECS=60
readonly DATABASES=(flashsale flashsale_test)

say() { echo "flashsale: $*"; }
die() { echo "flashsale: ERROR: $*" >&2; exit 1; }

if [[ "${FLASHSALE_SKIP_SERVICES:-0}" == 1 ]]; then
    say "FLASHSALE_SKIP_SERVICES=1, not checking toolchain or services"
    exit 0
fi

can_apt() { [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null 2>&1; }

APT_UPDATED=0
# apt_install PKG REASON: install a Debian package, or exit naming it and the command when we cannot.
apt_install() {
    local pkg=$1 reason=$2
    if ! can_apt; then
        die "$pkg is not installed ($reason); install it with: sudo apt-get update && sudo apt-get install -y $pkg"
    fi
    say "installing $pkg with apt-get ($reason)"
    # Keep the package's maintainer scripts from starting the service their own way: we start it below
    # with the same command as every other path, so there is one way the services run.
    local policy=/usr/sbin/policy-rc.d added_policy=0
    if [[ ! -e $policy ]]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy" && added_policy=1
    fi
    local rc=0
    {
        if [[ $APT_UPDATED == 0 ]]; then
            DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null && APT_UPDATED=1
        fi
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$pkg" >/dev/null
    } || rc=$?
    [[ $added_policy == 1 ]] && rm -f "$policy"
    [[ $rc == 0 ]] || die "apt-get install -y $pkg failed (exit $rc)"
}

# tcp_open PORT: true when something accepts a TCP connection there (bash's /dev/tcp, no client needed).
tcp_open() { timeout 2 bash -c "exec 3<>/dev/tcp/$HOST/$1" 2>/dev/null; }

# wait_for NAME CHECK...: poll CHECK until it succeeds or WAIT_SECS pass.
wait_for() {
    local name=$1; shift
    local deadline=$((SECONDS + WAIT_SECS))
    until "$@"; do
        ((SECONDS < deadline)) || return 1
        sleep 0.5
    done
    say "$name is up"
}

# ---------------------------------------------------------------------------------------------------------
# Toolchain
if ! command -v cargo >/dev/null 2>&1; then
    if [[ -x "$HOME/.cargo/bin/cargo" ]]; then
        die "cargo is installed in $HOME/.cargo/bin but that is not on PATH; run: export PATH=\"\$HOME/.cargo/bin:\$PATH\""
    fi
    die "cargo (the Rust toolchain) is missing and cannot be installed by this script; install it with rustup (https://rustup.rs)"
fi
if ! cargo nextest --version >/dev/null 2>&1; then
    say "installing cargo-nextest with cargo install (missing)"
    cargo install cargo-nextest --locked
fi

# ---------------------------------------------------------------------------------------------------------
# PostgreSQL
pg_ready() {
    if command -v pg_isready >/dev/null 2>&1; then
        # Unlike a bare TCP connect, this says no while the server is still starting or recovering.
        pg_isready -q -h "$HOST" -p "$PG_PORT" -t 2
    else
        tcp_open "$PG_PORT"
    fi
}
# shellcheck disable=SC2012 # version directory names are plain numbers
pg_version() { ls /etc/postgresql 2>/dev/null | sort -V | tail -n 1; }
pg_installed() {
    local v
    v=$(pg_version)
    command -v pg_ctlcluster >/dev/null 2>&1 && [[ -n $v && -d /etc/postgresql/$v/main ]]
}

ensure_postgres() {
    pg_ready && return 0
    if ! pg_installed; then
        apt_install postgresql "missing"
        pg_installed || die "postgresql was installed but no cluster exists under /etc/postgresql/*/main"
        # A fresh Debian cluster asks for a password over TCP; the tests connect as postgres without one,
        # like the machines this project runs on (trust auth on loopback only).
        local hba
        hba="/etc/postgresql/$(pg_version)/main/pg_hba.conf"
        sed -i -E 's/^(host[[:space:]]+all[[:space:]]+all[[:space:]]+(127\.0\.0\.1\/32|::1\/128)[[:space:]]+).*/\1trust/' "$hba"
    fi
    local v
    v=$(pg_version)
    # The cluster may be up but not accepting connections yet (starting, recovering): starting it again
    # would fail with "already running", so only start it when pg_ctlcluster says it is down.
    if ! pg_ctlcluster --skip-systemctl-redirect "$v" main status >/dev/null 2>&1; then
        say "starting postgresql $v/main"
        pg_ctlcluster --skip-systemctl-redirect "$v" main start ||
            die "could not start postgresql; see /var/log/postgresql/postgresql-$v-main.log"
    fi
    wait_for postgresql pg_ready ||
        die "postgresql not accepting connections on $HOST:$PG_PORT after ${WAIT_SECS}s; see /var/log/postgresql/postgresql-$v-main.log"
}

ensure_databases() {
    if ! command -v psql >/dev/null 2>&1; then
        apt_install postgresql-client "psql missing"
    fi
    # -w: never prompt for a password (CI has no stdin); fail instead.
    local psql=(psql -X -w -q -h "$HOST" -p "$PG_PORT" -U postgres -d postgres -v ON_ERROR_STOP=1)
    local db exists
    for db in "${DATABASES[@]}"; do
        exists=$("${psql[@]}" -tAc "SELECT 1 FROM pg_database WHERE datname='$db'") ||
            die "cannot run psql as postgres on $HOST:$PG_PORT (the tests need trust auth for user postgres)"
        [[ $exists == 1 ]] && continue
        say "creating database $db"
        # Tolerate a concurrent run creating it first: check again before failing.
        "${psql[@]}" -c "CREATE DATABASE $db" >/dev/null 2>&1 ||
            [[ $("${psql[@]}" -tAc "SELECT 1 FROM pg_database WHERE datname='$db'") == 1 ]] ||
            die "could not create database $db"
    done
}

# ---------------------------------------------------------------------------------------------------------
# Redis
redis_ready() {
    if command -v redis-cli >/dev/null 2>&1; then
        [[ $(timeout 2 redis-cli -h "$HOST" -p "$REDIS_PORT" ping 2>/dev/null) == PONG ]]
    else
        tcp_open "$REDIS_PORT"
    fi
}

ensure_redis() {
    redis_ready && return 0
    command -v redis-server >/dev/null 2>&1 || apt_install redis-server "missing"
    mkdir -p /var/lib/redis /var/log/redis
    say "starting redis"
    # Nothing kept on disk: the tests' state is throwaway.
    redis-server --daemonize yes --bind 127.0.0.1 -::1 --port "$REDIS_PORT" --save "" --appendonly no \
        --dir /var/lib/redis --logfile /var/log/redis/ci.log >/dev/null ||
        die "could not start redis; see /var/log/redis/ci.log"
    wait_for redis redis_ready || die "redis not answering PING on $HOST:$REDIS_PORT after ${WAIT_SECS}s; see /var/log/redis/ci.log"
}

# ---------------------------------------------------------------------------------------------------------
# RabbitMQ
# rabbitmqctl/rabbitmq-diagnostics take a second or more each (they boot an Erlang VM), so readiness is an
# AMQP handshake instead: send the protocol header and expect the first byte of Connection.Start (frame
# type 1). The listener only opens once the broker has booted, so this also means "ready".
# shellcheck disable=SC2016 # the inner script gets host and port as $0 and $1
amqp_ready() {
    timeout 3 bash -c '
        exec 3<>"/dev/tcp/$0/$1" || exit 1
        printf "AMQP\x00\x00\x09\x01" >&3
        IFS= read -r -N 1 -t 2 byte <&3 && [[ $byte == $'"'"'\x01'"'"' ]]
    ' "$HOST" "$AMQP_PORT" 2>/dev/null
}

rabbit_node_running() {
    # A node that is still booting has its VM running but no listener yet; starting a second one would fail.
    if command -v pgrep >/dev/null 2>&1; then
        pgrep -u rabbitmq -x beam.smp >/dev/null 2>&1
    else
        rabbitmq-diagnostics -q check_running >/dev/null 2>&1
    fi
}

# Quorum queues hold file descriptors, and the usual soft limit of 1024 runs out under parallel tests. The broker
# inherits our limit, so raise it to the hard limit (a fixed 65536 fails wherever the hard limit is lower). As
# root, Debian's rabbitmq-server wrapper switches to the rabbitmq user with `su`, whose PAM session resets the
# soft limit to 1024 again; setpriv changes user without a PAM session, so the raised limit reaches the broker.
# The fallback (no setpriv, not root, or a non-Debian layout) is the plain command.
readonly RABBIT_HOME=/var/lib/rabbitmq RABBIT_BIN=/usr/lib/rabbitmq/bin/rabbitmq-server
start_rabbitmq() {
    ulimit -n "$(ulimit -Hn)" 2>/dev/null || ulimit -n 65536 2>/dev/null || true
    if [[ "$(id -u)" == 0 && -x $RABBIT_BIN && -d $RABBIT_HOME ]] &&
        command -v setpriv >/dev/null 2>&1 && id rabbitmq >/dev/null 2>&1; then
        # The same as the wrapper's `su rabbitmq -c`, from the broker's home directory.
        # shellcheck disable=SC2016 # $0 and $1 expand in the inner shell
        if setpriv --reuid=rabbitmq --regid=rabbitmq --init-groups env HOME="$RABBIT_HOME" \
            sh -c 'cd "$0" && exec "$1" -detached' "$RABBIT_HOME" "$RABBIT_BIN"; then
            return 0
        fi
        # A node that did get going must not be started twice.
        rabbit_node_running && return 0
        say "starting rabbitmq through setpriv failed; trying rabbitmq-server (its file limit may be 1024)"
    fi
    rabbitmq-server -detached
}

ensure_rabbitmq() {
    amqp_ready && return 0
    if tcp_open "$AMQP_PORT"; then
        # Something listens but does not speak AMQP 0-9-1 to us: ask the node itself (slow, rare path).
        rabbitmq-diagnostics -q check_running >/dev/null 2>&1 ||
            die "port $AMQP_PORT is open but RabbitMQ is not running there (rabbitmq-diagnostics check_running failed)"
    else
        command -v rabbitmq-server >/dev/null 2>&1 || apt_install rabbitmq-server "missing"
        if rabbit_node_running; then
            say "rabbitmq node is booting, waiting"
        else
            say "starting rabbitmq"
            start_rabbitmq || die "could not start rabbitmq; see /var/log/rabbitmq/"
        fi
    fi
    wait_for rabbitmq amqp_ready ||
        die "rabbitmq not accepting AMQP on $HOST:$AMQP_PORT after ${WAIT_SECS}s; see /var/log/rabbitmq/"
}

# ---------------------------------------------------------------------------------------------------------
ensure_postgres
ensure_databases
say "postgresql ok ($HOST:$PG_PORT, databases ${DATABASES[*]})"
ensure_redis
say "redis ok ($HOST:$REDIS_PORT)"
ensure_rabbitmq
say "rabbitmq ok ($HOST:$AMQP_PORT)"
