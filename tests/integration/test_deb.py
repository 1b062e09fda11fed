"""test_deb.py - the Debian package (make deb, contrib/debian).

Builds the package with `make deb` (a fresh copy of the tree, so never a
sanitizer binary), checks its file list, control fields, unit, conffiles
and maintainer scripts, runs lintian, then installs it with apt-get into a
scratch Debian root (debootstrap --variant=minbase, cached as a tarball
under build/deb-root/) and runs policyd -t there, reinstalls it over a
changed conffile, and purges it: no file of the package, no user, no unit
symlink may be left. Everything outside build/ and a temp dir is only read:
nothing is installed into /.

Skipped (with the reason) only when the packaging tools or the Debian
mirror for the scratch root cannot be had.
"""
import hashlib
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from harness import (TOP, PolicyClient, check, eq, free_port, mktemp, req,  # noqa: E402
                     time_limit, wait_for)

_state = {}


def _run(argv, timeout=100, **kw):
    return subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True, timeout=timeout, **kw)


def _unmount_below(root):
    """unmount what a timed-out debootstrap left mounted under root (its
    /proc, /sys), deepest first, so that removing root cannot reach them"""
    root = os.path.realpath(root)
    with open("/proc/self/mounts") as f:
        points = [l.split()[1].replace("\\040", " ") for l in f]
    for mp in sorted((p for p in points if p.startswith(root + "/")), key=len, reverse=True):
        subprocess.call(["umount", "-l", mp], stderr=subprocess.DEVNULL)


def _makefile_var(name):
    with open(os.path.join(TOP, "Makefile")) as f:
        text = f.read().replace("\\\n", " ")
    m = re.search(r"^%s\s*[?:]?=\s*(.*)$" % name, text, re.M)
    check(m is not None, "Makefile has no %s" % name)
    return m.group(1).split()


def _deb():
    if "deb" not in _state:
        raise Skip(_state.get("skip", "the package was not built (see test_deb_build)"))  # noqa: F821
    return _state["deb"]


def _shipped_unit():
    """contrib/policyd.service with the paths the package must use"""
    with open(os.path.join(TOP, "contrib", "policyd.service")) as f:
        lines = f.read().splitlines()
    out = []
    for line in lines:
        if line.startswith("# Before enabling:"):
            continue
        out.append(line.replace("/usr/local/sbin", "/usr/sbin").replace("/usr/local/etc", "/etc"))
    return out


# ------------------------------------------------------------- build ----

# a loaded machine builds the package (and, the first time, downloads the
# scratch root) in several minutes, not in the runner's default 120 s
@time_limit(900)
def test_deb_build():
    if os.geteuid() != 0:
        _state["skip"] = "needs root (apt-get for the packaging tools, chroot)"
        raise Skip(_state["skip"])  # noqa: F821
    pkgs = _makefile_var("DEB_BUILD") + _makefile_var("DEB_PKG")
    r = _run(["sh", os.path.join(TOP, "tests", "install-deps.sh")] + pkgs, timeout=400)
    if r.returncode != 0:
        _state["skip"] = "cannot install the packaging tools (%s): %s" % (
            " ".join(pkgs), (r.stderr.strip().splitlines() or ["?"])[-1])
        raise Skip(_state["skip"])  # noqa: F821
    version = _makefile_var("VERSION")[0]
    arch = _run(["dpkg", "--print-architecture"]).stdout.strip()
    out = os.path.join(TOP, "build", "deb")
    deb = os.path.join(out, "policyd_%s_%s.deb" % (version, arch))
    r = _run(["make", "-s", "-C", TOP, "deb"], timeout=400)
    if r.returncode != 0:
        raise AssertionError("make deb failed (%d):\n%s" % (
            r.returncode, "\n".join((r.stdout + r.stderr).splitlines()[-30:])))
    check(os.path.isfile(deb), "make deb left no %s" % deb)
    # the native source package comes with it
    check(os.path.isfile(os.path.join(out, "policyd_%s.dsc" % version)), "no .dsc in build/deb")
    _state.update(deb=deb, version=version, arch=arch)


def test_deb_contents():
    deb = _deb()
    r = _run(["dpkg-deb", "-c", deb])
    eq(r.returncode, 0, "dpkg-deb -c")
    files = {}
    for line in r.stdout.splitlines():
        parts = line.split(None, 5)
        path = parts[5].split(" -> ")[0]
        files[path.lstrip(".")] = parts
    want = ["/usr/sbin/policyd", "/usr/sbin/policyctl",
            "/usr/share/doc/policyd/README.Debian", "/usr/share/doc/policyd/copyright",
            "/usr/share/doc/policyd/changelog.gz"]
    rules = sorted(os.listdir(os.path.join(TOP, "rules")))
    rules = [f for f in rules if not f.startswith(".")]
    want += ["/etc/policyd/" + f for f in rules]
    for m in sorted(os.listdir(os.path.join(TOP, "man"))):
        want.append("/usr/share/man/man%s/%s.gz" % (m.rsplit(".", 1)[1], m))
    unit = [p for p in ("/lib/systemd/system/policyd.service",
                        "/usr/lib/systemd/system/policyd.service") if p in files]
    eq(len(unit), 1, "one systemd unit in the package")
    for p in want:
        check(p in files, "package lacks %s" % p)
    for p in ("/usr/sbin/policyd", "/usr/sbin/policyctl"):
        check(files[p][0] == "-rwxr-xr-x" and files[p][1] == "root/root",
              "%s: %s %s" % (p, files[p][0], files[p][1]))
    allowed = ("/etc/policyd/", "/lib/systemd/system/", "/usr/lib/systemd/system/",
               "/usr/sbin/", "/usr/share/doc/policyd/", "/usr/share/man/man5/",
               "/usr/share/man/man8/")
    for p in files:
        if p.endswith("/"):
            continue
        check(p.startswith(allowed), "unexpected file in the package: %s" % p)
        check("/usr/local" not in p, "a /usr/local path: %s" % p)

    # control fields
    def field(name):
        return _run(["dpkg-deb", "-f", deb, name]).stdout.strip()
    eq(field("Package"), "policyd", "Package")
    eq(field("Version"), _state["version"], "Version (Makefile VERSION)")
    dep = field("Depends")
    for lib in ("adduser", "libevent-2.1", "libhiredis", "libconfig", "libc6"):
        check(lib in dep, "Depends lacks %s: %s" % (lib, dep))
    check("asan" not in dep and "ubsan" not in dep, "sanitizer runtime in Depends: " + dep)
    check("redis-server" in field("Recommends"), "Recommends: redis-server")

    # the payload: conffiles are the sample files, the unit is
    # contrib/policyd.service with the Debian paths, the binary is no ASan build
    root = mktemp("policyd-deb-x.")
    try:
        eq(_run(["dpkg-deb", "-x", deb, root]).returncode, 0, "dpkg-deb -x")
        for f in rules:
            with open(os.path.join(TOP, "rules", f), "rb") as a, \
                    open(os.path.join(root, "etc", "policyd", f), "rb") as b:
                check(a.read() == b.read(), "/etc/policyd/%s differs from rules/%s" % (f, f))
        with open(root + unit[0]) as f:
            got = f.read().splitlines()
        eq(got, _shipped_unit(), "the packaged unit is contrib/policyd.service with Debian paths")
        check("ExecStartPre=/usr/sbin/policyd -t -c /etc/policyd/policyd.conf" in got,
              "the unit checks the configuration before starting")
        check("ExecStart=/usr/sbin/policyd -f -c /etc/policyd/policyd.conf" in got,
              "the unit's ExecStart")
        with open(os.path.join(root, "usr", "sbin", "policyd"), "rb") as f:
            elf = f.read()
        check(elf[:4] == b"\x7fELF", "policyd is an ELF binary")
        check(b"__asan_init" not in elf and b"__ubsan_handle" not in elf,
              "the packaged policyd is a sanitizer build")
        with open(os.path.join(root, "usr", "share", "doc", "policyd", "README.Debian")) as f:
            readme = f.read()
        for s in ("check_policy_service", "unix:private/policyd",
                  "/var/spool/postfix/private/policyd", "owner = \"postfix\""):
            check(s in readme, "README.Debian lacks %r" % s)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_deb_maintainer_scripts():
    deb = _deb()
    d = mktemp("policyd-deb-e.")
    try:
        eq(_run(["dpkg-deb", "-e", deb, d]).returncode, 0, "dpkg-deb -e")
        with open(os.path.join(d, "conffiles")) as f:
            conffiles = sorted(f.read().split())
        rules = sorted("/etc/policyd/" + f for f in os.listdir(os.path.join(TOP, "rules"))
                       if not f.startswith("."))
        eq(conffiles, rules, "conffiles")
        scripts = {}
        for s in ("postinst", "prerm", "postrm"):
            p = os.path.join(d, s)
            check(os.path.isfile(p), "no %s" % s)
            check(os.stat(p).st_mode & 0o111, "%s not executable" % s)
            r = _run(["sh", "-n", p])
            eq(r.returncode, 0, "sh -n %s: %s" % (s, r.stderr))
            with open(p) as f:
                scripts[s] = f.read()
            check("#DEBHELPER#" not in scripts[s], "%s: #DEBHELPER# not substituted" % s)
        post = scripts["postinst"]
        check(re.search(r"adduser --system --group\b.*\\\n.*policyd\n", post),
              "postinst creates the policyd system user and group")
        check("policyd -t -c /etc/policyd/policyd.conf" in post, "postinst runs policyd -t")
        check("deb-systemd-helper enable 'policyd.service'" in post, "postinst enables the unit")
        check(post.index("adduser") < post.index("deb-systemd-invoke"),
              "the user exists before the unit is started")
        check("deb-systemd-invoke stop 'policyd.service'" in scripts["prerm"], "prerm stops policyd")
        rm = scripts["postrm"]
        check("deb-systemd-helper purge 'policyd.service'" in rm, "postrm purges the unit state")
        check(re.search(r"purge\)\n(.*\n)*\s+deluser --system --quiet policyd", rm),
              "postrm removes the user on purge")
        check("delgroup --system --quiet --only-if-empty policyd" in rm, "postrm removes the group")
    finally:
        shutil.rmtree(d, ignore_errors=True)


@time_limit(300)
def test_deb_lintian():
    deb = _deb()
    if shutil.which("lintian") is None:
        raise Skip("lintian not installed")  # noqa: F821
    r = _run(["lintian", "--pedantic", "--display-info", "--no-tag-display-limit", deb],
             timeout=280)
    tags = [line for line in r.stdout.splitlines() if re.match(r"^[EWIPX]: ", line)]
    errors = [line for line in tags if line.startswith("E: ")]
    eq(errors, [], "lintian errors on %s" % os.path.basename(deb))
    check(r.returncode == 0, "lintian exited %d: %s" % (r.returncode, r.stderr.strip()))
    for line in tags:
        print("# lintian: " + line, flush=True)


# ------------------------------------------------------- scratch root ----

def _mirror():
    """(suite, mirror URI) of the host's Debian apt sources"""
    suite = None
    with open("/etc/os-release") as f:
        for line in f:
            if line.startswith("VERSION_CODENAME="):
                suite = line.split("=", 1)[1].strip().strip('"')
    check(suite, "no VERSION_CODENAME in /etc/os-release")
    texts = []
    for p in ["/etc/apt/sources.list"] + sorted(
            os.path.join("/etc/apt/sources.list.d", f)
            for f in (os.listdir("/etc/apt/sources.list.d")
                      if os.path.isdir("/etc/apt/sources.list.d") else [])):
        if os.path.isfile(p):
            with open(p) as f:
                texts.append(f.read())
    for text in texts:
        for m in re.finditer(r"^deb\s+(?:\[[^]]*\]\s+)?(\S+)\s+(\S+)", text, re.M):
            if m.group(2) == suite:
                return suite, m.group(1)
        for stanza in re.split(r"\n\s*\n", text):
            uris = re.search(r"^URIs:\s*(\S+)", stanza, re.M)
            suites = re.search(r"^Suites:\s*(.*)$", stanza, re.M)
            if uris and suites and suite in suites.group(1).split():
                return suite, uris.group(1)
    return suite, "http://deb.debian.org/debian"


def _depends(deb):
    """the package's Depends, first alternative, without versions"""
    dep = _run(["dpkg-deb", "-f", deb, "Depends"]).stdout
    return sorted({d.split("|")[0].split("(")[0].split(":")[0].strip()
                   for d in dep.split(",") if d.strip()})


@time_limit(480)
def test_deb_scratch_root():
    """a minbase Debian with the package's dependencies, cached in build/"""
    deb = _deb()
    if shutil.which("debootstrap") is None:
        raise Skip("debootstrap not installed")  # noqa: F821
    suite, mirror = _mirror()
    include = _depends(deb)
    key = hashlib.sha1((suite + " " + mirror + " " + ",".join(include)).encode()).hexdigest()[:12]
    cache_dir = os.path.join(TOP, "build", "deb-root")
    cache = os.path.join(cache_dir, "%s-minbase-%s.tar" % (suite, key))
    _state["root_tar"] = cache
    if os.path.isfile(cache):
        return
    os.makedirs(cache_dir, exist_ok=True)
    root = tempfile.mkdtemp(prefix="debootstrap.", dir=cache_dir)
    try:
        # a cold download on a slow mirror takes minutes; the tarball is cached
        try:
            r = _run(["debootstrap", "--variant=minbase", "--include=" + ",".join(include),
                      suite, root, mirror], timeout=420)
        except subprocess.TimeoutExpired:
            raise AssertionError("debootstrap from %s took over 420 s" % mirror)
        if r.returncode != 0:
            log = r.stdout + r.stderr
            if re.search(r"Failed getting release file|Couldn't download|Temporary failure|"
                         r"Could not resolve", log):
                _state["skip_root"] = "debootstrap cannot reach %s: %s" % (
                    mirror, log.strip().splitlines()[-1])
                raise Skip(_state["skip_root"])  # noqa: F821
            raise AssertionError("debootstrap failed (%d):\n%s" % (
                r.returncode, "\n".join(log.splitlines()[-20:])))
        archives = os.path.join(root, "var", "cache", "apt", "archives")
        for f in os.listdir(archives):
            if f.endswith(".deb"):
                os.unlink(os.path.join(archives, f))
        tmp = cache + ".tmp"
        r = _run(["tar", "-C", root, "--numeric-owner", "-cf", tmp, "."], timeout=60)
        eq(r.returncode, 0, "tar of the scratch root: " + r.stderr)
        os.rename(tmp, cache)
    finally:
        _unmount_below(root)
        shutil.rmtree(root, ignore_errors=True)
        for old in os.listdir(cache_dir):
            if old.endswith(".tar") and os.path.join(cache_dir, old) != cache:
                os.unlink(os.path.join(cache_dir, old))


# the paths dpkg, apt and adduser themselves change in any install/purge
_BOOKKEEPING = re.compile(r"^\./(proc|tmp|var/log|var/cache|var/lib/dpkg|var/lib/apt)(/|$)|"
                          r"^\./etc/(passwd|group|shadow|gshadow|subuid|subgid)-$|"
                          r"^\./run/adduser$")


def _tree(root):
    paths = set()
    for dirpath, dirnames, filenames in os.walk(root):
        rel = "." + dirpath[len(root):]
        for n in dirnames + filenames:
            paths.add(rel + "/" + n)
    return {p for p in paths if not _BOOKKEEPING.search(p)}


def _readme_socket(root, chroot, pw):
    """README.Debian's unix socket for a chrooted smtpd, on the installed
    package: policyd started as root creates it in private/, owned by
    postfix, drops to the policyd user and answers from the shipped maps"""
    with open(os.path.join(root, "usr", "share", "doc", "policyd", "README.Debian")) as f:
        m = re.search(r"^ *(listen = \( \{ address = \"unix:[^;]*;.*?\} \);)$", f.read(),
                      re.M | re.S)
    check(m is not None, "README.Debian has no unix listen example")
    with open(os.path.join(root, "etc", "policyd", "policyd.conf")) as f:
        conf = f.read()
    conf, n = re.subn(r"^listen = .*;$", lambda _: m.group(1), conf, flags=re.M)
    eq(n, 1, "one listen line in the shipped policyd.conf")
    # no fixed ports in tests: no metrics listener, and a Redis port that
    # nothing listens on (the access check needs no Redis)
    conf, n = re.subn(r'address = "127\.0\.0\.1:9110";', 'address = "";', conf)
    eq(n, 1, "the metrics address in the shipped policyd.conf")
    conf, n = re.subn(r'address = "127\.0\.0\.1:6379";',
                      'address = "127.0.0.1:%d";' % free_port(), conf)
    eq(n, 1, "the Redis address in the shipped policyd.conf")
    with open(os.path.join(root, "etc", "policyd", "socket-test.conf"), "w") as f:
        f.write(conf)
    r = chroot("policyd", "-t", "-c", "/etc/policyd/socket-test.conf")
    eq(r.returncode, 0, "policyd -t on README.Debian's socket configuration: " + r.stderr)
    sock = os.path.join(root, "var", "spool", "postfix", "private", "policyd")
    proc = subprocess.Popen(["chroot", root, "policyd", "-f", "-c", "/etc/policyd/socket-test.conf"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_for(lambda: os.path.exists(sock) or proc.poll() is not None, timeout=20,
                 what="policyd's socket in private/")
        if proc.poll() is not None:
            raise AssertionError("policyd exited (%d): %s" % (
                proc.returncode, proc.stderr.read().decode(errors="replace")))
        st = os.lstat(sock)
        pf = chroot("getent", "passwd", "postfix").stdout.split(":")
        eq((st.st_uid, st.st_gid, st.st_mode & 0o7777), (int(pf[2]), int(pf[3]), 0o660),
           "owner, group and mode of private/policyd")

        def uid():
            with open("/proc/%d/status" % proc.pid) as f:
                return re.search(r"^Uid:\s+(\d+)", f.read(), re.M).group(1)
        wait_for(lambda: uid() == pw[2], timeout=20, what="policyd to drop to the policyd user")
        with PolicyClient(sock, timeout=20) as c:
            got = c.ask(req(client_address="198.51.100.66"))
        check(got.startswith("REJECT 5.7.1 Client blocked by local policy"),
              "the shipped client_access over the socket: %r" % got)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=20)
        proc.stderr.close()
    # the policyd user cannot remove it from postfix's 0700 private/ (the
    # next start replaces it); the test's own files go before the purge check
    if os.path.lexists(sock):
        os.unlink(sock)
    os.unlink(os.path.join(root, "etc", "policyd", "socket-test.conf"))


def test_deb_install_purge():
    deb = _deb()
    if "root_tar" not in _state or not os.path.isfile(_state["root_tar"]):
        raise Skip(_state.get("skip_root", "no scratch root (see test_deb_scratch_root)"))  # noqa: F821
    root = mktemp("policyd-deb-root.")
    try:
        eq(_run(["tar", "-C", root, "--numeric-owner", "-xpf", _state["root_tar"]],
                timeout=60).returncode, 0, "unpack the scratch root")
        # services never start inside the scratch root (there is no systemd
        # there either, /run/systemd/system is absent)
        rc_d = os.path.join(root, "usr", "sbin", "policy-rc.d")
        with open(rc_d, "w") as f:
            f.write("#!/bin/sh\nexit 101\n")
        os.chmod(rc_d, 0o755)
        check(not os.path.exists(os.path.join(root, "run", "systemd", "system")),
              "the scratch root looks booted")
        shutil.copy(deb, os.path.join(root, "tmp", "policyd.deb"))

        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive", LC_ALL="C.UTF-8",
                   PATH="/usr/sbin:/usr/bin:/sbin:/bin")

        def chroot(*argv, timeout=60):
            return _run(["chroot", root] + list(argv), timeout=timeout, env=env)

        # what Debian's postfix package leaves for README.Debian's socket:
        # a postfix user, private/ owned by it with mode 0700
        r = chroot("adduser", "--system", "--group", "--quiet", "--no-create-home",
                   "--home", "/var/spool/postfix", "postfix")
        eq(r.returncode, 0, "adduser postfix: " + r.stderr)
        private = os.path.join(root, "var", "spool", "postfix", "private")
        os.makedirs(private)
        eq(chroot("chown", "postfix:root", "/var/spool/postfix/private").returncode, 0, "chown")
        os.chmod(private, 0o700)
        with open(os.path.join(root, "etc", "passwd")) as f:
            passwd0 = f.read()
        with open(os.path.join(root, "etc", "group")) as f:
            group0 = f.read()
        before = _tree(root)

        # as the admin does: apt install ./policyd_..._amd64.deb (the
        # dependencies are in the root, so apt needs no network)
        r = chroot("apt-get", "install", "-y", "--no-install-recommends", "/tmp/policyd.deb")
        eq(r.returncode, 0, "apt-get install: %s%s" % (r.stdout[-800:], r.stderr[-800:]))
        r = chroot("dpkg-query", "-W", "-f=${Status} ${Version}", "policyd")
        eq(r.stdout, "install ok installed " + _state["version"], "dpkg status")
        r = chroot("policyd", "-t")
        eq(r.returncode, 0, "policyd -t on the shipped configuration: " + r.stderr)
        check("/etc/policyd/policyd.conf: configuration OK" in r.stdout, r.stdout)
        r = chroot("policyctl", "-h")
        check(r.returncode in (0, 2) and "usage" in (r.stdout + r.stderr).lower(),
              "policyctl runs: %d %s" % (r.returncode, r.stderr))
        r = chroot("getent", "passwd", "policyd")
        eq(r.returncode, 0, "the policyd user exists")
        pw = r.stdout.strip().split(":")
        check(int(pw[2]) < 1000, "policyd is a system user: uid %s" % pw[2])
        eq(pw[5], "/nonexistent", "home")
        eq(pw[6], "/usr/sbin/nologin", "shell")
        check(not os.path.exists(os.path.join(root, "nonexistent")), "a home was created")
        eq(chroot("getent", "group", "policyd").returncode, 0, "the policyd group exists")
        wants = os.path.join(root, "etc", "systemd", "system", "multi-user.target.wants",
                             "policyd.service")
        check(os.path.islink(wants), "the unit is enabled (multi-user.target.wants)")
        check(os.readlink(wants).endswith("/systemd/system/policyd.service"), os.readlink(wants))

        _readme_socket(root, chroot, pw)

        # a changed conffile survives a reinstall; a configuration that
        # fails policyd -t is reported, and the package still configures
        conf = os.path.join(root, "etc", "policyd", "policyd.conf")
        access = os.path.join(root, "etc", "policyd", "client_access")
        with open(access, "a") as f:
            f.write("192.0.2.99 REJECT local change\n")
        with open(conf, "a") as f:
            f.write("no_such_setting = 1;\n")
        # README.Debian's statoverride for a configuration with a password
        r = chroot("dpkg-statoverride", "--update", "--add", "root", "policyd", "0640",
                   "/etc/policyd/policyd.conf")
        eq(r.returncode, 0, "dpkg-statoverride: " + r.stderr)
        r = chroot("dpkg", "-i", "/tmp/policyd.deb")
        eq(r.returncode, 0, "dpkg -i over a changed configuration: " + r.stderr)
        st = os.stat(conf)
        eq((st.st_uid, st.st_gid, st.st_mode & 0o7777), (0, int(pw[3]), 0o640),
           "policyd.conf's owner, group and mode after reinstall with the statoverride")
        check(re.search(r"/etc/policyd/policyd\.conf:\d+: unknown setting", r.stderr),
              "postinst shows the policyd -t error: " + r.stderr)
        check("will not start" in r.stderr, "postinst says the service will not start")
        with open(access) as f:
            check(f.read().endswith("192.0.2.99 REJECT local change\n"),
                  "the changed conffile was overwritten")
        eq(chroot("getent", "passwd", "policyd").stdout.strip().split(":"), pw,
           "the user after reinstall")

        # remove keeps the configuration, purge removes everything
        r = chroot("apt-get", "remove", "-y", "policyd")
        eq(r.returncode, 0, "apt-get remove: " + r.stderr[-800:])
        check(not os.path.exists(os.path.join(root, "usr", "sbin", "policyd")), "binary after remove")
        check(os.path.exists(conf), "remove deleted the configuration")
        r = chroot("apt-get", "purge", "-y", "policyd")
        eq(r.returncode, 0, "apt-get purge: " + r.stderr[-800:])
        r = chroot("dpkg-query", "-W", "-f=${Status}", "policyd")
        check(r.returncode != 0 or r.stdout.startswith("unknown") or "not-installed" in r.stdout,
              "dpkg still knows policyd: " + r.stdout)
        r = chroot("dpkg-statoverride", "--list", "/etc/policyd/policyd.conf")
        check(r.returncode != 0 and r.stdout == "", "purge left the statoverride: " + r.stdout)
        check(chroot("getent", "passwd", "policyd").returncode != 0, "purge left the user")
        check(chroot("getent", "group", "policyd").returncode != 0, "purge left the group")
        with open(os.path.join(root, "etc", "passwd")) as f:
            eq(f.read(), passwd0, "/etc/passwd after purge")
        with open(os.path.join(root, "etc", "group")) as f:
            eq(f.read(), group0, "/etc/group after purge")
        after = _tree(root)
        eq(sorted(after - before), [], "left behind after purge")
        eq(sorted(before - after), [], "removed by install and purge")
    finally:
        shutil.rmtree(root, ignore_errors=True)
