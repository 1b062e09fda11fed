#!/bin/sh
# install-deps.sh PKG... - apt-get install the Debian packages that are missing.
set -eu
missing=""
for p in "$@"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" ||
		missing="$missing $p"
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" != 0 ]; then
	echo "install-deps: missing Debian packages:$missing (run as root to install)" >&2
	exit 1
fi
echo "install-deps: installing$missing"
# keep the postfix package from configuring a system-wide instance
echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections 2>/dev/null || true
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null 2>&1 || apt-get update
# packages with a service (postgresql, mariadb-server) must not start a
# system-wide instance: the tests start their own in temp directories
guard=""
if [ ! -e /usr/sbin/policy-rc.d ]; then
	printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
	chmod +x /usr/sbin/policy-rc.d
	guard=1
fi
rc=0
apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends $missing >/dev/null || rc=$?
[ -z "$guard" ] || rm -f /usr/sbin/policy-rc.d
exit $rc
