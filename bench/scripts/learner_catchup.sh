#!/bin/bash
# 1 GiB of log through a 3-voter cluster (16,384 messages of 64 KiB), then
# node 4 is laid out with `ordo init --add` and added as a learner; measure
# from `ordo member add` until node 4's log is durable up to the leader's
# last index before the add.
set -u
B="$(cd "$(dirname "$0")/../.." && pwd)/target/release/ordo"   # cargo build --release -p ordo-engine --bin ordo
D="${TMPDIR:-/tmp}/ordo-learner"
pkill -f "$D/c/node" ; sleep 1; rm -rf "$D"; mkdir -p "$D"
$B init --nodes 3 --dir $D/c --base-port 32500 > /dev/null
for i in 1 2 3; do (RUST_LOG=info $B node --config $D/c/node$i/ordo.toml > $D/n$i.log 2>&1 &); done
sleep 2
python3 -c "
import sys
line = 'x' * 65535 + '\n'
out = sys.stdout
for i in range(16384): out.write(line)
" > $D/payload.txt
t0=$(date +%s.%N)
$B send --node 127.0.0.1:32500 --stdin < $D/payload.txt | wc -l
t1=$(date +%s.%N)
echo "sent 1 GiB in $(echo "$t1 - $t0" | bc) s"
du -sh $D/c/node1/data/log
$B init --add 4 --dir $D/c --base-port 32500 > /dev/null
(RUST_LOG=info $B node --config $D/c/node4/ordo.toml > $D/n4.log 2>&1 &)
sleep 1
last=$($B status --node 127.0.0.1:32500 | python3 -c "import json,sys; print(json.load(sys.stdin)['last_index'])")
t2=$(date +%s.%N)
$B member add --node 127.0.0.1:32500 --dir $D/c --id 4 --learner
while true; do
  d=$($B status --node 127.0.0.1:32503 | python3 -c "import json,sys; print(json.load(sys.stdin)['durable_index'])")
  [ "$d" -ge "$last" ] && break
  sleep 0.02
done
t3=$(date +%s.%N)
echo "learner durable at index $d (leader's last before the add: $last) $(echo "$t3 - $t2" | bc) s after member add"
du -sh $D/c/node4/data/log
pkill -f "$D/c/node"
