#!/bin/sh
# Regenerate the example reports from the bundled traces:   sh reports/make.sh
set -e
cd "$(dirname "$0")/.."
for t in mixed-small frag-a numa-frag; do
  pagereplay compare "traces/$t" -o "reports/$t" --plotlyjs cdn
done
pagereplay compare traces/frag-a --set mobility_grouping=off -o reports/frag-a-mobility-off \
  --plotlyjs cdn
