#!/bin/bash
# Builds wardwatch_<version>_amd64.deb from a release build of the station, with dpkg-deb.
# Not Tauri's bundler: the package needs a systemd unit, a conffile, maintainer scripts that
# create the service user and never delete data on remove, a copyright file and a changelog,
# which its deb bundler does not make (lintian reported them).
#
# usage: installer/build-deb.sh VERSION BINARY OUT_DIR [SBOM_DIR]
set -euo pipefail
version=$1 bin=$2 out=$3 sbom=${4:-}
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
[ -x "$bin" ] || { echo "build-deb: no program at $bin" >&2; exit 1; }
schema=$("$bin" store schema-version)
case $schema in ''|*[!0-9]*) echo "build-deb: '$bin store schema-version' said '$schema'" >&2; exit 1;; esac

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
pkg=$stage/pkg
install -d "$pkg/DEBIAN" "$pkg/usr/bin" "$pkg/etc/wardwatch" "$pkg/lib/systemd/system" \
  "$pkg/usr/share/wardwatch" "$pkg/usr/share/doc/wardwatch" "$pkg/usr/share/applications"
install -m 0755 "$bin" "$pkg/usr/bin/wardwatch-station"
strip --strip-unneeded "$pkg/usr/bin/wardwatch-station"
install -m 0644 "$here/deb/station.toml" "$pkg/etc/wardwatch/station.toml"
install -m 0644 "$here/deb/wardwatch.service" "$here/deb/wardwatch-sentinel.service" \
  "$pkg/lib/systemd/system/"
install -m 0644 "$root/assets/wardwatch.toml" "$pkg/usr/share/wardwatch/wardwatch.example.toml"
install -m 0644 "$root/README.md" "$pkg/usr/share/doc/wardwatch/README.md"
install -m 0644 "$here/deb/copyright" "$pkg/usr/share/doc/wardwatch/copyright"
install -m 0644 "$here/deb/wardwatch.desktop" "$pkg/usr/share/applications/wardwatch.desktop"
for s in 32x32 128x128; do
  install -D -m 0644 "$root/icons/$s.png" "$pkg/usr/share/icons/hicolor/$s/apps/wardwatch-station.png"
done
install -D -m 0644 "$root/icons/128x128@2x.png" \
  "$pkg/usr/share/icons/hicolor/256x256/apps/wardwatch-station.png"
if [ -n "$sbom" ]; then
  install -d "$pkg/usr/share/doc/wardwatch/sbom"
  install -m 0644 "$sbom"/*.json "$pkg/usr/share/doc/wardwatch/sbom/"
fi
# Manual pages from the program's own command definition: wardwatch-station(1) and one per
# subcommand, compressed as policy asks.
"$bin" manual --dir "$pkg/usr/share/man/man1"
chmod 0644 "$pkg"/usr/share/man/man1/*.1
gzip -9n "$pkg"/usr/share/man/man1/*.1
# A changelog, compressed as policy asks (changelog.gz: a native package), one entry.
{
  echo "wardwatch ($version) stable; urgency=medium"
  echo
  echo "  * Wardwatch $version; see README.md for what it does."
  echo
  echo " -- Wardwatch contributors <wardwatch@users.noreply.github.com>  $(date -R -u -d @"${SOURCE_DATE_EPOCH:-$(git -C "$root" log -1 --format=%ct 2>/dev/null || date +%s)}")"
} | gzip -9n > "$pkg/usr/share/doc/wardwatch/changelog.gz"
chmod 0644 "$pkg/usr/share/doc/wardwatch/changelog.gz"

for s in preinst postinst prerm postrm; do
  sed -e "s/@SCHEMA_VERSION@/$schema/" -e "s/@VERSION@/$version/" "$here/deb/$s" > "$pkg/DEBIAN/$s"
  chmod 0755 "$pkg/DEBIAN/$s"
done
echo /etc/wardwatch/station.toml > "$pkg/DEBIAN/conffiles"

# Shared-library dependencies as dpkg-shlibdeps reads them from the program itself.
mkdir -p "$stage/debian"
printf 'Source: wardwatch\n\nPackage: wardwatch\nArchitecture: amd64\n' > "$stage/debian/control"
shlibs=$(cd "$stage" && dpkg-shlibdeps -O "pkg/usr/bin/wardwatch-station" 2>/dev/null | sed -n 's/^shlibs:Depends=//p')
[ -n "$shlibs" ] || { echo "build-deb: dpkg-shlibdeps found no dependencies" >&2; exit 1; }
size=$(du -sk --exclude=DEBIAN "$pkg" | cut -f1)
cat > "$pkg/DEBIAN/control" <<CONTROL
Package: wardwatch
Version: $version
Architecture: amd64
Maintainer: Wardwatch contributors <wardwatch@users.noreply.github.com>
Installed-Size: $size
Depends: adduser, $shlibs
Section: misc
Priority: optional
Description: local-first central monitoring station for hospital wards
 Wardwatch embeds the MQTT broker the ward's bedside monitors publish to,
 raises alarms locally (IEC 60601-1-8 sounds, visual states, OS
 notifications) even when the hospital network is down, keeps vitals,
 waveforms, alarms and an audit trail in an SQLite ring buffer, draws live
 waveforms and numerics for up to 64 beds, and forwards acknowledgements,
 alarms and audit events to the hospital core by store-and-forward.
 .
 The desktop program is /usr/bin/wardwatch-station; wardwatch.service runs
 the same program headless, with its alarm sentinel in
 wardwatch-sentinel.service.
CONTROL
(cd "$pkg" && find . -type f ! -path './DEBIAN/*' -printf '%P\0' | sort -z | xargs -0 md5sum) > "$pkg/DEBIAN/md5sums"
mkdir -p "$out"
deb="$out/wardwatch_${version}_amd64.deb"
dpkg-deb --root-owner-group -Zxz --build "$pkg" "$deb" >/dev/null
echo "$deb"
