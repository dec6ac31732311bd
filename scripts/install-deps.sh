#!/usr/bin/env bash
# Installs the system packages that building and testing replytime need, and only
# those that are missing: PostgreSQL 15 (the test harness starts throwaway
# clusters), librocksdb-dev (the rocksdb crate links Debian's library, see
# .cargo/config.toml), libclang-dev (bindgen), prometheus (promtool checks the
# alert rules), systemd (systemd-analyze verifies the unit; nothing runs as PID 1),
# build-essential, pkg-config, openssl (test TLS certificates),
# curl and python3 (the demo script), chromium with a font (the analytics test
# renders the HTML report in headless Chromium), and psycopg[binary] from PyPI
# (the TLS tests' libpq 16+).
# Idempotent; runs apt-get as root, through sudo otherwise.
set -euo pipefail

log() { printf 'install-deps: %s\n' "$*"; }

installed() {
    dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'
}

has_candidate() {
    apt-cache policy "$1" 2>/dev/null | grep -q 'Candidate: [0-9]'
}

if [ "$(id -u)" -eq 0 ]; then
    as_root=()
elif command -v sudo >/dev/null 2>&1; then
    as_root=(sudo)
else
    as_root=()
fi

missing=()
for pkg in librocksdb-dev libclang-dev prometheus systemd build-essential pkg-config openssl ca-certificates curl python3 python3-pip chromium fonts-dejavu-core; do
    if installed "$pkg"; then
        log "$pkg: already installed"
    else
        missing+=("$pkg")
    fi
done

# Any installed PostgreSQL server will do for the harness; 15 is the one we target.
if installed postgresql-15 || compgen -G '/usr/lib/postgresql/*/bin/postgres' >/dev/null; then
    log "postgresql server: already installed"
else
    missing+=(postgresql-15)
fi

# psycopg's binary wheel carries a libpq 16+: the TLS tests' reference for
# sslrootcert=system, which Debian's libpq 15 does not know.
install_psycopg() {
    if python3 -c 'import psycopg' 2>/dev/null; then
        log "psycopg: already installed"
        return
    fi
    log "installing psycopg[binary] (pip)"
    python3 -m pip install -q 'psycopg[binary]' 2>/dev/null ||
        python3 -m pip install -q --break-system-packages 'psycopg[binary]' ||
        log "psycopg could not be installed; tests/tls.rs's sslrootcert=system test will say so" >&2
}

if [ "${#missing[@]}" -eq 0 ]; then
    log "nothing to install"
    install_psycopg
    exit 0
fi

if [ "$(id -u)" -ne 0 ] && [ "${#as_root[@]}" -eq 0 ]; then
    log "missing: ${missing[*]}; run this script as root or install sudo" >&2
    exit 1
fi

log "updating the package lists"
"${as_root[@]}" apt-get update -q

# Fall back to the distribution's default server where 15 is not packaged.
for i in "${!missing[@]}"; do
    if [ "${missing[$i]}" = postgresql-15 ] && ! has_candidate postgresql-15; then
        log "postgresql-15 is not packaged here; installing the default postgresql"
        missing[i]=postgresql
    fi
done

log "installing: ${missing[*]}"
"${as_root[@]}" env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -q --no-install-recommends "${missing[@]}"
install_psycopg
log "done"
