#!/usr/bin/env bash
# The window's TypeScript types generated from the Rust ones (ts-rs) must be the committed
# ones: regenerate into a scratch directory and compare. To update the committed files:
#   cargo test -p ward-model --features ts export_bindings
set -euo pipefail
cd "$(dirname "$0")/.."
gen=$(mktemp -d)
trap 'rm -rf "$gen"' EXIT
TS_RS_EXPORT_DIR="$gen" cargo test -q -p ward-model --features ts export_bindings >/dev/null
if ! diff -ru ui/src/gen "$gen"; then
  echo "ui/src/gen differs from what the Rust types generate; run:"
  echo "  cargo test -p ward-model --features ts export_bindings"
  exit 1
fi
echo "generated TypeScript types: up to date"
