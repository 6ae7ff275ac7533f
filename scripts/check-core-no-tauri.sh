#!/usr/bin/env bash
# Proves the core builds without Tauri: no crate under src-tauri/crates may have tauri (or a
# tauri-* crate) anywhere in its dependency tree, for any dependency kind.
set -euo pipefail
cd "$(dirname "$0")/.."
status=0
for manifest in src-tauri/crates/*/Cargo.toml; do
  name=$(sed -n 's/^name = "\(.*\)"/\1/p' "$manifest" | head -n1)
  hits=$(cargo tree -p "$name" -e normal,build,dev --prefix none --format '{p}' 2>/dev/null \
    | grep -E '^tauri(-[a-z0-9-]+)? v' | sort -u || true)
  if [ -n "$hits" ]; then
    echo "core crate $name depends on Tauri:"; echo "$hits"; status=1
  else
    echo "core crate $name: no Tauri in its tree"
  fi
done
# The same query must see Tauri in the shell, or the check above proves nothing.
if ! cargo tree -p wardwatch-app -e normal --prefix none --format '{p}' | grep -qE '^tauri v'; then
  echo "check is broken: it does not see tauri in wardwatch-app"; status=1
fi
exit $status
