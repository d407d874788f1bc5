# Sourced by bench.sh and peers.sh: timings from several interleaved rounds, summarised by
# medians. One run on a shared machine can be off by 2x either way; the median of rounds
# that each measure the baseline and every contender back to back is what stays put.
#
# timed CMD...; record NAME ROUND SECONDS; median NAME; vs BASE NAME (median over rounds of
# BASE/NAME).
rounds_file=$(mktemp)

# The seconds CMD takes, stdout discarded. Before it: `sync`, so no transfer pays for the
# disk writes of the one before it, and warm_memory. A failure prints its stderr and stops.
timed() {
  local t0 err
  err=$(mktemp)
  sync
  warm_memory
  t0=$(date +%s.%N)
  "$@" >/dev/null 2>"$err" || { echo "failed: $*" >&2; cat "$err" >&2; rm -f "$err"; exit 1; }
  awk -v from="$t0" -v to="$(date +%s.%N)" 'BEGIN { print to - from }'
  rm -f "$err"
}

# On a VM whose balloon hands free memory back to the host soon after it is freed (free page
# reporting, as on the machines these figures come from), the first touch of such memory
# costs ~2 s per GiB, 10x a write into memory freed just before (BENCHMARKS.md). A transfer writes SIZE of new page
# cache, so it would pay that at random depending on what the one before it freed. Each
# measurement therefore starts right after touching and freeing warm_mib of memory (tmpfs).
#
# Warming cannot keep more than about a GiB warm for long here, so a slow transfer still
# runs into cold memory part way. PAUSE_PAGE_REPORTING=1 (root) stops the reporting for the
# run, as one pins a CPU's clock for a benchmark: page_reporting_order is set above the
# largest free block the kernel keeps, and restore_page_reporting, which the scripts call
# on exit, puts the old value back.
warm_memory() {
  [ -d /dev/shm ] && [ -w /dev/shm ] || return 0
  local scratch
  scratch=$(mktemp -p /dev/shm)
  head -c "$((${warm_mib:-1536} * 1024 * 1024))" /dev/zero >"$scratch" 2>/dev/null || true
  rm -f "$scratch"
}
record() {
  [ -n "$3" ] || { echo "no timing for $1 (it failed)" >&2; exit 1; }
  echo "$1 $2 $3" >> "$rounds_file"
}
median() {
  awk -v n="$1" '$1 == n { print $3 }' "$rounds_file" | sort -g |
    awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
vs() {
  awk -v b="$1" -v n="$2" '$1 == b { base[$2] = $3 } $1 == n { x[$2] = $3 }
    END { for (r in x) print base[r] / x[r] }' "$rounds_file" | sort -g |
    awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

reporting_order=/sys/module/page_reporting/parameters/page_reporting_order
saved_reporting_order=
pause_page_reporting() {
  [ "${PAUSE_PAGE_REPORTING:-0}" = 1 ] || return 0
  if [ ! -w "$reporting_order" ]; then
    echo "PAUSE_PAGE_REPORTING: cannot write $reporting_order (no free page reporting here, or not root)" >&2
    return 0
  fi
  local above_largest
  above_largest=$(awk '{ print NF - 4; exit }' /proc/buddyinfo)
  saved_reporting_order=$(cat "$reporting_order")
  if ! echo "$above_largest" >"$reporting_order" 2>/dev/null ||
    [ "$(cat "$reporting_order")" != "$above_largest" ]; then
    echo "PAUSE_PAGE_REPORTING: the kernel refused order $above_largest; reporting stays on" >&2
    restore_page_reporting
  fi
}
restore_page_reporting() {
  [ -n "$saved_reporting_order" ] || return 0
  echo "$saved_reporting_order" >"$reporting_order" || true
  saved_reporting_order=
}
# One line for the results: were the figures taken with the reporting on?
page_reporting_state() {
  if [ -n "$saved_reporting_order" ]; then
    echo "free page reporting: paused for this run"
  elif [ -r "$reporting_order" ]; then
    echo "free page reporting: on (figures include first touches of memory the host took back; PAUSE_PAGE_REPORTING=1 as root to pause it)"
  fi
}
