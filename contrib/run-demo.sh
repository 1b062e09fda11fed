#!/bin/sh
# run-demo.sh - what `make run` does: a private redis-server with a fresh
# state directory, and policyd on 127.0.0.1:10040 with rules/policyd.conf,
# in the foreground. Ctrl-C stops both.
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
state=$(mktemp -d /tmp/policyd-run.XXXXXX)
port=${REDIS_PORT:-6390}
redis_pid=""
cleanup() {
	[ -n "$redis_pid" ] && kill "$redis_pid" 2>/dev/null && wait "$redis_pid" 2>/dev/null
	rm -rf "$state"
}
trap cleanup EXIT INT TERM
redis-server --port "$port" --bind 127.0.0.1 --dir "$state" --save "" \
	--appendonly no --daemonize no --logfile "$state/redis.log" &
redis_pid=$!
i=0
until redis-cli -p "$port" ping >/dev/null 2>&1; do
	i=$((i + 1)); [ $i -gt 50 ] && { echo "redis-server did not start"; cat "$state/redis.log"; exit 1; }
	sleep 0.1
done
# the sample configuration, pointed at the private Redis
sed -e "s/127.0.0.1:6379/127.0.0.1:$port/" -e "s/^# *metrics = .*//" \
	"$top/rules/policyd.conf" > "$top/rules/.run.conf"
# the demo runs as "nobody" (the packaged default is a dedicated "policyd" user)
sed -i 's/^user = .*/user = "nobody";/' "$top/rules/.run.conf"
echo "policyd: redis-server on 127.0.0.1:$port (state in $state); policyd on 127.0.0.1:10040"
echo "try:  printf 'request=smtpd_access_policy\\nprotocol_state=RCPT\\nclient_address=192.0.2.1\\nclient_name=mx.example.com\\nsender=a@example.com\\nrecipient=b@example.net\\n\\n' | nc -q1 127.0.0.1 10040"
"$top/policyd/policyd" -f -c "$top/rules/.run.conf" &
pd=$!
trap 'kill $pd 2>/dev/null; wait $pd 2>/dev/null; cleanup' EXIT INT TERM
wait $pd
