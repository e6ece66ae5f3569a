# Sourced by the run scripts (_common.sh for the GPU scripts, cpu_smoke.sh, cpu_learn.sh): long runs survive.
#
#   care_resume CKPT_DIR METRICS   a run folder whose checkpoint folder holds verl's latest_checkpointed_iteration.txt
#                                  resumes: CARE_RESUME=(trainer.resume_mode=auto), one line says so, and METRICS is
#                                  kept (the trainer keeps the records of steps <= the checkpoint and drops the later
#                                  ones, which it trains again: recipe_care/patches/long_runs.py). Otherwise the run
#                                  starts fresh: CARE_RESUME=(trainer.resume_mode=disable), and a non-empty METRICS of
#                                  an earlier run is moved aside to METRICS with a timestamp (never deleted).
#                                  CARE_RESUMED is the checkpoint's step, or 0. An explicit trainer.resume_mode=...
#                                  among the script's extra arguments comes later on the command line and wins.
#   care_run_logged LOG CMD...     CMD with its output on the console and appended to LOG. SIGTERM/SIGINT/SIGHUP to
#                                  the script are passed on to CMD (as SIGTERM) and the script waits for it to stop
#                                  (recipe_care.main then prints its stop line and stops Ray). A run that fails or is
#                                  stopped ends LOG with one line, `[care] stopped: <why>`: CMD's own, else one written
#                                  here from the exit status (killed by SIGKILL: 137) or the last exception line of
#                                  CMD's output. Returns CMD's status.

care_resume() {  # care_resume CKPT_DIR METRICS
  local ckpt_dir="$1" metrics="$2" tracker
  tracker="$ckpt_dir/latest_checkpointed_iteration.txt"
  CARE_RESUMED=0
  if [ -s "$tracker" ]; then
    CARE_RESUMED="$(tr -dc '0-9' < "$tracker")"
    CARE_RESUME=(trainer.resume_mode=auto)
    echo "[care] resuming from the checkpoint of step ${CARE_RESUMED:-?} in $ckpt_dir (trainer.resume_mode=auto;" \
      "$(basename "$metrics") keeps steps <= ${CARE_RESUMED:-?})" >&2
  else
    CARE_RESUME=(trainer.resume_mode=disable)
    if [ -s "$metrics" ]; then  # an earlier run's metrics, without a checkpoint to resume: kept aside
      mv "$metrics" "${metrics%.jsonl}.$(date +%Y%m%d-%H%M%S).jsonl"
    fi
  fi
}

_care_stop_reason() {  # _care_stop_reason RC SIGNAL_RECEIVED NEW_OUTPUT_FILE
  local rc="$1" got="$2" out="$3" exc
  if [ -n "$got" ]; then
    echo "interrupted by SIG$got (exit status $rc)"
  elif [ "$rc" -gt 128 ] && [ "$rc" -lt 160 ]; then
    echo "killed by SIG$(kill -l "$((rc - 128))" 2>/dev/null || echo "?") (exit status $rc)"
  else
    exc="$(grep -aE '^[A-Za-z_][A-Za-z0-9_.]*(Error|Exception|Interrupt|Exit)(: |$)' "$out" | tail -n 1 | cut -c1-400)"
    echo "${exc:-no exception in the output} (exit status $rc)"
  fi
}

care_run_logged() {  # care_run_logged LOG CMD...
  local log="$1" pid rc got="" start last out tee_pid
  shift
  touch "$log"
  start=$(( $(wc -l < "$log") + 1 ))
  # tee ignores the stop signals, so it writes CMD's last words (the stop line) even when the whole group is signalled;
  # it is opened first so that its pid is known: the stop line below is written only after tee has written everything
  exec {out}> >(trap '' INT TERM HUP; exec tee -a "$log")
  tee_pid=$!
  "$@" >&"$out" 2>&1 &
  pid=$!
  exec {out}>&-
  trap 'got=TERM; kill -TERM "$pid" 2>/dev/null || true' TERM
  trap 'got=INT; kill -TERM "$pid" 2>/dev/null || true' INT
  trap 'got=HUP; kill -TERM "$pid" 2>/dev/null || true' HUP
  while :; do
    rc=0
    wait "$pid" || rc=$?
    kill -0 "$pid" 2>/dev/null || break  # a trapped signal ended the wait, not CMD
  done
  trap - TERM INT HUP
  while kill -0 "$tee_pid" 2>/dev/null; do sleep 0.1; done  # tee has written CMD's last line
  if [ "$rc" -ne 0 ] || [ -n "$got" ]; then
    last="$(tail -n +"$start" "$log" | grep -av '^[[:space:]]*$' | tail -n 1)"
    case "$last" in
      "[care] stopped: "*) ;;
      *) echo "[care] stopped: $(_care_stop_reason "$rc" "$got" <(tail -n +"$start" "$log"))" | tee -a "$log" >&2 ;;
    esac
  fi
  return "$rc"
}
