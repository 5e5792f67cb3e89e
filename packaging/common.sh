# Sourced by build-deb.sh and build-rpm.sh: the facts both formats share.
# shellcheck shell=sh disable=SC2034 # the variables are used by the scripts that source this

PKG_DIR=$(cd "$(dirname "$0")" && pwd)
TOP_DIR=$(dirname "$PKG_DIR")

# MESHD_VERSION overrides the VERSION file (the test builds a second
# version to check that an upgrade keeps local edits).
VERSION=${MESHD_VERSION:-$(cat "$TOP_DIR/VERSION")}
case "$VERSION" in
[0-9]*) ;;
*) echo "bad version '$VERSION' (must start with a digit)" >&2; exit 2 ;;
esac
MAINTAINER=${MESHD_MAINTAINER:-meshd maintainers <meshd@example.org>}
# Reproducible timestamps (changelog, man pages): the last commit's time.
if [ -z "${SOURCE_DATE_EPOCH:-}" ]; then
	SOURCE_DATE_EPOCH=$(git -C "$TOP_DIR" log -1 --format=%ct 2>/dev/null || date +%s)
fi
export SOURCE_DATE_EPOCH

SUMMARY_meshd="transparent service mesh proxy"
SUMMARY_meshd_init="installs or removes the meshd iptables redirect rules"
SUMMARY_meshd_ctl="status and diagnostics for the meshd service mesh"
SUMMARY_meshd_controller="registry, identity CA and gossip of the meshd service mesh"

# check_bins BINDIR: the four binaries must be there and run.
check_bins() {
	for b in meshd meshd-init meshd-ctl meshd-controller; do
		if [ ! -x "$1/$b" ]; then
			echo "$1/$b: missing or not executable (run make first)" >&2
			exit 1
		fi
	done
}

# take_dirs BINDIR OUTDIR: the build scripts' two arguments, made absolute
# (OUTDIR created), the binaries checked.
take_dirs() {
	if [ $# -ne 2 ]; then
		echo "usage: $0 BINDIR OUTDIR" >&2
		exit 2
	fi
	BINDIR=$(cd "$1" && pwd)
	mkdir -p "$2"
	OUTDIR=$(cd "$2" && pwd)
	check_bins "$BINDIR"
}

# install_bin SRC DST: a stripped copy (the build dir keeps its symbols).
install_bin() {
	install -D -m 0755 "$1" "$2"
	strip --strip-unneeded --remove-section=.comment --remove-section=.note "$2"
}

# install_man BIN SECTION SUMMARY DIR: DIR/man$SECTION/NAME.$SECTION.gz
install_man() {
	_page="$4/man$2/$(basename "$1").$2"
	mkdir -p "$(dirname "$_page")"
	sh "$PKG_DIR/gen-man.sh" "$1" "$2" "$3" "$VERSION" > "$_page"
	gzip -9n "$_page"
	chmod 0644 "$_page.gz"
}

# sysuser_script FILE: FILE with its '#SYSUSER#' line replaced by
# sysuser.sh, the shared user-creation functions.
sysuser_script() {
	awk -v lib="$PKG_DIR/sysuser.sh" '
		$0 == "#SYSUSER#" { while ((getline l < lib) > 0) print l; close(lib); next }
		{ print }' "$1"
}
