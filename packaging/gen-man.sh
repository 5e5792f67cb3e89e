#!/bin/sh
# gen-man.sh BINARY SECTION SUMMARY VERSION > page
# A minimal man page made from BINARY --help (help2man is not a build
# dependency): NAME, then the help text verbatim under DESCRIPTION, then the
# files the packages install.
set -eu
bin=$1 section=$2 summary=$3 version=$4
name=$(basename "$bin")
# roff: escape backslashes, and keep lines starting with '.' or "'" literal.
help=$("$bin" --help 2>&1 | sed -e 's/\\/\\e/g' -e "s/^\([.']\)/\\\\\&\1/")
date=${SOURCE_DATE_EPOCH:+$(date -u -d "@$SOURCE_DATE_EPOCH" +%Y-%m-%d)}
date=${date:-$(date -u +%Y-%m-%d)}
cat <<PAGE
.TH $(echo "$name" | tr '[:lower:]' '[:upper:]') $section "$date" "meshd $version" "meshd"
.SH NAME
$name \\- $summary
.SH DESCRIPTION
.nf
$help
.fi
.SH FILES
.TP
.I /etc/meshd/
configuration read by the systemd units (meshd.conf, init.env, controller.env)
.SH SEE ALSO
.BR meshd (8),
.BR meshd-init (8),
.BR meshd-ctl (1),
.BR meshd-controller (8)
PAGE
