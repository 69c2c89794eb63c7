// Command instanceinit is /sbin/init of metalbed's test instance images.
// It runs as PID 1 under a real Linux kernel: it mounts /proc, /sys and
// /dev, sets the host name from /etc/hostname, and announces the boot on
// the console with one line,
//
//	metalbed-instance: booted <hostname> root=<root= argument>
//
// then reaps orphans until the kernel asks it to stop (Ctrl-Alt-Del or
// SIGTERM), when it syncs and powers off. It uses the standard library only
// and is built static (CGO_ENABLED=0), because the image has no libc.
//
// Run as any other PID (tests, debugging) it prints the same line, reading
// the kernel command line from METALBED_INSTANCE_CMDLINE (else
// /proc/cmdline) and files under METALBED_INSTANCE_ROOT (else /), and exits.
package main

import (
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
)

func main() {
	pid1 := os.Getpid() == 1
	root := "/"
	if !pid1 {
		if r := os.Getenv("METALBED_INSTANCE_ROOT"); r != "" {
			root = r
		}
	}
	if pid1 {
		mount("proc", "/proc", "proc")
		mount("sysfs", "/sys", "sysfs")
		mount("devtmpfs", "/dev", "devtmpfs")
	}
	cmdline := os.Getenv("METALBED_INSTANCE_CMDLINE")
	if pid1 || cmdline == "" {
		b, err := os.ReadFile("/proc/cmdline")
		if err != nil {
			fmt.Fprintf(os.Stderr, "metalbed-instance: read /proc/cmdline: %v\n", err)
		}
		cmdline = string(b)
	}
	hostname := "localhost"
	if b, err := os.ReadFile(filepath.Join(root, "etc/hostname")); err == nil && strings.TrimSpace(string(b)) != "" {
		hostname = strings.TrimSpace(string(b))
	} else if err != nil {
		fmt.Fprintf(os.Stderr, "metalbed-instance: read /etc/hostname: %v\n", err)
	}
	if pid1 {
		if err := syscall.Sethostname([]byte(hostname)); err != nil {
			fmt.Fprintf(os.Stderr, "metalbed-instance: sethostname: %v\n", err)
		}
	}
	rootArg := "(none)"
	for _, f := range strings.Fields(cmdline) {
		if v, ok := strings.CutPrefix(f, "root="); ok {
			rootArg = v
		}
	}
	if !pid1 {
		fmt.Printf("metalbed-instance: booted %s root=%s\n", hostname, rootArg)
		return
	}
	// Take the signals before announcing: whoever reads the announcement
	// may act on it at once.
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, syscall.SIGCHLD, syscall.SIGINT, syscall.SIGTERM, syscall.SIGPWR)
	fmt.Printf("metalbed-instance: booted %s root=%s\n", hostname, rootArg)
	serve(sigs)
}

func mount(source, target, fstype string) {
	if err := os.MkdirAll(target, 0o755); err != nil {
		fmt.Fprintf(os.Stderr, "metalbed-instance: mkdir %s: %v\n", target, err)
	}
	if err := syscall.Mount(source, target, fstype, 0, ""); err != nil && err != syscall.EBUSY {
		fmt.Fprintf(os.Stderr, "metalbed-instance: mount %s: %v\n", target, err)
	}
}

// serve is PID 1's life: reap children, power off when told to.
func serve(sigs <-chan os.Signal) {
	// With Ctrl-Alt-Del disabled the kernel sends SIGINT to PID 1.
	if err := syscall.Reboot(syscall.LINUX_REBOOT_CMD_CAD_OFF); err != nil {
		fmt.Fprintf(os.Stderr, "metalbed-instance: disable ctrl-alt-del: %v\n", err)
	}
	for s := range sigs {
		if s == syscall.SIGCHLD {
			for {
				var ws syscall.WaitStatus
				pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil)
				if pid <= 0 || err != nil {
					break
				}
			}
			continue
		}
		fmt.Printf("metalbed-instance: %v, powering off\n", s)
		syscall.Sync()
		if err := syscall.Reboot(syscall.LINUX_REBOOT_CMD_POWER_OFF); err != nil {
			fmt.Fprintf(os.Stderr, "metalbed-instance: power off: %v\n", err)
		}
	}
}
