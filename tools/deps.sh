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
python3-sphinx
postgresql sqlite3
valgrind
fetchmail getmail6
mutt isync offlineimap3
postfix
cyrus-admin cyrus-clients
libmail-imapclient-perl libterm-readline-gnu-perl libio-socket-ssl-perl
libauthen-sasl-perl
sieve-connect
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
# Postfix is only run by tests/test_postfix.py as a private instance with
# its own configuration: "No configuration" leaves the system instance
# without a main.cf, so it neither starts nor listens on port 25.
echo "postfix postfix/main_mailer_type select No configuration" |
    $SUDO debconf-set-selections
# The postgresql package would start a cluster as a system service; the
# tests start their own server in a temporary directory instead.
$SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
# Never leave the system Postfix enabled (a container may have no
# systemctl; the private test instances do not need it).
if command -v systemctl >/dev/null 2>&1; then
    $SUDO systemctl disable --now postfix >/dev/null 2>&1 || true
fi
# cyrus-admin (cyradm, for tests/test_cyradm.py) pulls in cyrus-common,
# whose cyrus-imapd service would take ports 143 and 4190: keep it off.
if command -v systemctl >/dev/null 2>&1; then
    $SUDO systemctl disable --now cyrus-imapd >/dev/null 2>&1 || true
elif [ -x /etc/init.d/cyrus-imapd ]; then
    $SUDO /etc/init.d/cyrus-imapd stop >/dev/null 2>&1 || true
fi
