"""The terminal crun makes for `--console-socket`: its master fd, received over
that socket (SCM_RIGHTS). Shared by pty-relay.py (exec with a terminal) and
console-holder.py (a container with a tty, held for attach)."""
import array
import os
import socket

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
