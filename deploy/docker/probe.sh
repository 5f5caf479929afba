#!/bin/bash
# flashsale-probe PORT PATH: exit 0 when http://127.0.0.1:PORT/PATH answers 200, else 1.
# The images' HEALTHCHECK: plain bash (/dev/tcp), so the image needs no curl or wget.
set -u
port=${1:?usage: flashsale-probe PORT PATH}
path=${2:?usage: flashsale-probe PORT PATH}
exec 3<>"/dev/tcp/127.0.0.1/$port" || exit 1
printf 'GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' "$path" >&3
# The status line: "HTTP/1.x 200 OK".
IFS=' ' read -r -t 3 _ status _ <&3 || exit 1
[[ $status == 200 ]]
