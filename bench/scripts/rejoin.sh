#!/bin/bash
# 1 GiB of log through a 3-voter cluster, then a follower's data/log is wiped;
# measure from its restart until `ordo status` says repairing=false with the
# leader's last index applied.
set -u
B="$(cd "$(dirname "$0")/../.." && pwd)/target/release/ordo"   # cargo build --release -p ordo-engine --bin ordo
D="${TMPDIR:-/tmp}/ordo-rejoin"
pkill -f "$D/c/node" ; sleep 1; rm -rf "$D"; mkdir -p "$D"
$B init --nodes 3 --dir $D/c --base-port 32000 > /dev/null
for i in 1 2 3; do (RUST_LOG=info $B node --config $D/c/node$i/ordo.toml > $D/n$i.log 2>&1 &); done
sleep 2
L=$($B status --node 127.0.0.1:32000 | python3 -c "import json,sys; print(json.load(sys.stdin)['leader'])")
F=$(( L % 3 + 1 ))
python3 -c "
import sys
line = 'x' * 65535 + '\n'
out = sys.stdout
for i in range(16384): out.write(line)
" > $D/payload.txt
t0=$(date +%s.%N)
$B send --node 127.0.0.1:$((32000+L-1)) --stdin < $D/payload.txt | wc -l
t1=$(date +%s.%N)
echo "sent 1 GiB in $(echo "$t1 - $t0" | bc) s"
sleep 2
$B status --node 127.0.0.1:$((32000+F-1))
kill -KILL $(pgrep -f "$D/c/node$F/ordo.toml")
du -sh $D/c/node$F/data/log
rm -rf $D/c/node$F/data/log
t2=$(date +%s.%N)
(RUST_LOG=info $B node --config $D/c/node$F/ordo.toml >> $D/n$F.log 2>&1 &)
LAST=$($B status --node 127.0.0.1:$((32000+L-1)) | python3 -c "import json,sys; print(json.load(sys.stdin)['last_index'])")
while true; do
  S=$($B status --node 127.0.0.1:$((32000+F-1)) --timeout 1 2>/dev/null)
  if echo "$S" | python3 -c "import json,sys; d=json.load(sys.stdin); sys.exit(0 if (not d['repairing'] and d['applied_index']>=$LAST) else 1)" 2>/dev/null; then break; fi
  sleep 0.1
done
t3=$(date +%s.%N)
echo "follower $F repaired and applied $LAST in $(echo "$t3 - $t2" | bc) s after its restart"
echo "$S"
grep -hE "repair|lost state" $D/n$F.log | sed 's/\x1b\[[0-9;]*m//g' | cut -c1-220
pkill -f "$D/c/node"
