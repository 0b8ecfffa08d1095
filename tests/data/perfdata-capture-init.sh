#!/bin/busybox sh
# pagereplay perf.data test fixtures (issue #12): tiny real recordings of every kind.
/bin/busybox --install -s /bin
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev
mount -t tracefs nodev /sys/kernel/tracing; mount -t debugfs nodev /sys/kernel/debug
mkdir -p /tmp; mount -t tmpfs -o size=90% tmpfs /tmp
for pass in 1 2 3; do for m in virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci virtio_blk; do insmod /mods/$m.ko 2>/dev/null; done; done
O=/tmp/out; mkdir -p $O /tmp/w
echo 0 > /proc/sys/kernel/kptr_restrict
echo -1 > /proc/sys/kernel/perf_event_paranoid
cat /proc/kallsyms > $O/kallsyms
uname -a > $O/uname
K="-e kmem:mm_page_alloc -e kmem:mm_page_free -e kmem:mm_page_free_batched -e kmem:mm_page_alloc_zone_locked -e kmem:mm_page_pcpu_drain -e kmem:mm_page_alloc_extfrag"
echo "== z" > $O/log
perf record -a -g -z $K -o $O/tiny-z.data -- /bin/memwork mixed 1 1 >> $O/log 2>&1
echo "== pipe" >> $O/log
perf record -a -g -e kmem:mm_page_alloc -e kmem:mm_page_free -o - -- ls -R /bin > $O/tiny-pipe.data 2>> $O/log
echo "== pipe-z" >> $O/log
perf record -a -g -z -e kmem:mm_page_alloc -e kmem:mm_page_free -o - -- ls -R /bin > $O/tiny-pipe-z.data 2>> $O/log
echo "== lost" >> $O/log
perf record -a -m 1 -e kmem:mm_page_alloc -e kmem:mm_page_free -o $O/tiny-lost.data -- /bin/memwork anon 1 3 >> $O/log 2>&1
echo "== one" >> $O/log
perf record -a -e kmem:mm_page_alloc -o $O/tiny-one.data -- ls -R /bin >> $O/log 2>&1
echo "== kmem" >> $O/log
perf kmem --page record -o $O/tiny-kmem.data -- ls -R /bin >> $O/log 2>&1
echo "== compaction" >> $O/log
echo always > /sys/kernel/mm/transparent_hugepage/defrag
echo 20 > /proc/sys/vm/compaction_proactiveness
/bin/memwork frag 3 24
perf record -a -g -e 'compaction:*' -e kmem:mm_page_alloc_extfrag -o $O/tiny-compact.data -- sh -c 'echo 1 > /proc/sys/vm/compact_memory' >> $O/log 2>&1
(cd /tmp && tar cf /dev/vda out)
sync
echo KCAPTURE-DONE
poweroff -f
