#!/usr/bin/env bash
# test.sh — installs what the tests need (Debian packages) and runs the
# whole test suite: vet, the unit and integration tests with -race, a
# short run of every fuzz target, and the Linux v9fs check under qemu.
#
#   FUZZTIME=5s ./test.sh      (default 5s per fuzz target)
#   SKIP_V9FS=1 ./test.sh      skip the qemu check
set -euo pipefail
cd "$(dirname "$0")"

need=()
command -v fusermount3 >/dev/null || need+=(fuse3)
command -v qemu-system-x86_64 >/dev/null || need+=(qemu-system-x86)
dpkg -s busybox-static >/dev/null 2>&1 || need+=(busybox-static)
command -v cpio >/dev/null || need+=(cpio)
command -v depmod >/dev/null || [ -x /sbin/depmod ] || need+=(kmod)
command -v gcc >/dev/null || need+=(gcc)
command -v dig >/dev/null && command -v delv >/dev/null && command -v nsupdate >/dev/null || need+=(bind9-dnsutils)
command -v kdig >/dev/null || need+=(knot-dnsutils)
command -v openssl >/dev/null || need+=(openssl)
command -v curl >/dev/null || need+=(curl)
command -v git >/dev/null || need+=(git)
command -v ssh-keygen >/dev/null || need+=(openssh-client)
[ -x /usr/sbin/sshd ] || need+=(openssh-server)
command -v lego >/dev/null || need+=(lego)
# /apps: apps under Xvfb, captured by ffmpeg (libx264), input by xdotool,
# the clipboard by xclip, sound by a PulseAudio server of each app's own;
# xev is the test app, chromium the test browser.
command -v Xvfb >/dev/null || need+=(xvfb)
command -v ffmpeg >/dev/null || need+=(ffmpeg)
command -v xdotool >/dev/null || need+=(xdotool)
command -v xclip >/dev/null || need+=(xclip)
command -v xev >/dev/null || need+=(x11-utils)
command -v chromium >/dev/null || need+=(chromium)
command -v pulseaudio >/dev/null || need+=(pulseaudio) # an app's sound
command -v pactl >/dev/null || need+=(pulseaudio-utils)
if [ ${#need[@]} -gt 0 ]; then
	echo "test.sh: installing ${need[*]}" >&2
	SUDO=; [ "$(id -u)" = 0 ] || SUDO=sudo
	$SUDO apt-get update -qq >/dev/null
	DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

echo "== gofmt, go vet" >&2
bad=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))
[ -z "$bad" ] || { echo "gofmt needed: $bad" >&2; exit 1; }
go vet ./...

echo "== go build" >&2
go build -o cheshire ./cmd/cheshire

echo "== fuzz (${FUZZTIME:-5s} each)" >&2
for f in $(grep -l '^func Fuzz' $(find . -name '*_test.go' -not -path './.git/*')); do
	pkg=./$(dirname "${f#./}")
	for t in $(grep -o '^func Fuzz[A-Za-z0-9_]*' "$f" | sed 's/^func //'); do
		# A failure prints the fuzzer's report (a crasher is written to
		# testdata/fuzz). One retry, because Go 1.26's coordinator can
		# report a bare "context deadline exceeded" at the end of
		# -fuzztime with nothing found (golang/go#75804, fixed in 1.27);
		# a real bug fails again, at once, on its saved input.
		# That bare report writes no failing input; a real failure always
		# does ("Failing input written to ..."), so a retry that fails
		# with the bare report alone again is that bug, not a finding.
		out=$(mktemp)
		if ! go test -run='^$' -fuzz="^$t\$" -fuzztime="${FUZZTIME:-5s}" "$pkg" >"$out" 2>&1; then
			echo "fuzz $t in $pkg failed; its report:" >&2; tail -20 "$out" >&2
			if ! go test -run='^$' -fuzz="^$t\$" -fuzztime="${FUZZTIME:-5s}" "$pkg" >"$out" 2>&1; then
				if grep -q 'context deadline exceeded' "$out" && ! grep -q 'Failing input written' "$out"; then
					echo "fuzz $t in $pkg: the coordinator's bare deadline report again, no failing input (golang/go#75804)" >&2
				else
					echo "fuzz $t in $pkg failed again:" >&2; tail -40 "$out" >&2; rm -f "$out"; exit 1
				fi
			fi
		fi
		rm -f "$out"
		echo "fuzz $pkg $t ok" >&2
	done
done

echo "== go test -race" >&2
export CHESHIRE_BIN=$PWD/cheshire
go test -race -count=1 -timeout 30m ./...
