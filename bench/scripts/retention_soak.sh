#!/bin/bash
# Retention under sustained load: 3 voters with storage.retain_bytes set,
# `ordo send --stdin` writing without pause for DURATION seconds (default
# 600), and every 10 s each node's resident memory (VmRSS), its log
# directory's disk use and its certificates file's disk use. Prints one
# line per sample and a summary: RSS after warm-up (the first WARMUP
# seconds, default 120) must stay within 5 %, the log under the bound.
set -u
B="$(cd "$(dirname "$0")/../.." && pwd)/target/release/ordo"   # cargo build --release -p ordo-engine --bin ordo
D="${TMPDIR:-/tmp}/ordo-retention"
DURATION="${DURATION:-600}"
WARMUP="${WARMUP:-120}"
RETAIN=$((256 << 20))
SEGMENT=$((16 << 20))
pkill -f "$D/c/node" ; sleep 1; rm -rf "$D"; mkdir -p "$D"
$B init --nodes 3 --dir $D/c --base-port 32700 > /dev/null
for i in 1 2 3; do
  sed -i "s/^retain_bytes = 0\$/retain_bytes = $RETAIN/; s/^segment_bytes = .*/segment_bytes = $SEGMENT/" $D/c/node$i/ordo.toml
done
for i in 1 2 3; do (RUST_LOG=warn $B node --config $D/c/node$i/ordo.toml > $D/n$i.log 2>&1 &); done
sleep 2
pids=$(for i in 1 2 3; do pgrep -f "$D/c/node$i/ordo.toml"; done)
# 256-byte messages, as fast as `ordo send` pipelines them, in batches of
# 20,000 (`ordo send --stdin` reads its whole input before it sends).
python3 -c "
import sys
sys.stdout.write(('y' * 255 + '\n') * 20000)
" > $D/batch.txt
(
  end=$(( $(date +%s) + DURATION ))
  while [ "$(date +%s)" -lt "$end" ]; do
    $B send --node 127.0.0.1:32700 --stdin < $D/batch.txt > /dev/null 2>> $D/send.err
  done
) &
start=$(date +%s)
echo "t_s node rss_kib log_bytes certificates_bytes last_index"
while true; do
  sleep 10
  now=$(( $(date +%s) - start ))
  [ "$now" -gt "$DURATION" ] && break
  i=0
  for pid in $pids; do
    i=$((i + 1))
    rss=$(awk '/VmRSS/ {print $2}' /proc/$pid/status 2>/dev/null || echo 0)
    log=$(find $D/c/node$i/data/log -type f -printf "%b\n" | awk '{s+=$1*512} END {print s+0}')
    certs=$(find $D/c/node$i/data/certificates -printf "%b\n" | awk '{print $1*512}')
    last=$($B status --node 127.0.0.1:$((32699 + i)) 2>/dev/null | python3 -c "import json,sys; print(json.load(sys.stdin)['last_index'])" 2>/dev/null || echo -)
    echo "$now $i $rss $log $certs $last"
  done
done | tee $D/samples.txt
wait
python3 - "$D/samples.txt" "$WARMUP" "$RETAIN" <<'EOF'
import sys
path, warmup, bound = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rows = [l.split() for l in open(path) if l[0].isdigit()]
for node in sorted({r[1] for r in rows}):
    mine = [r for r in rows if r[1] == node]
    after = [int(r[2]) for r in mine if int(r[0]) > warmup]
    logs = [int(r[3]) for r in mine]
    certs = [int(r[4]) for r in mine]
    lo, hi = min(after), max(after)
    print(f"node {node}: RSS after {warmup} s {lo/1024:.1f}-{hi/1024:.1f} MiB "
          f"(spread {100*(hi-lo)/lo:.1f} %), log max {max(logs)/2**20:.1f} MiB "
          f"(bound {bound/2**20:.0f} MiB), certificates max {max(certs)/2**20:.1f} MiB, "
          f"last index {mine[-1][5]}")
EOF
cat $D/send.err | tail -2
pkill -f "$D/c/node"
