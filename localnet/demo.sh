#!/usr/bin/env bash
# demo.sh: bring the local network up, connect nymvpn inside the client
# namespace, fetch pages from the pretend internet through the mixnet, show
# what the server saw, disconnect and tear everything down. Exits non-zero,
# naming the step, when anything does not work; it never skips a step.
#
# Environment: as localnet.sh, plus
#   DEMO_CONNECT_TIMEOUT  seconds to wait for traffic to flow (default 120)
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
P=${LOCALNET_PREFIX:-nym}
STATE=${LOCALNET_DIR:-/tmp/$P-localnet}
BIN=${LOCALNET_BIN:-$REPO/bin}
CONNECT_TIMEOUT=${DEMO_CONNECT_TIMEOUT:-120}
CLIENT=$P-client
DIR_URL=http://192.0.2.10:8000
INET4=198.51.100.2 INET6=2001:db8:1::2 EXIT4=198.51.100.1 EXIT6=2001:db8:1::1

STEP="bring the local network up"
say() { printf '\n== %s\n' "$*"; }
fail() {
	echo "demo FAILED at step \"$STEP\": $*" >&2
	exit 1
}
step() { STEP=$1; say "$1"; }
inclient() { ip netns exec "$CLIENT" "$@"; }

[[ $(id -u) == 0 ]] || fail "must run as root: sudo make demo"

# Whatever happens, take the network down again (that also stops nymvpn,
# whose PID is recorded with the others).
finish() {
	local rc=$?
	if [[ -x $BIN/nymvpn && -e /run/netns/$CLIENT ]]; then
		inclient "$BIN/nymvpn" disconnect >/dev/null 2>&1 || true
	fi
	say "tear down"
	"$HERE/localnet.sh" down || rc=1
	if ((rc == 0)); then echo "demo OK"; else echo "demo FAILED (exit $rc); logs were in $STATE/log" >&2; fi
	exit $rc
}
trap finish EXIT
trap 'exit 130' INT TERM

say "$STEP"
"$HERE/localnet.sh" up
KEY=$(cat "$STATE/directory-key")

step "every node publishes an ML-KEM key: links are hybrid (post-quantum)"
# The signed topology carries each node's KEM key; a link to a node that has
# one always runs the hybrid X25519 + ML-KEM-768 handshake (see README).
topo=$(inclient curl -sf --max-time 5 "$DIR_URL/api/v1/topology") || fail "cannot fetch the topology from $DIR_URL"
nodes=$(grep -o '"noise_key"' <<<"$topo" | wc -l || true) # grep finding none must reach fail, not set -e
kems=$(grep -o '"kem_keys":\[{' <<<"$topo" | wc -l || true) # the current (and next) rotation's key
((nodes > 0 && kems == nodes)) || fail "$kems of $nodes nodes in the topology publish a KEM key"
echo "ok: $kems of $nodes nodes publish an ML-KEM-768 key"

step "three authorities serve one consensus signed by at least two of them"
docs=()
for u in "$DIR_URL" http://192.0.2.11:8000 http://192.0.2.12:8000; do
	d=$(inclient curl -sf --max-time 5 "$u/api/v1/consensus") || fail "cannot fetch the consensus from $u"
	sigs=$(grep -o '"key":' <<<"${d#*\"signatures\"}" | wc -l || true)
	((sigs >= 2)) || fail "$u serves a consensus with $sigs signatures, want at least 2"
	docs+=("${d%%,\"signatures\"*}")
done
[[ ${docs[0]} == "${docs[1]}" || ${docs[0]} == "${docs[2]}" || ${docs[1]} == "${docs[2]}" ]] ||
	fail "no two authorities serve the same consensus document"
echo "ok: each authority serves a consensus with >= 2 signatures"

step "stop the first authority: the other two still make and sign the consensus"
read -r api_pid api_ns <"$STATE/pids/nym-api"
[[ $(ip netns identify "$api_pid" 2>/dev/null) == "$api_ns" ]] || fail "the first nym-api (pid $api_pid) is not running"
epoch_of() { inclient curl -sf --max-time 2 "$1/api/v1/health" | grep -o '"epoch":[0-9]*' | cut -d: -f2; }
e0=$(epoch_of http://192.0.2.11:8000) || fail "the second authority does not answer"
kill -TERM "$api_pid"
deadline=$((SECONDS + 90))
# A later epoch's consensus, routable, voted and signed by the two left.
until e=$(epoch_of http://192.0.2.11:8000) && ((e > e0)) &&
	! inclient curl -sf --max-time 2 http://192.0.2.11:8000/api/v1/health | grep -q '"routable"'; do
	((SECONDS < deadline)) || fail "no routable consensus of a later epoch than $e0 without the first authority"
	sleep 1
done
echo "ok: epoch $e's consensus made without $DIR_URL (nymvpn connects through the others)"

step "the client cannot reach the internet without the VPN"
if inclient curl -s --max-time 3 "http://$INET4/" >/dev/null; then
	fail "nym-client reached $INET4 directly; the topology leaks"
fi
echo "ok: $CLIENT has no path to $INET4"

step "redeem a voucher for bandwidth tickets: the gateways require them"
# localnet.sh minted the vouchers (nym-api vouchers create) at every
# authority; two of three sign the tickets blind, the first is down.
if [[ -s $STATE/vouchers ]]; then
	# One voucher of each type: mixnet-entry for the anonymous mode,
	# wireguard-entry and wireguard-exit for the fast mode's two doors.
	for f in vouchers vouchers-wireguard-entry vouchers-wireguard-exit; do
		inclient "$BIN/nymvpn" tickets add "$(head -1 "$STATE/$f")" --network "$STATE/network.toml" ||
			fail "nymvpn tickets add (from $f) failed"
	done
	inclient "$BIN/nymvpn" tickets --network "$STATE/network.toml" || fail "nymvpn tickets fails"
else
	echo "skipped: LOCALNET_TICKETS=0"
fi

step "nymvpn connect"
[[ -x $BIN/nymvpn ]] || fail "missing: $BIN/nymvpn does not exist (cmd/nymvpn is absent or does not build yet)"
help=$("$BIN/nymvpn" connect --help 2>&1) ||
	fail "missing: '$BIN/nymvpn connect --help' fails: $(echo "$help" | head -3)"
args=(connect --network "$STATE/network.toml")
# Point nymvpn's DNS at the internet's resolver and at the namespace's own
# resolv.conf (which `ip netns exec` mounts over /etc/resolv.conf), when it
# has flags for them; otherwise its defaults apply.
[[ $help == *--dns* ]] && args+=(--dns "$INET4")
[[ $help == *--resolv-conf* ]] && args+=(--resolv-conf "/etc/netns/$CLIENT/resolv.conf")
echo "+ ip netns exec $CLIENT nymvpn ${args[*]}"
# connect may stay in the foreground or return once connected; run it in the
# background either way and record it so localnet.sh down stops it.
ip netns exec "$CLIENT" "$BIN/nymvpn" "${args[@]}" </dev/null >"$STATE/log/nymvpn.log" 2>&1 &
vpn=$!
echo "$vpn $CLIENT" >"$STATE/pids/nymvpn"

step "traffic flows through the tunnel"
deadline=$((SECONDS + CONNECT_TIMEOUT)) vpn_done=
until page=$(inclient curl -s --max-time 5 "http://$INET4/"); do
	# A connect that returns once connected is fine; one that fails is not.
	if [[ -z $vpn_done ]] && ! kill -0 "$vpn" 2>/dev/null; then
		vpn_done=1
		wait "$vpn" || { tail -20 "$STATE/log/nymvpn.log" >&2; fail "nymvpn connect exited with an error (log above)"; }
	fi
	if ((SECONDS >= deadline)); then
		tail -20 "$STATE/log/nymvpn.log" >&2
		inclient "$BIN/nymvpn" status >&2 || true
		fail "no answer from http://$INET4/ through the tunnel in ${CONNECT_TIMEOUT}s"
	fi
	sleep 1
done
inclient "$BIN/nymvpn" status || fail "nymvpn status fails while connected"

step "fetch http://$INET4/ through the tunnel"
echo "server said: $page"
[[ $page == *"you are $EXIT4:"* ]] || fail "the server did not see the exit's address $EXIT4"

step "fetch http://internet.test/ (DNS through the tunnel)"
page=$(inclient curl -4 -s --max-time 20 http://internet.test/) ||
	fail "curl http://internet.test/ failed; $CLIENT's resolv.conf: $(tr '\n' ' ' <"/etc/netns/$CLIENT/resolv.conf")"
echo "server said: $page"
[[ $page == *"you are $EXIT4:"* ]] || fail "the server did not see the exit's address $EXIT4"

step "download 1 MiB and check its SHA-256"
want=$("$BIN/nym-localnet" sha256)
start=$SECONDS
got=$(inclient curl -sf --max-time 120 "http://$INET4/1MiB" | sha256sum | cut -d' ' -f1)
[[ $got == "$want" ]] || fail "sha256 $got, want $want"
echo "ok: sha256 $got in $((SECONDS - start))s"

step "IPv6 through the tunnel"
page=$(inclient curl -sf --max-time 20 "http://[$INET6]/") || fail "no answer from http://[$INET6]/ through the tunnel"
echo "server said: $page"
[[ $page == *"$EXIT6"* ]] || fail "the server saw ${page##* }, not the exit's IPv6 address $EXIT6"

step "nymvpn disconnect"
inclient "$BIN/nymvpn" disconnect || fail "nymvpn disconnect failed"
for _ in $(seq 20); do kill -0 "$vpn" 2>/dev/null || break; sleep 0.5; done
if inclient curl -s --max-time 3 "http://$INET4/" >/dev/null; then
	fail "after disconnect nym-client still reaches $INET4"
fi
echo "ok: disconnected; $CLIENT has no path to the internet again"

# Fast mode: two hops of nested WireGuard (client → entry → exit), the same
# checks as above through it.
step "nymvpn connect --mode fast"
inclient "$BIN/nymvpn" connect --mode fast --network "$STATE/network.toml" --dns "$INET4" </dev/null >>"$STATE/log/nymvpn.log" 2>&1 ||
	{ tail -20 "$STATE/log/nymvpn.log" >&2; fail "nymvpn connect --mode fast failed (log above)"; }
status=$(inclient "$BIN/nymvpn" status) || fail "nymvpn status fails in fast mode"
echo "$status"
[[ $status == *"mode:      fast"* ]] || fail "nymvpn status does not name fast mode"
page=$(inclient curl -s --max-time 10 "http://$INET4/") || fail "no answer from http://$INET4/ in fast mode"
echo "server said: $page"
[[ $page == *"you are $EXIT4:"* ]] || fail "in fast mode the server did not see the exit's address $EXIT4"
page=$(inclient curl -4 -s --max-time 10 http://internet.test/) || fail "curl http://internet.test/ failed in fast mode"
[[ $page == *"you are $EXIT4:"* ]] || fail "in fast mode (by name) the server did not see the exit's address $EXIT4"
echo "ok: by name too"
start=$SECONDS
got=$(inclient curl -sf --max-time 60 "http://$INET4/1MiB" | sha256sum | cut -d' ' -f1)
[[ $got == "$want" ]] || fail "fast mode: sha256 $got, want $want"
echo "ok: 1 MiB, sha256 $got in $((SECONDS - start))s"
page=$(inclient curl -sf --max-time 10 "http://[$INET6]/") || fail "no answer from http://[$INET6]/ in fast mode"
[[ $page == *"$EXIT6"* ]] || fail "fast mode: the server saw ${page##* }, not the exit's IPv6 address $EXIT6"
echo "ok: IPv6, the server saw $EXIT6"
inclient "$BIN/nymvpn" disconnect >/dev/null || fail "nymvpn disconnect failed in fast mode"
if inclient curl -s --max-time 3 "http://$INET4/" >/dev/null; then
	fail "after disconnecting fast mode nym-client still reaches $INET4"
fi
echo "ok: fast mode disconnected"
