# Sourced by bench.sh and peers.sh: timings from several interleaved rounds, summarised by
# medians. One run on a shared machine can be off by 2x either way; the median of rounds
# that each measure the baseline and every contender back to back is what stays put.
#
# record NAME ROUND SECONDS; median NAME; vs BASE NAME (median over rounds of BASE/NAME).
rounds_file=$(mktemp)
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
