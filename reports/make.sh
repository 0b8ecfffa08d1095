#!/bin/sh
# Regenerate the example reports from the bundled traces:   sh reports/make.sh
set -e
cd "$(dirname "$0")/.."
for t in mixed-small frag-a numa-frag compact-frag k612-frag i386-frag; do
  pagereplay compare "traces/$t" -o "reports/$t" --plotlyjs cdn
done
# what-ifs: mobility grouping off; compaction off on a host that ran compact_memory
pagereplay compare traces/frag-a --set mobility_grouping=off -o reports/frag-a-mobility-off \
  --plotlyjs cdn
pagereplay compare traces/compact-frag --set compaction=off -o reports/compact-frag-no-compaction \
  --plotlyjs cdn
# the upgrade what-if: 6.12's requests under 6.1's rules
pagereplay compare traces/k612-frag --kernel 6.1 -o reports/k612-frag-under-6.1 --plotlyjs cdn
# who fragmented memory (explain.json), and a perf kmem recording read natively
pagereplay explain traces/frag-a -o reports/frag-a-explain
pagereplay report traces/perf-small -o reports/perf-small --plotlyjs cdn
