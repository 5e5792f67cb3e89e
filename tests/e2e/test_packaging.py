"""The host packages (make deb, make rpm): built from MESHD_BUILD's binaries
with the same scripts the Makefile uses, linted, installed into scratch roots
and removed again.

DEB: debootstrap is not available here (and would need the network), so the
.debs are installed into a scratch root with `dpkg --root=DIR
--force-script-chrootless`: dpkg then runs the real maintainer scripts on the
host with DPKG_ROOT=DIR, and they create the users in DIR/etc/passwd (useradd
--prefix). `--force-depends` is needed because the scratch root's dpkg
database holds none of the dependencies (libc6, iptables, ...); the test
checks the Depends field instead.

RPM: `rpm --root DIR` chroots into DIR to run the scriptlets. Rather than
skipping them (--noscripts), the test puts into DIR what they use -- /bin/sh,
useradd and groupadd with their libraries, copied from the host -- so the %pre
scriptlet really creates the users inside DIR. `--nodeps` is needed for the
same reason as above (an empty rpm database).

Nothing uses the network; everything lives under one temporary directory that
is removed at the end, pass or fail; the host's /etc/passwd is checked to be
untouched.

Run as root: MESHD_BUILD=/path/to/build /usr/bin/python3 -m pytest tests/e2e/test_packaging.py
"""

import glob
import hashlib
import itertools
import os
import shutil
import socket
import stat
import subprocess
import tempfile

import pytest

from mesh import wait_for

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.abspath(os.path.join(HERE, "..", ".."))
PKG = os.path.join(TOP, "packaging")
BUILD = os.environ.get("MESHD_BUILD", os.path.join(TOP, "build"))
BINS = ["meshd", "meshd-init", "meshd-ctl", "meshd-controller"]
VERSION = open(os.path.join(TOP, "VERSION")).read().strip()
# A later version of the same packages, for the upgrade checks.
VERSION2 = VERSION + ".1"
PROXY_UID = 2102

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (dpkg --root, rpm --root, netns)"),
    pytest.mark.skipif(not all(os.path.exists(os.path.join(BUILD, b)) for b in BINS),
                       reason=f"binaries not built in {BUILD}"),
]

_counter = itertools.count()


def run(cmd, check=True, timeout=120, **kw):
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                       stdin=subprocess.DEVNULL, **kw)
    if check and r.returncode != 0:
        raise AssertionError(f"{cmd} exited {r.returncode}:\n{r.stdout}\n{r.stderr}")
    return r


def need(*tools):
    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        pytest.skip(f"{', '.join(missing)} not installed (make deps installs them)")


def sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def passwd_entries(root, db="passwd"):
    """{name: fields} of ROOT/etc/DB."""
    out = {}
    with open(os.path.join(root, "etc", db)) as f:
        for line in f:
            fields = line.rstrip("\n").split(":")
            assert fields[0] not in out, f"{db}: {fields[0]} listed twice"
            out[fields[0]] = fields
    return out


def env_file(path):
    """VAR=value lines of a systemd EnvironmentFile, comments skipped."""
    env = {}
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line and not line.startswith("#"):
                k, _, v = line.partition("=")
                env[k] = v
    return env


@pytest.fixture(scope="module")
def tmp():
    d = tempfile.mkdtemp(prefix="meshd-pkgtest.")
    os.chmod(d, 0o755)  # the unprivileged daemons run from in here
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="module")
def packages(tmp):
    """{(format, version): [paths]} built by packaging/build-{deb,rpm}.sh."""
    need("dpkg-deb", "dpkg-shlibdeps", "rpmbuild")
    built = {}
    for version in (VERSION, VERSION2):
        out = os.path.join(tmp, "pkg-" + version)
        env = dict(os.environ, MESHD_VERSION=version, TMPDIR=tmp)
        for fmt in ("deb", "rpm"):
            r = run(["sh", os.path.join(PKG, f"build-{fmt}.sh"), BUILD, out], env=env, timeout=240)
            paths = r.stdout.split()
            assert len(paths) == 2 and all(os.path.isfile(p) for p in paths), r.stdout + r.stderr
            built[(fmt, version)] = sorted(paths)
    return built


def deb(packages, name, version=VERSION):
    arch = run(["dpkg", "--print-architecture"]).stdout.strip()
    path = [p for p in packages[("deb", version)] if os.path.basename(p) == f"{name}_{version}_{arch}.deb"]
    assert len(path) == 1, packages[("deb", version)]
    return path[0]


def rpm_file(packages, name, version=VERSION):
    path = [p for p in packages[("rpm", version)] if os.path.basename(p).startswith(f"{name}-{version}-1.")]
    assert len(path) == 1, packages[("rpm", version)]
    return path[0]


def new_root(tmp, kind):
    """A scratch root with a minimal /etc/passwd (root, nobody: no real
    users) and, for dpkg, the database directories dpkg needs."""
    root = os.path.join(tmp, f"{kind}-root-{next(_counter)}")
    os.makedirs(os.path.join(root, "etc"))
    files = {
        "passwd": "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n",
        "group": "root:x:0:\nnogroup:x:65534:\n",
        "shadow": "root:*:19000:0:99999:7:::\nnobody:*:19000:0:99999:7:::\n",
        "gshadow": "root:*::\nnogroup:*::\n",
    }
    for name, text in files.items():
        with open(os.path.join(root, "etc", name), "w") as f:
            f.write(text)
        os.chmod(os.path.join(root, "etc", name), 0o640 if "shadow" in name else 0o644)
    if kind == "dpkg":
        for d in ("var/lib/dpkg/info", "var/lib/dpkg/updates"):
            os.makedirs(os.path.join(root, d))
        open(os.path.join(root, "var/lib/dpkg/status"), "w").close()
    return root


def dpkg(root, *args, check=True):
    return run(["dpkg", f"--root={root}", "--force-script-chrootless", "--force-depends", *args], check=check)


def dpkg_status(root, pkg):
    r = run(["dpkg-query", f"--root={root}", "-W", "-f=${Status} ${Version}", pkg], check=False)
    return r.stdout.strip() if r.returncode == 0 else "absent"


def add_systemd_targets(root):
    """What a systemd install would hold and the units order against
    (sysinit.target, network-online.target, ...): copied from the host."""
    for f in glob.glob("/usr/lib/systemd/system/*.target") + glob.glob("/usr/lib/systemd/system/*.slice"):
        dst = root + f
        if not os.path.lexists(dst):
            os.makedirs(os.path.dirname(dst), exist_ok=True)
            shutil.copy2(f, dst, follow_symlinks=False)


def verify_units(root):
    """systemd-analyze verify on the units installed in ROOT: it checks the
    syntax (an unknown key is only a warning, so any output fails), that the
    Exec paths exist and are executable, the dependencies, and that the
    Documentation= man pages exist (MANPATH: the packages' own)."""
    add_systemd_targets(root)
    r = run(["systemd-analyze", "verify", f"--root={root}", "meshd.service", "meshd-controller.service"],
            check=False, env=dict(os.environ, MANPATH=os.path.join(root, "usr/share/man")), timeout=60)
    assert r.returncode == 0 and not (r.stdout + r.stderr).strip(), r.stdout + r.stderr
    # The sandbox as systemd rates it (0 best, 10 worst; 1.7 when written):
    # dropping a hardening option by mistake pushes it over 2.5.
    for unit in ("meshd.service", "meshd-controller.service"):
        r = run(["systemd-analyze", "security", "--offline=true", f"--root={root}", "--threshold=25", unit],
                check=False, timeout=60)
        assert r.returncode == 0, r.stdout + r.stderr


def unit_settings(path):
    settings = {}
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line and not line.startswith(("#", "[")):
                k, _, v = line.partition("=")
                settings.setdefault(k, []).append(v)
    return settings


def check_units(root):
    unitdir = os.path.join(root, "usr/lib/systemd/system")
    meshd = unit_settings(os.path.join(unitdir, "meshd.service"))
    assert meshd["User"] == ["meshd"] and meshd["Group"] == ["meshd"]
    # The rules go in after meshd's READY=1, never before it listens.
    assert meshd["Type"] == ["notify"] and "ExecStartPre" not in meshd
    assert meshd["ExecStartPost"] == ["+/usr/bin/meshd-init"]
    assert meshd["ExecStart"] == ["/usr/bin/meshd --config /etc/meshd/meshd.conf"]
    assert meshd["ExecStopPost"] == ["+/usr/bin/meshd-init --cleanup"]
    # The rules go before the drain (new connections are not refused), and
    # again after any stop, crashes included.
    assert meshd["ExecStop"] == ["+/usr/bin/meshd-init --cleanup"]
    assert meshd["RestartPreventExitStatus"] == ["2"]
    assert meshd["EnvironmentFile"] == ["-/etc/meshd/init.env"]
    assert meshd["CapabilityBoundingSet"] == [""] and meshd["AmbientCapabilities"] == [""]
    assert meshd["NoNewPrivileges"] == ["yes"]
    # Above the drain timeout (30s), so a drain is not cut by SIGKILL.
    assert int(meshd["TimeoutStopSec"][0].rstrip("s")) > 30
    # The io_uring syscalls must stay allowed: no allow-list filter.
    for f in meshd.get("SystemCallFilter", []):
        assert f.startswith("~"), f
        for group in f[1:].split():
            calls = run(["systemd-analyze", "syscall-filter", group]).stdout if group.startswith("@") else group
            assert "io_uring" not in calls, (group, calls)
    ctl = unit_settings(os.path.join(unitdir, "meshd-controller.service"))
    assert ctl["User"] == ["meshd-controller"]
    assert ctl["StateDirectory"] == ["meshd-controller"]
    assert ctl["EnvironmentFile"] == ["-/etc/meshd/controller.env"]
    # Installed, not enabled: no WantedBy symlink was made.
    for unit in ("meshd.service", "meshd-controller.service"):
        assert not os.path.lexists(os.path.join(root, "etc/systemd/system/multi-user.target.wants", unit))


def check_installed_files(root):
    for b in BINS:
        path = os.path.join(root, "usr/bin", b)
        st = os.stat(path)
        assert stat.S_IMODE(st.st_mode) == 0o755 and st.st_uid == 0, (path, oct(st.st_mode))
        r = run([path, "--version"], timeout=10)
        # The binary's own version (VERSION file), whatever the package's.
        assert VERSION in r.stdout, r.stdout
        # Stripped in the package (the build dir keeps its symbols).
        assert ".symtab" not in run(["readelf", "-S", path]).stdout
    for f in ("meshd.conf", "init.env", "controller.env"):
        st = os.stat(os.path.join(root, "etc/meshd", f))
        assert stat.S_IMODE(st.st_mode) == 0o644 and st.st_uid == 0
    for f in ("usr/lib/sysusers.d/meshd.conf", "usr/lib/sysusers.d/meshd-controller.conf",
              "usr/share/man/man8/meshd.8.gz", "usr/share/man/man8/meshd-init.8.gz",
              "usr/share/man/man1/meshd-ctl.1.gz", "usr/share/man/man8/meshd-controller.8.gz"):
        assert os.path.isfile(os.path.join(root, f)), f
    check_units(root)


def check_users(root):
    users, groups = passwd_entries(root), passwd_entries(root, "group")
    m = users["meshd"]
    assert m[2:4] == [str(PROXY_UID), groups["meshd"][2]], m
    assert groups["meshd"][2] == str(PROXY_UID)
    assert m[6] == "/usr/sbin/nologin" and m[5] == "/nonexistent", m
    c = users["meshd-controller"]
    assert c[6] == "/usr/sbin/nologin" and c[5] == "/var/lib/meshd-controller", c
    assert 0 < int(c[2]) < 1000, c  # a system UID
    assert c[3] == groups["meshd-controller"][2]
    shadow = passwd_entries(root, "shadow")
    # Locked, no password.
    assert shadow["meshd"][1] in ("!", "*", "!*") and shadow["meshd-controller"][1] in ("!", "*", "!*")


@pytest.fixture(scope="module")
def host_passwd():
    """The host's user databases must not change (the scripts write into the
    scratch roots only)."""
    before = {f: sha256(f) for f in ("/etc/passwd", "/etc/group", "/etc/shadow")}
    yield
    assert {f: sha256(f) for f in before} == before, "the host's user databases changed"


@pytest.mark.timeout(300)
def test_lintian_reports_no_errors(packages):
    need("lintian")
    r = run(["lintian", "--fail-on", "error", *packages[("deb", VERSION)]], check=False, timeout=240)
    errors = [l for l in r.stdout.splitlines() if l.startswith("E:")]
    assert r.returncode == 0 and not errors, r.stdout + r.stderr


@pytest.mark.timeout(300)
def test_rpmlint_reports_no_errors(packages):
    need("rpmlint")
    r = run(["rpmlint", "-c", os.path.join(PKG, "rpm/rpmlint.toml"), *packages[("rpm", VERSION)]],
            check=False, timeout=240)
    assert r.returncode == 0 and " 0 errors," in r.stdout, r.stdout + r.stderr


@pytest.mark.timeout(300)
def test_deb_metadata(packages):
    meshd, ctl = deb(packages, "meshd"), deb(packages, "meshd-controller")
    info = run(["dpkg-deb", "-f", meshd, "Depends", "Architecture", "Version"]).stdout
    assert "iptables" in info and "liburing2" in info and "libc6" in info, info
    assert f"Version: {VERSION}" in info
    assert run(["dpkg-deb", "-f", ctl, "Depends"]).stdout.count("iptables") == 0
    conffiles = run(["dpkg-deb", "-I", meshd, "conffiles"]).stdout.split()
    assert conffiles == ["/etc/meshd/init.env", "/etc/meshd/meshd.conf"]
    assert run(["dpkg-deb", "-I", ctl, "conffiles"]).stdout.split() == ["/etc/meshd/controller.env"]
    for path in (meshd, ctl):
        for line in run(["dpkg-deb", "-c", path]).stdout.splitlines():
            mode, owner = line.split()[:2]
            assert owner == "root/root", line
            if mode.startswith("-"):
                assert mode in ("-rw-r--r--", "-rwxr-xr-x"), line
                assert (mode == "-rwxr-xr-x") == ("/usr/bin/" in line), line


@pytest.mark.timeout(300)
def test_deb_install_upgrade_remove_purge(packages, tmp, host_passwd):
    root = new_root(tmp, "dpkg")
    debs = [deb(packages, "meshd"), deb(packages, "meshd-controller")]
    dpkg(root, "-i", *debs)
    for p in ("meshd", "meshd-controller"):
        assert dpkg_status(root, p) == f"install ok installed {VERSION}"
    check_installed_files(root)
    check_users(root)
    verify_units(root)
    status = run(["dpkg-query", f"--root={root}", "-s", "meshd"]).stdout
    assert " /etc/meshd/meshd.conf " in status and " /etc/meshd/init.env " in status, status
    assert " /etc/meshd/controller.env " in run(["dpkg-query", f"--root={root}", "-s", "meshd-controller"]).stdout

    # Reinstalling the same packages is harmless (users exist already).
    users = open(os.path.join(root, "etc/passwd")).read()
    dpkg(root, "-i", *debs)
    assert open(os.path.join(root, "etc/passwd")).read() == users

    # A local edit survives an upgrade (unchanged conffile upstream: kept
    # without a question).
    conf = os.path.join(root, "etc/meshd/meshd.conf")
    with open(conf, "a") as f:
        f.write("\n# local edit\nlog-level = debug\n")
    edited = open(conf).read()
    dpkg(root, "-i", deb(packages, "meshd", VERSION2), deb(packages, "meshd-controller", VERSION2))
    assert dpkg_status(root, "meshd") == f"install ok installed {VERSION2}"
    assert open(conf).read() == edited
    assert not glob.glob(os.path.join(root, "etc/meshd/*.dpkg-*"))
    check_installed_files(root)
    assert open(os.path.join(root, "etc/passwd")).read() == users

    # The controller's state, as the service would have made it.
    state = os.path.join(root, "var/lib/meshd-controller")
    os.makedirs(state)
    open(os.path.join(state, "registry.log"), "w").close()

    # remove: binaries and units go, configuration and state stay.
    dpkg(root, "--remove", "meshd", "meshd-controller")
    for p in ("meshd", "meshd-controller"):
        assert dpkg_status(root, p) == f"deinstall ok config-files {VERSION2}"
    for b in BINS:
        assert not os.path.exists(os.path.join(root, "usr/bin", b))
    assert not os.path.exists(os.path.join(root, "usr/lib/systemd/system/meshd.service"))
    assert open(conf).read() == edited
    assert os.path.isfile(os.path.join(root, "etc/meshd/init.env"))
    assert os.path.isfile(os.path.join(root, "etc/meshd/controller.env"))
    assert os.path.isfile(os.path.join(state, "registry.log"))
    # Masked while removed, as debhelper does: an enablement left behind starts nothing.
    for unit in ("meshd.service", "meshd-controller.service"):
        assert os.readlink(os.path.join(root, "etc/systemd/system", unit)) == "/dev/null", unit

    # purge: configuration and state go; the users stay (see postrm).
    dpkg(root, "--purge", "meshd", "meshd-controller")
    for p in ("meshd", "meshd-controller"):
        assert dpkg_status(root, p) in ("absent", f"unknown ok not-installed {VERSION2}",
                                        "unknown ok not-installed", "purge ok not-installed")
    assert not os.path.exists(os.path.join(root, "etc/meshd"))
    assert not os.path.exists(state)
    assert not os.path.lexists(os.path.join(root, "etc/systemd/system/meshd.service"))
    assert "meshd" in passwd_entries(root) and "meshd-controller" in passwd_entries(root)


@pytest.mark.timeout(120)
def test_deb_refuses_when_proxy_uid_is_taken(packages, tmp, host_passwd):
    root = new_root(tmp, "dpkg")
    with open(os.path.join(root, "etc/passwd"), "a") as f:
        f.write(f"someone:x:{PROXY_UID}:{PROXY_UID}::/home/someone:/bin/sh\n")
    r = dpkg(root, "-i", deb(packages, "meshd"), check=False)
    assert r.returncode != 0
    assert f"UID {PROXY_UID} belongs to user 'someone'" in r.stderr, r.stderr
    assert "meshd" not in passwd_entries(root)
    assert dpkg_status(root, "meshd").startswith("install ok half-configured")


def copy_with_libs(root, exe):
    """Copies EXE and the shared libraries it loads into ROOT, at the same
    paths (ROOT is merged-/usr like the host)."""
    paths = {exe}
    for line in run(["ldd", exe]).stdout.splitlines():
        for word in line.split():
            if word.startswith("/"):
                paths.add(word)
    for p in paths:
        real = os.path.realpath(p)
        os.makedirs(os.path.dirname(root + real), exist_ok=True)
        shutil.copy2(real, root + real)
        # P itself may be a link (/bin/sh -> dash, /lib64/ld-linux...): the
        # same link in ROOT.
        link = root + os.path.join(os.path.realpath(os.path.dirname(p)), os.path.basename(p))
        if not os.path.lexists(link):
            os.makedirs(os.path.dirname(link), exist_ok=True)
            os.symlink(real, link)


def new_rpm_root(tmp):
    root = new_root(tmp, "rpm")
    for d in ("usr/bin", "usr/sbin", "usr/lib", "usr/lib64", "dev", "tmp", "var/tmp"):
        os.makedirs(os.path.join(root, d), exist_ok=True)
    for link in ("bin", "sbin", "lib", "lib64"):
        os.symlink("usr/" + link, os.path.join(root, link))
    os.mknod(os.path.join(root, "dev/null"), stat.S_IFCHR | 0o666, os.makedev(1, 3))
    for exe in ("/bin/sh", "/usr/sbin/useradd", "/usr/sbin/groupadd", "/usr/sbin/nologin"):
        copy_with_libs(root, exe)
    shutil.copy2("/etc/login.defs", os.path.join(root, "etc/login.defs"))
    run(["rpm", "--root", root, "--initdb"])
    return root


def rpm(root, *args, check=True):
    # --force-debian: Debian's rpm otherwise warns that it is not dpkg.
    nodeps = ["--nodeps"] if args[0] in ("-i", "-U", "-e", "-V") else []
    return run(["rpm", "--force-debian", "--root", root, *nodeps, *args], check=check)


@pytest.mark.timeout(300)
def test_rpm_install_upgrade_erase(packages, tmp, host_passwd):
    need("rpm")
    root = new_rpm_root(tmp)
    rpm(root, "-i", rpm_file(packages, "meshd"), rpm_file(packages, "meshd-controller"))
    check_installed_files(root)
    check_users(root)
    verify_units(root)

    files = rpm(root, "-ql", "meshd").stdout.split()
    for f in ("/usr/bin/meshd", "/usr/bin/meshd-init", "/usr/bin/meshd-ctl",
              "/usr/lib/systemd/system/meshd.service", "/etc/meshd/meshd.conf"):
        assert f in files, files
    assert "/usr/bin/meshd-controller" in rpm(root, "-ql", "meshd-controller").stdout.split()
    assert rpm(root, "-qc", "meshd").stdout.split() == ["/etc/meshd/init.env", "/etc/meshd/meshd.conf"]
    assert rpm(root, "-qc", "meshd-controller").stdout.split() == ["/etc/meshd/controller.env"]
    r = rpm(root, "-V", "meshd", "meshd-controller", check=False)
    assert r.returncode == 0, r.stdout + r.stderr

    # %config(noreplace): a local edit survives an upgrade.
    conf = os.path.join(root, "etc/meshd/meshd.conf")
    with open(conf, "a") as f:
        f.write("\nlog-level = debug\n")
    edited = open(conf).read()
    users = open(os.path.join(root, "etc/passwd")).read()
    rpm(root, "-U", rpm_file(packages, "meshd", VERSION2), rpm_file(packages, "meshd-controller", VERSION2))
    assert rpm(root, "-q", "--qf", "%{VERSION}", "meshd").stdout == VERSION2
    assert open(conf).read() == edited
    assert open(os.path.join(root, "etc/passwd")).read() == users  # %pre again: no change

    # erase: files go; the edited config is kept as .rpmsave (RPM's way of
    # keeping local edits; it has no purge), unedited ones go.
    rpm(root, "-e", "meshd", "meshd-controller")
    assert rpm(root, "-q", "meshd", check=False).returncode != 0
    for b in BINS:
        assert not os.path.exists(os.path.join(root, "usr/bin", b))
    assert open(conf + ".rpmsave").read() == edited
    assert not os.path.exists(os.path.join(root, "etc/meshd/init.env"))
    assert not os.path.exists(os.path.join(root, "etc/meshd/controller.env"))


@pytest.mark.timeout(120)
def test_rpm_refuses_when_proxy_uid_is_taken(packages, tmp, host_passwd):
    need("rpm")
    root = new_rpm_root(tmp)
    with open(os.path.join(root, "etc/passwd"), "a") as f:
        f.write(f"someone:x:{PROXY_UID}:{PROXY_UID}::/home/someone:/bin/sh\n")
    r = rpm(root, "-i", rpm_file(packages, "meshd"), check=False)
    assert r.returncode != 0
    assert f"UID {PROXY_UID} belongs to user 'someone'" in r.stderr, r.stderr
    assert rpm(root, "-q", "meshd", check=False).returncode != 0
    assert not os.path.exists(os.path.join(root, "usr/bin/meshd"))


def http_get(ns, url):
    r = run(["ip", "netns", "exec", ns, "curl", "-s", "-m", "2", url], check=False, timeout=10)
    return r.stdout if r.returncode == 0 else None


@pytest.mark.timeout(120)
def test_packaged_config_runs_as_the_unit_would(packages, tmp):
    """The packaged defaults work as meshd.service and meshd-controller.service
    run them (systemd itself cannot run here): meshd as UID 2102 with no
    capability, an empty bounding set and no_new_privs, reading the packaged
    meshd.conf, serves /ready; meshd-init accepts the packaged init.env and
    its rules send traffic to the ports and exempt the UID meshd.conf uses;
    the controller with the packaged controller.env, as an unprivileged
    user, serves /ready."""
    need("setpriv", "curl")
    root = os.path.join(tmp, f"x-root-{next(_counter)}")
    for d in (deb(packages, "meshd"), deb(packages, "meshd-controller")):
        run(["dpkg-deb", "-x", d, root])
    os.chmod(root, 0o755)
    ns = f"pk{os.getpid()}-{next(_counter)}"
    run(["ip", "netns", "add", ns])
    procs = []
    notify_dir = None
    try:
        run(["ip", "-n", ns, "link", "set", "lo", "up"])
        drop = ["setpriv", f"--reuid={PROXY_UID}", f"--regid={PROXY_UID}", "--clear-groups",
                "--inh-caps=-all", "--bounding-set=-all", "--no-new-privs"]
        log = open(os.path.join(tmp, "meshd.log"), "w")
        # systemd's notification socket (Type=notify): the unit installs the
        # rules once meshd says READY=1, so every listener must be bound by then.
        notify_dir = tempfile.mkdtemp(prefix="meshd-notify-")
        os.chmod(notify_dir, 0o755)
        notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        notify_path = os.path.join(notify_dir, "notify")
        notify.bind(notify_path)
        os.chmod(notify_path, 0o777)
        notify.settimeout(15)
        procs.append(subprocess.Popen(
            # The unit's User= and no privilege. (Its LimitNOFILE= is not
            # emulated: raising a hard limit may be refused in a container.)
            ["ip", "netns", "exec", ns, *drop,
             os.path.join(root, "usr/bin/meshd"), "--config", os.path.join(root, "etc/meshd/meshd.conf")],
            stdout=log, stderr=subprocess.STDOUT, env={"PATH": os.environ["PATH"], "NOTIFY_SOCKET": notify_path}))
        try:
            assert notify.recv(256) == b"READY=1\nSTATUS=serving", open(log.name).read()
        except socket.timeout:
            raise AssertionError("meshd sent no READY=1: " + open(log.name).read())
        listening = run(["ip", "netns", "exec", ns, "ss", "-ltnH"]).stdout
        assert "127.0.0.1:4140" in listening and ":4143" in listening and "127.0.0.1:4191" in listening, listening
        assert "ready" in http_get(ns, "http://127.0.0.1:4191/ready")

        env = dict(PATH=os.environ["PATH"], **env_file(os.path.join(root, "etc/meshd/init.env")))
        rules = run([os.path.join(root, "usr/bin/meshd-init"), "--dry-run"], env=env).stdout
        assert "--to-ports 4143" in rules and "--to-ports 4140" in rules, rules
        assert f"--uid-owner {PROXY_UID}" in rules, rules

        state = os.path.join(tmp, "controller-state")
        os.makedirs(state)
        os.chown(state, PROXY_UID + 1, PROXY_UID + 1)
        env = dict(PATH=os.environ["PATH"], **env_file(os.path.join(root, "etc/meshd/controller.env")))
        assert env["MESHD_CONTROLLER_DATA_DIR"] == "/var/lib/meshd-controller"
        env["MESHD_CONTROLLER_DATA_DIR"] = state  # the host's own is not ours to write
        ctl_drop = [a.replace(str(PROXY_UID), str(PROXY_UID + 1)) for a in drop]
        clog = open(os.path.join(tmp, "controller.log"), "w")
        procs.append(subprocess.Popen(
            ["ip", "netns", "exec", ns, *ctl_drop, os.path.join(root, "usr/bin/meshd-controller")],
            stdout=clog, stderr=subprocess.STDOUT, env=env))
        wait_for(lambda: procs[1].poll() is not None or http_get(ns, "http://127.0.0.1:4194/ready"),
                   15, "meshd-controller /ready")
        assert procs[1].poll() is None, open(clog.name).read()
        assert os.path.isfile(os.path.join(state, "registry.log"))

        # A stop: meshd says it is draining, then exits cleanly.
        procs[0].terminate()
        assert notify.recv(256) == b"STOPPING=1\nSTATUS=draining"
        assert procs[0].wait(timeout=40) == 0, open(log.name).read()
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(timeout=10)
        subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=20)
        if notify_dir:
            shutil.rmtree(notify_dir, ignore_errors=True)
