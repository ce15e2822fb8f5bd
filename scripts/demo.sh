#!/usr/bin/env bash
# make demo: the walkthrough of "IP per Container with Calico CNI on DC/OS"
# (2017) on one machine. It brings up a 3-host Tabby lab in network
# namespaces, starts Marathon-style containers on different hosts, and
# shows their IPs, their connectivity, their DNS names and a policy taking
# effect. Checks of parts that have not landed yet are reported, not fatal
# (DEMO_STRICT=1 makes every check fatal).
#
#   sudo make demo                  build, then run this script
#   LAB=demo2 scripts/demo.sh       another lab name
#   DEMO_KEEP=0 scripts/demo.sh     remove the lab at the end
#   IPFAMILY=dual scripts/demo.sh   a dual-stack lab (make demo IPFAMILY=dual):
#                                   every check over IPv6 too
#
# Needs root, iproute2 and the binaries of `make build` in bin/.
set -euo pipefail
cd "$(dirname "$0")/.."

LAB="${LAB:-demo}"
KEEP="${DEMO_KEEP:-1}"
STRICT="${DEMO_STRICT:-0}"
IPFAMILY="${IPFAMILY:-ipv4}"
case "$IPFAMILY" in
ipv4 | dual) ;;
*) echo "IPFAMILY=$IPFAMILY: the demo runs ipv4 or dual" >&2; exit 2 ;;
esac
T="$PWD/bin/tabby"

bold() { printf '\n\033[1m%s\033[0m\n' "$*"; }
show() { printf '\033[2m$ %s\033[0m\n' "$*"; "$@"; }
failures=0
pending=0
# check DESCRIPTION HARD CMD...: runs CMD, reports ✓ or ✗; a failed hard
# check fails the demo, a failed soft one is "not yet".
# Soft checks are tried for a while: routes between hosts take a moment
# to converge after a container starts.
check() {
	local desc="$1" hard="$2"
	shift 2
	local out tries=1
	[ "$hard" = soft ] && tries="${DEMO_TRIES:-10}"
	while :; do
		if out=$("$@" 2>&1); then
			printf '  \033[32m✓\033[0m %s\n' "$desc"
			[ -n "$out" ] && printf '      %s\n' "$out"
			return 0
		fi
		tries=$((tries - 1))
		[ "$tries" -gt 0 ] || break
		sleep 1
	done
	if [ "$hard" = hard ] || [ "$STRICT" = 1 ]; then
		printf '  \033[31m✗ %s\033[0m\n      %s\n' "$desc" "$out"
		failures=$((failures + 1))
	else
		printf '  \033[33m… %s: not yet\033[0m (%s)\n' "$desc" "$(echo "$out" | tail -n 1)"
		pending=$((pending + 1))
	fi
	return 0
}
# refuse CMD...: the check passes when CMD fails (traffic a policy denies).
refuse() { ! "$@" >/dev/null 2>&1; }

if [ "$(id -u)" != 0 ]; then
	echo "make demo builds network namespaces: run it as root (sudo make demo)" >&2
	exit 1
fi
command -v ip >/dev/null || { echo "make demo needs iproute2's ip" >&2; exit 1; }
[ -x "$T" ] && [ -x bin/tabby-cni ] || { echo "run make build first (bin/tabby, bin/tabby-cni)" >&2; exit 1; }

if "$T" lab list -o json | grep -q "\"name\": \"$LAB\""; then
	bold "Removing the lab $LAB of an earlier run"
	show "$T" lab down "$LAB"
fi

bold "1. A DC/OS-like cluster in network namespaces: a master (datastore, Mesos state, DNS) and 3 agents"
show "$T" lab up "$LAB" --nodes 3 --ip-family "$IPFAMILY"

bold "2. Marathon apps on different hosts get their own IPs through tabby-cni (as Mesos attaches them)"
run() { # run NAME NODE APP LABELS... -- CMD...
	local name="$1" node="$2" app="$3"
	shift 3
	printf '\033[2m$ tabby lab run %s --node %s --name %s --mesos-app %s %s\033[0m\n' "$LAB" "$node" "$name" "$app" "$*" >&2
	"$T" lab run "$LAB" --node "$node" --name "$name" --mesos-app "$app" "$@"
}
SERVE=("$T" lab http serve --listen :80)
FE=$(run frontend h1 /demo/frontend --label app=frontend --label group=development -- "${SERVE[@]}" --text "hello from frontend on h1")
TE=$(run tester h1 /demo/tester --label app=tester --label group=development -- sleep infinity)
OT=$(run other h1 /demo/other --label app=other -- sleep infinity)
BE=$(run backend h2 /demo/backend --label app=backend --label group=development -- "${SERVE[@]}" --text "hello from backend on h2")
DB=$(run db h3 /demo/db --label app=db -- "${SERVE[@]}" --text "hello from db on h3")
show "$T" lab ls "$LAB"
show "$T" --lab "$LAB" get workloadendpoints -A
show "$T" --lab "$LAB" ipam show || true

GET=("$T" lab http get --timeout 2s)
bold "3. Connectivity"
check "tester (h1) -> frontend (h1) $FE, same host" hard "$T" lab exec "$LAB" tester -- "${GET[@]}" "http://$FE/"
check "host h1 -> frontend $FE (health checks)" hard "$T" lab ssh "$LAB" h1 -- "${GET[@]}" "http://$FE/"
check "host h2 -> backend $BE (health checks)" hard "$T" lab ssh "$LAB" h2 -- "${GET[@]}" "http://$BE/"
check "tester (h1) -> backend (h2) $BE, across hosts" soft "$T" lab exec "$LAB" tester -- "${GET[@]}" "http://$BE/"
check "backend (h2) -> db (h3) $DB, across hosts" soft "$T" lab exec "$LAB" backend -- "${GET[@]}" "http://$DB/"

bold "4. Containers talk by name (tabby dns on the master reads the lab's Mesos state)"
MASTER=$("$T" lab nodes "$LAB" | awk '$1 == "master" { split($2, a, ","); print a[1] }')
check "the master serves the Mesos state DNS reads (http://$MASTER:5050/master/state)" hard \
	"$T" lab ssh "$LAB" master -- "${GET[@]}" "http://$MASTER:5050/master/health"
if "$T" dns --help >/dev/null 2>&1; then
	check "host h1 resolves frontend.demo.marathon.mesos" hard "$T" lab ssh "$LAB" h1 -- getent hosts frontend.demo.marathon.mesos
	check "tester -> http://frontend.demo.marathon.mesos" soft "$T" lab exec "$LAB" tester -- "${GET[@]}" http://frontend.demo.marathon.mesos/
	check "tester -> http://backend-demo.marathon.containerip.dcos.thisdcos.directory" soft \
		"$T" lab exec "$LAB" tester -- "${GET[@]}" http://backend-demo.marathon.containerip.dcos.thisdcos.directory/
else
	echo "  (no tabby dns in this build)"
fi

# ip6 NAME: the container's IPv6 address (lab ls lists IPv4,IPv6).
ip6() { "$T" lab ls "$LAB" | awk -v c="$1" '$1 == c { split($4, a, ","); print a[2] }'; }
if [ "$IPFAMILY" = dual ]; then
	bold "4b. Dual stack: every container also has an IPv6 address (fd00:244::/64), routed over IPv6 BGP sessions"
	FE6=$(ip6 frontend)
	BE6=$(ip6 backend)
	DB6=$(ip6 db)
	check "tester (h1) -> frontend (h1) [$FE6], same host, over IPv6" hard "$T" lab exec "$LAB" tester -- "${GET[@]}" "http://[$FE6]/"
	check "tester (h1) -> backend (h2) [$BE6], across hosts, over IPv6" soft "$T" lab exec "$LAB" tester -- "${GET[@]}" "http://[$BE6]/"
	check "backend (h2) -> db (h3) [$DB6], across hosts, over IPv6" soft "$T" lab exec "$LAB" backend -- "${GET[@]}" "http://[$DB6]/"
	check "tester -> ping -6 backend" soft "$T" lab exec "$LAB" tester -- ping -6 -c1 -W2 "$BE6"
	if command -v dig >/dev/null && "$T" dns --help >/dev/null 2>&1; then
		check "dig AAAA backend-demo.marathon.mesos from tester" soft \
			sh -c "[ \"\$('$T' lab exec '$LAB' tester -- dig +short AAAA backend-demo.marathon.mesos)\" = '$BE6' ]"
	fi
fi

bold "5. A policy takes effect: only testers may reach the frontend, on port 80"
POLICY=$(mktemp)
trap 'rm -f "$POLICY"' EXIT
cat >"$POLICY" <<'EOF'
apiVersion: tabby.dev/v1
kind: GlobalNetworkPolicy
metadata:
  name: frontend-from-tester
spec:
  selector: app == 'frontend'
  types: [Ingress]
  ingress:
  - action: Allow
    protocol: TCP
    source:
      selector: app == 'tester'
    destination:
      ports: [80]
EOF
cat "$POLICY"
check "other -> frontend before the policy" hard "$T" lab exec "$LAB" other -- "${GET[@]}" "http://$FE/"
show "$T" --lab "$LAB" apply -f "$POLICY"
sleep 1
check "tester -> frontend (allowed)" hard "$T" lab exec "$LAB" tester -- "${GET[@]}" "http://$FE/"
check "other -> frontend (denied)" hard refuse "$T" lab exec "$LAB" other -- "${GET[@]}" "http://$FE/"
if [ "$IPFAMILY" = dual ]; then
	check "tester -> frontend over IPv6 (allowed)" hard "$T" lab exec "$LAB" tester -- "${GET[@]}" "http://[$FE6]/"
	check "other -> frontend over IPv6 (denied, as over IPv4)" hard refuse "$T" lab exec "$LAB" other -- "${GET[@]}" "http://[$FE6]/"
fi
check "host h1 -> frontend (health checks still pass)" hard "$T" lab ssh "$LAB" h1 -- "${GET[@]}" "http://$FE/"

bold "Summary"
echo "  $failures failed, $pending not yet available"
if [ "$KEEP" = 1 ]; then
	cat <<EOF
  The lab is still up. Try:
    $T lab nodes $LAB
    $T lab ssh $LAB h1 -- ip route
    $T lab exec $LAB tester -- sh
    $T --lab $LAB get globalnetworkpolicies
    $T lab down $LAB
EOF
else
	show "$T" lab down "$LAB"
fi
[ "$failures" = 0 ]
