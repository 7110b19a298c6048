/*
 * sd_notify(3) for Node through N-API: send a state string ("READY=1",
 * "WATCHDOG=1", "STOPPING=1") to the socket systemd names in $NOTIFY_SOCKET.
 * Node's dgram module has no AF_UNIX support, and systemd only accepts
 * notifications from the service's main process (NotifyAccess=main), so a
 * helper process like systemd-notify(1) will not do.
 */
#include <node_api.h>
#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

/* notify(state) -> 1 sent, 0 no $NOTIFY_SOCKET, -errno on failure */
static napi_value Notify(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1], result;
  char state[1024];
  size_t len = 0;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 1 ||
      napi_get_value_string_utf8(env, argv[0], state, sizeof state, &len) != napi_ok) {
    napi_throw_type_error(env, NULL, "notify(state) takes a string");
    return NULL;
  }
  const char *path = getenv("NOTIFY_SOCKET");
  int rc = 0;
  if (path && path[0] && strlen(path) < sizeof(((struct sockaddr_un *)0)->sun_path)) {
    struct sockaddr_un addr;
    memset(&addr, 0, sizeof addr);
    addr.sun_family = AF_UNIX;
    strcpy(addr.sun_path, path);
    socklen_t addrlen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + strlen(path));
    if (addr.sun_path[0] == '@') addr.sun_path[0] = 0; /* abstract namespace */
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0) rc = -errno;
    else {
      rc = sendto(fd, state, len, MSG_NOSIGNAL, (struct sockaddr *)&addr, addrlen) < 0 ? -errno : 1;
      close(fd);
    }
  }
  napi_create_int32(env, rc, &result);
  return result;
}

static napi_value Init(napi_env env, napi_value exports) {
  napi_value fn;
  napi_create_function(env, "notify", NAPI_AUTO_LENGTH, Notify, NULL, &fn);
  napi_set_named_property(env, exports, "notify", fn);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, Init)
