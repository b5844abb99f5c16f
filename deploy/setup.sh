#!/usr/bin/env bash
# Set up this checkout on Debian 12: the Debian packages headrace runs with (ZooKeeper, and
# kcat for the interoperability tests), then a virtualenv in .venv with headrace installed.
#   bash deploy/setup.sh           # to run headrace
#   bash deploy/setup.sh --test    # also the test dependencies (and chromium with its driver,
#                                  # for the dashboard's browser tests; Node.js and the pinned
#                                  # kafkajs in tests/js/node_modules, for its tests)
#   bash deploy/setup.sh --peers   # also the peers of bench/paper.py (RabbitMQ, ActiveMQ, their
#                                  # C and Java clients) and the bench extra (matplotlib)
set -euo pipefail
cd "$(dirname "$0")/.."

extras=""
peers=0
tests=0
case "${1:-}" in
    --test) extras="[test]"; tests=1 ;;
    --peers) extras="[bench]"; peers=1 ;;
esac

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

packages=(zookeeper kcat)
if [ "$tests" -eq 1 ]; then
    # tests/test_dashboard_browser.py drives Debian's chromium through /usr/bin/chromedriver.
    packages+=(chromium chromium-driver)
    # tests/test_thirdparty_kafkajs.py runs kafkajs under Node.js (any Node.js >= 14 will do).
    command -v npm >/dev/null 2>&1 || packages+=(nodejs npm)
fi
if [ "$peers" -eq 1 ]; then
    # The brokers are started by hand by bench/paper.py, never as Debian services.
    packages+=(rabbitmq-server activemq librabbitmq-dev gcc default-jdk-headless)
fi
if ! python3 -c "import ensurepip, venv" >/dev/null 2>&1; then
    packages+=(python3-venv)
fi
missing=()
for package in "${packages[@]}"; do
    dpkg -s "$package" >/dev/null 2>&1 || missing+=("$package")
done
if [ "${#missing[@]}" -gt 0 ]; then
    echo "setup: installing Debian packages: ${missing[*]}"
    as_root apt-get update -qq
    # policy-rc.d keeps the peers' own services from starting while they are installed.
    if [ "$peers" -eq 1 ] && [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' | as_root tee /usr/sbin/policy-rc.d >/dev/null
        as_root chmod +x /usr/sbin/policy-rc.d
        trap 'as_root rm -f /usr/sbin/policy-rc.d' EXIT
    fi
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
if [ "$peers" -eq 1 ]; then
    for service in rabbitmq-server activemq; do
        if command -v systemctl >/dev/null 2>&1 && systemctl is-enabled "$service" >/dev/null 2>&1; then
            as_root systemctl disable --now "$service" >/dev/null 2>&1 || true
        fi
    done
fi

if [ ! -x .venv/bin/python ]; then
    echo "setup: creating .venv"
    python3 -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
echo "setup: installing headrace${extras} into .venv"
.venv/bin/python -m pip install -q -e ".${extras}"
if [ "$tests" -eq 1 ]; then
    echo "setup: installing tests/js's pinned npm packages (kafkajs) into tests/js/node_modules"
    npm ci --prefix tests/js --no-audit --no-fund --loglevel=error
fi
