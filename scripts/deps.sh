#!/usr/bin/env bash
# make deps: installs the Debian packages of scripts/deps.txt that are
# missing. When all are present it only asks dpkg (no apt-get update, no
# network) and says so; as root it runs apt-get update and installs only
# the missing ones; otherwise it stops and prints the command to run.
#
#   scripts/deps.sh           every package (make test, make chaos, make bench)
#   scripts/deps.sh demo      only what make demo needs
#   scripts/deps.sh --list    print the packages and exit
#   TABBY_NO_DEPS=1           skip the check (a non-Debian system that has
#                             the tools under other package names)
set -euo pipefail
list_file="$(dirname "$0")/deps.txt"
set_name="${1:-all}"

# packages SET: the package names of deps.txt in SET (all, or demo).
packages() {
	sed 's/#.*//' "$list_file" | awk -v set="$1" 'NF && (set == "all" || $2 == set) { print $1 }'
}

if [ "$set_name" = --list ]; then
	packages all
	exit 0
fi
case "$set_name" in
all | demo) ;;
*) echo "deps.sh: unknown set \"$set_name\" (want all or demo)" >&2; exit 2 ;;
esac
mapfile -t want < <(packages "$set_name")
if [ "${TABBY_NO_DEPS:-}" = 1 ]; then
	echo "make deps: skipped (TABBY_NO_DEPS=1); Tabby needs the equivalents of: ${want[*]}"
	exit 0
fi
if ! command -v dpkg-query >/dev/null; then
	echo "make deps: this is not a Debian or Ubuntu system (no dpkg-query)." >&2
	echo "Install the equivalents of: ${want[*]}" >&2
	echo "then run make with TABBY_NO_DEPS=1." >&2
	exit 1
fi

# missing: the packages of want that dpkg does not have installed.
missing() {
	local installed
	installed=$(dpkg-query -W -f='${Package} ${Status}\n' "${want[@]}" 2>/dev/null | awk '$NF == "installed" && $(NF-1) == "ok" { print $1 }' || true)
	for p in "${want[@]}"; do
		grep -qxF "$p" <<<"$installed" || echo "$p"
	done
}

mapfile -t need < <(missing)
if [ "${#need[@]}" -eq 0 ]; then
	echo "make deps: all ${#want[@]} packages present (${set_name})"
	exit 0
fi
install_line="apt-get install -y --no-install-recommends ${need[*]}"
if [ "$(id -u)" != 0 ]; then
	echo "make deps: ${#need[@]} of ${#want[@]} packages missing: ${need[*]}" >&2
	echo "Run as root (sudo make deps), or install them yourself:" >&2
	echo "  sudo apt-get update && sudo $install_line" >&2
	exit 1
fi
echo "make deps: installing ${need[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q --no-install-recommends "${need[@]}"
mapfile -t still < <(missing)
if [ "${#still[@]}" -ne 0 ]; then
	echo "make deps: still missing after apt-get install: ${still[*]}" >&2
	exit 1
fi
echo "make deps: installed ${#need[@]} packages; all ${#want[@]} present (${set_name})"
