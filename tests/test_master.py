"""End-to-end tests of master: prefork, replacement, maxchild, events,
START, DAEMON, reload, shutdown, privileges and crash throttling, using
the echod test service (tests/svc/echod.c) on the real service loop."""

import fcntl
import grp
import json
import os
import pwd
import shutil
import signal
import socket
import stat
import subprocess
import time

import pytest

from columba import free_port, pid_alive, program, wait_until

ECHOD = "tests/svc/echod"


def echo_service(port, **keys):
    """A SERVICES entry for echod on 127.0.0.1:port."""
    entry = {"cmd": program(ECHOD), "listen": f"127.0.0.1:{port}"}
    entry.update(keys)
    return entry


def echod_pids(inst):
    return sorted(c["pid"] for c in inst.children("echod"))


def wait_children(inst, count, timeout=10.0):
    return wait_until(lambda: len(echod_pids(inst)) == count and
                      echod_pids(inst), timeout,
                      what=f"{count} echod children")


def test_version_names_cyrus_compat():
    out = subprocess.run([program("master/master"), "-V"],
                         capture_output=True, text=True, check=True).stdout
    assert "cyrus-imapd 3.12.0" in out
    assert out.startswith("columba ")


def test_cyr_buildinfo_is_json():
    out = subprocess.run([program("imap/cyr_buildinfo")], capture_output=True,
                         text=True, check=True).stdout
    info = json.loads(out)
    assert info["dependency"]["openssl"] is True
    assert info["database"]["twoskip"] is True
    assert "component" in info
    flat = subprocess.run([program("imap/cyr_buildinfo"), "flat"],
                          capture_output=True, text=True, check=True).stdout
    assert "dependency.openssl=1" in flat.splitlines()


def test_bad_cyrus_conf_is_reported_with_line(make_instance):
    inst = make_instance(cyrus_conf="SERVICES {\n  echo cmd=x\n}\n")
    inst.start(wait=False)
    code, err = inst.wait_exit(10)
    assert code != 0
    assert "cyrus.conf:2:" in err and "missing listen=" in err


def test_prefork_keeps_idle_children(make_instance):
    port = free_port()
    inst = make_instance(services=[("echo", echo_service(port, prefork=3))])
    inst.start()
    pids = wait_children(inst, 3)
    # Stable: no more children appear while nobody connects.
    time.sleep(1.5)
    assert echod_pids(inst) == pids

    # A busy child is replaced by a fresh idle one.
    with inst.connect(port) as c:
        greeting = c.readline()
        assert greeting.startswith("+OK echod service=echo")
        assert c.command("hello world") == "ECHO hello world"
        wait_children(inst, 4)
        assert c.command("QUIT") == "BYE"


def test_killed_child_is_logged_and_replaced(make_instance):
    port = free_port()
    inst = make_instance(services=[("echo", echo_service(port, prefork=2))])
    inst.start()
    pids = wait_children(inst, 2)
    victim = pids[0]
    os.kill(victim, signal.SIGKILL)
    inst.wait_for_log(rf"process killed by signal service=echo "
                      rf"pid={victim} signal=9")
    new = wait_children(inst, 2)
    assert victim not in new

    # A client-triggered crash is logged the same way.
    with inst.connect(port) as c:
        pid = int(c.readline().split("pid=")[1])
        c.send_line("CRASH")
        with pytest.raises((EOFError, ConnectionResetError)):
            c.readline()
    inst.wait_for_log(rf"service=echo pid={pid} signal=6")


def test_maxchild_is_honoured(make_instance):
    port = free_port()
    inst = make_instance(services=[("echo", echo_service(port, maxchild=2))])
    inst.start()
    assert echod_pids(inst) == []

    first = inst.connect(port)
    second = inst.connect(port)
    assert first.readline().startswith("+OK")
    assert second.readline().startswith("+OK")
    third = inst.connect(port)
    with pytest.raises(socket.timeout):
        third.readline(timeout=1.5)
    assert len(echod_pids(inst)) == 2

    # Freeing one child lets the waiting client in, still with two.
    assert first.command("QUIT") == "BYE"
    first.close()
    assert third.readline(timeout=5).startswith("+OK")
    assert len(echod_pids(inst)) == 2
    second.close()
    third.close()


def test_maxuse_recycles_children(make_instance):
    port = free_port()
    cmd = program(ECHOD) + " -U 2"
    inst = make_instance(services=[("echo", echo_service(port, cmd=cmd,
                                                         prefork=1,
                                                         maxchild=1))])
    inst.start()
    seen = []
    for _ in range(3):
        with inst.connect(port) as c:
            seen.append(int(c.readline().split("pid=")[1]))
            assert c.command("QUIT") == "BYE"
    assert seen[0] == seen[1]
    assert seen[2] != seen[0]


def test_unix_socket_service(make_instance):
    inst = make_instance()
    sock = inst.path("run", "echo.sock")
    inst.write_cyrus_conf(
        f'SERVICES {{\n  echo cmd="{program(ECHOD)}" listen="{sock}"\n}}\n')
    inst.start()
    # Anyone may connect; the directory is what restricts access.
    assert stat.S_IMODE(os.stat(sock).st_mode) == 0o777
    with inst.connect(sock) as c:
        assert c.readline().startswith("+OK echod")
        assert c.command("x") == "ECHO x"
    inst.stop()
    assert not os.path.exists(sock)


def build_shim(inst, name, source):
    """Compile `source` into an LD_PRELOAD library in the instance."""
    cc = shutil.which("cc") or shutil.which("gcc")
    if not cc:
        pytest.skip("needs a C compiler for the LD_PRELOAD shim")
    src = inst.path(name + ".c")
    lib = inst.path(name + ".so")
    with open(src, "w") as f:
        f.write(source)
    subprocess.run([cc, "-shared", "-fPIC", "-o", lib, src, "-ldl"],
                   check=True)
    return lib


def preload_env(lib):
    """Environment settings that preload `lib` (also into a sanitizer
    build, whose runtime would otherwise insist on coming first)."""
    asan = os.environ.get("ASAN_OPTIONS", "")
    return {"LD_PRELOAD": lib,
            "ASAN_OPTIONS": (asan + ":" if asan else "")
                            + "verify_asan_link_order=0"}


# An LD_PRELOAD shim that, right after a Unix socket is bound, swaps the
# socket's name for a symbolic link to $RACE_VICTIM: what the owner of
# the socket directory (the cyrus user) could do at that moment.
SYMLINK_SWAP_SHIM = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

int bind(int fd, const struct sockaddr *sa, socklen_t len)
{
    int (*real)(int, const struct sockaddr *, socklen_t) =
        (int (*)(int, const struct sockaddr *, socklen_t))
        dlsym(RTLD_NEXT, "bind");
    const char *victim = getenv("RACE_VICTIM");
    char moved[256];
    int r = real(fd, sa, len);

    if (r == 0 && sa->sa_family == AF_UNIX && victim) {
        const char *path = ((const struct sockaddr_un *)sa)->sun_path;

        snprintf(moved, sizeof(moved), "%s.moved", path);
        if (rename(path, moved) == 0 && symlink(victim, path) != 0)
            abort();
    }
    return r;
}
"""


def test_unix_socket_mode_is_not_set_through_a_symlink(make_instance,
                                                        monkeypatch):
    inst = make_instance()
    shim = build_shim(inst, "swap", SYMLINK_SWAP_SHIM)
    victim = inst.path("victim")
    with open(victim, "w") as f:
        f.write("secret\n")
    sock = inst.path("run", "echo.sock")
    inst.write_cyrus_conf(
        f'SERVICES {{\n  echo cmd="{program(ECHOD)}" listen="{sock}"\n}}\n')
    inst.hand_over()
    os.chmod(victim, 0o600)
    for key, value in preload_env(shim).items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("RACE_VICTIM", victim)
    inst.start()
    assert os.path.islink(sock)
    # The master (root in production) must not have touched the target.
    assert stat.S_IMODE(os.stat(victim).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(sock + ".moved").st_mode) == 0o777


# Plants a hard link to $RACE_VICTIM at $RACE_READY each time that name
# is unlinked: someone with write access to the directory winning the
# race against the master.
RELINK_AFTER_UNLINK_SHIM = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int unlink(const char *path)
{
    int (*real)(const char *) =
        (int (*)(const char *))dlsym(RTLD_NEXT, "unlink");
    const char *ready = getenv("RACE_READY");
    const char *victim = getenv("RACE_VICTIM");
    int r = real(path);

    if (ready && victim && !strcmp(path, ready) && link(victim, path) != 0)
        abort();
    return r;
}
"""


def test_ready_file_is_never_written_through_a_link(make_instance,
                                                     monkeypatch):
    inst = make_instance(cyrus_conf="SERVICES {\n}\n")
    shim = build_shim(inst, "relink", RELINK_AFTER_UNLINK_SHIM)
    victim = inst.path("victim")
    with open(victim, "w") as f:
        f.write("precious\n")
    for key, value in preload_env(shim).items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("RACE_READY", inst.ready_file)
    monkeypatch.setenv("RACE_VICTIM", victim)
    inst.start(wait=False)
    inst.wait_for_log("master ready")
    with open(victim) as f:
        assert f.read() == "precious\n"
    # The master noticed and says so instead of announcing readiness.
    assert f"open failed path={inst.ready_file}" in inst.log()


# Raises SIGHUP just before the service loop's wait for a connection
# (polling fd 3 and fd 4) starts: the moment between checking for a
# SIGHUP and sleeping, which the master's reload can hit.
SIGHUP_BEFORE_WAIT_SHIM = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
#include <poll.h>
#include <signal.h>
#include <unistd.h>

static void hup_if_waiting(struct pollfd *fds, nfds_t n)
{
    if (n == 2 && fds[0].fd == 3 && fds[1].fd == 4)
        kill(getpid(), SIGHUP);
}

int poll(struct pollfd *fds, nfds_t n, int timeout)
{
    int (*real)(struct pollfd *, nfds_t, int) =
        (int (*)(struct pollfd *, nfds_t, int))dlsym(RTLD_NEXT, "poll");

    hup_if_waiting(fds, n);
    return real(fds, n, timeout);
}

int ppoll(struct pollfd *fds, nfds_t n, const struct timespec *ts,
          const sigset_t *mask)
{
    int (*real)(struct pollfd *, nfds_t, const struct timespec *,
                const sigset_t *) =
        (int (*)(struct pollfd *, nfds_t, const struct timespec *,
                 const sigset_t *))dlsym(RTLD_NEXT, "ppoll");

    hup_if_waiting(fds, n);
    return real(fds, n, ts, mask);
}
"""


def test_service_child_does_not_miss_an_early_sighup(make_instance):
    inst = make_instance()
    shim = build_shim(inst, "hup", SIGHUP_BEFORE_WAIT_SHIM)
    inst.hand_over()
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)
    status_rd, status_wr = os.pipe()

    def fds_3_and_4():
        # Lift both out of the way first: either may already be 3 or 4.
        lfd = fcntl.fcntl(listener.fileno(), fcntl.F_DUPFD, 10)
        sfd = fcntl.fcntl(status_wr, fcntl.F_DUPFD, 10)
        os.dup2(lfd, 3)
        os.dup2(sfd, 4)

    env = dict(os.environ, CYRUS_SERVICE="echo", **preload_env(shim))
    child = subprocess.Popen([program(ECHOD), "-C", inst.imapd_conf],
                             env=env, stdin=subprocess.DEVNULL,
                             stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL,
                             pass_fds=(3, 4), preexec_fn=fds_3_and_4)
    os.close(status_wr)
    try:
        # Told to leave before it began waiting: it must not sit in
        # accept() on a listener the master retired.
        assert child.wait(timeout=5) == 0
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        listener.close()
        os.close(status_rd)


def test_start_runs_before_services_and_failures_are_logged(make_instance):
    port = free_port()
    inst = make_instance()
    marker = inst.path("start.marker")
    # The START command checks that nothing listens yet.
    script = inst.write_script("start.sh", shell="/bin/bash", body=f"""
sleep 0.3
if (exec 3<>/dev/tcp/127.0.0.1/{port}) 2>/dev/null; then
    echo listening > {marker}
else
    echo before > {marker}
fi
""")
    fail = inst.write_script("fail.sh", "exit 3\n")
    inst.write_cyrus_conf(
        "START {\n"
        f'  recover cmd="{script}"\n'
        f'  broken cmd="{fail}"\n'
        "}\nSERVICES {\n"
        f'  echo cmd="{program(ECHOD)}" listen="127.0.0.1:{port}"\n'
        "}\n")
    inst.start()
    with open(marker) as f:
        assert f.read().strip() == "before"
    assert os.path.getmtime(marker) <= os.path.getmtime(inst.ready_file)
    log = inst.log()
    assert "START command failed name=broken status=3" in log
    assert log.index("running START command name=recover") < \
        log.index("service listening service=echo")
    with inst.connect(port) as c:
        assert c.readline().startswith("+OK")


def test_events_run_at_startup_and_periodically(make_instance):
    inst = make_instance()
    marker = inst.path("event.marker")
    script = inst.write_script("tick.sh", f"echo tick >> {marker}\n")
    inst.write_cyrus_conf(
        f'EVENTS {{\n  tick cmd="{script}" period=1s\n'
        f'  later cmd="{script}" at=0000\n}}\n')
    inst.start()

    def ticks():
        try:
            with open(marker) as f:
                return len(f.read().split())
        except FileNotFoundError:
            return 0
    wait_until(lambda: ticks() >= 1, 3, what="first event run")
    wait_until(lambda: ticks() >= 3, 6, what="periodic event runs")
    assert "running event event=later" not in inst.log()


def test_daemon_wait_and_restart(make_instance):
    inst = make_instance()
    pidfile = inst.path("daemon.pid")
    # Closes fd 4 (the readiness pipe) only after writing its pid.
    script = inst.write_script("daemon.sh", f"""
sleep 0.3
echo $$ > {pidfile}
exec 4>&-
exec sleep 60
""")
    inst.write_cyrus_conf(f'DAEMON {{\n  sleeper cmd="{script}" wait=y\n}}\n')
    inst.start()
    # wait=y: the master was ready only after the daemon was.
    assert os.path.exists(pidfile)
    assert "daemon ready daemon=sleeper" in inst.log()
    first = int(open(pidfile).read())
    os.kill(first, signal.SIGKILL)
    inst.wait_for_log(rf"daemon will be restarted daemon=sleeper")
    wait_until(lambda: os.path.exists(pidfile) and
               open(pidfile).read().strip() not in ("", str(first)), 5,
               what="restarted daemon")


def test_sighup_adds_removes_and_keeps_services(make_instance):
    keep_port, old_port, new_port = free_port(), free_port(), free_port()
    keep = ("keep", echo_service(keep_port, prefork=1))
    inst = make_instance(services=[keep,
                                   ("old", echo_service(old_port, prefork=1))])
    inst.start()
    kept = inst.connect(keep_port)
    assert kept.readline().startswith("+OK")
    kept_pid = int(kept.command("PID").split()[1])

    inst.reload(services=[keep, ("new", echo_service(new_port, prefork=1))])
    inst.wait_for_log("service removed service=old")
    inst.wait_for_log("service added service=new")

    with inst.connect(new_port) as c:
        assert c.readline().startswith("+OK echod service=new")

    def refused():
        try:
            socket.create_connection(("127.0.0.1", old_port), 0.5).close()
            return False
        except ConnectionRefusedError:
            return True
    wait_until(refused, 5, what="old service to stop listening")

    # The unchanged service kept its connection and child.
    assert kept.command("PID").split()[1] == str(kept_pid)
    assert kept.command("still here") == "ECHO still here"
    kept.close()

    # The removed service's idle child was told to leave.
    wait_until(lambda: not [c for c in inst.children("echod")
                            if c["service"] == "old"], 5,
               what="old service's children to exit")
    assert [c for c in inst.children("echod") if c["service"] == "new"]


def test_sighup_with_broken_file_keeps_running(make_instance):
    port = free_port()
    inst = make_instance(services=[("echo", echo_service(port))])
    inst.start()
    inst.write_cyrus_conf("SERVICES {\n")
    inst.signal(signal.SIGHUP)
    inst.wait_for_log("cannot reload configuration")
    with inst.connect(port) as c:
        assert c.readline().startswith("+OK")


def test_sigterm_stops_everything(make_instance):
    port = free_port()
    inst = make_instance()
    script = inst.write_script("d.sh", "exec sleep 60\n")
    inst.write_cyrus_conf(
        "SERVICES {\n"
        f'  echo cmd="{program(ECHOD)}" listen="127.0.0.1:{port}" prefork=3\n'
        "}\nDAEMON {\n"
        f'  sleeper cmd="{script}"\n'
        "}\n")
    inst.start()
    wait_children(inst, 3)
    busy = inst.connect(port)
    busy.readline()
    busy.send_line("SLEEP 30")
    wait_children(inst, 4)
    everyone = [c["pid"] for c in inst.children()]
    assert len(everyone) == 5

    started = time.monotonic()
    assert inst.stop() == 0
    assert time.monotonic() - started < 8
    assert not any(pid_alive(p) for p in everyone)
    assert not os.path.exists(inst.pid_file)
    assert not os.path.exists(inst.ready_file)
    assert "master exited" in inst.log()
    busy.close()


def test_crash_loop_is_throttled(make_instance):
    port = free_port()
    ok_port = free_port()
    crashy = echo_service(port, cmd=program(ECHOD) + " -A", prefork=1)
    inst = make_instance(services=[("crashy", crashy),
                                   ("fine", echo_service(ok_port))])
    inst.start()
    inst.wait_for_log(r"service throttled service=crashy crashes=10", 10)
    # While throttled, no more crashy children are started.
    time.sleep(0.5)
    count = inst.log().count("process started service=crashy")
    time.sleep(1.5)
    assert inst.log().count("process started service=crashy") == count
    # Other services are unaffected.
    with inst.connect(ok_port) as c:
        assert c.readline().startswith("+OK")


@pytest.mark.skipif(os.geteuid() != 0, reason="privilege drop needs root")
def test_children_drop_privileges(make_instance):
    port = free_port()
    inst = make_instance(services=[("echo", echo_service(port, prefork=1))])
    inst.start()
    pw = pwd.getpwnam(inst.user)
    with inst.connect(port) as c:
        c.readline()
        uid, gid, euid, egid, ngroups = map(int, c.command("UID").split()[1:])
    assert (uid, euid) == (pw.pw_uid, pw.pw_uid)
    assert (gid, egid) == (pw.pw_gid, pw.pw_gid)
    assert ngroups == 1
    for child in inst.children("echod"):
        assert child["uid"] == pw.pw_uid


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("groupadd"),
                    reason="needs root and groupadd")
def test_children_keep_supplementary_groups(make_instance):
    """As initgroups() would: a group the cyrus user is a member of (so
    `adduser cyrus sasl` lets the daemons read /etc/sasldb2) survives the
    privilege drop."""
    group = "columba-test-%d" % os.getpid()
    subprocess.run(["groupadd", group], check=True)
    try:
        port = free_port()
        inst = make_instance(services=[("echo", echo_service(port,
                                                             prefork=1))])
        subprocess.run(["gpasswd", "-a", inst.user, group],
                       check=True, capture_output=True)
        inst.start()
        with inst.connect(port) as c:
            c.readline()
            ngroups = int(c.command("UID").split()[5])
        assert ngroups == 2
        gid = grp.getgrnam(group).gr_gid
        for child in inst.children("echod"):
            with open("/proc/%d/status" % child["pid"]) as f:
                groups = next(l for l in f if l.startswith("Groups:"))
            assert str(gid) in groups.split()[1:], groups
            assert "0" not in groups.split()[1:], groups
    finally:
        subprocess.run(["groupdel", group], check=False)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root")
def test_missing_cyrus_user_is_fatal(make_instance):
    inst = make_instance(options={"cyrus_user": "nosuchuser-columba"},
                         services=[("echo", echo_service(free_port()))])
    inst.user = "nobody"
    inst.start(wait=False)
    code, err = inst.wait_exit(10)
    assert code != 0
    assert "nosuchuser-columba does not exist" in err


def test_pid_file_option_and_single_instance(make_instance):
    port = free_port()
    inst = make_instance(services=[("echo", echo_service(port))])
    alt = inst.path("run", "alt.pid")
    inst.start(extra_args=["-p", alt, "-l", "64"])
    assert int(open(alt).read()) == inst.pid
    assert not os.path.exists(inst.pid_file)

    # A second master on the same pid file refuses and leaves the first
    # master's files alone.
    second = subprocess.run([program("master/master"), "-C", inst.imapd_conf,
                             "-M", inst.cyrus_conf, "-p", alt],
                            capture_output=True, text=True, timeout=10)
    assert second.returncode != 0
    assert "already running" in second.stderr
    assert os.path.exists(alt) and os.path.exists(inst.ready_file)

    assert inst.stop() == 0
    assert not os.path.exists(alt)


def test_bind_failure_at_startup_is_fatal(make_instance):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        inst = make_instance(services=[("echo", echo_service(port))])
        inst.start(wait=False)
        code, err = inst.wait_exit(10)
    assert code != 0
    assert "cannot listen service=echo" in inst.log()
    assert not os.path.exists(inst.ready_file)
    assert not os.path.exists(inst.pid_file)


def test_sighup_restarts_a_changed_service(make_instance):
    port = free_port()
    inst = make_instance(services=[("echo", echo_service(port, prefork=1))])
    inst.start()
    busy = inst.connect(port)
    busy_pid = int(busy.readline().split("pid=")[1])
    idle = wait_children(inst, 2)
    idle.remove(busy_pid)

    inst.reload(services=[("echo", echo_service(port, prefork=2))])
    inst.wait_for_log("service changed service=echo")
    # The old idle child leaves; the busy one finishes its session first.
    wait_until(lambda: not pid_alive(idle[0]), 5, what="old idle child exit")
    assert busy.command("still") == "ECHO still"
    assert busy.command("QUIT") == "BYE"
    wait_until(lambda: not pid_alive(busy_pid), 5, what="old busy child exit")
    wait_children(inst, 2)
    with inst.connect(port) as c:
        assert c.readline().startswith("+OK")
    busy.close()


def test_maxforkrate_limits_forks(make_instance):
    port = free_port()
    crashy = echo_service(port, cmd=program(ECHOD) + " -A", prefork=1,
                          maxforkrate=2)
    inst = make_instance(services=[("crashy", crashy)])
    inst.start()
    time.sleep(2.2)
    # At most 2 forks in each of the (at most 4) seconds touched.
    assert inst.log().count("process started service=crashy") <= 8
    assert "service throttled" not in inst.log()
