/**
 * Init containers are sequenced by systemd, not by the agent, so a pod keeps
 * initializing while the agent is down. Every unit that must wait (the next
 * init container, or the pod's containers after the last one) carries this
 * program as its ExecCondition=: it blocks until its predecessor is done —
 * an init container has a successful exit record, a sidecar has started —
 * and exits 0 (the unit starts), or exits 1 once the predecessor failed for
 * good (restartPolicy Never: systemd then skips the unit quietly, without
 * restarting it). A unit restarted later (restartPolicy Always) passes at
 * once: the records stay.
 *
 * Why not After=/Requisite= on the predecessor: on systemd 252 a oneshot
 * unit that fails fails its start job even when Restart= will run it again,
 * and the dependent's start job fails with it ('dependency'), so the
 * containers would never start after an init container's first failure
 * (measured). POSIX sh only; it polls twice a second, and only while
 * something waits.
 *
 * argv: <never|retry> then `done:<exits dir>` or `started:<marker file>`.
 */
export const INIT_GATE_SCRIPT = `
policy="$1"; shift
while :; do
  pending=0
  for dep in "$@"; do
    case "$dep" in
      done:*)
        d=\${dep#done:}
        grep -qs '"code":"exited","status":"0"' "$d"/*.json && continue
        if [ "$policy" = never ] && ls "$d"/*.json >/dev/null 2>&1; then exit 1; fi
        pending=1 ;;
      started:*) [ -e "\${dep#started:}" ] || pending=1 ;;
    esac
  done
  [ "$pending" = 0 ] && exit 0
  sleep 0.5
done
`;

/** The marker a sidecar's unit writes (ExecStartPost) each time it has started. */
export const SIDECAR_STARTED = 'started';
