"""Terminals for pty-relay.py (exec with a terminal) and console-holder.py (a
container with a tty, held for attach): the one crun makes for
`--console-socket`, whose master fd is received over that socket
(SCM_RIGHTS), or one made here for a command run as it is."""
import array
import fcntl
import os
import socket
import termios

# What receive() saw when it returns no terminal.
EXITED = "exited"        # the runtime (pid) exited first; the status is its wait status
EMPTY = "empty"          # a connection that carried no fd
TIMED_OUT = "timed-out"  # nothing within wait_s


def receive(listener, pid, wait_s, keep_waiting_on_empty=False):
    """(fd, None, None) once crun sends the master fd; else (None, why, status)."""
    listener.settimeout(0.1)
    waited = 0.0
    while waited < wait_s:
        try:
            conn, _ = listener.accept()
        except socket.timeout:
            waited += 0.1
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                return None, EXITED, status
            continue
        with conn:
            fds = array.array("i")
            _, ancdata, _, _ = conn.recvmsg(1024, socket.CMSG_SPACE(fds.itemsize))
            for level, kind, data in ancdata:
                if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                    fds.frombytes(data[: len(data) - (len(data) % fds.itemsize)])
            if fds:
                return fds[0], None, None
            if not keep_waiting_on_empty:
                return None, EMPTY, None
    return None, TIMED_OUT, None


def exit_code(status):
    """A wait status as a shell's exit code (128 + signal when killed)."""
    return 128 + os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)


def spawn_on_new_terminal(argv, before_fork=None):
    """Run argv as the leader of a new session whose controlling terminal is a new
    pty's slave (its stdin, stdout and stderr): (pid, master fd). before_fork(master)
    runs first (e.g. to set the size the command starts with)."""
    master, slave = os.openpty()
    if before_fork:
        before_fork(master)
    pid = os.fork()
    if pid == 0:
        os.setsid()
        fcntl.ioctl(slave, termios.TIOCSCTTY, 0)
        for fd in (0, 1, 2):
            os.dup2(slave, fd)
        os.closerange(3, 256)
        os.execvp(argv[0], argv)
    os.close(slave)
    return pid, master
