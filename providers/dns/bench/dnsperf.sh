#!/usr/bin/env bash
# dnsperf.sh — dnsperf against providers/dns and against nsd serving the
# same 1,000-record zone, unsigned and signed (DNSSEC, DO bit), in one
# run. nsd is started on a free loopback port with its own configuration
# in a temporary directory. Each server gets one CPU (DNSPERF_CPU_SERVER,
# default 1; ours runs with GOMAXPROCS=1, nsd with server-count 1) and
# dnsperf another (DNSPERF_CPU_CLIENT, default 0).
#
#   ./bench/dnsperf.sh                 10 s per run
#   DNSPERF_SECONDS=30 ./bench/dnsperf.sh
set -euo pipefail
cd "$(dirname "$0")/.."
for t in dnsperf nsd taskset; do
	command -v "$t" >/dev/null || { echo "dnsperf.sh: $t is not installed" >&2; exit 1; }
done
bin=$(mktemp -d)
trap 'rm -rf "$bin"' EXIT
go test -c -o "$bin/dns.test" .
export DNSPERF=1
GOMAXPROCS=1 taskset -c "${DNSPERF_CPU_SERVER:-1}" "$bin/dns.test" -test.run '^TestDNSPerf$' -test.count=1 -test.v
