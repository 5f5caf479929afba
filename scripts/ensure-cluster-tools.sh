#!/usr/bin/env bash
# What `make test-cluster` needs beyond `scripts/ensure-services.sh` (which installs and starts Redis and
# RabbitMQ): redis-cli (to create a Redis Cluster), and, for the extra RabbitMQ nodes, root (they run as the
# `rabbitmq` user through runuser, so that they share its Erlang cookie) and that cookie in the rabbitmq
# user's home. Stops with a message naming what is missing.
set -euo pipefail
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"

say() { echo "flashsale: $*"; }
die() { echo "flashsale: ERROR: $*" >&2; exit 1; }

if ! command -v redis-cli >/dev/null 2>&1; then
    if [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null 2>&1; then
        say "installing redis-tools with apt-get (redis-cli creates the test Redis Cluster)"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q redis-tools >/dev/null
    else
        die "redis-cli is missing (it creates the test Redis Cluster): sudo apt-get install -y redis-tools"
    fi
fi
for tool in redis-server rabbitmq-server rabbitmqctl runuser; do
    command -v "$tool" >/dev/null 2>&1 || die "$tool is missing (run scripts/ensure-services.sh first; runuser is in util-linux)"
done
[[ "$(id -u)" == 0 ]] || die "the cluster tests start RabbitMQ nodes as the rabbitmq user with runuser, which needs root"
home=$(getent passwd rabbitmq | cut -d: -f6) || die "there is no rabbitmq user (apt-get install -y rabbitmq-server makes it)"
[[ -r "$home/.erlang.cookie" ]] || die "$home/.erlang.cookie is missing: start RabbitMQ once (scripts/ensure-services.sh) so that it writes it"
