#!/usr/bin/env bash
# scripts/lib/exim.sh DIR - make Debian's Exim binary available under DIR,
# for spec/helpers/exim.lua, without installing Exim: exim4-daemon-light
# conflicts with the postfix package the other specs need (both provide
# mail-transport-agent), so its .deb is fetched with "apt-get download" and
# unpacked with "dpkg -x" into DIR/root; the binary is then
# DIR/root/usr/sbin/exim4. Its shared libraries are plain packages, in
# scripts/lib/deps.sh's DEPS_TEST. Does nothing when the binary is there.
#
# Debian builds Exim with its user fixed at compile time as "Debian-exim"
# (looked up by name at start, before any configuration is read, even for
# -bV), and the package's maintainer scripts, which create that user, do
# not run here; so this creates the system user when it is missing, as
# exim4-base's postinst would (no home, no login shell). Needs root.
set -euo pipefail
dir=${1:?usage: exim.sh DIR}
bin="$dir/root/usr/sbin/exim4"

if ! getent passwd Debian-exim >/dev/null; then
	[ "$(id -u)" -eq 0 ] || { echo "exim.sh: creating the Debian-exim user needs root" >&2; exit 1; }
	getent group Debian-exim >/dev/null || groupadd --system Debian-exim
	useradd --system --gid Debian-exim --no-create-home --home-dir /nonexistent \
		--shell /usr/sbin/nologin Debian-exim
fi

[ -x "$bin" ] && exit 0

mkdir -p "$dir"
work=$(mktemp -d "$dir/fetch.XXXXXX")
trap 'rm -rf "$work"' EXIT
# apt-get download writes to the current directory; apt's _apt user must be
# able to write there, or apt warns and downloads as root anyway.
chmod 755 "$work"
cd "$work"
# A package list older than the archive names a version the mirror no
# longer has: refresh the lists once and try again.
if ! apt-get download -q exim4-daemon-light >&2; then
	apt-get update -qq >&2
	apt-get download -q exim4-daemon-light >&2
fi
dpkg -x exim4-daemon-light_*.deb root
rm -rf "$dir/root"
mv root "$dir/root"
[ -x "$bin" ] || { echo "exim.sh: no $bin in the package" >&2; exit 1; }
