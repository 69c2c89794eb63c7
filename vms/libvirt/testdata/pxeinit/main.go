// Command pxeinit is the /init of the PXE boot test's initramfs: it prints
// a marker with the nonce the kernel command line gave it (mbnonce=..., which
// the kernel passes to init as an environment variable) on the console,
// then powers the machine off.
package main

import (
	"fmt"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

func main() {
	fmt.Fprintf(os.Stdout, "\r\nmetalbed-pxe-init: booted nonce=%s\r\n", os.Getenv("mbnonce"))
	os.Stdout.Sync()
	time.Sleep(200 * time.Millisecond) // let the UART drain
	unix.Sync()
	if err := unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF); err != nil {
		fmt.Fprintf(os.Stdout, "metalbed-pxe-init: power off: %v\r\n", err)
	}
	select {}
}
