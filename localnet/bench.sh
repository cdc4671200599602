#!/usr/bin/env bash
# bench.sh: throughput and latency of nymvpn through the local network.
# Brings up a local network of its own, then measures from the client
# namespace to the internet namespace (198.51.100.2):
#
#   (a) nymvpn at Nym's default parameters (--profile default)
#   (p) nymvpn --profile anonymous-plus: mixing delays and cover kept, a
#       higher constant rate
#   (b) nymvpn with delays and cover off (--profile nodelay)
#   (f) nymvpn --mode fast: two hops of nested WireGuard (entry, exit), no
#       mixnet; download and upload
#   (s) `nymvpn socks5` at Nym's defaults, run as nobody (rootless): a
#       1 MiB download through it with curl --socks5-hostname
#   (c) a plain vxlan tunnel client -> exit -> internet between the same
#       namespaces, without the mixnet: the ceiling
#   (w) a reference, not a target: one hop of userspace WireGuard
#       (upstream wireguard-go, built from go.mod's module, on both ends)
#       client -> exit -> internet over the same LAN, MTU 1420: what a
#       single-hop userspace WireGuard VPN gets on this machine
#
# (a), (p), (b), (f), (w) and (c) each with iperf3 TCP goodput (download, -R;
# (a), (p), (f), (w) and (c) upload too), ping RTT idle and during the download
# (and, for (a) and (p), during the upload),
# printed as a table with ratios to (c); for (a), (p) and (c) a page load as
# a browser does it (/page: one HTML page, then its 20 objects of 25 KiB
# over 6 parallel connections) and the idle cost: bytes/s the client's LAN
# interface sends while the tunnel is up and unused.
#
# For (a), (p) and (b), the per-role cost: each process's own CPU time
# (/proc/PID/stat) and the Sphinx packets it handled (the nodes' /metrics)
# during the download (and the upload, for (a) and (p)), and an idle
# window of (a) and (p), printed by internal/rolecost as CPU
# µs per packet and per MB and one core's capacity per role, and the
# projected download of one client when every node has a 2-core host of its
# own. Tears the network down whatever happens.
#
# Environment: as localnet.sh (LOCALNET_PREFIX defaults to bn<pid> here), plus
#   BENCH_IPERF_TIME  seconds per iperf3 run (default 10)
#   BENCH_PINGS       pings per RTT measurement (default 20)
#   BENCH_ROWS        rows to run besides (c), which every ratio needs
#                     (default apsbfw; e.g. fw to compare fast mode alone, ap
#                     for the two anonymous profiles)
#   BENCH_IDLE        seconds of the idle-cost window (default 10)
#   BENCH_PLUS_PROFILE the profile row (p) connects with (default anonymous-plus)
#   BENCH_TCP_CC      TCP congestion control of the iperf3 runs (iperf3 -C, both
#                     ends: the client's for uploads, the internet's for
#                     downloads); default: the host's (net.ipv4.tcp_congestion_control,
#                     which the namespaces inherit). The table names it.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
export LOCALNET_PREFIX=${LOCALNET_PREFIX:-bn$$}
P=$LOCALNET_PREFIX
export LOCALNET_DIR=${LOCALNET_DIR:-/tmp/$P-localnet}
STATE=$LOCALNET_DIR
BIN=${LOCALNET_BIN:-$REPO/bin}
IPERF_TIME=${BENCH_IPERF_TIME:-10}
PINGS=${BENCH_PINGS:-20}
ROWS=${BENCH_ROWS:-apsbfw}
IDLE_TIME=${BENCH_IDLE:-10}
PLUS=${BENCH_PLUS_PROFILE:-anonymous-plus}
TCP_CC=${BENCH_TCP_CC:-$(sysctl -n net.ipv4.tcp_congestion_control)}
row() { [[ $ROWS == *$1* ]]; }
DIR_URL=http://192.0.2.10:8000
INET4=198.51.100.2
SOCK=$STATE/nymvpn.sock

die() { echo "bench: $*" >&2; exit 1; }
log() { echo "bench: $*" >&2; }
inns() { local r=$1; shift; ip netns exec "$P-$r" "$@"; }
vpn() { inns client "$BIN/nymvpn" --socket "$SOCK" "$@"; }

[[ $(id -u) == 0 ]] || die "must run as root (network namespaces)"
for c in ip curl iperf3 ping nft awk setpriv sha256sum; do command -v "$c" >/dev/null || die "$c not found"; done

finish() {
	local rc=$?
	[[ -S $SOCK ]] && vpn disconnect >/dev/null 2>&1 || true
	[[ -n ${SOCKS_BIN:-} ]] && rm -rf "$SOCKS_BIN" || true
	"$HERE/localnet.sh" down >/dev/null || rc=1
	exit $rc
}
trap finish EXIT
trap 'exit 130' INT TERM

"$HERE/localnet.sh" up >/dev/null
KEY=$(cat "$STATE/directory-key")
[[ -x $BIN/nymvpn ]] || die "no $BIN/nymvpn"

# The daemon, with a socket and state file of this network's own.
# Not through inns: a backgrounded function is a subshell, and $! would be
# that subshell's PID, not the daemon's (whose CPU time bench measures).
ip netns exec "$P-client" "$BIN/nymvpn" daemon --socket "$SOCK" --state "$STATE/nymvpn.state" \
	</dev/null >"$STATE/log/nymvpn.log" 2>&1 &
echo "$! $P-client" >"$STATE/pids/nymvpn"
for _ in $(seq 50); do vpn status >/dev/null 2>&1 && break; sleep 0.2; done
# The gateways require tickets (unless LOCALNET_TICKETS=0): the daemon's
# ticketbook gets a voucher's, and so does the SOCKS proxy's user. Every
# figure below is with the gateways metering.
VOUCHERS=()
[[ -s $STATE/vouchers ]] && mapfile -t VOUCHERS <"$STATE/vouchers"
if ((${#VOUCHERS[@]})); then
	vpn tickets add "${VOUCHERS[0]}" --network "$STATE/network.toml" --state "$STATE/nymvpn.state" >/dev/null ||
		die "nymvpn tickets add failed"
	# Fast mode's two doors take WireGuard tickets: one voucher of each.
	for f in vouchers-wireguard-entry vouchers-wireguard-exit; do
		[[ -s $STATE/$f ]] || continue
		vpn tickets add "$(head -1 "$STATE/$f")" --network "$STATE/network.toml" --state "$STATE/nymvpn.state" >/dev/null ||
			die "nymvpn tickets add ($f) failed"
	done
fi

wait_page() {
	local i
	for i in $(seq 90); do
		inns client curl -sf --max-time 5 "http://$INET4/" >/dev/null && return 0
		sleep 1
	done
	return 1
}

# goodput [up]: iperf3 download (-R), or upload with "up", in Mbit/s,
# receiver side.
goodput() {
	local out dir=-R
	[[ ${1:-} == up ]] && dir=
	out=$(inns client iperf3 -c "$INET4" $dir -C "$TCP_CC" -t "$IPERF_TIME" -f m --connect-timeout 30000 2>&1) ||
		{ log "iperf3 failed: $(echo "$out" | tail -2)"; echo "-"; return; }
	# The sender's retransmissions: a lossy queue on the path shows here.
	log "iperf3 $dir: $(echo "$out" | awk '/sender/ { for (i = 1; i <= NF; i++) if ($i == "Mbits/sec") r = $(i+1) } END { print (r == "" ? "?" : r) }') retransmissions"
	echo "$out" | awk '/receiver/ { for (i = 1; i <= NF; i++) if ($i == "Mbits/sec") v = $(i-1) } END { print (v == "" ? "-" : v) }'
}

# udpdrops ROLE...: the UDP datagrams each role's namespace dropped for a
# full receive buffer so far (Udp RcvbufErrors, IPv4 and IPv6).
udpdrops() {
	local r
	for r in "$@"; do
		printf '%s=%s ' "$r" "$(inns "$r" awk '/^Udp: [0-9]/ { n += $6 } /^Udp6RcvbufErrors/ { n += $2 } END { print n + 0 }' /proc/net/snmp /proc/net/snmp6)"
	done
}

# rtt [count]: average ping RTT in ms, and the loss.
rtt() {
	local out
	out=$(inns client ping -q -c "${1:-$PINGS}" -i 0.2 -W 5 "$INET4" 2>&1) || true
	# "rtt min/avg/max/mdev = 1/2/3/4 ms": the average is the second value after "=".
	echo "$out" | awk -F'[/ ]+' '/^rtt|^round-trip/ { for (i = 1; i < NF; i++) if ($i == "=") avg = $(i + 2) } /packet loss/ { for (i = 1; i <= NF; i++) if ($i ~ /%$/) loss = $i }
		END { printf "%s %s\n", (avg == "" ? "-" : avg), (loss == "" ? "?" : loss) }'
}

# pageload: /page, then its 20 objects over at most 6 connections; seconds.
pageload() {
	local t0 t1 html urls=()
	t0=$(date +%s.%N)
	html=$(inns client curl -sf --max-time 120 "http://$INET4/page") || { echo "-"; return; }
	while read -r u; do urls+=(-o /dev/null "http://$INET4$u"); done < <(echo "$html" | sed -n 's/.*src="\([^"]*\)".*/\1/p')
	((${#urls[@]} == 60)) || { log "/page lists $((${#urls[@]} / 3)) objects, want 20"; echo "-"; return; }
	inns client curl -sf --no-progress-meter --max-time 300 -Z --parallel-max 6 --parallel-immediate "${urls[@]}" || { echo "-"; return; }
	t1=$(date +%s.%N)
	awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f\n", b - a }'
}

declare -A GP RTT LOSS CPU LRTT URTT UP PAGE IDLE PROF LABEL
for k in a p s b f w c; do GP[$k]=- RTT[$k]=- LOSS[$k]=- CPU[$k]=- LRTT[$k]=- URTT[$k]=- UP[$k]=- PAGE[$k]=- IDLE[$k]=-; done
LABEL[a]="(a) Nym defaults" PROF[a]=default
LABEL[p]="(p) --profile $PLUS" PROF[p]=$PLUS
LABEL[s]="(s) socks5, Nym defaults (1 MiB)"
LABEL[b]="(b) --profile nodelay" PROF[b]=nodelay
LABEL[f]="(f) --mode fast (WireGuard x2)"
LABEL[w]="(w) wireguard-go 1 hop (reference)"
LABEL[c]="(c) plain vxlan tunnel (ceiling)"

# Per-role cost (internal/rolecost): a window is a directory with its meta
# and a snapshot before (0) and after (1).
COST=$STATE/cost
WINDOWS=()
# snap DIR: the time, each process's CPU time (utime and stime are fields
# 14 and 15 of /proc/PID/stat; the name in parentheses may hold spaces, so
# count from its end), each node's /metrics, the daemon's status and the
# client's LAN counters.
snap() {
	local d=$1 r f pid
	mkdir -p "$d"
	getconf CLK_TCK >"$d/hz"
	: >"$d/cpu"
	for r in client entry mix1 mix2 mix3 exit; do
		f=$STATE/pids/nym-node-$r
		[[ $r == client ]] && f=$STATE/pids/nymvpn
		[[ -s $f ]] || continue
		read -r pid _ <"$f"
		sed 's/.*) //' "/proc/$pid/stat" 2>/dev/null | awk -v r="$r" '{ print r, $12, $13 }' >>"$d/cpu"
		[[ $r == client ]] || inns "$r" curl -sf --max-time 5 http://127.0.0.1:9100/metrics >"$d/metrics-$r" ||
			rm -f "$d/metrics-$r"
	done
	vpn status --json >"$d/status.json" 2>/dev/null || rm -f "$d/status.json"
	inns client cat /sys/class/net/lan0/statistics/tx_bytes /sys/class/net/lan0/statistics/rx_bytes | paste -sd' ' >"$d/lan"
	date +%s.%N >"$d/time"
}
# window K KIND 0|1: row K's KIND (down, up, idle) window, its first or
# second snapshot; rolecost is given those of rows with a profile, and
# rows without one take only the idle window (for its LAN counters).
window() {
	local d=$COST/$1-$2
	[[ -n ${PROF[$1]:-} || $2 == idle ]] || return 0
	if [[ $3 == 0 ]]; then
		rm -rf "$d"
		mkdir -p "$d"
		[[ -z ${PROF[$1]:-} ]] ||
			printf 'label %s\nprofile %s\nkind %s\n' "${LABEL[$1]}" "${PROF[$1]}" "$2" >"$d/meta"
	elif [[ -n ${PROF[$1]:-} ]]; then
		WINDOWS+=("$d")
	fi
	snap "$d/$3"
}
# idlecost K: kB/s the client's LAN interface sends over BENCH_IDLE
# seconds of an idle tunnel (for the mixnet, the Poisson stream and cover).
idlecost() {
	local k=$1 d=$COST/$1-idle
	log "($k) idle cost: ${IDLE_TIME}s of the client's LAN counters"
	window "$k" idle 0
	sleep "$IDLE_TIME"
	window "$k" idle 1
	IDLE[$k]=$(awk -v a="$(cat "$d/0/lan") $(cat "$d/0/time")" -v b="$(cat "$d/1/lan") $(cat "$d/1/time")" \
		'BEGIN { split(a, x, " "); split(b, y, " "); printf "%.1f\n", (y[1] - x[1]) / (y[3] - x[3]) / 1000 }')
}
# cpu_sample: total and idle jiffies of the whole machine. Every namespace
# shares the host's CPUs, so this is the mixnet's, the tunnel's and iperf3's
# load together: near 100% busy means the path is bound by CPU, not by a
# queue or timer in our plumbing.
cpu_sample() { awk '/^cpu / { t = 0; for (i = 2; i <= NF; i++) t += $i; print t, $5 + $6 }' /proc/stat; }

# measure: goodput and CPU during iperf3 -R, the RTT under that load (pings
# from its second second to a second before its end: what a call or a game
# beside a download sees), then the RTT of the idle tunnel.
measure() {
	local k=$1 r t0 i0 t1 i1 loaded=$STATE/rtt-loaded pid
	log "($k) iperf3 -R for ${IPERF_TIME}s, pinging meanwhile"
	(sleep 2 && rtt $((IPERF_TIME > 4 ? (IPERF_TIME - 3) * 5 : 1)) >"$loaded") &
	pid=$!
	window "$k" down 0
	read -r t0 i0 < <(cpu_sample)
	GP[$k]=$(goodput)
	read -r t1 i1 < <(cpu_sample)
	window "$k" down 1
	wait "$pid" || true
	LRTT[$k]=$(awk '{ print $1 }' "$loaded" 2>/dev/null)
	LRTT[$k]=${LRTT[$k]:--}
	CPU[$k]=$(awk -v t="$((t1 - t0))" -v i="$((i1 - i0))" 'BEGIN { printf "%.0f%%\n", (t > 0 ? 100 * (t - i) / t : 0) }')
	log "($k) $PINGS pings"
	read -r RTT[$k] LOSS[$k] < <(rtt)
}

# anonymous K: row K through the mixnet at its profile: the download with
# the RTTs, the idle cost, the upload, the page load.
anonymous() {
	local k=$1 pid
	log "($k) nymvpn connect --profile ${PROF[$k]}"
	vpn connect --network "$STATE/network.toml" --dns "$INET4" --profile "${PROF[$k]}" >/dev/null
	wait_page || die "($k): no page through the tunnel"
	measure "$k"
	idlecost "$k"
	log "($k) iperf3 upload, pinging meanwhile"
	(sleep 2 && rtt $((IPERF_TIME > 4 ? (IPERF_TIME - 3) * 5 : 1)) >"$STATE/rtt-up") &
	pid=$!
	window "$k" up 0
	UP[$k]=$(goodput up)
	window "$k" up 1
	wait "$pid" || true
	URTT[$k]=$(awk '{ print $1 }' "$STATE/rtt-up" 2>/dev/null)
	URTT[$k]=${URTT[$k]:--}
	log "($k) page load: /page + 20 objects, 6 connections"
	PAGE[$k]=$(pageload)
	vpn disconnect >/dev/null
}

row a && anonymous a
row p && anonymous p

if row s; then
	log "(s) nymvpn socks5 as nobody, Nym defaults: 1 MiB through curl --socks5-hostname"
	# A copy nobody can execute whatever LOCALNET_BIN's permissions.
	SOCKS_BIN=$(mktemp -d /tmp/bench-socks-XXXXXX)
	chmod 755 "$SOCKS_BIN"
	install -m 755 "$BIN/nymvpn" "$SOCKS_BIN/nymvpn"
	SOCKS_TICKETS=()
	if ((${#VOUCHERS[@]} > 1)); then
		install -d -m 700 -o 65534 -g 65534 "$SOCKS_BIN/book"
		vpn tickets --book "$SOCKS_BIN/book/tickets.book" add "${VOUCHERS[1]}" --network "$STATE/network.toml" >/dev/null ||
			die "nymvpn tickets add (socks) failed"
		chown 65534:65534 "$SOCKS_BIN/book/tickets.book"
		SOCKS_TICKETS=(--tickets "$SOCKS_BIN/book/tickets.book")
	fi
	ip netns exec "$P-client" setpriv --reuid=65534 --regid=65534 --clear-groups \
		"$SOCKS_BIN/nymvpn" socks5 --listen 127.0.0.1:1080 --network "$STATE/network.toml" \
		--dns "$INET4" --profile default "${SOCKS_TICKETS[@]}" </dev/null >"$STATE/log/nymvpn-socks.log" 2>&1 &
	SOCKS_PID=$!
	echo "$SOCKS_PID $P-client" >"$STATE/pids/nymvpn-socks"
	socks_ok=
	for _ in $(seq 90); do
		inns client curl -sf --max-time 5 --socks5-hostname 127.0.0.1:1080 "http://internet.test/" >/dev/null && { socks_ok=1; break; }
		sleep 1
	done
	if [[ -n $socks_ok ]]; then
		# speed_download is in bytes/s; the checksum proves the whole MiB came.
		out=$(inns client curl -sf --max-time 300 --socks5-hostname 127.0.0.1:1080 -o "$STATE/socks-1MiB" \
			-w '%{speed_download}' "http://internet.test/1MiB") || out=
		if [[ -n $out && $(sha256sum <"$STATE/socks-1MiB" | awk '{ print $1 }') == $("$BIN/nym-localnet" sha256) ]]; then
			GP[s]=$(awk -v b="$out" 'BEGIN { printf "%.2f\n", b * 8 / 1e6 }')
		else
			log "(s) the 1 MiB download through the proxy failed or was corrupt"
		fi
		rm -f "$STATE/socks-1MiB"
	else
		log "(s) no page through the SOCKS proxy; see $STATE/log/nymvpn-socks.log"
	fi
	kill "$SOCKS_PID" 2>/dev/null || true
	wait "$SOCKS_PID" 2>/dev/null || true
	rm -f "$STATE/pids/nymvpn-socks"
fi

if row b; then
	log "(b) nymvpn connect --profile nodelay"
	vpn connect --network "$STATE/network.toml" --dns "$INET4" --profile nodelay >/dev/null
	wait_page || die "(b): no page through the tunnel"
	measure b
	vpn disconnect >/dev/null
fi

if row f; then
	log "(f) nymvpn connect --mode fast (nested WireGuard: entry, exit)"
	if vpn connect --network "$STATE/network.toml" --dns "$INET4" --mode fast >/dev/null && wait_page; then
		log "(f) UDP receive buffer drops before: $(udpdrops client entry exit)"
		measure f
		log "(f) iperf3 upload"
		UP[f]=$(goodput up)
		log "(f) UDP receive buffer drops after: $(udpdrops client entry exit)"
		# The tickets' allowances at the two gateways, topped up as used.
		log "(f) allowances: $(vpn status 2>/dev/null | grep -E 'top-ups|unmetered|TOP-UP' | tr -s ' ' | paste -sd';' -)"
	else
		log "(f): fast mode did not connect; see $STATE/log/nymvpn.log"
	fi
	vpn disconnect >/dev/null
fi

log "(c) plain tunnel (vxlan over the LAN) client -> exit -> internet"
# The exit's IP router lets its host forward nothing but its own clients'
# packets (between its TUN and the uplink), so it would drop the plain
# tunnel's too: stop the exit node, which removes its table, before
# measuring the ceiling. Nothing after this uses the mixnet.
if read -r xpid _ <"$STATE/pids/nym-node-exit" 2>/dev/null; then
	kill -TERM "$xpid" 2>/dev/null || true
	for _ in $(seq 60); do kill -0 "$xpid" 2>/dev/null || break; sleep 1; done
	rm -f "$STATE/pids/nym-node-exit"
fi
inns exit nft list table inet nymexit >/dev/null 2>&1 && die "(c): the exit's nftables table outlived the exit"
# vxlan, since it is the encapsulation this kernel is sure to have (ipip,
# gre and wireguard may be modules that are not loaded).
inns client ip link add pt0 type vxlan id 99 local 192.0.2.100 remote 192.0.2.40 dstport 4789
inns client ip addr add 10.99.0.2/30 dev pt0
inns client ip link set pt0 up
inns exit ip link add pt0 type vxlan id 99 local 192.0.2.40 remote 192.0.2.100 dstport 4789
inns exit ip addr add 10.99.0.1/30 dev pt0
inns exit ip link set pt0 up
inns exit sysctl -qw net.ipv4.ip_forward=1
inns client ip route add "$INET4/32" via 10.99.0.1 dev pt0
# Forwarding and masquerade for the plain tunnel, as the exit does it.
inns exit nft -f - <<'EOF'
table ip bench_plain {
	chain forward_plain {
		type filter hook forward priority -300; policy accept;
		iifname "pt0" accept
		oifname "pt0" accept
	}
	chain postrouting_plain {
		type nat hook postrouting priority 50; policy accept;
		ip saddr 10.99.0.0/30 oifname "uplink0" masquerade
	}
}
EOF
inns client curl -sf --max-time 5 "http://$INET4/" >/dev/null || die "(c): no page through the plain tunnel"
measure c
idlecost c
log "(c) iperf3 upload"
UP[c]=$(goodput up)
PAGE[c]=$(pageload)

# (w), a reference: one hop of upstream wireguard-go (userspace, with its
# TUN offloads and UDP GSO/GRO) from the client to the exit over the LAN,
# forwarded and masqueraded there as (c) is. Fast mode runs the same code
# twice, nested, through the entry.
# wgkeys FILE: a new X25519 key in FILE (PEM); prints its private and
# public halves in hex (the last 32 bytes of openssl's DER forms).
wgkeys() {
	openssl genpkey -algorithm X25519 -out "$1" 2>/dev/null || return 1
	openssl pkey -in "$1" -outform DER | tail -c 32 | od -An -tx1 | tr -d ' \n'
	echo -n ' '
	openssl pkey -in "$1" -pubout -outform DER | tail -c 32 | od -An -tx1 | tr -d ' \n'
	echo
}
# wgset IFACE: writes stdin to wireguard-go's UAPI socket for IFACE
# ("set=1" and the settings); fails unless it answers errno=0.
wgset() {
	python3 -c 'import socket, sys
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
s.sendall(sys.stdin.buffer.read() + b"\n")
r = b""
while not r.endswith(b"\n\n"):
	c = s.recv(4096)
	if not c: break
	r += c
sys.exit(0 if b"errno=0" in r else r.decode())' "/var/run/wireguard/$1.sock"
}
if row w; then
	log "(w) one hop of wireguard-go (reference): client -> exit over the LAN"
	WGC=${P}w1c WGX=${P}w1x WGD=$STATE/wg1
	mkdir -p "$WGD"
	if ! command -v python3 >/dev/null || ! command -v openssl >/dev/null; then
		log "(w) skipped: python3 (for wireguard-go's UAPI socket) or openssl (for its keys) not found"
	elif ! (cd "$REPO" && go build -o "$BIN/wireguard-go" golang.zx2c4.com/wireguard); then
		log "(w) skipped: could not build wireguard-go"
	else
		read -r CPRIV CPUB < <(wgkeys "$WGD/client.pem")
		read -r XPRIV XPUB < <(wgkeys "$WGD/exit.pem")
		for r in client exit; do
			n=$WGC
			[[ $r == exit ]] && n=$WGX
			ip netns exec "$P-$r" env LOG_LEVEL=error "$BIN/wireguard-go" -f "$n" </dev/null >"$STATE/log/wireguard-go-$r.log" 2>&1 &
			echo "$! $P-$r" >"$STATE/pids/wireguard-go-$r"
		done
		for _ in $(seq 50); do [[ -S /var/run/wireguard/$WGC.sock && -S /var/run/wireguard/$WGX.sock ]] && break; sleep 0.1; done
		printf 'set=1\nprivate_key=%s\nlisten_port=51899\npublic_key=%s\nendpoint=192.0.2.100:51898\nallowed_ip=10.98.0.2/32\n' "$XPRIV" "$CPUB" | wgset "$WGX" &&
			printf 'set=1\nprivate_key=%s\nlisten_port=51898\npublic_key=%s\nendpoint=192.0.2.40:51899\nallowed_ip=0.0.0.0/0\n' "$CPRIV" "$XPUB" | wgset "$WGC" ||
			log "(w): configuring wireguard-go failed"
		inns client ip addr add 10.98.0.2/30 dev "$WGC"
		inns client ip link set "$WGC" up
		inns exit ip addr add 10.98.0.1/30 dev "$WGX"
		inns exit ip link set "$WGX" up
		inns exit nft -f - <<-EOT
			table ip bench_wg {
				chain postrouting_wg {
					type nat hook postrouting priority 50; policy accept;
					ip saddr 10.98.0.0/30 oifname "uplink0" masquerade
				}
			}
		EOT
		inns client ip route replace "$INET4/32" dev "$WGC"
		if inns client curl -sf --max-time 10 "http://$INET4/" >/dev/null; then
			measure w
			log "(w) iperf3 upload"
			UP[w]=$(goodput up)
		else
			log "(w): no page through wireguard-go; see $STATE/log/wireguard-go-*.log"
		fi
		inns client ip route replace "$INET4/32" via 10.99.0.1 dev pt0
		inns exit nft delete table ip bench_wg
		for r in client exit; do
			read -r wpid _ <"$STATE/pids/wireguard-go-$r"
			kill -TERM "$wpid" 2>/dev/null || true
			wait "$wpid" 2>/dev/null || true
			rm -f "$STATE/pids/wireguard-go-$r"
		done
	fi
fi

ratio() { awk -v x="$1" -v y="$2" 'BEGIN { if (x == "-" || y == "-" || y == 0) print "-"; else printf "%.3f\n", x / y }'; }
echo
echo "nymvpn through the local network (client -> 5 hops -> internet), iperf3 ${IPERF_TIME}s ($TCP_CC), $PINGS pings, idle ${IDLE_TIME}s"
printf '%-34s %9s %9s %8s %9s %9s %6s %9s %9s %8s %7s %9s\n' path "down Mb/s" "vs plain" "up Mb/s" "RTT ms" "vs plain" loss "RTT load" "RTT up" "CPU busy" "page s" "idle kB/s"
for k in a p b s f w c; do
	[[ $k == c ]] || row "$k" || continue
	printf '%-34s %9s %9s %8s %9s %9s %6s %9s %9s %8s %7s %9s\n' "${LABEL[$k]}" "${GP[$k]}" "$(ratio "${GP[$k]}" "${GP[c]}")" "${UP[$k]}" \
		"${RTT[$k]}" "$(ratio "${RTT[$k]}" "${RTT[c]}")" "${LOSS[$k]}" "${LRTT[$k]}" "${URTT[$k]}" "${CPU[$k]}" "${PAGE[$k]}" "${IDLE[$k]}"
done
echo "(s) is one 1 MiB HTTP download (curl --socks5-hostname) through nymvpn socks5 run as nobody, not iperf3"
echo "RTT load: average ping RTT while iperf3 -R runs (the tunnel's queueing under a download); RTT up: the same during the upload of (a) and (p)"
echo "page: /page, 1 HTML + 20 objects (500 KiB), 6 parallel connections; idle: kB/s the client's LAN interface sends with the tunnel up and unused"
[[ $ROWS != *f* || $ROWS != *w* ]] || echo "fast mode against one hop of wireguard-go: down $(ratio "${GP[f]}" "${GP[w]}"), up $(ratio "${UP[f]}" "${UP[w]}")"
[[ $ROWS != *f* ]] || echo "fast mode targets: goodput >= 0.5 of plain (down $(ratio "${GP[f]}" "${GP[c]}"), up $(ratio "${UP[f]}" "${UP[c]}")); idle RTT within 2 ms of plain ($(awk -v f="${RTT[f]}" -v c="${RTT[c]}" 'BEGIN { if (f == "-" || c == "-") print "-"; else printf "%+.2f ms\n", f - c }'))"
if ((${#WINDOWS[@]})); then
	echo
	echo "per-role cost: each process's CPU time (/proc/PID/stat) over the Sphinx packets it handled (its /metrics) and the MB through the tunnel"
	(cd "$REPO" && go run ./internal/rolecost "${WINDOWS[@]}") || log "rolecost failed"
fi
