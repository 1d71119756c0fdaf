#!/usr/bin/env bash
# bench/run.sh runs rpe's benchmark suite and prints one table: each figure,
# its value, the limit it is compared with (measured in the same run where
# it is a speed, else the goal), their ratio and the goal for the ratio.
#
#   bench/run.sh                 # the whole suite, about 10 minutes on 2 cores
#   RPE_BENCH_QUICK=1 bench/run.sh   # smaller sizes, no 200-node runs (~2 min)
#   RPE_BENCH_1000=1 bench/run.sh    # also the 1000-node run (up to 12 more minutes)
#
# Environment: RPE_BENCH_SIZE (BenchmarkOnePeer's release, default 1GiB;
# 256MiB when quick), RPE_BENCH_SIM_RUNS (real-clock 200-node runs, default
# 1), RPE_BENCH_OUT (directory for the raw outputs and the CPU profile,
# default a new temporary directory). Real-clock figures depend on what
# else the machine runs: run it on an idle machine, and run it again when a
# figure looks off. docs/BENCHMARKS.md keeps the table of record.
set -euo pipefail
cd "$(dirname "$0")/.."

quick=${RPE_BENCH_QUICK:-}
size=${RPE_BENCH_SIZE:-$([ -n "$quick" ] && echo 256MiB || echo 1GiB)}
simruns=${RPE_BENCH_SIM_RUNS:-1}
out=${RPE_BENCH_OUT:-$(mktemp -d -t rpe-bench-XXXXXX)}
mkdir -p "$out"
log() { echo "bench: $*" >&2; }

rows=()
# row FIGURE VALUE LIMIT RATIO GOAL
row() { rows+=("$(printf '%s\t%s\t%s\t%s\t%s' "$@")"); }
# metric FILE UNIT [NAME]: the value a benchmark (whose name starts with
# NAME) reported with that unit.
metric() { awk -v u="$2" -v n="${3:-Benchmark}" 'index($1, n) == 1 { for (i = 3; i < NF; i++) if ($(i+1) == u) v = $i } END { print v }' "$1"; }
# ratio A B: A/B with two decimals.
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b == 0 || a == "" || b == "") print "-"; else printf "%.2f", a / b }'; }
# field FILE NAME: a number field of a JSON report.
field() { sed -n "s/^ *\"$2\": \([-0-9.e+]*\),*$/\1/p" "$1" | head -1; }

log "go build ./... (output in $out)"
go build -o "$out/rpe" ./cmd/rpe

log "BenchmarkOnePeer, $size over loopback (rpe fetch vs a bare quic-go stream)"
RPE_BENCH_SIZE=$size go test ./bench -run '^$' -bench '^BenchmarkOnePeer$' -benchtime 1x -count 1 -timeout 10m | tee "$out/onepeer.txt" >&2
f=$(metric "$out/onepeer.txt" fetch-MiB/s); q=$(metric "$out/onepeer.txt" quic-MiB/s)
row "one peer $size: fetch MiB/s / bare quic-go MiB/s" "$f" "$q" "$(ratio "$f" "$q")" ">= 0.6 (stretch 0.85)"
c=$(metric "$out/onepeer.txt" fetch-cpu-s/GiB)
row "one peer: fetcher CPU s per GiB" "$c" "7 (goal)" "$(ratio "$c" 7)" "<= 1"
m=$(metric "$out/onepeer.txt" fetch-peak-rss-MiB)
row "one peer: fetcher peak RSS MiB" "$m" "64 (goal)" "$(ratio "$m" 64)" "<= 1"

log "BenchmarkFetchInProcess, $size (the same fetch in this process: allocations per chunk, both ends)"
RPE_BENCH_SIZE=$size go test ./bench -run '^$' -bench '^BenchmarkFetchInProcess$' -benchtime 1x -count 1 -timeout 10m | tee "$out/inprocess.txt" >&2
a=$(metric "$out/inprocess.txt" allocs/chunk); k=$(metric "$out/inprocess.txt" alloc-KiB/chunk)
row "one peer in-process: heap allocations per chunk (both ends)" "$a" "-" "-" "report"
row "one peer in-process: KiB allocated per chunk (both ends)" "$k" "-" "-" "report"

log "BenchmarkTransfer (wire vs bare quic-go, 256 MiB each way, 3 runs)"
go test ./wire -run '^$' -bench '^BenchmarkTransfer$' -benchtime 1x -count 3 -timeout 10m | tee "$out/transfer.txt" >&2
# The median of the three runs' ratios (wall clock), and of their CPU ratios.
median() { awk -v u="$2" '$1 ~ /^BenchmarkTransfer/ { for (i = 3; i < NF; i++) if ($(i+1) == u) print $i }' "$1" | sort -g | awk '{ v[NR] = $1 } END { if (NR) print v[int((NR + 1) / 2)] }'; }
w=$(median "$out/transfer.txt" wire-MiB/s); q=$(median "$out/transfer.txt" quic-MiB/s)
row "wire MiB/s / bare quic-go MiB/s (median of 3)" "$w" "$q" "$(median "$out/transfer.txt" ratio)" ">= 0.9"
row "wire: bare quic-go CPU / wire CPU per MiB (median of 3)" "$(median "$out/transfer.txt" wire-cpu-µs/MiB)" "$(median "$out/transfer.txt" quic-cpu-µs/MiB)" "$(median "$out/transfer.txt" cpu-ratio)" ">= 0.9"

log "BenchmarkVerify (VerifyFile vs crypto/sha256, 256 MiB)"
go test ./release -run '^$' -bench '^BenchmarkVerify$' -benchtime 4x -count 1 | tee "$out/verify.txt" >&2
for src in file stream; do
	n=BenchmarkVerify/$src
	v=$(metric "$out/verify.txt" verify-MB/s "$n"); s=$(metric "$out/verify.txt" sha256-MB/s "$n")
	row "verify ($src) MB/s / sha256 MB/s" "$v" "$s" "$(ratio "$v" "$s")" ">= 0.95"
done

if [ -z "$quick" ]; then
	for i in $(seq 1 "$simruns"); do
		log "rpe sim --nodes 200 --size 4MiB --up 512KiB --publisher-up 512KiB --net loopback (real clock, run $i of $simruns)"
		"$out/rpe" sim --nodes 200 --size 4MiB --up 512KiB --publisher-up 512KiB --net loopback \
			--quiet --report "$out/sim200-$i.json" --cpuprofile "$out/sim200-$i.prof" >&2 || log "sim run $i: not every node completed"
		r="$out/sim200-$i.json"
		t=$(field "$r" t_all_s); b=$(field "$r" t_min_s)
		row "200 nodes loopback, run $i: t_all s / bound s ($(field "$r" completed)/200 done)" "${t:--}" "$b" "$(ratio "$t" "$b")" "t_all <= 40 s"
		c=$(field "$r" cpu_s)
		row "200 nodes loopback, run $i: process CPU s" "$c" "50 (goal)" "$(ratio "$c" 50)" "<= 1"
	done
	log "TestSimVirtual: 200 nodes, 512 KiB/s, virtual clock"
	RPE_SIM_VIRTUAL=200 RPE_SIM_UP=512KiB RPE_SIM_JSON="$out/virtual200.json" \
		go test ./simulation -run '^TestSimVirtual$' -count 1 -timeout 20m >&2 || log "virtual run: not every node completed"
	r="$out/virtual200.json"
	if [ -f "$r" ]; then
		t=$(field "$r" t_all_s); b=$(field "$r" t_min_s)
		row "200 nodes virtual: t_all s / bound s" "${t:--}" "$b" "$(ratio "$t" "$b")" "<= 1.3 (stretch 1.1)"
		p=$(field "$r" publisher_upload_bytes); z=$(field "$r" size_bytes)
		row "200 nodes virtual: publisher copies" "$(ratio "$p" "$z")" "1 copy" "$(ratio "$p" "$z")" "<= 1.2"
	fi
fi

if [ -n "${RPE_BENCH_1000:-}" ]; then
	log "rpe sim --nodes 1000 --size 1MiB --up 256KiB --publisher-up 256KiB --idle 30s (real clock, up to 12 minutes)"
	"$out/rpe" sim --nodes 1000 --size 1MiB --up 256KiB --publisher-up 256KiB --idle 30s --timeout 10m \
		--quiet --report "$out/sim1000.json" --cpuprofile "$out/sim1000.prof" >&2 || log "1000-node run: not every node completed"
	r="$out/sim1000.json"
	t=$(field "$r" t_all_s); b=$(field "$r" t_min_s)
	row "1000 nodes netsim: t_all s / bound s ($(field "$r" completed)/1000 done)" "${t:--}" "$b" "$(ratio "$t" "$b")" "1000/1000 done"
	row "1000 nodes netsim: idle node CPU ms per second" "$(field "$r" idle_cpu_ms_per_node_s)" "2 (2 cores / 1000)" "$(ratio "$(field "$r" idle_cpu_ms_per_node_s)" 2)" "< 1"
fi

echo
printf '%-72s %10s %14s %7s  %s\n' figure value limit ratio goal
for r in "${rows[@]}"; do
	IFS=$'\t' read -r a b c d e <<<"$r"
	printf '%-72s %10s %14s %7s  %s\n' "$a" "$b" "$c" "$d" "$e"
done
echo
if [ -z "$quick" ]; then
	echo "raw outputs and CPU profiles: $out (go tool pprof -top $out/rpe $out/sim200-1.prof)"
else
	echo "raw outputs: $out"
fi
