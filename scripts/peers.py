#!/usr/bin/env python3
"""Runs the side-by-side targets (our router, Nchan, Pushpin, the raw baseline) on loopback.

Each target is a context manager that starts from a private temporary folder, waits until it
accepts connections, and stops everything it started on exit:

    with peers.Nchan() as t:             # nginx + nchan, 2 workers
        t.port, t.publish_port, t.pids()
    with peers.Pushpin(loadgen="target/release/loadgen") as t:   # + the loadgen GRIP origin
        ...
    with peers.Router("target/release/router") as t: ...
    with peers.Baseline("target/release/loadgen") as t: ...

`ensure_installed()` installs nginx-light, libnginx-mod-nchan and pushpin with apt-get when
they are missing. Manual check (subscribes with curl, publishes, prints the bytes that
arrived):

    python3 scripts/peers.py nchan --check
    python3 scripts/peers.py pushpin --check            # Python GRIP origin unless --loadgen
"""
import argparse
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# loadgen's exit status for a run that finished, results written, but lost or refused something.
LOADGEN_LOSSES = 3
NCHAN_MODULE = "/usr/lib/nginx/modules/ngx_nchan_module.so"
PUSHPIN_CONF = "/etc/pushpin/pushpin.conf"
PUSHPIN_INTERNAL_CONF = "/usr/lib/pushpin/internal.conf"
# Pushpin's default is 2500 messages/s in [handler]: it would throttle deliveries.
PUSHPIN_MESSAGE_RATE = 1000000
PUSHPIN_NOTES = (f"Pushpin's [handler] message_rate raised from its default 2500 to {PUSHPIN_MESSAGE_RATE} "
                 "(the default throttles deliveries to 2500 messages/s); client_maxconn=19000; log_level=1 "
                 "(warnings only) instead of 2, which logs every request and publish.")


class PeerError(RuntimeError):
    """A target could not be installed, started or checked."""


# ---------------------------------------------------------------------------------------------
# Figures for people: what the scripts print is rounded and carries its unit (summary.json
# keeps the exact values).

def count(v):
    """12345.6 -> '12,346'; None -> '—'."""
    return "—" if v is None else f"{v:,.0f}"


def ms(us):
    """A latency in microseconds as milliseconds: 421.7 -> '0.42 ms'."""
    return "—" if us is None else f"{us / 1000:,.2f} ms"


def size(b):
    """Bytes in B, KB or MB (powers of 1000, as the reports use): 853.2 -> '853 B'."""
    if b is None:
        return "—"
    if abs(b) < 1000:
        return f"{b:,.0f} B"
    if abs(b) < 1e6:
        return f"{b / 1000:,.2f} KB"
    return f"{b / 1e6:,.1f} MB"


def repo_path(path):
    """A path relative to the repository root, unless it is absolute."""
    return path if os.path.isabs(path) else os.path.join(ROOT, path)


def relative(path):
    """`path` relative to the repository root when it lies inside it (results record commands,
    and a machine's own folders have no place in them)."""
    path = os.path.abspath(path)
    return os.path.relpath(path, ROOT) if path.startswith(ROOT + os.sep) else path


TEMP_DIR = re.compile(re.escape(tempfile.gettempdir()) + r"/peer-[A-Za-z]+-[A-Za-z0-9_]+")


def scrub(text):
    """Text for the results: the repository root dropped, a peer's private temporary folder
    written as $DIR."""
    return TEMP_DIR.sub("$DIR", text.replace(ROOT + os.sep, ""))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_accepts(port, host="127.0.0.1"):
    try:
        socket.create_connection((host, port), timeout=0.2).close()
        return True
    except OSError:
        return False


def ensure_port_free(port, what):
    if port_accepts(port):
        raise PeerError(f"{what}: port {port} is already in use on 127.0.0.1")


def wait_listening(port, seconds, what, alive=None, log=None):
    """Waits until 127.0.0.1:port accepts; `alive()` false means the server died."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if port_accepts(port):
            return
        if alive is not None and not alive():
            raise PeerError(f"{what} exited before listening on port {port}{tail_text(log)}")
        time.sleep(0.05)
    raise PeerError(f"{what} did not listen on port {port} within {seconds} s{tail_text(log)}")


def tail_text(path, lines=15):
    """The last lines of a log file, formatted for an error message ('' when there is none)."""
    if not path or not os.path.exists(path):
        return ""
    with open(path, errors="replace") as f:
        text = f.read().splitlines()[-lines:]
    return ("\n  " + os.path.basename(path) + ":\n    " + "\n    ".join(text)) if text else ""


# ---------------------------------------------------------------------------------------------
# Processes, by id only.

def start_time(pid):
    """The process's start time in clock ticks (identifies it against pid reuse), or None."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def children(pid):
    kids = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as f:
                kids += [int(x) for x in f.read().split()]
    except OSError:
        pass
    return kids


def descendants(pid):
    out, todo = [], [pid]
    while todo:
        for kid in children(todo.pop()):
            if kid not in out:
                out.append(kid)
                todo.append(kid)
    return out


def alive(pid, started):
    st = start_time(pid)
    if st is None or st != started:
        return False
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def stop_processes(procs, popen=None, grace_s=10.0):
    """SIGTERMs each (pid, start time) still alive, waits up to grace_s, then SIGKILLs the rest.

    `popen` (the Popen we started, if any) is reaped so it leaves no zombie."""
    def signal_all(sig):
        for pid, started in procs:
            if alive(pid, started):
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass

    signal_all(signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        if popen is not None:
            popen.poll()
        if not any(alive(pid, st) for pid, st in procs):
            break
        time.sleep(0.05)
    else:
        signal_all(signal.SIGKILL)
    if popen is not None:
        try:
            popen.wait(timeout=5)
        except subprocess.TimeoutExpired:
            popen.kill()
            popen.wait()


def tracked(pids):
    return [(p, start_time(p)) for p in pids if start_time(p) is not None]


# ---------------------------------------------------------------------------------------------
# Installation.

def ensure_installed(peers=("nchan", "pushpin")):
    """apt-get installs what the named peers need when it is missing; raises PeerError."""
    need = []
    if "nchan" in peers and (shutil.which("nginx") is None or not os.path.exists(NCHAN_MODULE)):
        need += ["nginx-light", "libnginx-mod-nchan"]
    if "pushpin" in peers and shutil.which("pushpin") is None:
        need += ["pushpin"]
    if not need:
        return
    if shutil.which("apt-get") is None:
        raise PeerError(f"{' '.join(need)} missing and apt-get is not available: install them by hand")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    cmd = ["apt-get", "install", "-y", "--no-install-recommends"] + need
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)
    if r.returncode != 0:
        # The package lists may be stale or absent: update once and retry.
        subprocess.run(["apt-get", "update"], capture_output=True, text=True, env=env, timeout=600)
        r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)
    if r.returncode != 0:
        tail = "\n    ".join((r.stdout + r.stderr).strip().splitlines()[-10:])
        raise PeerError(f"`{' '.join(cmd)}` failed with status {r.returncode}:\n    {tail}")
    if "nchan" in peers and (shutil.which("nginx") is None or not os.path.exists(NCHAN_MODULE)):
        raise PeerError(f"after installing, nginx or {NCHAN_MODULE} is still missing")
    if "pushpin" in peers and shutil.which("pushpin") is None:
        raise PeerError("after installing, pushpin is still missing")


# ---------------------------------------------------------------------------------------------
# Targets.

class Target:
    """Common shape: .name, .port, .publish_port, .pids(), .notes, .command, .dir; a context
    manager that starts on enter and stops everything it started on exit."""
    name = "target"
    notes = ""

    def __init__(self, port=None, start_timeout_s=20.0):
        self.port = port or free_port()
        self.publish_port = self.port
        self.start_timeout_s = start_timeout_s
        self.dir = None
        self.command = ""
        self._procs = []  # Popen objects we started, in start order

    def __enter__(self):
        self.dir = tempfile.mkdtemp(prefix=f"peer-{self.name}-")
        os.chmod(self.dir, 0o755)
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc):
        self.stop()
        return False

    def _spawn(self, cmd, log_name, **kw):
        log = open(os.path.join(self.dir, log_name), "ab")
        try:
            p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                 cwd=self.dir, **kw)
        except OSError as e:
            raise PeerError(f"{self.name}: cannot run {cmd[0]}: {e}") from None
        finally:
            log.close()
        self._procs.append(p)
        return p

    def log_path(self, name):
        return os.path.join(self.dir, name) if self.dir else None

    def pids(self):
        raise NotImplementedError

    def start(self):
        raise NotImplementedError

    def stop(self):
        # Every process we started and everything below it, newest first.
        for p in reversed(self._procs):
            procs = tracked([p.pid] + descendants(p.pid))
            stop_processes(procs, popen=p)
        self._procs = []
        if self.dir and os.environ.get("PEERS_KEEP_DIR") != "1":
            shutil.rmtree(self.dir, ignore_errors=True)

    def describe(self):
        return f"{self.name} on 127.0.0.1:{self.port}"


class OwnBinary(Target):
    """A target that is one process of a binary this repository builds (the router, the
    baseline): `args()` gives its arguments, `package` the cargo package that builds it."""
    package = ""

    def __init__(self, binary, port=None, extra_args=(), **kw):
        super().__init__(port, **kw)
        self.binary = repo_path(binary)
        self.extra_args = list(extra_args)

    def args(self):
        raise NotImplementedError

    def start(self):
        if not os.access(self.binary, os.X_OK):
            raise PeerError(f"{self.name}: {self.binary} is missing: "
                            f"run `cargo build --release -p {self.package}`")
        ensure_port_free(self.port, self.name)
        cmd = [self.binary] + self.args() + self.extra_args
        self.command = " ".join(cmd)
        log = f"{self.name}.log"
        p = self._spawn(cmd, log)
        wait_listening(self.port, self.start_timeout_s, self.name, lambda: p.poll() is None,
                       self.log_path(log))

    def pids(self):
        return [self._procs[0].pid] if self._procs else []


class Router(OwnBinary):
    """Our router: `router --listen 127.0.0.1:P --shards N --log warn [extra...]`."""
    name = "router"
    package = "router"

    def __init__(self, binary="target/release/router", port=None, shards=2, extra_args=(), **kw):
        super().__init__(binary, port, extra_args, **kw)
        self.shards = shards

    def args(self):
        return ["--listen", f"127.0.0.1:{self.port}", "--shards", str(self.shards), "--log", "warn"]


class Baseline(OwnBinary):
    """The raw baseline server: `loadgen baseline --listen 127.0.0.1:P`."""
    name = "baseline"
    package = "loadgen"

    def __init__(self, loadgen="target/release/loadgen", port=None, extra_args=(), **kw):
        super().__init__(loadgen, port, extra_args, **kw)

    def args(self):
        return ["baseline", "--listen", f"127.0.0.1:{self.port}"]


NGINX_CONF = """\
# Written by scripts/peers.py: the minimal Nchan set-up, run from a private folder.
load_module {module};
daemon off;                         # stays our child: stopped by pid, no stray master
worker_processes {workers};         # one per core, like ours
worker_rlimit_nofile 20000;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 19000; multi_accept on; }}
http {{
  access_log off;
  # nginx closes a keep-alive connection after 1000 requests by default: the publishers keep
  # one connection each for the whole run.
  keepalive_requests 10000000;
  keepalive_timeout 600s;
  client_body_temp_path {dir}/client_body;
  proxy_temp_path {dir}/proxy;
  fastcgi_temp_path {dir}/fastcgi;
  uwsgi_temp_path {dir}/uwsgi;
  scgi_temp_path {dir}/scgi;
  client_body_buffer_size 64k;      # publish bodies stay in memory
  nchan_shared_memory_size {shm};
  server {{
    listen 127.0.0.1:{port} reuseport;
    # /sub/idle, /sub/load0 ... : WebSocket, EventSource, long-poll.
    location ~ /sub/(\\w+)$ {{ nchan_subscriber; nchan_channel_id $1; }}
    # Up to {buffer} messages kept per channel so no run ever evicts what a subscriber still
    # has to receive.
    location ~ /pub/(\\w+)$ {{ nchan_publisher; nchan_channel_id $1;
                             nchan_message_buffer_length {buffer}; nchan_message_timeout 60s; }}
  }}
}}
"""


class Nchan(Target):
    """nginx + nchan from a temp folder, `daemon off` so the master is our child."""
    name = "nchan"

    def __init__(self, port=None, workers=2, buffer_length=1000, shared_memory="512M", **kw):
        super().__init__(port, **kw)
        self.workers = workers
        self.buffer_length = buffer_length
        self.shared_memory = shared_memory
        self.notes = (f"Nchan: nginx {workers} worker processes, nchan_message_buffer_length "
                      f"{buffer_length}, nchan_shared_memory_size {shared_memory}, keepalive_requests raised "
                      "from 1000 (nginx closes a publisher's keep-alive connection after 1000 requests).")

    def start(self):
        if shutil.which("nginx") is None or not os.path.exists(NCHAN_MODULE):
            raise PeerError("nchan: nginx or the nchan module is not installed (peers.ensure_installed())")
        ensure_port_free(self.port, "nchan")
        conf = os.path.join(self.dir, "nginx.conf")
        with open(conf, "w") as f:
            f.write(NGINX_CONF.format(module=NCHAN_MODULE, workers=self.workers, dir=self.dir,
                                      shm=self.shared_memory, port=self.port, buffer=self.buffer_length))
        cmd = ["nginx", "-p", self.dir, "-e", os.path.join(self.dir, "error.log"), "-c", conf]
        self.command = " ".join(cmd)
        t = subprocess.run(cmd + ["-t"], capture_output=True, text=True, timeout=30)
        if t.returncode != 0:
            raise PeerError(f"nchan: nginx -t refused the config:\n{t.stderr.strip()}")
        p = self._spawn(cmd, "nginx.out")
        wait_listening(self.port, self.start_timeout_s, "nchan (nginx)", lambda: p.poll() is None,
                       self.log_path("error.log"))
        # The workers are forked after the listen socket is open: wait for all of them.
        deadline = time.monotonic() + self.start_timeout_s
        while len(children(p.pid)) < self.workers and time.monotonic() < deadline:
            time.sleep(0.05)

    def pids(self):
        if not self._procs:
            return []
        master = self._procs[0].pid
        try:
            with open(os.path.join(self.dir, "nginx.pid")) as f:
                master = int(f.read().strip() or master)
        except (OSError, ValueError):
            pass
        return [master] + descendants(master)


PYTHON_GRIP_ORIGIN = r"""
import http.server, sys
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        ch = self.path.split("?")[0].rsplit("/", 1)[-1]
        self.send_response(200)
        self.send_header("Grip-Hold", "stream")
        self.send_header("Grip-Channel", ch)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Content-Length", "0")
        self.end_headers()
    def log_message(self, *a):
        pass
host, port = sys.argv[1].rsplit(":", 1)
http.server.ThreadingHTTPServer((host, int(port)), H).serve_forever()
"""


class Pushpin(Target):
    """Pushpin (condure, zurl, pushpin-proxy, pushpin-handler) from a temp folder, and its GRIP
    origin: `loadgen grip-origin`, or a small Python origin when loadgen is None (checks only).

    .port is the client port, .publish_port the HTTP publish port (POST /publish/), .pids() the
    pushpin runner and its children, not the origin."""
    name = "pushpin"

    def __init__(self, loadgen="target/release/loadgen", port=7999, publish_port=5561, origin_port=None,
                 message_rate=PUSHPIN_MESSAGE_RATE, maxconn=19000, log_level=1, **kw):
        super().__init__(port, **kw)
        self.publish_port = publish_port
        self.origin_port = origin_port or free_port()
        self.loadgen = repo_path(loadgen) if loadgen else None
        self.message_rate = message_rate
        self.maxconn = maxconn
        self.log_level = log_level
        self.notes = (f"Pushpin's [handler] message_rate raised from its default 2500 to {message_rate} "
                      f"(the default throttles deliveries to 2500 messages/s); client_maxconn={maxconn}; "
                      f"log_level={log_level} (default 2 logs every request and publish; 1 = warnings, like "
                      f"nginx's access_log off and the router's --log warn); "
                      f"GRIP origin: {'loadgen grip-origin' if loadgen else 'Python (check only)'}.")
        self.runner = None

    def _config(self):
        with open(PUSHPIN_CONF) as f:
            text = f.read()
        with open(PUSHPIN_INTERNAL_CONF) as f:
            internal = f.read()
        internal = internal.replace("ipc:///var/run/zurl/zurl-", "ipc://{rundir}/{ipc_prefix}zurl-")
        internal_path = os.path.join(self.dir, "internal.conf")
        with open(internal_path, "w") as f:
            f.write(internal)
        rundir, logdir = os.path.join(self.dir, "run"), os.path.join(self.dir, "log")
        os.makedirs(rundir)
        os.makedirs(logdir)
        settings = {
            "global": {"include": internal_path, "rundir": rundir},
            "runner": {"services": "condure,zurl,pushpin-proxy,pushpin-handler", "http_port": str(self.port),
                       "logdir": logdir, "client_maxconn": str(self.maxconn), "log_level": str(self.log_level)},
            "proxy": {"routesfile": os.path.join(self.dir, "routes")},
            "handler": {"push_in_http_port": str(self.publish_port), "message_rate": str(self.message_rate)},
        }
        out, section, seen = [], None, set()
        for line in text.splitlines():
            m = re.match(r"\s*\[(\w+)\]\s*$", line)
            if m:
                section = m.group(1)
            else:
                kv = re.match(r"\s*([A-Za-z_]+)\s*=", line)
                if kv and section in settings and kv.group(1) in settings[section]:
                    key = kv.group(1)
                    line = f"{key}={settings[section][key]}"
                    seen.add((section, key))
            out.append(line)
        missing = [f"[{s}] {k}" for s in settings for k in settings[s] if (s, k) not in seen]
        if missing:
            # Keys the packaged file does not list: append them to their sections.
            for s in settings:
                adds = [f"{k}={v}" for k, v in settings[s].items() if (s, k) not in seen]
                if adds:
                    idx = next((i for i, l in enumerate(out) if l.strip() == f"[{s}]"), None)
                    if idx is None:
                        out += ["", f"[{s}]"] + adds
                    else:
                        out[idx + 1:idx + 1] = adds
        conf = os.path.join(self.dir, "pushpin.conf")
        with open(conf, "w") as f:
            f.write("\n".join(out) + "\n")
        with open(os.path.join(self.dir, "routes"), "w") as f:
            f.write(f"* 127.0.0.1:{self.origin_port}\n")
        return conf

    def start(self):
        if shutil.which("pushpin") is None:
            raise PeerError("pushpin is not installed (peers.ensure_installed())")
        for port, what in ((self.port, "pushpin client port"), (self.publish_port, "pushpin publish port"),
                           (self.origin_port, "GRIP origin port")):
            ensure_port_free(port, what)
        conf = self._config()
        # The origin first: Pushpin proxies every subscription to it.
        if self.loadgen:
            if not os.access(self.loadgen, os.X_OK):
                raise PeerError(f"pushpin: {self.loadgen} is missing: run `cargo build --release -p loadgen`")
            ocmd = [self.loadgen, "grip-origin", "--listen", f"127.0.0.1:{self.origin_port}"]
        else:
            ocmd = [sys.executable, "-c", PYTHON_GRIP_ORIGIN, f"127.0.0.1:{self.origin_port}"]
        origin = self._spawn(ocmd, "origin.log")
        wait_listening(self.origin_port, self.start_timeout_s, "GRIP origin", lambda: origin.poll() is None,
                       self.log_path("origin.log"))
        cmd = ["pushpin", "--config", conf]
        self.command = " ".join(cmd) + "   (origin: " + " ".join(ocmd[:2] if not self.loadgen else ocmd) + ")"
        self.runner = self._spawn(cmd, "pushpin.out")
        alive_fn = lambda: self.runner.poll() is None
        logs = os.path.join(self.dir, "pushpin.out")
        wait_listening(self.port, self.start_timeout_s, "pushpin", alive_fn, logs)
        wait_listening(self.publish_port, self.start_timeout_s, "pushpin handler", alive_fn, logs)
        self._probe(logs)

    def _probe(self, logs):
        """One subscription through Pushpin until its response head: proves proxy, zurl and origin."""
        deadline = time.monotonic() + self.start_timeout_s
        last = ""
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=3) as s:
                    s.sendall(b"GET /sub/ready HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
                    head = read_head(s)
                    last = head.split(b"\r\n", 1)[0].decode(errors="replace")
                    if last.startswith("HTTP/1.1 200"):
                        return
            except OSError as e:
                last = str(e)
            time.sleep(0.2)
        raise PeerError(f"pushpin: a subscription through it did not answer 200 (last: {last!r}){tail_text(logs)}"
                        f"{tail_text(os.path.join(self.dir, 'log', 'pushpin-proxy.log'))}")

    def pids(self):
        if self.runner is None:
            return []
        return [self.runner.pid] + descendants(self.runner.pid)

    def stop(self):
        # Pushpin first (its runner stops its children on SIGTERM), then the origin.
        if self.runner is not None:
            procs = tracked([self.runner.pid] + descendants(self.runner.pid))
            stop_processes(procs, popen=self.runner)
            self._procs.remove(self.runner)
            self.runner = None
        super().stop()


def make_target(name, router="target/release/router", loadgen="target/release/loadgen",
                pushpin_port=7999, pushpin_publish_port=5561, router_args=()):
    """A not-yet-started target by name: router, nchan, pushpin or baseline."""
    if name == "router":
        return Router(router, extra_args=router_args)
    if name == "nchan":
        return Nchan()
    if name == "pushpin":
        return Pushpin(loadgen=loadgen, port=pushpin_port, publish_port=pushpin_publish_port)
    if name == "baseline":
        return Baseline(loadgen)
    raise PeerError(f"unknown target {name!r} (router, nchan, pushpin or baseline)")


def exit_on_signals():
    """SIGTERM and SIGHUP raise SystemExit (and SIGINT KeyboardInterrupt, even when a
    non-interactive shell started us with it ignored), so every `finally` and context manager
    still stops what was started."""
    def stop(signum, frame):
        raise SystemExit(f"stopped by signal {signum}")
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, stop)
    signal.signal(signal.SIGINT, signal.default_int_handler)


def raise_nofile_limit():
    """Soft open-files limit up to the hard one, for this process and what it starts."""
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


# ---------------------------------------------------------------------------------------------
# Running loadgen.

def run_loadgen(cmd, run_dir, timeout_s, tail_lines=20):
    """Runs one loadgen command with its output in run_dir/loadgen.log, bounded by timeout_s.

    Returns a dict: rc (None on timeout), timed_out, wall_s, summary (DIR/summary.json parsed,
    or None), tail (the last lines of its output), log. Its whole process group is killed if
    it overruns or if we are interrupted."""
    import json
    os.makedirs(run_dir, exist_ok=True)
    with open(os.path.join(run_dir, "command.txt"), "a") as f:
        f.write(scrub(" ".join(cmd)) + "\n")
    log_path = os.path.join(run_dir, "loadgen.log")
    started = time.monotonic()
    with open(log_path, "wb") as log:
        # From the repository root, so relative paths in `cmd` (and in what loadgen records of
        # its command line) need no machine-specific prefix.
        p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                             start_new_session=True, cwd=ROOT)
    timed_out = False
    try:
        p.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        timed_out = True
    finally:
        if p.poll() is None:
            # Its own process group (start_new_session): loadgen and its worker processes.
            for sig, wait_s in ((signal.SIGTERM, 5), (signal.SIGKILL, 5)):
                try:
                    os.killpg(p.pid, sig)
                except ProcessLookupError:
                    break
                try:
                    p.wait(timeout=wait_s)
                    break
                except subprocess.TimeoutExpired:
                    continue
        if p.poll() is None:
            p.wait()
    wall_s = time.monotonic() - started
    summary = None
    summary_path = os.path.join(run_dir, "summary.json")
    if os.path.exists(summary_path) and os.path.getmtime(summary_path) >= time.time() - wall_s - 1:
        try:
            with open(summary_path) as f:
                summary = json.load(f)
        except (OSError, ValueError):
            summary = None
    with open(log_path, errors="replace") as f:
        tail = f.read().splitlines()[-tail_lines:]
    return {"rc": None if timed_out else p.returncode, "timed_out": timed_out, "wall_s": round(wall_s, 1),
            "summary": summary, "tail": tail, "log": log_path}


# ---------------------------------------------------------------------------------------------
# Manual checks.

def curl_subscribe(url, out_path, headers=()):
    cmd = ["curl", "-sS", "-N", "-i", "--raw", "--max-time", "30"]
    for h in headers:
        cmd += ["-H", h]
    cmd.append(url)
    f = open(out_path, "wb")
    try:
        return subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT), cmd
    finally:
        f.close()


def curl_publish(url, body, headers=()):
    cmd = ["curl", "-sS", "-i", "--max-time", "10", "-X", "POST", "--data-binary", body]
    for h in headers:
        cmd += ["-H", h]
    cmd.append(url)
    r = subprocess.run(cmd, capture_output=True, timeout=20)
    return cmd, r.stdout.decode(errors="replace") + r.stderr.decode(errors="replace")


def show(title, data):
    print(f"--- {title}")
    if isinstance(data, bytes):
        data = data.decode(errors="replace")
    for line in data.splitlines(keepends=True):
        print("    " + repr(line))


def ws_subscribe(port, path, extra_headers=""):
    """A raw WebSocket handshake; returns the socket and the response head."""
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    s.sendall((f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               f"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{extra_headers}\r\n")
              .encode())
    head, _, rest = read_head(s).partition(b"\r\n\r\n")
    return s, head, rest


def read_head(s):
    """Reads from `s` until a response head is complete (or the peer closes); returns all bytes
    read, which may run past the head."""
    got = b""
    while b"\r\n\r\n" not in got:
        chunk = s.recv(4096)
        if not chunk:
            break
        got += chunk
    return got


def read_for(s, seconds, initial=b""):
    data = initial
    s.settimeout(0.2)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            chunk = s.recv(65536)
        except socket.timeout:
            continue
        if not chunk:
            break
        data += chunk
    return data


def ws_frames(data):
    """Decodes server-to-client frames: [(fin, opcode, payload)]."""
    frames, i = [], 0
    while i + 2 <= len(data):
        b0, b1 = data[i], data[i + 1]
        n, j = b1 & 0x7F, i + 2
        if n == 126:
            n, j = int.from_bytes(data[j:j + 2], "big"), j + 2
        elif n == 127:
            n, j = int.from_bytes(data[j:j + 8], "big"), j + 8
        if b1 & 0x80:
            j += 4
        if j + n > len(data):
            break
        frames.append((bool(b0 & 0x80), b0 & 0x0F, data[j:j + n]))
        i = j + n
    return frames


def check_nchan(args):
    ensure_installed(("nchan",))
    with Nchan(port=args.port) as t:
        print(f"nchan: {t.command}\n  pids {t.pids()}  config {os.path.join(t.dir, 'nginx.conf')}")
        base = f"http://127.0.0.1:{t.port}"
        out = os.path.join(t.dir, "sse.out")
        sub, cmd = curl_subscribe(f"{base}/sub/x", out, ["Accept: text/event-stream"])
        try:
            time.sleep(0.5)
            ws, ws_head, ws_rest = ws_subscribe(t.port, "/sub/x")
            pcmd, answer = curl_publish(f"{base}/pub/x", '{"a":1}')
            pcmd2, answer2 = curl_publish(f"{base}/pub/x", '{"a":2}')
            pcmd3, answer3 = curl_publish(f"{base}/pub/nobody", '{"a":3}')
            ws_data = read_for(ws, 1.5, ws_rest)
            ws.close()
        finally:
            sub.terminate()
            sub.wait()
        print("subscribe: " + " ".join(cmd))
        print("publish:   " + " ".join(pcmd))
        show("publish answer (1st, channel with 2 subscribers)", answer)
        show("publish answer (2nd)", answer2)
        show("publish answer (channel without subscribers)", answer3)
        with open(out, "rb") as f:
            sse = f.read()
        show("SSE bytes as received (curl -i --raw: chunk sizes visible)", sse)
        show("WebSocket handshake answer", ws_head)
        for fin, op, payload in ws_frames(ws_data):
            print(f"    ws frame fin={int(fin)} opcode={op} payload={payload!r}")
        ok = b'{"a":1}' in sse and any(b'{"a":1}' in p for _, _, p in ws_frames(ws_data))
        print("nchan check: " + ("OK" if ok else "FAILED: the publish did not arrive on both subscribers"))
        return ok


def check_pushpin(args):
    ensure_installed(("pushpin",))
    with Pushpin(loadgen=args.loadgen, port=args.port or 7999) as t:
        print(f"pushpin: {t.command}\n  pids {t.pids()}  folder {t.dir}")
        out = os.path.join(t.dir, "sse.out")
        sub, cmd = curl_subscribe(f"http://127.0.0.1:{t.port}/sub/x", out)
        try:
            time.sleep(1.0)
            body = '{"items":[{"channel":"x","formats":{"http-stream":{"content":"data: {\\"a\\":1}\\n\\n"}}}]}'
            pcmd, answer = curl_publish(f"http://127.0.0.1:{t.publish_port}/publish/", body,
                                        ["Content-Type: application/json"])
            time.sleep(1.0)
        finally:
            sub.terminate()
            sub.wait()
        print("subscribe: " + " ".join(cmd))
        print("publish:   " + " ".join(pcmd))
        show("publish answer", answer)
        with open(out, "rb") as f:
            sse = f.read()
        show("SSE bytes as received (curl -i --raw: chunk sizes visible)", sse)
        ok = b'data: {"a":1}' in sse
        print(t.notes)
        print("pushpin check: " + ("OK" if ok else "FAILED: the publish did not arrive"))
        return ok


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("peer", choices=["nchan", "pushpin"])
    p.add_argument("--check", action="store_true", help="start it, subscribe and publish with curl, show the bytes")
    p.add_argument("--port", type=int, help="client port (default: a free one; pushpin 7999)")
    p.add_argument("--loadgen", help="pushpin: use `LOADGEN grip-origin` instead of the Python origin")
    p.add_argument("--install", action="store_true", help="only install the peer when it is missing")
    args = p.parse_args()
    exit_on_signals()
    try:
        if args.install or not args.check:
            ensure_installed((args.peer,))
            print(f"{args.peer}: installed")
            return
        ok = check_nchan(args) if args.peer == "nchan" else check_pushpin(args)
    except PeerError as e:
        sys.exit(f"peers: {e}")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
