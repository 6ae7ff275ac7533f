#!/bin/bash
# Builds Wardwatch-<version>-x64.msi on Linux with wixl (msitools) from installer/msi/wardwatch.wxs
# and a Windows build of the station (x86_64-pc-windows-gnu, linked by Debian's mingw-w64).
# Tauri's own bundler makes MSIs only on Windows (WiX 3 runs there), so it is not used.
#
# usage: installer/build-msi.sh VERSION EXE OUT_DIR SBOM_DIR
set -euo pipefail
version=$1 exe=$2 out=$3 sbom=$4
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
[ -f "$exe" ] || { echo "build-msi: no program at $exe" >&2; exit 1; }
for f in rust ui; do
  [ -f "$sbom/sbom-$f.cdx.json" ] || { echo "build-msi: no $sbom/sbom-$f.cdx.json (make sbom)" >&2; exit 1; }
done
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
cp "$exe" "$stage/wardwatch-station.exe"
x86_64-w64-mingw32-strip --strip-unneeded "$stage/wardwatch-station.exe"
# The program imports Microsoft's WebView2 loader; the build puts it beside the .exe.
loader=$(dirname "$exe")/WebView2Loader.dll
[ -f "$loader" ] || { echo "build-msi: no $loader beside the program" >&2; exit 1; }
cp "$loader" "$stage/"
cp "$root/assets/wardwatch.toml" "$stage/wardwatch.example.toml"
cp "$root/README.md" "$stage/README.md"
cp "$here/msi/station.toml" "$stage/station.toml"
cp "$sbom/sbom-rust.cdx.json" "$sbom/sbom-ui.cdx.json" "$stage/"
mkdir -p "$out"
msi="$(cd "$out" && pwd)/Wardwatch-$version-x64.msi"
# wixl resolves File/@Source against the working directory.
(cd "$stage" && wixl --arch x64 -D Version="$version" -o "$msi" "$here/msi/wardwatch.wxs")
echo "$msi"
