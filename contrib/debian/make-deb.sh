#!/bin/sh
# make-deb.sh [OUTDIR] - what `make deb` runs: build the Debian package.
#
# Copies the source tree (without .git, build directories and built
# binaries) to OUTDIR/policyd-VERSION, puts contrib/debian there as debian/
# and runs dpkg-buildpackage -us -uc in it: policyd_VERSION_ARCH.deb, the
# dbgsym package and the native source package (.dsc, .tar.xz) end up in
# OUTDIR (default build/deb). The copy is a fresh build, so the package
# never contains a binary of another build (e.g. the sanitizer one).
set -eu
top=$(cd "$(dirname "$0")/../.." && pwd)
out=${1:-$top/build/deb}
version=$(sed -n 's/^VERSION *= *//p' "$top/Makefile")
debversion=$(dpkg-parsechangelog -l "$top/contrib/debian/changelog" -S Version)
if [ "$version" != "$debversion" ]; then
	echo "make-deb: Makefile VERSION $version but contrib/debian/changelog" \
	    "has $debversion: add a changelog entry (dch -v $version)" >&2
	exit 1
fi
src=$out/policyd-$version
mkdir -p "$out"
rm -rf "$src"
rm -f "$out"/policyd_* "$out"/policyd-dbgsym_*
mkdir "$src"
tar -C "$top" --exclude=./.git --exclude=./build --exclude='./build-*' \
    --exclude=./debian --exclude=./policyd/policyd --exclude=./policyd/policyctl \
    --exclude=./rules/.run.conf --exclude=__pycache__ --exclude='*.pyc' \
    -cf - . | tar -C "$src" -xf -
cp -R "$src/contrib/debian" "$src/debian"
rm -f "$src/debian/make-deb.sh"
(cd "$src" && dpkg-buildpackage -us -uc)
ls -l "$out"/policyd_"$version"*
