#!/usr/bin/python3
"""Holds the stdin and terminal of an app that asks for them (stdin: true,
tty: true), so that `kubectl attach` can reach it later: the app unit's main
process, with the app (crun run) as its child.

    python3 console-holder.py --socket PATH [--tty (--console-socket CPATH | --make-terminal)]
                              [--stdin] [--stdin-once] -- ARGV...

With --console-socket the runtime (crun run, the namespaces stage1) makes the
app's terminal and sends its master there; with --make-terminal (the fly
stage1, whose apps see the node's /dev) the terminal is made here and ARGV
runs as the leader of a new session with its slave as controlling terminal.

What the app prints goes to this process's stdout/stderr (the journal, so
`kubectl logs` works as for any app) and to every attached client. Clients
connect to the unix socket PATH and speak frames of [channel:1][length:4 BE]
[data]: to the app 0 stdin, 4 resize ("COLUMNS ROWS"), 255 stdin closed; from
it 1 stdout, 2 stderr, 3 the exit status (decimal) just before the holder
exits with it. The first client to attach gets what the app printed before
(up to BACKLOG_BYTES): `kubectl run -i -- echo hi` would otherwise miss the
output of a command quicker than its attach. With --stdin-once the app's stdin is closed when the first
client that attached goes away or closes its input (Kubernetes' stdinOnce);
without it a client's end of input is not passed on (the next client may
still type).
"""
import errno
import fcntl
import os
import select
import signal
import socket
import struct
import sys
import termios
import time

sys.dont_write_bytecode = True  # importing the module below must leave no __pycache__ in the repository
import console_socket as crun_console  # beside this script (sys.path[0])

CONSOLE_SOCKET_WAIT_S = 60
BACKLOG_BYTES = 64 * 1024
# How long the holder, once the app has exited, waits for each client to close its side.
CLIENT_LINGER_S = 1.0


def log(message):
    sys.stderr.write("stevedore console: %s\n" % message)
    sys.stderr.flush()


def bind_unix(sock, path):
    """bind() to PATH even past sun_path's 108 bytes (deep data dirs, e.g. a node of `up --nodes`): through /proc/self/fd of its directory."""
    if len(os.fsencode(path)) < 108:
        sock.bind(path)
        return
    dirfd = os.open(os.path.dirname(path), os.O_RDONLY | os.O_DIRECTORY)
    try:
        sock.bind("/proc/self/fd/%d/%s" % (dirfd, os.path.basename(path)))
    finally:
        os.close(dirfd)


def console_listener(console_socket):
    """Listening before crun starts: it connects as soon as it has made the terminal."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    bind_unix(listener, console_socket)
    listener.listen(1)
    return listener


def receive_master(listener, socket_path, pid):
    try:
        master, why, status = crun_console.receive(listener, pid, CONSOLE_SOCKET_WAIT_S, keep_waiting_on_empty=True)
        if why == crun_console.TIMED_OUT:
            log("the runtime sent no terminal in %d s" % CONSOLE_SOCKET_WAIT_S)
            os.kill(pid, signal.SIGKILL)
            _, status = os.waitpid(pid, 0)
        return master, status
    finally:
        listener.close()
        os.unlink(socket_path)


def frame(channel, data):
    return struct.pack(">BI", channel, len(data)) + data


def main():
    args = sys.argv[1:]
    opts = {"--socket": None, "--console-socket": None}
    flags = set()
    while args and args[0] != "--":
        if args[0] in opts:
            opts[args[0]] = args[1]
            args = args[2:]
        else:
            flags.add(args[0])
            args = args[1:]
    argv = args[1:]
    tty = "--tty" in flags
    stdin_once = "--stdin-once" in flags
    want_stdin = "--stdin" in flags
    make_terminal = "--make-terminal" in flags
    if not argv or not opts["--socket"] or (tty and not (opts["--console-socket"] or make_terminal)):
        log("usage: console-holder.py --socket PATH [--tty (--console-socket CPATH | --make-terminal)] [--stdin] [--stdin-once] -- ARGV...")
        sys.exit(125)

    for path in (opts["--socket"], opts["--console-socket"]):
        if path and os.path.exists(path):
            os.unlink(path)

    # The attach socket exists before the app starts: a client that comes early waits, rather than fails.
    old_umask = os.umask(0o177)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    bind_unix(listener, opts["--socket"])
    os.umask(old_umask)
    listener.listen(16)
    listener.setblocking(False)

    stdin_w = out_r = err_r = master = None
    if tty and make_terminal:
        pid, master = crun_console.spawn_on_new_terminal(argv)
    elif tty:
        console = console_listener(opts["--console-socket"])
        pid = os.fork()
        if pid == 0:
            os.closerange(3, 256)
            os.execvp(argv[0], argv)
        master, early = receive_master(console, opts["--console-socket"], pid)
        if master is None:
            sys.exit(crun_console.exit_code(early))
    else:
        in_r, stdin_w = os.pipe() if want_stdin else (os.open(os.devnull, os.O_RDONLY), None)
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.dup2(in_r, 0)
            os.dup2(out_w, 1)
            os.dup2(err_w, 2)
            os.closerange(3, 256)
            os.execvp(argv[0], argv)
        for fd in (in_r, out_w, err_w):
            os.close(fd)

    # systemd's stop signal reaches the app in the unit's cgroup too; the holder waits for the app.
    signal.signal(signal.SIGTERM, lambda *_: os.kill(pid, signal.SIGTERM))
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)


    clients = {}  # socket -> receive buffer
    attached_once = False
    backlog = []  # frames printed before the first client attached
    backlog_size = 0
    stdin_open = want_stdin or tty
    outputs = {master: 1} if tty else {out_r: 1, err_r: 2}
    own = {1: 1, 2: 2}

    def close_stdin():
        nonlocal stdin_open, stdin_w
        if not stdin_open:
            return
        stdin_open = False
        if tty:
            os.write(master, b"\x04")  # a terminal cannot be closed for writing: end-of-file as a typed ^D
        elif stdin_w is not None:
            os.close(stdin_w)
            stdin_w = None

    def drop(client):
        clients.pop(client, None)
        try:
            client.close()
        except OSError:
            pass
        if stdin_once and attached_once:
            close_stdin()

    def take_client(c):
        nonlocal attached_once
        c.setblocking(True)
        clients[c] = b""
        if not attached_once:
            attached_once = True
            try:
                c.sendall(b"".join(backlog))
            except OSError:
                pass
            backlog.clear()

    def broadcast(channel, data):
        nonlocal backlog_size
        if not attached_once and backlog_size < BACKLOG_BYTES:
            part = data[: BACKLOG_BYTES - backlog_size]
            backlog.append(frame(channel, part))
            backlog_size += len(part)
        for c in list(clients):
            try:
                c.sendall(frame(channel, data))
            except OSError:
                drop(c)

    status = None
    while True:
        readers = [listener] + list(outputs) + list(clients)
        try:
            ready = select.select(readers, [], [], 0.2)[0]
        except InterruptedError:
            continue
        for r in ready:
            if r is listener:
                try:
                    take_client(listener.accept()[0])
                except OSError:
                    pass
            elif r in outputs:
                try:
                    data = os.read(r, 65536)
                except OSError as err:
                    if err.errno != errno.EIO:
                        raise
                    data = b""
                if not data:
                    del outputs[r]
                    continue
                channel = outputs[r]
                os.write(own[channel], data)
                broadcast(channel, data)
            else:
                try:
                    data = r.recv(65536)
                except OSError:
                    data = b""
                if not data:
                    drop(r)
                    continue
                buf = clients[r] + data
                while len(buf) >= 5:
                    channel, length = struct.unpack(">BI", buf[:5])
                    if len(buf) < 5 + length:
                        break
                    body, buf = buf[5 : 5 + length], buf[5 + length :]
                    if channel == 0 and stdin_open:
                        target = master if tty else stdin_w
                        try:
                            os.write(target, body)
                        except OSError:
                            pass
                    elif channel == 4 and tty:
                        parts = body.split()
                        if len(parts) == 2 and parts[0].isdigit() and parts[1].isdigit():
                            fcntl.ioctl(master, termios.TIOCSWINSZ, struct.pack("HHHH", int(parts[1]), int(parts[0]), 0, 0))
                    elif channel == 255 and stdin_once:
                        # A client's end of input ends the app's only with stdinOnce (Kubernetes: without it the
                        # container's stdin stays open for the next attach; a terminal would read it as ^D and exit).
                        close_stdin()
                if r in clients:
                    clients[r] = buf
        if status is None:
            done, st = os.waitpid(pid, os.WNOHANG)
            if done:
                status = st
        if status is not None and not outputs:
            break
        if status is not None and tty:
            # The terminal may stay open in a background child: what is printed so far is enough.
            try:
                while select.select([master], [], [], 0.1)[0]:
                    data = os.read(master, 65536)
                    if not data:
                        break
                    os.write(1, data)
                    broadcast(1, data)
            except OSError:
                pass
            break
    code = crun_console.exit_code(status)
    # From here no client can connect (the path is gone), and one that connected before and still
    # waits in the listener's queue is served as the others: the backlog if it is the first, then
    # the status. Closed unaccepted, it would read an end with no output and no status (kubectl
    # run -i -- echo hi printing nothing).
    try:
        os.unlink(opts["--socket"])
    except OSError:
        pass
    listener.setblocking(False)
    while True:
        try:
            take_client(listener.accept()[0])
        except OSError:
            break
    broadcast(3, str(code).encode())
    # Half-close, then read (and drop) until each client closes its side, for at most
    # CLIENT_LINGER_S. Closed at once, a client still writing (its stdin's end) would get EPIPE,
    # and the agent's socket then goes before it has read the output and status waiting for it
    # (`kubectl run -i -- echo hi` printing nothing); bytes of its left unread here would reset it.
    for c in list(clients):
        try:
            c.shutdown(socket.SHUT_WR)
        except OSError:
            clients.pop(c, None)
            c.close()
    deadline = time.monotonic() + CLIENT_LINGER_S
    while clients and time.monotonic() < deadline:
        for c in select.select(list(clients), [], [], max(0.0, deadline - time.monotonic()))[0]:
            try:
                data = c.recv(65536)
            except OSError:
                data = b""
            if not data:
                clients.pop(c, None)
                c.close()
    for c in list(clients):
        c.close()
    listener.close()
    sys.exit(code)


if __name__ == "__main__":
    main()
