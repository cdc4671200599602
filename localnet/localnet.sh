#!/usr/bin/env bash
# localnet.sh builds a whole mixnet plus a pretend internet out of network
# namespaces on this machine, and takes it down again.
#
#   localnet.sh up       build, start everything, wait until routable
#   localnet.sh down     stop what `up` started, delete the namespaces (idempotent)
#   localnet.sh status   print the namespaces, addresses and how to use them
#
# Environment:
#   LOCALNET_PREFIX  namespace name prefix (default nym: nym-dir, nym-entry, …)
#   LOCALNET_DIR     state: data dirs, logs, PIDs (default /tmp/$PREFIX-localnet)
#   LOCALNET_BIN     where the binaries are built (default <repo>/bin)
#   LOCALNET_EPOCH   directory epoch length (default 30s: the three authorities
#                    vote each epoch's consensus before it begins, so the nodes
#                    enter the topology at the first boundary after they register)
#   LOCALNET_TIMEOUT seconds to wait for a routable topology (default 120)
#   LOCALNET_STOP_GRACE seconds `down` gives its processes to stop on SIGTERM
#                    before SIGKILL (default 30)
#   LOCALNET_ENTRIES number of entry gateways, 1 or 2 (default 1); the second,
#                    entry2, lives in $PREFIX-entry2 at 192.0.2.21
#   LOCALNET_TICKETS 1 (default): the gateways require bandwidth tickets, and
#                    $LOCALNET_DIR/vouchers holds vouchers (one a line, 20
#                    mixnet-entry tickets each) installed at every authority:
#                    `nymvpn tickets add VOUCHER --network FILE` redeems one.
#                    vouchers-wireguard-entry and vouchers-wireguard-exit
#                    hold fast mode's (one of each pays a connect).
#                    0: no tickets required.
#
# The directory is a network of three authorities (dir, dir2, dir3 at
# 192.0.2.10-12), each a nym-api with its own key; a consensus needs two of
# their signatures (k = 2). Nodes and clients are given the network file,
# $LOCALNET_DIR/network.toml.
#
# Only documentation addresses are used and no namespace gets a default
# route, so nothing here can reach or change the host's own network.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
P=${LOCALNET_PREFIX:-nym}
STATE=${LOCALNET_DIR:-/tmp/$P-localnet}
BIN=${LOCALNET_BIN:-$REPO/bin}
EPOCH=${LOCALNET_EPOCH:-30s}
TIMEOUT=${LOCALNET_TIMEOUT:-120}
TICKETS=${LOCALNET_TICKETS:-1}

# Roles, in the order they are built. "net" holds the bridge of the mixnet
# LAN; every other namespace but inet has one leg on it.
ENTRIES=${LOCALNET_ENTRIES:-1}
[[ $ENTRIES == 1 || $ENTRIES == 2 ]] || { echo "localnet: LOCALNET_ENTRIES must be 1 or 2" >&2; exit 1; }
AUTH_ROLES=(dir dir2 dir3)
THRESHOLD=2
ROLES=(net "${AUTH_ROLES[@]}" entry mix1 mix2 mix3 exit inet client)
ENTRY_ROLES=(entry)
if ((ENTRIES == 2)); then
	ROLES+=(entry2)
	ENTRY_ROLES+=(entry2)
fi
declare -A LAN_IP=(
	[dir]=192.0.2.10 [dir2]=192.0.2.11 [dir3]=192.0.2.12 [entry]=192.0.2.20 [entry2]=192.0.2.21 [mix1]=192.0.2.31 [mix2]=192.0.2.32
	[mix3]=192.0.2.33 [exit]=192.0.2.40 [client]=192.0.2.100
)
EXIT_UP4=198.51.100.1 INET4=198.51.100.2
EXIT_UP6=2001:db8:1::1 INET6=2001:db8:1::2
DIR_URL=http://${LAN_IP[dir]}:8000

die() { echo "localnet: $*" >&2; exit 1; }
log() { echo "localnet: $*" >&2; }
ns() { echo "$P-$1"; }
inns() { local role=$1; shift; ip netns exec "$(ns "$role")" "$@"; }

# --- building the network ---------------------------------------------------

build_bins() {
	log "building binaries into $BIN"
	mkdir -p "$BIN"
	(cd "$REPO" && for c in nym-api nym-node nym-localnet; do
		go build -o "$BIN/$c" "./cmd/$c" || exit 1
	done) || die "go build failed"
	# nymvpn is not needed to bring the network up; a stale binary must not
	# stand in for one that no longer builds, though.
	if [[ -d $REPO/cmd/nymvpn ]] && ! (cd "$REPO" && go build -o "$BIN/nymvpn" ./cmd/nymvpn); then
		rm -f "$BIN/nymvpn"
		log "warning: cmd/nymvpn does not build; no nymvpn in $BIN"
	fi
}

build_namespaces() {
	local r
	for r in "${ROLES[@]}"; do
		ip netns add "$(ns "$r")" || die "cannot create namespace $(ns "$r") (left over? run: $0 down)"
		ip -n "$(ns "$r")" link set lo up
	done
	# The LAN: a bridge in the net namespace and one veth per node. Interface
	# names live inside the namespaces, so they need no prefix and stay short.
	ip -n "$(ns net)" link add br0 type bridge
	ip -n "$(ns net)" link set br0 up
	for r in "${AUTH_ROLES[@]}" "${ENTRY_ROLES[@]}" mix1 mix2 mix3 exit client; do
		ip -n "$(ns net)" link add "$r" type veth peer name lan0 netns "$(ns "$r")"
		ip -n "$(ns net)" link set "$r" master br0 up
		ip -n "$(ns "$r")" addr add "${LAN_IP[$r]}/24" dev lan0
		ip -n "$(ns "$r")" link set lan0 up
	done
	# The exit's uplink to the pretend internet. inet gets no route back to
	# the LAN or to the VPN's client pool, so its answers can only return
	# through the exit's masquerade, as on a real exit.
	ip -n "$(ns exit)" link add uplink0 type veth peer name eth0 netns "$(ns inet)"
	ip -n "$(ns exit)" addr add "$EXIT_UP4/24" dev uplink0
	ip -n "$(ns exit)" addr add "$EXIT_UP6/64" dev uplink0 nodad
	ip -n "$(ns inet)" addr add "$INET4/24" dev eth0
	ip -n "$(ns inet)" addr add "$INET6/64" dev eth0 nodad
	ip -n "$(ns exit)" link set uplink0 up
	ip -n "$(ns inet)" link set eth0 up
	# `ip netns exec` bind-mounts this file over /etc/resolv.conf, so a
	# resolver change made inside the client namespace (nymvpn's DNS) lands
	# here and never in the host's resolv.conf.
	mkdir -p "/etc/netns/$(ns client)"
	echo "nameserver $INET4" >"/etc/netns/$(ns client)/resolv.conf"
}

# start ROLE NAME CMD...: run CMD in ROLE's namespace in the background, log
# to $STATE/log/NAME.log and record its PID (ip netns exec execs, so $! is
# the server itself) for `down`.
start() {
	local role=$1 name=$2; shift 2
	# Not through inns: a backgrounded function is a subshell, and $! would
	# be that subshell's PID instead of the server's.
	ip netns exec "$(ns "$role")" "$@" </dev/null >"$STATE/log/$name.log" 2>&1 &
	echo "$! $(ns "$role")" >"$STATE/pids/$name"
}

# wait_for SECONDS CMD...: retry CMD until it succeeds.
wait_for() {
	local secs=$1; shift
	local deadline=$((SECONDS + secs))
	until "$@" >/dev/null 2>&1; do
		((SECONDS < deadline)) || return 1
		sleep 0.5
	done
}

start_servers() {
	start inet inet "$BIN/nym-localnet" inet --http :80 --dns :53 \
		--name "internet.test=$INET4" --name "internet.test=$INET6"
	start inet iperf3 iperf3 -s
	wait_for 10 inns exit curl -sf "http://$INET4/" ||
		die "the internet's HTTP server did not come up; see $STATE/log/inet.log"

	# The authorities: a key each, then the network file naming them all.
	local a key i=0 auths=()
	for a in "${AUTH_ROLES[@]}"; do
		i=$((i + 1))
		"$BIN/nym-api" init --data-dir "$STATE/$a" >/dev/null
		key=$("$BIN/nym-api" identity --data-dir "$STATE/$a" | tr -d '[:space:]')
		[[ -n $key ]] || die "nym-api identity printed no key"
		((i > 1)) || { DIR_KEY=$key; echo "$key" >"$STATE/directory-key"; }
		auths+=("auth$i=$key@http://${LAN_IP[$a]}:8000")
	done
	"$BIN/nym-api" network --threshold "$THRESHOLD" --out "$STATE/network.toml" "${auths[@]}" ||
		die "nym-api network failed"
	if ((TICKETS)); then
		# Vouchers stand where a payment would: minted at the first
		# authority, installed at the others, redeemed by clients.
		# Fast mode's registrations pay with the two WireGuard types, one
		# file of vouchers each.
		for v in vouchers:mixnet-entry vouchers-wireguard-entry:wireguard-entry vouchers-wireguard-exit:wireguard-exit; do
			"$BIN/nym-api" vouchers create --data-dir "$STATE/dir" --tickets 20 --type "${v#*:}" --count 8 \
				>"$STATE/${v%%:*}" || die "nym-api vouchers create --type ${v#*:} failed"
			for a in "${AUTH_ROLES[@]:1}"; do
				"$BIN/nym-api" vouchers add --data-dir "$STATE/$a" --file "$STATE/${v%%:*}" >/dev/null ||
					die "nym-api vouchers add failed"
			done
		done
	fi
	for a in "${AUTH_ROLES[@]}"; do
		start "$a" "$(api_name "$a")" "$BIN/nym-api" run --data-dir "$STATE/$a" --listen "${LAN_IP[$a]}:8000" \
			--epoch-length "$EPOCH" --probe-interval 2s --network "$STATE/network.toml" \
			--max-seats-per-prefix -1 # every node is in one /24
	done
	for a in "${AUTH_ROLES[@]}"; do
		wait_for 15 inns client curl -sf "http://${LAN_IP[$a]}:8000/api/v1/health" ||
			die "nym-api in $(ns "$a") did not answer; see $STATE/log/$(api_name "$a").log"
	done

	local r mode extra
	# Entry gateways first: a node that joins after the topology is complete
	# waits on standby until the next epoch, and a second entry is only
	# useful (for failover) if it is in the topology from the start.
	for r in "${ENTRY_ROLES[@]}" mix1 mix2 mix3 exit; do
		extra=()
		case $r in
		mix*) mode=mixnode ;;
		entry*) mode=entry-gateway ;;
		exit)
			mode=exit-gateway
			# The exit's IP packet router masquerades out of this interface.
			extra=(--exit-uplink uplink0)
			;;
		esac
		if ((TICKETS)) && [[ $mode != mixnode ]]; then
			# Reports every 10 s: a double spend shows within seconds here.
			mkdir -p "$STATE/$r"
			printf 'require_tickets = true\nticket_report_interval = "10s"\n' >"$STATE/$r/config.toml"
		fi
		# Gateways open their WireGuard door for fast mode (UDP, and TCP
		# for registration).
		[[ $r == mix* ]] || extra+=(--wireguard-listen "${LAN_IP[$r]}:51820")
		# Prometheus /metrics on the namespace's loopback, where only this
		# machine's root reaches it: bench.sh reads the packet counters.
		extra+=(--metrics-listen 127.0.0.1:9100)
		start "$r" "nym-node-$r" "$BIN/nym-node" run --data-dir "$STATE/$r" --mode "$mode" \
			--network "$STATE/network.toml" \
			--mixnet-listen "${LAN_IP[$r]}:1789" --http-listen "${LAN_IP[$r]}:8080" \
			--clients-listen "${LAN_IP[$r]}:9000" --announce-host "${LAN_IP[$r]}" "${extra[@]}"
	done
}

# api_name AUTH_ROLE: the name its nym-api runs under (logs, PIDs).
api_name() { [[ $1 == dir ]] && echo nym-api || echo "nym-api-$1"; }

# routable: every authority serves a consensus with every role filled, and
# every entry gateway has the entry role (not standby) by its own account.
routable() {
	local h r
	for r in "${AUTH_ROLES[@]}"; do
		h=$(inns client curl -sf --max-time 2 "http://${LAN_IP[$r]}:8000/api/v1/health") || return 1
		[[ $h == *'"status":"ok"'* && $h != *'"routable"'* ]] || return 1
	done
	for r in "${ENTRY_ROLES[@]}"; do
		h=$(inns client curl -sf --max-time 2 "http://${LAN_IP[$r]}:8080/api/v1/roles") || return 1
		[[ $h == *'"role":"entry"'* ]] || return 1
	done
}

check_alive() {
	local f pid nsname
	for f in "$STATE"/pids/*; do
		read -r pid nsname <"$f"
		kill -0 "$pid" 2>/dev/null || die "$(basename "$f") exited; see $STATE/log/$(basename "$f").log"
	done
}

cmd_up() {
	[[ $(id -u) == 0 ]] || die "must run as root (network namespaces)"
	for c in ip curl iperf3 go; do command -v "$c" >/dev/null || die "$c not found (make deps installs the system packages)"; done
	if [[ -e /run/netns/$(ns dir) || -d $STATE/pids ]]; then
		die "a local network with prefix $P is already up (or half-built); run: $0 down"
	fi
	build_bins
	rm -rf "$STATE"
	mkdir -p "$STATE/log" "$STATE/pids"
	# Any failure from here on (set -e, die, ^C) leaves nothing half-built.
	UP_OK=
	trap '[[ -n $UP_OK ]] || { log "up failed; tearing down"; cmd_down; }' EXIT
	trap 'exit 130' INT TERM
	build_namespaces
	start_servers
	log "waiting up to ${TIMEOUT}s for a routable topology"
	local deadline=$((SECONDS + TIMEOUT))
	until routable; do
		check_alive
		if ((SECONDS >= deadline)); then
			inns client curl -s "$DIR_URL/api/v1/health" >&2 || true
			die "the topology did not become routable in ${TIMEOUT}s"
		fi
		sleep 1
	done
	UP_OK=1
	trap - INT TERM
	cmd_status
}

# --- taking it down -------------------------------------------------------

# stop_pids PID:NS...: stop processes we started, but only those whose PID
# still lives in the namespace we started it in (a recycled PID belongs to
# someone else). All get SIGTERM at once and share one grace period, then
# whatever is left gets SIGKILL. One by one, at load 10-20, each took ~1.7 s
# (a node saves its replay filter on the way out) and a fixed grace per
# process added up past any budget for `down`.
STOP_GRACE=${LOCALNET_STOP_GRACE:-30}
stop_pids() {
	local pn pid nsname left=() deadline
	for pn in "$@"; do
		pid=${pn%%:*} nsname=${pn#*:}
		[[ $(ip netns identify "$pid" 2>/dev/null) == "$nsname" ]] || continue
		kill -TERM "$pid" 2>/dev/null && left+=("$pn")
	done
	deadline=$((SECONDS + STOP_GRACE))
	while ((${#left[@]} > 0)); do
		local still=()
		for pn in "${left[@]}"; do
			kill -0 "${pn%%:*}" 2>/dev/null && still+=("$pn")
		done
		left=("${still[@]+"${still[@]}"}")
		((${#left[@]} > 0)) || break
		if ((SECONDS >= deadline)); then
			for pn in "${left[@]}"; do
				pid=${pn%%:*} nsname=${pn#*:}
				[[ $(ip netns identify "$pid" 2>/dev/null) == "$nsname" ]] || continue
				log "pid $pid did not stop within ${STOP_GRACE}s of SIGTERM; killing"
				kill -KILL "$pid" 2>/dev/null || true
			done
			break
		fi
		sleep 0.1
	done
}

# stop_recorded NAME...: stop, together, the processes recorded under NAME
# in $STATE/pids.
stop_recorded() {
	local name f pid nsname pns=()
	for name in "$@"; do
		f=$STATE/pids/$name
		[[ -f $f ]] || continue
		read -r pid nsname <"$f"
		pns+=("$pid:$nsname")
	done
	((${#pns[@]} == 0)) || stop_pids "${pns[@]}"
	for name in "$@"; do rm -f "$STATE/pids/$name"; done
}

cmd_down() {
	[[ $(id -u) == 0 ]] || die "must run as root (network namespaces)"
	local f nsname r left pid pns
	# Clients first (nymvpn must undo its routes and kill switch while the
	# mixnet is still there), then nodes, then the directory and servers.
	stop_recorded nymvpn
	stop_recorded nym-node-exit nym-node-entry nym-node-entry2 nym-node-mix1 nym-node-mix2 nym-node-mix3
	stop_recorded nym-api nym-api-dir2 nym-api-dir3 inet iperf3
	if [[ -d $STATE/pids ]]; then # anything else recorded (by demo.sh)
		# shellcheck disable=SC2046
		stop_recorded $(ls "$STATE/pids")
	fi
	# entry2 too, whatever LOCALNET_ENTRIES says now: up may have made it.
	for r in "${ROLES[@]}" entry2; do
		nsname=$(ns "$r")
		[[ -e /run/netns/$nsname ]] || continue
		# A process still inside (say, a shell or nymvpn started by hand)
		# would keep the namespace and its links alive after the delete.
		left=$(ip netns pids "$nsname" 2>/dev/null || true)
		if [[ -n $left ]]; then
			log "stopping processes still in $nsname: $(echo $left)"
			pns=()
			for pid in $left; do pns+=("$pid:$nsname"); done
			stop_pids "${pns[@]}"
		fi
		ip netns del "$nsname" || log "could not delete namespace $nsname"
	done
	rm -rf "/etc/netns/$(ns client)"
	rm -rf "$STATE/pids"
	return 0
}

# --- looking at it --------------------------------------------------------

cmd_status() {
	local key
	key=$(cat "$STATE/directory-key" 2>/dev/null || echo '?')
	echo
	echo "Local network \"$P\": state, data dirs and logs in $STATE"
	echo
	row() { printf '  %-13s %-44s %s\n' "$@"; }
	row namespace "address(es)" runs
	row "$(ns net)" "bridge br0 (the mixnet LAN 192.0.2.0/24)" -
	row "$(ns dir)..3" "${LAN_IP[dir]}..12" "nym-api :8000 x3, k = $THRESHOLD (epoch $EPOCH)"
	row "$(ns entry)" "${LAN_IP[entry]}" "nym-node entry-gateway, clients :9000"
	row "$(ns mix1)..3" "${LAN_IP[mix1]}..33" "nym-node mixnode"
	row "$(ns exit)" "${LAN_IP[exit]}; uplink0 $EXIT_UP4 $EXIT_UP6" "nym-node exit-gateway"
	row "$(ns inet)" "eth0 $INET4 $INET6" "HTTP :80, DNS :53 (internet.test), iperf3 -s"
	row "$(ns client)" "${LAN_IP[client]}" "nothing yet; no route to $INET4"
	cat <<EOF

  network file: $STATE/network.toml (3 authorities, k = $THRESHOLD)
  vouchers:     $STATE/vouchers (gateways require tickets: LOCALNET_TICKETS=$TICKETS)
                $STATE/vouchers-wireguard-{entry,exit} (fast mode's)
  first authority: $DIR_URL   key: $key
  every node's HTTP API: http://<its LAN address>:8080/api/v1/roles
  every node's /metrics: ip netns exec <its namespace> curl -s http://127.0.0.1:9100/metrics

Try:
  sudo ip netns exec $(ns client) curl -s $DIR_URL/api/v1/health
  sudo ip netns exec $(ns client) curl -s $DIR_URL/api/v1/topology | head -c 600
  sudo ip netns exec $(ns exit) curl -s http://$INET4/      # the internet, seen from the exit
  sudo ip netns exec $(ns client) $BIN/nymvpn tickets add \$(head -1 $STATE/vouchers) --network $STATE/network.toml
  sudo ip netns exec $(ns client) $BIN/nymvpn connect --network $STATE/network.toml
  sudo ip netns exec $(ns client) curl -s http://$INET4/    # works only through the VPN
  sudo ip netns exec $(ns client) iperf3 -c $INET4 -R
  sudo make localnet-down
EOF
}

case ${1:-} in
up) cmd_up ;;
down) cmd_down ;;
status) cmd_status ;;
*) die "usage: $0 up|down|status" ;;
esac
