package libvirt

import (
	"bufio"
	"os"
	"strings"

	"golang.org/x/sys/unix"
)

// DomainType is "kvm" when the CPU has hardware virtualization (vmx or svm
// in /proc/cpuinfo) and /dev/kvm answers KVM_GET_API_VERSION with 12,
// else "qemu" (TCG, about ten times slower).
func DomainType() string {
	if cpuHasVirt() && kvmWorks() {
		return "kvm"
	}
	return "qemu"
}

func cpuHasVirt() bool {
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		return false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok || strings.TrimSpace(k) != "flags" {
			continue
		}
		for _, fl := range strings.Fields(v) {
			if fl == "vmx" || fl == "svm" {
				return true
			}
		}
	}
	return false
}

// kvmGetAPIVersion is KVM_GET_API_VERSION, _IO(0xAE, 0x00).
const kvmGetAPIVersion = 0xAE00

func kvmWorks() bool {
	fd, err := unix.Open("/dev/kvm", unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return false
	}
	defer unix.Close(fd)
	v, err := unix.IoctlRetInt(fd, kvmGetAPIVersion)
	return err == nil && v == 12
}
