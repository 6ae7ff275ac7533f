#!/usr/bin/env bash
# What the window's source takes from the Rust side must be what the Rust side generates
# today: the TypeScript types (ts-rs) and the golden live frame (ward-core's live.rs test),
# regenerated into a scratch directory and compared with the committed ui/src/gen. To update:
#   cargo test -p ward-model --features ts export_bindings
#   cargo test -p wardwatch-app export_bindings
#   cargo test -p ward-core export_bindings
set -euo pipefail
cd "$(dirname "$0")/.."
gen=$(mktemp -d)
trap 'rm -rf "$gen"' EXIT
TS_RS_EXPORT_DIR="$gen" cargo test -q -p ward-model --features ts export_bindings >/dev/null
TS_RS_EXPORT_DIR="$gen" cargo test -q -p wardwatch-app export_bindings >/dev/null
TS_RS_EXPORT_DIR="$gen" cargo test -q -p ward-core export_bindings >/dev/null
if ! diff -ru ui/src/gen "$gen"; then
  echo "ui/src/gen differs from what the Rust types generate; run:"
  echo "  cargo test -p ward-model --features ts export_bindings"
  echo "  cargo test -p wardwatch-app export_bindings"
  echo "  cargo test -p ward-core export_bindings"
  exit 1
fi
echo "generated TypeScript types: up to date"
