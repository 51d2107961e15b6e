# scripts/lib/deps.sh - install missing Debian packages (sourced by scripts/).
# Uses apt-get, through sudo when not root; runs "apt-get update" only when
# something is missing, so a machine that has everything is not touched.

deps_missing() {
	local p missing=()
	for p in "$@"; do
		dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null | grep -qx installed ||
			missing+=("$p")
	done
	echo "${missing[@]}"
}

deps_install() {
	local missing sudo=""
	missing=$(deps_missing "$@")
	[ -z "$missing" ] && return 0
	if [ "$(id -u)" -ne 0 ]; then
		command -v sudo >/dev/null || { echo "need root or sudo to install: $missing" >&2; return 1; }
		sudo="sudo"
	fi
	echo "installing: $missing" >&2
	$sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq
	# shellcheck disable=SC2086
	$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >&2
}

# What building luamta needs.
DEPS_BUILD="gcc cmake make pkg-config liblua5.4-dev lua5.4 libev-dev libmbedtls-dev
	libcurl4-openssl-dev libc-ares-dev libhiredis-dev libpsl-dev publicsuffix libsodium-dev"
# What the tests need on top: the clients, and the servers the specs start
# on loopback (dnsmasq, redis-server, Postfix's smtp-sink, Dovecot's LMTP,
# HAProxy); install_spec formats the man page (groff, man, col) and checks
# the unit with systemd-analyze, which works without systemd running;
# Prometheus's promtool checks what --metrics serves; dkimpy and OpenDKIM's
# library (reached from Python through ctypes) check DKIM signatures both
# ways; python3-spf brings the OpenSPF RFC 7208 test suite (in its
# documentation) and pyspf, which spf_spec compares with, on dnspython,
# with python3-yaml to read the suite. Exim (the BDAT client of
# exim_bdat_spec) is not installed, it conflicts with postfix:
# scripts/lib/exim.sh unpacks its package privately, and these are the
# shared libraries its binary needs.
DEPS_TEST="lua-busted lua-socket lua-cjson swaks libnet-ssleay-perl python3 openssl curl procps
	coreutils valgrind ca-certificates dnsmasq-base python3-dnslib python3-yaml python3-spf
	python3-dnspython redis-server redis-tools
	postfix dovecot-core dovecot-lmtpd haproxy groff-base man-db bsdextrautils systemd prometheus
	python3-dkim python3-nacl libopendkim11
	libdb5.3 libgnutls-dane0 libgnutls30 libidn12 libidn2-0 libnsl2 libpcre2-8-0"

