/*
 * console-relay: the kvm guest's terminal relay for `kubectl exec -t` (a static
 * program in the guest's initramfs, stage1/kvm/assets.ts; the guest has no
 * python for stage1/pty-relay.py).
 *
 *   console-relay SOCKET -- ARGV...
 *
 * Listens on the unix socket SOCKET, runs ARGV (`crun exec --console-socket
 * SOCKET …`, which makes the terminal inside the container and sends its
 * master here with SCM_RIGHTS), then copies fd 0 to the master and the master
 * to fd 1 until every holder of the terminal's slave is gone. Raw bytes both
 * ways: crun's own foreground terminal mode needs its stdin to be a terminal,
 * and the guest's exec port is not one. Exits with ARGV's status (128 + N when
 * killed by signal N); 125 when it cannot set up.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static int fail(const char *what) {
  fprintf(stderr, "stevedore: console-relay: %s: %s\n", what, strerror(errno));
  return 125;
}

static int exit_code(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return 125;
}

static int write_all(int fd, const char *buf, ssize_t n) {
  while (n > 0) {
    ssize_t w = write(fd, buf, (size_t)n);
    if (w < 0) {
      if (errno == EINTR) continue;
      return -1;
    }
    buf += w;
    n -= w;
  }
  return 0;
}

/* The fd crun sends with SCM_RIGHTS; -1 when the connection carries none. */
static int receive_fd(int conn) {
  char byte;
  struct iovec iov = { .iov_base = &byte, .iov_len = 1 };
  union { struct cmsghdr align; char buf[CMSG_SPACE(sizeof(int))]; } control;
  struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = control.buf, .msg_controllen = sizeof(control.buf) };
  ssize_t n;
  do n = recvmsg(conn, &msg, MSG_CMSG_CLOEXEC); while (n < 0 && errno == EINTR);
  if (n < 0) return -1;
  for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
      int fd;
      memcpy(&fd, CMSG_DATA(c), sizeof(fd));
      return fd;
    }
  }
  return -1;
}

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
  if (argc < 4 || strcmp(argv[2], "--") != 0) {
    fprintf(stderr, "usage: console-relay SOCKET -- ARGV...\n");
    return 125;
  }
  const char *path = argv[1];
  struct sockaddr_un addr = { .sun_family = AF_UNIX };
  if (strlen(path) >= sizeof(addr.sun_path)) {
    errno = ENAMETOOLONG;
    return fail(path);
  }
  strcpy(addr.sun_path, path);
  int listener = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (listener < 0) return fail("socket");
  unlink(path);
  if (bind(listener, (struct sockaddr *)&addr, sizeof(addr)) < 0 || listen(listener, 1) < 0) return fail(path);
  signal(SIGPIPE, SIG_IGN);

  pid_t pid = fork();
  if (pid < 0) return fail("fork");
  if (pid == 0) {
    execvp(argv[3], argv + 3);
    fail(argv[3]);
    _exit(127);
  }

  /* The master, or the command's exit when it ends without sending one (crun's error). */
  int master = -1, status = 0, exited = 0;
  while (master < 0) {
    struct pollfd p = { .fd = listener, .events = POLLIN };
    int r = poll(&p, 1, 100);
    if (r > 0) {
      int conn = accept4(listener, NULL, NULL, SOCK_CLOEXEC);
      if (conn >= 0) {
        master = receive_fd(conn);
        close(conn);
      }
    }
    if (master < 0 && waitpid(pid, &status, WNOHANG) == pid) {
      unlink(path);
      return exit_code(status);
    }
  }
  close(listener);
  unlink(path);

  char buf[65536];
  int stdin_open = 1;
  double drain_until = 0;
  for (;;) {
    struct pollfd fds[2] = { { .fd = master, .events = POLLIN }, { .fd = stdin_open ? 0 : -1, .events = POLLIN } };
    int r = poll(fds, 2, 100);
    if (r < 0 && errno != EINTR) break;
    if (r > 0 && (fds[0].revents & (POLLIN | POLLHUP | POLLERR))) {
      ssize_t n = read(master, buf, sizeof(buf));
      if (n <= 0 && !(n < 0 && errno == EINTR)) break; /* EIO: every holder of the slave is gone */
      if (n > 0 && write_all(1, buf, n) < 0) break;
    }
    if (r > 0 && (fds[1].revents & (POLLIN | POLLHUP | POLLERR))) {
      ssize_t n = read(0, buf, sizeof(buf));
      /* A terminal cannot be half-closed: the command goes on until it ends by itself. */
      if (n <= 0 && !(n < 0 && errno == EINTR)) stdin_open = 0;
      else if (n > 0) write_all(master, buf, n);
    }
    if (!exited && waitpid(pid, &status, WNOHANG) == pid) {
      exited = 1;
      /* Background children may keep the terminal open: print what is already there, then stop. */
      drain_until = now() + 0.2;
    }
    if (exited && now() >= drain_until) break;
  }
  if (!exited) waitpid(pid, &status, 0);
  return exit_code(status);
}
