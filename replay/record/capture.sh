#!/bin/sh
# capture.sh: record a pagereplay bundle on a live Linux host (run as root).
# `pagereplay record` runs this script; traces/capture.sh links to it.
#
#   capture.sh [OPTIONS] OUTDIR -- COMMAND [ARG...]   trace while COMMAND runs
#   capture.sh [OPTIONS] OUTDIR SECONDS               trace for SECONDS seconds
#
# Options (before OUTDIR):
#   -b, --buffer-kb KB  ring buffer per CPU in KiB (default 65536); an overrun loses events
#   --trace-cmd         record with `trace-cmd record` (streams to disk, so it overruns less)
#   --no-kpageflags     skip the /proc/kpageflags snapshots (8 bytes per page of RAM)
#   --stacktrace        the kernel stack of every mm_page_alloc (a `stacktrace` event trigger,
#                       with options sym-offset and sym-addr): call sites without a System.map;
#                       about 15 more lines per allocation, so raise -b
#   -h, --help          this text
#
# Events: the six kmem page-allocator events, and every event under events/compaction/
# (compaction's free scanner takes free pages off the buddy lists with no kmem event, so a
# replay of a host where compaction ran needs them to stay exact).
# OUTDIR gets: trace.txt.gz (trace-cmd report's text with --trace-cmd, plus trace.dat.gz);
# start.* and end.* snapshots: buddyinfo pagetypeinfo zoneinfo vmstat meminfo kpageflags.gz;
# ringstats (per-CPU ring-buffer stats), uname, cmdline, thp, thp_defrag, sysctl (vm.*),
# numa (CPUs per node) and capture.json. Tracing is on while the snapshots are read, and each
# file is read between `kcapture: <side>.<file> begin` / `end` trace markers, so a replay can tell which
# events happened before, during and after each read (as ../../shared/kcapture/init does).
# The default mode records in a tracefs instance of its own (the main buffer is untouched);
# --trace-cmd uses the main buffer, as trace-cmd does.
set -eu

EVENTS="mm_page_alloc mm_page_free mm_page_free_batched mm_page_alloc_zone_locked
mm_page_pcpu_drain mm_page_alloc_extfrag"
SNAP_FILES="buddyinfo pagetypeinfo zoneinfo vmstat meminfo"
SYSCTLS="min_free_kbytes watermark_scale_factor watermark_boost_factor
percpu_pagelist_high_fraction lowmem_reserve_ratio extfrag_threshold compaction_proactiveness"

T=""          # the tracefs directory events and markers go to
INSTANCE=""   # our tracefs instance, removed on exit
TCPID=""      # trace-cmd record's pid
OLD_ON=""     # the main buffer's tracing_on, restored on exit (--trace-cmd)
OLD_SYM=""    # the main buffer's sym-offset and sym-addr options, restored on exit (--stacktrace)
STACK_EVENT=mm_page_alloc  # the event whose stacks --stacktrace records

die() { printf 'capture.sh: %s\n' "$*" >&2; exit 1; }
usage() { sed -n '2,/^set -eu/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'; }
is_number() { case $1 in '' | *[!0-9]*) return 1 ;; *) return 0 ;; esac; }

parse_args() {  # sets the options, OUT, DURATION, and NOPTS (how many words were options)
    BUFKB=65536 MODE=tracefs KPF=1 STACKS=0 NOPTS=$#
    while [ $# -gt 0 ]; do
        case $1 in
            -b | --buffer-kb) [ $# -ge 2 ] || die "$1 needs a size in KiB"; BUFKB=$2; shift 2 ;;
            --buffer-kb=*) BUFKB=${1#*=}; shift ;;
            --trace-cmd) MODE=trace-cmd; shift ;;
            --no-kpageflags) KPF=0; shift ;;
            --stacktrace) STACKS=1; shift ;;
            -h | --help) usage; exit 0 ;;
            --) die "OUTDIR comes before -- (see --help)" ;;
            -*) die "unknown option $1 (see --help)" ;;
            *) break ;;
        esac
    done
    NOPTS=$((NOPTS - $#))
    is_number "$BUFKB" || die "bad buffer size '$BUFKB' (KiB per CPU)"
    [ $# -ge 2 ] || { usage >&2; exit 2; }
    OUT=$1
    DURATION=""
    if [ "$2" = "--" ]; then
        [ $# -ge 3 ] || die "no COMMAND after --"
    elif [ $# -eq 2 ] && is_number "$2"; then
        DURATION=$2
    else
        die "after OUTDIR give '-- COMMAND [ARG...]' or a number of SECONDS"
    fi
}

find_tracefs() {
    for d in /sys/kernel/tracing /sys/kernel/debug/tracing; do
        if [ -w "$d/trace_marker" ]; then echo "$d"; return 0; fi
    done
    if mount -t tracefs nodev /sys/kernel/tracing 2>/dev/null; then
        echo /sys/kernel/tracing
        return 0
    fi
    return 1
}

set_events() {  # set_events 0|1: our six kmem events and the compaction events in $T
    for e in $EVENTS; do echo "$1" > "$T/events/kmem/$e/enable"; done
    if [ -e "$T/events/compaction/enable" ]; then echo "$1" > "$T/events/compaction/enable"; fi
}

set_stacks() {  # set_stacks 0|1: the stacktrace trigger on $STACK_EVENT, named frames
    trig="$T/events/kmem/$STACK_EVENT/trigger"
    if [ "$1" = 1 ]; then
        [ -w "$trig" ] || die "--stacktrace: this kernel has no event triggers ($trig)"
        [ -n "$INSTANCE" ] || OLD_SYM="$(cat "$T/options/sym-offset") $(cat "$T/options/sym-addr")"
        echo 1 > "$T/options/sym-offset"
        echo 1 > "$T/options/sym-addr"
        echo stacktrace > "$trig" || die "--stacktrace: cannot set a stacktrace trigger on $trig"
    else
        if grep -q '^stacktrace' "$trig" 2>/dev/null; then echo '!stacktrace' > "$trig"; fi
        if [ -n "$OLD_SYM" ]; then
            echo "${OLD_SYM% *}" > "$T/options/sym-offset"
            echo "${OLD_SYM#* }" > "$T/options/sym-addr"
            OLD_SYM=""
        fi
    fi
}

cleanup() {
    if [ -n "$TCPID" ]; then kill -INT "$TCPID" 2>/dev/null || true; wait "$TCPID" || true; fi
    if [ -n "$T" ]; then set_events 0 2>/dev/null || true; fi
    if [ -n "$T" ] && [ "$STACKS" = 1 ] && [ "$MODE" = tracefs ]; then
        set_stacks 0 2>/dev/null || true
    fi
    if [ -n "$INSTANCE" ]; then rmdir "$INSTANCE" 2>/dev/null || true; fi
    if [ -n "$OLD_ON" ]; then echo "$OLD_ON" > "$T/tracing_on" 2>/dev/null || true; fi
}

mark() { echo "kcapture: $1" > "$T/trace_marker"; }

# Text files are read with shell builtins (no fork between the markers); kpageflags last.
snap() {
    for f in $SNAP_FILES; do
        mark "$1.$f begin"
        while IFS= read -r line; do printf '%s\n' "$line"; done < "/proc/$f" > "$OUT/$1.$f"
        mark "$1.$f end"
    done
    if [ "$KPF" = 1 ]; then
        mark "$1.kpageflags begin"
        cat /proc/kpageflags > "$OUT/$1.kpageflags"
        mark "$1.kpageflags end"
    fi
}

start_tracefs() {
    if mkdir "$TRACEFS/instances/pagereplay-$$" 2>/dev/null; then
        INSTANCE="$TRACEFS/instances/pagereplay-$$"
        T=$INSTANCE
    else
        echo "capture.sh: no tracefs instances; using the main buffer" >&2
        T=$TRACEFS
        OLD_ON=$(cat "$T/tracing_on")
    fi
    echo 0 > "$T/tracing_on"
    # A buffer the kernel cannot allocate fails the write with ENOMEM, which the shell reports
    # only as "write error" (busybox: "sh: write error: Cannot allocate memory"): name -b.
    if ! echo "$BUFKB" > "$T/buffer_size_kb" 2>/dev/null; then
        die "the kernel could not allocate a ring buffer of $BUFKB KiB per CPU" \
            "($(grep -c '^processor' /proc/cpuinfo) CPUs," \
            "$(awk '$1 == "MemTotal:" { print int($2 / 1024) }' /proc/meminfo) MiB of RAM): lower -b"
    fi
    : > "$T/trace"
    if [ "$STACKS" = 1 ]; then set_stacks 1; fi
    set_events 1
    echo 1 > "$T/tracing_on"
}

start_trace_cmd() {
    command -v trace-cmd > /dev/null || die "--trace-cmd: trace-cmd is not installed"
    T=$TRACEFS
    OLD_ON=$(cat "$T/tracing_on")
    set_events 0
    tc_events=""
    for e in $EVENTS; do
        tc_events="$tc_events -e kmem:$e"
        # trace-cmd's -R puts a trigger on the event before it (kernel_stack in trace.dat)
        if [ "$STACKS" = 1 ] && [ "$e" = "$STACK_EVENT" ]; then
            tc_events="$tc_events -R stacktrace"
        fi
    done
    if [ -e "$T/events/compaction/enable" ]; then tc_events="$tc_events -e compaction"; fi
    # shellcheck disable=SC2086 # one word per option
    (cd "$OUT" && exec trace-cmd record -b "$BUFKB" -o trace.dat $tc_events) \
        > "$OUT/trace-cmd.log" 2>&1 &
    TCPID=$!
    tries=0
    until [ "$(cat "$T/events/kmem/mm_page_alloc/enable")" = 1 ] \
        && [ "$(cat "$T/tracing_on")" = 1 ]; do
        kill -0 "$TCPID" 2>/dev/null || die "trace-cmd record failed: see $OUT/trace-cmd.log"
        tries=$((tries + 1))
        [ "$tries" -le 30 ] || die "trace-cmd record did not start in 30 s"
        sleep 1
    done
}

run_workload() {  # run_workload "$@": the command (its status in STATUS), or sleep
    STATUS=0
    if [ -n "$DURATION" ]; then
        sleep "$DURATION"
    else
        shift 2
        "$@" || STATUS=$?
    fi
}

stop_tracing() {
    if [ -n "$TCPID" ]; then
        kill -INT "$TCPID"
        wait "$TCPID" || die "trace-cmd record failed: see $OUT/trace-cmd.log"
        TCPID=""
    else
        echo 0 > "$T/tracing_on"
    fi
    set_events 0
}

write_traces() {
    for c in "$T"/per_cpu/cpu*; do echo "== $c"; cat "$c/stats"; done > "$OUT/ringstats"
    if [ "$MODE" = trace-cmd ]; then
        trace-cmd report -i "$OUT/trace.dat" | gzip -1 > "$OUT/trace.txt.gz"
        gzip -1f "$OUT/trace.dat"
    else
        # shellcheck disable=SC2002 # a pipe: gzip would warn that the tracefs file's size changed
        cat "$T/trace" | gzip -1 > "$OUT/trace.txt.gz"
    fi
    if [ "$KPF" = 1 ]; then gzip -1f "$OUT/start.kpageflags" "$OUT/end.kpageflags"; fi
}

write_host_files() {
    uname -a > "$OUT/uname"
    cat /proc/cmdline > "$OUT/cmdline"
    thp=/sys/kernel/mm/transparent_hugepage/enabled
    if [ -r "$thp" ]; then cat "$thp" > "$OUT/thp"; fi
    defrag=/sys/kernel/mm/transparent_hugepage/defrag
    if [ -r "$defrag" ]; then cat "$defrag" > "$OUT/thp_defrag"; fi
    for s in $SYSCTLS; do
        if [ -r "/proc/sys/vm/$s" ]; then
            printf 'vm.%s = %s\n' "$s" "$(tr -s '\t ' '  ' < "/proc/sys/vm/$s")"
        fi
    done > "$OUT/sysctl"
    for n in /sys/devices/system/node/node[0-9]*; do
        [ -r "$n/cpulist" ] && printf '%s %s\n' "${n##*/}" "$(cat "$n/cpulist")"
    done > "$OUT/numa" || true
    [ -s "$OUT/numa" ] || rm -f "$OUT/numa"
}

json_string() {  # a JSON string literal of $1
    printf '"%s"' "$(printf '%s' "$1" | tr '\t\n\r' '   ' | sed -e 's/\\/\\\\/g' -e 's/"/\\"/g')"
}

write_capture_json() {  # write_capture_json "$@"
    overrun=$(awk '$1 == "overrun:" { n += $2 } END { print n + 0 }' "$OUT/ringstats")
    mem_kb=$(awk '$1 == "MemTotal:" { print $2 }' /proc/meminfo)
    cpus=$(grep -c '^processor' /proc/cpuinfo || true)
    if [ -n "$DURATION" ]; then
        workload="sleep" command="sleep $DURATION"
    else
        shift 2
        workload=${1##*/} command="$*"
    fi
    {
        printf '{"workload": %s, "command": %s, ' "$(json_string "$workload")" \
            "$(json_string "$command")"
        printf '"exit_status": %d, "cpus": %d, "mem_mb": %d, ' "$STATUS" "$cpus" \
            "$((mem_kb / 1024))"
        printf '"ring_buffer_kb_per_cpu": %d, "kernel": %s, "mode": %s, ' "$BUFKB" \
            "$(json_string "$(uname -r)")" "$(json_string "$MODE")"
        printf '"stacktrace": %s, ' "$([ "$STACKS" = 1 ] && echo true || echo false)"
        printf '"started": %s, "ring_buffer_overrun_events": %d}\n' \
            "$(json_string "$STARTED")" "$overrun"
    } > "$OUT/capture.json"
    if [ "$overrun" -gt 0 ]; then
        echo "capture.sh: the ring buffer overran: $overrun events lost (raise -b)" >&2
    fi
}

main() {
    parse_args "$@"
    shift "$NOPTS"  # now "$@" is OUTDIR -- COMMAND... or OUTDIR SECONDS
    [ "$(id -u)" -eq 0 ] || die "run as root (tracefs, /proc/pagetypeinfo, /proc/kpageflags)"
    TRACEFS=$(find_tracefs) || die "no tracefs at /sys/kernel/tracing or /sys/kernel/debug/tracing"
    for e in $EVENTS; do
        [ -e "$TRACEFS/events/kmem/$e/enable" ] || die "this kernel has no kmem:$e tracepoint"
    done
    mkdir -p "$OUT"
    [ ! -e "$OUT/trace.txt.gz" ] || die "$OUT already holds a capture"
    trap cleanup EXIT
    trap 'exit 130' INT TERM HUP
    STARTED=$(date -u +%Y-%m-%dT%H:%M:%SZ)
    if [ "$MODE" = trace-cmd ]; then start_trace_cmd; else start_tracefs; fi
    snap start
    run_workload "$@"
    snap end
    stop_tracing
    write_traces
    write_host_files
    write_capture_json "$@"
    echo "capture.sh: wrote $OUT ($(du -sh "$OUT" | cut -f1))" >&2
}

main "$@"
