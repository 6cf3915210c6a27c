"""A real local Troupe cluster for Python tests: `troupe up` on a topology
written for the test (free loopback ports), with its embedded Kafka and its
own redis-server. Waits on the cluster's log lines with bounded timeouts;
stops only the processes it started, by PID.

Run with Debian's python3 (/usr/bin/python3): python3-websockets, python3-kafka.
"""

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request


# Ports for tests are reserved outside the kernel's ephemeral range, so
# nothing the kernel hands out (a Redis or Kafka port that `troupe up`
# chose, a node's outgoing connection) can ever take a port a test wrote
# into a topology; and each is held by a lock file for the life of this
# process, so tests running side by side never pick the same one.
_PORT_LOCKS = "/tmp/troupe-test-ports"
_held_locks = []


def _ephemeral_range():
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            low, high = (int(x) for x in f.read().split())
            return low, high
    except (OSError, ValueError):
        return 32768, 60999


def _reserve(port):
    import fcntl
    os.makedirs(_PORT_LOCKS, exist_ok=True)
    fd = os.open(os.path.join(_PORT_LOCKS, str(port)), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return False
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            os.close(fd)
            return False
    _held_locks.append(fd)
    return True


def free_ports(n):
    """`n` distinct loopback ports, free now, outside the ephemeral range and
    reserved for this process (see above)."""
    import random
    low, high = _ephemeral_range()
    lo, hi = (20000, low - 1) if low > 21000 else (high + 1, 65535)
    result = []
    for _ in range(100 * n + 1000):
        if len(result) == n:
            break
        port = random.randint(lo, hi)
        if port not in result and _reserve(port):
            result.append(port)
    if len(result) != n:
        raise RuntimeError(f"no {n} free ports between {lo} and {hi}")
    return result


def free_port():
    return free_ports(1)[0]


def certificates(folder, nodes):
    """A test CA in `folder` (made with the `openssl` command) and, signed by
    it, a certificate per node naming it (subjectAltName DNS:nI, and
    IP:127.0.0.1 for clients that dial the address) and an operator's."""
    os.makedirs(folder, exist_ok=True)

    def run(*args):
        subprocess.run(args, cwd=folder, check=True, capture_output=True, timeout=60)

    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    run("openssl", "req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "30",
        "-subj", "/CN=troupe-test-ca")
    names = {f"n{i}": f"DNS:n{i},IP:127.0.0.1" for i in range(1, nodes + 1)}
    names["operator"] = "email:ops@example.org"
    for name, san in names.items():
        run("openssl", "req", *ec, "-keyout", f"{name}.key", "-out", f"{name}.csr",
            "-subj", f"/CN={name}")
        with open(os.path.join(folder, f"{name}.ext"), "w") as f:
            f.write(f"subjectAltName={san}\n")
        run("openssl", "x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-CAcreateserial", "-out", f"{name}.pem", "-days", "30", "-extfile", f"{name}.ext")


def topology(nodes=3, groups="", secret="test-secret", name="ws-test", certs=None, cluster=""):
    """A topology of `nodes` nodes on free ports, with `groups` appended;
    with `certs` (a folder made by `certificates`), TLS between nodes and on
    the client ports; `cluster` adds lines to [cluster]."""
    text = f"""[cluster]
name = "{name}"
secret = "{secret}"
heartbeat_interval = "100ms"
failure_timeout = "500ms"
kafka = "embedded"
redis = "embedded"
""" + cluster
    if certs:
        text += (f'tls = {{ certificate = "{certs}/{{node}}.pem", key = "{certs}/{{node}}.key", '
                 f'ca_file = "{certs}/ca.pem", operator_certificate = "{certs}/operator.pem", '
                 f'operator_key = "{certs}/operator.key", clients = true }}\n')
    http = {}
    ports = free_ports(2 * nodes)
    for i in range(1, nodes + 1):
        http[f"n{i}"] = ports[2 * i - 1]
        text += f"""
[[node]]
name = "n{i}"
host = "127.0.0.1"
cluster_port = {ports[2 * i - 2]}
http_port = {http[f"n{i}"]}
"""
    return text + "\n" + groups, http


MODEL = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                                     "actors", "fraud_detector", "model", "fraud.json"))


def pipeline_groups(alerter="", extra="", broadcaster=True):
    """The fraud pipeline's groups, three instances each, scoring with the
    checked-in model; `alerter` is the alerter's settings (TOML inline
    table contents), `extra` more groups; with `broadcaster` (True, or its
    settings), the websocket-broadcaster that `Cluster` waits to see
    healthy."""
    text = f"""
[[group]]
name = "ingestor"
domain = "ingestor"
instances = 3

[[group]]
name = "feature-enricher"
domain = "feature-enricher"
instances = 3

[[group]]
name = "fraud-detector"
domain = "fraud-detector"
instances = 3
settings = {{ model = "{MODEL}" }}

[[group]]
name = "alerter"
domain = "alerter"
instances = 3
"""
    if alerter:
        text += f"settings = {{ {alerter} }}\n"
    text += extra
    if broadcaster:
        text += """
[[group]]
name = "websocket-broadcaster"
domain = "websocket-broadcaster"
instances = 3
"""
        if isinstance(broadcaster, str):
            text += f"settings = {{ {broadcaster} }}\n"
    return text


class _Connect:
    def __init__(self, url, token, kw):
        self.url, self.token, self.kw, self.ws = url, token, kw, None

    async def _open(self):
        import websockets
        self.ws = await websockets.connect(self.url, **self.kw)
        if self.token:
            await self.ws.send(json.dumps({"op": "auth", "token": self.token, "id": "auth"}))
        return self.ws

    def __await__(self):
        return self._open().__await__()

    async def __aenter__(self):
        return await self._open()

    async def __aexit__(self, *exc):
        await self.ws.close()


class Cluster:
    """`troupe up` of a topology; `http[node]` is each node's HTTP port."""

    def __init__(self, binary, groups, nodes=3, timeout=60, up_args=(), tls=False, cluster=""):
        self.binary = binary
        self.dir = tempfile.mkdtemp(prefix="troupe-test-")
        # With `tls`: certificates of a test CA, https:// and wss:// on the
        # client ports; `self.ssl` trusts that CA.
        self.ssl = None
        certs = None
        if tls:
            import ssl
            certs = os.path.join(self.dir, "certs")
            certificates(certs, nodes)
            self.ssl = ssl.create_default_context(cafile=os.path.join(certs, "ca.pem"))
        text, self.http = topology(nodes, groups, certs=certs, cluster=cluster)
        self.conf = os.path.join(self.dir, "cluster.conf")
        with open(self.conf, "w") as f:
            f.write(text)
        self.lines = []
        self.cond = threading.Condition()
        self.proc = subprocess.Popen([binary, "up", self.conf, *up_args], stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True, errors="replace")
        threading.Thread(target=self._read, daemon=True).start()
        self.pids = {}
        try:
            self._wait_up(nodes, timeout)
        except BaseException:
            # Nothing started here outlives a cluster that never came up.
            self.__exit__(*sys.exc_info())
            raise

    def _wait_up(self, nodes, timeout):
        self.kafka = self.wait_for(r"^\[up\] kafka \(embedded mock cluster.*\) at (\S+)$",
                                   timeout).group(1)
        self.redis = self.wait_for(r"^\[up\] redis ready at redis://(\S+)$", timeout).group(1)
        for i in range(1, nodes + 1):
            m = self.wait_for(rf"^\[up\] n{i} started, pid (\d+)$", timeout)
            self.pids[f"n{i}"] = int(m.group(1))
        for i in range(1, nodes + 1):
            # A text line (`... [n1] http on ...`) or a JSON one.
            self.wait_for(rf'(\[n{i}\] |"node":"n{i}".*"msg":")http on ', timeout)
        for node in self.http:
            self.wait_healthy(node, timeout)

    def health(self, node):
        scheme = "https" if self.ssl else "http"
        url = f"{scheme}://127.0.0.1:{self.http[node]}/healthz"
        with urllib.request.urlopen(url, timeout=5, context=self.ssl) as r:
            return json.loads(r.read())

    def shell(self, command, timeout=60, rc=0):
        """`troupe shell --json -c COMMAND`, asserting its exit code `rc`: the
        parsed answer when `rc` is 0, else the finished process."""
        p = subprocess.run([self.binary, "shell", "--config", self.conf, "--json", "--timeout",
                            "10", "-c", command], capture_output=True, text=True, timeout=timeout)
        assert p.returncode == rc, (command, p.returncode, p.stdout, p.stderr)
        return json.loads(p.stdout) if rc == 0 else p

    def until(self, what, pred, timeout=90):
        """Asks `pred` again at each new line of the cluster's log (at least
        5 times a second) until it returns a true value, which it returns;
        fails naming `what` after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            x = pred()
            if x:
                return x
            assert time.monotonic() < deadline, f"not within {timeout} s: {what}"
            with self.cond:
                self.cond.wait(0.2)

    def wait_healthy(self, node, timeout=60, websocket=True):
        """Until the node's /healthz says it takes WebSockets (or not)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                if self.health(node)["websocket"] == websocket:
                    return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"{node}: /healthz never said websocket={websocket}")
            with self.cond:
                self.cond.wait(0.1)

    def _read(self):
        for line in self.proc.stdout:
            with self.cond:
                self.lines.append(line.rstrip("\n"))
                self.cond.notify_all()
        with self.cond:
            self.cond.notify_all()

    def wait_for(self, pattern, timeout=30, start=0):
        """The first log line from index `start` on that matches `pattern`."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self.cond:
            i = start
            while True:
                while i < len(self.lines):
                    m = rx.search(self.lines[i])
                    if m:
                        return m
                    i += 1
                left = deadline - time.monotonic()
                if left <= 0 or self.proc.poll() is not None and i >= len(self.lines):
                    raise AssertionError(f"no log line matching {pattern!r} within {timeout} s;"
                                         f" last lines:\n" + "\n".join(self.lines[-40:]))
                self.cond.wait(min(left, 0.5))

    def mark(self):
        with self.cond:
            return len(self.lines)

    def token(self, user, role="user", ttl="1h"):
        """A client token from `troupe token` (signed by the cluster's client
        token key)."""
        out = subprocess.run([self.binary, "token", user, "--config", self.conf,
                              "--role", role, "--ttl", ttl],
                             capture_output=True, text=True, timeout=30, check=True)
        return out.stdout.strip()

    def url(self, node):
        return f"{'wss' if self.ssl else 'ws'}://127.0.0.1:{self.http[node]}/ws"

    def connect(self, node, user=None, **kw):
        """A WebSocket client of `node`'s gateway; with `user`, it sends a
        token of that user (role operator for the user "operator") as its
        first message, `{"op":"auth","token":T,"id":"auth"}`, and leaves the
        answer for the caller to read. `await c.connect(...)` or `async with
        c.connect(...) as ws`."""
        token = self.token(user, "operator" if user == "operator" else "user") if user else None
        if self.ssl and "ssl" not in kw:
            kw["ssl"] = self.ssl
        return _Connect(self.url(node), token, kw)

    def redis_password(self):
        """The embedded Redis's generated password ('' if there is none)."""
        path = os.path.join(self.dir, ".troupe-state", "redis", "password")
        if not os.path.exists(path):
            return ""
        with open(path) as f:
            return f.readline().strip()

    def redis_cli(self, *args):
        host, port = self.redis.split(":")
        env = dict(os.environ, REDISCLI_AUTH=self.redis_password())
        return subprocess.run(["redis-cli", "-h", host, "-p", port, *args], env=env,
                              capture_output=True, text=True, timeout=30, check=True).stdout

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                for pid in self.pids.values():
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                self.proc.wait(10)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        # Nodes we stopped must run again to end cleanly.
        for pid in self.pids.values():
            try:
                os.kill(pid, signal.SIGCONT)
            except ProcessLookupError:
                pass
        self.stop()
        if exc[0] is not None:
            path = os.path.join(self.dir, "cluster.log")
            with open(path, "w") as f:
                f.write("\n".join(self.lines) + "\n")
            print("\n".join(self.lines[-60:]))
            print(f"(the whole log: {path})")
        else:
            # The topology and the state the cluster kept beside it.
            shutil.rmtree(self.dir, ignore_errors=True)
        return False


def read_topic(bootstrap, topic, timeout=60):
    """Every record `topic` holds now: each partition from its start to its
    end as of the call (python3-kafka, no group)."""
    from kafka import KafkaConsumer, TopicPartition
    c = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                      consumer_timeout_ms=500)
    parts = [TopicPartition(topic, p) for p in (c.partitions_for_topic(topic) or [])]
    c.assign(parts)
    c.seek_to_beginning(*parts)
    ends = c.end_offsets(parts)
    records = []
    deadline = time.monotonic() + timeout
    while any(c.position(p) < ends[p] for p in parts) and time.monotonic() < deadline:
        for batch in c.poll(timeout_ms=200).values():
            records.extend(batch)
    c.close()
    return records
