# scripts/lib/bench_deps.sh - install what scripts/bench needs (sourced after
# scripts/lib/deps.sh). Postfix ships the load generator (smtp-source) and the
# reference server (smtp-sink); the bench wants those two programs, never a
# Postfix mail system, so the package is installed unconfigured and no
# Postfix daemon is left running or enabled.

# Debian packages the bench needs on top of $DEPS_BUILD.
DEPS_BENCH="python3 postfix"

bench_install_postfix() {
	local sudo=""
	[ "$(id -u)" -ne 0 ] && sudo="sudo"
	[ -z "$(deps_missing postfix)" ] && return 0
	# "No configuration": no main.cf, nothing to start, no questions asked.
	echo "postfix postfix/main_mailer_type select No configuration" |
		$sudo debconf-set-selections
	deps_install postfix || return 1
	# A freshly installed package may have started and enabled the daemon
	# (on a host where invoke-rc.d allows it): undo both.
	if [ -d /run/systemd/system ] && command -v systemctl >/dev/null; then
		$sudo systemctl disable --now postfix >/dev/null 2>&1 || true
	elif command -v update-rc.d >/dev/null; then
		$sudo update-rc.d postfix disable >/dev/null 2>&1 || true
	fi
	$sudo postfix stop >/dev/null 2>&1 || true
	return 0
}

# Warns when a Postfix master daemon runs (one we did not install is left
# alone: it may be somebody's mail server).
bench_check_postfix_daemon() {
	if pgrep -x master >/dev/null 2>&1 && pgrep -a -x master | grep -q postfix; then
		echo "bench: note: a Postfix master daemon is running; the bench does not use it" >&2
	fi
}

# Deps for scripts/test's smoke spec (spec/integration/bench_smoke_spec.lua):
# it needs /usr/sbin/smtp-source and /usr/sbin/smtp-sink, i.e. postfix,
# installed with bench_install_postfix so that no daemon is left running.
