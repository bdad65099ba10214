#!/bin/sh
# As the official redis image: the server as the redis user, protected mode off, data in /data.
set -eu
chown redis:redis /data
if [ "${1:-}" = redis-server ]; then
    shift
    set -- redis-server --protected-mode no --dir /data "$@"
fi
exec runuser -u redis -- "$@"
