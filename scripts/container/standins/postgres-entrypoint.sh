#!/bin/sh
# What the official postgres image's entrypoint does, in short: a new cluster in $PGDATA on first
# start (superuser $POSTGRES_USER with $POSTGRES_PASSWORD, database $POSTGRES_DB), then the server
# as the postgres user, listening on every address with password authentication.
set -eu
: "${POSTGRES_USER:=postgres}" "${POSTGRES_DB:=$POSTGRES_USER}"
mkdir -p "$PGDATA" /var/run/postgresql
chown postgres:postgres "$PGDATA" /var/run/postgresql
chmod 700 "$PGDATA"
if [ ! -s "$PGDATA/PG_VERSION" ]; then
    printf '%s\n' "${POSTGRES_PASSWORD:?set POSTGRES_PASSWORD}" > /tmp/pwfile
    chown postgres /tmp/pwfile
    runuser -u postgres -- initdb --username="$POSTGRES_USER" --pwfile=/tmp/pwfile \
        --auth-local=trust --auth-host=scram-sha-256 -D "$PGDATA" >/dev/null
    rm -f /tmp/pwfile
    echo 'host all all all scram-sha-256' >> "$PGDATA/pg_hba.conf"
    if [ "$POSTGRES_DB" != postgres ]; then
        runuser -u postgres -- postgres --single -D "$PGDATA" postgres <<SQL >/dev/null
CREATE DATABASE "$POSTGRES_DB" OWNER "$POSTGRES_USER";
SQL
    fi
fi
[ "${1:-}" = postgres ] && shift && set -- postgres -c listen_addresses='*' "$@"
exec runuser -u postgres -- "$@"
