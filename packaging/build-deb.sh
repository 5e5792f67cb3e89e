#!/bin/sh
# build-deb.sh BINDIR OUTDIR: builds meshd_VERSION_ARCH.deb (meshd,
# meshd-init, meshd-ctl, meshd.service) and meshd-controller_VERSION_ARCH.deb
# from the binaries in BINDIR (already compiled: nothing is built here) into
# OUTDIR, with dpkg-deb on staged trees. Used by `make deb` and by
# tests/e2e/test_packaging.py. Env: MESHD_VERSION overrides VERSION.
set -eu

# shellcheck source=packaging/common.sh
. "$(dirname "$0")/common.sh"
take_dirs "$@"
ARCH=$(dpkg --print-architecture)

WORK=$(mktemp -d "${TMPDIR:-/tmp}/meshd-deb.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
umask 022

# Library dependencies, as dpkg-shlibdeps finds them (it wants a
# debian/control to read, even a minimal one).
shlibs_depends() {
	mkdir -p "$WORK/shlibs/debian"
	printf 'Source: meshd\n\nPackage: meshd\nArchitecture: any\n' > "$WORK/shlibs/debian/control"
	(cd "$WORK/shlibs" && dpkg-shlibdeps -O "$@" 2>/dev/null) | sed -n 's/^shlibs:Depends=//p'
}

changelog() {
	date=$(date -u -R -d "@$SOURCE_DATE_EPOCH")
	printf '%s (%s) unstable; urgency=medium\n\n  * Release %s.\n\n -- %s  %s\n' \
		"$1" "$VERSION" "$VERSION" "$MAINTAINER" "$date"
}

# stage PKG: the common part of a staged tree (doc, maintainer scripts).
stage() {
	root="$WORK/$1"
	mkdir -p "$root/DEBIAN" "$root/usr/share/doc/$1"
	install -m 0644 "$PKG_DIR/deb/copyright" "$root/usr/share/doc/$1/copyright"
	changelog "$1" | gzip -9n > "$root/usr/share/doc/$1/changelog.gz"
	chmod 0644 "$root/usr/share/doc/$1/changelog.gz"
	for s in postinst prerm postrm; do
		if [ -f "$PKG_DIR/deb/$1.$s" ]; then
			sysuser_script "$PKG_DIR/deb/$1.$s" > "$root/DEBIAN/$s"
			chmod 0755 "$root/DEBIAN/$s"
		fi
	done
}

# finish PKG DEPENDS DESCRIPTION...: control, conffiles, md5sums, .deb
finish() {
	pkg=$1 depends=$2
	shift 2
	root="$WORK/$pkg"
	(cd "$root" && find etc -type f 2>/dev/null | sort | sed 's|^|/|') > "$root/DEBIAN/conffiles"
	[ -s "$root/DEBIAN/conffiles" ] || rm -f "$root/DEBIAN/conffiles"
	(cd "$root" && find . -path ./DEBIAN -prune -o -path ./etc -prune -o -type f -print | sed 's|^\./||' | sort |
		xargs md5sum) > "$root/DEBIAN/md5sums"
	size=$(du -k -s --apparent-size --exclude=DEBIAN "$root" | cut -f1)
	{
		echo "Package: $pkg"
		echo "Version: $VERSION"
		echo "Architecture: $ARCH"
		echo "Maintainer: $MAINTAINER"
		echo "Installed-Size: $size"
		echo "Depends: $depends"
		echo "Section: net"
		echo "Priority: optional"
		echo "Description: $1"
		shift
		for line in "$@"; do
			if [ -z "$line" ]; then echo " ."; else echo " $line"; fi
		done
	} > "$root/DEBIAN/control"
	chmod 0644 "$root/DEBIAN/control" "$root/DEBIAN/md5sums"
	[ -f "$root/DEBIAN/conffiles" ] && chmod 0644 "$root/DEBIAN/conffiles"
	dpkg-deb --root-owner-group -Zxz --build "$root" "$OUTDIR/${pkg}_${VERSION}_${ARCH}.deb" >/dev/null
	echo "$OUTDIR/${pkg}_${VERSION}_${ARCH}.deb"
}

# meshd: the proxy, meshd-init, meshd-ctl.
stage meshd
r="$WORK/meshd"
for b in meshd meshd-init meshd-ctl; do install_bin "$BINDIR/$b" "$r/usr/bin/$b"; done
install -D -m 0644 "$PKG_DIR/systemd/meshd.service" "$r/usr/lib/systemd/system/meshd.service"
install -D -m 0644 "$PKG_DIR/systemd/meshd.sysusers" "$r/usr/lib/sysusers.d/meshd.conf"
install -D -m 0644 "$PKG_DIR/etc/meshd.conf" "$r/etc/meshd/meshd.conf"
install -D -m 0644 "$PKG_DIR/etc/init.env" "$r/etc/meshd/init.env"
install_man "$r/usr/bin/meshd" 8 "$SUMMARY_meshd" "$r/usr/share/man"
install_man "$r/usr/bin/meshd-init" 8 "$SUMMARY_meshd_init" "$r/usr/share/man"
install_man "$r/usr/bin/meshd-ctl" 1 "$SUMMARY_meshd_ctl" "$r/usr/share/man"
deps=$(shlibs_depends -e"$r/usr/bin/meshd" -e"$r/usr/bin/meshd-init" -e"$r/usr/bin/meshd-ctl")
finish meshd "$deps, iptables, passwd" \
	"$SUMMARY_meshd" \
	"meshd is the proxy of the meshd service mesh. meshd-init installs the" \
	"iptables rules that redirect this host's TCP traffic through it (and" \
	"removes them), and meshd-ctl shows what it is doing." \
	"" \
	"meshd.service runs the proxy as the meshd user (UID 2102) with no" \
	"capability, installing the redirect rules before it starts and removing" \
	"them when it stops. It is not enabled on install: review /etc/meshd/" \
	"and run 'systemctl enable --now meshd'."

# meshd-controller.
stage meshd-controller
r="$WORK/meshd-controller"
install_bin "$BINDIR/meshd-controller" "$r/usr/bin/meshd-controller"
install -D -m 0644 "$PKG_DIR/systemd/meshd-controller.service" "$r/usr/lib/systemd/system/meshd-controller.service"
install -D -m 0644 "$PKG_DIR/systemd/meshd-controller.sysusers" "$r/usr/lib/sysusers.d/meshd-controller.conf"
install -D -m 0644 "$PKG_DIR/etc/controller.env" "$r/etc/meshd/controller.env"
install_man "$r/usr/bin/meshd-controller" 8 "$SUMMARY_meshd_controller" "$r/usr/share/man"
deps=$(shlibs_depends -e"$r/usr/bin/meshd-controller")
finish meshd-controller "$deps, passwd" \
	"$SUMMARY_meshd_controller" \
	"meshd-controller serves the meshd service mesh's registry (services and" \
	"their endpoints) to the proxies, and optionally issues their identities" \
	"(a certificate authority) and replicates with other controllers." \
	"" \
	"meshd-controller.service runs it as the meshd-controller user, state in" \
	"/var/lib/meshd-controller. It is not enabled on install: review" \
	"/etc/meshd/controller.env and run 'systemctl enable --now meshd-controller'."
