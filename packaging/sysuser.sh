# Shell functions shared by the DEB postinst and the RPM %pre scriptlets
# (build-deb.sh and build-rpm.sh paste this file into them, so that both
# package formats create the system users the same way). POSIX sh only, no
# external tool but useradd/groupadd: an RPM scriptlet runs chrooted in the
# target root, which may hold little more than a shell and the shadow tools.

# The entry NAME of a colon-separated database FILE (passwd or group), or
# the entry whose id (third field) is ID: prints "name id", or nothing.
meshd_db_by_name() {
	[ -r "$1" ] || return 0
	while IFS=: read -r _n _p _i _rest; do
		if [ "$_n" = "$2" ]; then echo "$_n $_i"; return 0; fi
	done < "$1"
}
meshd_db_by_id() {
	[ -r "$1" ] || return 0
	while IFS=: read -r _n _p _i _rest; do
		if [ "$_i" = "$2" ]; then echo "$_n $_i"; return 0; fi
	done < "$1"
}

# meshd_sysuser ROOT NAME ID HOME COMMENT
# Creates the system group and user NAME (shell /usr/sbin/nologin, HOME not
# created) under ROOT ("" for /; dpkg's DPKG_ROOT). ID "" lets useradd pick
# a system id; a fixed ID must be exactly that for the user (the redirect
# rules exclude the proxy's UID), so a user NAME with another UID, or
# another user holding ID, is an error that names both. The group gets ID
# too when it is free, else any system GID: only the UID matters to the
# rules. Idempotent: an existing user with the right UID is left as it is.
meshd_sysuser() {
	_root=$1 _name=$2 _id=$3 _home=$4 _comment=$5
	_prefix=
	[ -n "$_root" ] && _prefix="--prefix $_root"
	_have=$(meshd_db_by_name "$_root/etc/passwd" "$_name")
	if [ -n "$_have" ]; then
		_have_id=${_have#* }
		if [ -n "$_id" ] && [ "$_have_id" != "$_id" ]; then
			echo "meshd: user '$_name' exists with UID $_have_id, but it must have UID $_id" \
				"(the iptables redirect rules exclude UID $_id, the proxy's own traffic)." \
				"Change its UID to $_id or remove it, then reinstall." >&2
			return 1
		fi
		return 0
	fi
	_uid_opt=
	if [ -n "$_id" ]; then
		_taken=$(meshd_db_by_id "$_root/etc/passwd" "$_id")
		if [ -n "$_taken" ]; then
			echo "meshd: cannot create user '$_name' with UID $_id: UID $_id belongs to user" \
				"'${_taken% *}'. meshd's proxy must run as UID $_id (the iptables redirect rules" \
				"exclude it); free that UID, then reinstall." >&2
			return 1
		fi
		_uid_opt="--uid $_id"
	fi
	if [ -z "$(meshd_db_by_name "$_root/etc/group" "$_name")" ]; then
		_gid_opt=
		if [ -n "$_id" ] && [ -z "$(meshd_db_by_id "$_root/etc/group" "$_id")" ]; then
			_gid_opt="--gid $_id"
		fi
		# shellcheck disable=SC2086 # word splitting of the options is wanted
		groupadd $_prefix --system $_gid_opt "$_name" || return 1
	fi
	# shellcheck disable=SC2086
	useradd $_prefix --system $_uid_opt --gid "$_name" --home-dir "$_home" --no-create-home \
		--shell /usr/sbin/nologin --comment "$_comment" "$_name" || return 1
}
