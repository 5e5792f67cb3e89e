"""The container recipes in packaging/container/, rendered and linted.

No container engine runs here, so the Containerfile is parsed (instructions,
continuation lines, stages, build arguments), its ARGs substituted, and the
result checked: Debian slim bases pinned by tag, the build/proxy/init stages,
users, exec-form entrypoints pointing at binaries the build stage makes, apt
hygiene, COPY sources that exist, and that every library `ldd` lists for the
built binaries comes from a Debian package the runtime stage installs.

Run: MESHD_BUILD=/path/to/build /usr/bin/python3 -m pytest tests/e2e/test_container_recipes.py
"""

import json
import os
import re
import shlex
import shutil
import subprocess

import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BUILD = os.environ.get("MESHD_BUILD", os.path.join(ROOT, "build"))
RECIPE = os.path.join(ROOT, "packaging", "container", "Containerfile")

# Packages every Debian image has (Priority: required): their libraries need
# no install line.
BASE_PACKAGES = {"libc6", "libgcc-s1"}
# What the Makefile's build needs (its DEB_PKGS, less the test tools).
BUILD_PACKAGES = {"g++", "make", "liburing-dev", "libwolfssl-dev", "libc-ares-dev", "libprotobuf-dev",
                  "protobuf-compiler", "libnghttp2-dev", "libtomlplusplus-dev"}


class Instruction:
    def __init__(self, line, op, args):
        self.line, self.op, self.args = line, op, args

    def __repr__(self):
        return f"line {self.line}: {self.op} {self.args}"


def parse(text):
    """Instructions of a Containerfile: continuation lines joined, comments
    and blank lines dropped (also inside a continued instruction)."""
    out, buf, start = [], [], None
    for n, raw in enumerate(text.splitlines(), 1):
        stripped = raw.strip()
        if not buf and (not stripped or stripped.startswith("#")):
            continue
        if buf and stripped.startswith("#"):
            continue
        if start is None:
            start = n
        if raw.rstrip().endswith("\\"):
            buf.append(raw.rstrip()[:-1])
            continue
        buf.append(raw)
        joined = " ".join(part.strip() for part in buf)
        op, _, args = joined.partition(" ")
        out.append(Instruction(start, op.upper(), args.strip()))
        buf, start = [], None
    assert not buf, "the file ends inside a continued instruction"
    return out


def substitute(text, values, where):
    def one(m):
        name = m.group(1) or m.group(2)
        # Shell variables of RUN lines ($(nproc), ${GIT_REV} declared by ARG) stay for the shell.
        assert name in values, f"{where}: ${name} is not a declared ARG"
        return values[name]

    return re.sub(r"\$\{(\w+)\}|\$(\w+)", one, text)


class Stage:
    def __init__(self, name, base, line):
        self.name, self.base, self.line = name, base, line
        self.instructions = []
        self.args = {}

    def all(self, op):
        return [i for i in self.instructions if i.op == op]


def render(instructions, build_args=None):
    """Stages with their ARGs substituted (build_args override defaults)."""
    build_args = build_args or {}
    global_args, stages = {}, []
    for ins in instructions:
        if ins.op == "ARG":
            name, _, default = ins.args.partition("=")
            value = build_args.get(name, default)
            if stages:
                stages[-1].args[name] = global_args.get(name, value) if not default else value
            else:
                global_args[name] = value
            continue
        if ins.op == "FROM":
            words = substitute(ins.args, global_args, f"line {ins.line}").split()
            assert len(words) in (1, 3) and (len(words) == 1 or words[1].upper() == "AS"), ins
            stages.append(Stage(words[2] if len(words) == 3 else None, words[0], ins.line))
            continue
        assert stages, f"{ins}: before any FROM"
        stage = stages[-1]
        if ins.op == "RUN":
            # The shell expands RUN lines; only check that the ARGs it uses are declared.
            for name in re.findall(r"\$\{(\w+)\}", ins.args):
                assert name in stage.args, f"{ins}: ${{{name}}} is not an ARG of stage {stage.name}"
            stage.instructions.append(ins)
        else:
            stage.instructions.append(Instruction(ins.line, ins.op, substitute(ins.args, stage.args, str(ins))))
    return stages


@pytest.fixture(scope="module")
def stages():
    with open(RECIPE) as f:
        return render(parse(f.read()))


def by_name(stages):
    return {s.name: s for s in stages}


def apt_packages(stage):
    pkgs = set()
    for run in stage.all("RUN"):
        for cmd in re.split(r"&&|;", run.args):
            words = shlex.split(cmd)
            if len(words) >= 2 and "apt-get" in words and "install" in words:
                pkgs |= {w for w in words[words.index("install") + 1:] if not w.startswith("-")}
    return pkgs


def make_targets(stage):
    """The build/... targets of the make commands a stage runs."""
    targets = []
    for run in stage.all("RUN"):
        for cmd in re.split(r"&&|;", run.args):
            words = cmd.split()
            if words and words[0] == "make":
                targets += [w for w in words[1:] if w.startswith("build/")]
    return targets


def test_parser_handles_continuations_and_comments():
    ins = parse("ARG A=x\n# c\nFROM debian:${A}-slim AS s\nRUN a \\\n  # inside\n  && b\nUSER 1\n")
    assert [(i.op, i.args) for i in ins] == [("ARG", "A=x"), ("FROM", "debian:${A}-slim AS s"),
                                           ("RUN", "a && b"), ("USER", "1")]
    st = render(ins, {"A": "bookworm"})
    assert st[0].base == "debian:bookworm-slim" and st[0].name == "s"


def test_bases_are_debian_slim_pinned_by_tag(stages):
    names = set()
    for s in stages:
        if s.base in names:
            continue
        assert re.fullmatch(r"debian:[a-z0-9.]+-slim(@sha256:[0-9a-f]{64})?", s.base), \
            f"line {s.line}: FROM {s.base}: expected debian:<release>-slim"
        names.add(s.name)
    # A digest given as a build argument renders too.
    with open(RECIPE) as f:
        digest = "debian:bookworm-slim@sha256:" + "a" * 64
        assert all(s.base == digest for s in render(parse(f.read()), {"DEBIAN_IMAGE": digest}))


def test_stages_users_and_entrypoints(stages):
    st = by_name(stages)
    assert {"build", "proxy", "init"} <= set(st)
    assert stages[-1].name == "proxy", "the proxy image is the default (last) target"
    assert st["proxy"].all("USER")[-1].args in ("2102", "2102:2102")
    assert st["init"].all("USER")[-1].args.split(":")[0] in ("0", "root")
    expose = st["proxy"].all("EXPOSE")
    assert expose and {"4143", "4140", "4191"} <= set(" ".join(e.args for e in expose).split())

    build = st["build"]
    made = make_targets(build)
    assert made, "the build stage runs make with targets"
    workdir = build.all("WORKDIR")[-1].args
    for name in ("proxy", "init"):
        entry = st[name].all("ENTRYPOINT")
        assert len(entry) == 1, f"{name}: one ENTRYPOINT"
        argv = json.loads(entry[0].args)  # exec form: a JSON array
        assert isinstance(argv, list) and argv and all(isinstance(a, str) for a in argv)
        copies = {}
        for c in st[name].all("COPY"):
            words = c.args.split()
            if words[0].startswith("--from="):
                assert words[0] == "--from=build", c
                copies[words[-1]] = words[1:-1]
        assert argv[0] in copies, f"{name}: ENTRYPOINT {argv[0]} is not copied from the build stage"
        for src in copies[argv[0]] + [s for dst, srcs in copies.items() for s in srcs]:
            rel = os.path.relpath(src, workdir)
            assert rel.startswith("build/"), f"{src}: not under the build's output"
            assert rel in made, f"{src}: the build stage does not make {rel}"


def test_apt_hygiene_and_no_remote_add(stages):
    for s in stages:
        assert not s.all("ADD"), f"stage {s.name}: use COPY (no ADD, and never of a URL)"
        for run in s.all("RUN"):
            if "apt-get install" in run.args:
                assert "--no-install-recommends" in run.args, run
                assert "rm -rf /var/lib/apt/lists" in run.args, run
                assert "apt-get update" in run.args, f"{run}: update and install in one layer"
    assert BUILD_PACKAGES <= apt_packages(by_name(stages)["build"])


def test_copy_sources_exist(stages):
    for s in stages:
        for c in s.all("COPY"):
            words = c.args.split()
            if words[0].startswith("--"):
                continue
            for src in words[:-1]:
                assert os.path.exists(os.path.join(ROOT, src)), f"{c}: {src} is not in the repository"


def test_make_targets_exist(stages):
    if shutil.which("make") is None:
        pytest.skip("no make")
    targets = sorted(set(make_targets(by_name(stages)["build"])))
    assert targets
    r = subprocess.run(["make", "-n", "--no-print-directory", "BUILD_ROOT=build", *targets], cwd=ROOT,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr


def packages_for(binary):
    """Debian packages of the shared libraries `ldd` lists for binary."""
    out = subprocess.run(["ldd", binary], capture_output=True, text=True, timeout=10, check=True).stdout
    pkgs = {}
    for line in out.splitlines():
        m = re.search(r"=>\s*(/\S+)", line)
        if not m:
            continue
        lib = m.group(1)
        # The sanitizers' runtimes come with a MODE=asan build of the tests;
        # the images are built in release mode, without them.
        if re.search(r"/lib(asan|ubsan|lsan|tsan)\.so", lib):
            continue
        candidates = [lib, os.path.realpath(lib)]
        # /lib is a symlink to /usr/lib on merged-/usr systems; dpkg knows one of the two.
        candidates += [c.replace("/usr/lib/", "/lib/", 1) if c.startswith("/usr/lib/")
                       else c.replace("/lib/", "/usr/lib/", 1) for c in list(candidates)]
        for c in candidates:
            r = subprocess.run(["dpkg", "-S", c], capture_output=True, text=True, timeout=10)
            if r.returncode == 0:
                pkgs[lib] = r.stdout.split(":")[0]
                break
        else:
            pytest.fail(f"{binary}: no Debian package owns {lib}")
    return pkgs


@pytest.mark.parametrize("binary,stage", [("meshd", "proxy"), ("meshd-ctl", "proxy"), ("meshd-init", "init")])
def test_runtime_libraries_are_installed(stages, binary, stage):
    path = os.path.join(BUILD, binary)
    if not os.path.exists(path):
        pytest.skip(f"{path} not built")
    if shutil.which("dpkg") is None:
        pytest.skip("not a Debian system")
    with open("/etc/os-release") as f:
        release = dict(line.rstrip().split("=", 1) for line in f if "=" in line)
    codename = release.get("VERSION_CODENAME", "").strip('"')
    base = by_name(stages)[stage].base
    if codename and not base.startswith(f"debian:{codename}-"):
        pytest.skip(f"this machine is {codename}, the image {base}: package names may differ")
    installed = apt_packages(by_name(stages)[stage]) | BASE_PACKAGES
    missing = {lib: pkg for lib, pkg in packages_for(path).items() if pkg not in installed}
    assert not missing, f"{binary} needs these packages in the {stage} stage: {missing}"


def test_readme_documents_the_build():
    with open(os.path.join(ROOT, "packaging", "container", "README.md")) as f:
        text = f.read()
    assert "podman build -f packaging/container/Containerfile --target proxy" in text
    assert "--target init" in text
