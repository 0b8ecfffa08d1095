#!/bin/sh
# record_qemu.sh [--check] [61|612] [mixed|compact]: pagereplay's capture script on Debian's
# real kernels. Builds a busybox initramfs whose init (record_qemu/init) runs this checkout's
# replay/record/capture.sh under busybox sh around a memwork workload, boots the kernel under
# QEMU (TCG, nice -n 10), takes the bundle out of the guest (a tar on a virtio disk, as the
# kcapture harness does) and reconstructs it. Prints the capture's event counts and the verdict.
#
#   61 (default) | 612     Debian 12's 6.1.0-56-amd64, or its 6.12.117+deb12-amd64 backport
#   mixed (default)        memwork mixed 1 20; 2 CPUs, 512 MiB, -b 32768; THP defrag and
#                          proactive compaction off
#   compact                memwork frag 10 40, then compact_memory (inside the recording);
#                          2 CPUs, 640 MiB, -b 65536; THP defrag=always, compaction_proactiveness 20
#   --check                only check that the harness is here (prints what is missing)
#
# Exit status: reconstruct's (0 exact with no inconsistent event, 1 not), 3 when the capture
# failed, 4 when the harness is missing.
# Needs the kcapture harness as set up in $CAPTURES (see /work/captures/CAPTURES.md): the
# unpacked kernel packages in $CAPTURES/kpkg/k61/root and k612/root, memwork.c in
# $CAPTURES/kcapture (or /work/shared/kcapture), and qemu-system-x86_64, a static busybox,
# gcc (static libc), cpio.
# Env: CAPTURES (default /work/captures); OUT=DIR keeps the bundle there (default: a temporary
# directory, removed); TMO (QEMU time limit in seconds, default 900); PYTHON (default python3).
set -eu
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(dirname "$HERE")
CAPTURES=${CAPTURES:-/work/captures}
PYTHON=${PYTHON:-python3}
CHECK=0
if [ "${1:-}" = --check ]; then CHECK=1; shift; fi
KERNEL=${1:-61}
CONFIG=${2:-mixed}

die() { printf 'record_qemu.sh: %s\n' "$*" >&2; exit "${2:-3}"; }
missing() { printf 'record_qemu.sh: missing %s\n' "$*" >&2; exit 4; }

case $KERNEL in
    61 | 612) KROOT=$CAPTURES/kpkg/k$KERNEL/root ;;
    *) die "kernel '$KERNEL': 61 or 612" ;;
esac
KCARGS=""
case $CONFIG in
    mixed) WL=mixed ROUNDS=1 MB=20 SMP=2 MEM=512 BUFKB=32768 ;;
    compact)
        WL=frag ROUNDS=10 MB=40 SMP=2 MEM=640 BUFKB=65536
        KCARGS="kc.defrag=always kc.proactive=20 kc.compact=1" ;;
    *) die "configuration '$CONFIG': mixed or compact" ;;
esac

# The harness: kernel, memwork.c, tools
set -- "$KROOT"/boot/vmlinuz-*
VMLINUZ=$1
[ -f "$VMLINUZ" ] || missing "the kernel: no $KROOT/boot/vmlinuz-* (unpack linux-image into $KROOT)"
[ -d "$KROOT/lib/modules" ] || missing "$KROOT/lib/modules"
MEMWORK_C=""
for f in "$CAPTURES/kcapture/memwork.c" /work/shared/kcapture/memwork.c; do
    if [ -f "$f" ]; then MEMWORK_C=$f; break; fi
done
[ -n "$MEMWORK_C" ] || missing "memwork.c (in $CAPTURES/kcapture or /work/shared/kcapture)"
BUSYBOX=${BUSYBOX:-/bin/busybox}
[ -x "$BUSYBOX" ] || missing "a static busybox at $BUSYBOX (busybox-static)"
for t in qemu-system-x86_64 gcc cpio gzip timeout; do
    command -v "$t" > /dev/null || missing "$t"
done
if [ "$CHECK" = 1 ]; then
    echo "record_qemu.sh: harness ok ($VMLINUZ, $MEMWORK_C)"
    exit 0
fi

W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
if [ -n "${OUT:-}" ]; then
    BUNDLE=$OUT
    [ ! -e "$BUNDLE/trace.txt.gz" ] || die "$BUNDLE already holds a capture"
else
    BUNDLE=$W/bundle
fi
mkdir -p "$BUNDLE"

# The initramfs: busybox, the init, this checkout's capture.sh, memwork, the virtio modules
I=$W/initramfs
mkdir -p "$I/bin" "$I/mods" "$I/proc" "$I/sys" "$I/dev" "$I/tmp"
cp "$BUSYBOX" "$I/bin/busybox"
cp "$HERE/record_qemu/init" "$I/init"
chmod 755 "$I/init"
cp "$ROOT/replay/record/capture.sh" "$I/capture.sh"
gcc -O2 -static -o "$I/bin/memwork" "$MEMWORK_C"
KV=$(ls "$KROOT/lib/modules")
for m in virtio virtio_ring virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci virtio_blk; do
    f=$(find "$KROOT/lib/modules/$KV" -name "$m.ko*" | head -1)
    case $f in
        "") ;;  # built in
        *.xz) xz -dc "$f" > "$I/mods/$m.ko" ;;
        *) cp "$f" "$I/mods/" ;;
    esac
done
(cd "$I" && find . | cpio -o -H newc 2> /dev/null | gzip -1) > "$W/initramfs.gz"

# The guest: TCG (KVM hangs at boot on these machines), the bundle comes back as a tar on vda
truncate -s 512M "$W/disk.img"
echo "record_qemu.sh: kernel $KV, $CONFIG (memwork $WL $ROUNDS $MB; $SMP CPUs, $MEM MiB," \
    "-b $BUFKB${KCARGS:+; $KCARGS}) under QEMU/TCG ..."
T0=$(date +%s)
timeout "${TMO:-900}" nice -n 10 qemu-system-x86_64 -accel tcg -cpu max -m "$MEM" -smp "$SMP" \
    -nographic -no-reboot -kernel "$VMLINUZ" -initrd "$W/initramfs.gz" \
    -drive "file=$W/disk.img,format=raw,if=virtio" \
    -append "console=ttyS0 quiet panic=3 mitigations=off kc.workload=$WL kc.rounds=$ROUNDS kc.mb=$MB kc.bufkb=$BUFKB $KCARGS" \
    < /dev/null > "$BUNDLE/console.log" 2>&1 || echo "record_qemu.sh: qemu exited with status $?" >&2
T1=$(date +%s)
grep -q KCAPTURE-DONE "$BUNDLE/console.log" \
    || { tail -20 "$BUNDLE/console.log" >&2; die "the guest did not finish (see the console above)"; }
(cd "$W" && tar xf disk.img)
for f in "$W"/out/bundle/* "$W"/out/capture.log "$W"/out/after.txt; do
    if [ -e "$f" ]; then mv "$f" "$BUNDLE/"; fi
done
rc=$(cat "$W/out/capture.rc" 2> /dev/null || echo "?")
cat "$BUNDLE/capture.log"
[ "$rc" = 0 ] || die "capture.sh failed in the guest (exit status $rc; output above)"
echo "record_qemu.sh: capture.sh exit status 0, $((T1 - T0)) s under QEMU; bundle in $BUNDLE"
echo "record_qemu.sh: after capture.sh:" $(cat "$BUNDLE/after.txt")

# The project on the bundle
set +e
PYTHONPATH=$ROOT${PYTHONPATH:+:$PYTHONPATH} "$PYTHON" -m replay info "$BUNDLE" --json \
    > "$W/info.json"
PYTHONPATH=$ROOT${PYTHONPATH:+:$PYTHONPATH} nice -n 10 "$PYTHON" -m replay reconstruct "$BUNDLE" \
    --json "$W/reconstruct.json" > "$W/reconstruct.txt" 2>&1
status=$?
set -e
[ -s "$W/reconstruct.json" ] || { cat "$W/reconstruct.txt" >&2; die "reconstruct failed (exit status $status)"; }
"$PYTHON" - "$BUNDLE" "$W/info.json" "$W/reconstruct.json" <<'PY'
import json
import sys

bundle, info, rec = sys.argv[1], json.load(open(sys.argv[2])), json.load(open(sys.argv[3]))
cap = json.load(open(bundle + "/capture.json"))
kinds = info["events_by_kind"]
kmem = {k: v for k, v in kinds.items() if not k.startswith("mm_compaction")}
comp = {k: v for k, v in kinds.items() if k.startswith("mm_compaction")}
print(f"capture: kernel {cap['kernel']}, {info['events']:,} events, {info['markers']} markers, "
      f"{cap['ring_buffer_overrun_events']} overrun, lost {info['lost_events']}")
print("  kmem: " + ", ".join(f"{k} {v:,}" for k, v in kmem.items()))
print("  compaction: " + (", ".join(f"{k} {v:,}" for k, v in comp.items()) or "none"))
bad = {k: v for k, v in rec["inconsistencies"].items() if v}
checks = []
for name in ("start_check", "end_check", "end_pagetypeinfo_check", "end_pageblocks_check"):
    c = rec.get(name)
    if c:
        off = {z: n for z, n in c["l1_by_zone"].items() if n}
        checks.append(f"{name[:-6]} " + ("exact" if not off else f"L1 {off}"))
ag = rec["agreement"]
print(f"reconstruct: {'; '.join(checks)}; takes as __rmqueue_smallest predicts "
      f"{ag['exact']:,}/{ag['decisions']:,}")
tr = (rec.get("compaction") or {}).get("trace") or {}
if tr.get("runs"):
    print(f"  compaction: {tr['runs']} runs, free scanner isolated {tr['free_isolated']:,} pages, "
          f"migrated {tr['migrated']:,}")
print(f"VERDICT: {rec['verdict']}; {rec['inconsistent_events']} inconsistent events"
      + (f" ({', '.join(f'{k} {v}' for k, v in bad.items())})" if bad else ""))
PY
exit "$status"
