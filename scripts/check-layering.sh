#!/usr/bin/env bash
# The house reads top-down: in each of the station's crates, no module imports from the
# crate root (`crate::X` or `crate::{..}` where X is an item of lib.rs rather than a module),
# and the modules' imports of each other form no cycle. Edges come from `crate::module` paths; `tsort`
# reports any cycle ("input contains a loop"). Crates' dependencies on each other cannot
# cycle at all: cargo refuses a cyclic crate graph.
set -euo pipefail
cd "$(dirname "$0")/.."
status=0
# The station's rooms (issue 13). The older crates (model, alarm, store, broker, cli) keep
# their shared types and errors in lib.rs; moving them is listed in docs/ARCHITECTURE.md.
HOUSE="ward-config ward-access ward-annunciate ward-export ward-sync ward-core"
for crate in $HOUSE; do
  dir=src-tauri/crates/$crate/src
  ok=1
  lib="$dir/lib.rs"
  # Modules declared by lib.rs (`mod x;` / `pub mod x;`).
  mods=$(sed -n 's/^\s*\(pub \|pub(crate) \)\?mod \([a-z_0-9]*\);/\2/p' "$lib" | sort -u)
  edges=""
  for f in "$dir"/*.rs; do
    m=$(basename "$f" .rs)
    [ "$m" = lib ] && continue
    # Every `crate::name` this module mentions, outside comments.
    if grep -v '^\s*//' "$f" | grep -q 'crate::{'; then
      echo "$crate: $m.rs imports crate::{...} from the crate root"; status=1; ok=0
    fi
    for target in $(grep -v '^\s*//' "$f" | grep -o 'crate::[A-Za-z_0-9]*' | sed 's/crate:://' | sort -u); do
      if echo "$mods" | grep -qx "$target"; then
        [ "$target" != "$m" ] && edges+="$m $target"$'\n'
      else
        echo "$crate: $m.rs imports crate::$target from the crate root"; status=1; ok=0
      fi
    done
  done
  if [ -n "$edges" ] && ! printf '%s' "$edges" | tsort >/dev/null 2>/tmp/layering.$$; then
    echo "$crate: modules import each other in a cycle:"; cat /tmp/layering.$$; status=1; ok=0
  fi
  rm -f /tmp/layering.$$
  [ $ok = 1 ] && echo "$crate: top-down, no cycle"
done
exit $status
