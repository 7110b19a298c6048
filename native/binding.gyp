{
  "targets": [
    { "target_name": "flock", "sources": ["flock.c"], "cflags": ["-Wall", "-O2"] },
    { "target_name": "fsops", "sources": ["fsops.c"], "cflags": ["-Wall", "-O2"] },
    { "target_name": "notify", "sources": ["notify.c"], "cflags": ["-Wall", "-O2"] },
    { "target_name": "sha256", "sources": ["sha256.c"], "cflags": ["-Wall", "-O3"] },
    { "target_name": "inotify", "sources": ["inotify.c"], "cflags": ["-Wall", "-O2"] },
    { "target_name": "netns", "sources": ["netns.c"], "cflags": ["-Wall", "-O2"] },
    { "target_name": "spawn", "sources": ["spawn.c"], "cflags": ["-Wall", "-O2"] },
    { "target_name": "decompress", "sources": ["decompress.c"], "cflags": ["-Wall", "-O2"], "libraries": ["-lz", "-lzstd"] },
    { "target_name": "seccomp-exec", "type": "executable", "sources": ["seccomp-exec.c"], "cflags": ["-Wall", "-O2"], "ldflags": ["-static", "-s"],
      "conditions": [["target_arch=='x64' or target_arch=='arm64'", {
        "cflags": ["-ffreestanding", "-fno-stack-protector", "-fno-asynchronous-unwind-tables"], "ldflags": ["-nostdlib"] }]] },
    { "target_name": "stevedore-enter", "type": "executable", "sources": ["enter.c"], "cflags": ["-Wall", "-O2"], "ldflags": ["-static", "-s"] },
    { "target_name": "console-relay", "type": "executable", "sources": ["console-relay.c"], "cflags": ["-Wall", "-O2"], "ldflags": ["-static", "-s"] }
  ]
}
