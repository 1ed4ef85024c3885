#!/bin/bash
# Runs once, on an empty data directory (official postgres image, /docker-entrypoint-initdb.d).
# One role and one database per client: MLflow (tracking + registry) and Optuna (the tuning study storage).
# Passwords come from the equiseg-postgres secret through the environment; psql quotes them (:'var').
set -euo pipefail
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
  -v mlflow_pw="$MLFLOW_DB_PASSWORD" -v optuna_pw="$OPTUNA_DB_PASSWORD" <<'SQL'
CREATE ROLE mlflow LOGIN PASSWORD :'mlflow_pw';
CREATE DATABASE mlflow OWNER mlflow;
CREATE ROLE optuna LOGIN PASSWORD :'optuna_pw';
CREATE DATABASE optuna OWNER optuna;
SQL
