#!/usr/bin/env bash
# Stops what an earlier cluster test left running when its process was killed before it could tear its
# clusters down (a nextest timeout SIGKILLs it): RabbitMQ nodes named fsc*@localhost (the test kit's
# RabbitCluster) and redis-server processes of the test kit's RedisCluster (their data under
# $TMPDIR/flashsale-redis-cluster-*). Never the machine's own services. `make test-cluster` runs it first.
set -uo pipefail
# Processes come and go while /proc is walked: their vanishing is not an error.
exec 2>/dev/null
tmp=${TMPDIR:-/tmp}
swept=0
for environ in /proc/[0-9]*/environ; do
    pid=${environ#/proc/}; pid=${pid%/environ}
    node=$(tr '\0' '\n' <"$environ" 2>/dev/null | sed -n 's/^RABBITMQ_NODENAME=\(fsc[0-9a-f]*[abc]@localhost\)$/\1/p')
    cmd=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null)
    # redis-server rewrites its title; its working directory is its --dir.
    cwd=$(readlink "/proc/$pid/cwd" 2>/dev/null)
    if [[ -n "$node" && "$cmd" == *beam.smp* ]] ||
        [[ "$cmd" == redis-server* && "$cwd" == "$tmp/flashsale-redis-cluster-"* ]]; then
        kill -9 "$pid" 2>/dev/null && swept=$((swept + 1))
    fi
done
rm -rf "$tmp"/flashsale-rabbit-fsc* 2>/dev/null
(( swept > 0 )) && echo "flashsale: stopped $swept process(es) left by earlier cluster tests"
exit 0
