#!/usr/bin/env bash
# Build the Debian package edpn-restore from a PyInstaller one-folder bundle.
#   packaging/build_deb.sh BUNDLE_DIR VERSION OUT_DIR      -> prints the path of the .deb
# Layout: /opt/edpn-restore/ (the bundle), /usr/bin/edpn-gui -> /opt/edpn-restore/edpn-gui,
# /usr/share/applications/edpn-restore.desktop, /usr/share/icons/hicolor/scalable/apps/edpn-restore.svg.
# DEB_COMPRESS=gzip|xz|zstd|none (default gzip: fast, and every dpkg can read it), DEB_MAINTAINER, PY= a python
# for elfdeps.py.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
bundle=${1:?bundle dir}
version=${2:?version}
out=${3:?output dir}
compress=${DEB_COMPRESS:-gzip}
py=${PY:-python3}
maintainer=${DEB_MAINTAINER:-EDPN Restore developers <edpn-restore@localhost>}
arch=$(dpkg --print-architecture)
icon=$root/resources/icons/edpn.svg
[ -x "$bundle/edpn-gui" ] || { echo "build_deb: $bundle/edpn-gui missing" >&2; exit 1; }
[ -f "$icon" ] || { echo "build_deb: $icon missing (the app icon)" >&2; exit 1; }

stage=$out/deb-root
rm -rf "$stage"
mkdir -p "$stage/DEBIAN" "$stage/opt" "$stage/usr/bin" "$stage/usr/share/applications" \
         "$stage/usr/share/icons/hicolor/scalable/apps" "$stage/usr/share/doc/edpn-restore"
# hard links when the file system allows (the bundle is ~GBs), a copy otherwise
cp -al "$bundle" "$stage/opt/edpn-restore" 2>/dev/null || cp -a "$bundle" "$stage/opt/edpn-restore"
ln -s /opt/edpn-restore/edpn-gui "$stage/usr/bin/edpn-gui"
install -m 644 "$here/edpn-restore.desktop" "$stage/usr/share/applications/edpn-restore.desktop"
install -m 644 "$icon" "$stage/usr/share/icons/hicolor/scalable/apps/edpn-restore.svg"
cat > "$stage/usr/share/doc/edpn-restore/copyright" <<EOF
EDPN Restore $version: Apache-2.0. Bundled third-party software (Python, PyTorch, torchvision, Qt/PySide6,
NumPy, OpenCV, Pillow, NVIDIA CUDA runtime libraries, ...) keeps its own licence; see the licence files inside
/opt/edpn-restore/_internal/*.dist-info. The sample photo: see /opt/edpn-restore/_internal/resources/README.md.
EOF
chmod -R u+rwX,go+rX,go-w "$stage"

relations=$("$py" "$here/elfdeps.py" depends "$bundle")
installed_kb=$(du -sk --exclude=DEBIAN "$stage" | cut -f1)
cat > "$stage/DEBIAN/control" <<EOF
Package: edpn-restore
Version: $version
Section: graphics
Priority: optional
Architecture: $arch
Installed-Size: $installed_kb
$relations
Maintainer: $maintainer
Description: restore blurry photos with EDPN (desktop app)
 EDPN (Enhanced Deep Pyramid Network) restores blurry photos: blurry
 super-resolution x4 and blurry deblocking. This package ships the desktop
 app with its trained weights and runs on the CPU; it needs no Python.
 Check an installation with: edpn-gui --self-test
EOF
# refresh the menu and icon caches when the tools exist (they are optional)
cat > "$stage/DEBIAN/postinst" <<'EOF'
#!/bin/sh
set -e
if [ "$1" = configure ]; then
    command -v update-desktop-database >/dev/null 2>&1 && update-desktop-database -q /usr/share/applications || true
    command -v gtk-update-icon-cache >/dev/null 2>&1 && gtk-update-icon-cache -q -t /usr/share/icons/hicolor || true
fi
exit 0
EOF
cp "$stage/DEBIAN/postinst" "$stage/DEBIAN/postrm"
sed -i 's/if \[ "$1" = configure \]/if [ "$1" = remove ] || [ "$1" = purge ]/' "$stage/DEBIAN/postrm"
chmod 755 "$stage/DEBIAN/postinst" "$stage/DEBIAN/postrm"

deb=$out/edpn-restore_${version}_${arch}.deb
dpkg-deb --build --root-owner-group "-Z$compress" "$stage" "$deb" >&2
rm -rf "$stage"
echo "$deb"
