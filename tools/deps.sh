#!/bin/sh
# Install the Debian 12 packages Columba needs to build and to run its
# whole test suite.  Safe to run again; does nothing when all are there.
# Usage: tools/deps.sh            (as root, or with sudo available)
set -e

PACKAGES="
build-essential autoconf automake pkg-config
libssl-dev libsasl2-dev zlib1g-dev libicu-dev libsqlite3-dev libcunit1-dev
libpq-dev libical-dev libxml2-dev libjansson-dev liblmdb-dev
flex bison
openssl sasl2-bin libsasl2-modules
python3 python3-pytest libpython3.11-testsuite
postgresql sqlite3
valgrind
"

missing=""
for p in $PACKAGES; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
        missing="$missing $p"
done
[ -z "$missing" ] && exit 0

echo "columba: installing Debian packages:$missing"
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# The postgresql package would start a cluster as a system service; the
# tests start their own server in a temporary directory instead.
$SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
