#!/usr/bin/python3
"""A terminal for a command run inside an app (exec, `pod enter -t`).

Node has no pseudo-terminal API and no SCM_RIGHTS, and a native addon for one
ioctl is more to keep than this. Python's standard library has both.

    python3 pty-relay.py [--console-socket PATH] [--size COLUMNSxROWS] -- ARGV...

Without --console-socket the terminal is made here, on the node, and ARGV runs
as the leader of a new session with the terminal's slave as its controlling
terminal (the fly stage1: the app sees the node's /dev anyway). With it, ARGV
is expected to make the terminal itself inside the app and send its master
over the unix socket PATH (crun exec --tty --console-socket PATH), so the
command's terminal is one of the app's own /dev/pts.

fd 0: bytes typed into the terminal; fd 1: what the terminal prints;
fd 3 (optional): resize requests, one "COLUMNS ROWS" line each.
Exits with ARGV's exit status (128 + N when killed by signal N).
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

sys.dont_write_bytecode = True  # importing the module below must leave no __pycache__ in the repository
import console_socket as crun_console  # beside this script (sys.path[0])

CONSOLE_SOCKET_WAIT_S = 30
DRAIN_AFTER_EXIT_S = 0.2


def fail(message):
    sys.stderr.write("stevedore: %s\n" % message)
    sys.exit(125)


def set_size(master, cols, rows):
    fcntl.ioctl(master, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


def receive_master(listener, pid):
    """The master fd crun sends over the console socket; None if ARGV exits first."""
    master, why, status = crun_console.receive(listener, pid, CONSOLE_SOCKET_WAIT_S)
    if why == crun_console.EMPTY:
        fail("the runtime connected to the console socket but sent no terminal")
    if why == crun_console.TIMED_OUT:
        fail("the runtime sent no terminal within %d s" % CONSOLE_SOCKET_WAIT_S)
    return master, status


def main():
    args = sys.argv[1:]
    console_socket = None
    size = None
    while args[:1] in (["--console-socket"], ["--size"]):
        if args[0] == "--console-socket":
            console_socket = args[1]
        else:
            cols, _, rows = args[1].partition("x")
            size = (int(cols), int(rows))
        args = args[2:]
    if args[:1] != ["--"] or len(args) < 2:
        fail("usage: pty-relay.py [--console-socket PATH] -- ARGV...")
    argv = args[1:]
    resize_fd = 3
    try:
        os.fstat(resize_fd)
    except OSError:
        resize_fd = None

    if console_socket:
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(console_socket)
        listener.listen(1)
        pid = os.fork()
        if pid == 0:
            os.setsid()
            devnull = os.open(os.devnull, os.O_RDWR)
            os.dup2(devnull, 0)
            os.dup2(devnull, 1)
            os.closerange(3, 256)
            os.execvp(argv[0], argv)
        master, early_status = receive_master(listener, pid)
        listener.close()
        os.unlink(console_socket)
        if master is None:
            sys.exit(crun_console.exit_code(early_status))
        if size:
            # As early as the terminal is known: the command is already starting.
            set_size(master, *size)
    else:
        pid, master = crun_console.spawn_on_new_terminal(argv, (lambda m: set_size(m, *size)) if size else None)

    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    readers = [master, 0] + ([resize_fd] if resize_fd is not None else [])
    resize_buffer = b""
    status = None
    drain_deadline = None
    while True:
        timeout = 0.1 if status is None else max(0.0, drain_deadline - select_clock())
        ready, _, _ = select.select(readers, [], [], timeout)
        if master in ready:
            try:
                data = os.read(master, 65536)
            except OSError as err:
                if err.errno != errno.EIO:
                    raise
                data = b""
            if not data:
                # Every holder of the slave is gone: nothing more will be printed.
                readers.remove(master)
                if status is None:
                    _, status = os.waitpid(pid, 0)
                break
            os.write(1, data)
        if 0 in ready:
            data = os.read(0, 65536)
            if data:
                os.write(master, data)
            else:
                # A terminal cannot be half-closed; the command goes on until it ends by itself.
                readers.remove(0)
        if resize_fd is not None and resize_fd in ready:
            data = os.read(resize_fd, 4096)
            if not data:
                readers.remove(resize_fd)
                resize_fd = None
            resize_buffer += data
            while b"\n" in resize_buffer:
                line, resize_buffer = resize_buffer.split(b"\n", 1)
                parts = line.split()
                if len(parts) == 2 and parts[0].isdigit() and parts[1].isdigit():
                    set_size(master, int(parts[0]), int(parts[1]))
        if status is None:
            done, st = os.waitpid(pid, os.WNOHANG)
            if done:
                status = st
                # Background children may keep the terminal open: print what is already there, then stop.
                drain_deadline = select_clock() + DRAIN_AFTER_EXIT_S
        elif select_clock() >= drain_deadline:
            break
    sys.exit(crun_console.exit_code(status))


def select_clock():
    import time
    return time.monotonic()


if __name__ == "__main__":
    main()
