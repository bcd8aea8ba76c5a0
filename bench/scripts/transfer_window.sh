#!/bin/bash
# The unavailability window of a leadership transfer: a pipelined sender
# (`ordo send --stdin`, 400,000 small messages) runs while leadership is
# handed over 6 times, 1 s apart; the largest gap between consecutive
# entries' timestamps around each transfer is the time no entry was
# appended. Baseline: the gaps of the same run away from the transfers.
set -u
B="$(cd "$(dirname "$0")/../.." && pwd)/target/release/ordo"   # cargo build --release -p ordo-engine --bin ordo
D="${TMPDIR:-/tmp}/ordo-transfer"
pkill -f "$D/c/node" ; sleep 1; rm -rf "$D"; mkdir -p "$D"
$B init --nodes 3 --dir $D/c --base-port 33000 > /dev/null
for i in 1 2 3; do (RUST_LOG=info $B node --config $D/c/node$i/ordo.toml > $D/n$i.log 2>&1 &); done
sleep 2
$B send --node 127.0.0.1:33000 warm > /dev/null
python3 -c "
for i in range(400000): print('m%d' % i)
" | $B send --node 127.0.0.1:33000 --stdin --timeout 30 > $D/acks.jsonl &
SENDER=$!
sleep 2
: > $D/transfers.txt
for t in 2 3 1 2 3 1; do
  s=$(date +%s%6N)
  $B transfer --node 127.0.0.1:33000 --to $t --timeout 10 > /dev/null
  e=$(date +%s%6N)
  echo "$s $e $t" >> $D/transfers.txt
  sleep 1
done
wait $SENDER
pkill -f "$D/c/node"
python3 - "$D" <<'PY'
import json, sys
d = sys.argv[1]
acks = [json.loads(l) for l in open(d + "/acks.jsonl") if l.strip()]
ts = sorted(a["ts"] for a in acks if "ts" in a)
errors = sum(1 for a in acks if "error" in a)
tr = [tuple(map(int, l.split()[:2])) for l in open(d + "/transfers.txt")]
gaps = [(ts[i + 1] - ts[i], ts[i]) for i in range(len(ts) - 1)]
near = lambda t: any(s - 50_000 <= t <= e + 50_000 for s, e in tr)
print(f"acknowledged {len(ts)}, failed {errors}")
print("ordo transfer durations (ms):", [round((e - s) / 1000, 1) for s, e in tr])
print("largest gap around each transfer (ms):",
      [round(max([g for g, t in gaps if s - 50_000 <= t <= e + 50_000] or [0]) / 1000, 1) for s, e in tr])
base = sorted(g for g, t in gaps if not near(t))
print(f"gaps away from transfers: p50 {base[len(base)//2]/1000:.3f} ms, p99 {base[int(len(base)*0.99)]/1000:.3f} ms, max {base[-1]/1000:.1f} ms")
PY
