#!/usr/bin/env bash
# `make dist`: the distributable for the platform this runs on (docs/PACKAGING.md).
#   1. PyInstaller build.spec -> dist/edpn-restore/ (one folder)
#   2. the frozen --self-test from that folder, in a clean environment (env -i: no .venv, no PYTHONPATH)
#   Linux only, then:
#   3. dist/edpn-restore-VERSION-linux-ARCH.tar.gz of the folder
#   4. dist/edpn-restore_VERSION_ARCH.deb (dpkg-deb), unpacked into a scratch root with dpkg -x, its files
#      checked and its program's --self-test run from there, again with env -i.
# Variables: PY (the venv's python), NICE (prefix for heavy commands), DISTDIR, WORKDIR, DEB_COMPRESS,
# EDPN_DIST_CUDA (see build.spec).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
NICE=${NICE-nice -n 19}
DISTDIR=${DISTDIR:-dist}
WORKDIR=${WORKDIR:-build/pyinstaller}
APP=edpn-restore
BUNDLE=$DISTDIR/$APP
start=$SECONDS
step() { echo "== dist [$((SECONDS - start)) s] $*"; }

# `self_test PROGRAM`: run the frozen self-check with nothing inherited but HOME and a system PATH.
self_test() {
    local home rc=0
    home=$(mktemp -d)
    env -i HOME="$home" PATH=/usr/bin:/bin "$1" --self-test || rc=$?
    rm -rf "$home"
    if [ "$rc" -ne 0 ]; then
        echo "dist: $1 --self-test FAILED (exit $rc)" >&2
        return "$rc"
    fi
}

version=$("$PY" -c 'import tomllib; print(tomllib.load(open("pyproject.toml", "rb"))["project"]["version"])')
step "PyInstaller build.spec (version $version)"
mkdir -p "$WORKDIR"
EDPN_DIST_REPORT="$WORKDIR/edpn-pruned.tsv" $NICE "$PY" -m PyInstaller --noconfirm --clean --log-level WARN \
    --distpath "$DISTDIR" --workpath "$WORKDIR" build.spec

case "$(uname -s)" in
    Linux) exe=$BUNDLE/edpn-gui ;;
    Darwin) exe=$BUNDLE/edpn-gui ;;
    *) exe=$BUNDLE/edpn-gui.exe ;;
esac

if [ "$(uname -s)" = Linux ]; then
    step "checking that no bundled library needs a pruned one"
    "$PY" packaging/elfdeps.py check "$BUNDLE" "$WORKDIR/edpn-pruned.tsv"
fi

step "self-test of the built folder: env -i $exe --self-test"
self_test "$exe"

step "size of $BUNDLE"
{
    echo "# $(date -u +%Y-%m-%d) $(uname -m) $(uname -s), $("$PY" -V 2>&1)"
    du -sh "$BUNDLE"
    echo "# biggest parts (du -a, KiB)"
    du -a -k "$BUNDLE" | sort -n | tail -n 25
} | tee "$DISTDIR/$APP-sizes.txt"

if [ "$(uname -s)" != Linux ]; then
    step "done: $BUNDLE (the .tar.gz and .deb are built on Linux only; see docs/PACKAGING.md)"
    exit 0
fi

tarball=$DISTDIR/$APP-$version-linux-$(uname -m).tar.gz
step "tar.gz: $tarball"
$NICE tar -C "$DISTDIR" -czf "$tarball" "$APP"

step "deb (dpkg-deb, ${DEB_COMPRESS:-gzip})"
deb=$(PY="$PY" $NICE packaging/build_deb.sh "$BUNDLE" "$version" "$DISTDIR")
dpkg-deb --info "$deb" | sed -n '/Package:/,$p'

step "installing $deb into a scratch root (dpkg -x) and running it from there"
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
$NICE dpkg -x "$deb" "$scratch"
for f in opt/$APP/edpn-gui usr/share/applications/$APP.desktop usr/share/icons/hicolor/scalable/apps/$APP.svg; do
    [ -e "$scratch/$f" ] || { echo "dist: the .deb lacks /$f" >&2; exit 1; }
done
[ "$(readlink "$scratch/usr/bin/edpn-gui")" = "/opt/$APP/edpn-gui" ] || { echo "dist: bad /usr/bin/edpn-gui" >&2; exit 1; }
grep -q '^Exec=edpn-gui' "$scratch/usr/share/applications/$APP.desktop"
if command -v desktop-file-validate >/dev/null; then desktop-file-validate "$scratch/usr/share/applications/$APP.desktop"; fi
self_test "$scratch/opt/$APP/edpn-gui"
# the way /usr/bin/edpn-gui starts it: through a symbolic link from another folder
ln -s "$scratch/opt/$APP/edpn-gui" "$scratch/edpn-gui-link"
self_test "$scratch/edpn-gui-link"

step "done"
ls -l "$tarball" "$deb"
du -sh "$BUNDLE" "$tarball" "$deb"
