#!/bin/sh
# build-rpm.sh BINDIR OUTDIR: builds meshd-VERSION-1.ARCH.rpm (meshd,
# meshd-init, meshd-ctl, meshd.service) and meshd-controller-VERSION-1.ARCH.rpm
# from the binaries in BINDIR (already compiled: rpmbuild -bb only stages
# them) into OUTDIR, from packaging/rpm/meshd.spec. Used by `make rpm` and
# by tests/e2e/test_packaging.py. Env: MESHD_VERSION overrides VERSION.
set -eu

# shellcheck source=packaging/common.sh
. "$(dirname "$0")/common.sh"
take_dirs "$@"
case $(dpkg --print-architecture) in
amd64) ARCH=x86_64 ;;
arm64) ARCH=aarch64 ;;
i386) ARCH=i686 ;;
*) ARCH=$(uname -m) ;;
esac
case "$VERSION" in
*-*) echo "RPM versions cannot contain '-': '$VERSION'" >&2; exit 2 ;;
esac

WORK=$(mktemp -d "${TMPDIR:-/tmp}/meshd-rpm.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
umask 022
mkdir -p "$WORK/SPECS" "$WORK/BUILD" "$WORK/RPMS" "$WORK/BUILDROOT"

spec="$WORK/SPECS/meshd.spec"
{
	sysuser_script "$PKG_DIR/rpm/meshd.spec"
	echo
	echo "%changelog"
	echo "* $(LC_ALL=C date -u -d "@$SOURCE_DATE_EPOCH" '+%a %b %d %Y') $MAINTAINER - $VERSION-1"
	echo "- Release $VERSION."
} > "$spec"

# HOME: rpmbuild reads ~/.rpmmacros; a clean one keeps builds alike.
HOME="$WORK" rpmbuild -bb --quiet --target "$ARCH" \
	--define "_topdir $WORK" \
	--define "_build_id_links none" \
	--define "use_source_date_epoch_as_buildtime 1" \
	--define "clamp_mtime_to_source_date_epoch 1" \
	--define "meshd_version $VERSION" \
	--define "meshd_maintainer $MAINTAINER" \
	--define "meshd_bindir $BINDIR" \
	--define "meshd_pkgdir $PKG_DIR" \
	"$spec" >"$WORK/rpmbuild.log" 2>&1 || { cat "$WORK/rpmbuild.log" >&2; exit 1; }
for f in "$WORK"/RPMS/*/*.rpm; do
	cp "$f" "$OUTDIR/"
	echo "$OUTDIR/$(basename "$f")"
done
