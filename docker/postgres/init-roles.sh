#!/bin/bash
# Database roles of the malaria platform. The postgres image runs this once, as the superuser,
# when the data volume is first created (docker-entrypoint-initdb.d).
#
#   malaria_owner  owns the database, its schema and every table; `manage.py migrate` runs as it.
#   malaria_app    web, worker and beat: reads and writes rows, owns nothing. It cannot drop or
#                  disable the audit trail's triggers (only a table's owner or a superuser can),
#                  cannot TRUNCATE, and cannot set session_replication_role (superuser only).
#
# An existing volume (created before these roles) keeps running as before; see README,
# "The audit trail", for the same statements to run by hand.
set -euo pipefail

psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
    -v owner_password="${MALARIA_DB_OWNER_PASSWORD:?}" \
    -v app_password="${MALARIA_DB_APP_PASSWORD:?}" <<'SQL'
CREATE ROLE malaria_owner LOGIN PASSWORD :'owner_password';
CREATE ROLE malaria_app LOGIN PASSWORD :'app_password';
CREATE DATABASE malaria OWNER malaria_owner;
\connect malaria
-- The public schema belongs to the database owner; nobody else may create objects in it.
REVOKE ALL ON SCHEMA public FROM PUBLIC;
GRANT USAGE ON SCHEMA public TO malaria_app;
-- Every table and sequence the owner's migrations create: rows only, no TRUNCATE, no DDL.
ALTER DEFAULT PRIVILEGES FOR ROLE malaria_owner IN SCHEMA public
    GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO malaria_app;
ALTER DEFAULT PRIVILEGES FOR ROLE malaria_owner IN SCHEMA public
    GRANT USAGE, SELECT ON SEQUENCES TO malaria_app;
SQL
