/**
 * The shell program a unit runs after every exit of its app (ExecStopPost),
 * while the app's cgroup still exists. It writes one ExitRecord into the pod
 * directory, atomically (write, then rename), so exit codes, OOM kills and
 * restart history survive systemd unloading the unit and the agent being down.
 * It runs on the node, outside the container, with POSIX sh tools only. It
 * never creates $dir: a missing one means the pod is gone, and must stay gone.
 * With a second argument (the app's termination-log file, namespaces), it
 * keeps the run's termination message beside the record (`msg-<invocation>`,
 * at most 4 KiB, as the kubelet reads) and empties the file for the next run:
 * done here, after the run, nothing is added to the next start's path.
 */
export const EXIT_RECORDER_SCRIPT = `
# Its output would land in the app's log (it runs in the app's unit): keep quiet.
exec >/dev/null 2>&1
# A unit skipped by its ExecCondition (init-gate.ts) never ran its app: nothing to record.
[ "$SERVICE_RESULT" = exec-condition ] && exit 0
dir="$1"; oom=0
cg=$(sed -n 's/^[0-9]*:memory://p' /proc/self/cgroup)
if [ -n "$cg" ] && [ -r "/sys/fs/cgroup/memory$cg/memory.oom_control" ]; then
  oom=$(sed -n 's/^oom_kill //p' "/sys/fs/cgroup/memory$cg/memory.oom_control")
else
  cg2=$(sed -n 's/^0:://p' /proc/self/cgroup)
  for base in /sys/fs/cgroup /sys/fs/cgroup/unified; do
    [ -r "$base$cg2/memory.events" ] && oom=$(sed -n 's/^oom_kill //p' "$base$cg2/memory.events") && break
  done
fi
t=$(date +%s%N)
if [ -n "$2" ] && [ -s "$2" ]; then
  head -c 4096 "$2" > "$dir/.msg-$INVOCATION_ID.tmp" && mv "$dir/.msg-$INVOCATION_ID.tmp" "$dir/msg-$INVOCATION_ID"
  : > "$2"
fi
printf '{"at":%s,"invocation":"%s","result":"%s","code":"%s","status":"%s","oomKills":%s}\\n' \\
  "$t" "$INVOCATION_ID" "$SERVICE_RESULT" "$EXIT_CODE" "$EXIT_STATUS" "\${oom:-0}" > "$dir/.$t.tmp"
mv "$dir/.$t.tmp" "$dir/$t.json"
`;
