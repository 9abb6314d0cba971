namespace AgentSandbox.Backends.Qemu
{
    /// <summary>
    /// The guest's init, in two busybox shell stages. Stage 1 runs from the initramfs: loads the
    /// modules, mounts the root disk, puts busybox, the agent and stage 2 on a tmpfs at
    /// /.agentsandbox (so they work whatever the image holds), and switches root. Stage 2 is PID 1
    /// for the guest's life: /run, /dev/pts, /dev/shm, a cgroup v2 tree whose pids.max holds every
    /// command, and one agent per virtio-serial port (as.0, as.1, ...), each restarted if it ends.
    /// Settings come on the kernel command line (as.ports, as.pids, as.hostname, as.net), which holds no secret.
    /// </summary>
    internal static class GuestInit
    {
        public const string ToolsDirectory = "/.agentsandbox";
        public const string Busybox = ToolsDirectory + "/busybox";
        public const string ReadyMarker = "agentsandbox: ready";
        public const string PortPrefix = "as.";

        public const string Stage1 = @"#!/bin/busybox sh
B=/bin/busybox
$B mkdir -p /proc /sys /dev /newroot
$B mount -t proc proc /proc
$B mount -t sysfs sysfs /sys
$B mount -t devtmpfs devtmpfs /dev
fail() { echo ""agentsandbox: the guest could not start: $*"" > /dev/console; $B poweroff -f; }
modules=$($B cat /etc/modules)
$B grep -q ' as.net=' /proc/cmdline && modules=""$modules $($B cat /etc/modules.net)""
for m in $modules; do $B insmod /lib/modules/$m.ko || fail ""loading module $m""; done
$B mount -t ext4 -o noatime /dev/vda /newroot || fail ""mounting the root disk""
$B mkdir -p /newroot" + ToolsDirectory + @" /newroot/dev /newroot/proc /newroot/sys || fail ""preparing the root""
$B mount -t tmpfs -o mode=0755,size=16m,nosuid,nodev agentsandbox /newroot" + ToolsDirectory + @" || fail ""mounting the tools""
$B cp /bin/busybox /bin/agentsandbox-agent /init2 /newroot" + ToolsDirectory + @"/ || fail ""copying the tools""
for d in dev proc sys; do $B mount --move /$d /newroot/$d || fail ""moving /$d""; done
exec $B switch_root /newroot " + Busybox + " sh " + ToolsDirectory + @"/init2
";

        public const string Stage2 = @"B=" + Busybox + @"
ports=1
for a in $($B cat /proc/cmdline); do
  case $a in
    as.ports=*) ports=${a#*=} ;;
    as.pids=*) pids=${a#*=} ;;
    as.hostname=*) $B hostname ""${a#*=}"" ;;
    as.net=*) net=${a#*=} ;;
  esac
done
$B ip link set lo up
if [ ""$net"" = user ]; then
  # QEMU's user-mode network: the guest is 10.0.2.15, QEMU answers as the gateway (the host's loopback) and the DNS forwarder.
  $B ip link set eth0 up && $B ip addr add 10.0.2.15/24 dev eth0 && $B ip route add default via 10.0.2.2 || echo ""agentsandbox: the network could not be set up"" > /dev/console
  # Whatever was there goes first (a link, or a FIFO that would hold this init for good).
  $B rm -f /etc/resolv.conf
  echo ""nameserver 10.0.2.3"" > /etc/resolv.conf
fi
$B mkdir -p /dev/pts /dev/shm /run /tmp
$B mount -t devpts -o nosuid,noexec,gid=5,mode=620,ptmxmode=666 devpts /dev/pts
$B mount -t tmpfs -o nosuid,nodev shm /dev/shm
$B mount -t tmpfs -o nosuid,nodev,mode=0755 run /run
$B chmod 1777 /tmp
# The guest kernel's log and addresses are root's: what helps an exploit of the guest kernel is kept from the agent.
echo 1 > /proc/sys/kernel/dmesg_restrict
echo 2 > /proc/sys/kernel/kptr_restrict
$B mount -t cgroup2 cgroup2 /sys/fs/cgroup
echo ""+pids +memory"" > /sys/fs/cgroup/cgroup.subtree_control
$B mkdir -p /sys/fs/cgroup/agentsandbox
[ -n ""$pids"" ] && echo ""$pids"" > /sys/fs/cgroup/agentsandbox/pids.max
$B mkdir -p /dev/virtio-ports
for p in /sys/class/virtio-ports/*; do $B ln -sf ../${p##*/} /dev/virtio-ports/$($B cat $p/name); done
i=0
while [ $i -lt $ports ]; do
  ( while :; do " + ToolsDirectory + @"/agentsandbox-agent --port /dev/virtio-ports/" + PortPrefix + @"$i --cgroup /sys/fs/cgroup/agentsandbox/p$i; $B sleep 1; done ) &
  i=$((i+1))
done
echo """ + ReadyMarker + @""" > /dev/console
while :; do wait; $B sleep 1; done
";
    }
}
