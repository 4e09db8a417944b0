"""End-to-end test harness: run a real Columba master on loopback.

An Instance is one throw-away server: a temporary directory holding
imapd.conf, cyrus.conf, the config directory, a spool partition and the
master's log.  It starts `master -C imapd.conf -M cyrus.conf -L log` in
the foreground, waits for master_ready_file, and stops it with SIGTERM.

    from columba import Instance, free_port, program

    port = free_port()
    with Instance(services=[("imap", {"cmd": program("imap/imapd"),
                                      "listen": f"127.0.0.1:{port}"})]) as inst:
        conn = inst.connect(port)
        ...

Binaries are found under $COLUMBA_BUILD (set by `make e2e`), the source
tree under $COLUMBA_SRC.  When the tests run as root the services run as
$COLUMBA_TEST_USER (default "nobody") and the instance directory is
handed to that user, as a real installation would hand it to "cyrus".
Set COLUMBA_KEEP=1 to keep instance directories for inspection.
"""

import glob
import os
import pwd
import re
import resource
import shutil
import signal
import socket
import subprocess
import tempfile
import time

__all__ = [
    "Instance", "LineClient", "build_dir", "src_dir", "program", "free_port",
    "wait_until", "proc_children", "pid_alive", "format_cyrus_conf",
]

HERE = os.path.dirname(os.path.abspath(__file__))
FALLBACK_BUILD_DIRS = ["/work/build/lead", "/work/build/master"]


def build_dir():
    """The build tree: $COLUMBA_BUILD, else a known developer build."""
    env = os.environ.get("COLUMBA_BUILD")
    if env:
        return env
    for d in FALLBACK_BUILD_DIRS + sorted(glob.glob("/work/build/*")):
        if os.access(os.path.join(d, "master", "master"), os.X_OK):
            return d
    raise RuntimeError("set COLUMBA_BUILD to the build directory")


def src_dir():
    """The source tree: $COLUMBA_SRC, else the parent of tests/."""
    return os.environ.get("COLUMBA_SRC") or os.path.dirname(HERE)


def program(relpath):
    """Absolute path of a built program, e.g. program("master/master")."""
    path = os.path.join(build_dir(), relpath)
    if not os.access(path, os.X_OK):
        raise FileNotFoundError(f"{path} is not built")
    return path


def free_port(host="127.0.0.1"):
    """A TCP port on `host` that nothing listens on right now."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def wait_until(predicate, timeout=10.0, interval=0.05, what="condition"):
    """Poll `predicate` until it returns a true value; return that value.
    Raises TimeoutError naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def pid_alive(pid):
    """Is `pid` a live process (not a zombie)?"""
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
        return state != "Z"
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False


def _proc_info(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        argv = [a.decode(errors="replace") for a in f.read().split(b"\0") if a]
    with open(f"/proc/{pid}/status") as f:
        uid = next(int(l.split()[1]) for l in f if l.startswith("Uid:"))
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            env = dict(e.decode(errors="replace").split("=", 1)
                       for e in f.read().split(b"\0") if b"=" in e)
    except OSError:
        env = {}
    return {"pid": int(pid), "state": fields[0], "ppid": int(fields[1]),
            "argv": argv, "uid": uid, "service": env.get("CYRUS_SERVICE")}


def proc_children(ppid, match=None):
    """Live children of `ppid` from /proc, as dicts with pid, ppid, argv,
    uid, state and service (CYRUS_SERVICE, when readable); with `match`,
    only those whose argv[0] contains it."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            info = _proc_info(entry)
        except (OSError, StopIteration, IndexError, ValueError):
            continue
        if info["ppid"] != ppid or info["state"] == "Z" or not info["argv"]:
            continue
        if match and match not in info["argv"][0]:
            continue
        found.append(info)
    return found


def _quote(value):
    value = str(value)
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def format_cyrus_conf(start=(), services=(), events=(), daemons=()):
    """cyrus.conf text from lists of (name, {key: value}) pairs."""
    out = []
    for section, entries in (("START", start), ("SERVICES", services),
                             ("EVENTS", events), ("DAEMON", daemons)):
        out.append(section + " {")
        for name, keys in entries:
            words = [f"{k}={_quote(v)}" for k, v in keys.items()]
            out.append("  " + name + " " + " ".join(words))
        out.append("}")
    return "\n".join(out) + "\n"


class LineClient:
    """A line-oriented client over TCP or a Unix socket, with timeouts."""

    def __init__(self, address, timeout=5.0, family=None):
        if family is None:
            family = socket.AF_UNIX if isinstance(address, str) else (
                socket.AF_INET6 if ":" in address[0] else socket.AF_INET)
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(address)
        self.buf = b""

    def readline(self, timeout=None):
        """One line without CRLF, as str.  Raises socket.timeout, or
        EOFError when the server closed the connection."""
        if timeout is not None:
            self.sock.settimeout(timeout)
        while b"\n" not in self.buf:
            data = self.sock.recv(65536)
            if not data:
                raise EOFError("connection closed")
            self.buf += data
        line, self.buf = self.buf.split(b"\n", 1)
        return line.rstrip(b"\r").decode(errors="replace")

    def send(self, data):
        if isinstance(data, str):
            data = data.encode()
        self.sock.sendall(data)

    def send_line(self, line):
        self.send(line + "\r\n")

    def command(self, line, timeout=None):
        """Send a line and return the next line of reply."""
        self.send_line(line)
        return self.readline(timeout)

    def close(self):
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class Instance:
    """One master with its own directory; see the module comment.

    services/start/events/daemons are lists of (name, {key: value}) for
    cyrus.conf; `cyrus_conf` (text) replaces them.  `options` adds or
    overrides imapd.conf lines.  Not started until start() (or `with`).
    """

    def __init__(self, services=(), start=(), events=(), daemons=(),
                 cyrus_conf=None, options=None, name="columba"):
        self.basedir = tempfile.mkdtemp(prefix=f"{name}-")
        os.chmod(self.basedir, 0o755)
        self.confdir = os.path.join(self.basedir, "conf")
        self.spool = os.path.join(self.basedir, "spool")
        self.rundir = os.path.join(self.basedir, "run")
        for d in (self.confdir, self.spool, self.rundir):
            os.makedirs(d)
        self.imapd_conf = os.path.join(self.basedir, "imapd.conf")
        self.cyrus_conf = os.path.join(self.basedir, "cyrus.conf")
        self.logfile = os.path.join(self.basedir, "master.log")
        self.pid_file = os.path.join(self.rundir, "master.pid")
        self.ready_file = os.path.join(self.rundir, "master.ready")
        self.is_root = os.geteuid() == 0
        self.user = os.environ.get("COLUMBA_TEST_USER", "nobody") \
            if self.is_root else pwd.getpwuid(os.getuid()).pw_name
        self.options = {
            "cyrus_user": self.user,
            "configdirectory": self.confdir,
            "partition-default": self.spool,
            "master_pid_file": self.pid_file,
            "master_ready_file": self.ready_file,
        }
        self.options.update(options or {})
        self.proc = None
        self.returncode = None
        self.write_imapd_conf()
        if cyrus_conf is not None:
            self.write_cyrus_conf(cyrus_conf)
        else:
            self.write_cyrus_conf(format_cyrus_conf(start, services, events,
                                                    daemons))

    # -- files ----------------------------------------------------------

    def path(self, *parts):
        """A path inside the instance directory."""
        return os.path.join(self.basedir, *parts)

    def write_imapd_conf(self):
        with open(self.imapd_conf, "w") as f:
            for key, value in self.options.items():
                if value is not None:
                    f.write(f"{key}: {value}\n")

    def write_cyrus_conf(self, text):
        with open(self.cyrus_conf, "w") as f:
            f.write(text)

    def write_script(self, name, body, shell="/bin/sh"):
        """Write an executable `shell` script into the instance directory
        and return its path.  Scripts get master's extra "-C file"
        arguments, so they should not interpret "$@" blindly."""
        path = self.path(name)
        with open(path, "w") as f:
            f.write(f"#!{shell}\n" + body)
        os.chmod(path, 0o755)
        self.hand_over()
        return path

    def hand_over(self):
        """When root, give the tree to the service user, as `cyrus` would
        own a real installation's directories."""
        if not self.is_root:
            return
        pw = pwd.getpwnam(self.user)
        for root, dirs, files in os.walk(self.basedir):
            for n in [root] + [os.path.join(root, x) for x in dirs + files]:
                if n != self.logfile:
                    os.lchown(n, pw.pw_uid, pw.pw_gid)

    def log(self):
        """Everything logged so far (master and children)."""
        try:
            with open(self.logfile, errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def wait_for_log(self, pattern, timeout=10.0, count=1):
        """Wait until `pattern` (a regex) matched `count` log lines;
        returns the list of matches."""
        rx = re.compile(pattern)

        def found():
            m = [x for x in (rx.search(l) for l in self.log().splitlines())
                 if x]
            return m if len(m) >= count else None
        try:
            return wait_until(found, timeout, what=f"log line /{pattern}/")
        except TimeoutError:
            raise TimeoutError(f"no log line /{pattern}/ x{count}; log:\n"
                               + self.log()[-4000:]) from None

    # -- process --------------------------------------------------------

    @property
    def pid(self):
        return self.proc.pid if self.proc else None

    def start(self, wait=True, timeout=15.0, extra_args=()):
        """Start master; with `wait`, return once the ready file exists."""
        self.hand_over()

        def no_core():
            resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        cmd = [program("master/master"), "-C", self.imapd_conf,
               "-M", self.cyrus_conf, "-L", self.logfile] + list(extra_args)
        self.proc = subprocess.Popen(cmd, cwd=self.basedir,
                                     stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE,
                                     preexec_fn=no_core)
        if wait:
            self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout=15.0):
        def ready():
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode(errors="replace")
                raise RuntimeError(
                    f"master exited with {self.proc.returncode}: {err}\n"
                    + self.log()[-4000:])
            return os.path.exists(self.ready_file)
        wait_until(ready, timeout, what="master_ready_file")

    def wait_exit(self, timeout=15.0):
        """Wait for master to exit; returns (code, stderr text)."""
        try:
            _, err = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise TimeoutError("master did not exit; log:\n"
                               + self.log()[-4000:]) from None
        self.returncode = self.proc.returncode
        return self.returncode, err.decode(errors="replace")

    def signal(self, sig):
        self.proc.send_signal(sig)

    def reload(self, cyrus_conf_text=None, timeout=10.0, **sections):
        """Rewrite cyrus.conf (text, or sections as in the constructor),
        send SIGHUP and wait until the master logged the reload."""
        before = len(re.findall("configuration reloaded", self.log()))
        if cyrus_conf_text is None:
            cyrus_conf_text = format_cyrus_conf(**sections)
        self.write_cyrus_conf(cyrus_conf_text)
        self.hand_over()
        self.signal(signal.SIGHUP)
        self.wait_for_log("configuration reloaded", timeout, count=before + 1)

    def stop(self, timeout=20.0):
        """SIGTERM and wait; returns master's exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        if self.proc.stderr:
            self.proc.stderr.close()
        self.returncode = self.proc.returncode
        return self.returncode

    def children(self, match=None):
        """The master's live children (see proc_children)."""
        return proc_children(self.pid, match)

    def connect(self, port_or_path, host="127.0.0.1", timeout=5.0):
        """A LineClient to a TCP port on `host` or a Unix socket path."""
        if isinstance(port_or_path, str):
            return LineClient(port_or_path, timeout)
        return LineClient((host, port_or_path), timeout)

    def cleanup(self):
        if os.environ.get("COLUMBA_KEEP"):
            return
        shutil.rmtree(self.basedir, ignore_errors=True)

    def __enter__(self):
        if self.proc is None:
            self.start()
        return self

    def __exit__(self, *exc):
        self.stop()
        self.cleanup()
