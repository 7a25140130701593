#!/usr/bin/env bash
# Installs the system packages the project needs, only those that are missing:
# Java 17 (Kafka, S3Proxy, Spark), Maven (resolves the jars), PostgreSQL (the mirror), python3-venv,
# Chromium (the app's browser tests drive it headless through Playwright), curl and kcat (the tests' own
# HTTP-stream-to-Kafka pipe, as Meetup's users wrote it: curl -sN URL | kcat -P).
# Uses apt-get (Debian/Ubuntu); as non-root it goes through sudo.
set -euo pipefail

need=()
command -v java >/dev/null 2>&1 || need+=(openjdk-17-jre-headless)
command -v mvn >/dev/null 2>&1 || need+=(maven)
ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || need+=(postgresql)
python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || need+=(python3-venv)
command -v runuser >/dev/null 2>&1 || need+=(util-linux)
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v curl >/dev/null 2>&1 || need+=(curl)
command -v kcat >/dev/null 2>&1 || need+=(kcat)

if [ ${#need[@]} -eq 0 ]; then
  echo "system: java, maven, postgresql, python3-venv, chromium, curl and kcat already installed"
  exit 0
fi

sudo=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null 2>&1 || { echo "system: need root (or sudo) to install: ${need[*]}" >&2; exit 1; }
  sudo="sudo"
fi
echo "system: installing ${need[*]}"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${need[@]}"
# Debian's postgresql package starts a cluster of its own on 5432; the project runs its own on
# POSTGRES_PORT, so that one is not needed (it may also not be startable without systemd).
