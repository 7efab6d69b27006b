#!/bin/sh
# Run by the MariaDB image on its first start (docker-entrypoint-initdb.d):
# creates Keyline's state database and gives MARIADB_USER (the user Trillian
# uses too) all rights on it. Keyline creates and migrates its tables itself
# (directory/sqlstate). See docs/operations-scaleout.md.
set -eu
mariadb -uroot -p"$MARIADB_ROOT_PASSWORD" <<SQL
CREATE DATABASE IF NOT EXISTS keyline;
GRANT ALL ON keyline.* TO '$MARIADB_USER'@'%';
SQL
